"""Drive one run: index the dataset, write run logs, build and execute the workflow.

Runs may share a work directory: the dataset index is built under a lock
(:func:`bids_app.bids.layout.build_layout`), each participant/session's nipype nodes live in
their own ``alsmri_wf/sub_<label>_wf`` folder, and a participant-level run holds
``WORK_DIR/locks/<label>.lock`` for each participant/session it processes, so a second run of
the same one in the same work directory is refused (exit 73) instead of racing it.
"""

from __future__ import annotations

import logging
import shlex
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bids_app.bids.derivatives import init_derivatives, write_atomic, write_json
from bids_app.bids.layout import build_layout
from bids_app.bids.plan import plan_participant
from bids_app.bids.queries import collect_subject_sessions
from bids_app.bids.records import SubjectSession
from bids_app.cli.execute import execute_workflow
from bids_app.core.locking import LockHeld, file_lock
from bids_app.errors import CannotCreateOutput
from bids_app.group.run import run_group
from bids_app.reports.citation import library_versions, render_citation
from bids_app.reports.group import write_outputs
from bids_app.reports.participant import build_participant_report
from bids_app.settings import Settings
from bids_app.workflows.base import init_alsmri_wf

LOGGER = logging.getLogger("alsmri")


def run(settings: Settings, argv: list[str]) -> int:
    """Execute the analysis level described by ``settings``; return the exit status."""
    ex = settings.execution
    if ex.analysis_level == "group":
        return _run_group(settings, argv)
    return _run_participant(settings, argv)


def _start_logs(settings: Settings, argv: list[str]) -> Path:
    """Create ``logs/run-<stamp>/`` with the command line, versions and resolved config."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    run_dir = settings.execution.output_dir / "logs" / f"run-{stamp}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutput(f"{run_dir}: cannot create log directory ({exc.strerror})")
    write_atomic(run_dir / "command.txt", shlex.join(["alsmri", *argv]) + "\n")
    write_json(run_dir / "versions.json", library_versions())
    write_atomic(run_dir / "config.toml", settings.to_toml())
    return run_dir


def _run_group(settings: Settings, argv: list[str]) -> int:
    ex = settings.execution
    init_derivatives(ex.output_dir, ex.bids_dir)
    _start_logs(settings, argv)
    written = write_outputs(run_group(settings), ex.output_dir,
                            processes=settings.nipype.nprocs)
    LOGGER.info("group level finished: %s", written["report"].parent)
    return 0


def _run_participant(settings: Settings, argv: list[str]) -> int:
    ex = settings.execution
    try:
        ex.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutput(f"{ex.work_dir}: cannot create work directory ({exc.strerror})")
    layout = build_layout(ex.bids_dir, work_dir=ex.work_dir, database_dir=ex.bids_database_dir,
                          validate=not ex.skip_bids_validation)
    records = collect_subject_sessions(
        layout, participant_label=ex.participant_label, session_label=ex.session_label,
        bids_filters=ex.bids_filters)
    with ExitStack() as locks:
        if not ex.boilerplate_only:  # writes nothing in the work directory
            lock_participants(locks, ex.work_dir, [record.label for record in records])
        return _process(settings, argv, records)


def lock_participants(stack: ExitStack, work_dir: Path, labels: Sequence[str]) -> None:
    """Hold ``work_dir/locks/<label>.lock`` for each label until ``stack`` closes.

    Raises
    ------
    CannotCreateOutput
        Another process holds one of the locks (the message names the work directory, the
        participant and that process's pid), or a lock file cannot be created.
    """
    for label in labels:
        path = work_dir / "locks" / f"{label}.lock"
        try:
            stack.enter_context(file_lock(path, wait=False))
        except LockHeld as exc:
            holder = f"process {exc.pid}" if exc.pid else "another process"
            raise CannotCreateOutput(
                f"{work_dir}: {label} is already being processed in this work directory by "
                f"{holder} (lock {path}); wait for it to finish or use another -w") from None
        except OSError as exc:
            raise CannotCreateOutput(f"{path}: cannot create lock file ({exc.strerror})"
                                     ) from exc


def _process(settings: Settings, argv: list[str], records: list[SubjectSession]) -> int:
    ex = settings.execution
    plans = [plan_participant(record, settings.dwi, check_images=not ex.boilerplate_only)
             for record in records]
    init_derivatives(ex.output_dir, ex.bids_dir)
    run_dir = _start_logs(settings, argv)
    citation = render_citation(settings, plans)
    write_atomic(ex.output_dir / "logs" / "CITATION.md", citation)
    LOGGER.info("wrote %s", ex.output_dir / "logs" / "CITATION.md")
    if ex.boilerplate_only:
        return 0
    notes = {plan.label: plan.notes(settings.dwi) for plan in plans}
    for label, lines in notes.items():
        for note in lines:
            LOGGER.warning("%s: %s", label, note)
    workflow = init_alsmri_wf(plans=plans, settings=settings)
    # nipype's graph report (index.html, graph.json ... in WORK_DIR/alsmri_wf) is one set of
    # files for every run sharing the work directory, rewritten in place by each: off.
    workflow.config["execution"]["create_report"] = False
    execute_workflow(workflow, settings=settings, log_dir=run_dir)
    for plan in plans:
        report = build_participant_report(ex.output_dir, plan.label, methods=citation,
                                          notes=notes[plan.label])
        LOGGER.info("%s report: %s", plan.label, report)
    LOGGER.info("participant level finished for %s", ", ".join(p.label for p in plans))
    return 0
