"""``alsmri`` entry point: parse, build settings, dispatch, map errors to exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bids_app.bids.layout import INDEX_FILE
from bids_app.bids.queries import load_filter_file, parse_labels
from bids_app.cli import demo, fetch_data, simulate, slurm
from bids_app.cli.boutiques import boutiques_descriptor
from bids_app.cli.faults import (
    Interrupted,
    first_no_space,
    interrupt_on_signals,
    stop_process_tree,
)
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
    "fetch-data": fetch_data.main, "simulate": simulate.main, "demo": demo.main,
    "slurm": slurm.main}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status (BEP027 codes).

    SIGTERM and SIGINT stop the run and every process it started, with one line naming
    what was interrupted and exit status 143 or 130. A full disk anywhere is exit 73.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    output: Path | None = None  # where an unnamed full-disk error is reported
    doing = f"alsmri {argv[0]}" if argv and argv[0] in SUBCOMMANDS else "alsmri"
    try:
        with interrupt_on_signals():
            try:
                if argv and argv[0] in SUBCOMMANDS:
                    return SUBCOMMANDS[argv[0]](argv[1:])
                parser = build_parser()
                if "--bids-exec-spec" in argv:
                    print(json.dumps(boutiques_descriptor(parser), indent=2))
                    return 0
                opts = parser.parse_args(argv)
                settings = settings_from_args(opts)
                output = settings.execution.output_dir
                doing = f"the {settings.execution.analysis_level} level"
                _setup_logging(settings.execution.verbosity)
                return run(settings, argv)
            except Interrupted as exc:  # still inside: further signals stay ignored
                stop_process_tree()
                exc.what = exc.what or f"while running {doing}"
                print(f"alsmri: {exc}", file=sys.stderr)
                return exc.exit_code
    except AlsmriError as exc:
        print(f"alsmri: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("alsmri: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk met outside our writers (nipype, logging)
        full = first_no_space(exc, output or "output directory")
        if full is None:
            raise
        stop_process_tree()
        print(f"alsmri: error: {full}", file=sys.stderr)
        return full.exit_code


def _setup_logging(verbosity: int) -> None:
    level = logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("alsmri")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def check_output_dir(bids_dir: Path, output_dir: Path, *, what: str = "output directory",
                     derivatives_ok: bool = True) -> None:
    """Refuse a directory alsmri writes to inside the input dataset (exit 73).

    The output directory, and a ``--bids-database-dir`` whose index would be built, may be
    inside ``derivatives/<name>`` (a derivative dataset inside the raw one); the work
    directory (nipype cache and SQLite dataset index) may not (``derivatives_ok=False``).
    """
    if output_dir == bids_dir:
        raise CannotCreateOutput(f"{output_dir}: {what} is the input dataset")
    try:
        rel = output_dir.relative_to(bids_dir)
    except ValueError:
        return
    if not derivatives_ok:
        raise CannotCreateOutput(
            f"{output_dir}: {what} inside the input dataset {bids_dir}; use a directory "
            "outside it")
    if len(rel.parts) < 2 or rel.parts[0] != "derivatives":
        raise CannotCreateOutput(
            f"{output_dir}: {what} inside the input dataset; use "
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
    check_output_dir(bids_dir, work_dir, what="work directory", derivatives_ok=False)
    database_dir = (Path(opts.bids_database_dir).expanduser().resolve()
                    if opts.bids_database_dir else None)
    if database_dir is not None and not (database_dir / INDEX_FILE).is_file():
        # reusing an index kept in the dataset writes nothing; building one there would
        check_output_dir(bids_dir, database_dir, what="--bids-database-dir (no index yet)")
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
        bids_database_dir=database_dir,
    )
    nipype = NipypeSettings(
        nprocs=opts.nprocs,
        omp_nthreads=opts.omp_nthreads or default_omp_nthreads(opts.nprocs),
        mem_mb=opts.mem_mb,
        stop_on_first_crash=opts.stop_on_first_crash,
    )
    dwi = DwiSettings(
        denoise=opts.denoise, unringing=opts.unringing, motion_correction=opts.motion_correction,
        tensor_fit=opts.tensor_fit, dti_max_b=opts.dti_max_b,
        models=tuple(opts.dwi_models) if opts.dwi_models else None,
        b0_threshold=opts.b0_threshold, sdc=opts.sdc,
        dwi_runs=opts.dwi_runs, tract_threshold=opts.tract_threshold,
        tract_atlas=opts.tract_atlas, roi_atlas=opts.roi_atlas, bundles=opts.bundles,
        seed=opts.random_seed,
    )
    anat = AnatSettings(gm_atlas=opts.gm_atlas, seed=opts.random_seed)
    group = GroupSettings(
        analysis_spec=opts.analysis_spec, group_column=opts.group_column,
        patient_label=opts.patient_label, control_label=opts.control_label,
        covariates=tuple(opts.covariates) if opts.covariates is not None else None,
        clinical_covariates=(tuple(opts.clinical_covariates)
                             if opts.clinical_covariates is not None else None),
        scores=tuple(opts.scores) if opts.scores else None, fdr_alpha=opts.fdr_alpha,
        harmonize=opts.harmonize,
    )
    return Settings(execution=execution, nipype=nipype, dwi=dwi, anat=anat, group=group)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
