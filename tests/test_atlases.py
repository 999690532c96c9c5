"""Fast tests of the atlas manager: manifest, label parsing, transports, errors, atomicity."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_app.atlases import api, builders, layout
from bids_app.atlases.build import build_resource, recipe_hash
from bids_app.atlases.labels import canonical_region, component_table, split_hemisphere
from bids_app.atlases.manifest import Origin, Resource, SourceFile, load_manifest
from bids_app.atlases.transport import HttpTransport, MirrorTransport, fetch_verified
from bids_app.cli.fetch_data import main as fetch_main
from bids_app.errors import BadDataError, MissingInputError

ATLASES = ("hcp842", "hcp1065", "xtract", "jhu", "aal", "harvard-oxford", "neuromorphometrics")


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_manifest_lists_every_atlas_with_licence_and_citation(manifest):
    for name in ATLASES + ("MNI152NLin6Asym", "fa-template", "tissue-priors"):
        res = manifest.resources[name]
        assert res.license and res.citation and res.commercial_use, name
    assert manifest.space == "MNI152NLin6Asym" and manifest.resolutions == (1, 2)


def test_manifest_checksums_match_shared_sha256sums(manifest, shared_data):
    """Independent reference: the pack's own SHA256SUMS."""
    sums = {}
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel.lstrip("*")] = digest
    for res in manifest.resources.values():
        for src in res.sources:
            assert src.url or (src.origin and src.origin.pypi), f"{src.path} has no origin"
            if f"sources/{src.path}" not in sums:  # a wheel member the pack does not hold
                assert src.origin.pypi and src.origin.version, (res.name, src.path)
                continue
            assert sums[f"sources/{src.path}"] == src.sha256, (res.name, src.path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Precentral_L", ("Precentral", "L")),
        ("R_Corticospinal_Tract", ("Corticospinal_Tract", "R")),
        ("Left_Thalamus_Proper", ("Thalamus_Proper", "L")),
        ("Middle_Cerebellar_Peduncle", ("Middle_Cerebellar_Peduncle", "bilateral")),
        ("Vermis_1_2", ("Vermis_1_2", "bilateral")),
    ],
)
def test_split_hemisphere(name, expected):
    assert split_hemisphere(name) == expected


def test_canonical_region_rules():
    assert canonical_region("Fornix_(Cres)+Stria_Terminalis", renames={}) == (
        "fornix_cres_stria_terminalis")
    assert canonical_region("PrG_precentral_gyrus", renames={"precentral_gyrus": "precentral"},
                            drop_abbreviation=True) == "precentral"
    assert canonical_region("Accumbens_Area", renames={}, drop_abbreviation=True) == (
        "accumbens_area")


def test_component_table_swap_exclude_override():
    labels = {1: "Right_Cerebral_White_Matter", 4: "Right_Thalamus", 8: "Brain-Stem",
              7: "Subcallosal_Cortex"}
    table = component_table(labels, renames={"Thalamus": "thalamus"},
                            overrides={7: "Precentral_Gyrus"},
                            exclude=["Cerebral_White_Matter"], swap_hemispheres=True)
    assert list(table["index"]) == [4, 7, 8]
    assert table.set_index("index").loc[4, ["hemisphere", "region"]].tolist() == [
        "L", "thalamus"]
    assert table.set_index("index").loc[7, "region"] == "precentral_gyrus"
    assert table.set_index("index").loc[8, "hemisphere"] == "bilateral"


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ALSMRI_DATA", str(tmp_path / "d"))
    assert api.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("ALSMRI_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert api.default_data_dir() == tmp_path / "xdg" / "alsmri" / "data"


def test_get_template_from_templateflow(shared_data):
    for res, shape in ((1, (182, 218, 182)), (2, (91, 109, 91))):
        t1w = api.get_template(res=res)
        mask = api.get_template(res=res, suffix="mask", desc="brain")
        assert t1w.resolve().is_relative_to((shared_data / "templateflow").resolve())
        assert nib.load(t1w).shape == shape and nib.load(mask).shape == shape
        assert "desc-brain_mask" in mask.name and "desc" not in t1w.name


@pytest.mark.parametrize("name", ATLASES)
def test_missing_data_dir_says_fetch_data(tmp_path, name):
    with pytest.raises(MissingInputError, match="alsmri fetch-data"):
        api.get_atlas(name, res=2, data_dir=tmp_path / "empty")


def test_missing_fa_template_says_fetch_data(tmp_path):
    with pytest.raises(MissingInputError, match="alsmri fetch-data"):
        api.get_template(res=2, suffix="FA", data_dir=tmp_path)


def test_list_prints_licences_and_citations(capsys):
    assert fetch_main(["--list"]) == 0
    out = capsys.readouterr().out
    for text in ("CC BY-NC", "FSL licence", "non-commercial", "CC BY-SA 4.0",
                 "Yeh FC", "Warrington S", "Tzourio-Mazoyer N", "Mori S", "Neuromorphometrics"):
        assert text in out, text
    for name in ATLASES:
        assert f"\n{name} [" in out


def test_citations_and_licenses():
    refs = api.citations(["hcp842", "aal", "hcp842"])
    assert any("Yeh FC" in r for r in refs) and any("Tzourio-Mazoyer" in r for r in refs)
    assert len(refs) == len(set(refs))
    info = {i.name: i for i in api.licenses()}
    assert info["neuromorphometrics"].non_commercial and info["jhu"].non_commercial
    assert info["xtract"].non_commercial and not info["hcp842"].non_commercial


def _mirror_copy(shared_data: Path, tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_data / "sources", mirror)
    for path in mirror.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return mirror


def _derived_files(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.is_file() and layout.DOWNLOAD_DIR not in p.parts]


def test_corrupt_source_exits_65_and_writes_nothing(shared_data, tmp_path, capsys, manifest):
    mirror = _mirror_copy(shared_data, tmp_path)
    victim = mirror / "hcp842" / "CST_L.trk.tar.xz"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    assert fetch_main(["--mirror", str(mirror), "--dest", str(dest)]) == 65
    err = capsys.readouterr().err
    expected = next(s.sha256 for s in manifest.resources["hcp842"].sources
                    if s.path == "hcp842/CST_L.trk.tar.xz")
    import hashlib

    assert "hcp842" in err and "hcp842/CST_L.trk.tar.xz" in err
    assert expected in err and hashlib.sha256(bytes(data)).hexdigest() in err
    assert _derived_files(dest) == []


def test_missing_source_exits_66(shared_data, tmp_path, capsys):
    mirror = _mirror_copy(shared_data, tmp_path)
    (mirror / "neuroparc" / "JHU.csv").unlink()
    assert fetch_main(["--mirror", str(mirror), "--dest", str(tmp_path / "d"), "--only",
                       "jhu"]) == 66
    assert "jhu" in capsys.readouterr().err
    assert _derived_files(tmp_path / "d") == []


def test_unknown_resource_is_usage_error(tmp_path, shared_data):
    assert fetch_main(["--mirror", str(shared_data / "sources"), "--dest", str(tmp_path),
                       "--only", "nonsense"]) == 64


def test_http_transport_same_path_as_mirror(shared_data, tmp_path):
    """The online transport (urllib; file:// URL here) yields the same verified bytes."""
    mirror = shared_data / "sources"
    origin = Origin(name="local", url=(mirror.as_uri() + "/"))
    srcs = tuple(SourceFile(path=p, sha256=d, origin=origin, member=p) for p, d in [
        ("neuroparc/JHU.csv", "52604a9ef2fe8d6309379223f83caeccf7b67c3f9d8bc5633de6aae6842c48cc"),
    ])
    res = Resource(name="t", kind="dseg", builder="label_atlas", sources=srcs, spec={})
    online = fetch_verified(HttpTransport(tmp_path / "cache"), res)
    offline = fetch_verified(MirrorTransport(mirror), res)
    assert online["neuroparc/JHU.csv"].read_bytes() == offline["neuroparc/JHU.csv"].read_bytes()
    assert online["neuroparc/JHU.csv"].is_relative_to(tmp_path / "cache")
    bad = Resource(name="t", kind="dseg", builder="label_atlas", spec={}, sources=(
        SourceFile(path="neuroparc/JHU.csv", sha256="0" * 64, origin=origin,
                   member="neuroparc/JHU.csv"),))
    with pytest.raises(BadDataError, match="expected sha256 0{64}"):
        fetch_verified(HttpTransport(tmp_path / "cache2"), bad)


def test_failed_build_leaves_no_file(tmp_path, monkeypatch):
    grid = builders.Grid((4, 4, 4), np.eye(4))

    def half_then_fail(resource, sources, grids, *, space):
        yield "atlas-x/first.nii.gz", builders.make_image(np.ones((4, 4, 4)), grid, np.float32)
        yield "atlas-x/table.tsv", pd.DataFrame({"index": [1]})
        raise BadDataError("boom")

    monkeypatch.setitem(builders.BUILDERS, "failing", half_then_fail)
    res = Resource(name="x", kind="dseg", builder="failing", sources=(), spec={})
    with pytest.raises(BadDataError, match="boom"):
        build_resource(res, {}, {1: grid}, tmp_path, space="S", recipe=recipe_hash(res, {}))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_rebuilds_only_a_tampered_resource(shared_data, tmp_path):
    dest = tmp_path / "d"
    args = ["--mirror", str(shared_data / "sources"), "--dest", str(dest), "--only", "jhu", "aal"]
    assert fetch_main(args) == 0
    jhu = api.get_atlas("jhu", res=2, data_dir=dest).images[("all", "bilateral")]
    aal = api.get_atlas("aal", res=2, data_dir=dest).images[("all", "bilateral")]
    jhu.write_bytes(b"garbage")
    aal_mtime = aal.stat().st_mtime_ns
    assert fetch_main(args) == 0
    assert nib.load(jhu).shape == (91, 109, 91)  # rebuilt
    assert aal.stat().st_mtime_ns == aal_mtime  # untouched


def test_mirror_then_online_fetches_only_missing_wheel_members(shared_data, tmp_path):
    """Wheel members absent from the mirror come from the online transport; anything else
    still comes from the mirror (or fails there)."""
    from bids_app.atlases.transport import MirrorThenOnline

    asked = []

    class Online:
        def fetch(self, resource, source):
            asked.append(source.path)
            path = tmp_path / source.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            return path

    mirror = MirrorTransport(shared_data / "sources")
    chain = MirrorThenOnline(mirror, Online())
    wheel = Origin(name="w", pypi="pkg", version="1.0")
    url = Origin(name="u", url="https://example.invalid/")
    res = Resource(name="t", kind="template", builder="x", sources=(), spec={})
    held = SourceFile(path="neuroparc/JHU.csv", sha256="0" * 64, origin=wheel, member="m")
    assert chain.fetch(res, held) == shared_data / "sources" / "neuroparc/JHU.csv"
    absent = SourceFile(path="pkg/absent.nii.gz", sha256="0" * 64, origin=wheel, member="m")
    assert chain.fetch(res, absent) == tmp_path / "pkg/absent.nii.gz"
    with pytest.raises(MissingInputError, match="not found in mirror"):
        chain.fetch(res, SourceFile(path="x/absent.csv", sha256="0" * 64, origin=url))
    assert asked == ["pkg/absent.nii.gz"]
