"""Read the participant metrics tables and the phenotype files; join them.

Participant outputs are found by file name only (no dependence on the participant workflows):
``sub-<l>[/ses-<s>]/{dwi,anat}/sub-<l>[_ses-<s>]_desc-{tracts_dwistats,gmvolume_morph}.tsv``,
all long-format with the columns of :data:`bids_app.bids.outputs.STATS_COLUMNS` (names and
entities declared by :data:`~bids_app.bids.outputs.DWI_STATS` /
:data:`~bids_app.bids.outputs.ANAT_STATS`).
Internally a missing session is the empty string ``""``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app.bids.outputs import ANAT_STATS, DWI_STATS, STATS_COLUMNS, Output, feature_name
from bids_app.errors import BadDataError, NoDataError
from bids_app.group.notes import Notes
from bids_app.group.spec import AliasTable

KINDS: dict[str, Output] = {"dwi": DWI_STATS, "anat": ANAT_STATS}
KEYS = ["participant_id", "session_id"]
NA_VALUES = ["n/a", "N/A", "NA", "nan", "NaN", ""]


def _pattern(kind: str) -> re.Pattern[str]:
    tail = re.escape(KINDS[kind].glob().removeprefix("*"))
    return re.compile(rf"^sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?{tail}$")


def find_participant_outputs(output_dir: str | Path) -> pd.DataFrame:
    """List every participant metrics table under ``output_dir``.

    Returns
    -------
    DataFrame
        Columns ``participant_id`` (``sub-X``), ``session_id`` (``ses-Y`` or ``""``), ``kind``
        (``dwi``/``anat``), ``path``; sorted.

    Raises
    ------
    NoDataError
        No table at all: the participant level has not been run.
    """
    output_dir = Path(output_dir)
    rows = []
    for kind, output in KINDS.items():
        pattern = _pattern(kind)
        name = output.glob()
        for sub_glob in (f"sub-*/{output.datatype}/{name}",
                         f"sub-*/ses-*/{output.datatype}/{name}"):
            for path in output_dir.glob(sub_glob):
                match = pattern.match(path.name)
                if match is None:
                    continue
                ses = f"ses-{match.group(2)}" if match.group(2) else ""
                rows.append((f"sub-{match.group(1)}", ses, kind, path))
    if not rows:
        raise NoDataError(
            f"{output_dir}: no participant outputs ({DWI_STATS.glob()} or "
            f"{ANAT_STATS.glob()}); run the participant level first")
    return pd.DataFrame(rows, columns=[*KEYS, "kind", "path"]).sort_values(
        [*KEYS, "kind"], ignore_index=True)


def _floats(values: list[str]) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except ValueError:  # n/a or garbage: the slow, forgiving path
        return pd.to_numeric(pd.Series(values, dtype=object).replace(NA_VALUES, np.nan),
                             errors="coerce").to_numpy(dtype=float)


#: Statistic used for a metric when the configured one does not exist for an atlas: label
#: atlases (JHU ROIs) have no probability weights, so no ``wmean``, only ``mean``.
FALLBACK_STATISTIC = "mean"


def _keep_statistics(parts: list[list[str]],
                     statistics: Mapping[str, Sequence[str]]) -> list[bool]:
    """Which ``(atlas, region, hemisphere, metric, statistic)`` rows feed the analyses.

    Per atlas and metric: the configured statistics that atlas has, else
    :data:`FALLBACK_STATISTIC` if it has that, else every statistic; metrics not configured
    keep every statistic.
    """
    available: dict[tuple[str, str], set[str]] = {}
    for atlas, _, _, metric, statistic in parts:
        available.setdefault((atlas, metric), set()).add(statistic)
    keep = []
    for atlas, _, _, metric, statistic in parts:
        wanted = statistics.get(metric)
        have = available[(atlas, metric)]
        if wanted is None:
            keep.append(True)
        elif have.intersection(wanted):
            keep.append(statistic in wanted)
        elif FALLBACK_STATISTIC in have:
            keep.append(statistic == FALLBACK_STATISTIC)
        else:
            keep.append(True)
    return keep


def load_metrics(files: pd.DataFrame, statistics: Mapping[str, Sequence[str]], *,
                 notes: Notes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read the tables listed by :func:`find_participant_outputs` into one wide table.

    Plain line splitting and numpy indexing (no per-file DataFrame) keep 10,000 participants
    fast.

    Parameters
    ----------
    files
        Output of :func:`find_participant_outputs`.
    statistics
        Metric -> statistics to keep (e.g. ``fa: (wmean, bundle)``); an atlas without them
        (a label atlas such as JHU has only ``mean``) keeps :data:`FALLBACK_STATISTIC`;
        metrics not listed keep every statistic.

    Returns
    -------
    wide : DataFrame
        One row per participant/session: ``participant_id``, ``session_id``, ``has_dwi``,
        ``has_anat``, then one float column per feature (``n/a`` -> NaN).
    catalogue : DataFrame
        One row per feature: ``feature, atlas, region, hemisphere, metric, statistic``.
    missing : DataFrame
        One row per participant/session: ``n_missing_features`` and ``missing_features``
        (``;``-separated feature names): rows that other participants' tables of the same kind
        have and this participant's table lacks (a table cut short, or header-only). Each
        incomplete table is also named in a warning; a header-only table counts as absent
        (``has_dwi``/``has_anat`` False).

    Raises
    ------
    BadDataError
        A table whose header is not exactly ``STATS_COLUMNS`` or with a short/long line.
    """
    header = "\t".join(STATS_COLUMNS)
    ncol = len(STATS_COLUMNS)
    sessions = files[KEYS].drop_duplicates().reset_index(drop=True)
    index = {k: i for i, k in enumerate(sessions.itertuples(index=False, name=None))}
    has = {"dwi": np.zeros(len(sessions), bool), "anat": np.zeros(len(sessions), bool)}
    keys: list[str] = []
    values: list[str] = []
    owner: list[int] = []
    present: list[tuple[int, str, Path, set[str]]] = []  # row, kind, file, its metric rows
    for sub, session, kind, path in files[[*KEYS, "kind", "path"]].itertuples(index=False):
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadDataError(f"{path}: cannot read participant metrics ({exc})") from exc
        if not lines or lines[0].rstrip("\r") != header:
            raise BadDataError(f"{path}: header must be exactly {list(STATS_COLUMNS)}")
        row = index[(sub, session)]
        start = len(keys)
        for i, line in enumerate(lines[1:], start=2):
            fields_ = line.rstrip("\r").split("\t")
            if len(fields_) != ncol:
                if not line.strip():
                    continue
                raise BadDataError(f"{path}: line {i} has {len(fields_)} fields, expected {ncol}")
            keys.append("\t".join(fields_[:5]))
            values.append(fields_[5])
        owner.extend([row] * (len(keys) - len(owner)))
        present.append((row, kind, Path(path), set(keys[start:])))
        has[kind][row] |= len(keys) > start  # a header-only table holds no metrics
    missing = _missing_rows(present, sessions, notes=notes)
    uniq, codes = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    parts = [k.split("\t") for k in uniq]
    keep = np.array(_keep_statistics(parts, statistics), dtype=bool)
    new_code = np.cumsum(keep) - 1
    cols = ["atlas", "region", "hemisphere", "metric", "statistic"]
    catalogue = pd.DataFrame([p for p, k in zip(parts, keep) if k], columns=cols)
    catalogue.insert(0, "feature", [feature_name(*p) for p in catalogue.itertuples(index=False)])
    sel = keep[codes]
    owner_arr = np.asarray(owner)[sel]
    feat = new_code[codes[sel]]
    flat = owner_arr * len(catalogue) + feat
    counts = np.bincount(flat, minlength=len(sessions) * len(catalogue))
    if (counts > 1).any():
        who = sessions["participant_id"].to_numpy()[np.nonzero(counts > 1)[0] //
                                                    max(len(catalogue), 1)]
        notes.warn(f"{int((counts > 1).sum())} duplicated metric rows (e.g. "
                   f"{sorted(set(who))[:5]}); last value kept")
    matrix = np.full((len(sessions), len(catalogue)), np.nan)
    matrix[owner_arr, feat] = _floats(values)[sel] if values else []
    wide = pd.concat([sessions.assign(has_dwi=has["dwi"], has_anat=has["anat"]),
                      pd.DataFrame(matrix, columns=catalogue["feature"].to_list())], axis=1)
    return wide, catalogue, missing


def _missing_rows(present: list[tuple[int, str, Path, set[str]]], sessions: pd.DataFrame, *,
                  notes: Notes) -> pd.DataFrame:
    """Metric rows each table lacks compared with the union over tables of its kind."""
    expected: dict[str, set[str]] = {}
    for _, kind, _, rows in present:
        expected.setdefault(kind, set()).update(rows)
    lacking: dict[int, list[str]] = {}
    for row, kind, path, rows in present:
        absent = sorted(expected[kind] - rows)
        if not absent:
            continue
        names = [feature_name(*k.split("\t")) for k in absent]
        lacking.setdefault(row, []).extend(names)
        what = ("holds no metric rows (header only)" if not rows else
                f"lacks {len(absent)} of the {len(expected[kind])} metric rows other "
                f"participants have (e.g. {names[0]})")
        notes.warn(f"{path}: {what}; incomplete participant table, those features are n/a")
    names = [sorted(lacking.get(i, [])) for i in range(len(sessions))]
    return sessions.assign(n_missing_features=[len(n) for n in names],
                           missing_features=[";".join(n) or np.nan for n in names])


@dataclass
class Phenotype:
    """participants.tsv and phenotype/*.tsv, canonical column names, data dictionaries."""

    tables: list[tuple[Path, pd.DataFrame]] = field(default_factory=list)
    dictionary: dict[str, dict[str, Any]] = field(default_factory=dict)
    has_participants_tsv: bool = False


def _prefixed(values: pd.Series, prefix: str) -> pd.Series:
    values = values.astype(str).str.strip()
    return values.where(values.str.startswith(prefix), prefix + values)


def _read_table(path: Path, aliases: AliasTable, notes: Notes) -> pd.DataFrame | None:
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, na_values=NA_VALUES,
                            keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BadDataError(f"{path}: unreadable TSV ({exc})") from exc
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
        raise BadDataError(f"{path}: duplicated {'/'.join(keys)} rows, e.g. {dups}")
    for col in table.columns:
        if col in KEYS:
            continue
        numeric = pd.to_numeric(table[col], errors="coerce")
        if numeric.notna().sum() == table[col].notna().sum():
            table[col] = numeric
    return table


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
        meta.setdefault(col, {})["Source"] = str(path.name if path.parent.name != "phenotype"
                                                 else f"phenotype/{path.name}")
    return meta


def load_phenotype(bids_dir: str | Path, aliases: AliasTable, *, notes: Notes) -> Phenotype:
    """Read ``participants.tsv`` and every ``phenotype/*.tsv`` with their JSON dictionaries."""
    bids_dir = Path(bids_dir)
    pheno = Phenotype()
    paths = []
    if (bids_dir / "participants.tsv").is_file():
        pheno.has_participants_tsv = True
        paths.append(bids_dir / "participants.tsv")
    else:
        notes.warn(f"{bids_dir / 'participants.tsv'}: missing; analyses that need groups, "
                   "covariates or scores may be skipped")
    paths += sorted((bids_dir / "phenotype").glob("*.tsv"))
    for path in paths:
        table = _read_table(path, aliases, notes)
        if table is None:
            continue
        pheno.tables.append((path, table))
        for col, meta in _dictionary(path, aliases, table, notes).items():
            pheno.dictionary.setdefault(col, meta)
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

    ``missing`` (from :func:`load_metrics`) adds which features each one's tables lack."""
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
    return pd.concat([rows, extra], ignore_index=True) if no_img else rows
