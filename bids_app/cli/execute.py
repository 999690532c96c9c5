"""Run a nipype workflow with resource limits, file logging and one progress line per step."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from bids_app.errors import AlsmriError, BadDataError
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
        name = node.fullname
        if status == "start":
            self.started[name] = time.monotonic()
            return
        if node.name.startswith(_QUIET_PREFIXES):
            return
        elapsed = time.monotonic() - self.started.pop(name, time.monotonic())
        parts = name.split(".")
        who = next((p.replace("_wf", "") for p in parts if p.startswith("sub_")), "")
        step = ".".join(p for p in parts[1:] if not p.startswith("sub_"))
        if status == "end":
            LOGGER.info("%s %s done (%.1f s)", who, step, elapsed)
        elif status == "exception":
            LOGGER.error("%s %s FAILED", who, step)


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
    """Send nipype's own logs to ``log_dir`` and keep them off the console."""
    from nipype import config
    from nipype import logging as nlogging

    config.update_config({
        "logging": {"log_directory": str(log_dir), "log_to_file": False,
                    "workflow_level": "INFO", "interface_level": "INFO"},
        "execution": execution_config(log_dir, stop_on_first_crash),
        "monitoring": {"enabled": False},
    })
    nlogging.update_logging(config)
    # A plain FileHandler: nipype's own rotating handler holds a file lock that breaks when
    # MultiProc forks workers.
    handler = logging.FileHandler(log_dir / "nipype.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils", "nipype"):
        logger = logging.getLogger(name)
        logger.propagate = False
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)


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
    """Run ``workflow`` in the work directory with the configured plugin."""
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
    plugin_args = {"status_callback": _Progress(), "raise_insufficient": False,
                   "maxtasksperchild": 1}
    if ny.nprocs > 1:
        plugin, plugin_args["n_procs"] = "MultiProc", ny.nprocs
        if ny.mem_mb:
            plugin_args["memory_gb"] = ny.mem_mb / 1024
    else:
        plugin = "Linear"
    try:
        workflow.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError as exc:
        crashes = sorted(str(p) for p in Path(log_dir).glob("crash-*"))
        where = crashes[0] if crashes else str(log_dir)
        bad = _bad_data_message(crashes)
        if bad:  # an input problem found while processing (e.g. an all-zero DWI): exit 65
            raise BadDataError(f"{bad} (see {where})") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "workflow failed"
        raise WorkflowFailed(f"{first} (see {where})") from exc


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
