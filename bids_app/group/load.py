"""Read the participant metrics tables (the phenotype files: :mod:`bids_app.group.phenotype`).

Participant outputs are found by file name only (no dependence on the participant workflows):
``sub-<l>[/ses-<s>]/{dwi,anat}/sub-<l>[_ses-<s>]_desc-{tracts_dwistats,gmvolume_morph}.tsv``,
all long-format with the columns of :data:`bids_app.bids.outputs.STATS_COLUMNS` (names and
entities declared by :data:`~bids_app.bids.outputs.DWI_STATS` /
:data:`~bids_app.bids.outputs.ANAT_STATS`).
Internally a missing session is the empty string ``""``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.bids.outputs import ANAT_STATS, DWI_STATS, STATS_COLUMNS, Output, feature_name
from bids_app.errors import BadDataError, NoDataError
from bids_app.group.notes import LOGGER, Notes
from bids_app.group.spec import AnalysisSpec
from bids_app.group.spec_sections import absent_models
from bids_app.group.values import SILENT_MISSING

KINDS: dict[str, Output] = {"dwi": DWI_STATS, "anat": ANAT_STATS}
KEYS = ["participant_id", "session_id"]
NA_VALUES = list(SILENT_MISSING)


def glob_files(root: str | Path, pattern: str) -> list[Path]:
    """``Path(root).glob(pattern)``, sorted, by :func:`glob.glob` on strings (``os.scandir``):
    several times faster than pathlib's on 10,000 participant directories."""
    return [Path(p) for p in sorted(glob.glob(os.path.join(glob.escape(str(root)), pattern)))]


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
            for path in glob_files(output_dir, sub_glob):
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
            with open(path, encoding="utf-8", newline="") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadDataError(f"{path}: cannot read participant metrics ({exc})") from exc
        if not lines or lines[0] != header:
            raise BadDataError(f"{path}: header must be exactly {list(STATS_COLUMNS)}")
        row = index[(sub, session)]
        start = len(keys)
        for i, line in enumerate(lines[1:], start=2):
            fields_ = line.split("\t")
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
    # hash-based codes, then the (few) distinct keys sorted: np.unique would sort every row
    first, found = pd.factorize(pd.Series(keys, dtype=object), sort=False)
    order = np.argsort(np.asarray(found, dtype=str), kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    uniq, codes = np.asarray(found, dtype=object)[order], rank[first]
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


def select_outputs(files: pd.DataFrame, output_dir, *, participants: tuple[str, ...] = (),
                   sessions: tuple[str, ...] = ()) -> pd.DataFrame:
    """Keep the participant outputs of ``--participant-label``/``--session-label`` (all if none).

    Parameters
    ----------
    files
        :func:`bids_app.group.load.find_participant_outputs`.
    output_dir
        Named in messages.
    participants, sessions
        Labels without ``sub-``/``ses-``.

    Raises
    ------
    NoDataError
        A requested label has no participant outputs (exit 18, as at the participant level).
    """
    for column, prefix, labels in (("participant_id", "sub-", participants),
                                   ("session_id", "ses-", sessions)):
        if not labels:
            continue
        available = sorted(set(files[column]) - {""})
        missing = [prefix + label for label in labels if prefix + label not in available]
        if missing:
            shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
            raise NoDataError(f"{output_dir}: no participant outputs for {', '.join(missing)} "
                              f"(available: {shown or 'none'})")
        files = files[files[column].isin([prefix + label for label in labels])]
    return files.reset_index(drop=True)


def warn_unmatched_imaging_names(spec: AnalysisSpec, catalogue: pd.DataFrame, *,
                                 notes: Notes) -> list[str]:
    """Warn about spec metrics/regions that no participant output has (their tables are empty).

    Returns the warning messages (also added to ``notes``).
    """
    metrics, regions = set(catalogue["metric"]), set(catalogue["region"])
    messages = []
    for key, names in (("metrics", spec.metrics),
                       ("interhemispheric_metrics", spec.interhemispheric_metrics),
                       ("gm_tract.gm_metric", (spec.gm_tract.gm_metric,)),
                       ("gm_tract.tract_metric", (spec.gm_tract.tract_metric,))):
        models, missing = absent_models(set(names) - metrics)
        if models:
            LOGGER.info("analysis spec '%s': no participant has the maps of the %s model(s) "
                        "(not fitted: see the participant logs); not analysed", key,
                        ", ".join(models))
        if missing:
            messages.append(f"analysis spec '{key}': {missing} not in any participant metrics "
                            f"table (metrics present: {sorted(metrics)}); not analysed")
    pair_regions = {name for pair in spec.gm_tract.all_pairs for name in pair}
    missing = sorted(pair_regions - regions)
    if missing:
        messages.append(f"analysis spec 'gm_tract' (gm_regions x tracts, pairs): region(s) "
                        f"{missing} not in any participant metrics table; those pairs are "
                        "skipped")
    for message in messages:
        notes.warn(message)
    return messages
