"""Run a nipype workflow with resource limits, file logging and one progress line per step."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from bids_app.errors import AlsmriError
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


def configure_nipype(log_dir: Path, *, stop_on_first_crash: bool) -> None:
    """Send nipype's own logs to ``log_dir`` and keep them off the console."""
    from nipype import config
    from nipype import logging as nlogging

    config.update_config({
        "logging": {"log_directory": str(log_dir), "log_to_file": False,
                    "workflow_level": "INFO", "interface_level": "INFO"},
        "execution": {"crashdump_dir": str(log_dir), "crashfile_format": "txt",
                      "stop_on_first_crash": stop_on_first_crash,
                      "remove_unnecessary_outputs": False, "check_version": False},
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


def execute_workflow(workflow, *, settings: Settings, log_dir: Path) -> None:
    """Run ``workflow`` in the work directory with the configured plugin."""
    ex, ny = settings.execution, settings.nipype
    # Threads per process for ITK (antspyx) and BLAS/OpenMP; a value set by the user wins.
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, str(ny.omp_nthreads))
    configure_nipype(log_dir, stop_on_first_crash=ny.stop_on_first_crash)
    workflow.base_dir = str(ex.work_dir)
    if ex.write_graph:
        workflow.write_graph(graph2use="colored", format="svg", simple_form=True,
                             dotfilename=str(log_dir / "graph.dot"))
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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "workflow failed"
        raise WorkflowFailed(f"{first} (see {where})") from exc
