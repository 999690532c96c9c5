"""The persistent dataset index: complete or absent, checked before reuse, read-only when given.

The fault tests use real processes and real files: an ``alsmri`` run killed with SIGKILL
while it indexes, and index files damaged the way an interrupted write or transfer leaves
them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bids_app.bids.layout import COMPLETE_MARK, INDEX_FILE, build_layout
from bids_app.errors import BadDataError, UsageError

ALSMRI = Path(sys.executable).with_name("alsmri")


def make_dataset(root: Path, n_subjects: int) -> Path:
    """A BIDS layout of ``n_subjects`` with empty image placeholders (slow enough to index)."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "many", "BIDSVersion": "1.9.0"}))
    (root / "dwi.bval").write_text("0 1000\n")
    (root / "dwi.bvec").write_text("0 1\n0 0\n0 0\n")
    for i in range(1, n_subjects + 1):
        sub = f"sub-{i:03d}"
        for datatype, suffix in (("anat", "T1w"), ("dwi", "dwi")):
            folder = root / sub / datatype
            folder.mkdir(parents=True)
            (folder / f"{sub}_{suffix}.nii.gz").write_bytes(b"")
            (folder / f"{sub}_{suffix}.json").write_text('{"PhaseEncodingDirection": "j"}')
    return root


def _index_files(work: Path) -> list[Path]:
    return sorted((work / "bids_db").rglob(INDEX_FILE)) if (work / "bids_db").exists() else []


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under ``folder``."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_killed_while_indexing_leaves_no_index_and_rerun_succeeds(tmp_path):
    """SIGKILL during indexing: nothing under the final name; the next run indexes again.

    Before the fix the killed run left a half-built ``layout_index.sqlite`` (schema and
    dataset record, no files) that every later run reused: exit 18 "not found (available:
    none)".
    """
    bids = make_dataset(tmp_path / "ds", 300)
    work, out = tmp_path / "work", tmp_path / "out"
    cmd = [str(ALSMRI), str(bids), str(out), "participant", "--participant-label", "001",
           "--boilerplate-only", "-w", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _index_files(work) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before its index appeared"
    os.kill(proc.pid, signal.SIGKILL)  # ~3 s of indexing left for 300 participants
    proc.wait()
    final = [p for p in _index_files(work) if p.parent.parent.name == "bids_db"]
    assert final == [], f"a killed run left an index under its final name: {final}"

    rerun = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "sub-001" in (out / "logs" / "CITATION.md").read_text()
    # the killed run's temporary index was cleaned up, one complete index remains
    (db,) = _index_files(work)
    assert db.parent.parent.name == "bids_db"
    assert build_layout(bids, work_dir=work).get_subjects()[-1] == "300"


def _complete_index(ds_xa30: Path, work: Path) -> Path:
    build_layout(ds_xa30, work_dir=work)
    (db,) = _index_files(work)
    return db


@pytest.mark.parametrize("damage", ["truncated", "schema-only", "unmarked", "empty"])
def test_broken_index_in_work_dir_is_rebuilt_with_warning(ds_xa30, tmp_path, caplog, damage):
    """Planted index files as an interrupted write or copy leaves them are never reused."""
    work = tmp_path / "work"
    db = _complete_index(ds_xa30, work)
    if damage == "truncated":
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        con = sqlite3.connect(db)
        if damage == "schema-only":  # what pybids had committed before indexing any file
            con.execute("DELETE FROM tags")
            con.execute("DELETE FROM files")
        con.execute("PRAGMA user_version = 0")  # an index without the completion mark
        con.commit()
        con.close()
    with caplog.at_level(logging.WARNING, logger="alsmri.bids"):
        layout = build_layout(ds_xa30, work_dir=work)
    assert layout.get_subjects() == ["01"]
    assert len(layout.get(suffix="dwi", extension=".nii.gz")) == 2
    assert layout.get_metadata(str(ds_xa30 / "sub-01" / "dwi" / "sub-01_dir-AP_dwi.nii.gz"))[
        "PhaseEncodingDirection"] == "j-"
    warnings = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(warnings) == 1 and str(db) in warnings[0]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == COMPLETE_MARK
    con.close()
    # a complete index is reused as it is (no second warning, file untouched)
    before = _snapshot(work / "bids_db")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alsmri.bids"):
        assert build_layout(ds_xa30, work_dir=work).get_subjects() == ["01"]
    assert not caplog.records and _snapshot(work / "bids_db") == before


def test_database_dir_built_when_absent_then_reused_read_only(ds_xa30, tmp_path):
    """``--bids-database-dir``: built there once; afterwards nothing in it changes."""
    db_dir = tmp_path / "index"
    layout = build_layout(ds_xa30, work_dir=tmp_path / "work", database_dir=db_dir)
    assert layout.get_subjects() == ["01"]
    assert (db_dir / INDEX_FILE).is_file() and not (tmp_path / "work" / "bids_db").exists()
    (db_dir / ".alsmri-index.lock").unlink()  # e.g. copied elsewhere without the lock file
    before = _snapshot(db_dir)
    for _ in range(2):
        layout = build_layout(ds_xa30, work_dir=tmp_path / "work2", database_dir=db_dir)
        assert layout.get_subjects() == ["01"]
        assert len(layout.get(suffix="dwi", extension=".nii.gz")) == 2
    assert _snapshot(db_dir) == before  # same files, contents and mtimes; no lock file added
    assert not (tmp_path / "work2").exists()


def test_database_dir_broken_or_foreign_is_refused_untouched(ds_xa30, ds114, tmp_path):
    db_dir = tmp_path / "index"
    build_layout(ds_xa30, database_dir=db_dir)
    db = db_dir / INDEX_FILE
    # an index of another dataset path: usage error (exit 64), naming both
    with pytest.raises(UsageError, match=f"{db}: index of the dataset {ds_xa30}") as err:
        build_layout(ds114, database_dir=db_dir)
    assert err.value.exit_code == 64
    # a broken one is never "repaired" in place: exit 65, file unchanged
    db.write_bytes(db.read_bytes()[:8192])
    before = _snapshot(db_dir)
    with pytest.raises(BadDataError, match=f"{db}: dataset index .*never modified") as err:
        build_layout(ds_xa30, database_dir=db_dir)
    assert err.value.exit_code == 65 and "\n" not in str(err.value)
    assert _snapshot(db_dir) == before


def test_database_dir_from_another_pybids_application_is_reused(ds_xa30, tmp_path):
    """An index without alsmri's completion mark (e.g. fMRIPrep's) is checked by content."""
    from bids import BIDSLayout

    db_dir = tmp_path / "fmriprep_db"
    BIDSLayout(str(ds_xa30), database_path=db_dir)
    before = _snapshot(db_dir)
    layout = build_layout(ds_xa30, database_dir=db_dir)
    assert layout.get_subjects() == ["01"]
    assert _snapshot(db_dir) == before
    # the same index without its files (indexing interrupted): refused
    shutil.copytree(db_dir, tmp_path / "cut")
    con = sqlite3.connect(tmp_path / "cut" / INDEX_FILE)
    con.execute("DELETE FROM tags")
    con.execute("DELETE FROM files")
    con.commit()
    con.close()
    with pytest.raises(BadDataError, match="lists no participant"):
        build_layout(ds_xa30, database_dir=tmp_path / "cut")
