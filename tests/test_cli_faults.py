"""Runs that end early, with real processes, signals and a real full file system.

- SIGTERM/SIGINT (what Slurm, ``timeout``, ``docker stop`` and Ctrl-C send) stop the main
  process and every nipype worker, with one line and exit 143/130.
- A full disk stops the run at the first failed write: exit 73, one line naming the path,
  no zero-byte or partial file under a final name.

The full-disk tests mount a small tmpfs (root only, as in CI); they are skipped only when
``mount`` is not permitted. The output-directory case reuses the cached work directory of
the end-to-end run and lives in ``test_participant_e2e.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bids_app.bids.derivatives import write_atomic, write_atomic_together
from bids_app.errors import CannotCreateOutput

ALSMRI = str(Path(sys.executable).parent / "alsmri")
FAST = ["--participant-label", "01", "--nprocs", "2", "--denoise", "none", "--no-unringing",
        "--no-bundles"]


@contextlib.contextmanager
def small_fs(where: Path, size: str = "20m", inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``where`` (unmounted afterwards)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(fs: Path) -> None:
    """Use up the space of ``fs``."""
    with open(fs / "filler", "wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * (1 << 20))


def session_processes(sid: int) -> list[tuple[int, str]]:
    """Processes of session ``sid`` that still run (zombies are dead, only not reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(entry), fields[0]))
    return found


def assert_nothing_half_written(root: Path) -> None:
    """No temp file, no empty file, no image or table without its sidecar under ``root``."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], "temp files left behind"
    assert not [p for p in files if p.stat().st_size == 0], "zero-byte files"
    for path in files:
        if path.name.endswith((".nii.gz", ".tsv")) and "sub-" in path.parent.as_posix():
            stem = path.name[: -len(".nii.gz")] if path.name.endswith(".gz") else path.stem
            assert path.with_name(stem + ".json").is_file(), f"{path} without its sidecar"


# --- write_atomic on a full file system --------------------------------------------------

def test_write_atomic_full_disk_names_the_file(tmp_path):
    """The write of the temp file fails: CannotCreateOutput naming dest, nothing left."""
    with small_fs(tmp_path / "fs", "1m") as fs:
        _fill(fs)
        dest = fs / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
        with pytest.raises(CannotCreateOutput, match=f"^{dest}: no space left on device$"):
            write_atomic(dest, b"x" * (256 << 10))
        assert sorted(p.name for p in dest.parent.iterdir()) == []


def test_write_atomic_no_inode_left(tmp_path):
    """The temp file cannot even be created (``mkstemp``): the same error."""
    with small_fs(tmp_path / "fs", "1m", inodes=3) as fs:
        (fs / "a").mkdir()  # the root and this directory use 2 of 3 inodes
        (fs / "a" / "b").write_text("")
        dest = fs / "a" / "c.json"
        with pytest.raises(CannotCreateOutput, match=f"^{dest}: no space left on device$"):
            write_atomic(dest, "{}\n")


def test_file_and_sidecar_get_their_names_together(tmp_path):
    """On a full disk an image is never left without its sidecar."""
    src = tmp_path / "img.nii.gz"
    src.write_bytes(b"i" * (600 << 10))
    with small_fs(tmp_path / "fs", "1m") as fs:
        dest = fs / "sub-01_desc-x_dwimap.nii.gz"
        side = fs / "sub-01_desc-x_dwimap.json"
        with pytest.raises(CannotCreateOutput, match="no space left on device"):
            # the image fits, the (large) sidecar does not
            write_atomic_together([(dest, None, src), (side, "s" * (600 << 10), None)])
        assert sorted(p.name for p in fs.iterdir()) == []


# --- the real pipeline -----------------------------------------------------------------

def _start(ds_xa30: Path, out: Path, work: Path, built_data_dir: Path,
           *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [ALSMRI, str(ds_xa30), str(out), "participant", *FAST, "-w", str(work),
         "--data-dir", str(built_data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _signal_and_wait(proc: subprocess.Popen, signum: int, *,
                     timeout: float) -> tuple[float, list]:
    """Send ``signum`` to the run; return how long it took to exit and the processes of its
    session still running 5 s later (none expected)."""
    os.kill(proc.pid, signum)
    started = time.monotonic()
    proc.wait(timeout=timeout)
    took = time.monotonic() - started
    deadline = time.monotonic() + 5
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return took, session_processes(proc.pid)


@pytest.mark.slow
def test_signal_stops_a_one_process_run(ds_xa30, built_data_dir, tmp_path):
    """--nprocs 1: SIGTERM while a step computes ends the run at once (exit 143, one line).

    The steps run in a forked worker; in nipype's serial plugin they ran in the main process,
    whose interface runner recorded the interruption as that step's crash and went on with
    the next steps until the whole graph was done.
    """
    out, work = tmp_path / "out", tmp_path / "work"
    proc = _start(ds_xa30, out, work, built_data_dir, "--nprocs", "1")
    try:
        for line in proc.stdout:
            if "t1w_preproc done (" in line:  # the registration to the template runs next
                break
        else:
            pytest.fail(f"no step finished: {proc.stderr.read()[-2000:]}")
        time.sleep(1.0)
        took, left = _signal_and_wait(proc, signal.SIGTERM, timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alsmri: terminated by SIGTERM "), err
    assert left == [], f"processes of the run still running: {left}"
    assert took < 10, took
    assert_nothing_half_written(out)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_whole_run(ds_xa30, built_data_dir, tmp_path, signum, code):
    """Exit 128+n, one ``alsmri:`` line naming the signal and the running steps, and no
    process of the run's session left within a few seconds (the two workers included)."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = _start(ds_xa30, out, work, built_data_dir)
    try:
        for line in proc.stdout:  # wait until nodes run in the workers
            if " done (" in line:
                break
        else:
            pytest.fail(f"no step finished: {proc.stderr.read()[-2000:]}")
        time.sleep(1.0)
        running = session_processes(proc.pid)
        assert len(running) >= 3, running  # alsmri and its two MultiProc workers
        took, left = _signal_and_wait(proc, signum, timeout=30)
        killpg_error = None
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError as exc:
            killpg_error = exc
    finally:  # whatever the outcome, nothing of the run survives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    err = proc.stderr.read()  # after the kill: orphaned workers would hold the pipe open
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    name = signal.Signals(signum).name
    assert lines[0].startswith(f"alsmri: terminated by {name} while running sub_01 "), lines
    assert str(work) in lines[0]
    assert left == [], f"processes of the run still running: {left}"
    assert isinstance(killpg_error, ProcessLookupError)
    assert took < 10, took
    assert_nothing_half_written(out)


@pytest.mark.slow
@pytest.mark.parametrize("output_there", [False, True], ids=["work-dir", "work-and-output"])
def test_full_work_dir_stops_at_once(ds_xa30, built_data_dir, tmp_path, output_there):
    """The work directory (and the output directory) fills up while the workers compute:
    exit 73 with one line naming a path on that file system, no process left, and no
    empty or partial file (crash files included)."""
    with small_fs(tmp_path / "small") as fs:
        out, work = (fs if output_there else tmp_path) / "out", fs / "work"
        proc = _start(ds_xa30, out, work, built_data_dir)
        try:
            _, err = proc.communicate(timeout=300)
            left = session_processes(proc.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == 73, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"alsmri: error: {fs}/"), lines[0]
        assert lines[0].endswith(": no space left on device"), lines[0]
        assert left == []
        crashes = list(out.glob("logs/run-*/crash-*"))
        assert all(c.stat().st_size > 0 for c in crashes), crashes
        assert_nothing_half_written(out)
