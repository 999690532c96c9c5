"""``alsmri`` entry point: parse, build settings, dispatch, map errors to exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bids_app.bids.queries import load_filter_file, parse_labels
from bids_app.cli import demo, fetch_data, simulate
from bids_app.cli.boutiques import boutiques_descriptor
from bids_app.cli.parser import ANALYSIS_LEVELS, build_parser
from bids_app.cli.workflow import run
from bids_app.errors import (
    AlsmriError,
    CannotCreateOutput,
    MissingInputError,
    UnknownAnalysisLevel,
)
from bids_app.settings import (
    AnatSettings,
    DwiSettings,
    ExecutionSettings,
    GroupSettings,
    NipypeSettings,
    Settings,
    default_omp_nthreads,
)

LOGGER = logging.getLogger("alsmri")


#: ``alsmri <name> ...`` subcommands and their entry points.
SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "fetch-data": fetch_data.main, "simulate": simulate.main, "demo": demo.main}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status (BEP027 codes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]](argv[1:])
        parser = build_parser()
        if "--bids-exec-spec" in argv:
            print(json.dumps(boutiques_descriptor(parser), indent=2))
            return 0
        opts = parser.parse_args(argv)
        settings = settings_from_args(opts)
        _setup_logging(settings.execution.verbosity)
        return run(settings, argv)
    except AlsmriError as exc:
        print(f"alsmri: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("alsmri: interrupted", file=sys.stderr)
        return 130


def _setup_logging(verbosity: int) -> None:
    level = logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("alsmri")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def check_output_dir(bids_dir: Path, output_dir: Path) -> None:
    """Refuse an output directory inside the input dataset (except ``derivatives/<name>``)."""
    if output_dir == bids_dir:
        raise CannotCreateOutput(f"{output_dir}: output directory is the input dataset")
    try:
        rel = output_dir.relative_to(bids_dir)
    except ValueError:
        return
    if len(rel.parts) < 2 or rel.parts[0] != "derivatives":
        raise CannotCreateOutput(
            f"{output_dir}: output directory inside the input dataset; use "
            f"{bids_dir / 'derivatives' / 'alsmri'} or a directory outside it")


def settings_from_args(opts) -> Settings:
    """Validate parsed arguments and build the frozen :class:`Settings`."""
    bids_dir = Path(opts.bids_dir).expanduser().resolve()
    if not bids_dir.is_dir():
        raise MissingInputError(f"{opts.bids_dir}: BIDS directory does not exist")
    if opts.analysis_level not in ANALYSIS_LEVELS:
        raise UnknownAnalysisLevel(
            f"unknown analysis level {opts.analysis_level!r} (use one of "
            f"{', '.join(ANALYSIS_LEVELS)})")
    output_dir = Path(opts.output_dir).expanduser().resolve()
    check_output_dir(bids_dir, output_dir)
    work_dir = (Path(opts.work_dir).expanduser().resolve() if opts.work_dir
                else Path(tempfile.gettempdir()) / "alsmri-work")
    data_dir = opts.data_dir or (Path(os.environ["ALSMRI_DATA"]) if os.environ.get("ALSMRI_DATA")
                                 else None)
    execution = ExecutionSettings(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=opts.analysis_level,
        work_dir=work_dir,
        participant_label=parse_labels(opts.participant_label, "sub-"),
        session_label=parse_labels(opts.session_label, "ses-"),
        bids_filters=load_filter_file(opts.bids_filter_file) if opts.bids_filter_file else {},
        skip_bids_validation=opts.skip_bids_validation,
        boilerplate_only=opts.boilerplate_only,
        write_graph=opts.write_graph,
        verbosity=opts.verbose,
        data_dir=Path(data_dir).resolve() if data_dir else None,
    )
    nipype = NipypeSettings(
        nprocs=opts.nprocs,
        omp_nthreads=opts.omp_nthreads or default_omp_nthreads(opts.nprocs),
        mem_mb=opts.mem_mb,
        stop_on_first_crash=opts.stop_on_first_crash,
    )
    dwi = DwiSettings(
        denoise=opts.denoise, unringing=opts.unringing, motion_correction=opts.motion_correction,
        tensor_fit=opts.tensor_fit, b0_threshold=opts.b0_threshold, sdc=opts.sdc,
        dwi_runs=opts.dwi_runs, tract_threshold=opts.tract_threshold,
        tract_atlas=opts.tract_atlas, roi_atlas=opts.roi_atlas, seed=opts.random_seed,
    )
    anat = AnatSettings(gm_atlas=opts.gm_atlas, seed=opts.random_seed)
    group = GroupSettings(
        analysis_spec=opts.analysis_spec, group_column=opts.group_column,
        patient_label=opts.patient_label, control_label=opts.control_label,
        covariates=tuple(opts.covariates) if opts.covariates is not None else None,
        clinical_covariates=(tuple(opts.clinical_covariates)
                             if opts.clinical_covariates is not None else None),
        scores=tuple(opts.scores) if opts.scores else None, fdr_alpha=opts.fdr_alpha,
    )
    return Settings(execution=execution, nipype=nipype, dwi=dwi, anat=anat, group=group)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
