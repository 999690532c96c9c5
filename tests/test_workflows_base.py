"""Participant workflow: a missing modality skips its branch; neither modality is exit 18."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bids_app.bids.layout import build_layout
from bids_app.bids.plan import plan_participant
from bids_app.bids.queries import collect_subject_sessions
from bids_app.cli.run import main
from bids_app.settings import ExecutionSettings, Settings
from bids_app.workflows.base import init_alsmri_wf


def _copy_without(src: Path, dest: Path, datatype: str) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(datatype))
    return dest


def _branches(bids: Path, tmp_path: Path, built_data_dir: Path) -> set[str]:
    layout = build_layout(bids, work_dir=tmp_path / "work", validate=False)
    records = collect_subject_sessions(layout)
    settings = Settings(execution=ExecutionSettings(
        bids_dir=bids, output_dir=tmp_path / "out", analysis_level="participant",
        work_dir=tmp_path / "work", data_dir=built_data_dir))
    plans = [plan_participant(record, settings.dwi) for record in records]
    wf = init_alsmri_wf(plans=plans, settings=settings)
    return {name.split(".")[1] for name in wf.list_node_names()}


@pytest.mark.parametrize("dropped,kept", [("anat", "dwi_wf"), ("dwi", "anat_wf")])
def test_missing_modality_skips_its_branch(ds_xa30, built_data_dir, tmp_path, dropped, kept):
    bids = _copy_without(ds_xa30, tmp_path / "bids", dropped)
    assert _branches(bids, tmp_path, built_data_dir) == {kept}


def test_neither_modality_exits_18(ds_xa30, tmp_path, capsys):
    bids = tmp_path / "bids"
    shutil.copytree(ds_xa30, bids, ignore=shutil.ignore_patterns("anat", "dwi"))
    (bids / "sub-01" / "func").mkdir(parents=True)
    (bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz").write_bytes(b"")
    rc = main([str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
               "--skip-bids-validation"])
    assert rc == 18
    err = capsys.readouterr().err.strip().splitlines()
    assert "no DWI or T1w data matched" in err[-1] and str(bids) in err[-1]
    assert not (tmp_path / "out" / "sub-01").exists()
