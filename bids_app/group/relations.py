"""Gray-matter vs tract relationships and left/right (interhemispheric) statistics."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bids_app.group.spec import GmTractSpec
from bids_app.group.stats import associations, fdr


def gm_tract_pairs(catalogue: pd.DataFrame, spec: GmTractSpec) -> pd.DataFrame:
    """Feature pairs (gray-matter region, tract) in the same hemisphere, for every atlas.

    The ``gm_regions`` x ``tracts`` matrix first, then the further ``pairs``.
    """
    gm = catalogue[catalogue["metric"] == spec.gm_metric]
    tract = catalogue[catalogue["metric"] == spec.tract_metric]
    rows = []
    for gm_region, tract_region in spec.all_pairs:
        g_rows = gm[gm["region"] == gm_region]
        t_rows = tract[tract["region"] == tract_region]
        for g in g_rows.itertuples(index=False):
            for t in t_rows[t_rows["hemisphere"] == g.hemisphere].itertuples(index=False):
                rows.append({"gm_atlas": g.atlas, "gm_region": g.region,
                             "hemisphere": g.hemisphere, "gm_metric": g.metric,
                             "gm_statistic": g.statistic, "tract_atlas": t.atlas,
                             "tract_region": t.region, "tract_metric": t.metric,
                             "tract_statistic": t.statistic, "y": g.feature, "x": t.feature})
    return pd.DataFrame(rows)


def gm_tract(values: pd.DataFrame, catalogue: pd.DataFrame, spec: GmTractSpec,
             covariates: pd.DataFrame, subsets: Mapping[str, np.ndarray], *,
             fdr_alpha: float, min_n: int) -> pd.DataFrame:
    """OLS ``gm ~ tract + covariates`` and Pearson r for every pair, in every subset.

    ``q`` is computed within each subset (family ``<subset>:<gm_metric>~<tract_metric>``).
    """
    pairs = gm_tract_pairs(catalogue, spec)
    if pairs.empty:
        return pd.DataFrame()
    parts = []
    for name, mask in subsets.items():
        p = pairs.assign(subset=name, family=f"{name}:{spec.gm_metric}~{spec.tract_metric}")
        sub_values = values.loc[mask]
        cov = {y: covariates.loc[mask] for y in p["y"].unique()}
        parts.append(associations(sub_values, sub_values, p, cov, fdr_alpha=fdr_alpha,
                                  min_n=min_n))
    table = pd.concat(parts, ignore_index=True)
    first = ["subset", "gm_atlas", "gm_region", "hemisphere", "gm_metric", "gm_statistic",
             "tract_atlas", "tract_region", "tract_metric", "tract_statistic"]
    return table[first + [c for c in table.columns if c not in first]]


def lr_pairs(catalogue: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """(atlas, region, metric, statistic) with both an ``L`` and an ``R`` feature."""
    cat = catalogue[catalogue["metric"].isin(metrics)]
    keys = ["atlas", "region", "metric", "statistic"]
    left = cat[cat["hemisphere"] == "L"].rename(columns={"feature": "left"})
    right = cat[cat["hemisphere"] == "R"].rename(columns={"feature": "right"})
    return left[keys + ["left"]].merge(right[keys + ["right"]], on=keys)


def interhemispheric(values: pd.DataFrame, catalogue: pd.DataFrame, metrics: Sequence[str],
                     subsets: Mapping[str, np.ndarray], *, fdr_alpha: float,
                     min_n: int) -> pd.DataFrame:
    """Left-right Pearson r, paired t-test and asymmetry index per region/metric and subset.

    The asymmetry index is ``AI = 100 (L - R) / ((L + R) / 2)`` per participant; the table
    gives its mean, SD and median.
    """
    pairs = lr_pairs(catalogue, metrics)
    rows = []
    for name, mask in subsets.items():
        for pair in pairs.itertuples(index=False):
            left = values.loc[mask, pair.left].to_numpy(dtype=float)
            right = values.loc[mask, pair.right].to_numpy(dtype=float)
            ok = np.isfinite(left) & np.isfinite(right)
            lv, rv = left[ok], right[ok]
            row: dict[str, Any] = {"subset": name, "atlas": pair.atlas, "region": pair.region,
                                   "metric": pair.metric, "statistic": pair.statistic,
                                   "family": f"{name}:{pair.metric}", "n": int(ok.sum())}
            if row["n"] < max(min_n, 3):
                row["reason"] = f"n < {max(min_n, 3)}"
                rows.append(row)
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                ai = 100.0 * (lv - rv) / ((lv + rv) / 2.0)
            ai = ai[np.isfinite(ai)]
            row.update(mean_left=lv.mean(), mean_right=rv.mean(), ai_mean=ai.mean(),
                       ai_sd=ai.std(ddof=1), ai_median=np.median(ai))
            if np.ptp(lv) == 0 or np.ptp(rv) == 0:
                row["reason"] = "constant values"
            else:
                pr = stats.pearsonr(lv, rv)
                row.update(r=pr.statistic, p=pr.pvalue)
            if np.ptp(lv - rv) > 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tt = stats.ttest_rel(lv, rv)
                row.update(paired_t=tt.statistic, paired_df=tt.df, paired_p=tt.pvalue)
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for col in ("p", "paired_p", "reason"):
        if col not in table.columns:
            table[col] = np.nan
    table["q"] = fdr(table["p"], table["family"])
    table["paired_q"] = fdr(table["paired_p"], table["family"])
    table["significant"] = table["paired_q"] < fdr_alpha
    return table
