"""Known-truth recovery benchmark: simulate, run participant + group, print the recovery table.

Usage::

    python benchmarks/recovery.py [OUT] --n-patients 39 --n-controls 32 [--nprocs 2] [--seed S]

Runs ``alsmri demo`` with the given cohort size (the second study's size by default) and prints
wall time, peak RSS (this process and its children), the recovery table and the tract
validation table (recovered/true FA difference, leakage into the corticothalamic tract, r with
the truth: :mod:`bids_app.simulate.validation`; also ``OUT/tract_validation.tsv``).  Exit status
is the demo's (0 only when every planted effect is recovered).

The simulator places its lesions by a route the measurement does not share (XTRACT / HCP1065
maps through the source T1w, a focal CST lesion; :mod:`bids_app.simulate.placement`), so atlas
misplacement and registration bias show in both tables.  The planted effects are study-scale
(``study-effects.yaml`` beside this script: tract FA -8..-10 % in the CST and corticostriatal
tract, -8 % more focally along the CST, precentral GM -8 %, score |r| 0.4-0.6);
``--demo-effects`` plants the demo's deliberately large defaults (FA -22..-25 %, made for 5 + 5
participants) instead, and ``--effects FILE`` any other specification.

``--preset hsueh2023`` plants the second reference study's own reported figures
(:mod:`bids_app.simulate.reference`, from ``$ALSMRI_SHARED/reference/hsueh2023.yaml``) and
writes ``OUT/paper_comparison.tsv`` (+ JSON with the agreement summary): every figure of the
paper against alsmri's group output, with the planted value and its power
(:mod:`bids_app.simulate.paper_comparison`).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bids_app.settings import DEFAULT_SEED

STUDY_EFFECTS = Path(__file__).resolve().parent / "study-effects.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--n-patients", type=int, default=39)
    parser.add_argument("--n-controls", type=int, default=32)
    parser.add_argument("--nprocs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--effects", type=Path, default=STUDY_EFFECTS,
                        help="planted-effect YAML (default: %(default)s)")
    parser.add_argument("--preset", default=None,
                        help="plant a reference study's reported figures (e.g. hsueh2023) "
                             "instead of --effects, and compare the group output with them")
    parser.add_argument("--demo-effects", action="store_true",
                        help="plant the demo's default (large) effects instead of --effects")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="simulation base-anatomy cache (see 'alsmri demo --help')")
    opts = parser.parse_args(argv)
    out = opts.out or Path(tempfile.mkdtemp(prefix="alsmri-recovery-"))
    from bids_app.cli.demo import main as demo_main

    start = time.perf_counter()
    extra = ["--cache-dir", str(opts.cache_dir)] if opts.cache_dir else []
    if opts.preset:
        extra += ["--preset", opts.preset]
    elif not opts.demo_effects:
        extra += ["--effects", str(opts.effects)]
    rc = demo_main([str(out), "--n-patients", str(opts.n_patients), "--n-controls",
                    str(opts.n_controls), "--nprocs", str(opts.nprocs), "--seed",
                    str(opts.seed), *extra])
    wall = time.perf_counter() - start
    if (out / "derivatives").is_dir() and (out / "bids" / "truth.json").is_file():
        _tract_validation(out)
        if opts.preset:
            _paper_comparison(out, opts.preset)
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"recovery benchmark: {opts.n_patients} patients + {opts.n_controls} controls, "
          f"nprocs {opts.nprocs}: wall {wall:.0f} s, peak RSS {self_mb:.0f} MB (self), "
          f"{child_mb:.0f} MB (largest child); exit {rc}; outputs in {out}")
    return rc


def _tract_validation(out: Path) -> None:
    """Print and write the validation table of today's atlas metric and the simulator-weights
    measure (see ``benchmarks/tract_validation.py``)."""
    import json

    import pandas as pd

    from bids_app.simulate.validation import (
        ATLAS_FEATURE,
        SIMWEIGHTS,
        format_side_by_side,
        participant_features,
        simulator_weight_features,
        tract_validation,
        write_validation,
    )

    truth = json.loads((out / "bids" / "truth.json").read_text())
    derivatives = out / "derivatives"
    table = pd.concat([
        tract_validation(truth, participant_features(derivatives), feature=ATLAS_FEATURE,
                         measure="hcp842"),
        tract_validation(truth, simulator_weight_features(out / "bids", derivatives, truth),
                         feature=SIMWEIGHTS, measure="simweights")], ignore_index=True)
    path = write_validation(table, out / "tract_validation.tsv")
    print(format_side_by_side(table))
    print(f"tract validation table: {path}")


def _paper_comparison(out: Path, preset: str) -> None:
    """Write and print the comparison of the group output with the preset's paper."""
    import json

    import pandas as pd

    from bids_app.bids.outputs import GROUP_DIR
    from bids_app.reports.paper_comparison import write_paper_comparison_html
    from bids_app.simulate.paper_comparison import paper_comparison, summary, write_comparison
    from bids_app.simulate.reference import load_reference, reference_path

    truth = json.loads((out / "bids" / "truth.json").read_text())
    table = paper_comparison(load_reference(reference_path(preset)),
                             out / "derivatives" / GROUP_DIR, truth)
    result = summary(table)
    path = write_comparison(table, out / "paper_comparison.tsv",
                            meta={"preset": preset, "summary": result})
    page = write_paper_comparison_html(table, result, out / "paper_comparison.html",
                                       title=f"alsmri vs {preset}: reported figures")
    keep = ["section", "figure", "hemisphere", "paper_value", "planted_value", "power",
            "recovered_value", "ci_low", "ci_high", "recovered_p", "agrees", "required"]
    with pd.option_context("display.width", 200, "display.max_rows", 400):
        print(table[keep].round(3).to_string(index=False))
    print(f"paper comparison: {json.dumps(result)}; table: {path}; page: {page}")


if __name__ == "__main__":
    sys.exit(main())
