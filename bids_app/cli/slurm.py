"""``alsmri slurm BIDS_DIR OUTPUT_DIR [options]``: a whole study on a Slurm cluster.

On the login node: index the dataset once (``OUTPUT_DIR/logs/bids_db``, read by every task),
plan every participant, keep those whose declared outputs are missing or incomplete
(:func:`bids_app.bids.completeness.missing_outputs`), write one sbatch script per job array
(one task per batch of participants) and one for the group level under
``OUTPUT_DIR/logs/slurm/<time>/``, check them with ``sbatch --test-only``, submit them
(``sbatch --parsable``; the group job depends on the arrays) and print how to follow them.
Slurm does all the scheduling: nothing of ours keeps running.

Every option not listed here is a participant/group option of ``alsmri BIDS_DIR OUTPUT_DIR
{participant,group}`` and is passed unchanged to every run.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bids_app.atlases.api import require_participant_data
from bids_app.bids.completeness import missing_outputs
from bids_app.bids.derivatives import write_atomic, write_json
from bids_app.bids.layout import build_layout
from bids_app.bids.plan import ParticipantPlan, plan_participant
from bids_app.bids.queries import collect_subject_sessions, load_filter_file, parse_labels
from bids_app.cli.demo import participant_batches
from bids_app.cli.parser import _DefaultsHelpFormatter, positive_int
from bids_app.cli.parser import build_parser as build_run_parser
from bids_app.cli.sbatch import (
    GROUP_AFTER,
    Job,
    Resources,
    array_script,
    group_script,
    parse_max_array_size,
    split_arrays,
    submit_script,
)
from bids_app.errors import AlsmriError, MissingInputError, UsageError
from bids_app.settings import DwiSettings

#: Under OUTPUT_DIR: the dataset index the tasks read, and the scripts/logs of submissions.
DATABASE_DIR = Path("logs") / "bids_db"
SLURM_DIR = Path("logs") / "slurm"
#: Options ``alsmri slurm`` sets in every task itself: dest -> (option, what to do instead).
OWN_OPTIONS = {"work_dir": ("-w/--work-dir", "each task works on node-local scratch"),
               "nprocs": ("--nprocs", "use --cpus-per-task"),
               "mem_mb": ("--mem-mb", "use --mem-per-task"),
               "bids_database_dir": ("--bids-database-dir",
                                     f"the index is built in OUTPUT_DIR/{DATABASE_DIR}")}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """Parser of the options of ``alsmri slurm`` itself (the rest are run options)."""
    parser = _Parser(prog="alsmri slurm",
                     description="Run a whole study on a Slurm cluster: a job array for the "
                                 "participant level (participants whose outputs are complete "
                                 "are skipped), then a dependent group-level job.",
                     allow_abbrev=False, formatter_class=_DefaultsHelpFormatter,
                     epilog="Other options are participant/group options of 'alsmri "
                            "BIDS_DIR OUTPUT_DIR participant' (see alsmri --help).")
    parser.add_argument("bids_dir", type=Path, help="root of the BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where derivatives are written")
    parser.add_argument("--participant-label", "--participant_label", nargs="+",
                        metavar="LABEL", help="only these participants (default: everyone)")
    g = parser.add_argument_group("Slurm")
    g.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                   help="participants per array task (run one after another in the task)")
    g.add_argument("--max-running", type=positive_int, default=50, metavar="M",
                   help="array tasks running at once (the %%M throttle)")
    g.add_argument("--partition", metavar="P", help="partition (default: the cluster's)")
    g.add_argument("--time", metavar="T",
                   help="time limit of each job, in Slurm's format, e.g. 4:00:00 "
                        "(default: the partition's)")
    g.add_argument("--mem-per-task", type=positive_int, default=4000, metavar="MB",
                   help="memory of each job in MB (also alsmri's --mem-mb)")
    g.add_argument("--cpus-per-task", type=positive_int, default=1, metavar="C",
                   help="CPUs of each job (alsmri's --nprocs)")
    g.add_argument("--container", metavar="CMD",
                   help="command that runs alsmri in a container, e.g. \"apptainer run "
                        "--cleanenv --containall alsmri.sif\"; the dataset, output, work and "
                        "data directories are bound at the same paths")
    g.add_argument("--group-after", choices=tuple(GROUP_AFTER), default="all-succeeded",
                   help="run the group level when every task succeeded (afterok), or when "
                        "they all ended (afterany; the missing participants are listed)")
    g.add_argument("--dry-run", action="store_true",
                   help="write the scripts and print the sbatch calls; submit nothing")
    g.add_argument("--list-incomplete", type=Path, metavar="FILE",
                   help="write the participants whose outputs are missing or incomplete to "
                        "FILE (TSV), print them and exit (the group job does this)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``alsmri slurm``; return the exit status (BEP027 codes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, options = build_parser().parse_known_args(argv)
        run_opts = run_options(opts, options)
        if opts.list_incomplete:
            return list_incomplete(opts, run_opts)
        return submit(opts, run_opts, options, argv=argv)
    except AlsmriError as exc:
        print(f"alsmri slurm: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run_options(opts: argparse.Namespace, options: list[str]) -> argparse.Namespace:
    """Check the pass-through options with the ``alsmri`` parser; refuse :data:`OWN_OPTIONS`."""
    parser = build_run_parser()
    parser.set_defaults(nprocs=None)
    run_opts = parser.parse_args([str(opts.bids_dir), str(opts.output_dir), "participant",
                                  *options])
    for dest, (option, instead) in OWN_OPTIONS.items():
        if getattr(run_opts, dest, None):
            raise UsageError(f"{option}: set by alsmri slurm itself ({instead})")
    return run_opts


def plan_study(opts: argparse.Namespace, run_opts: argparse.Namespace, *,
               rebuild_index: bool) -> list[ParticipantPlan]:
    """Index the dataset into ``OUTPUT_DIR/logs/bids_db`` and plan every selected unit.

    ``rebuild_index``: index afresh (a submission: the dataset may have grown since the last
    one); otherwise reuse the index (the group job's check).
    """
    bids_dir = opts.bids_dir.expanduser().resolve()
    db_dir = opts.output_dir.expanduser().resolve() / DATABASE_DIR
    if rebuild_index and db_dir.exists():
        shutil.rmtree(db_dir)
    layout = build_layout(bids_dir, database_dir=db_dir,
                          validate=not run_opts.skip_bids_validation)
    records = collect_subject_sessions(
        layout, participant_label=parse_labels(opts.participant_label, "sub-"),
        session_label=parse_labels(run_opts.session_label, "ses-"),
        bids_filters=(load_filter_file(run_opts.bids_filter_file)
                      if run_opts.bids_filter_file else {}))
    # Planning reads only what decides the DWI units (run grouping, SDC); no image is read.
    dwi = DwiSettings(sdc=run_opts.sdc, dwi_runs=run_opts.dwi_runs,
                      b0_threshold=run_opts.b0_threshold)
    return [plan_participant(record, dwi, check_images=False) for record in records]


def incomplete(plans: list[ParticipantPlan], output_dir: Path) -> dict[str, list[str]]:
    """``{plan label: missing outputs}`` of the incomplete participants/sessions."""
    missing = {plan.label: missing_outputs(plan, output_dir) for plan in plans}
    return {label: what for label, what in missing.items() if what}


def list_incomplete(opts: argparse.Namespace, run_opts: argparse.Namespace) -> int:
    """``--list-incomplete FILE``: write and print who is incomplete; exit 0."""
    output_dir = opts.output_dir.expanduser().resolve()
    plans = plan_study(opts, run_opts, rebuild_index=False)
    missing = incomplete(plans, output_dir)
    rows = ["participant\tn_missing\tmissing"] + [
        f"{label}\t{len(what)}\t{'; '.join(what)}" for label, what in missing.items()]
    write_atomic(opts.list_incomplete, "\n".join(rows) + "\n")
    print(f"alsmri slurm: {len(missing)} of {len(plans)} participants/sessions incomplete "
          f"(list: {opts.list_incomplete})")
    for label, what in missing.items():
        print(f"  {label}: {len(what)} outputs missing, e.g. {what[0]}")
    return 0


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingInputError(f"{name}: not found on PATH; run alsmri slurm on a login node "
                                "of a Slurm cluster (or use --dry-run)")
    return path


def _slurm(*args: str) -> subprocess.CompletedProcess:
    """Run a Slurm client command; its output as text."""
    try:
        return subprocess.run([_program(args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{shlex.join(args)}: no answer from Slurm in 120 s") from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
    return lines[-1].removeprefix("sbatch: error: ")


def check_cluster(resources: Resources) -> int:
    """Check that Slurm answers, the partition exists and Slurm accepts the resources.

    Returns
    -------
    int
        The cluster's ``MaxArraySize``.

    Raises
    ------
    MissingInputError
        ``sbatch``, ``scontrol`` or ``sinfo`` is not on the PATH (66).
    UsageError
        Slurm does not answer, the partition is not one of the cluster's, or
        ``sbatch --test-only`` rejects the time limit, memory or CPUs (64).
    """
    _program("sbatch")
    config = _slurm("scontrol", "show", "config")
    if config.returncode != 0:
        raise UsageError(f"scontrol show config failed: {_last_line(config)}")
    partition = resources.partition
    if partition and _slurm("scontrol", "show", "partition", partition).returncode != 0:
        known = _slurm("sinfo", "-h", "-o", "%R").stdout.split()
        raise UsageError(f"--partition {partition}: no such partition on this cluster "
                         f"(partitions: {', '.join(sorted(set(known))) or 'none'})")
    probe = _slurm("sbatch", "--test-only", "--job-name=alsmri-check", *resources.args(),
                   "--wrap", "true")
    if probe.returncode != 0:
        raise UsageError(f"Slurm rejects the requested resources ({' '.join(resources.args())}"
                         f"; sbatch --test-only): {_last_line(probe)}")
    return parse_max_array_size(config.stdout)


def check_script(script: Path) -> None:
    """``sbatch --test-only``: Slurm accepts the script's requests (time, memory, CPUs)."""
    proc = _slurm("sbatch", "--test-only", str(script))
    if proc.returncode != 0:
        raise UsageError(f"Slurm rejects {script.name} (sbatch --test-only): {_last_line(proc)}")


def active_jobs(slurm_dir: Path) -> list[str]:
    """Jobs of earlier submissions (their ``jobs.json``) that are still queued or running."""
    ours = set()
    for record in slurm_dir.glob("*/jobs.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        ours.update(str(job) for job in [*data.get("arrays", []), data.get("group")] if job)
    if not ours:
        return []
    queued = _slurm("squeue", "-h", "-u", getpass.getuser(), "-o", "%F").stdout.split()
    return sorted(ours & set(queued), key=int)


def check_data(run_opts: argparse.Namespace) -> None:
    """The atlases and templates the tasks read exist (prefetched on the login node)."""
    require_participant_data(tract_atlas=run_opts.tract_atlas, roi_atlas=run_opts.roi_atlas,
                             gm_atlas=run_opts.gm_atlas, data_dir=run_opts.data_dir)


def _job(opts: argparse.Namespace, run_opts: argparse.Namespace, options: list[str],
         log_dir: Path, resources: Resources) -> Job:
    bids_dir = opts.bids_dir.expanduser().resolve()
    output_dir = opts.output_dir.expanduser().resolve()
    env = {key: str(Path(os.environ[key]).resolve()) for key in ("TEMPLATEFLOW_HOME",
                                                                 "ALSMRI_DATA")
           if os.environ.get(key)}
    command = (tuple(shlex.split(opts.container)) if opts.container
               else (sys.executable, "-m", "bids_app"))
    binds: tuple[str, ...] = ()
    if opts.container:
        data = [env.get("TEMPLATEFLOW_HOME"), env.get("ALSMRI_DATA"),
                str(run_opts.data_dir.resolve()) if run_opts.data_dir else None]
        binds = (f"{bids_dir}:{bids_dir}:ro", str(output_dir),
                 *(f"{d}:{d}:ro" for d in dict.fromkeys(d for d in data if d)))
    return Job(bids_dir=bids_dir, output_dir=output_dir, log_dir=log_dir, command=command,
               options=tuple(options), database_dir=output_dir / DATABASE_DIR,
               resources=resources,
               chdir=Path.cwd(), env=env, binds=binds)


def submit(opts: argparse.Namespace, run_opts: argparse.Namespace, options: list[str], *,
           argv: list[str]) -> int:
    """Plan, write the scripts, check them with Slurm, submit; print the job ids."""
    output_dir = opts.output_dir.expanduser().resolve()
    slurm_dir = output_dir / SLURM_DIR
    resources = Resources(cpus_per_task=opts.cpus_per_task, mem_mb=opts.mem_per_task,
                          partition=opts.partition, time=opts.time)
    if not opts.dry_run:
        max_array = check_cluster(resources)
        busy = active_jobs(slurm_dir)
        if busy:
            raise UsageError(f"jobs {', '.join(busy)} of an earlier submission are still "
                             f"queued or running (squeue -j {','.join(busy)}); wait for them "
                             "or scancel them, then submit again")
    else:
        max_array = (parse_max_array_size(_slurm("scontrol", "show", "config").stdout)
                     if shutil.which("scontrol") else parse_max_array_size(""))
    if not opts.container:
        check_data(run_opts)
    # A dry run may happen while jobs read the index: it reuses one that exists.
    plans = plan_study(opts, run_opts, rebuild_index=not opts.dry_run)
    missing = incomplete(plans, output_dir)
    subjects = sorted({p.record.subject for p in plans if p.label in missing})
    batches = participant_batches(subjects, opts.batch_size) if subjects else []
    log_dir = slurm_dir / (time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}")
    job = _job(opts, run_opts, options, log_dir, resources)
    arrays = split_arrays(len(batches), max_array)
    names = []
    for i, indices in enumerate(arrays):
        name = f"participant-{i + 1}.sbatch" if len(arrays) > 1 else "participant.sbatch"
        write_atomic(log_dir / name, array_script(
            job, [batches[k] for k in indices], first=indices.start + 1,
            max_running=opts.max_running, part=(i + 1, len(arrays))))
        names.append(name)
    write_atomic(log_dir / "group.sbatch", group_script(
        job, selection=parse_labels(opts.participant_label, "sub-"),
        incomplete=log_dir / "incomplete.tsv"))
    dependency = GROUP_AFTER[opts.group_after]
    write_atomic(log_dir / "submit.sh", submit_script(names, "group.sbatch",
                                                      dependency=dependency))
    if not opts.dry_run:
        try:
            for name in [*names, "group.sbatch"]:
                check_script(log_dir / name)
        except AlsmriError:
            shutil.rmtree(log_dir, ignore_errors=True)
            raise
    done = len(plans) - len(missing)
    print(f"alsmri slurm: {len(plans)} participants/sessions, {done} complete (skipped); "
          f"{len(subjects)} participants to run in {len(batches)} tasks of <= "
          f"{opts.batch_size} ({len(arrays)} job array(s), MaxArraySize {max_array})")
    if opts.dry_run:
        print(f"dry run: scripts in {log_dir}; submit them with: bash {log_dir / 'submit.sh'}")
        return 0
    ids = _submit_all(log_dir, names, dependency)
    write_json(log_dir / "jobs.json", {
        "arrays": ids[:-1], "group": ids[-1], "group_after": dependency,
        "batches": batches, "command": shlex.join(["alsmri", "slurm", *argv])})
    print(f"submitted: participant array job(s) {' '.join(ids[:-1]) or '(none)'}, "
          f"group job {ids[-1]} ({dependency})")
    print(f"  follow: squeue -j {','.join(ids)}")
    print(f"  logs:   {log_dir}/participant-<job>_<task>.log, {log_dir}/group-{ids[-1]}.log")
    return 0


def _submit_all(log_dir: Path, arrays: list[str], dependency: str) -> list[str]:
    """Submit the arrays (each after the previous one) and the group job; their ids.

    When a submission fails, the jobs submitted before it are cancelled.
    """
    ids: list[str] = []
    try:
        for name in arrays:
            after = [f"--dependency=afterany:{ids[-1]}"] if ids else []
            ids.append(_sbatch(*after, str(log_dir / name)))
        after = []
        if ids:
            after = [f"--dependency={dependency}:{':'.join(ids)}"]
            if dependency == "afterok":
                after.append("--kill-on-invalid-dep=yes")
        ids.append(_sbatch(*after, str(log_dir / "group.sbatch")))
    except AlsmriError:
        if ids:
            _slurm("scancel", *ids)
        raise
    return ids


def _sbatch(*args: str) -> str:
    proc = _slurm("sbatch", "--parsable", *args)
    if proc.returncode != 0:
        raise UsageError(f"sbatch {args[-1]} failed: {_last_line(proc)}")
    return proc.stdout.strip().split(";")[0]
