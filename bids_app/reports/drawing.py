"""Draw independent figures in parallel worker processes.

Rendering (text layout, rasterising, PNG encoding) is most of the group level's writing time
and each figure is independent of the others, so with ``processes > 1`` the figures are drawn
by a pool of forked workers. Forking hands every worker the results it draws from without
pickling them: a job is a zero-argument callable given to the workers as the pool's
initialiser argument (inherited by the fork), and only its index and the returned path cross
the process boundary. Without ``fork`` (Windows, or ``processes == 1``) the figures are drawn
one after the other in this process; the files written are the same either way.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

#: A figure job: draws and saves one figure, returns its path (``None``: nothing to draw).
Job = Callable[[], Path | None]

_WORKER_JOBS: list[Job] = []  # set in each forked worker by _adopt, never in the parent


def _adopt(jobs: list[Job]) -> None:
    _WORKER_JOBS[:] = jobs


def _draw(index: int) -> Path | None:
    return _WORKER_JOBS[index]()


@contextmanager
def drawing(jobs: Mapping[str, Job], *, processes: int) -> Iterator[Callable[[], dict[str,
                                                                                    Path | None]]]:
    """Start drawing every figure; the context yields a function that waits for them.

    With worker processes the figures are drawn while the caller goes on (writing the
    tables); the function returns each job's outcome by key, in the order of ``jobs``.

    Parameters
    ----------
    jobs
        Key -> job; put the costliest first (they are handed out in order).
    processes
        Worker processes (``1``: the jobs run in this process when the outcomes are asked for).
    """
    workers = min(processes, len(jobs))
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        yield lambda: {key: job() for key, job in jobs.items()}
        return
    with mp.get_context("fork").Pool(workers, initializer=_adopt,
                                      initargs=(list(jobs.values()),)) as pool:
        pending = pool.map_async(_draw, range(len(jobs)), chunksize=1)
        yield lambda: dict(zip(jobs, pending.get(), strict=True))
