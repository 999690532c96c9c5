"""Runs that end early: signals, the process tree of a run, full disks in tracebacks."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bids_app.bids.derivatives import NO_SPACE_ERRNOS
from bids_app.errors import CannotCreateOutput

#: The signals that stop a run: what Slurm, ``timeout`` and ``docker stop`` send, and Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived (exit 128 + signal number).

    A ``BaseException`` like ``KeyboardInterrupt``: nipype's ``except Exception`` clauses
    must not turn it into a node crash. ``what`` names the work that was interrupted.
    """

    def __init__(self, signum: int, what: str = "") -> None:
        super().__init__(signum)
        self.signum = signum
        self.what = what

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"terminated by {name}" + (f" {self.what}" if self.what else "")


#: The stop signal this process received inside :func:`interrupt_on_signals` (at most one).
_received: list[int] = []


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` again for a stop signal that arrived earlier.

    nipype runs an interface inside a context that records every exception, ``BaseException``
    included, as a node failure; code between nodes calls this so the run still stops.
    """
    if _received:
        raise Interrupted(_received[0])


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` in this process while in the block.

    The first signal wins: both are ignored from then on, so a second Ctrl-C cannot cut
    the clean-up short. A forked worker gets the default actions back (see
    :func:`_default_actions_in_child`): it just ends, at once, even inside a long C call;
    the main process reports and stops the rest. Outside the main thread nothing is
    installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _received.append(signum)
        raise Interrupted(signum)

    handler.alsmri_interrupt = True
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        _received.clear()
        for sig, old in previous.items():
            signal.signal(sig, old)


def _default_actions_in_child() -> None:
    """After a fork: the default actions of SIGTERM/SIGINT instead of our handler.

    A Python handler runs only between bytecodes, so a worker inside a long ITK call
    would ignore the signal until the call returns.
    """
    for sig in STOP_SIGNALS:
        if getattr(signal.getsignal(sig), "alsmri_interrupt", False):
            signal.signal(sig, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_actions_in_child)


def stop_process_tree(grace: float = 3.0) -> int:
    """Stop every process started by this one: nipype's workers and whatever they run.

    The descendants are found in ``/proc`` (``multiprocessing.active_children()`` where
    there is none) and sent SIGTERM; those still running after ``grace`` seconds get
    SIGKILL. Returns how many processes were stopped.
    """
    # The worker pool breaks: concurrent.futures would log every pending task's failure.
    futures_log = logging.getLogger("concurrent.futures")
    futures_log.addHandler(logging.NullHandler())
    futures_log.propagate = False
    stopped: set[int] = set()
    start = time.monotonic()
    while time.monotonic() - start < grace + 5:  # a process stuck in the kernel: give up
        alive = {pid for pid in _descendants() if _alive(pid)}
        if not alive:
            break
        late = time.monotonic() - start > grace
        for pid in alive if late else alive - stopped:
            try:
                os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
            except ProcessLookupError:
                pass
        stopped |= alive
        time.sleep(0.05)
    for child in multiprocessing.active_children():  # reaps the workers
        child.join(timeout=1)
    return len(stopped)


def _descendants() -> set[int]:
    """Process ids of this process's descendants (children, grandchildren ...)."""
    if not Path("/proc/self/stat").exists():
        return {child.pid for child in multiprocessing.active_children()}
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    if Path("/proc/self/stat").exists():
        try:
            stat = Path("/proc", str(pid), "stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


#: A full disk in a traceback: our own error, which names the file (its message may be
#: wrapped in a tuple by nipype's interface error handling), or an ``OSError`` with the
#: errno, with or without a path.
_NO_SPACE_MESSAGE = re.compile(
    r"CannotCreateOutput: \(?['\"]?(?P<message>.+?: no space left on device)")
_NO_SPACE_ERRNO = re.compile(
    rf"\[Errno (?:{errno.ENOSPC}|{errno.EDQUOT})\][^'\n:]*(?::\s*'(?P<path>[^'\n]+)')?")


def no_space_in_traceback(text: str, where: str) -> CannotCreateOutput | None:
    """:class:`CannotCreateOutput` for the full-disk error in a traceback ``text``.

    The first message naming a file wins (ours, then an ``OSError``'s); an ``OSError``
    without a file name is attributed to ``where`` (the node's directory).
    """
    message = _NO_SPACE_MESSAGE.search(text)
    if message is not None:
        return CannotCreateOutput(message.group("message"))
    found = list(_NO_SPACE_ERRNO.finditer(text))
    if not found:
        return None
    path = next((m.group("path") for m in found if m.group("path")), where)
    return CannotCreateOutput(f"{path}: no space left on device")


def first_no_space(exc: BaseException, where: str | os.PathLike[str]
                   ) -> CannotCreateOutput | None:
    """:class:`CannotCreateOutput` for the earliest full-disk error in the chain of ``exc``.

    A failed log or crash-file write usually happens while the first failure (e.g. an
    output that could not be written) is being handled: that one is named. Our own error
    names its file; else the earliest ``OSError`` with a file name; else ``where``.
    """
    ours: list[str] = []
    named: list[str] = []
    unnamed = False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        first = str(exc.args[0]) if exc.args else ""
        if isinstance(exc, CannotCreateOutput) and first.endswith("no space left on device"):
            ours.append(first)
        elif isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            if exc.filename:
                named.append(f"{exc.filename}: no space left on device")
            unnamed = unnamed or not exc.filename
        exc = exc.__cause__ or exc.__context__
    if ours or named:
        return CannotCreateOutput((ours or named)[-1])
    return CannotCreateOutput(f"{where}: no space left on device") if unnamed else None
