"""Benchmark: a simulated cohort through ``alsmri slurm`` against the local participant level.

Usage::

    python benchmarks/slurm.py                  # 16 participants (8 ALS + 8 controls)
    python benchmarks/slurm.py --n 8 --bids DIR  # reuse a simulated cohort

In one run on this machine: simulate the cohort (or reuse ``--bids``), then

1. **Slurm**: ``alsmri slurm BIDS OUT --batch-size B --cpus-per-task 1 --max-running NCPU``
   on the one-node cluster of ``shared/tools/slurm-ci.sh`` (started here unless
   ``SLURM_CONF`` is set), timed from the call (indexing, planning, submission included) to
   the end of the last array task (participant level) and of the group job;
2. **local**: ``alsmri BIDS OUT participant --nprocs NCPU``, then the group level.

Both use the demo's participant options plus ``--denoise none`` (short participants make
any per-task overhead of the Slurm path show) and one thread per process. Printed: wall times,
the ratio Slurm/local of the participant level (target <= 1.10), per task the queue wait
(start - submit, from ``scontrol show job``, 1 s resolution) and the peak RSS (the task's
processes summed, sampled from ``/proc`` every 0.5 s; likewise for the local run), the CPU
time of each path's participant level (sampled alike), and whether the two joined group
tables are equal.

Run it on an otherwise idle machine. When other work competes for the CPUs, the wall-time
ratio favours the Slurm path: with the kernel's autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled``) CPU time is shared between sessions, and each
running task is a session of its own (``setsid`` in the task script) where the whole local
run is one. The ratio of CPU times does not depend on that.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from bids_app.bids.outputs import GROUP_DIR, GROUP_OUTPUTS
from bids_app.cli.demo import PARTICIPANT_OPTIONS
from bids_app.settings import DEFAULT_SEED
from bids_app.simulate.dataset import simulate
from bids_app.simulate.effects import load_effects

REPO = Path(__file__).resolve().parents[1]
SLURM_CI = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")) / "tools" / "slurm-ci.sh"
ALSMRI = [sys.executable, "-m", "bids_app"]
OPTIONS = [*PARTICIPANT_OPTIONS, "--denoise", "none"]
#: The one-node cluster is one per machine: the tests and this benchmark take turns.
LOCK = Path(tempfile.gettempdir()) / "alsmri-slurm-ci.lock"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Peak of the summed RSS, and the CPU time, per key: a Slurm task (``SLURM_JOB_ID`` in
    the environment) or the process tree of one local pid.

    The CPU time of a key sums, over its processes, the last user + system time seen of each
    (``/proc/PID/stat``): what a process used after the last sample before it ended (at most
    ``period``) is missed, for both paths alike.
    """

    def __init__(self, *, root_pid: int | None = None, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.period = root_pid, period
        self.peak: dict[str, float] = {}
        self.cpu_seen: dict[tuple[int, int], tuple[str, float]] = {}  # (pid, start) -> key, s
        self.stop = threading.Event()

    def cpu(self, key: str) -> float:
        """CPU seconds of ``key``'s processes."""
        return sum(seconds for owner, seconds in self.cpu_seen.values() if owner == key)

    def _sample(self) -> dict[str, float]:
        total: dict[str, float] = {}
        parents: dict[int, int] = {}
        rss: dict[int, float] = {}
        cpu: dict[int, tuple[int, float]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                status = (proc / "status").read_text()
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                environ = (proc / "environ").read_bytes() if self.root_pid is None else b""
            except OSError:
                continue
            pid = int(proc.name)
            found = re.search(r"VmRSS:\s+(\d+) kB", status)
            rss[pid] = int(found.group(1)) / 1024 if found else 0.0
            parents[pid] = int(re.search(r"PPid:\s+(\d+)", status).group(1))
            # stat after the command name: state is field 3, utime 14, stime 15, starttime 22
            cpu[pid] = (int(stat[19]), (int(stat[11]) + int(stat[12])) / CLOCK_TICKS)
            job = re.search(rb"(?:^|\0)SLURM_JOB_ID=(\d+)", environ)
            if job and b"SLURM_ARRAY_TASK_ID" in environ:
                key = job.group(1).decode()
                total[key] = total.get(key, 0.0) + rss[pid]
                self.cpu_seen[(pid, cpu[pid][0])] = (key, cpu[pid][1])
        if self.root_pid is not None:
            tree, todo = {self.root_pid}, [self.root_pid]
            while todo:
                parent = todo.pop()
                kids = [p for p, pp in parents.items() if pp == parent and p not in tree]
                tree.update(kids)
                todo += kids
            total["local"] = sum(rss.get(p, 0.0) for p in tree)
            for pid in tree & cpu.keys():
                self.cpu_seen[(pid, cpu[pid][0])] = ("local", cpu[pid][1])
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            for key, value in self._sample().items():
                self.peak[key] = max(self.peak.get(key, 0.0), value)
            time.sleep(self.period)


def _jobs(job_id: str) -> list[dict[str, str]]:
    """``scontrol show job -o`` of a job (one record per array task)."""
    out = _run("scontrol", "show", "job", "-o", job_id).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line]


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run_slurm(bids: Path, out: Path, *, batch_size: int, ncpu: int) -> dict:
    sampler = RssSampler()
    sampler.start()
    t0 = time.time()
    proc = subprocess.run([*ALSMRI, "slurm", str(bids), str(out), "--batch-size",
                           str(batch_size), "--cpus-per-task", "1", "--max-running", str(ncpu),
                           "--mem-per-task", "3000", *OPTIONS], check=True, capture_output=True,
                          text=True)
    submitted = time.time() - t0
    record = json.loads(max((out / "logs" / "slurm").glob("*/jobs.json")).read_text())
    ids = [*record["arrays"], record["group"]]
    # slurmctld forgets a job MinJobAge (600 s in slurm-ci.sh) after it ended, long before the
    # last task of a large cohort ends: keep the last record seen of every task and job (not
    # the record of the still pending tasks, ArrayTaskId "2-7%2").
    seen: dict[str, dict[str, str]] = {}
    while True:
        current = [task for job in ids for task in _jobs(job)]
        seen.update({t["JobId"]: t for t in current
                     if t.get("ArrayTaskId", "0").isdigit()})
        states = [t["JobState"] for t in current]
        if states and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states):
            break
        time.sleep(1)
    sampler.stop.set()
    tasks = sorted((t for t in seen.values() if t.get("ArrayJobId") in record["arrays"]),
                   key=lambda t: (int(t["ArrayJobId"]), int(t["ArrayTaskId"])))
    group = seen[record["group"]]
    if len(tasks) != len(record["batches"]):
        raise SystemExit(f"{len(tasks)} task records for {len(record['batches'])} batches")
    bad = [t["JobId"] for t in [*tasks, group] if t["JobState"] != "COMPLETED"]
    if bad:
        raise SystemExit(f"Slurm jobs failed: {bad}; logs in {out / 'logs' / 'slurm'}")
    rows = [{"task": f"{t['ArrayJobId']}_{t['ArrayTaskId']}",
             "queue_wait_s": _stamp(t["StartTime"]) - _stamp(t["SubmitTime"]),
             "run_s": _stamp(t["EndTime"]) - _stamp(t["StartTime"]),
             "peak_rss_mb": sampler.peak.get(t["JobId"], float("nan")),
             "cpu_s": sampler.cpu(t["JobId"])} for t in tasks]
    return {"submit_s": submitted, "stdout": proc.stdout.strip(),
            "participant_s": max(_stamp(t["EndTime"]) for t in tasks) - t0,
            "total_s": _stamp(group["EndTime"]) - t0, "tasks": rows}


def run_local(bids: Path, out: Path, *, ncpu: int, work: Path) -> dict:
    t0 = time.time()
    proc = subprocess.Popen([*ALSMRI, str(bids), str(out), "participant", "--nprocs", str(ncpu),
                             "-w", str(work), *OPTIONS], stdout=subprocess.DEVNULL)
    sampler = RssSampler(root_pid=proc.pid)
    sampler.start()
    if proc.wait() != 0:
        raise SystemExit(f"local participant level failed (exit {proc.returncode})")
    sampler.stop.set()
    participant = time.time() - t0
    subprocess.run([*ALSMRI, str(bids), str(out), "group"], check=True,
                   stdout=subprocess.DEVNULL)
    return {"participant_s": participant, "total_s": time.time() - t0,
            "peak_rss_mb": sampler.peak.get("local", float("nan")),
            "cpu_s": sampler.cpu("local")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="participants (half ALS)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--bids", type=Path, help="reuse this simulated cohort")
    parser.add_argument("--keep", type=Path, help="directory for the outputs (default: temp)")
    opts = parser.parse_args(argv)
    ncpu = os.cpu_count() or 1
    root = Path(opts.keep or tempfile.mkdtemp(prefix="alsmri-bench-slurm-"))
    bids = opts.bids or root / "bids"
    if not (bids / "truth.json").is_file():
        simulate(bids, n_patients=opts.n // 2, n_controls=opts.n - opts.n // 2,
                 seed=DEFAULT_SEED, effects=load_effects(), nprocs=ncpu)
    started = "SLURM_CONF" not in os.environ
    with open(LOCK, "a+") as lock:
        if started:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # nproc (the node's CPU count in slurm-ci.sh) obeys OMP_NUM_THREADS: start without
            env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
            subprocess.run(["bash", str(SLURM_CI), "start"], check=True, env=env)
            conf = _run("bash", str(SLURM_CI), "env").stdout.split("=", 1)[1]
            os.environ["SLURM_CONF"] = conf.strip()
        try:
            slurm = run_slurm(bids, root / "slurm", batch_size=opts.batch_size, ncpu=ncpu)
        finally:
            if started:
                subprocess.run(["bash", str(SLURM_CI), "stop"], check=False)
    local = run_local(bids, root / "local", ncpu=ncpu, work=root / "work")
    joined = GROUP_OUTPUTS["joined"]
    equal = pd.read_csv(root / "slurm" / GROUP_DIR / joined, sep="\t").equals(
        pd.read_csv(root / "local" / GROUP_DIR / joined, sep="\t"))
    tasks = pd.DataFrame(slurm["tasks"])
    print(f"cohort: {opts.n} participants, {ncpu} CPUs, options {' '.join(OPTIONS)}")
    print(slurm["stdout"])
    print(tasks.to_string(index=False, float_format=lambda v: f"{v:.0f}"))
    print(f"Slurm: submit {slurm['submit_s']:.1f} s, participant level "
          f"{slurm['participant_s']:.0f} s, with group {slurm['total_s']:.0f} s; "
          f"peak RSS per task max {tasks['peak_rss_mb'].max():.0f} MB; "
          f"CPU of the tasks {tasks['cpu_s'].sum():.0f} s")
    print(f"local: participant level {local['participant_s']:.0f} s, with group "
          f"{local['total_s']:.0f} s; peak RSS {local['peak_rss_mb']:.0f} MB (all processes); "
          f"CPU {local['cpu_s']:.0f} s")
    ratio = slurm["participant_s"] / local["participant_s"]
    print(f"ratio Slurm/local (participant level): {ratio:.3f} [target <= 1.10]; "
          f"with group {slurm['total_s'] / local['total_s']:.3f}; "
          f"CPU time {tasks['cpu_s'].sum() / local['cpu_s']:.3f}")
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])} "
          f"({ncpu} CPUs; other work on the machine skews the wall-time ratio, see the "
          "module docstring)")
    print(f"joined group tables equal: {equal}; outputs in {root}")
    return 0 if ratio <= 1.10 and equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
