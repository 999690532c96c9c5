"""pybids layout construction with a persistent, crash- and concurrency-safe SQLite index.

The index of a dataset is kept in ``WORK_DIR/bids_db/<hash>/layout_index.sqlite`` (or in the
directory given with ``--bids-database-dir``) and reused by later runs. It is built under a
temporary name in that directory and renamed into place only once pybids has finished (files
*and* sidecar metadata) and it carries a completion mark, so a run killed while indexing
leaves no index under the final name. An index found there is checked before it is reused
(SQLite integrity, completion mark, dataset root, participants present); a broken one in the
work directory is rebuilt with a warning. Building happens under an exclusive ``flock``: a
second run started at the same time waits for the first one's index and then reuses it.
Reading a complete index takes no lock and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from bids_app.core.locking import file_lock
from bids_app.errors import (
    BadDataError,
    CannotCreateOutput,
    MissingInputError,
    UsageError,
    ValidationFailed,
)

LOGGER = logging.getLogger("alsmri.bids")

#: pybids' file name of the index inside its database directory.
INDEX_FILE = "layout_index.sqlite"
#: Lock file, in the database directory, held while an index is being built there.
LOCK_FILE = ".alsmri-index.lock"
#: Prefix of the temporary directories an index is built in.
TMP_PREFIX = ".alsmri-building-"
#: SQLite ``user_version`` set on an index once pybids has finished writing it ("alsm").
COMPLETE_MARK = 0x616C736D


def check_dataset_description(bids_dir: Path) -> dict:
    """Read and check ``dataset_description.json`` (raises :class:`ValidationFailed`)."""
    desc = bids_dir / "dataset_description.json"
    if not desc.is_file():
        raise ValidationFailed(
            f"{desc}: missing; not a BIDS dataset (use --skip-bids-validation to index anyway)")
    try:
        data = json.loads(desc.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationFailed(f"{desc}: not valid JSON ({exc})") from exc
    missing = [k for k in ("Name", "BIDSVersion") if not data.get(k)]
    if missing:
        raise ValidationFailed(f"{desc}: required field(s) {', '.join(missing)} missing")
    return data


def build_layout(bids_dir: str | Path, *, work_dir: str | Path | None = None,
                 database_dir: str | Path | None = None, validate: bool = True):
    """Index ``bids_dir`` with pybids, reusing a persistent index when there is one.

    Parameters
    ----------
    bids_dir
        Root of the raw dataset (never written to).
    work_dir
        When given, the SQLite index is kept in ``work_dir/bids_db/<hash>`` and reused by
        later runs, so large datasets are indexed once (rebuilt with a warning when found
        incomplete or corrupt).
    database_dir
        ``--bids-database-dir``: a directory holding ``layout_index.sqlite`` built beforehand
        (by alsmri or by another pybids application for the same dataset path), reused
        read-only: nothing in it is modified. Built there when it holds no index. Takes
        precedence over ``work_dir``.
    validate
        Check ``dataset_description.json`` and let pybids ignore non-BIDS files.

    Returns
    -------
    bids.BIDSLayout

    Raises
    ------
    BadDataError
        The dataset cannot be indexed, or the ``database_dir`` index is incomplete/corrupt.
    UsageError
        The ``database_dir`` index was built for another dataset path.
    CannotCreateOutput
        The index directory cannot be written when the index has to be built.
    """
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    bids_dir = Path(bids_dir).resolve()
    if not bids_dir.is_dir():
        raise MissingInputError(f"{bids_dir}: BIDS directory does not exist")
    if validate:
        check_dataset_description(bids_dir)
    db_dir = None
    if database_dir is not None:
        db_dir = Path(database_dir).expanduser().resolve()
        _ensure_index(db_dir, bids_dir, validate=validate, rebuild=False)
    elif work_dir is not None:
        key = hashlib.sha1(f"{bids_dir}|{validate}".encode()).hexdigest()[:12]
        db_dir = Path(work_dir).resolve() / "bids_db" / key
        _ensure_index(db_dir, bids_dir, validate=validate, rebuild=True)
    try:
        return BIDSLayout(str(bids_dir), validate=validate, database_path=db_dir,
                          derivatives=False)
    except BIDSValidationError as exc:
        raise ValidationFailed(f"{bids_dir}: {str(exc).splitlines()[0]}") from exc
    except (ValueError, OSError) as exc:
        raise BadDataError(f"{bids_dir}: cannot index dataset ({exc})") from exc


class _BrokenIndex(Exception):
    """An index file that must not be reused (the message says why)."""


class _OtherDataset(Exception):
    """An index of another dataset path."""


def _index_problem(db_file: Path, bids_dir: Path, *, require_mark: bool = True) -> str | None:
    """Why the index ``db_file`` of ``bids_dir`` must not be reused (``None``: reuse it).

    Opens the file read-only. Checks: SQLite integrity (``quick_check``), the completion
    mark set after pybids finished (``require_mark``; indexes built by other applications
    have none and are checked by content instead: metadata indexed when sidecars are), the
    dataset root recorded by pybids, and at least one participant when the dataset has
    ``sub-*`` directories.

    Raises
    ------
    _OtherDataset
        The index belongs to another dataset path (message names it).
    """
    try:
        con = sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot be opened ({exc})"
    try:
        return _check_index(con, bids_dir, require_mark=require_mark)
    except sqlite3.Error as exc:
        return f"unreadable ({exc})"
    finally:
        con.close()


def _check_index(con: sqlite3.Connection, bids_dir: Path, *, require_mark: bool) -> str | None:
    check = con.execute("PRAGMA quick_check").fetchone()
    if not check or check[0] != "ok":
        return f"corrupt ({check[0] if check else 'no answer to quick_check'})"
    marked = con.execute("PRAGMA user_version").fetchone()[0] == COMPLETE_MARK
    if require_mark and not marked:
        return "not marked complete (interrupted while indexing, or built by an older alsmri)"
    roots = [row[0] for row in con.execute("SELECT root FROM layout_info")]
    if not roots:
        return "has no dataset record (interrupted while indexing)"
    if Path(roots[0]) != bids_dir:
        raise _OtherDataset(roots[0])
    n_subjects = con.execute(
        "SELECT COUNT(DISTINCT _value) FROM tags WHERE entity_name = 'subject'").fetchone()[0]
    if n_subjects == 0 and any(p.is_dir() for p in bids_dir.glob("sub-*")):
        return "lists no participant although the dataset has sub-* directories"
    if not marked:
        n_json = con.execute(
            "SELECT COUNT(*) FROM files WHERE filename LIKE '%.json'").fetchone()[0]
        n_meta = con.execute("SELECT COUNT(*) FROM tags WHERE is_metadata").fetchone()[0]
        if n_json and not n_meta:
            return "has no sidecar metadata (interrupted while indexing)"
    return None


def _ensure_index(db_dir: Path, bids_dir: Path, *, validate: bool, rebuild: bool) -> None:
    """Make sure ``db_dir`` holds a complete index of ``bids_dir``; build it if needed.

    ``rebuild``: replace a broken index (work directory); otherwise (``--bids-database-dir``)
    an existing index is never modified and a broken one is an error.
    """
    db_file = db_dir / INDEX_FILE
    if db_file.exists() and _reusable(db_file, bids_dir, rebuild=rebuild, warn=False):
        return
    try:
        db_dir.mkdir(parents=True, exist_ok=True)
        lock = file_lock(db_dir / LOCK_FILE, on_wait=lambda pid: LOGGER.info(
            "waiting for %s to finish indexing %s in %s",
            f"process {pid}" if pid else "another run", bids_dir, db_dir))
        with lock:
            # Whoever held the lock before may have built it meanwhile.
            if db_file.exists() and _reusable(db_file, bids_dir, rebuild=rebuild, warn=True):
                return
            _build_index(db_dir, bids_dir, validate=validate)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CannotCreateOutput(f"{db_dir}: cannot write the dataset index ({reason})") from exc


def _reusable(db_file: Path, bids_dir: Path, *, rebuild: bool, warn: bool) -> bool:
    try:
        problem = _index_problem(db_file, bids_dir, require_mark=rebuild)
    except _OtherDataset as exc:
        if rebuild:  # the work-directory key hashes the path: only after a manual copy
            problem = f"indexes another dataset ({exc})"
        else:
            raise UsageError(f"{db_file}: index of the dataset {exc}, not of {bids_dir}; "
                             "use another --bids-database-dir") from None
    if problem is None:
        return True
    if not rebuild:
        raise BadDataError(f"{db_file}: dataset index {problem}; remove it or use another "
                           "--bids-database-dir (it is never modified)")
    if warn:
        LOGGER.warning("%s: dataset index %s; rebuilding it", db_file, problem)
    return False


def _build_index(db_dir: Path, bids_dir: Path, *, validate: bool) -> None:
    """Index under a temporary name, mark complete, rename into place (lock held)."""
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    for stale in db_dir.glob(TMP_PREFIX + "*"):  # left by runs killed while indexing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = db_dir / f"{TMP_PREFIX}{os.getpid()}"
    LOGGER.info("indexing %s", bids_dir)
    try:
        layout = BIDSLayout(str(bids_dir), validate=validate, database_path=tmp,
                            derivatives=False)
        layout.connection_manager.session.close()
        layout.connection_manager.engine.dispose()
    except BIDSValidationError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValidationFailed(f"{bids_dir}: {str(exc).splitlines()[0]}") from exc
    except (ValueError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadDataError(f"{bids_dir}: cannot index dataset ({exc})") from exc
    con = sqlite3.connect(tmp / INDEX_FILE)
    try:
        con.execute(f"PRAGMA user_version = {COMPLETE_MARK}")
        con.commit()
    finally:
        con.close()
    db_file = db_dir / INDEX_FILE
    # A journal left by an older, interrupted pybids write would be "replayed" into the new
    # file: remove it with the broken index it belongs to.
    for suffix in ("-journal", "-wal", "-shm"):
        db_file.with_name(INDEX_FILE + suffix).unlink(missing_ok=True)
    os.replace(tmp / INDEX_FILE, db_file)
    shutil.rmtree(tmp, ignore_errors=True)
