"""Tract validation that cannot grade itself: independent truth vs alsmri's tract metrics.

Usage::

    python benchmarks/tract_validation.py [OUT] --n-patients 4 --n-controls 4 [--nprocs 2]
        [--seed S] [--effects YAML] [--measure NAME=FEATURE ...] [--participant-arg=ARG ...]

Steps (each reused when its output exists, so an interrupted run resumes):

1. ``alsmri simulate`` into ``OUT/bids``: lesions placed by the simulator's independent route
   (XTRACT / HCP1065 maps through the source T1w, a focal CST lesion;
   :mod:`bids_app.simulate.placement`), per-participant truth in ``truth.json``;
2. ``alsmri participant`` (default options unless ``--participant-arg``) into
   ``OUT/derivatives``; participants whose tract table exists are skipped;
3. the validation table (:mod:`bids_app.simulate.validation`) for each measure, printed side
   by side and written to ``OUT/tract_validation.tsv`` (+ ``.json``).

A measure is ``NAME=FEATURE``: ``FEATURE`` a feature-name template of the participant tract
tables, e.g. ``hcp842={atlas}_{region}_{hemisphere}_{metric}_wmean`` (today's atlas-based
metric) or ``bundle={atlas}_{region}_{hemisphere}_{metric}_bundle`` (both by default, the bundle
rows with their placement coverage); the measure ``simweights`` (added by default) is
alsmri's own FA map under the simulator's tract weights (what a perfectly placed atlas would
measure: isolates preprocessing, fit and mask from atlas placement).  Prints wall times;
exit 0 when the table was made.
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

from bids_app.bids.outputs import DWI_STATS
from bids_app.settings import DEFAULT_SEED
from bids_app.simulate.dataset import simulate
from bids_app.simulate.effects import load_effects
from bids_app.simulate.validation import (
    ATLAS_FEATURE,
    BUNDLE_FEATURE,
    format_side_by_side,
    validation_from_outputs,
    write_validation,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHARED / "data" / "templateflow"))


def _measure(text: str) -> tuple[str, str]:
    name, sep, feature = text.partition("=")
    if not sep or not name or "{region}" not in feature or "{hemisphere}" not in feature:
        raise argparse.ArgumentTypeError(
            f"{text!r}: need NAME=FEATURE with {{region}} and {{hemisphere}} in FEATURE")
    return name, feature


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--n-patients", type=int, default=4)
    parser.add_argument("--n-controls", type=int, default=4)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--effects", type=Path, default=None,
                        help="planted-effect YAML (default: alsmri simulate's defaults)")
    parser.add_argument("--measure", type=_measure, action="append", default=None,
                        metavar="NAME=FEATURE",
                        help=f"measured feature template (default: hcp842={ATLAS_FEATURE} and "
                             f"bundle={BUNDLE_FEATURE})")
    parser.add_argument("--participant-arg", action="append", default=[], metavar="ARG",
                        help="extra 'alsmri participant' argument (repeat; e.g. "
                             "--participant-arg=--no-unringing)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="simulation base-anatomy cache")
    opts = parser.parse_args(argv)
    out = (opts.out or Path(tempfile.mkdtemp(prefix="alsmri-tractval-"))).resolve()
    bids, derivatives = out / "bids", out / "derivatives"
    times = {}

    start = time.perf_counter()
    if not (bids / "truth.json").is_file():
        simulate(bids, n_patients=opts.n_patients, n_controls=opts.n_controls, seed=opts.seed,
                 effects=load_effects(opts.effects), data_dir=opts.data_dir,
                 cache_dir=opts.cache_dir, nprocs=opts.nprocs)
    times["simulate_s"] = round(time.perf_counter() - start)
    truth = json.loads((bids / "truth.json").read_text())

    labels = sorted(pid[len("sub-"):] for pid in truth["participants"]
                    if not list((derivatives / pid).glob(f"**/{DWI_STATS.glob()}")))
    start = time.perf_counter()
    if labels:
        cmd = [sys.executable, "-m", "bids_app", str(bids), str(derivatives), "participant",
               "--participant-label", *labels, "--nprocs", str(opts.nprocs),
               "--omp-nthreads", "1", "-w", str(out / "work"), *opts.participant_arg]
        if opts.data_dir:
            cmd += ["--data-dir", str(opts.data_dir)]
        print("running:", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"tract validation: alsmri participant failed (exit {rc})", file=sys.stderr)
            return rc
    times["participant_s"] = round(time.perf_counter() - start)
    times["participants_run"] = len(labels)

    start = time.perf_counter()
    measures = opts.measure or [("hcp842", ATLAS_FEATURE), ("bundle", BUNDLE_FEATURE)]
    table = validation_from_outputs(bids, derivatives, dict(measures))
    times["validation_s"] = round(time.perf_counter() - start, 1)
    path = write_validation(table, out / "tract_validation.tsv", meta={
        "Cohort": {"n_patients": truth["n_patients"], "n_controls": truth["n_controls"],
                   "seed": truth["seed"]},
        "ParticipantArguments": opts.participant_arg, "Measures": dict(measures),
        "Focal": truth.get("focal"), "WallTimes": times})
    print(format_side_by_side(table))
    print(f"tract validation: {path}; wall times {times}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
