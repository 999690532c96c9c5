"""Run a nipype workflow with resource limits, file logging and one progress line per step."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from traceback import format_exception

from nipype.pipeline.plugins import MultiProcPlugin

from bids_app.bids.derivatives import NO_SPACE_ERRNOS
from bids_app.cli.faults import (
    Interrupted,
    first_no_space,
    no_space_in_traceback,
    raise_if_interrupted,
    stop_process_tree,
)
from bids_app.errors import AlsmriError, BadDataError, CannotCreateOutput
from bids_app.settings import Settings

LOGGER = logging.getLogger("alsmri")

#: Nodes not worth a progress line (plumbing and sinks).
_QUIET_PREFIXES = ("inputnode", "outputnode", "ds_", "buffer", "merge_", "select_")


class WorkflowFailed(AlsmriError):
    """A processing step failed (exit 1); details are in the crash files."""

    exit_code = 1


class _Progress:
    """nipype ``status_callback``: one concise line per finished step."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def __call__(self, node, status: str) -> None:
        # A node run in this process (nipype's run_without_submitting) swallows a stop signal
        # that arrived while it ran; it is raised here, between nodes.
        raise_if_interrupted()
        name = node.fullname
        if status == "start":
            self.started[name] = time.monotonic()
            return
        elapsed = time.monotonic() - self.started.pop(name, time.monotonic())
        if node.name.startswith(_QUIET_PREFIXES):
            return
        if status == "end":
            LOGGER.info("%s done (%.1f s)", _step_label(name), elapsed)
        elif status == "exception":
            LOGGER.error("%s FAILED", _step_label(name))

    def running(self) -> list[str]:
        """Labels of the steps started and not yet finished (plumbing and sinks left out)."""
        return [_step_label(name) for name in self.started
                if not name.rsplit(".", 1)[-1].startswith(_QUIET_PREFIXES)]


def _step_label(fullname: str) -> str:
    """``sub_01 dwi_wf.fit`` for the node ``alsmri_wf.sub_01_wf.dwi_wf.fit``."""
    parts = fullname.split(".")
    who = next((p.replace("_wf", "") for p in parts if p.startswith("sub_")), "")
    step = ".".join(p for p in parts[1:] if not p.startswith("sub_"))
    return f"{who} {step}".strip()


def execution_config(log_dir: Path, stop_on_first_crash: bool = False) -> dict:
    """nipype execution options: text crash files in the run's log dir, keep outputs.

    The scheduler polls every 0.1 s instead of nipype's 2 s: a participant graph has ~15
    dependency levels of mostly sub-second nodes, so 2 s polls added ~30 s per DWI branch.
    """
    return {"crashdump_dir": str(log_dir), "crashfile_format": "txt",
            "stop_on_first_crash": stop_on_first_crash,
            "remove_unnecessary_outputs": False, "check_version": False,
            "poll_sleep_duration": 0.1}


def configure_nipype(log_dir: Path, *, stop_on_first_crash: bool) -> None:
    """Send nipype's own logs to ``log_dir`` and keep them off the console.

    Crash files are written atomically, and a full disk met while writing the log or a
    crash file, or by a crashed node, stops the run (:class:`CannotCreateOutput`).
    """
    from nipype import config
    from nipype import logging as nlogging
    from nipype.pipeline.plugins import tools

    config.update_config({
        "logging": {"log_directory": str(log_dir), "log_to_file": False,
                    "workflow_level": "INFO", "interface_level": "INFO"},
        "execution": execution_config(log_dir, stop_on_first_crash),
        "monitoring": {"enabled": False},
    })
    nlogging.update_logging(config)
    # A plain FileHandler: nipype's own rotating handler holds a file lock that breaks when
    # MultiProc forks workers.
    handler = _LogFile(log_dir / "nipype.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils", "nipype"):
        logger = logging.getLogger(name)
        logger.propagate = False
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
    # nipype's report_crash writes txt crash files with this function, in place: a crash on
    # a full disk left a zero-byte crash file. Wrapped once per process.
    if not isinstance(tools.crash2txt, _CrashFileWriter):
        tools.crash2txt = _CrashFileWriter(tools.crash2txt)


class _LogFile(logging.FileHandler):
    """nipype's log file; a full disk raises :class:`CannotCreateOutput` from every log call.

    The plain ``logging`` behaviour would print a traceback per log call on the console and
    let the run go on; raising again on every later call makes sure one reaches the
    scheduler even when nipype catches the first.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, delay=True)
        self.full: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.full is not None:
            raise CannotCreateOutput(self.full)
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            full = first_no_space(exc, self.baseFilename)
            self.full = str(full)
            raise full from exc
        super().handleError(record)


class _CrashFileWriter:
    """Write a nipype txt crash file through a temp file and ``os.replace``.

    When the crash (or the writing of its file) was a full disk, raise
    :class:`CannotCreateOutput` naming the first path that could not be written: nipype's
    scheduler stops there (as with ``stop_on_first_crash``) instead of running on.
    """

    def __init__(self, write) -> None:
        self.write = write

    def __call__(self, filename: str, record: dict) -> None:
        full = _no_space_in_crash(record)
        folder, name = os.path.split(filename)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
            os.close(fd)
            self.write(tmp, record)
            os.chmod(tmp, 0o644)
            os.replace(tmp, filename)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if exc.errno in NO_SPACE_ERRNOS:
                raise (full or CannotCreateOutput(f"{filename}: no space left on device")
                       ) from exc
            raise
        if full is not None:
            raise full


class _MultiProcPlugin(MultiProcPlugin):
    """nipype's MultiProc, with a task whose worker call raised counted as a crash.

    nipype's worker function re-reads the node's result file after a node failed; when
    that file could not be written (a full disk) it raises, the future's callback fails,
    the task's result is never recorded and the scheduler waits forever.
    """

    def _async_callback(self, args) -> None:
        if args.cancelled() or args.exception() is None:
            super()._async_callback(args)
            return
        # the callback may run inside submit(), before the future is filed under its id
        taskid = next((tid for tid, fut in self._task_obj.items() if fut is args), self._taskid)
        self._taskresult[taskid] = {"result": None, "taskid": taskid,
                                    "traceback": format_exception(args.exception())}


def _no_space_in_crash(record: dict) -> CannotCreateOutput | None:
    """The full-disk error of a nipype crash record (node and traceback lines), if any."""
    trace = record.get("traceback") or ""
    text = trace if isinstance(trace, str) else "".join(trace)
    node = record.get("node")
    try:
        where = node.output_dir() if node is not None else "work directory"
    except Exception:  # noqa: BLE001 - only used to word the message
        where = "work directory"
    return no_space_in_traceback(text, where)


def write_workflow_graph(workflow, log_dir: Path) -> Path | None:
    """Write the colored hierarchical graph of ``workflow`` as ``log_dir/graph.dot``.

    The Graphviz text is written by nipype itself, so the ``dot`` program is not needed; an
    SVG is rendered next to it only when ``dot`` is on the ``PATH``. A graph that cannot be
    written is logged as a warning and never stops the run.

    Returns
    -------
    Path or None
        The ``.dot`` file, or ``None`` when it could not be written.
    """
    dotfile = Path(log_dir) / "graph.dot"
    try:
        workflow.write_hierarchical_dotfile(dotfilename=str(dotfile), colored=True,
                                            simple_form=True)
    except Exception as exc:  # noqa: BLE001 - a diagnostic aid must not abort processing
        LOGGER.warning("workflow graph not written to %s (%s)", dotfile, exc)
        return None
    if shutil.which("dot"):
        from nipype.pipeline.engine.utils import format_dot

        try:
            format_dot(str(dotfile), format="svg")
        except Exception as exc:  # noqa: BLE001 - as above
            LOGGER.warning("workflow graph %s not rendered to SVG (%s)", dotfile, exc)
    LOGGER.info("workflow graph: %s", dotfile)
    return dotfile


def execute_workflow(workflow, *, settings: Settings, log_dir: Path) -> None:
    """Run ``workflow`` in the work directory with the configured plugin.

    Whatever ends the run early (a signal, a full disk, a crash with
    ``--stop-on-first-crash``) also ends the worker processes still computing.
    """
    ex, ny = settings.execution, settings.nipype
    # Threads per process for ITK (antspyx) and BLAS/OpenMP; a value set by the user wins.
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, str(ny.omp_nthreads))
    configure_nipype(log_dir, stop_on_first_crash=ny.stop_on_first_crash)
    # A workflow copies nipype's global config when it is created (before the call above),
    # and its own copy wins at run time: set the execution options on it too.
    workflow.config["execution"].update(execution_config(log_dir, ny.stop_on_first_crash))
    workflow.base_dir = str(ex.work_dir)
    if ex.write_graph:
        write_workflow_graph(workflow, log_dir)
    progress = _Progress()
    # MultiProc also for --nprocs 1: nodes then run in forked workers, which a stop signal
    # ends at once. nipype's serial plugin runs them in this process, where its interface
    # runner catches every exception (Interrupted too) and goes on with the next node.
    plugin_args = {"status_callback": progress, "raise_insufficient": False,
                   "maxtasksperchild": 1, "n_procs": ny.nprocs}
    if ny.mem_mb:
        plugin_args["memory_gb"] = ny.mem_mb / 1024
    plugin = _MultiProcPlugin(plugin_args=plugin_args)
    try:
        workflow.run(plugin=plugin, plugin_args=plugin_args)
    except Interrupted as exc:
        running = progress.running()
        exc.what = (f"while running {', '.join(running) if running else workflow.name}; "
                    f"finished steps are kept in {ex.work_dir} (rerun with the same -w to "
                    "resume)")
        stop_process_tree()
        raise
    except RuntimeError as exc:
        stop_process_tree()  # after a crash with stop_on_first_crash the workers still run
        crashes = sorted(str(p) for p in Path(log_dir).glob("crash-*"))
        where = crashes[0] if crashes else str(log_dir)
        full = next((err for err in map(_no_space_in_file, crashes) if err), None)
        if full is not None:
            raise full from exc
        bad = _bad_data_message(crashes)
        if bad:  # an input problem found while processing (e.g. an all-zero DWI): exit 65
            raise BadDataError(f"{bad} (see {where})") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "workflow failed"
        raise WorkflowFailed(f"{first} (see {where})") from exc
    except OSError as exc:  # nipype's own writes in the work directory
        stop_process_tree()
        full = first_no_space(exc, ex.work_dir)
        if full is not None:
            raise full from exc
        raise
    except BaseException:
        stop_process_tree()
        raise


def _no_space_in_file(crash_file: str) -> CannotCreateOutput | None:
    """The full-disk error recorded in a txt crash file, if any."""
    try:
        text = Path(crash_file).read_text(errors="replace")
    except OSError:
        return None
    where = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("Working directory:")), crash_file)
    return no_space_in_traceback(text, where)


_BAD_DATA_LINE = re.compile(r"^(?:bids_app\.errors\.)?BadDataError: (.+)$")


def _bad_data_message(crash_files: list[str]) -> str | None:
    """The message of a :class:`BadDataError` raised inside a node, read from its crash file.

    nipype runs nodes in worker processes and only keeps the traceback text (txt crash
    files, see :func:`configure_nipype`), so the exception type is recovered from there.
    """
    for path in crash_files:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            match = _BAD_DATA_LINE.match(line.strip())
            if match:
                return match.group(1).strip()
    return None
