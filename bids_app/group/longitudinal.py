"""Change over sessions: session time, annualised change, mixed models, progression.

Session time (years since the participant's first session) comes from ``sessions.tsv``: the
first of the spec's ``longitudinal.time_columns`` that every session of the participant has
(``acq_time``: ISO date/time; ``age``: years). Participants with fewer than two timed sessions
have no change and do not enter the mixed models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from bids_app.group.design import CONTROL, PATIENT, covariate_frame, group_labels
from bids_app.group.mixed import random_intercept_reml, random_slope_reml
from bids_app.group.notes import Notes
from bids_app.group.phenotype import SESSIONS_NAME, Phenotype
from bids_app.group.spec import AnalysisSpec
from bids_app.group.stats import associations, fdr

DAYS_PER_YEAR = 365.25
#: Suffix of the per-year change columns.
PER_YEAR = "_per_year"
#: Fixed-effect terms reported per feature (patient_time = time + time_x_group).
TERMS = ("time", "group", "time_x_group", "patient_time")
CI_Z = stats.norm.ppf(0.975)


@dataclass(frozen=True)
class Sessions:
    """The timed participant/session rows of the joined table."""

    rows: pd.DataFrame
    """``participant_id, session_id, time, time_source`` per timed row, with the index of
    the joined table; participants with >= 2 timed sessions only."""
    skipped: str | None


def session_times(joined: pd.DataFrame, pheno: Phenotype, columns: tuple[str, ...]) -> Sessions:
    """Years since each participant's first session (see the module docstring)."""
    sessions = next((t for p, t in pheno.tables if p.name == SESSIONS_NAME), None)
    multi = joined[joined["session_id"] != ""]
    if not multi["participant_id"].duplicated().any():  # cross-sectional data: nothing to say
        return Sessions(rows=pd.DataFrame(), skipped=None)
    if sessions is None:
        return Sessions(rows=pd.DataFrame(), skipped="several sessions per participant but no "
                                                     "sessions.tsv giving their times")
    keyed = multi[["participant_id", "session_id"]].reset_index().merge(
        sessions, on=["participant_id", "session_id"], how="left").set_index("index")
    pid = keyed["participant_id"]
    n_sessions = pid.map(pid.value_counts())
    time = pd.Series(np.nan, index=keyed.index)
    source = pd.Series(pd.NA, index=keyed.index, dtype="object")
    for column in columns:
        if column not in keyed.columns:
            continue
        if column == "acq_time":
            when = pd.to_datetime(keyed[column], errors="coerce", utc=True, format="ISO8601")
            value = (when - when.groupby(pid).transform("min")).dt.total_seconds() \
                / (DAYS_PER_YEAR * 86400.0)
        else:
            value = pd.to_numeric(keyed[column], errors="coerce")
            value = value - value.groupby(pid).transform("min")
        complete = value.notna().groupby(pid).transform("all") & (n_sessions >= 2)
        take = complete & source.isna()
        time[take], source[take] = value[take], column
    timed = source.notna()
    parts = [] if not timed.any() else [pd.DataFrame({
        "participant_id": pid[timed], "session_id": keyed.loc[timed, "session_id"],
        "time": time[timed].astype(float), "time_source": source[timed]})]
    if not parts:
        return Sessions(rows=pd.DataFrame(), skipped=f"no participant has two sessions with "
                                                     f"a time ({', '.join(columns)}) in "
                                                     "sessions.tsv")
    return Sessions(rows=pd.concat(parts).sort_values(["participant_id", "time"]),
                    skipped=None)


def annual_change(values: pd.DataFrame, time: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """Per participant and column, the OLS slope of the values on time (per year).

    Two sessions: the difference over the interval. Fewer than two values: NaN.
    """
    uniq, codes = np.unique(ids, return_inverse=True)
    out = {}
    for col in values.columns:
        y = values[col].to_numpy(dtype=float)
        ok = np.isfinite(y)
        c, t, yy = codes[ok], time[ok], y[ok]
        n = np.bincount(c, minlength=len(uniq)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            tm = np.bincount(c, t, len(uniq)) / n
            ym = np.bincount(c, yy, len(uniq)) / n
            sxy = np.bincount(c, (t - tm[c]) * (yy - ym[c]), len(uniq))
            sxx = np.bincount(c, (t - tm[c]) ** 2, len(uniq))
            out[col] = np.where((n >= 2) & (sxx > 0), sxy / sxx, np.nan)
    return pd.DataFrame(out, index=uniq)


def _terms(fit, has_groups: bool) -> dict[str, tuple[float, float]]:
    """(estimate, SE) of the reported terms; design order 1, time, [group, time x group]."""
    est, cov = fit.params, fit.cov
    out = {"time": (est[1], np.sqrt(cov[1, 1]))}
    if has_groups:
        out["group"] = (est[2], np.sqrt(cov[2, 2]))
        out["time_x_group"] = (est[3], np.sqrt(cov[3, 3]))
        out["patient_time"] = (est[1] + est[3],
                               np.sqrt(cov[1, 1] + cov[3, 3] + 2 * cov[1, 3]))
    return out


def mixed_models(values: pd.DataFrame, feats: pd.DataFrame, timed: pd.DataFrame,
                 patient: np.ndarray | None, covariates: pd.DataFrame, *,
                 slope_min_sessions: int, min_n: int, fdr_alpha: float) -> pd.DataFrame:
    """Per feature, ``feature ~ time * group + covariates`` with participant random effects.

    Parameters
    ----------
    values
        Feature columns of the timed rows.
    feats
        Catalogue rows of the features.
    timed
        :attr:`Sessions.rows` (aligned with ``values``).
    patient
        Per row 1.0 patient / 0.0 control (``None``: no groups; model ``~ time + covariates``).
    covariates
        Numeric covariate columns per row (each participant's first session).
    slope_min_sessions
        Random slope when at least half the participants have this many sessions.
    min_n, fdr_alpha
        The spec's keys of the same names.
    """
    time = timed["time"].to_numpy(dtype=float)
    ids = timed["participant_id"].to_numpy()
    cov = covariates.to_numpy(dtype=float)
    base = [np.ones(len(time)), time] + ([patient, time * patient] if patient is not None
                                        else [])
    design_all = np.column_stack([*base, cov]) if cov.size else np.column_stack(base)
    rows = []
    _, codes = np.unique(ids, return_inverse=True)
    complete = np.isfinite(design_all).all(axis=1)
    for feat in feats.to_dict("records"):
        y_all = values[feat["feature"]].to_numpy(dtype=float)
        ok = np.isfinite(y_all) & complete
        counts = np.bincount(codes[ok], minlength=codes.max() + 1)
        keep = ok & (counts[codes] >= 2)
        head = {k: feat[k] for k in ("feature", "atlas", "region", "hemisphere", "metric",
                                     "statistic")}
        repeated = counts[counts >= 2]
        head.update(n_participants=len(repeated), n_observations=int(keep.sum()))
        slope = bool(len(repeated)) and bool((repeated >= slope_min_sessions).mean() >= 0.5)
        x = design_all[keep]
        if keep.any():  # covariates constant in the sample are dropped
            varies = np.r_[np.ones(len(base), bool), np.ptp(x[:, len(base):], axis=0) > 0]
            x = x[:, varies]
        if head["n_participants"] < max(min_n, 3) or \
                np.linalg.matrix_rank(x) < x.shape[1]:
            rows.append({**head, "term": "time", "random_slope": slope,
                         "reason": "too few participants with two sessions or a singular "
                                   "design"})
            continue
        y, groups = y_all[keep], codes[keep]  # integer codes: np.unique on text is slow
        fit = (random_slope_reml(y, x, groups, time[keep]) if slope
               else random_intercept_reml(y, x, groups))
        for term, (est, se) in _terms(fit, patient is not None).items():
            z = est / se if se > 0 else np.nan
            rows.append({**head, "term": term, "estimate": est, "se": se, "z": z,
                         "p": 2 * stats.norm.sf(abs(z)), "ci_low": est - CI_Z * se,
                         "ci_high": est + CI_Z * se, "random_slope": slope,
                         "converged": fit.converged, "residual_sd": np.sqrt(fit.scale),
                         "participant_sd": np.sqrt(max(fit.re_var, 0.0))})
    table = pd.DataFrame(rows)
    if "p" not in table.columns:
        table["p"] = np.nan
    table["family"] = table["term"] + ":" + table["metric"]
    table["q"] = fdr(table["p"], table["family"])
    table["significant"] = table["q"] < fdr_alpha
    return table


@dataclass(frozen=True)
class LongitudinalResults:
    """The longitudinal tables, skip reasons and the timed rows they used."""

    tables: Mapping[str, pd.DataFrame]
    skipped: Mapping[str, str]
    timed: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``participant_id, session_id, time, group_label`` and the analysed features (analysis
    units) of every timed row."""


def analyse_longitudinal(joined: pd.DataFrame, catalogue: pd.DataFrame, spec: AnalysisSpec,
                         pheno: Phenotype, *, notes: Notes) -> LongitudinalResults:
    """The ``change``, ``longitudinal`` and ``progression`` tables (or their skip reasons).

    ``joined`` holds every session (harmonised, in analysis units).
    """
    lspec = spec.longitudinal
    keys = ("change", "longitudinal", "progression")
    if not lspec.enabled:
        return LongitudinalResults({}, {"longitudinal": "switched off (longitudinal.enabled: "
                                                        "false)"})
    sess = session_times(joined, pheno, lspec.time_columns)
    if sess.skipped or sess.rows.empty:
        return LongitudinalResults({}, {k: sess.skipped for k in keys if sess.skipped})
    timed = sess.rows
    rows = joined.loc[timed.index]
    feats = catalogue[catalogue["metric"].isin(lspec.metrics)].reset_index(drop=True)
    ids, time = timed["participant_id"].to_numpy(), timed["time"].to_numpy(dtype=float)
    first = rows.groupby(timed["participant_id"].to_numpy()).head(1).set_index("participant_id")
    labels = (group_labels(first[spec.group_column], patient=spec.patient_label,
                           control=spec.control_label) if spec.group_column
              else pd.Series(pd.NA, index=first.index, dtype="object"))
    score = lspec.progression_score
    progression = _progression(rows, first, timed, score)
    change = annual_change(rows[feats["feature"]], time, ids)
    change.columns = [c + PER_YEAR for c in change.columns]
    summary = pd.DataFrame({
        "participant_id": change.index,
        "group_label": labels.reindex(change.index).to_numpy(),
        "n_sessions": pd.Series(ids).value_counts().reindex(change.index).to_numpy(),
        "time_source": timed.groupby("participant_id")["time_source"].first()
        .reindex(change.index).to_numpy(),
        "span_years": timed.groupby("participant_id")["time"].max().reindex(change.index)
        .to_numpy(),
        score + PER_YEAR: progression.reindex(change.index).to_numpy()})
    tables = {"change": pd.concat([summary, change.reset_index(drop=True)], axis=1)}
    skipped = {}
    row_labels = labels.reindex(ids).to_numpy()
    grouped = pd.Series(row_labels).isin([PATIENT, CONTROL]).to_numpy()
    both = {PATIENT, CONTROL} <= set(row_labels[grouped])
    use = grouped if both else np.ones(len(ids), bool)
    cov = covariate_frame(first, lspec.covariates, dictionary=pheno.dictionary, notes=notes)
    cov_rows = cov.reindex(ids).reset_index(drop=True)
    tables["longitudinal"] = mixed_models(
        rows[feats["feature"]].reset_index(drop=True)[use], feats,
        timed.reset_index(drop=True)[use],
        (row_labels[use] == PATIENT).astype(float) if both else None, cov_rows[use],
        slope_min_sessions=lspec.random_slope_min_sessions, min_n=spec.min_n,
        fdr_alpha=spec.fdr_alpha)
    patients = summary["group_label"].eq(PATIENT).to_numpy() if both else \
        np.ones(len(summary), bool)
    y = summary[score + PER_YEAR].to_numpy(dtype=float)
    if np.isfinite(y[patients]).sum() < max(spec.min_n, 3):
        skipped["progression"] = (f"fewer than {max(spec.min_n, 3)} patients with a "
                                  f"{score} change (two sessions with {score} in sessions.tsv "
                                  f"or a {score}_progression column)")
    else:
        clin = tables["change"].loc[patients].reset_index(drop=True)
        pairs = pd.DataFrame([{"score": score + PER_YEAR, **f, "family": f"{score}:{f['metric']}",
                               "y": score + PER_YEAR, "x": f["feature"] + PER_YEAR}
                              for f in feats.to_dict("records")])
        table = associations(clin, clin, pairs, {}, fdr_alpha=spec.fdr_alpha, min_n=spec.min_n)
        tables["progression"] = table.drop(columns=["y", "x", "feature"])
    used = timed[["participant_id", "session_id", "time"]].assign(group_label=row_labels)
    used = pd.concat([used.reset_index(drop=True),
                      rows[feats["feature"]].reset_index(drop=True)], axis=1)
    return LongitudinalResults(tables, skipped, used)


def _progression(rows: pd.DataFrame, first: pd.DataFrame, timed: pd.DataFrame,
                 score: str) -> pd.Series:
    """Per participant, the score's change per year from the sessions (two or more values),
    else a ``<score>_progression`` column (points per year, e.g. delta-FS)."""
    ids = timed["participant_id"].to_numpy()
    if score in rows.columns:
        values = pd.to_numeric(rows[score], errors="coerce").to_frame(score)
        slope = annual_change(values, timed["time"].to_numpy(dtype=float), ids)[score]
        if slope.notna().any():
            return slope
    rate = f"{score}_progression"
    if rate in first.columns:
        return pd.to_numeric(first[rate], errors="coerce")
    return pd.Series(np.nan, index=np.unique(ids))
