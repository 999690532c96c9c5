"""Advisory file locks (``fcntl.flock``) that say which process holds them.

The kernel releases a ``flock`` when its holder exits, however it exits (``SIGKILL``
included), so a killed run never leaves a stale lock behind. The lock file stays in place
(removing it would let a third process lock a new file while a second still waits on the old
one); it holds the holder's pid for messages only.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class LockHeld(Exception):
    """The lock is held by another process (raised by :func:`file_lock` with ``wait=False``)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{path}: locked by {holder}")
        self.path = path
        self.pid = pid


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid written in a lock file (``None`` when empty or unreadable)."""
    for attempt in range(3):  # the holder writes its pid right after taking the lock
        try:
            text = Path(path).read_text().strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.05 * (attempt + 1))
    return None


@contextmanager
def file_lock(path: str | os.PathLike[str], *, wait: bool = True,
              on_wait: Callable[[int | None], None] | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    Parameters
    ----------
    path
        The lock file; its parent directory is created.
    wait
        Block until the lock is free; ``False`` raises :class:`LockHeld` at once.
    on_wait
        Called with the holder's pid before blocking (e.g. to log that the run waits).

    Raises
    ------
    LockHeld
        ``wait=False`` and another process holds the lock.
    OSError
        The lock file cannot be created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(path)
            if not wait:
                raise LockHeld(path, holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
