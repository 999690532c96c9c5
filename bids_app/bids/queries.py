"""Query specs as data and ``collect_*`` functions returning typed records.

T1w selection rule (documented in README): the anatomical images of a session are used when
the session has any, else the subject-level (session-less) images. When several T1w runs are
found, the first in BIDS order (sorted by acquisition, then run index, then file name) is used
and the others are logged; no averaging is done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bids_app.bids.records import DwiRun, SubjectSession
from bids_app.errors import BadDataError, NoDataError, UsageError

LOGGER = logging.getLogger("alsmri.bids")

NIFTI = [".nii", ".nii.gz"]

#: Default pybids queries per data type; ``--bids-filter-file`` entries update these.
QUERIES: dict[str, dict[str, Any]] = {
    "dwi": {"datatype": "dwi", "suffix": "dwi", "extension": NIFTI},
    "t1w": {"datatype": "anat", "suffix": "T1w", "extension": NIFTI},
}


def strip_prefix(label: str, prefix: str) -> str:
    """``sub-01`` -> ``01`` (``prefix`` = ``sub-``); labels without the prefix pass through."""
    label = label.strip()
    return label.removeprefix(prefix)


def is_label(value: str, prefix: str) -> bool:
    """A valid BIDS label, with or without ``prefix`` (ASCII letters and digits).

    >>> is_label("sub-01", "sub-"), is_label("01", "sub-"), is_label("labels.txt", "sub-")
    (True, True, False)
    """
    label = strip_prefix(value, prefix)
    return label.isascii() and label.isalnum()


def parse_labels(values: Iterable[str] | None, prefix: str) -> tuple[str, ...]:
    """Normalise CLI labels: strip prefixes, drop duplicates; or read a file of labels.

    A single value is read as a label file (whitespace-separated labels) only when it is not
    a valid label and names an existing file: ``01`` is the label 01 even when the current
    directory holds a file named ``01`` (``./01`` names that file).

    Raises
    ------
    UsageError
        An invalid label, or an unreadable label file.
    """
    if not values:
        return ()
    values = list(values)
    where = " (and not an existing label file)" if len(values) == 1 else ""
    if len(values) == 1 and not is_label(values[0], prefix) and os.path.isfile(values[0]):
        where = f" in label file {values[0]}"
        try:
            values = Path(values[0]).read_text().split()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{values[0]}: cannot read label file ({exc})") from exc
        if not values:  # not "every participant"
            raise UsageError(f"{where.removeprefix(' in label file ')}: empty label file")
    labels = []
    for value in values:
        label = strip_prefix(value, prefix)
        if not is_label(value, prefix):
            raise UsageError(f"invalid label {value!r}{where}: BIDS labels are alphanumeric")
        if label not in labels:
            labels.append(label)
    return tuple(labels)


def load_filter_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a ``--bids-filter-file``: JSON object of data type -> pybids filters."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: filter file does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: invalid JSON in filter file ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: filter file must hold a JSON object")
    for key, value in data.items():
        if key not in QUERIES:
            raise UsageError(
                f"{path}: unknown data type {key!r} in filter file (use {sorted(QUERIES)})")
        if not isinstance(value, dict):
            raise UsageError(f"{path}: filters for {key!r} must be a JSON object")
    return data


def _query(kind: str, filters: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    query = dict(QUERIES[kind])
    query.update(filters.get(kind, {}))
    return query


def select_t1w(paths: Iterable[Path]) -> Path | None:
    """Pick the T1w to process (see module docstring for the rule)."""
    paths = sorted(paths, key=_t1w_sort_key)
    if len(paths) > 1:
        LOGGER.warning("%d T1w images found; using %s (ignoring %s)", len(paths), paths[0].name,
                       ", ".join(p.name for p in paths[1:]))
    return paths[0] if paths else None


def _t1w_sort_key(path: Path) -> tuple:
    ent = dict(p.split("-", 1) for p in path.name.split("_") if "-" in p)
    run = ent.get("run", "0")
    return (ent.get("acq", ""), int(run) if run.isdigit() else 0, path.name)


def collect_subject_sessions(
    layout,
    *,
    participant_label: Iterable[str] = (),
    session_label: Iterable[str] = (),
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[SubjectSession]:
    """One :class:`SubjectSession` per participant (and per session in multi-session data).

    Raises
    ------
    NoDataError
        A requested participant or session label is not in the dataset, or nothing matched.
    BadDataError
        A DWI run has no ``.bval`` or ``.bvec`` file (none by the inheritance principle either).
    """
    filters = bids_filters or {}
    available = sorted(layout.get_subjects())
    wanted = list(participant_label) or available
    missing = [s for s in wanted if s not in available]
    if missing:
        raise NoDataError(
            f"{layout.root}: participant label(s) {', '.join(missing)} not found "
            f"(available: {', '.join(available) or 'none'})")
    records: list[SubjectSession] = []
    session_label = list(session_label)
    if session_label:
        known = {s for subject in wanted for s in layout.get_sessions(subject=subject)}
        unknown = [s for s in session_label if s not in known]
        if unknown:
            raise NoDataError(
                f"{layout.root}: session label(s) {', '.join(unknown)} not found for "
                f"participant(s) {', '.join(wanted)} (available: "
                f"{', '.join(sorted(known)) or 'none'})")
    for subject in wanted:
        sessions = sorted(layout.get_sessions(subject=subject)) or [None]
        if session_label:
            sessions = [s for s in sessions if s in session_label]
        for session in sessions:
            record = _collect_one(layout, subject, session, filters)
            if record.dwi_runs or record.t1w:
                records.append(record)
            else:
                LOGGER.warning("sub-%s%s: no DWI and no T1w matched; skipped", subject,
                               f" ses-{session}" if session else "")
    if session_label and not records:
        raise NoDataError(f"{layout.root}: session label(s) {', '.join(session_label)} "
                          f"matched no data for participant(s) {', '.join(wanted)}")
    if not records:
        raise NoDataError(f"{layout.root}: no DWI or T1w data matched the query/filters")
    return records


def _session_filter(session: str | None) -> dict[str, Any]:
    from bids.layout import Query

    return {"session": session if session else Query.NONE}


def _collect_one(layout, subject: str, session: str | None,
                 filters: Mapping[str, Mapping[str, Any]]) -> SubjectSession:
    dwi_files = layout.get(subject=subject, **_session_filter(session), **_query("dwi", filters))
    runs = []
    for f in sorted(dwi_files, key=lambda f: f.path):
        bval = _nearest(layout, f.path, ".bval")
        bvec = _nearest(layout, f.path, ".bvec")
        if not bval or not bvec:
            absent = " and ".join(n for n, v in (("bval", bval), ("bvec", bvec)) if not v)
            raise BadDataError(f"{f.path}: no {absent} file found for this DWI")
        ent = {k: str(v) for k, v in f.get_entities().items()
               if k not in ("suffix", "extension", "datatype")}
        runs.append(DwiRun(dwi=Path(f.path), bval=Path(bval), bvec=Path(bvec),
                           metadata=dict(layout.get_metadata(f.path)), entities=ent))
    t1w = layout.get(subject=subject, **_session_filter(session), **_query("t1w", filters))
    if not t1w and session is not None:
        t1w = layout.get(subject=subject, **_session_filter(None), **_query("t1w", filters))
    t1w_paths = tuple(sorted((Path(f.path) for f in t1w), key=_t1w_sort_key))
    return SubjectSession(subject=subject, session=session, dwi_runs=tuple(runs), t1w=t1w_paths,
                          t1w_selected=select_t1w(t1w_paths))


def _nearest(layout, path: str, extension: str) -> str | None:
    """Closest gradient file by the inheritance principle (``None`` when there is none)."""
    found = layout.get_nearest(path, suffix="dwi", extension=extension, all_=True)
    return found[0] if found else None


def participants_file(bids_dir: str | os.PathLike[str]) -> Path | None:
    """``participants.tsv`` of the dataset, if present."""
    path = Path(bids_dir) / "participants.tsv"
    return path if path.is_file() else None


def phenotype_files(bids_dir: str | os.PathLike[str]) -> list[Path]:
    """All ``phenotype/*.tsv`` files of the dataset (sorted)."""
    return sorted((Path(bids_dir) / "phenotype").glob("*.tsv"))
