"""``alsmri slurm`` on a real one-node Slurm cluster (``shared/tools/slurm-ci.sh``).

Fast tests: the script text, batching, splitting into arrays by ``MaxArraySize``, the
completeness rule, bad cluster input (one line, BEP027 exit, nothing submitted). The slow
test runs a simulated 2 + 2 cohort (two of them without a T1w) through Slurm, cancels one
array task mid-run, re-submits, and compares the group table with that of a plain local run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from bids_app.bids.completeness import missing_outputs, planned_outputs
from bids_app.bids.outputs import ANAT_STATS, DWI_STATS, GROUP_DIR, GROUP_OUTPUTS
from bids_app.bids.plan import plan_participant
from bids_app.bids.records import DwiRun, SubjectSession
from bids_app.cli.run import main
from bids_app.cli.sbatch import (
    TASK_WORK_DIR,
    Job,
    Resources,
    array_script,
    group_script,
    parse_max_array_size,
    split_arrays,
    submit_script,
)
from bids_app.cli.slurm import DATABASE_DIR, SLURM_DIR
from bids_app.core.tables import STATS_COLUMNS
from bids_app.settings import DEFAULT_SEED, DwiSettings
from bids_app.simulate.dataset import simulate
from bids_app.simulate.effects import load_effects

REPO = Path(__file__).resolve().parents[1]
SLURM_CI = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")) / "tools" / "slurm-ci.sh"
#: Participant options of the slow test: the simulation has no noise model to denoise for
#: speed's sake, no ringing and no between-volume motion.
FAST = ["--denoise", "none", "--no-unringing", "--no-motion-correction", "--no-bundles"]
#: One test process at a time uses the machine's cluster (waits up to LOCK_WAIT seconds).
LOCK = Path(tempfile.gettempdir()) / "alsmri-slurm-ci.lock"
LOCK_WAIT = 1800
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


# --------------------------------------------------------------------------- the cluster
def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def slurm():
    """A running one-node cluster for this module (``slurm-ci.sh start`` ... ``stop``).

    The cluster is one per machine (fixed ports, ``/tmp/slurm-ci``): test processes running
    at the same time (a developer's suite beside CI) take turns through a file lock.
    """
    if not SLURM_CI.is_file():
        pytest.skip(f"{SLURM_CI} not found")
    if os.geteuid() != 0:
        pytest.skip("slurm-ci.sh starts the Slurm daemons as root")
    with open(LOCK, "a+") as lock:
        end = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < end, f"{LOCK}: cluster busy for {LOCK_WAIT} s"
                time.sleep(2)
        # slurm-ci.sh gives the node $(nproc) CPUs, and nproc obeys OMP_NUM_THREADS (which
        # conftest.py sets): start it without.
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
        proc = _run("bash", str(SLURM_CI), "start", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        conf = _run("bash", str(SLURM_CI), "env").stdout.strip().split("=", 1)[1]
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("SLURM_CONF", conf)
                yield Path(conf)
        finally:
            _run("bash", str(SLURM_CI), "stop")


def _squeue() -> list[str]:
    return _run("squeue", "-h", "-o", "%i %T").stdout.splitlines()


def _completed() -> list[dict[str, str]]:
    """Records of the job completion log (``JobCompLoc`` of slurm-ci.sh's ``jobcomp/filetxt``)."""
    conf = Path(os.environ.get("SLURM_CONF", ""))
    found = re.search(r"^JobCompLoc=(\S+)", conf.read_text() if conf.is_file() else "",
                      re.MULTILINE)
    log = Path(found.group(1)) if found else None
    if log is None or not log.is_file():
        return []
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in log.read_text().splitlines()]


def _state(job: str) -> str:
    """State of ``job`` (``ID`` or ``ARRAYID_TASK``): from ``scontrol show job`` while
    slurmctld holds its record, afterwards (``MinJobAge``, 600 s in slurm-ci.sh, after the
    job ended: a task cancelled at the start of a slow run is forgotten before the group job
    ends) from the job completion log."""
    out = _run("scontrol", "show", "job", "-o", job).stdout
    states = re.findall(r"JobState=(\S+)", out)
    if states:
        return states[0]
    array, _, task = job.partition("_")
    for record in reversed(_completed()):
        if (record.get("ArrayJobId") == array and record.get("ArrayTaskId") == task if task
                else record.get("JobId") == job and not record.get("ArrayJobId")):
            return record["JobState"]
    return "UNKNOWN"


def _wait(job: str, timeout: float) -> str:
    """Poll ``scontrol show job`` until ``job`` ends; its final state."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = _state(job)
        if state in TERMINAL:
            return state
        time.sleep(2)
    raise AssertionError(f"job {job} still {_state(job)} after {timeout} s")


def _record(out: Path) -> tuple[Path, dict]:
    """The newest submission's directory and its ``jobs.json``."""
    latest = max((out / SLURM_DIR).glob("*/jobs.json"))
    return latest.parent, json.loads(latest.read_text())


# --------------------------------------------------------------------------- script text
def _job(tmp_path: Path, **kw) -> Job:
    return Job(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out",
               log_dir=tmp_path / "out" / "logs" / "slurm" / "x",
               command=kw.pop("command", ("python", "-m", "bids_app")),
               options=("--denoise", "none"), database_dir=tmp_path / "out" / DATABASE_DIR,
               resources=Resources(cpus_per_task=2, mem_mb=3000, partition="ci",
                                   time="1:00:00"),
               chdir=tmp_path, env={"TEMPLATEFLOW_HOME": "/tf"}, **kw)


def test_array_script_is_a_readable_self_contained_job_array(tmp_path):
    text = array_script(_job(tmp_path), [["01", "02"], ["03"]], first=1, max_running=5)
    for line in ("#SBATCH --array=0-1%5", "#SBATCH --partition=ci", "#SBATCH --time=1:00:00",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --mem=3000M",
                 f"#SBATCH --chdir={tmp_path}", "  '01 02'  # task 0", "  03  # task 1",
                 f'WORK="{TASK_WORK_DIR}"', "trap 'rm -rf \"$WORK\"' EXIT",
                 "export TEMPLATEFLOW_HOME=/tf", "OPTIONS=(--denoise none)",
                 'setsid "${ALSMRI[@]}" --participant-label "${LABELS[@]}" -w "$WORK" \\',
                 f"  --bids-database-dir {tmp_path / 'out' / DATABASE_DIR} \\",
                 '  --nprocs 2 --mem-mb 3000 "${OPTIONS[@]}" &'):
        assert line in text.splitlines(), line
    assert TASK_WORK_DIR.startswith("${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/alsmri-")
    assert "APPTAINER_BIND" not in text
    assert subprocess.run(["bash", "-n"], check=False, input=text, text=True).returncode == 0
    group = group_script(_job(tmp_path), incomplete=tmp_path / "incomplete.tsv")
    assert '"${ALSMRI[@]}" slurm ' in group and " group " in group
    assert "--list-incomplete" in group and "--array" not in group
    # the methods text of the whole study, after each batch wrote its own
    database = tmp_path / "out" / DATABASE_DIR
    assert f"participant --boilerplate-only --bids-database-dir {database}" in group
    assert subprocess.run(["bash", "-n"], check=False, input=group, text=True).returncode == 0


def test_container_jobs_bind_the_same_paths(tmp_path):
    job = _job(tmp_path, command=("apptainer", "run", "--cleanenv", "--containall", "a.sif"),
               binds=(f"{tmp_path}/bids:{tmp_path}/bids:ro", f"{tmp_path}/out"))
    text = array_script(job, [["01"]], first=1, max_running=1)
    assert "ALSMRI=(apptainer run --cleanenv --containall a.sif " in text
    binds = shlex.quote(f"{tmp_path}/bids:{tmp_path}/bids:ro,{tmp_path}/out")
    assert f"export APPTAINER_BIND={binds} SINGULARITY_BIND={binds}" in text
    assert 'export APPTAINER_BIND="$APPTAINER_BIND,$WORK"' in text
    assert "export APPTAINERENV_TEMPLATEFLOW_HOME=/tf" in text


def test_batches_and_arrays_follow_max_array_size():
    assert split_arrays(2500, 1001) == [range(1001), range(1001, 2002), range(2002, 2500)]
    assert parse_max_array_size("AccountingStorageType = x\nMaxArraySize            = 4\n") == 4
    assert parse_max_array_size("") == 1001
    script = submit_script(["participant-1.sbatch", "participant-2.sbatch"], "group.sbatch",
                           dependency="afterany")
    assert "--dependency=afterany:$A1 participant-2.sbatch" in script  # one throttle overall
    assert "--dependency=afterany:$A1:$A2 group.sbatch" in script


def test_dry_run_splits_arrays_by_the_cluster_max_array_size(slurm, ds114, tmp_path,
                                                             built_data_dir):
    """10 participants, MaxArraySize 4 (read from ``scontrol show config``): arrays of 4, 4
    and 2 tasks, each accepted by ``sbatch`` (submitted held, then cancelled).

    slurmctld reads ``MaxArraySize`` for its own checks only when it starts, so a reconfigured
    cluster reports 4 but would still accept larger arrays: the test checks the split, not
    Slurm's refusal.
    """
    conf = slurm.read_text()
    slurm.write_text(conf + "MaxArraySize=4\n")
    try:
        subprocess.run(["scontrol", "reconfigure"], check=True)
        assert "MaxArraySize            = 4" in _run("scontrol", "show", "config").stdout
        out = tmp_path / "out"
        assert main(["slurm", str(ds114), str(out), "--session-label", "test",
                     "--dry-run"]) == 0
        scripts = sorted((out / SLURM_DIR).glob("*/participant-*.sbatch"))
        arrays = [re.search(r"--array=(\S+)", s.read_text()).group(1) for s in scripts]
        assert arrays == ["0-3%50", "0-3%50", "0-1%50"]
        batches = [re.findall(r"# task \d+", s.read_text()) for s in scripts]
        assert [len(b) for b in batches] == [4, 4, 2]
        held = []
        for script in scripts:  # task indices below MaxArraySize: Slurm takes each (held)
            proc = _run("sbatch", "--hold", "--parsable", str(script))
            assert proc.returncode == 0, proc.stderr
            held.append(proc.stdout.strip())
        subprocess.run(["scancel", *held], check=True)
        for _ in range(50):
            if not _squeue():
                break
            time.sleep(0.2)
        assert _squeue() == []
    finally:
        slurm.write_text(conf)
        subprocess.run(["scontrol", "reconfigure"], check=True)


# --------------------------------------------------------------------------- completeness
def _plan(tmp_path: Path, *, runs: int = 2, t1w: bool = True):
    dwi = tuple(DwiRun(dwi=tmp_path / f"sub-01_dir-{d}_dwi.nii.gz", bval=tmp_path / "b.bval",
                       bvec=tmp_path / "b.bvec",
                       metadata={"PhaseEncodingDirection": p})
                for d, p in list(zip(("AP", "PA"), ("j-", "j")))[:runs])
    record = SubjectSession(subject="01", session=None, dwi_runs=dwi,
                            t1w_selected=tmp_path / "sub-01_T1w.nii.gz" if t1w else None)
    return plan_participant(record, DwiSettings(), check_images=False)


def _write_all(plan, out: Path) -> None:
    header = "\t".join(STATS_COLUMNS)
    for rel, output in planned_outputs(plan):
        path = out / rel if output.extension else out / f"{rel}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{header}\nhcp842\tcst\tL\tfa\twmean\t0.4\t10\n")


def test_completeness_is_decided_from_the_declared_outputs(tmp_path):
    out = tmp_path / "out"
    plan = _plan(tmp_path)
    names = {str(rel) for rel, _ in planned_outputs(plan)}
    assert "sub-01/dwi/sub-01_desc-tracts_dwistats.tsv" in names
    assert "sub-01/anat/sub-01_desc-gmvolume_morph.tsv" in names
    assert "sub-01/figures/sub-01_desc-sdc_dwi" in names  # two runs aligned: SDC figure
    assert "sub-01/dwi/sub-01_space-dwi_model-tensor_param-fa_dwimap" in names
    assert len(missing_outputs(plan, out)) == len(names)  # nothing written: all missing
    _write_all(plan, out)
    assert missing_outputs(plan, out) == []
    # a metrics table with its header only counts as absent (as at the group level)
    for table in (DWI_STATS, ANAT_STATS):
        path = next(out.glob(f"sub-01/{table.datatype}/{table.glob()}"))
        path.write_text("\t".join(STATS_COLUMNS) + "\n")
        assert missing_outputs(plan, out) == [f"{path.relative_to(out)} (header only)"]
        _write_all(plan, out)
    # an image whose sidecar alone exists is missing
    fa = out / "sub-01/dwi/sub-01_space-dwi_model-tensor_param-fa_dwimap"
    fa.with_name(fa.name + ".nii.gz").unlink()
    fa.with_name(fa.name + ".json").write_text("{}")
    assert missing_outputs(plan, out) == [f"{fa.relative_to(out)}.* (missing)"]
    # one run: no SDC figure is planned; no T1w: no anatomical output is planned
    single = _plan(tmp_path, runs=1, t1w=False)
    names = {str(rel) for rel, _ in planned_outputs(single)}
    assert not any("desc-sdc" in n or "/anat/" in n for n in names)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (["--partition", "nope"], {}, 64, "--partition nope: no such partition"),
    (["--time", "abc"], {}, 64, "Invalid --time specification"),
    (["--mem-per-task", "99999999"], {}, 64, "Requested node configuration is not available"),
    (["-w", "/tmp/w"], {}, 64, "-w/--work-dir: set by alsmri slurm itself"),
    (["--nprocs", "4"], {}, 64, "--nprocs: set by alsmri slurm itself"),
    (["--denoise", "bogus"], {}, 64, "invalid choice: 'bogus'"),
    ([], {"PATH": "/nonexistent"}, 66, "sbatch: not found on PATH"),
])
def test_bad_cluster_input_is_one_line_and_submits_nothing(slurm, ds114, tmp_path, capsys,
                                                           monkeypatch, args, env, code,
                                                           message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    assert main(["slurm", str(ds114), str(out), *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alsmri slurm: error: ") and message in err[0]
    monkeypatch.undo()
    assert _squeue() == []
    assert not list(out.glob(f"{SLURM_DIR}/*/*.sbatch"))


# --------------------------------------------------------------------------- end to end
#: Participants whose T1w the slow test removes (DWI only). A participant with a T1w costs
#: about 2.3 times one without (the T1w-to-template registration: ~65 of ~120 CPU-s), and
#: every participant runs at least twice (Slurm, local). One of each kind per batch of 2:
#: both the completed and the cancelled batch still run the anatomical branch, and the
#: completeness rule also meets plans without it.
DWI_ONLY = ("002", "004")
#: Longest wait for a job or the local run (the slow test takes ~10 min on an idle machine).
JOB_WAIT = 2400


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, built_data_dir) -> Path:
    """A simulated 2 ALS + 2 control cohort (``alsmri simulate``'s defaults; base anatomy
    cached in ``.cache/simulate``; two participants simulated at a time), participants
    :data:`DWI_ONLY` without their T1w."""
    bids = tmp_path_factory.mktemp("slurm-cohort") / "bids"
    simulate(bids, n_patients=2, n_controls=2, seed=DEFAULT_SEED, effects=load_effects(),
             data_dir=built_data_dir, cache_dir=REPO / ".cache" / "simulate", nprocs=2)
    for label in DWI_ONLY:
        shutil.rmtree(bids / f"sub-{label}" / "anat")
    return bids


def _files(out: Path, labels) -> dict[str, int]:
    """``{relative path: mtime_ns}`` of the participant outputs of ``labels``."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for label in labels
            for p in (out / f"sub-{label}").rglob("*") if p.is_file()}


def _incomplete(bids: Path, out: Path, tmp_path: Path) -> list[str]:
    """Participants that ``alsmri slurm --list-incomplete`` names (the completeness rule)."""
    listing = tmp_path / f"incomplete-{out.name}.tsv"
    assert main(["slurm", str(bids), str(out), "--list-incomplete", str(listing), *FAST]) == 0
    return pd.read_csv(listing, sep="\t")["participant"].to_list()


def _stop(proc: subprocess.Popen) -> None:
    """Stop a background run started in its own session, if it still runs (alsmri stops
    its process tree on SIGTERM)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_cohort_on_slurm_equals_local_run_and_resubmits_only_the_cancelled(
        slurm, cohort, tmp_path):
    """Submit 4 participants in 2 tasks, cancel task 1 mid-run, re-submit: only task 1's
    participants run again, nothing of task 0's changes, and the joined group table equals
    that of a plain local run of the same cohort (run meanwhile, in the background)."""
    out, local = tmp_path / "slurm", tmp_path / "local"
    assert main(["slurm", str(cohort), str(out), "--batch-size", "2", "--max-running", "2",
                 "--group-after", "any", *FAST]) == 0
    log_dir, jobs = _record(out)
    (array,), group = jobs["arrays"], jobs["group"]
    first, second = jobs["batches"]
    assert len(first) == len(second) == 2 and len(set(first + second)) == 4
    assert {first[1], second[1]} == set(DWI_ONLY)  # one T1w and one DWI-only in each batch
    # a second submission while these jobs are queued or running is refused
    assert main(["slurm", str(cohort), str(out), *FAST]) == 64
    # cancel task 1 once alsmri works in its scratch directory
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"alsmri-{array}_1"
    end = time.monotonic() + 300
    while not (work.is_dir() and any(work.iterdir())):
        assert time.monotonic() < end, f"task {array}_1 never started ({_squeue()})"
        time.sleep(0.5)
    time.sleep(2)
    subprocess.run(["scancel", f"{array}_1"], check=True)

    # the plain local run of the same cohort (participant, then group level), in the
    # background while the jobs run
    alsmri = shlex.join([sys.executable, "-m", "bids_app", str(cohort), str(local)])
    work_dir = shlex.quote(str(tmp_path / "work"))
    script = f"{alsmri} participant --nprocs 2 -w {work_dir} {shlex.join(FAST)} && {alsmri} group"
    local_log = tmp_path / "local.log"
    with open(local_log, "w") as log:
        reference = subprocess.Popen(["bash", "-c", script], stdout=log,
                                     stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        assert _wait(group, JOB_WAIT) == "COMPLETED", (
            log_dir / f"group-{group}.log").read_text()
        assert (_state(f"{array}_0"), _state(f"{array}_1")) == ("COMPLETED", "CANCELLED")
        assert not work.exists()  # scratch removed, also for the cancelled task
        listed = pd.read_csv(log_dir / "incomplete.tsv", sep="\t")["participant"].to_list()
        assert listed == [f"sub-{label}" for label in second]
        assert "2 of 4 participants/sessions incomplete" in (
            log_dir / f"group-{group}.log").read_text()
        kept = _files(out, first)
        assert any("/anat/" in name for name in kept) and any("/dwi/" in name for name in kept)

        # re-submission (more CPUs per task this time): only the cancelled participants run
        assert main(["slurm", str(cohort), str(out), "--batch-size", "2", "--cpus-per-task",
                     "2", *FAST]) == 0
        log_dir2, jobs2 = _record(out)
        assert log_dir2 != log_dir and jobs2["batches"] == [second]
        assert _wait(jobs2["group"], JOB_WAIT) == "COMPLETED", (
            log_dir2 / f"group-{jobs2['group']}.log").read_text()
        assert reference.wait(timeout=JOB_WAIT) == 0, local_log.read_text()[-3000:]
    finally:
        _stop(reference)
    assert _incomplete(cohort, local, tmp_path) == []  # the rule holds on real outputs

    assert _files(out, first) == kept  # untouched
    assert _incomplete(cohort, out, tmp_path) == []
    assert set(_files(out, first + second)) == set(_files(local, first + second))  # nothing lost
    citation = (out / "logs" / "CITATION.md").read_text()  # the group job's: everyone
    assert all(f"sub-{label}" in citation for label in first + second)
    joined = GROUP_OUTPUTS["joined"]
    slurm_table = pd.read_csv(out / GROUP_DIR / joined, sep="\t")
    local_table = pd.read_csv(local / GROUP_DIR / joined, sep="\t")
    pd.testing.assert_frame_equal(slurm_table, local_table, check_exact=True)
