"""Longitudinal, two-site validation: a planted FA decline recovered through participant + group.

Usage::

    python benchmarks/longitudinal.py [OUT] --n-patients 6 --n-controls 10 [--nprocs 2]
        [--effects YAML] [--participant-arg=ARG ...]

Steps (each reused when its output exists, so an interrupted run resumes):

1. ``alsmri simulate`` into ``OUT/bids`` with ``longitudinal-effects.yaml`` beside this script
   (two sites with additive and multiplicative FA scanner effects, two sessions one year
   apart, a per-year FA decline in the patients' planted tracts): truth per session in
   ``truth.json`` under the simulator's own tract placement;
2. ``alsmri participant`` on every session (``--no-motion-correction --no-bundles`` as the
   demo: the simulated volumes share one head position; ``--participant-arg`` adds options);
3. ``alsmri group`` (ComBat on the controls by default: at least 5 controls per site, hence
   10 controls over the two sites);
4. the longitudinal validation table (:mod:`bids_app.simulate.longitudinal_validation`):
   the true time x group slope of each tract from the per-session truth against the group
   level's mixed-model estimate (ratio, CI coverage, sign, q), written to
   ``OUT/longitudinal_validation.tsv``, and the site F-tests of the controls before/after
   harmonisation (``group_desc-harmonisation_stats.tsv``) summarised.

Prints the tables and wall times; exit 0 when every planted tract's decline has the right sign
and q < 0.05.
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

import pandas as pd

from bids_app.bids.outputs import DWI_STATS, GROUP_DIR, GROUP_OUTPUTS
from bids_app.settings import DEFAULT_SEED
from bids_app.simulate.dataset import simulate
from bids_app.simulate.effects import load_effects
from bids_app.simulate.longitudinal_validation import (
    longitudinal_validation_from_outputs,
    write_longitudinal_validation,
)

HERE = Path(__file__).resolve().parent
EFFECTS = HERE / "longitudinal-effects.yaml"
SHARED = Path(os.environ.get("ALSMRI_SHARED", HERE.parents[1] / "shared")).resolve()
os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHARED / "data" / "templateflow"))
PARTICIPANT = ("--no-motion-correction", "--no-bundles")


def _alsmri(*args: str) -> int:
    cmd = [sys.executable, "-m", "bids_app", *args]
    print("running:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--n-patients", type=int, default=6)
    parser.add_argument("--n-controls", type=int, default=10)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--effects", type=Path, default=EFFECTS)
    parser.add_argument("--participant-arg", action="append", default=[], metavar="ARG")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="simulation base-anatomy cache")
    opts = parser.parse_args(argv)
    out = (opts.out or Path(tempfile.mkdtemp(prefix="alsmri-longitudinal-"))).resolve()
    bids, derivatives = out / "bids", out / "derivatives"
    times: dict[str, float] = {}

    start = time.perf_counter()
    if not (bids / "truth.json").is_file():
        simulate(bids, n_patients=opts.n_patients, n_controls=opts.n_controls, seed=opts.seed,
                 effects=load_effects(opts.effects), cache_dir=opts.cache_dir,
                 nprocs=opts.nprocs)
    times["simulate_s"] = round(time.perf_counter() - start)
    truth = json.loads((bids / "truth.json").read_text())

    todo = sorted(pid[len("sub-"):] for pid, rec in truth["participants"].items()
                  if len(list((derivatives / pid).glob(f"**/{DWI_STATS.glob()}")))
                  < max(len(rec.get("sessions", {})), 1))
    start = time.perf_counter()
    if todo:
        rc = _alsmri(str(bids), str(derivatives), "participant", "--participant-label", *todo,
                     "--nprocs", str(opts.nprocs), "--omp-nthreads", "1", "-w",
                     str(out / "work"), *PARTICIPANT, *opts.participant_arg)
        if rc != 0:
            print(f"longitudinal benchmark: participant level failed (exit {rc})",
                  file=sys.stderr)
            return rc
    times["participant_s"] = round(time.perf_counter() - start)
    start = time.perf_counter()
    rc = _alsmri(str(bids), str(derivatives), "group", "-w", str(out / "work"))
    if rc != 0:
        print(f"longitudinal benchmark: group level failed (exit {rc})", file=sys.stderr)
        return rc
    times["group_s"] = round(time.perf_counter() - start, 1)

    table = longitudinal_validation_from_outputs(bids, derivatives)
    path = write_longitudinal_validation(table, out / "longitudinal_validation.tsv", meta={
        "Cohort": {"n_patients": truth["n_patients"], "n_controls": truth["n_controls"],
                   "seed": truth["seed"]},
        "Effects": {k: truth["effects"][k] for k in ("sites", "sessions")},
        "ParticipantArguments": [*PARTICIPANT, *opts.participant_arg], "WallTimes": times})
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["statistic"]).to_string(index=False,
                                                          float_format=lambda v: f"{v:.4g}"))
        harm = derivatives / GROUP_DIR / GROUP_OUTPUTS["harmonisation"]
        if harm.is_file():
            h = pd.read_csv(harm, sep="\t", na_values=["n/a"])
            fa = h[h["feature"].str.contains("_fa_wmean")]
            before = (f"site F-test on controls, {len(fa)} FA wmean features: p < 0.05 in "
                      f"{int((fa.p_before < 0.05).sum())} before")
            if fa.p_after.isna().all():
                print(f"{before} (median p {fa.p_before.median():.3g}); harmonisation was "
                      "skipped (see the group log)")
            else:
                print(f"{before}, {int((fa.p_after < 0.05).sum())} after harmonisation "
                      f"(median p {fa.p_before.median():.3g} -> {fa.p_after.median():.3g})")
    print(f"longitudinal validation: {path}; wall times {times}")
    planted = {key for key, spec in truth["effects"]["tracts"].items() if spec.get("fa_change")}
    graded = table[[f"{a}/{r}" in planted for a, r in zip(table.atlas, table.region)]]
    ok = len(graded) and bool((graded.same_sign & graded.significant).all())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
