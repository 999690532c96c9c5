"""Known-truth recovery benchmark: simulate, run participant + group, print the recovery table.

Usage::

    python benchmarks/recovery.py [OUT] --n-patients 39 --n-controls 32 [--nprocs 2] [--seed S]

Runs ``alsmri demo`` with the given cohort size (the second study's size by default) and prints
wall time, peak RSS (this process and its children) and the recovery table.  Exit status is the
demo's (0 only when every planted effect is recovered).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--n-patients", type=int, default=39)
    parser.add_argument("--n-controls", type=int, default=32)
    parser.add_argument("--nprocs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="simulation base-anatomy cache (see 'alsmri demo --help')")
    opts = parser.parse_args(argv)
    out = opts.out or Path(tempfile.mkdtemp(prefix="alsmri-recovery-"))
    from bids_app.cli.demo import main as demo_main

    start = time.perf_counter()
    extra = ["--cache-dir", str(opts.cache_dir)] if opts.cache_dir else []
    rc = demo_main([str(out), "--n-patients", str(opts.n_patients), "--n-controls",
                    str(opts.n_controls), "--nprocs", str(opts.nprocs), "--seed",
                    str(opts.seed), *extra])
    wall = time.perf_counter() - start
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"recovery benchmark: {opts.n_patients} patients + {opts.n_controls} controls, "
          f"nprocs {opts.nprocs}: wall {wall:.0f} s, peak RSS {self_mb:.0f} MB (self), "
          f"{child_mb:.0f} MB (largest child); exit {rc}; outputs in {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
