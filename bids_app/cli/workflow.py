"""Drive one run: index the dataset, write run logs, build and execute the workflow."""

from __future__ import annotations

import logging
import shlex
import time
import uuid
from pathlib import Path

from bids_app.bids.derivatives import init_derivatives, write_atomic, write_json
from bids_app.bids.layout import build_layout
from bids_app.bids.plan import plan_participant
from bids_app.bids.queries import collect_subject_sessions
from bids_app.cli.execute import execute_workflow
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
    written = write_outputs(run_group(settings), ex.output_dir)
    LOGGER.info("group level finished: %s", written["report"].parent)
    return 0


def _run_participant(settings: Settings, argv: list[str]) -> int:
    ex = settings.execution
    try:
        ex.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutput(f"{ex.work_dir}: cannot create work directory ({exc.strerror})")
    layout = build_layout(ex.bids_dir, work_dir=ex.work_dir,
                          validate=not ex.skip_bids_validation)
    records = collect_subject_sessions(
        layout, participant_label=ex.participant_label, session_label=ex.session_label,
        bids_filters=ex.bids_filters)
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
    execute_workflow(workflow, settings=settings, log_dir=run_dir)
    for plan in plans:
        report = build_participant_report(ex.output_dir, plan.label, methods=citation,
                                          notes=notes[plan.label])
        LOGGER.info("%s report: %s", plan.label, report)
    LOGGER.info("participant level finished for %s", ", ".join(p.label for p in plans))
    return 0
