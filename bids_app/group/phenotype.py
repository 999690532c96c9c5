"""Read ``participants.tsv``, ``sub-*/sub-*_sessions.tsv`` and ``phenotype/*.tsv``; join them
onto the imaging rows; the inclusion table.

Each value is typed by :mod:`bids_app.group.values` (one unreadable value is missing for that
participant only). Internally a missing session is the empty string ``""``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app.errors import BadDataError
from bids_app.group.load import KEYS, glob_files
from bids_app.group.notes import Notes
from bids_app.group.spec import AliasTable
from bids_app.group.values import DECIMAL_READ, SILENT_MISSING, type_table

#: Columns of :attr:`Phenotype.issues`.
ISSUE_COLUMNS = ["source", "participant_id", "session_id", "column", "value", "action",
                 "reason"]
#: Name under which the sessions files (``sub-*/sub-*_sessions.tsv``) are joined; their data
#: dictionary is ``BIDS_DIR/sessions.json``.
SESSIONS_NAME = "sessions.tsv"


@dataclass
class Phenotype:
    """participants.tsv and phenotype/*.tsv, canonical column names, data dictionaries."""

    tables: list[tuple[Path, pd.DataFrame]] = field(default_factory=list)
    dictionary: dict[str, dict[str, Any]] = field(default_factory=dict)
    has_participants_tsv: bool = False
    issues: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ISSUE_COLUMNS))
    """Cells not read as written (:data:`ISSUE_COLUMNS`): made missing or decimal comma read."""


def _prefixed(values: pd.Series, prefix: str) -> pd.Series:
    values = values.astype(str).str.strip()
    return values.where(values.str.startswith(prefix), prefix + values)


def _read_table(path: Path, aliases: AliasTable, notes: Notes) -> pd.DataFrame | None:
    """Read a phenotype TSV as text, canonical column names (typing: :func:`_typed`)."""
    return _canonical(_read_text(path), path, aliases, notes)


def _canonical(table: pd.DataFrame, path: Path, aliases: AliasTable, notes: Notes, *,
               per_participant: bool = False) -> pd.DataFrame | None:
    """Canonical column names, ``sub-``/``ses-`` prefixes; ``None`` without participant_id.

    ``per_participant``: the rows of several sessions files, one per participant, so that a
    duplicated key names the participant's own file.
    """
    renamed: dict[str, str] = {}
    for col in table.columns:
        canon = aliases.canonical(col)
        if canon in renamed.values():
            notes.warn(f"{path}: column {col!r} is another spelling of {canon!r}; ignored")
            table = table.drop(columns=col)
            continue
        renamed[col] = canon
    table = table.rename(columns=renamed)
    table.attrs["original_names"] = {v: k for k, v in renamed.items() if k != v}
    if "participant_id" not in table.columns:
        notes.warn(f"{path}: no participant_id column; file ignored")
        return None
    table["participant_id"] = _prefixed(table["participant_id"], "sub-")
    if "session_id" in table.columns:
        table["session_id"] = _prefixed(table["session_id"].fillna(""), "ses-").replace(
            "ses-", "")
    keys = [k for k in KEYS if k in table.columns]
    if table.duplicated(keys).any():
        dups = table.loc[table.duplicated(keys), "participant_id"].unique()[:5].tolist()
        if per_participant:
            path = path.parent.parent / dups[0] / f"{dups[0]}_{SESSIONS_NAME}"
        raise BadDataError(f"{path}: duplicated {'/'.join(keys)} rows, e.g. {dups}")
    return table


def _typed(table: pd.DataFrame, path: Path, dictionary: Mapping[str, Mapping[str, Any]],
           source: str, notes: Notes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type every column value by value (:mod:`bids_app.group.values`); report the cells not
    read as written, one warning per column naming each participant and value."""
    attrs = dict(table.attrs)
    typed, found = type_table(table, KEYS, dictionary)
    typed.attrs.update(attrs)
    rows = [{"source": source, "participant_id": table["participant_id"].iat[i.row],
             "session_id": table["session_id"].iat[i.row] if "session_id" in table else "",
             "column": i.column, "value": i.value, "action": i.action, "reason": i.reason}
            for i in found]
    issues = pd.DataFrame(rows, columns=ISSUE_COLUMNS)
    for (column, action), part in issues.groupby(["column", "action"], sort=False):
        who = ", ".join(f"{p}{'/' + s if s else ''} {v!r}" + (f" ({r})" if action == DECIMAL_READ
                                                               else "")
                        for p, s, v, r in part[["participant_id", "session_id", "value",
                                                "reason"]].itertuples(index=False))
        what = ("decimal comma read as a decimal point" if action == DECIMAL_READ else
                "value(s) not readable, missing for those participants only")
        notes.warn(f"{path}: column {column!r}: {what}: {who}")
    return typed, issues


def _dictionary(path: Path, aliases: AliasTable, table: pd.DataFrame,
                notes: Notes) -> dict[str, dict[str, Any]]:
    sidecar = path.with_suffix(".json")
    meta: dict[str, dict[str, Any]] = {}
    if sidecar.is_file():
        try:
            raw = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            notes.warn(f"{sidecar}: unreadable data dictionary ({exc}); ignored")
            raw = {}
        for col, desc in (raw.items() if isinstance(raw, dict) else ()):
            if isinstance(desc, dict):
                meta[aliases.canonical(col)] = {k: v for k, v in desc.items()
                                                if k in ("LongName", "Description", "Units",
                                                         "Levels", "TermURL")}
    for canon, original in table.attrs.get("original_names", {}).items():
        meta.setdefault(canon, {})["OriginalName"] = original
    for col in table.columns:
        meta.setdefault(col, {})
    return meta


def _source(path: Path) -> str:
    """How a phenotype file is named in the outputs (relative to the BIDS root)."""
    if path.parent.name == "phenotype":
        return f"phenotype/{path.name}"
    if path.name == SESSIONS_NAME:
        return "sub-*/sub-*_sessions.tsv"
    return path.name


def _read_text(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", dtype=str, na_values=list(SILENT_MISSING),
                           keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BadDataError(f"{path}: unreadable TSV ({exc})") from exc


def _sessions_by_header(paths: list[Path]) -> dict[str, list[tuple[Path, list[str]]]]:
    """The sessions files' lines grouped by header line (most studies: one group)."""
    groups: dict[str, list[tuple[Path, list[str]]]] = {}
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadDataError(f"{path}: unreadable TSV ({exc})") from exc
        if lines:
            groups.setdefault(lines[0].rstrip("\r"), []).append((path, lines[1:]))
        else:
            groups.setdefault("", []).append((path, []))
    return groups


def _sessions_group(header: str, files: list[tuple[Path, list[str]]], aliases: AliasTable,
                    notes: Notes) -> pd.DataFrame | None:
    """The sessions files sharing ``header`` as one table: one ``read_csv`` for them all.

    A row whose field count differs from the header's (which pandas reads differently at the
    top of a file) or a group pandas cannot parse: every file is read alone, exactly as
    before (an error then names its file).
    """
    owners = [p.name.split("_")[0] for p, lines in files for line in lines if line.strip()]
    rows = [line for _, lines in files for line in lines if line.strip()]
    text = "\n".join([header, *rows])
    try:
        if any(line.count("\t") != header.count("\t") for line in rows):
            raise ValueError("ragged rows")
        table = pd.read_csv(io.StringIO(text), sep="\t", dtype=str,
                            na_values=list(SILENT_MISSING), keep_default_na=False)
        if len(table) != len(owners):
            raise ValueError("row count")
        table.insert(0, "participant_id", owners)
    except (ValueError, pd.errors.ParserError):
        alone = [_read_text(path) for path, _ in files]
        for (path, _), part in zip(files, alone, strict=True):
            part.insert(0, "participant_id", path.name.split("_")[0])
        table = pd.concat(alone, ignore_index=True)
    first = files[0][0]
    where = first if len(files) == 1 else Path(f"{first} (and {len(files) - 1} other sessions "
                                               "file(s) with its header)")
    table = _canonical(table, where, aliases, notes, per_participant=True)
    if table is None or "session_id" not in table.columns:
        names = ", ".join(str(p) for p, _ in files[:5]) + (" ..." if len(files) > 5 else "")
        notes.warn(f"{names}: no session_id column; file(s) ignored")
        return None
    return table


def _sessions_table(bids_dir: Path, aliases: AliasTable,
                    notes: Notes) -> tuple[Path, pd.DataFrame] | None:
    """Every ``sub-*/sub-*_sessions.tsv`` as one table (participant_id from the file name).

    Files are grouped by header line and each group is parsed by one ``read_csv`` call
    (10,000 files: one call, not 10,000).
    """
    paths = glob_files(bids_dir, "sub-*/sub-*_sessions.tsv")
    parts = [table for header, files in _sessions_by_header(paths).items()
             if (table := _sessions_group(header, files, aliases, notes)) is not None]
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    table.attrs = dict(parts[0].attrs)
    return bids_dir / SESSIONS_NAME, table


def load_phenotype(bids_dir: str | Path, aliases: AliasTable, *, notes: Notes) -> Phenotype:
    """Read ``participants.tsv``, every ``sub-*/sub-*_sessions.tsv`` and ``phenotype/*.tsv``.

    Data dictionaries (JSON sidecars; ``sessions.json`` at the top level for the sessions
    files) are read first; every column is then typed value by value
    (:mod:`bids_app.group.values`): a cell that cannot be read is missing for that participant
    only, listed in :attr:`Phenotype.issues` and in one warning per column.
    """
    bids_dir = Path(bids_dir)
    pheno = Phenotype()
    tables: list[tuple[Path, pd.DataFrame]] = []
    if (bids_dir / "participants.tsv").is_file():
        pheno.has_participants_tsv = True
        table = _read_table(bids_dir / "participants.tsv", aliases, notes)
        if table is not None:
            tables.append((bids_dir / "participants.tsv", table))
    else:
        notes.warn(f"{bids_dir / 'participants.tsv'}: missing; analyses that need groups, "
                   "covariates or scores may be skipped")
    sessions = _sessions_table(bids_dir, aliases, notes)
    if sessions is not None:
        tables.append(sessions)
    for path in sorted((bids_dir / "phenotype").glob("*.tsv")):
        table = _read_table(path, aliases, notes)
        if table is not None:
            tables.append((path, table))
    issues = []
    for path, table in tables:
        source = _source(path)
        meta = _dictionary(path, aliases, table, notes)
        for col in table.columns:
            meta[col]["Source"] = source
        table, found = _typed(table, path, meta, source, notes)
        issues.append(found)
        pheno.tables.append((path, table))
        for col, entry in meta.items():
            pheno.dictionary.setdefault(col, entry)
    if issues:
        pheno.issues = pd.concat(issues, ignore_index=True)
    return pheno


def join(imaging: pd.DataFrame, pheno: Phenotype, *, notes: Notes) -> pd.DataFrame:
    """Left-join every phenotype table onto the imaging rows (one row per participant/session).

    A column present in several tables is taken from the first (participants.tsv first).
    """
    joined = imaging.copy()
    has_sessions = bool((imaging["session_id"] != "").any())
    for path, table in pheno.tables:
        on = ["participant_id"]
        if "session_id" in table.columns:
            if has_sessions:
                on = KEYS
            elif table["participant_id"].duplicated().any():
                notes.warn(f"{path}: several sessions per participant but the imaging has no "
                           "sessions; file not joined")
                continue
            else:
                table = table.drop(columns="session_id")
        clash = [c for c in table.columns if c in joined.columns and c not in on]
        for col in clash:
            notes.warn(f"{path}: column {col!r} already joined from an earlier table; ignored")
        table = table.drop(columns=clash)
        joined = joined.merge(table, on=on, how="left", validate="many_to_one")
    first = [*KEYS, *[c for c in joined.columns if c not in imaging.columns]]
    return joined[first + [c for c in joined.columns if c not in first]]


def inclusion(imaging: pd.DataFrame, pheno: Phenotype, missing: pd.DataFrame, *,
              notes: Notes) -> pd.DataFrame:
    """Participants/sessions with imaging and/or phenotype; warn about the mismatches.

    ``missing`` (from :func:`load_metrics`) adds which features each one's tables lack;
    ``pheno.issues`` which phenotype values could not be read (:func:`value_issue_columns`)."""
    img_ids = set(imaging["participant_id"])
    ph_ids: set[str] = set()
    for _, table in pheno.tables:
        ph_ids |= set(table["participant_id"])
    no_pheno = sorted(img_ids - ph_ids)
    no_img = sorted(ph_ids - img_ids)
    if no_pheno and pheno.tables:
        notes.warn(f"{len(no_pheno)} participant(s) with imaging but no phenotype row: "
                   f"{', '.join(no_pheno[:20])}{' ...' if len(no_pheno) > 20 else ''}")
    if no_img:
        notes.warn(f"{len(no_img)} participant(s) in participants.tsv/phenotype without "
                   f"participant outputs: {', '.join(no_img[:20])}"
                   f"{' ...' if len(no_img) > 20 else ''}")
    rows = imaging[[*KEYS, "has_dwi", "has_anat"]].merge(missing, on=KEYS, how="left")
    rows["has_phenotype"] = rows["participant_id"].isin(ph_ids)
    extra = pd.DataFrame({"participant_id": no_img, "session_id": "", "has_dwi": False,
                          "has_anat": False, "n_missing_features": 0,
                          "missing_features": np.nan,
                          "has_phenotype": True})
    rows = pd.concat([rows, extra], ignore_index=True) if no_img else rows
    return pd.concat([rows, value_issue_columns(rows, pheno.issues)], axis=1)


def value_issue_columns(rows: pd.DataFrame, issues: pd.DataFrame) -> pd.DataFrame:
    """Per participant/session row, the phenotype cells not read as written.

    An issue of a per-participant table (no session) applies to every session of that
    participant; one of a per-session table to that session only.

    Returns
    -------
    DataFrame
        Aligned with ``rows``: ``n_unreadable_phenotype``, ``unreadable_phenotype``
        (``column='value'``, ``;``-separated, made missing) and ``converted_phenotype``
        (``column='12,5'->12.5``, decimal commas read).
    """
    unreadable: list[list[str]] = [[] for _ in range(len(rows))]
    converted: list[list[str]] = [[] for _ in range(len(rows))]
    where: dict[str, list[int]] = {}
    for i, pid in enumerate(rows["participant_id"]):
        where.setdefault(pid, []).append(i)
    sessions = rows["session_id"].tolist()
    for issue in issues.itertuples(index=False):
        for i in where.get(issue.participant_id, []):
            if issue.session_id and sessions[i] and issue.session_id != sessions[i]:
                continue
            if issue.action == DECIMAL_READ:
                value = issue.reason.rsplit(" ", 1)[-1]
                converted[i].append(f"{issue.column}={issue.value!r}->{value}")
            else:
                unreadable[i].append(f"{issue.column}={issue.value!r}")
    return pd.DataFrame({
        "n_unreadable_phenotype": [len(u) for u in unreadable],
        "unreadable_phenotype": [";".join(u) or np.nan for u in unreadable],
        "converted_phenotype": [";".join(c) or np.nan for c in converted]}, index=rows.index)
