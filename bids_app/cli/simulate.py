"""``alsmri simulate OUT_BIDS``: a known-truth ALS/control cohort from real anatomy."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from bids_app.errors import AlsmriError, UsageError
from bids_app.settings import DEFAULT_SEED
from bids_app.simulate.dataset import simulate
from bids_app.simulate.effects import load_effects
from bids_app.simulate.reference import PRESETS, preset_effects


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``alsmri simulate OUT_BIDS [--n-patients N] [--n-controls M] [--seed S]
    [--effects FILE]``."""
    parser = _Parser(
        prog="alsmri simulate",
        description="Write a BIDS dataset of simulated ALS patients and controls derived from "
                    "the real ds-xa30 subject (tensor field + T1w, random smooth deformation "
                    "and head position per participant, planted tract FA / precentral GM "
                    "effects, clinical scores) plus truth.json with every planted value.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_bids", type=Path, help="output BIDS directory (new or empty)")
    parser.add_argument("--n-patients", type=_count, default=4)
    parser.add_argument("--n-controls", type=_count, default=4)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--effects", type=Path, metavar="YAML",
                        help="planted-effect overrides (see bids_app/simulate/effects.py)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="plant a reference study's reported figures (applied before "
                             "--effects; bids_app/simulate/reference.py)")
    parser.add_argument("--source", type=Path, default=None,
                        help="source BIDS dataset (default: $ALSMRI_SHARED/data/bids/ds-xa30; "
                             "without ALSMRI_SHARED, ../shared beside the checkout or the "
                             "working directory)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="templates/atlases built by 'alsmri fetch-data' "
                             "(default: $ALSMRI_DATA, else the user cache)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the base anatomy is cached (default: $ALSMRI_CACHE/simulate "
                             "or ~/.cache/alsmri/simulate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``alsmri simulate``; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                            datefmt="%H:%M:%S")
        effects = load_effects(opts.effects, base_override=(
            preset_effects(opts.preset).effects if opts.preset else None))
        start = time.perf_counter()
        truth = simulate(opts.out_bids, n_patients=opts.n_patients,
                         n_controls=opts.n_controls, seed=opts.seed, effects=effects,
                         source_dir=opts.source, data_dir=opts.data_dir,
                         cache_dir=opts.cache_dir)
        print(f"alsmri simulate: {opts.n_patients} patients + {opts.n_controls} controls in "
              f"{opts.out_bids} ({time.perf_counter() - start:.0f} s; "
              f"{truth['simulate_seconds_per_participant']:.1f} s per participant)")
        return 0
    except AlsmriError as exc:
        print(f"alsmri simulate: error: {exc}", file=sys.stderr)
        return exc.exit_code
