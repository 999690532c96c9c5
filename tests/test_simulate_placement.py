"""The simulator's independent placement on the real ds-xa30 anatomy, and its truth.

Uses the base anatomy cached under the repository's git-ignored ``.cache/simulate`` (shared
with ``tests/test_simulate_dataset.py``; built once, ~2-6 min on 2 cores, then seconds); each
test simulates one or two participants without the T1w atrophy (a few seconds each).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel

from bids_app.simulate import cohort, tensors, writer
from bids_app.simulate.base import SourceSubject, load_or_build_base
from bids_app.simulate.dataset import BASE_SEED, atlas_inputs, focal_positions
from bids_app.simulate.effects import load_effects

REPO = Path(__file__).resolve().parents[1]
SEED = 13
#: no head motion, no deformation: the participant's grid is the source grid
STILL = {"head": {"max_rotation_deg": 0.0, "max_translation_mm": 0.0, "scale_sd": 0.0},
         "deformation": {"rms_mm": 0.0, "smoothness_mm": 15.0}}


@pytest.fixture(scope="module")
def effects():
    return load_effects()


@pytest.fixture(scope="module")
def atlases(built_data_dir, effects):
    return atlas_inputs(effects, data_dir=built_data_dir)


@pytest.fixture(scope="module")
def base(ds_xa30, atlases):
    return load_or_build_base(SourceSubject.from_bids(ds_xa30), atlases,
                              cache_dir=REPO / ".cache" / "simulate", seed=BASE_SEED)


@pytest.fixture(scope="module")
def source_tensors(base):
    """FA, |principal direction| in world axes and world coordinates of the source field."""
    evals, evecs = tensors.eigen(base.tensors[base.mask].astype(np.float64))
    fa = np.zeros(base.mask.shape)
    fa[base.mask] = tensors.metrics(evals)["fa"]
    e1 = np.zeros(base.mask.shape + (3,))
    e1[base.mask] = np.abs(evecs[:, :, 0] @ base.bvec_frame.T)
    ijk = np.indices(base.mask.shape).reshape(3, -1).T
    xyz = (ijk @ base.dwi_affine[:3, :3].T + base.dwi_affine[:3, 3]).reshape(
        base.mask.shape + (3,))
    return fa, e1, xyz


def _patient(effects, **changes):
    plan = next(p for p in cohort.plan_cohort(effects, n_patients=2, n_controls=1, seed=SEED)
                if p.group == "ALS")
    return dataclasses.replace(plan, gm_changes={}, **changes)


def _simulate(base, plan, effects):
    tissue = cohort.GmTissue(probability=np.zeros(base.t1.shape, np.float32), regions={})
    return cohort.simulate_participant(base, plan, effects, seed=SEED, tissue=tissue)


def _fit(dwi, base, mask):
    gtab = gradient_table(base.bvals, bvecs=base.bvecs)
    fit = TensorModel(gtab, fit_method="OLS").fit(dwi, mask=mask)
    return {"fa": fit.fa, "md": fit.md, "ad": fit.ad, "rd": fit.rd}


def test_placement_is_not_the_measurements(base, atlases, effects):
    """Every tract comes from another atlas, through the T1w; the rigid T1w -> DWI step is
    small (same head, same session)."""
    for key, region in atlases.tracts.items():
        assert region.name.split("/")[0] != key.split("/")[0], key
        assert base.provenance["regions"][key] == region.name
    assert "FA registration" in base.provenance["placement"]
    qc = base.provenance["placement_qc"]["t1w_to_dwi"]
    assert qc["rotation_deg"] < 5 and np.linalg.norm(qc["translation_mm"]) < 6


def test_independent_cst_lies_on_the_subjects_own_cst_core(base, source_tensors):
    """Atlas-free core of the subject: strongly anisotropic voxels running inferior-superior
    at the level of the cerebral peduncle and internal capsule (template z -15..+20 mm).  The
    independently placed CST of that side covers it, the other side's does not."""
    fa, e1, xyz = source_tensors
    z = base.template_z
    band = base.mask & (z > -15) & (z < 20)
    core = band & (fa > 0.45) & (e1[..., 2] > 0.85)
    midline = xyz[base.mask][:, 0].mean()
    for hemi, other, side in (("L", "R", xyz[..., 0] < midline),
                              ("R", "L", xyz[..., 0] > midline)):
        own = core & side
        w = base.weights[f"hcp842/cst/{hemi}"]
        assert own.sum() > 40, hemi
        assert w[own].mean() > 0.25, hemi
        assert w[own].mean() > 20 * w[band].mean(), hemi  # enriched ~80x on ds-xa30
        assert base.weights[f"hcp842/cst/{other}"][own].mean() < 0.02, hemi
        in_band = w * band
        centre = (xyz * in_band[..., None]).sum(axis=(0, 1, 2)) / in_band.sum()
        assert np.linalg.norm(centre - xyz[own].mean(axis=0)) < 12.0, hemi  # 4 voxels
        # the tract core runs inferior-superior and is anisotropic
        tract_core = base.mask & (w > 0.4)
        assert e1[tract_core][:, 2].mean() > 0.7 and fa[tract_core].mean() > 0.3, hemi


def test_focal_lesion_sits_where_declared(base, atlases, effects, source_tensors):
    """With the participant on the source grid and no noise, the FA lost to the focal lesion
    alone is centred at the declared template height, inside the CST, and raises the radial
    diffusivity while the axial one stays."""
    still = {**effects, **STILL, "snr": None}
    plan = _patient(effects)
    spec = effects["focal"]["hcp842/cst"]
    assert all(c < 0 for c in plan.focal_changes.values())
    with_focal = _simulate(base, plan, still)
    without = _simulate(base, dataclasses.replace(
        plan, focal_changes={k: 0.0 for k in plan.focal_changes}), still)
    mask = base.mask
    a, b = _fit(with_focal.dwi, base, mask), _fit(without.dwi, base, mask)
    loss = np.clip(b["fa"] - a["fa"], 0, None) * mask
    _, _, xyz = source_tensors
    midline = xyz[mask][:, 0].mean()
    for hemi, side in (("L", xyz[..., 0] < midline), ("R", xyz[..., 0] > midline)):
        part = loss * side
        centre = (part * np.nan_to_num(base.template_z)).sum() / part.sum()
        assert centre == pytest.approx(spec["z_mm"], abs=3.0), hemi
        cst = base.weights[f"hcp842/cst/{hemi}"] > 0.05
        assert part[cst].sum() / part.sum() > 0.9, hemi
        focal_core = with_focal.maps[f"focal/hcp842/cst/{hemi}"] > 0.4
        assert focal_core.sum() > 5, hemi
        assert np.mean(a["rd"][focal_core] / b["rd"][focal_core]) > 1.05, hemi
        assert np.mean(a["ad"][focal_core] / b["ad"][focal_core]) == pytest.approx(1, abs=0.01)
    for row in with_focal.focal:  # the planted focal change is the asked one
        assert row["fa_change"] == pytest.approx(row["target_fa_change"], abs=0.005)
    # the declared position along the tract: on the centre line of the placement map
    positions = focal_positions(base, atlases, effects)["hcp842/cst"]
    for hemi, pos in positions["hemispheres"].items():
        bottom, top = pos["centre_line_z_mm"]
        straight = (spec["z_mm"] - bottom) / (top - bottom)
        assert pos["fraction_of_length"]["centre"] == pytest.approx(straight, abs=0.1), hemi
        low, high = pos["fraction_of_length"]["fwhm"]
        assert low < pos["fraction_of_length"]["centre"] < high
        assert 0 < pos["fraction_of_length_in_fov"]["centre"] < 1
        assert pos["fov_floor_z_mm"] < spec["z_mm"] - spec["sigma_mm"]  # inside the FOV


def test_truth_equals_dipy_on_the_written_noise_free_data(base, effects, tmp_path):
    """The truth of a moved, deformed participant is what dipy fits on its written noise-free
    DWI, averaged with its written truth maps: nothing in the truth comes from a shortcut."""
    plan = _patient(effects)
    sim = _simulate(base, plan, {**effects, "snr": None})
    writer.write_participant_images(
        tmp_path, plan.participant_id, dwi=sim.dwi, dwi_affine=base.dwi_affine,
        bvals=base.bvals, bvecs=base.bvecs, dwi_sidecar=base.dwi_sidecar, t1w=sim.t1w,
        t1_affine=base.t1_affine, t1_sidecar=base.t1_sidecar)
    paths = writer.write_truth_maps(tmp_path, plan.participant_id, sim.maps,
                                    affine=base.dwi_affine)
    assert json.loads((tmp_path / writer.TRUTH_MAPS_DIR / "dataset_description.json")
                      .read_text())["DatasetType"] == "derivative"
    dwi = nib.load(tmp_path / plan.participant_id / "dwi" / f"{plan.participant_id}_dwi.nii.gz")
    maps = {key: nib.load(tmp_path / rel).get_fdata() for key, rel in paths.items()}
    support = np.any([m > 0 for m in maps.values()], axis=0)
    fitted = _fit(dwi.get_fdata(), base, support)
    rows = [("tract", t) for t in sim.tracts] + [("focal", f) for f in sim.focal]
    assert len(rows) == len(maps) == 9
    for kind, row in rows:
        w = maps[f"{kind}/{row['atlas']}/{row['region']}/{row['hemisphere']}"]
        assert w.sum() > 5
        for metric in ("fa", "md", "ad", "rd"):
            value = (w * np.nan_to_num(fitted[metric])).sum() / w.sum()
            assert value == pytest.approx(row[metric], rel=5e-4), (kind, row["region"],
                                                                   row["hemisphere"], metric)
