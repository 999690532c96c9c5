"""Drive one run: index the dataset, write run logs, build and execute the workflow."""

from __future__ import annotations

import logging
import shlex
import time
import uuid
from pathlib import Path

from bids_app.bids.derivatives import init_derivatives, write_atomic, write_json
from bids_app.errors import CannotCreateOutput
from bids_app.settings import Settings

LOGGER = logging.getLogger("alsmri")


def run(settings: Settings, argv: list[str]) -> int:
    """Execute the analysis level described by ``settings``; return the exit status."""
    ex = settings.execution
    if ex.analysis_level == "group":
        return _run_group(settings, argv)
    return _run_participant(settings, argv)


def _start_logs(settings: Settings, argv: list[str]) -> Path:
    """Create ``logs/run-<stamp>/`` with the command line, versions and resolved config."""
    from bids_app.reports.citation import library_versions

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
    from bids_app.group.run import run_group

    ex = settings.execution
    init_derivatives(ex.output_dir, ex.bids_dir)
    _start_logs(settings, argv)
    out = run_group(settings)
    LOGGER.info("group level finished: %s", out)
    return 0


def _run_participant(settings: Settings, argv: list[str]) -> int:
    from bids_app.bids.layout import build_layout
    from bids_app.bids.queries import collect_subject_sessions
    from bids_app.reports.citation import render_citation

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
    init_derivatives(ex.output_dir, ex.bids_dir)
    run_dir = _start_logs(settings, argv)
    has_dwi = any(r.dwi_runs for r in records)
    has_anat = any(r.t1w_selected for r in records)
    sdc = None
    if settings.dwi.sdc == "none" or settings.dwi.dwi_runs == "separate":
        sdc = False  # separate runs are processed one at a time: no reverse-PE pair
    elif has_dwi:
        sdc = any(_has_reverse_pe(r) for r in records) or False
    citation = render_citation(settings, participants=[r.label for r in records],
                               has_dwi=has_dwi, has_anat=has_anat, sdc_applied=sdc)
    write_atomic(ex.output_dir / "logs" / "CITATION.md", citation)
    LOGGER.info("wrote %s", ex.output_dir / "logs" / "CITATION.md")
    if ex.boilerplate_only:
        return 0
    notes: dict[str, list[str]] = {r.label: [] for r in records}
    for record in records:
        if not record.dwi_runs:
            notes[record.label].append("No DWI found: diffusion branch skipped.")
        elif settings.dwi.sdc != "none" and settings.dwi.dwi_runs == "separate":
            notes[record.label].append("DWI runs processed separately (--dwi-runs separate): "
                                       "no susceptibility distortion correction was applied.")
        elif settings.dwi.sdc != "none" and not _has_reverse_pe(record):
            notes[record.label].append("No reverse phase-encoded DWI runs: no susceptibility "
                                       "distortion correction was applied.")
        if not record.t1w_selected:
            notes[record.label].append("No T1w found: anatomical branch skipped.")
        for note in notes[record.label]:
            LOGGER.warning("%s: %s", record.label, note)
    from bids_app.cli.execute import execute_workflow
    from bids_app.workflows.base import init_alsmri_wf

    workflow = init_alsmri_wf(records=records, settings=settings)
    execute_workflow(workflow, settings=settings, log_dir=run_dir)
    from bids_app.reports.participant import build_participant_report

    for record in records:
        report = build_participant_report(ex.output_dir, record.label, methods=citation,
                                          notes=notes[record.label])
        LOGGER.info("%s report: %s", record.label, report)
    LOGGER.info("participant level finished for %s", ", ".join(r.label for r in records))
    return 0


def _has_reverse_pe(record) -> bool:
    directions = {r.phase_encoding_direction for r in record.dwi_runs}
    return any(d and (d.rstrip("-") + "-" if not d.endswith("-") else d.rstrip("-"))
               in directions for d in directions)

