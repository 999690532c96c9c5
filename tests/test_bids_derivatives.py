"""Derivative naming, dataset description and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bids_app import __version__
from bids_app.bids.derivatives import (
    build_path,
    dataset_description,
    init_derivatives,
    split_extension,
    write_atomic,
)
from bids_app.errors import CannotCreateOutput


def test_entity_order():
    path = build_path({"subject": "01", "session": "a", "param": "fa", "model": "tensor",
                       "space": "dwi"}, datatype="dwi", suffix="dwimap", extension=".nii.gz")
    assert path == Path("sub-01/ses-a/dwi/sub-01_ses-a_space-dwi_model-tensor_param-fa_dwimap"
                        ".nii.gz")
    xfm = build_path({"subject": "01", "from_space": "T1w", "to_space": "MNI152NLin6Asym",
                      "mode": "image"}, datatype="anat", suffix="xfm", extension=".h5")
    assert xfm.name == "sub-01_from-T1w_to-MNI152NLin6Asym_mode-image_xfm.h5"
    run = build_path({"subject": "01", "desc": "preproc", "run": "2", "direction": "AP"},
                     datatype="dwi", suffix="dwi", extension=".nii.gz")
    assert run.name == "sub-01_dir-AP_run-2_desc-preproc_dwi.nii.gz"
    with pytest.raises(ValueError, match="unknown BIDS entities"):
        build_path({"subject": "01", "colour": "x"}, datatype="dwi", suffix="x", extension="")
    with pytest.raises(ValueError, match="alphanumeric"):
        build_path({"subject": "01", "desc": "a_b"}, datatype="dwi", suffix="x", extension="")


def test_split_extension():
    assert split_extension("/a/b.nii.gz") == ".nii.gz"
    assert split_extension("x_dwi.bvec") == ".bvec"
    assert split_extension("x.tsv") == ".tsv"


def test_description_source_doi(tmp_path, monkeypatch):
    (tmp_path / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "BIDSVersion": "1.8.0",
         "DatasetDOI": "https://doi.org/10.18112/openneuro.ds000114.v1.0.2"}))
    desc = dataset_description(tmp_path)
    assert desc["SourceDatasets"] == [{"DOI": "doi:10.18112/openneuro.ds000114.v1.0.2"}]
    assert desc["GeneratedBy"][0]["Version"] == __version__
    assert "Container" not in desc["GeneratedBy"][0]
    monkeypatch.setenv("ALSMRI_CONTAINER_TAG", f"alsmri:{__version__}")
    out = init_derivatives(tmp_path / "out", tmp_path)
    written = json.loads((out / "dataset_description.json").read_text())
    assert written["GeneratedBy"][0]["Container"] == {"Type": "docker",
                                                     "Tag": f"alsmri:{__version__}"}


def test_description_without_doi(ds_xa30):
    desc = dataset_description(ds_xa30)
    assert desc["DatasetType"] == "derivative"
    assert "GeneratedBy" in desc
    # BIDS DatasetLinks values are URIs, not bare paths
    assert desc["DatasetLinks"] == {"raw": ds_xa30.resolve().as_uri()}
    assert desc["DatasetLinks"]["raw"].startswith("file:///")


def test_write_atomic_interrupted_leaves_nothing(tmp_path):
    class Boom(Exception):
        pass

    class Exploding:
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 1:
                raise Boom
            return b"x" * 10

    dest = tmp_path / "sub-01_T1w.nii.gz"
    src = tmp_path / "src.bin"
    src.write_bytes(b"y" * (3 << 20))
    import builtins

    real_open = builtins.open

    def fake_open(path, mode="r", *a, **k):
        if str(path) == str(src):
            return _Ctx(Exploding())
        return real_open(path, mode, *a, **k)

    class _Ctx:
        def __init__(self, obj):
            self.obj = obj

        def __enter__(self):
            return self.obj

        def __exit__(self, *exc):
            return False

    builtins.open = fake_open
    try:
        with pytest.raises(Boom):
            write_atomic(dest, src=src)
    finally:
        builtins.open = real_open
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temp file left behind either


def test_write_atomic_replaces(tmp_path):
    dest = tmp_path / "a" / "b.tsv"
    write_atomic(dest, "one\n")
    write_atomic(dest, "two\n")
    assert dest.read_text() == "two\n"
    assert oct(os.stat(dest).st_mode & 0o777) == "0o644"


def test_init_derivatives_blocked(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(CannotCreateOutput, match="cannot create output directory"):
        init_derivatives(blocker / "out", tmp_path)


def test_datasink_writes_sidecar_with_sources(ds_xa30, tmp_path):
    from bids_app.interfaces.bids import DerivativesDataSink

    src = tmp_path / "fa.nii.gz"
    src.write_bytes(b"data")
    dwi = ds_xa30 / "sub-01" / "dwi" / "sub-01_dir-AP_dwi.nii.gz"
    res = DerivativesDataSink(
        base_directory=str(tmp_path / "out"), source_file=[str(dwi)], in_file=str(src),
        datatype="dwi", space="dwi", model="tensor", param="fa", suffix="dwimap",
        meta_dict={"Model": "tensor"}).run()
    out = Path(res.outputs.out_file)
    assert out == tmp_path / "out/sub-01/dwi/sub-01_space-dwi_model-tensor_param-fa_dwimap.nii.gz"
    assert out.read_bytes() == b"data"
    meta = json.loads(Path(res.outputs.out_meta).read_text())
    assert meta == {"Sources": ["bids:raw:sub-01/dwi/sub-01_dir-AP_dwi.nii.gz"],
                    "Model": "tensor"}
