"""Site harmonisation of the imaging features: ComBat fitted on the controls, applied to all.

ComBat (Johnson 2007; Fortin 2017, 2018) models every feature as
``feature = site location + covariate effects + site scale x error``; the location and scale
of each site are estimated on the standardised residuals, shrunk towards their mean over
features by empirical Bayes, and removed. The implementation is neuroHarmonize
(``harmonizationLearn`` / ``harmonizationApply``, linear covariate model): it is fitted on the
controls (one session each, their cross-sectional row) with the biological covariates in the
model, so age and sex effects are kept, and the diagnosis effect is kept because no patient
enters the fit; the fitted model is then applied to every participant and session.

Missing values: features are fitted in blocks of identical missingness among the controls
(empirical Bayes pools within a block; a block of one feature has no pooling); applying the
model is element-wise, so a missing cell stays missing and affects nothing else. Rows without
a site or a covariate cannot be harmonised: their feature values become missing (warning).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from neuroHarmonize import harmonizationApply, harmonizationLearn
from scipy import stats

from bids_app.group.design import CONTROL, covariate_frame, cross_sectional, group_labels
from bids_app.group.notes import Notes
from bids_app.group.spec import AnalysisSpec
from bids_app.group.spec_sections import HarmonizeSpec

#: neuroHarmonize's name of the site column.
SITE = "SITE"
#: Reason recorded when the user switched harmonisation off.
SWITCHED_OFF = ("site harmonisation switched off (--no-harmonize or harmonize.enabled: false); "
                "the analyses use the values as measured")


@dataclass(frozen=True)
class Harmonisation:
    """Outcome of :func:`harmonise`."""

    values: pd.DataFrame | None
    """Harmonised feature columns, aligned with the input rows (``None``: not harmonised)."""
    effects: pd.DataFrame | None
    """Per feature, the site F-test in the controls before and after (``None``: no sites)."""
    skipped: str | None
    """Why the features were not harmonised (``None`` when they were, or without >= 2 sites):
    :data:`SWITCHED_OFF` or a refusal."""
    sites: tuple[str, ...] = ()
    site: pd.Series | None = None
    """Site of every input row (``None`` without a site column)."""
    fit_rows: np.ndarray | None = None
    """Rows that entered (or would have entered) the fit: the controls' cross-sectional rows
    with a site and complete covariates."""
    covariates: pd.DataFrame | None = None
    """Numeric covariate columns of every input row (the fit's preserved covariates)."""
    empirical_bayes: bool = True
    minimum: int = 2
    """The spec's ``harmonize.empirical_bayes`` and ``min_controls_per_site`` (the profiles
    are harmonised with the same settings: :func:`harmonise_profiles`)."""


def site_labels(table: pd.DataFrame, column: str) -> pd.Series | None:
    """The site of every row as text (missing stays missing); ``None`` without the column."""
    if column not in table.columns:
        return None
    text = table[column].astype("string").str.strip()
    return text.mask(text == "")


def site_f_test(values: np.ndarray, site: np.ndarray,
                covariates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values``, the F-test of site given the covariates (nested OLS models).

    Reduced model ``feature ~ 1 + covariates``, full model ``+ site dummies``; rows with a
    missing value are dropped per feature.

    Returns
    -------
    F, p, n : ndarray
        F statistic, its p value and the rows used, per feature (NaN where untestable).
    """
    n_feat = values.shape[1]
    f_stat, p_val, n_used = np.full(n_feat, np.nan), np.full(n_feat, np.nan), np.zeros(n_feat)
    levels, codes = np.unique(site, return_inverse=True)
    dummies = (codes[:, None] == np.arange(1, len(levels))[None, :]).astype(float)
    reduced = np.column_stack([np.ones(len(site)), covariates])
    full = np.column_stack([reduced, dummies])
    for j in range(n_feat):
        ok = np.isfinite(values[:, j])
        y, xr, xf = values[ok, j], reduced[ok], full[ok]
        df1 = np.linalg.matrix_rank(xf) - np.linalg.matrix_rank(xr)
        df2 = len(y) - np.linalg.matrix_rank(xf)
        n_used[j] = len(y)
        if df1 < 1 or df2 < 1:
            continue
        rss_r = np.sum((y - xr @ np.linalg.lstsq(xr, y, rcond=None)[0]) ** 2)
        rss_f = np.sum((y - xf @ np.linalg.lstsq(xf, y, rcond=None)[0]) ** 2)
        f_stat[j] = ((rss_r - rss_f) / df1) / (rss_f / df2) if rss_f > 0 else np.nan
        p_val[j] = stats.f.sf(f_stat[j], df1, df2)
    return f_stat, p_val, n_used


def refusal(counts: pd.Series, minimum: int) -> str | None:
    """One line when a site has fewer than ``minimum`` controls, else ``None``."""
    low = counts[counts < minimum]
    if low.empty:
        return None
    shown = ", ".join(f"{site} ({n})" for site, n in low.items())
    return (f"site harmonisation skipped: fewer than {minimum} controls with complete "
            f"covariates at site(s) {shown} (harmonize.min_controls_per_site); the analyses "
            "use unharmonised values")


def _blocks(values: np.ndarray) -> list[np.ndarray]:
    """Feature indices grouped by identical missingness among the fit rows."""
    keys: dict[bytes, list[int]] = {}
    present = np.isfinite(values)
    for j in range(values.shape[1]):
        if present[:, j].any():
            keys.setdefault(present[:, j].tobytes(), []).append(j)
    return [np.asarray(v) for v in keys.values()]


def combat(values: np.ndarray, covars: pd.DataFrame, fit: np.ndarray, *,
           empirical_bayes: bool, minimum: int) -> tuple[np.ndarray, list[str]]:
    """Fit ComBat on the rows ``fit`` and apply it to every row (block by missingness).

    Parameters
    ----------
    values
        Rows x features; every row has a site and complete covariates.
    covars
        ``SITE`` (text) and numeric covariate columns, one row per row of ``values``.
    fit
        Boolean rows entering the fit (the controls).
    empirical_bayes, minimum
        The spec's ``harmonize.empirical_bayes`` and ``min_controls_per_site``.

    Returns
    -------
    harmonised : ndarray
        Same shape; features whose block has a site with fewer than ``minimum`` fitted rows
        are NaN (and named in the messages).
    messages : list of str
    """
    out = np.full(values.shape, np.nan)
    messages = []
    fit_values = values[fit]
    for block in _blocks(fit_values):
        rows = np.isfinite(fit_values[:, block[0]])
        counts = covars.loc[fit, SITE][rows].value_counts()
        if len(counts) < covars[SITE].nunique() or counts.min() < minimum:
            messages.append(f"{len(block)} feature(s) not harmonised (a site has fewer than "
                            f"{minimum} controls with a value); their values are not analysed")
            continue
        # neuroHarmonize prints progress and uses np.matrix (PendingDeprecationWarning)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            model, _ = harmonizationLearn(fit_values[rows][:, block],
                                          covars[fit][rows].reset_index(drop=True),
                                          eb=empirical_bayes)
            out[:, block] = harmonizationApply(values[:, block], covars, model)
    return out, messages


def harmonise(joined: pd.DataFrame, features: list[str], covariates: pd.DataFrame,
              fit_rows: np.ndarray, spec: HarmonizeSpec, *, notes: Notes) -> Harmonisation:
    """Harmonise ``features`` of ``joined`` across the sites of ``spec.column``.

    Parameters
    ----------
    joined
        Every participant/session row (raw feature values).
    features
        Feature columns to harmonise.
    covariates
        Numeric design columns of ``spec.covariates`` for the rows of ``joined``
        (:func:`bids_app.group.design.covariate_frame`).
    fit_rows
        Boolean rows of ``joined`` that are the controls' cross-sectional rows.
    spec
        The ``harmonize`` section.

    Returns
    -------
    Harmonisation
        With ``values`` when harmonised; ``effects`` whenever >= 2 sites exist.
    """
    site = site_labels(joined, spec.column)
    if site is None or site.dropna().nunique() < 2 or not features:
        return Harmonisation(values=None, effects=None, skipped=None)
    cov = covariates.to_numpy(dtype=float)
    usable = site.notna().to_numpy() & np.isfinite(cov).all(axis=1)
    fit = fit_rows & usable
    sites = tuple(sorted(site.dropna().unique()))
    counts = site[fit].value_counts().reindex(list(sites), fill_value=0)
    raw = joined[features].to_numpy(dtype=float)
    before = site_f_test(raw[fit], site[fit].to_numpy(dtype=str), cov[fit])
    if not spec.enabled:  # the user's choice: recorded, not a warning
        return Harmonisation(values=None, effects=_effects(features, before, None, counts),
                             skipped=SWITCHED_OFF, sites=sites, site=site, fit_rows=fit)
    message = refusal(counts, spec.min_controls_per_site) if fit.any() else (
        "site harmonisation skipped: no controls to fit it (ComBat is fitted on the "
        "controls); the analyses use unharmonised values")
    if message is not None:
        notes.warn(message)
        return Harmonisation(values=None, effects=_effects(features, before, None, counts),
                             skipped=message, sites=sites, site=site, fit_rows=fit)
    if (~usable).any():
        notes.warn(f"site harmonisation: {int((~usable).sum())} participant/session row(s) "
                   f"without a site ({spec.column!r}) or a covariate ({list(spec.covariates)}) "
                   "cannot be harmonised; their imaging values are not analysed")
    covars = pd.concat([site[usable].rename(SITE).astype(str).reset_index(drop=True),
                        covariates[usable].reset_index(drop=True)], axis=1)
    harmonised, messages = combat(raw[usable], covars, fit[usable],
                                  empirical_bayes=spec.empirical_bayes,
                                  minimum=spec.min_controls_per_site)
    for line in messages:
        notes.warn(f"site harmonisation: {line}")
    values = np.full(raw.shape, np.nan)
    values[usable] = harmonised
    after = site_f_test(values[fit], site[fit].to_numpy(dtype=str), cov[fit])
    return Harmonisation(values=pd.DataFrame(values, columns=features, index=joined.index),
                         effects=_effects(features, before, after, counts), skipped=None,
                         sites=sites, site=site, fit_rows=fit, covariates=covariates,
                         empirical_bayes=spec.empirical_bayes,
                         minimum=spec.min_controls_per_site)


def harmonise_profiles(values: np.ndarray, keys: pd.DataFrame, joined: pd.DataFrame,
                       result: Harmonisation, *, notes: Notes) -> np.ndarray | None:
    """Along-tract profiles harmonised like the features: every node of every profile is a
    ComBat feature, fitted on the same control rows with the same covariates and applied to
    every profile row.

    Parameters
    ----------
    values
        ``(rows, profiles, nodes)`` (:attr:`bids_app.group.profiles.ProfileData.values`).
    keys
        ``participant_id, session_id`` of each row of ``values``.
    joined
        The joined table :func:`harmonise` was given (its index is the result's).
    result
        :func:`harmonise`'s outcome.

    Returns
    -------
    ndarray or None
        Same shape (rows without a site, a covariate or a joined row become NaN); ``None``
        when the features were not harmonised.
    """
    if result.values is None or result.site is None or result.covariates is None \
            or not values.size:
        return None
    where = {k: i for i, k in enumerate(joined[list(keys.columns)].itertuples(
        index=False, name=None))}
    rows = np.array([where.get(k, -1) for k in keys.itertuples(index=False, name=None)])
    cov = result.covariates.to_numpy(dtype=float)
    site = result.site.to_numpy(dtype=object)
    usable = rows >= 0
    usable[usable] = pd.notna(site[rows[usable]]) & np.isfinite(cov[rows[usable]]).all(axis=1)
    picked = rows[usable]
    covars = pd.concat([pd.Series(site[picked], name=SITE).astype(str),
                        result.covariates.iloc[picked].reset_index(drop=True)], axis=1)
    flat = values.reshape(len(values), -1)
    out = np.full(flat.shape, np.nan)
    harmonised, messages = combat(flat[usable], covars, result.fit_rows[picked],
                                  empirical_bayes=result.empirical_bayes,
                                  minimum=result.minimum)
    out[usable] = harmonised
    for line in messages:
        notes.warn("site harmonisation of the along-tract profiles: "
                   + line.replace("feature(s)", "profile node(s)"))
    return out.reshape(values.shape)


def _effects(features: list[str], before, after, counts: pd.Series) -> pd.DataFrame:
    table = pd.DataFrame({"feature": features, "n_sites": len(counts),
                          "n_controls": before[2].astype(int),
                          "controls_per_site": "; ".join(f"{s}: {n}"
                                                         for s, n in counts.items()),
                          "f_before": before[0], "p_before": before[1]})
    table["harmonised"] = False if after is None else np.isfinite(after[1])
    table["f_after"] = np.nan if after is None else after[0]
    table["p_after"] = np.nan if after is None else after[1]
    return table


def harmonised_joined(joined: pd.DataFrame, catalogue: pd.DataFrame, spec: AnalysisSpec,
                      dictionary: Mapping[str, Any], *,
                      notes: Notes) -> tuple[pd.DataFrame, Harmonisation]:
    """``joined`` with every imaging feature harmonised across sites (when it can be).

    The fit rows are the controls' cross-sectional rows (spec ``session``); the site effects
    table gets the catalogue columns of each feature.

    Returns
    -------
    analysed : DataFrame
        ``joined`` with harmonised feature columns (``joined`` itself when not harmonised).
    harmonisation : Harmonisation
    """
    features = [f for f in catalogue["feature"] if f in joined.columns]
    column = spec.harmonize.column
    if spec.harmonize.enabled and column not in joined.columns and \
            "harmonize.column" in spec.user_keys:
        notes.warn(f"harmonize.column {column!r} is not in participants.tsv, sessions.tsv or "
                   "the phenotype files; no site harmonisation")
    cross = cross_sectional(joined, spec.session)
    fit_rows = np.zeros(len(joined), bool)
    if spec.group_column:
        labels = group_labels(cross[spec.group_column], patient=spec.patient_label,
                              control=spec.control_label)
        fit_rows = joined.index.isin(cross.index[(labels == CONTROL).to_numpy()])
    covariates = covariate_frame(joined, spec.harmonize.covariates, dictionary=dictionary,
                                 notes=notes)
    result = harmonise(joined, features, covariates, fit_rows, spec.harmonize, notes=notes)
    if result.effects is not None:
        keys = catalogue.drop_duplicates("feature").set_index("feature")
        result = replace(result, effects=result.effects.join(keys, on="feature")[
            ["feature", *[c for c in keys.columns], *result.effects.columns[1:]]])
    if result.values is None:
        return joined, result
    analysed = joined.copy()
    analysed[features] = result.values
    return analysed, result


def methods_text(result: Harmonisation, spec: HarmonizeSpec) -> str:
    """One paragraph for the methods: whether harmonisation ran, on which sites and features.

    Parameters
    ----------
    result
        :func:`harmonise`'s outcome (with its site effects table).
    spec
        The ``harmonize`` section.
    """
    column = f"column '{spec.column}'"
    if result.effects is None:
        return (f"Site harmonisation: not applicable (no site {column} with at least two "
                "sites among the participants with imaging outputs).")
    effects = result.effects
    per_site = effects["controls_per_site"].iat[0]
    sites = f"the {len(result.sites)} sites of {column} ({per_site} controls)"
    if result.skipped == SWITCHED_OFF:
        return (f"Site harmonisation was switched off: the analyses use the values as "
                f"measured across {sites}; the site effects (F-test of site in the controls "
                f"adjusted for {_names(spec.covariates)}) are reported.")
    if result.skipped is not None:
        return f"Site harmonisation was not run: {result.skipped}."
    eb = "with" if spec.empirical_bayes else "without"
    return (f"Imaging features ({int(effects['harmonised'].sum())} of {len(effects)}) were "
            f"harmonised across {sites} with ComBat (Johnson 2007; Fortin 2017, 2018; "
            f"neuroHarmonize {_version('neuroHarmonize')}, linear covariate model, {eb} "
            f"empirical Bayes), fitted on the controls' cross-sectional sessions with "
            f"{_names(spec.covariates)} as preserved covariates and applied to every "
            "participant and session (along-tract profiles node by node, with the same fit "
            "rows and covariates); every analysis used the harmonised values.")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) or "no covariates"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - a declared dependency
        return "(version unknown)"
