"""Benchmark the group level on synthetic cohorts (50 analysed metrics, 8 scores).

Usage::

    python benchmarks/group.py                 # 1,000 and 10,000 participants, 3 sites, 2 sessions
    python benchmarks/group.py --sizes 1000    # one size
    python benchmarks/group.py --sites 1 --sessions 1   # the single-site cross-sectional case

For each size the cohort (half ALS, half controls; participants.tsv with a site column,
sub-*/sub-*_sessions.tsv with acq_time, phenotype/clinical.tsv and two long-format metrics
tables per participant and session) is written to a temporary directory, then the
group level runs in a fresh Python process (``--nprocs``, default 2: the figures are drawn by
two worker processes while the tables are written), which reports its wall time (``wall_s``:
analyses + outputs, imports excluded; ``analyse_s``: the analyses alone), CPU time of the
analyses, of writing the tables and report (this process) and of drawing the figures (the
workers), and peak RSS (``ru_maxrss``); data generation does not count. On a shared machine
wall time exceeds CPU time, so ``idle_est_s`` estimates the wall time on an idle machine with
``--nprocs`` cores from the CPU times: analyses + max(tables, figures / nprocs).
``--profile DIR`` writes a cProfile file per size (the figure workers are not profiled).
The 1-minute load average is printed too.
With several sites every feature is harmonised (ComBat fitted on the controls); with several
sessions the longitudinal analyses (annualised change, a mixed model per feature, change vs
ALSFRS-R change) run too. Targets: <= 10 s (1,000) and <= 60 s (10,000) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bids_app.settings import DEFAULT_SEED

#: The synthetic cohort (``synthetic_group.py``) is test data: it lives with the tests.
TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"


def _worker(bids: Path, out: Path, nprocs: int, profile: Path | None = None) -> None:
    import cProfile
    import resource

    t0 = time.perf_counter()
    # imported here on purpose: the import time of the group level is part of the measurement
    from bids_app.group.run import run_group
    from bids_app.reports.group import write_outputs
    from bids_app.settings import ExecutionSettings, NipypeSettings, Settings

    t_import = time.perf_counter() - t0
    settings = Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                    analysis_level="group",
                                                    work_dir=out / "work"),
                        nipype=NipypeSettings(nprocs=nprocs))
    profiler = cProfile.Profile() if profile else None
    t1, c1 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    results = run_group(settings)
    t_run, c_run = time.perf_counter() - t1, time.process_time() - c1
    c2 = time.process_time()
    write_outputs(results, out, processes=settings.nipype.nprocs)
    wall, c_write = time.perf_counter() - t1, time.process_time() - c2
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    c_fig = children.ru_utime + children.ru_stime
    # on an idle machine with nprocs cores: the analyses, then the tables (this process)
    # alongside the figures (nprocs workers); exact for nprocs=1 up to I/O waits
    idle = c_run + (c_write + c_fig if nprocs < 2 else max(c_write, c_fig / nprocs))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "analyse_s": t_run, "import_s": t_import,
                      "analyse_cpu_s": c_run, "write_cpu_s": c_write, "figures_cpu_s": c_fig,
                      "idle_estimate_s": idle, "peak_rss_mb": peak}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--sites", type=int, default=3, help="acquisition sites (1: none)")
    parser.add_argument("--sessions", type=int, default=2, help="sessions per participant")
    parser.add_argument("--nprocs", type=int, default=2,
                        help="processes of the group level (--nprocs; figures are drawn in "
                             "parallel)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write cProfile statistics of each run (group_<n>.prof) to DIR")
    parser.add_argument("--worker", nargs=2, metavar=("BIDS", "OUT"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        _worker(Path(opts.worker[0]), Path(opts.worker[1]), opts.nprocs, opts.profile)
        return 0
    sys.path.insert(0, str(TESTS_DIR))
    from synthetic_group import (
        SCORES,
        add_sites_and_sessions,
        features,
        simulate_table,
        write_cohort,
    )

    print(f"{'participants':>12} {'sites':>5} {'sessions':>8} {'metrics':>7} {'scores':>6} "
          f"{'write_s':>8} {'wall_s':>7} {'analyse_s':>9} {'cpu_analyse':>11} "
          f"{'cpu_tables':>10} {'cpu_figures':>11} {'idle_est_s':>10} {'peak_rss_MB':>11} "
          f"{'load_avg':>8}")
    for n in opts.sizes:
        with tempfile.TemporaryDirectory(prefix="alsmri-bench-") as tmp:
            bids, out = Path(tmp) / "bids", Path(tmp) / "out"
            t0 = time.perf_counter()
            table = simulate_table(n // 2, n - n // 2, seed=opts.seed)
            if opts.sites > 1 or opts.sessions > 1:
                table = add_sites_and_sessions(
                    table, sites=tuple("ABCDEFGHIJ"[:opts.sites]), sessions=opts.sessions,
                    seed=opts.seed)
                if opts.sites == 1:
                    table = table.drop(columns="site")
            write_cohort(table, bids, out)
            t_write = time.perf_counter() - t0
            extra = ["--nprocs", str(opts.nprocs)]
            if opts.profile:
                extra += ["--profile", str(opts.profile / f"group_{n}.prof")]
            proc = subprocess.run([sys.executable, __file__, "--worker", str(bids), str(out),
                                   *extra], capture_output=True, text=True, check=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{n:>12} {opts.sites:>5} {opts.sessions:>8} {len(features()):>7} "
                  f"{len(SCORES):>6} {t_write:>8.1f} {res['wall_s']:>7.1f} "
                  f"{res['analyse_s']:>9.1f} {res['analyse_cpu_s']:>11.1f} "
                  f"{res['write_cpu_s']:>10.1f} {res['figures_cpu_s']:>11.1f} "
                  f"{res['idle_estimate_s']:>10.1f} {res['peak_rss_mb']:>11.0f} "
                  f"{os.getloadavg()[0]:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
