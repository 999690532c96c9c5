"""``alsmri demo [OUT]``: simulate a known-truth cohort, run everything, report recovery.

Steps: build templates/atlases if needed (``alsmri fetch-data``; offline from
``$ALSMRI_DATA_MIRROR``), simulate ``OUT/bids`` (reused when its truth.json exists; lesions
placed by the simulator's own route, :mod:`bids_app.simulate.placement`), run the
participant level for everyone (``--nprocs`` parallel) and the group level into
``OUT/derivatives``, then write ``OUT/recovery.tsv`` (group-level recovery,
:mod:`bids_app.simulate.recovery`) and ``OUT/tract_validation.tsv`` (recovered/true ratios
and leakage of the tract metrics, :mod:`bids_app.simulate.validation`) and print them.  Exit 0
only when every required check of the recovery table passes (1 otherwise; BIDS-Apps codes
for errors).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from bids_app.atlases.api import default_data_dir, require_participant_data
from bids_app.cli.fetch_data import main as fetch_main
from bids_app.cli.parser import positive_int
from bids_app.cli.workflow import run
from bids_app.errors import AlsmriError, MissingInputError, UsageError
from bids_app.settings import (
    DEFAULT_SEED,
    AnatSettings,
    DwiSettings,
    ExecutionSettings,
    NipypeSettings,
    Settings,
)
from bids_app.simulate.dataset import simulate
from bids_app.simulate.effects import load_effects
from bids_app.simulate.recovery import (
    format_table,
    recovered_all,
    recovery_from_outputs,
    write_recovery,
)
from bids_app.simulate.reference import PRESETS, preset_effects
from bids_app.simulate.validation import (
    ATLAS_FEATURE,
    format_side_by_side,
    validation_from_outputs,
    write_validation,
)

LOGGER = logging.getLogger("alsmri.demo")
EXIT_NOT_RECOVERED = 1
DEFAULT_PATIENTS = 7
DEFAULT_CONTROLS = 7

#: participant-level options of the demo (diffusion settings changed from their defaults),
#: each justified by how the data were simulated: option -> (settings field, value, reason)
PARTICIPANT_OPTIONS = {
    "--no-motion-correction": ("motion_correction", False,
                               ("every volume of a simulated DWI shares one head position (no "
                                "between-volume motion to correct)")),
    "--no-bundles": ("bundles", False,
                     ("the demo grades the atlas-based tract means; the subject-specific "
                      "bundle metrics are graded against the same independent truth by "
                      "benchmarks/tract_validation.py (tracking adds ~35 s per participant)")),
}
#: tract measures of the demo's validation table (``OUT/tract_validation.tsv``, reported):
#: name -> feature template of the participant tract tables
VALIDATION_MEASURES = {"hcp842": ATLAS_FEATURE}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``alsmri demo [OUT] [--nprocs N] [--n-patients N] [--n-controls M]
    [--seed S]``."""
    parser = _Parser(prog="alsmri demo", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", default=Path("alsmri-demo"),
                        help="working directory of the demo")
    parser.add_argument("--nprocs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-patients", type=int, default=DEFAULT_PATIENTS)
    parser.add_argument("--n-controls", type=int, default=DEFAULT_CONTROLS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--effects", type=Path, metavar="YAML")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="plant a reference study's reported figures (applied before "
                             "--effects; bids_app/simulate/reference.py)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="participants per participant-level run (default 4 x --nprocs): "
                             "nipype's scheduler cost grows with the graph, so a large cohort "
                             "runs in batches")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="templates/atlases (default: $ALSMRI_DATA, else the user cache)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the simulation's base anatomy is cached (default: "
                             "$ALSMRI_CACHE/simulate or ~/.cache/alsmri/simulate)")
    return parser


def ensure_data(data_dir: Path | None) -> Path:
    """Return a data directory with the atlases the demo needs, building it if missing."""
    data_dir = (Path(data_dir) if data_dir else default_data_dir()).expanduser().resolve()
    dwi, anat = DwiSettings(), AnatSettings()
    try:
        require_participant_data(tract_atlas=dwi.tract_atlas, roi_atlas=dwi.roi_atlas,
                                 gm_atlas=anat.gm_atlas, data_dir=data_dir)
    except MissingInputError:
        rc = fetch_main(["--dest", str(data_dir)])
        if rc != 0:
            raise MissingInputError(f"{data_dir}: 'alsmri fetch-data' failed (exit {rc}); "
                                    "set ALSMRI_DATA_MIRROR when offline") from None
    return data_dir


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = build_parser().parse_args(argv)
        return _demo(opts)
    except AlsmriError as exc:
        print(f"alsmri demo: error: {exc}", file=sys.stderr)
        return exc.exit_code


def participant_batches(labels: list[str], size: int) -> list[list[str]]:
    """Split participant labels into consecutive batches of at most ``size`` (>= 1).

    One nipype graph for a whole large cohort is slow to schedule: with 71 participants the
    MultiProc scheduler process alone used 46 CPU-minutes (it rescans the whole graph on
    every poll), so the demo runs the participant level batch by batch.
    """
    if size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {size}")
    return [labels[i:i + size] for i in range(0, len(labels), size)]


def _settings(level: str, bids: Path, derivatives: Path, *, work_dir: Path, data_dir: Path,
              nprocs: int, labels: tuple[str, ...] = ()) -> Settings:
    """Run settings of one demo step: the participant level gets :data:`PARTICIPANT_OPTIONS`
    and one thread per node (the scheduler runs ``nprocs`` participants' nodes side by side);
    what :func:`_step` logs as the equivalent command line."""
    dwi = DwiSettings()
    if level == "participant":
        dwi = replace(dwi, **{field: value for field, value, _ in PARTICIPANT_OPTIONS.values()})
    return Settings(
        execution=ExecutionSettings(bids_dir=bids, output_dir=derivatives, analysis_level=level,
                                    work_dir=work_dir, participant_label=labels,
                                    data_dir=data_dir),
        nipype=NipypeSettings(nprocs=nprocs, omp_nthreads=1), dwi=dwi)


def equivalent_argv(settings: Settings) -> list[str]:
    """The ``alsmri`` command line that gives ``settings`` (written to the run log)."""
    ex = settings.execution
    argv = [str(ex.bids_dir), str(ex.output_dir), ex.analysis_level]
    if ex.analysis_level == "participant":
        argv += ["--participant-label", *ex.participant_label, *PARTICIPANT_OPTIONS]
    return argv + ["--nprocs", str(settings.nipype.nprocs), "--omp-nthreads",
                   str(settings.nipype.omp_nthreads), "-w", str(ex.work_dir), "--data-dir",
                   str(ex.data_dir)]


def _step(settings: Settings, what: str) -> int:
    """Run one level; the equivalent command line goes to the run log."""
    try:
        return run(settings, equivalent_argv(settings))
    except AlsmriError as exc:
        print(f"alsmri demo: {what} failed (exit {exc.exit_code}): {exc}", file=sys.stderr)
        return exc.exit_code


def _demo(opts) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    start = time.perf_counter()
    out = Path(opts.out).expanduser().resolve()
    bids, derivatives = out / "bids", out / "derivatives"
    data_dir = ensure_data(opts.data_dir)
    if not (bids / "truth.json").is_file():
        simulate(bids, n_patients=opts.n_patients, n_controls=opts.n_controls,
                 seed=opts.seed, effects=load_effects(opts.effects, base_override=(
            preset_effects(opts.preset).effects if opts.preset else None)), data_dir=data_dir,
                 cache_dir=opts.cache_dir, nprocs=opts.nprocs)
    LOGGER.info("simulated cohort ready in %.0f s", time.perf_counter() - start)
    for option, (_, _, reason) in PARTICIPANT_OPTIONS.items():
        LOGGER.info("participant option %s: %s", option, reason)
    labels = sorted(path.name[len("sub-"):] for path in bids.glob("sub-*") if path.is_dir())
    size = opts.batch_size if opts.batch_size is not None else 4 * max(opts.nprocs, 1)
    common = {"work_dir": out / "work", "data_dir": data_dir, "nprocs": opts.nprocs}
    for batch in participant_batches(labels, size):
        rc = _step(_settings("participant", bids, derivatives, labels=tuple(batch), **common),
                   f"participant level for {', '.join(batch)}")
        if rc != 0:
            return rc
    rc = _step(_settings("group", bids, derivatives, **common), "group level")
    if rc != 0:
        return rc
    table = recovery_from_outputs(bids, derivatives)
    path = write_recovery(table, out / "recovery.tsv", meta={
        "ParticipantOptions": {option: reason
                               for option, (_, _, reason) in PARTICIPANT_OPTIONS.items()},
        "Cohort": {"n_patients": opts.n_patients, "n_controls": opts.n_controls,
                   "seed": opts.seed}})
    validation = validation_from_outputs(bids, derivatives, VALIDATION_MEASURES)
    validation_path = write_validation(validation, out / "tract_validation.tsv", meta={
        "Measures": VALIDATION_MEASURES, "Cohort": {"n_patients": opts.n_patients,
                                                    "n_controls": opts.n_controls,
                                                    "seed": opts.seed}})
    print(format_table(table))
    print("\nTract metrics against the simulator's independently placed truth (reported):")
    print(format_side_by_side(validation))
    print(f"recovery table: {path}; tract validation: {validation_path} "
          f"(demo took {time.perf_counter() - start:.0f} s)")
    return 0 if recovered_all(table) else EXIT_NOT_RECOVERED
