"""Group comparisons and clinical associations (DataFrame in, DataFrame out).

Every statistic comes from scipy or statsmodels; this module only selects samples, chooses the
test and arranges results. Models are explicit design matrices ``[1, x, covariates]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests

from bids_app.group.design import drop_constant

KEY_COLS = ["atlas", "region", "hemisphere", "metric", "statistic"]


def fdr(pvalues: pd.Series, families: pd.Series) -> pd.Series:
    """Benjamini-Hochberg q values within each family (NaN p -> NaN q)."""
    q = pd.Series(np.nan, index=pvalues.index)
    for idx in pvalues.groupby(families, sort=False).groups.values():
        p = pvalues.loc[idx].dropna()
        if len(p):
            q.loc[p.index] = multipletests(p.to_numpy(), method="fdr_bh")[1]
    return q


def ols_term(y: np.ndarray, x: np.ndarray, cov: np.ndarray, cov_names: Sequence[str], *,
             alpha: float = 0.05) -> dict[str, Any]:
    """OLS ``y ~ 1 + x + cov``; the coefficient of ``x`` and model fit.

    Covariates constant in the sample are dropped (listed in ``covariates``). Returns a reason
    instead of numbers when the model has no residual degrees of freedom.
    """
    cov, used = drop_constant(cov, cov_names)
    design = np.column_stack([np.ones(len(y)), x, cov])
    out: dict[str, Any] = {"covariates": ",".join(used)}
    if len(y) <= design.shape[1]:
        out["reason"] = f"n={len(y)} too small for {design.shape[1]} model parameters"
        return out
    fit = sm.OLS(y, design).fit()
    ci = fit.conf_int(alpha)
    out.update(beta=fit.params[1], se=fit.bse[1], t=fit.tvalues[1], p=fit.pvalues[1],
               ci_low=ci[1, 0], ci_high=ci[1, 1], r2=fit.rsquared, adj_r2=fit.rsquared_adj,
               df_resid=fit.df_resid)
    return out


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def _two_groups(xp: np.ndarray, xc: np.ndarray, *, normality_alpha: float,
                equal_variance_alpha: float, alpha: float) -> dict[str, Any]:
    """Shapiro in both groups -> Student/Welch (Levene) or Mann-Whitney, with effect size."""
    z = stats.norm.isf(alpha / 2)
    n_p, n_c = len(xp), len(xc)
    sh_p = _quiet(stats.shapiro, xp).pvalue
    sh_c = _quiet(stats.shapiro, xc).pvalue
    out: dict[str, Any] = {"shapiro_p_patient": sh_p, "shapiro_p_control": sh_c}
    if sh_p > normality_alpha and sh_c > normality_alpha:
        lev = _quiet(stats.levene, xp, xc, center="mean").pvalue
        equal = bool(lev > equal_variance_alpha)
        res = stats.ttest_ind(xp, xc, equal_var=equal)
        g, var = effectsize_smd(xp.mean(), xp.std(ddof=1), n_p, xc.mean(), xc.std(ddof=1), n_c)
        half = z * np.sqrt(var)
        out.update(levene_p=lev, test="student" if equal else "welch",
                   test_statistic=res.statistic,
                   df=res.df, p=res.pvalue, effect_size_type="hedges_g", effect_size=g,
                   effect_ci_low=g - half, effect_ci_high=g + half)
    else:
        res = stats.mannwhitneyu(xp, xc, alternative="two-sided")
        rbc = 2.0 * res.statistic / (n_p * n_c) - 1.0
        # Fisher-z interval with SE sqrt((n1+n2+1)/(3 n1 n2)), as R effectsize::rank_biserial
        se = np.sqrt((n_p + n_c + 1) / (3.0 * n_p * n_c))
        zr = np.arctanh(np.clip(rbc, -1 + 1e-12, 1 - 1e-12))
        out.update(test="mann-whitney", test_statistic=res.statistic, p=res.pvalue,
                   effect_size_type="rank_biserial", effect_size=rbc,
                   effect_ci_low=np.tanh(zr - z * se), effect_ci_high=np.tanh(zr + z * se))
    return out


def compare_groups(values: pd.DataFrame, catalogue: pd.DataFrame, is_patient: np.ndarray,
                   covariates: pd.DataFrame, *, fdr_alpha: float, normality_alpha: float,
                   equal_variance_alpha: float, min_n: int) -> pd.DataFrame:
    """Patient vs control comparison of every feature.

    Parameters
    ----------
    values
        One row per participant (patients and controls only), one column per feature.
    catalogue
        Rows ``feature, atlas, region, hemisphere, metric, statistic`` to test.
    is_patient
        Boolean per row of ``values``.
    covariates
        Numeric design columns aligned with ``values`` (may be empty).
    fdr_alpha, normality_alpha, equal_variance_alpha, min_n
        The analysis spec's keys of the same names.

    Returns
    -------
    DataFrame
        One row per feature (see :data:`bids_app.group.columns.COMPARISONS`).
    """
    is_patient = np.asarray(is_patient, dtype=bool)
    cov_all = covariates.to_numpy(dtype=float)
    cov_ok = np.isfinite(cov_all).all(axis=1)
    rows = []
    for feat in catalogue.itertuples(index=False):
        y = values[feat.feature].to_numpy(dtype=float)
        ok = np.isfinite(y)
        xp, xc = y[ok & is_patient], y[ok & ~is_patient]
        row: dict[str, Any] = {k: getattr(feat, k) for k in KEY_COLS}
        row.update(family=feat.metric, n_patient=len(xp), n_control=len(xc),
                   mean_patient=xp.mean() if len(xp) else np.nan,
                   sd_patient=xp.std(ddof=1) if len(xp) > 1 else np.nan,
                   mean_control=xc.mean() if len(xc) else np.nan,
                   sd_control=xc.std(ddof=1) if len(xc) > 1 else np.nan)
        if min(len(xp), len(xc)) < max(min_n, 3):
            row["reason"] = f"n < {max(min_n, 3)} in a group"
        elif np.ptp(y[ok]) == 0:
            row["reason"] = "constant values"
        else:
            row.update(_two_groups(xp, xc, normality_alpha=normality_alpha,
                                   equal_variance_alpha=equal_variance_alpha, alpha=0.05))
            sel = ok & cov_ok
            adj = ols_term(y[sel], is_patient[sel].astype(float), cov_all[sel],
                           list(covariates.columns))
            row["adj_n"] = int(sel.sum())
            row.update({f"adj_{k}": v for k, v in adj.items() if k != "reason"})
            if "reason" in adj:
                row["reason"] = f"adjusted model: {adj['reason']}"
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("p", "adj_p", "reason"):
        if col not in table.columns:
            table[col] = np.nan
    table["q"] = fdr(table["p"], table["family"])
    table["adj_q"] = fdr(table["adj_p"], table["family"])
    table["significant"] = table["q"] < fdr_alpha
    return table


def associations(y_table: pd.DataFrame, x_table: pd.DataFrame, pairs: pd.DataFrame,
                 covariates: dict[str, pd.DataFrame], *, fdr_alpha: float,
                 min_n: int) -> pd.DataFrame:
    """Pearson, Spearman and OLS ``y ~ x + covariates`` for each requested (y, x) pair.

    Parameters
    ----------
    y_table, x_table
        Aligned DataFrames holding the outcome and predictor columns.
    pairs
        Rows with ``y``, ``x`` (column names), ``family`` and any descriptive columns
        (copied to the output).
    covariates
        Design columns per outcome name (``pairs.y``), aligned with the tables.
    fdr_alpha, min_n
        The analysis spec's keys of the same names.

    Returns
    -------
    DataFrame
        The descriptive columns of ``pairs`` plus ``n, covariates, pearson_r, pearson_p,
        spearman_rho, spearman_p, beta, se, t, p, ci_low, ci_high, std_beta, r2, adj_r2, q,
        pearson_q, significant, reason``.
    """
    rows = []
    cache: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    blocks: dict[tuple[str, bytes], list[int]] = {}
    for pair in pairs.to_dict("records"):
        if pair["y"] not in cache:
            cov = covariates.get(pair["y"], pd.DataFrame(index=y_table.index))
            c = cov.to_numpy(dtype=float)
            cache[pair["y"]] = (y_table[pair["y"]].to_numpy(dtype=float),
                                c, list(cov.columns))
        y_all, cov_all, cov_names = cache[pair["y"]]
        x_all = x_table[pair["x"]].to_numpy(dtype=float)
        sel = np.isfinite(y_all) & np.isfinite(x_all) & np.isfinite(cov_all).all(axis=1)
        y, x = y_all[sel], x_all[sel]
        row = dict(pair, n=int(sel.sum()))
        if row["n"] < max(min_n, 3):
            row["reason"] = f"n < {max(min_n, 3)}"
        elif np.ptp(x) == 0 or np.ptp(y) == 0:
            row["reason"] = "constant " + ("predictor" if np.ptp(x) == 0 else "outcome")
        else:
            # pairs sharing outcome and sample get their correlations in one scipy call
            blocks.setdefault((pair["y"], np.packbits(sel).tobytes()), []).append(len(rows))
            fit = ols_term(y, x, cov_all[sel], cov_names)
            row.update(fit)
            if "beta" in fit:
                row["std_beta"] = fit["beta"] * x.std(ddof=1) / y.std(ddof=1)
            row["_sel"] = sel
        rows.append(row)
    for (y_name, _), idx in blocks.items():
        sel = rows[idx[0]]["_sel"]
        y = cache[y_name][0][sel]
        xs = np.column_stack([x_table[rows[i]["x"]].to_numpy(dtype=float)[sel] for i in idx])
        pr = stats.pearsonr(xs, y[:, None], axis=0)
        sr = stats.spearmanr(np.column_stack([xs, y]))
        rho = np.atleast_2d(sr.statistic)[-1, :-1] if len(idx) > 1 else [sr.statistic]
        rho_p = np.atleast_2d(sr.pvalue)[-1, :-1] if len(idx) > 1 else [sr.pvalue]
        for j, i in enumerate(idx):
            rows[i].update(pearson_r=pr.statistic[j], pearson_p=pr.pvalue[j],
                           spearman_rho=rho[j], spearman_p=rho_p[j])
    for row in rows:
        row.pop("_sel", None)
    table = pd.DataFrame(rows)
    for col in ("p", "pearson_p", "reason", "covariates"):
        if col not in table.columns:
            table[col] = np.nan
    table["q"] = fdr(table["p"], table["family"])
    table["pearson_q"] = fdr(table["pearson_p"], table["family"])
    table["significant"] = table["q"] < fdr_alpha
    return table.drop(columns=[c for c in ("df_resid",) if c in table.columns])
