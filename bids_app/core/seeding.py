"""Reproducible antspyx calls.

antspyx (0.5+) ignores a ``random_seed`` keyword of :func:`ants.registration`: only its
module-level ``ants.config._random_seed`` reaches ``antsRegistration --random-seed``. Without
it, repeated registrations of the same images differ (the metric sampling and the SyN
initialisation draw from an unseeded generator), also on one thread.
"""

from __future__ import annotations

from contextlib import contextmanager

import ants


@contextmanager
def ants_seed(seed: int | None):
    """Seed ANTs' random sampling inside the block only (the previous seed is restored).

    Parameters
    ----------
    seed
        Seed passed to ``antsRegistration --random-seed``; ``None`` leaves it unchanged.
    """
    old_seed = ants.config._random_seed
    if seed is not None:
        ants.config._random_seed = int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old_seed
