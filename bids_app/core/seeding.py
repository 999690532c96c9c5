"""Reproducible antspyx calls.

antspyx (0.5+) ignores a ``random_seed`` keyword of :func:`ants.registration`: only its
module-level ``ants.config._random_seed`` reaches ``antsRegistration --random-seed``. Without
it, repeated registrations of the same images differ (the metric sampling and the SyN
initialisation draw from an unseeded generator), also on one thread.  ANTs reads
``--random-seed 0`` as "seed from the clock", so 0 is refused here.  Bit-identical results
also need one ITK thread (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1`` in the process's
environment before ITK first runs; setting it later has no effect).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import ants

T = TypeVar("T")


@contextmanager
def ants_seed(seed: int | None):
    """Seed ANTs' random sampling inside the block only (the previous seed is restored).

    Parameters
    ----------
    seed
        Seed passed to ``antsRegistration --random-seed`` (non-zero); ``None`` leaves it
        unchanged.

    Raises
    ------
    ValueError
        ``seed`` is 0, which ANTs treats as "no seed" (a clock-based one).
    """
    if seed is not None and int(seed) == 0:
        raise ValueError("ANTs random seed must be non-zero (antsRegistration --random-seed 0 "
                         "seeds from the clock)")
    old_seed = ants.config._random_seed
    if seed is not None:
        ants.config._random_seed = int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old_seed


#: environment of :func:`single_threaded` workers (ITK reads it once, when it first runs)
SINGLE_THREAD_ENV = {"ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "OMP_NUM_THREADS": "1"}


def single_threaded(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in a fresh process with one ITK/OpenMP thread.

    A seeded ANTs registration is bit-reproducible only on one thread, and ITK fixes its
    thread count when it first runs in a process, so a caller that has already used ITK (or
    wants its own threads) cannot switch; a spawned worker that inherits
    :data:`SINGLE_THREAD_ENV` can.  ``fn``, its arguments and its result must be picklable.
    """
    context = multiprocessing.get_context("spawn")
    saved = {key: os.environ.get(key) for key in SINGLE_THREAD_ENV}
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        os.environ.update(SINGLE_THREAD_ENV)
        try:  # the worker starts (and copies the environment) at submit
            future = pool.submit(fn, *args, **kwargs)
        finally:
            _restore(saved)
        return future.result()


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
