"""The seed papers' further analyses: side-matched scores, onset-site subgroups, correlations
between tracts. One function per analysis, registered in :data:`SEED_ANALYSES`.

Each takes a :class:`Cohort` and returns its result table, or the reason it is skipped (a
string). Statistics come from :mod:`bids_app.group.stats` (scipy / statsmodels).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bids_app.errors import UsageError
from bids_app.group.design import CONTROL, PATIENT, covariate_frame, numeric_column
from bids_app.group.notes import Notes
from bids_app.group.spec import AliasTable, AnalysisSpec, normalise
from bids_app.group.stats import associations, compare_groups, fdr

SUBSETS = ("all", PATIENT, CONTROL)


@dataclass(frozen=True)
class Cohort:
    """What an analysis of :data:`SEED_ANALYSES` reads (the cross-sectional sample)."""

    spec: AnalysisSpec
    cross: pd.DataFrame
    """One row per participant: phenotype and imaging feature columns (analysis units)."""
    labels: pd.Series
    """``patient``/``control``/NA per row of ``cross``."""
    catalogue: pd.DataFrame
    """Every imaging feature: ``feature, atlas, region, hemisphere, metric, statistic``."""
    feats: pd.DataFrame
    """The features of the spec's ``metrics``."""
    clinical_rows: np.ndarray
    """Rows of ``cross`` entering the clinical analyses (the patients)."""
    dictionary: Mapping[str, Mapping[str, Any]]
    notes: Notes


# --------------------------------------------------------------------------- side scores
def _side_match(column: str, words: tuple[str, ...], lookup: Mapping[str, str]) -> str | None:
    """Canonical score of ``column`` when it is a score alias joined to one of ``words``."""
    key = normalise(column)
    for word in sorted(words, key=len, reverse=True):
        for base in (key[:-len(word)] if key.endswith(word) else None,
                     key[len(word):] if key.startswith(word) else None):
            if base and base in lookup:
                return lookup[base]
    return None


def discover_side_columns(columns: list[str], spec: AnalysisSpec, aliases: AliasTable, *,
                          notes: Notes) -> tuple[tuple[str, str, str], ...]:
    """(score, left column, right column) of every side score present.

    Declared ``side_scores.columns`` come first and must exist when the user gave them;
    others are discovered: a column whose name, without a side word (``side_scores
    .left_words``/``right_words``) at its start or end, is a spelling of one of the
    ``side_scores.scores`` (the score's name or an alias of it). Single-letter side words
    (``l``, ``r``) match only after a separator (``penn_score_R``, not ``munixr``).

    Raises
    ------
    UsageError
        A user-declared column is not in the data.
    """
    side = spec.side_scores
    present = set(columns)
    out: dict[str, tuple[str, str, str]] = {}
    for score, left, right in side.columns:
        missing = [c for c in (left, right) if c not in present]
        if missing and "side_scores.columns" in spec.user_keys:
            raise UsageError(f"{spec.source}: side_scores.columns names unknown column(s) "
                             f"{missing}")
        if not missing:
            out[score] = (score, left, right)
    wanted = set(side.scores)
    lookup = {k: v for k, v in aliases.lookup.items() if v in wanted}
    lookup.update({normalise(s): s for s in wanted})
    found: dict[str, dict[str, list[str]]] = {}
    for column in columns:
        if normalise(column) in aliases.lookup:
            continue  # a known column of its own (e.g. onset_site), not a side score
        for hemi, words in (("L", side.left_words), ("R", side.right_words)):
            long = tuple(w for w in words if len(w) > 1)
            short = tuple(w for w in words if len(w) == 1)
            score = _side_match(column, long, lookup)
            if score is None and short:
                text = str(column).strip().lower()
                for w in short:
                    m = re.fullmatch(rf"(.+?)[\s_.\-]+{w}|{w}[\s_.\-]+(.+)", text)
                    base = m and normalise(m.group(1) or m.group(2))
                    if base and base in lookup:
                        score = lookup[base]
            if score is not None:
                found.setdefault(score, {}).setdefault(hemi, []).append(column)
    for score, by_side in found.items():
        if score in out:
            continue
        if set(by_side) != {"L", "R"} or len(by_side["L"]) > 1 or len(by_side["R"]) > 1:
            listed = sorted(c for cols in by_side.values() for c in cols)
            notes.warn(f"side_scores: columns {listed} of {score!r} are not one left and "
                       "one right column; declare them in side_scores.columns")
            continue
        out[score] = (score, by_side["L"][0], by_side["R"][0])
    return tuple(out[s] for s in sorted(out))


def side_scores(c: Cohort) -> pd.DataFrame | str:
    """Each side's score in patients against the tract metric of the contralateral and the
    ipsilateral hemisphere: OLS ``score_side ~ metric + clinical_covariates``, Pearson and
    Spearman (:func:`bids_app.group.stats.associations`); BH within score:relation:metric."""
    side = c.spec.side_scores
    if not side.enabled:
        return "switched off (side_scores.enabled: false)"
    if not side.columns:
        return "no per-side score columns (left and right) found"
    clin = c.cross.loc[c.clinical_rows].reset_index(drop=True)
    tracts = c.catalogue[c.catalogue["region"].isin(side.tracts)
                         & c.catalogue["metric"].isin(side.metrics)
                         & c.catalogue["hemisphere"].isin(["L", "R"])]
    if tracts.empty:
        return f"no {list(side.metrics)} feature of the tracts {list(side.tracts)}"
    ys, rows, covs = {}, [], {}
    for score, left, right in side.columns:
        for hemi, column in (("L", left), ("R", right)):
            values = numeric_column(clin, column, role="side score", notes=c.notes)
            if values is None:
                continue
            ys[column] = values
            drop = {score, left, right}
            covs[column] = covariate_frame(
                clin, [v for v in c.spec.clinical_covariates if v not in drop],
                dictionary=c.dictionary, notes=c.notes)
            for f in tracts.to_dict("records"):
                relation = "ipsilateral" if f["hemisphere"] == hemi else "contralateral"
                rows.append({"score": score, "side": hemi, "score_column": column,
                             "relation": relation, **f,
                             "family": f"{score}:{relation}:{f['metric']}",
                             "y": column, "x": f["feature"]})
    if not rows:
        return "no numeric per-side score column"
    table = associations(pd.DataFrame(ys), clin, pd.DataFrame(rows), covs,
                         fdr_alpha=c.spec.fdr_alpha, min_n=c.spec.min_n)
    return table.drop(columns=["y", "x", "feature"])


# --------------------------------------------------------------------------- onset site
def onset_labels(values: pd.Series, subgroups: tuple[tuple[str, tuple[str, ...]], ...]
                 ) -> pd.Series:
    """Subgroup name per value (spellings compared case- and punctuation-insensitively)."""
    spelling = {normalise(v): name for name, spellings in subgroups
                for v in (name, *spellings)}
    return values.map(lambda v: spelling.get(normalise(v)) if isinstance(v, str) else None)


def onset_subgroups(c: Cohort) -> pd.DataFrame | str:
    """Each onset-site subgroup of the patients against the controls, tested and adjusted as
    the patient-control comparison (:func:`bids_app.group.stats.compare_groups`).

    ``family`` is ``<subgroup>:<metric>``; q within it.
    """
    onset, spec = c.spec.onset_subgroups, c.spec
    if not onset.enabled:
        return "switched off (onset_subgroups.enabled: false)"
    if onset.column not in c.cross.columns:
        return f"no {onset.column!r} column in the phenotype data"
    is_patient = (c.labels == PATIENT).to_numpy()
    is_control = (c.labels == CONTROL).to_numpy()
    if not is_control.any():
        return "no controls"
    names = onset_labels(c.cross[onset.column], onset.subgroups)
    raw = c.cross[onset.column]
    other = sorted(raw[is_patient & names.isna().to_numpy() & raw.notna().to_numpy()]
                   .astype(str).unique())
    if other:
        c.notes.warn(f"onset_subgroups: value(s) {other} of {onset.column!r} are none of "
                     f"{[n for n, _ in onset.subgroups]}; those patients are not in a subgroup")
    parts = []
    for name, _ in onset.subgroups:
        rows = (is_patient & (names == name).to_numpy()) | is_control
        member = (names[rows] == name).to_numpy() & is_patient[rows]
        if not member.any():
            continue
        sub = c.cross.loc[rows]
        cov = covariate_frame(sub, spec.covariates, dictionary=c.dictionary, notes=c.notes)
        table = compare_groups(
            sub[c.feats["feature"]], c.feats, member, cov, fdr_alpha=spec.fdr_alpha,
            normality_alpha=spec.normality_alpha,
            equal_variance_alpha=spec.equal_variance_alpha, min_n=spec.min_n)
        table.insert(0, "subgroup", name)
        table["family"] = name + ":" + table["family"]
        parts.append(table)
    if not parts:
        return f"no patient in the subgroups {[n for n, _ in onset.subgroups]}"
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- tract x tract
def tract_correlations(c: Cohort) -> pd.DataFrame | str:
    """Pearson r between every two tract features of one metric (per statistic) in all
    participants, patients and controls; BH within ``<subset>:<statistic>``."""
    spec, tc = c.spec, c.spec.tract_correlations
    if not tc.enabled:
        return "switched off (tract_correlations.enabled: false)"
    cat = c.catalogue[(c.catalogue["metric"] == tc.metric)
                      & c.catalogue["region"].isin(tc.regions)]
    order = {r: i for i, r in enumerate(tc.regions)}
    cat = cat.assign(_o=cat["region"].map(order)).sort_values(
        ["statistic", "_o", "atlas", "hemisphere"], kind="stable")
    subsets = {"all": np.ones(len(c.cross), bool)}
    for name in (PATIENT, CONTROL):
        if (c.labels == name).any():
            subsets[name] = (c.labels == name).to_numpy()
    rows: list[dict[str, Any]] = []
    min_n = max(spec.min_n, 3)
    for statistic, part in cat.groupby("statistic", sort=False):
        feats = part.to_dict("records")
        for subset, mask in subsets.items():
            for i, a in enumerate(feats):
                xa = c.cross.loc[mask, a["feature"]].to_numpy(dtype=float)
                for b in feats[i + 1:]:
                    xb = c.cross.loc[mask, b["feature"]].to_numpy(dtype=float)
                    ok = np.isfinite(xa) & np.isfinite(xb)
                    row: dict[str, Any] = {
                        "subset": subset, "metric": tc.metric, "statistic": statistic,
                        **{f"{k}_a": a[k] for k in ("atlas", "region", "hemisphere")},
                        **{f"{k}_b": b[k] for k in ("atlas", "region", "hemisphere")},
                        "family": f"{subset}:{statistic}", "n": int(ok.sum())}
                    if row["n"] < min_n:
                        row["reason"] = f"n < {min_n}"
                    elif np.ptp(xa[ok]) == 0 or np.ptp(xb[ok]) == 0:
                        row["reason"] = "constant values"
                    else:
                        res = stats.pearsonr(xa[ok], xb[ok])
                        row.update(r=res.statistic, p=res.pvalue)
                    rows.append(row)
    if len(cat) < 2:
        return f"fewer than two {tc.metric} features of the tracts {list(tc.regions)}"
    table = pd.DataFrame(rows)
    for col in ("r", "p", "reason"):
        if col not in table.columns:
            table[col] = np.nan
    table["q"] = fdr(table["p"], table["family"])
    table["significant"] = table["q"] < spec.fdr_alpha
    return table


#: Output key (``GROUP_OUTPUTS``) -> analysis; each returns a table or a skip reason.
SEED_ANALYSES: dict[str, Callable[[Cohort], pd.DataFrame | str]] = {
    "sidescores": side_scores,
    "onset": onset_subgroups,
    "tractcorr": tract_correlations,
}
