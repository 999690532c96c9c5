"""pybids layout construction and typed query records (no image content is read)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bids_app.bids.layout import build_layout
from bids_app.bids.queries import (
    collect_subject_sessions,
    load_filter_file,
    parse_labels,
    participants_file,
    phenotype_files,
    select_t1w,
)
from bids_app.errors import BadDataError, NoDataError, UsageError, ValidationFailed


@pytest.fixture(scope="module")
def ds114_layout(ds114, tmp_path_factory):
    return build_layout(ds114, work_dir=tmp_path_factory.mktemp("w"))


def test_ds114_one_record_per_session(ds114_layout, ds114):
    records = collect_subject_sessions(ds114_layout)
    assert len(records) == 20
    assert {r.subject for r in records} == {f"{i:02d}" for i in range(1, 11)}
    rec = next(r for r in records if r.subject == "03" and r.session == "test")
    assert rec.label == "sub-03_ses-test"
    assert len(rec.dwi_runs) == 1
    run = rec.dwi_runs[0]
    assert run.dwi.name == "sub-03_ses-test_dwi.nii.gz"
    # inheritance principle: the top-level dwi.bval/bvec apply to every DWI
    assert run.bval == ds114 / "dwi.bval" and run.bvec == ds114 / "dwi.bvec"
    assert rec.t1w_selected.name == "sub-03_ses-test_T1w.nii.gz"
    assert rec.entities == {"subject": "03", "session": "test"}


def test_ds114_session_filter(ds114_layout):
    records = collect_subject_sessions(ds114_layout, participant_label=["05"],
                                       session_label=["retest"])
    assert [(r.subject, r.session) for r in records] == [("05", "retest")]


def test_ds114_bids_filters(ds114_layout):
    # a filter that matches no DWI leaves the T1w in place (DWI branch skipped)
    records = collect_subject_sessions(ds114_layout, participant_label=["01"],
                                       bids_filters={"dwi": {"acquisition": "nothing"}})
    assert all(not r.dwi_runs and r.t1w_selected for r in records)
    with pytest.raises(NoDataError, match="no DWI or T1w"):
        collect_subject_sessions(ds114_layout, participant_label=["01"],
                                 bids_filters={"dwi": {"acquisition": "x"},
                                               "t1w": {"acquisition": "x"}})


def test_unknown_labels(ds114_layout):
    with pytest.raises(NoDataError, match="99"):
        collect_subject_sessions(ds114_layout, participant_label=["01", "99"])
    with pytest.raises(NoDataError, match="session label"):
        collect_subject_sessions(ds114_layout, participant_label=["01"], session_label=["x"])
    # one unknown label among known ones is an error too, not silently dropped
    with pytest.raises(NoDataError) as info:
        collect_subject_sessions(ds114_layout, session_label=["test", "nope"])
    msg = str(info.value)
    assert info.value.exit_code == 18 and "\n" not in msg
    assert "session label(s) nope not found" in msg and str(ds114_layout.root) in msg


def test_xa30_two_runs_with_metadata(ds_xa30, tmp_path):
    layout = build_layout(ds_xa30, work_dir=tmp_path)
    (rec,) = collect_subject_sessions(layout)
    assert rec.session is None and rec.label == "sub-01"
    dirs = {r.entities["direction"]: r for r in rec.dwi_runs}
    assert set(dirs) == {"AP", "PA"}
    assert dirs["AP"].phase_encoding_direction == "j-"
    assert dirs["PA"].phase_encoding_direction == "j"
    assert dirs["AP"].bval.name == "sub-01_dir-AP_dwi.bval"
    assert dirs["PA"].bvec.name == "sub-01_dir-PA_dwi.bvec"
    assert rec.t1w_selected == ds_xa30 / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert participants_file(ds_xa30) == ds_xa30 / "participants.tsv"
    assert phenotype_files(ds_xa30) == []


def test_layout_index_reused(ds_xa30, tmp_path):
    build_layout(ds_xa30, work_dir=tmp_path)
    dbs = list((tmp_path / "bids_db").iterdir())
    assert len(dbs) == 1 and any(dbs[0].iterdir())
    layout = build_layout(ds_xa30, work_dir=tmp_path)
    assert layout.get_subjects() == ["01"]


def test_missing_bval_is_reported(ds_xa30, tmp_path):
    bids = tmp_path / "ds"
    shutil.copytree(ds_xa30, bids)
    (bids / "sub-01" / "dwi" / "sub-01_dir-AP_dwi.bval").unlink()
    layout = build_layout(bids)
    with pytest.raises(BadDataError, match="sub-01_dir-AP_dwi.nii.gz: no bval file") as info:
        collect_subject_sessions(layout)
    assert info.value.exit_code == 65


def test_session_falls_back_to_subject_level_anat(ds_xa30, tmp_path):
    bids = tmp_path / "ds"
    shutil.copytree(ds_xa30, bids)
    sub = bids / "sub-01"
    (sub / "ses-1").mkdir()
    for f in list((sub / "dwi").iterdir()):
        new = sub / "ses-1" / "dwi" / f.name.replace("sub-01_", "sub-01_ses-1_")
        new.parent.mkdir(exist_ok=True)
        f.rename(new)
    (sub / "dwi").rmdir()
    layout = build_layout(bids)
    (rec,) = collect_subject_sessions(layout)
    assert rec.session == "1" and len(rec.dwi_runs) == 2
    assert rec.t1w_selected == sub / "anat" / "sub-01_T1w.nii.gz"


def test_select_t1w_rule():
    paths = [Path("sub-01_run-2_T1w.nii.gz"), Path("sub-01_run-10_T1w.nii.gz"),
             Path("sub-01_run-1_T1w.nii.gz")]
    assert select_t1w(paths).name == "sub-01_run-1_T1w.nii.gz"
    assert select_t1w([]) is None


def test_parse_labels(tmp_path):
    assert parse_labels(["sub-01", "02", "01"], "sub-") == ("01", "02")
    f = tmp_path / "labels"
    f.write_text("sub-a  b\nc\n")
    assert parse_labels([str(f)], "sub-") == ("a", "b", "c")
    with pytest.raises(UsageError, match="alphanumeric"):
        parse_labels(["01_x"], "sub-")


def test_filter_file(tmp_path):
    good = tmp_path / "f.json"
    good.write_text('{"dwi": {"acquisition": "hardi"}, "t1w": {"run": 1}}')
    assert load_filter_file(good)["t1w"] == {"run": 1}
    bad = tmp_path / "bad.json"
    bad.write_text('{"func": {}}')
    with pytest.raises(UsageError, match="unknown data type 'func'"):
        load_filter_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(UsageError, match="JSON object"):
        load_filter_file(bad)


def test_validation_requires_description(ds114, tmp_path):
    bids = tmp_path / "ds"
    shutil.copytree(ds114, bids)
    (bids / "dataset_description.json").write_text('{"Name": "x"}')
    with pytest.raises(ValidationFailed, match="BIDSVersion"):
        build_layout(bids)
    assert build_layout(bids, validate=False).get_subjects()


def test_label_file_only_when_not_a_valid_label(tmp_path, monkeypatch):
    """A file named like a label does not hijack the label; other paths are label files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "01").write_text("02 03\n")
    assert parse_labels(["01"], "sub-") == ("01",)
    assert parse_labels(["sub-01"], "sub-") == ("01",)
    assert parse_labels(["./01"], "sub-") == ("02", "03")
    (tmp_path / "labels.txt").write_text("sub-04\n05\n05\n")
    assert parse_labels(["labels.txt"], "sub-") == ("04", "05")
    with pytest.raises(UsageError, match=r"'missing.txt' \(and not an existing label file\)"):
        parse_labels(["missing.txt"], "sub-")
    (tmp_path / "bad.txt").write_text("06 07_x\n")
    with pytest.raises(UsageError, match=r"'07_x' in label file bad.txt"):
        parse_labels(["bad.txt"], "sub-")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UsageError, match="empty.txt: empty label file"):
        parse_labels(["empty.txt"], "sub-")  # not "every participant"
