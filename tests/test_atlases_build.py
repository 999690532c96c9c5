"""Full offline build of the data directory (once per session) and its anatomical checks."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to
from scipy import ndimage

from bids_app.atlases import api
from bids_app.atlases.manifest import load_manifest
from bids_app.cli.fetch_data import main as fetch_main

pytestmark = pytest.mark.slow

RES = (1, 2)
F32 = np.float32
GM_REGIONS = ("precentral", "superior_frontal", "middle_frontal", "medial_superior_frontal",
              "caudate", "putamen", "thalamus")
# Harvard-Oxford has no separate medial superior frontal label (its SFG includes it).
GM_ATLAS_REGIONS = {
    "aal": GM_REGIONS,
    "neuromorphometrics": GM_REGIONS,
    "harvard-oxford": tuple(r for r in GM_REGIONS if r != "medial_superior_frontal"),
}
JHU_LATERAL = ("cst", "cerebral_peduncle", "scp", "icp", "plic", "alic")
# HCP1065 posterior subdivisions (84-165 streamlines) are genuinely asymmetric in the atlas
# (centroids x = -26 vs +31 mm; mirrored Dice ~0.4), so they are left out of the Dice check.
ASYMMETRIC = {("hcp1065", "corticostriatal_posterior"),
              ("hcp1065", "thalamic_radiation_posterior")}


@pytest.fixture(scope="session")
def fresh_build(tmp_path_factory, shared_data):
    """Build everything once from the shared mirror into an empty directory."""
    dest = tmp_path_factory.mktemp("alsmri-data")
    start = time.perf_counter()
    rc = fetch_main(["--mirror", str(shared_data / "sources"), "--dest", str(dest)])
    return dest, rc, time.perf_counter() - start


@pytest.fixture(scope="session")
def data_dir(fresh_build) -> Path:
    dest, rc, _ = fresh_build
    assert rc == 0
    return dest


def _files(dest: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}


def test_full_build_offline(fresh_build):
    dest, rc, seconds = fresh_build
    assert rc == 0
    assert seconds < 120, f"full build took {seconds:.0f} s"
    manifest = load_manifest()
    for name, res in manifest.resources.items():
        if res.kind != "template":
            for r in RES:
                atlas = api.get_atlas(name, res=r, data_dir=dest)
                assert all(p.is_file() for p in atlas.images.values())
    assert not [p for p in dest.rglob("*") if p.name.startswith(".tmp-")]


def test_second_run_does_nothing_and_is_fast(data_dir, shared_data, capsys):
    before = _files(data_dir)
    start = time.perf_counter()
    assert fetch_main(["--mirror", str(shared_data / "sources"), "--dest", str(data_dir)]) == 0
    seconds = time.perf_counter() - start
    assert "0 built" in capsys.readouterr().out
    assert seconds < 15, f"second run took {seconds:.1f} s"
    assert _files(data_dir) == before


@pytest.mark.parametrize("res", RES)
def test_templates_on_templateflow_grid(data_dir, res):
    ref = nib.load(api.get_template(res=res))
    fa = nib.load(api.get_template(res=res, suffix="FA", data_dir=data_dir))
    assert fa.shape == ref.shape and np.allclose(fa.affine, ref.affine)
    data = fa.get_fdata(dtype=F32)
    mask_img = nib.load(api.get_template(res=res, suffix="mask", desc="brain"))
    mask = mask_img.get_fdata(dtype=F32) > 0
    assert 0 <= data.min() and data.max() <= 1
    assert data[mask].mean() > 3 * data[~mask].mean()  # FA lives inside the brain


def _centroid(img) -> np.ndarray:
    com = ndimage.center_of_mass(img.get_fdata(dtype=F32))
    return nib.affines.apply_affine(img.affine, com)


@pytest.mark.parametrize("res", RES)
@pytest.mark.parametrize("name", ["hcp842", "hcp1065", "xtract"])
def test_cst_centroids(data_dir, name, res):
    atlas = api.get_atlas(name, res=res, data_dir=data_dir)
    left = _centroid(nib.load(atlas.images[("cst", "L")]))
    right = _centroid(nib.load(atlas.images[("cst", "R")]))
    assert left[0] < -10 and right[0] > 10
    assert -40 <= left[2] <= 60 and -40 <= right[2] <= 60


@pytest.mark.parametrize("res", RES)
@pytest.mark.parametrize("name", ["hcp842", "hcp1065", "xtract"])
def test_tract_maps_probability_range_and_grid(data_dir, name, res):
    ref = nib.load(api.get_template(res=res))
    atlas = api.get_atlas(name, res=res, data_dir=data_dir)
    assert atlas.kind == "probseg" and atlas.labels is None
    for img in map(nib.load, atlas.images.values()):
        data = img.get_fdata(dtype=F32)
        assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
        assert data.min() >= 0 and 0.5 < data.max() <= 1


@pytest.mark.parametrize("name", ["hcp842", "hcp1065", "xtract"])
def test_left_right_maps_overlap_after_mirroring(data_dir, name):
    atlas = api.get_atlas(name, res=2, data_dir=data_dir)
    for region in sorted({r for r, _ in atlas.images}):
        if (name, region) in ASYMMETRIC:
            continue
        left = nib.load(atlas.images[(region, "L")])
        right = nib.load(atlas.images[(region, "R")])
        flip_x = np.diag([-1, 1, 1, 1])
        mirrored = nib.Nifti1Image(right.get_fdata(dtype=F32), flip_x @ right.affine)
        right_on_left = resample_from_to(mirrored, left, order=0).get_fdata(dtype=F32) > 0.2
        left_mask = left.get_fdata(dtype=F32) > 0.2
        dice = 2 * (left_mask & right_on_left).sum() / (left_mask.sum() + right_on_left.sum())
        assert dice >= 0.5, f"{name} {region}: Dice {dice:.2f}"


#: XTRACT's striatal projection (str) is a population map that runs into the caudate and
#: putamen, so >= a third of its p > 0.2 voxels are gray matter: its template mean FA is
#: 0.28-0.30 (the HCP842/HCP1065 corticostriatal maps used by default are >= 0.37).
GM_ENDING = {("xtract", "str"): 0.25}


@pytest.mark.parametrize("res", RES)
@pytest.mark.parametrize("name", ["hcp842", "hcp1065", "xtract"])
def test_fa_inside_tracts_is_white_matter(data_dir, name, res):
    fa_img = nib.load(api.get_template(res=res, suffix="FA", data_dir=data_dir))
    fa = fa_img.get_fdata(dtype=F32)
    atlas = api.get_atlas(name, res=res, data_dir=data_dir)
    for key, path in atlas.images.items():
        inside = nib.load(path).get_fdata(dtype=F32) > 0.2
        assert inside.sum() > 20
        floor = GM_ENDING.get((name, key[0]), 0.3)
        assert fa[inside].mean() >= floor, f"{name} {key}: mean FA {fa[inside].mean():.2f}"


def test_hcp842_cst_agrees_with_xtract(data_dir):
    """Independent atlas: XTRACT cst probability is high inside HCP842 CST, ~0 contralaterally."""
    hcp = api.get_atlas("hcp842", res=2, data_dir=data_dir)
    xtr = api.get_atlas("xtract", res=2, data_dir=data_dir)
    for hemi, other in (("L", "R"), ("R", "L")):
        inside = nib.load(hcp.images[("cst", hemi)]).get_fdata(dtype=F32) > 0.2
        same = nib.load(xtr.images[("cst", hemi)]).get_fdata(dtype=F32)[inside].mean()
        contra = nib.load(xtr.images[("cst", other)]).get_fdata(dtype=F32)[inside].mean()
        assert same > 0.3 and contra < 0.05


def test_xtract_1mm_equals_source_through_affines(data_dir, shared_data):
    """LAS source and RAS target share voxel centres: values must be copied exactly."""
    src = nib.load(shared_data / "sources" / "xtract" / "HCP_tracts_1" / "cst_l.nii.gz")
    out = nib.load(api.get_atlas("xtract", res=1, data_dir=data_dir).images[("cst", "L")])
    world = nib.affines.apply_affine(out.affine, [[10, 20, 30]])
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(src.affine), world)).astype(int)[0]
    out_data, src_data = out.get_fdata(dtype=F32), src.get_fdata(dtype=F32)
    assert out_data[10, 20, 30] == pytest.approx(src_data[tuple(ijk)])
    np.testing.assert_array_equal(out_data, np.clip(src_data[::-1], 0, 1))


@pytest.mark.parametrize("res", RES)
@pytest.mark.parametrize("name", sorted(GM_ATLAS_REGIONS))
def test_gm_regions_present_left_and_right(data_dir, name, res):
    atlas = api.get_atlas(name, res=res, data_dir=data_dir)
    table = atlas.labels
    assert list(table.columns) == ["index", "name", "hemisphere", "region"]
    data = np.asarray(nib.load(atlas.images[("all", "bilateral")]).dataobj)
    for region in GM_ATLAS_REGIONS[name]:
        for hemi in ("L", "R"):
            rows = table[(table.region == region) & (table.hemisphere == hemi)]
            assert len(rows) == 1, f"{name}: {region} {hemi}"
            assert (data == rows["index"].iloc[0]).sum() > 10
    assert atlas.groups["striatum"] == ["caudate", "putamen"]


@pytest.mark.parametrize("res", RES)
def test_jhu_regions(data_dir, res):
    atlas = api.get_atlas("jhu", res=res, data_dir=data_dir)
    table = atlas.labels
    for region in JHU_LATERAL:
        assert set(table[table.region == region].hemisphere) == {"L", "R"}, region
    assert table[table.region == "mcp"].hemisphere.tolist() == ["bilateral"]
    assert len(table) == 48


@pytest.mark.parametrize("name", ["jhu", "aal", "harvard-oxford", "neuromorphometrics"])
def test_dseg_hemispheres_match_geometry(data_dir, name):
    atlas = api.get_atlas(name, res=2, data_dir=data_dir)
    img = nib.load(atlas.images[("all", "bilateral")])
    data = np.asarray(img.dataobj)
    lateral = atlas.labels[atlas.labels.hemisphere.isin(["L", "R"])]
    coms = ndimage.center_of_mass(data > 0, data, lateral["index"].tolist())
    xs = nib.affines.apply_affine(img.affine, np.array(coms))[:, 0]
    assert np.all((xs < 0) == (lateral.hemisphere.to_numpy() == "L"))
    assert set(np.unique(data)) - {0} == set(atlas.labels["index"])


@pytest.mark.parametrize("res", RES)
def test_tissue_priors_match_the_templates_own_tissues(data_dir, res):
    """The ICBM 2009a priors carried onto MNI152NLin6Asym overlap the template's own tissue
    classes (Atropos K-means of the template T1w, an independent reading of its anatomy)
    better than the same maps placed by world coordinates alone."""
    import ants

    priors = api.get_tissue_priors(res=res, data_dir=data_dir)
    ref = nib.load(api.get_template(res=res))
    maps = {t: nib.load(p) for t, p in priors.items()}
    assert all(m.shape == ref.shape and np.allclose(m.affine, ref.affine) for m in maps.values())
    mask = np.asarray(nib.load(api.get_template(res=res, suffix="mask", desc="brain")
                               ).dataobj) > 0
    data = {t: m.get_fdata(dtype=F32) for t, m in maps.items()}
    total = data["GM"] + data["WM"] + data["CSF"]
    np.testing.assert_allclose(total[mask], 1.0, atol=1e-5)
    assert np.all(total[~mask] == 0)
    t1 = ants.image_read(str(api.get_template(res=res)))
    seg = ants.atropos(a=t1, x=ants.image_read(str(api.get_template(res=res, suffix="mask",
                                                                     desc="brain"))),
                       i="kmeans[3]", m="[0.1,1x1x1]", c="[5,0]", r=0)["segmentation"].numpy()
    source = load_manifest().resources["tissue-priors"]
    download = data_dir / ".downloads"
    for label, tissue in ((2, "GM"), (3, "WM")):
        own = seg == label
        placed = data[tissue] > 0.5
        dice = 2 * (own & placed).sum() / (own.sum() + placed.sum())
        raw = nib.load(download / source.spec[tissue.lower()])
        world = resample_from_to(raw, ref, order=1).get_fdata(dtype=F32) / 255 > 0.5
        dice_world = 2 * (own & world).sum() / (own.sum() + world.sum())
        # measured (2 mm): GM 0.70 -> 0.77, WM 0.79 -> 0.85
        assert dice > dice_world + 0.03, (tissue, dice, dice_world)
        assert dice > {"GM": 0.72, "WM": 0.8}[tissue], (tissue, dice)
