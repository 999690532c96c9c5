"""Shared fixtures: locations of the read-only shared data and the built atlas cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"

# Templates never come from the network in tests.
os.environ.setdefault("TEMPLATEFLOW_HOME", str(DATA / "templateflow"))
os.environ.setdefault("ALSMRI_DATA_MIRROR", str(DATA / "sources"))
os.environ.setdefault("MPLBACKEND", "Agg")
# The tests share one process. ITK fixes its thread count the first time it runs in a process
# and nipype's MultiProc workers are forked from it, so a test that runs ANTs in-process
# (e.g. a single node) before a workflow test would leave every later workflow multithreaded:
# seeded registrations are then no longer reproducible (the demo's recovery table changed with
# test order). One thread, as the pipeline itself runs with --omp-nthreads 1.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_report_header(config):
    return f"alsmri shared data: {DATA} (exists: {DATA.is_dir()})"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$ALSMRI_SHARED/data`` (read-only real data)."""
    if not DATA.is_dir():
        pytest.fail(f"shared data not found at {DATA}; set ALSMRI_SHARED")
    return DATA


@pytest.fixture(scope="session")
def ds_xa30(shared_data) -> Path:
    """The real one-subject dataset (2 DWI runs AP/PA, one T1w)."""
    return shared_data / "bids" / "ds-xa30"


@pytest.fixture(scope="session")
def ds114(shared_data) -> Path:
    """The ds114 layout (10 subjects x 2 sessions, empty image placeholders)."""
    return shared_data / "bids" / "ds114-layout"


@pytest.fixture(scope="session")
def built_data_dir(shared_data) -> Path:
    """Templates/atlases built once from the shared mirror into a git-ignored cache.

    ``$ALSMRI_DATA`` is honoured when set (e.g. by CI after its own ``fetch-data``).
    """
    from bids_app.cli.fetch_data import main as fetch_main

    dest = Path(os.environ.get("ALSMRI_DATA", REPO / ".cache" / "alsmri-data"))
    rc = fetch_main(["--mirror", str(shared_data / "sources"), "--dest", str(dest)])
    assert rc == 0, f"fetch-data failed with exit code {rc}"
    os.environ["ALSMRI_DATA"] = str(dest)
    return dest


@pytest.fixture
def warnings_log(caplog):
    """Capture ``alsmri.group`` records (INFO and up) even when the CLI disabled propagation."""
    logger = logging.getLogger("alsmri.group")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="alsmri.group")
    yield caplog
    logger.removeHandler(caplog.handler)
