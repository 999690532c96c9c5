"""The group level's output against a reference study's reported figures.

For every figure of the paper (Table 1, patient-control differences, Table 2, GM-clinical,
Table 3) one row per hemisphere: the paper's value, alsmri's recovered value with its 95 %
CI (read from the group level's tables), the *planted* value (the same statistic on the
simulator's per-participant truth, computed here with statsmodels/scipy), the power to find
the planted effect at this sample size, and whether paper and alsmri agree:

* ``same_direction``: the recovered value has the paper's sign;
* ``paper_in_ci``: the paper's value lies in the recovered 95 % CI;
* ``significance_agrees``: recovered p < alpha exactly when the paper found significance
  (its null findings must stay null);
* ``agrees``: all three (those that apply).

Comparisons are on unit-free scales, because the simulated brain is not the paper's:
relative differences (patients / controls - 1) for group differences, Pearson r for Table 2,
partial r (``t / sqrt(t^2 + df)``) for the clinical regressions, the group means and
percentages for Table 1.  ``required`` marks rows whose planted effect has power >=
:data:`MIN_POWER` (paper significant): the run passes when all of them agree; a miss there
is a measurement problem, a miss below it may be chance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from bids_app.bids.outputs import GROUP_OUTPUTS
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL
from bids_app.simulate.recovery import write_table
from bids_app.simulate.reference import (
    GM_ATLAS,
    N_CLINICAL_COVARIATES,
    SCORES,
    TRACTS,
    partial_r,
    t_from_p,
    value,
)

ALPHA = 0.05
MIN_POWER = 0.8
HEMISPHERES = ("L", "R")
METRICS = {"fa": "fa", "ad_1e-3_mm2_s": "ad", "md_1e-3_mm2_s": "md", "rd_1e-3_mm2_s": "rd"}
COLUMNS = ("section", "figure", "hemisphere", "measure", "paper_value", "paper_p",
           "paper_significant", "planted_value", "planted_effect", "power", "recovered_value",
           "ci_low", "ci_high", "recovered_p", "same_direction", "paper_in_ci",
           "significance_agrees", "agrees", "required", "note")


def truth_table(truth: dict) -> pd.DataFrame:
    """One row per participant: group, age, sex, scores and every planted tract metric
    (``<tract>_<hemi>_<metric>``) and GM volume ratio (``gm_<region>_<hemi>``)."""
    rows = []
    for pid, part in truth["participants"].items():
        row = {"participant_id": pid, "group": part["group"], "age": part["age"],
               "male": float(part["sex"] == "M"), **part.get("scores", {})}
        for t in part["tracts"]:
            for metric in ("fa", "ad", "md", "rd"):
                row[f"{t['region']}_{t['hemisphere']}_{metric}"] = t[metric]
        for g in part["gm"]:
            row[f"gm_{g['region']}_{g['hemisphere']}"] = g["volume_ratio"]
        rows.append(row)
    return pd.DataFrame(rows)


def power_difference(d: float, n1: int, n2: int) -> float:
    """Power of a two-sided two-sample t-test at Cohen ``d`` (noncentral t, as statsmodels'
    ``TTestIndPower``, which returns NaN for very large effects)."""
    if not np.isfinite(d) or n1 < 2 or n2 < 2:
        return float("nan")
    return _power_t(d * np.sqrt(n1 * n2 / (n1 + n2)), n1 + n2 - 2)


def power_correlation(r: float, df: int) -> float:
    """Power of the two-sided t-test of a (partial) correlation ``r`` with ``df`` residual
    degrees of freedom (noncentral t, noncentrality ``r / sqrt(1 - r^2) sqrt(df)``)."""
    if not np.isfinite(r) or df < 1:
        return float("nan")
    return _power_t(r / np.sqrt(max(1 - r * r, 1e-12)) * np.sqrt(df), df)


def _power_t(ncp: float, df: int) -> float:
    crit = stats.t.isf(ALPHA / 2, df)
    return float(min(1.0, stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)))


def fisher_ci(r: float, n_eff: int) -> tuple[float, float]:
    """95 % CI of a correlation by Fisher's z with ``n_eff - 3`` in the standard error."""
    if not np.isfinite(r) or n_eff <= 3:
        return float("nan"), float("nan")
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), 1.96 / np.sqrt(n_eff - 3)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _planted_partial(table: pd.DataFrame, score: str, column: str) -> tuple[float, int]:
    """Partial r of ``column`` in score ~ column + age + sex + duration (patients, truth)."""
    cols = [score, column, "age", "male", "disease_duration"]
    if any(c not in table.columns for c in cols):
        return float("nan"), 0
    data = table.loc[table["group"] == PATIENT_LABEL, cols].dropna()
    y = data[score].astype(float)
    x = sm.add_constant(data.drop(columns=score).astype(float))
    if len(data) <= x.shape[1] + 1:
        return float("nan"), 0
    fit = sm.OLS(y, x).fit()
    df = int(fit.df_resid)
    return partial_r(float(fit.tvalues[column]), df), df


def paper_comparison(paper: dict[str, Any], group_dir: Path, truth: dict) -> pd.DataFrame:
    """The comparison table (module docstring) for one simulated run.

    Parameters
    ----------
    paper
        Reference figures (:func:`bids_app.simulate.reference.load_reference`).
    group_dir
        The group level's output directory (``OUTPUT_DIR/group``).
    truth
        The simulated cohort's ``truth.json``.

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`.
    """
    group_dir = Path(group_dir)

    def read(name: str) -> pd.DataFrame:
        path = group_dir / GROUP_OUTPUTS[name]
        return pd.read_csv(path, sep="\t", na_values=["n/a"]) if path.is_file() \
            else pd.DataFrame()

    planted = truth_table(truth)
    rows: list[dict] = []
    rows += _table1(paper, read("demographics"))
    rows += _differences(paper, read("comparisons"), planted)
    rows += _table2(paper, read("gmtract"), planted)
    clinical = read("clinical")
    rows += _clinical(paper, clinical, planted)
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    return _judge(table[list(COLUMNS)])


def _judge(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    rec, paper = out["recovered_value"].astype(float), out["paper_value"].astype(float)
    signed = paper.notna() & (paper != 0)
    out["same_direction"] = np.where(signed & rec.notna(), np.sign(rec) == np.sign(paper),
                                     np.nan)
    has_ci = paper.notna() & out["ci_low"].notna()
    out["paper_in_ci"] = np.where(has_ci, (out["ci_low"] <= paper) & (paper <= out["ci_high"]),
                                  np.nan)
    has_sig = out["paper_significant"].notna() & out["recovered_p"].notna()
    out["significance_agrees"] = np.where(
        has_sig, (out["recovered_p"] < ALPHA) == out["paper_significant"].astype(bool), np.nan)
    checks = out[["same_direction", "paper_in_ci", "significance_agrees"]].astype(float)
    out["agrees"] = np.where(checks.notna().any(axis=1),
                             (checks.fillna(1.0) == 1.0).all(axis=1), np.nan)
    out["required"] = (out["power"].astype(float) >= MIN_POWER) & \
        (out["paper_significant"] == True)
    return out


def _table1(paper: dict, demo: pd.DataFrame) -> list[dict]:
    rows = []
    if demo.empty:
        return rows
    t1 = paper["table1"]

    def find(variable: str, level: str | None = None) -> pd.Series | None:
        hit = demo[(demo["variable"] == variable)
                   & ((demo["level"] == level) if level else demo["level"].isna())]
        return hit.iloc[0] if len(hit) else None

    def mean_row(label: str, variable: str, group: str, reported: dict) -> None:
        row = find(variable)
        suffix = "patient" if group == PATIENT_LABEL else "control"
        if row is None or pd.isna(row.get(f"mean_{suffix}")):
            return
        n, mean, sd = (float(row[f"{k}_{suffix}"]) for k in ("n", "mean", "sd"))
        half = stats.t.ppf(0.975, max(n - 1, 1)) * sd / np.sqrt(n)
        rows.append({"section": "table1", "figure": f"{label} ({group})", "hemisphere": "",
                     "measure": "mean", "paper_value": value(reported["mean"]),
                     "recovered_value": mean, "ci_low": mean - half, "ci_high": mean + half,
                     "note": f"paper SD {value(reported['sd'])}, recovered SD {sd:.2f}"})

    def share_row(label: str, variable: str, level: str, group: str, count: int,
                  n: int) -> None:
        row = find(variable, level)
        suffix = "patient" if group == PATIENT_LABEL else "control"
        if row is None or pd.isna(row.get(f"count_{suffix}")):
            return
        k, total = float(row[f"count_{suffix}"]), float(row[f"n_{suffix}"])
        low, high = _wilson(k, total)
        rows.append({"section": "table1", "figure": f"{label} ({group})", "hemisphere": "",
                     "measure": "percent", "paper_value": 100.0 * count / n,
                     "recovered_value": 100.0 * k / total, "ci_low": 100 * low,
                     "ci_high": 100 * high})

    pat, con = t1["patients"], t1["controls"]
    mean_row("age", "age", PATIENT_LABEL, pat["age_at_study"])
    mean_row("age", "age", CONTROL_LABEL, con["age_at_study"])
    share_row("male", "sex", "M", PATIENT_LABEL, pat["male"], pat["n"])
    share_row("male", "sex", "M", CONTROL_LABEL, con["male"], con["n"])
    share_row("spinal onset", "onset_site", "spinal", PATIENT_LABEL, pat["spinal_onset"],
              pat["n"])
    for paper_name, name in SCORES.items():
        if paper_name in pat:
            mean_row(name, name, PATIENT_LABEL, pat[paper_name])
    return rows


def _wilson(k: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return float("nan"), float("nan")
    p, z = k / n, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _differences(paper: dict, comp: pd.DataFrame, planted: pd.DataFrame) -> list[dict]:
    rows = []
    diffs = paper["group_differences"]
    wanted: list[tuple[str, str, str, list | None]] = []  # metric, atlas, region, figures
    for key, metric in METRICS.items():
        for tract, figures in diffs.get(key, {}).items():
            if tract in TRACTS:
                wanted.append((metric, "hcp842", TRACTS[tract].split("/")[1], figures))
    gm = diffs["gm_pct_tiv"]
    wanted.append(("gmv_pct_tiv", GM_ATLAS, "precentral", gm["precentral"]))
    wanted += [("gmv_pct_tiv", GM_ATLAS, region, None) for region in gm["not_different"]]
    for metric, atlas, region, figures in wanted:
        if figures is None:
            paper_value, paper_p, significant = 0.0, float("nan"), False
        else:
            paper_value = value(figures[0]) / value(figures[2]) - 1.0
            paper_p, significant = value(figures[4]), value(figures[4]) < ALPHA
        for hemi in HEMISPHERES:
            column = (f"gm_{region}_{hemi}" if metric == "gmv_pct_tiv"
                      else f"{region}_{hemi}_{metric}")
            pv, d, n1, n2 = _planted_difference(planted, column)
            row = {"section": "group_differences", "figure": f"{metric} {region}",
                   "hemisphere": hemi, "measure": "relative difference",
                   "paper_value": paper_value, "paper_p": paper_p,
                   "paper_significant": significant, "planted_value": pv,
                   "planted_effect": d, "power": power_difference(d, n1, n2)}
            row.update(_recovered_difference(comp, atlas, region, hemi, metric))
            rows.append(row)
    return rows


def _planted_difference(planted: pd.DataFrame, column: str) -> tuple[float, float, int, int]:
    if column not in planted.columns:
        return float("nan"), float("nan"), 0, 0
    p = planted.loc[planted["group"] == PATIENT_LABEL, column].dropna().to_numpy(float)
    c = planted.loc[planted["group"] == CONTROL_LABEL, column].dropna().to_numpy(float)
    if len(p) < 2 or len(c) < 2:
        return float("nan"), float("nan"), len(p), len(c)
    pooled = np.sqrt(((len(p) - 1) * p.var(ddof=1) + (len(c) - 1) * c.var(ddof=1))
                     / (len(p) + len(c) - 2))
    return float(p.mean() / c.mean() - 1.0), float((p.mean() - c.mean()) / pooled), \
        len(p), len(c)


def _recovered_difference(comp: pd.DataFrame, atlas: str, region: str, hemi: str,
                          metric: str) -> dict:
    if comp.empty:
        return {"note": "no comparisons table"}
    hit = comp[(comp["atlas"] == atlas) & (comp["region"] == region)
               & (comp["hemisphere"] == hemi) & (comp["metric"] == metric)]
    if "statistic" in hit and metric != "gmv_pct_tiv":
        hit = hit[hit["statistic"] == "wmean"]
    if hit.empty:
        return {"note": "not in the comparisons table"}
    r = hit.iloc[0]
    mp, mc = float(r["mean_patient"]), float(r["mean_control"])
    n1, n2 = float(r["n_patient"]), float(r["n_control"])
    se = np.sqrt(float(r["sd_patient"]) ** 2 / n1 + float(r["sd_control"]) ** 2 / n2)
    half = stats.t.ppf(0.975, max(n1 + n2 - 2, 1)) * se
    return {"recovered_value": mp / mc - 1.0, "ci_low": (mp - mc - half) / mc,
            "ci_high": (mp - mc + half) / mc, "recovered_p": float(r["p"]),
            "note": f"{r['test']} test"}


def _table2(paper: dict, gmtract: pd.DataFrame, planted: pd.DataFrame) -> list[dict]:
    rows = []
    for tract, regions in paper["table2"].items():
        tract_region = TRACTS[tract].split("/")[1]
        for region, figures in regions.items():
            r2, model_p, beta = (value(v) for v in figures[:3])
            paper_r = float(np.sign(beta) * np.sqrt(r2))
            for hemi in HEMISPHERES:
                a, b = f"gm_{region}_{hemi}", f"{tract_region}_{hemi}_fa"
                pr, n = float("nan"), 0
                if a in planted.columns and b in planted.columns:
                    data = planted[[a, b]].dropna()
                    n = len(data)
                    pr = float(stats.pearsonr(data[a], data[b]).statistic) if n > 2 else pr
                row = {"section": "table2", "figure": f"gm {region} ~ fa {tract_region}",
                       "hemisphere": hemi, "measure": "pearson r", "paper_value": paper_r,
                       "paper_p": model_p, "paper_significant": model_p < ALPHA,
                       "planted_value": pr, "planted_effect": pr,
                       "power": power_correlation(pr, n - 2)}
                row.update(_recovered_gmtract(gmtract, region, tract_region, hemi))
                rows.append(row)
    return rows


def _recovered_gmtract(gmtract: pd.DataFrame, region: str, tract: str, hemi: str) -> dict:
    if gmtract.empty:
        return {"note": "no GM-tract table"}
    hit = gmtract[(gmtract["subset"] == "all") & (gmtract["gm_atlas"] == GM_ATLAS)
                  & (gmtract["gm_region"] == region) & (gmtract["tract_atlas"] == "hcp842")
                  & (gmtract["tract_region"] == tract) & (gmtract["hemisphere"] == hemi)
                  & (gmtract["tract_metric"] == "fa")]
    if "tract_statistic" in hit:
        hit = hit[hit["tract_statistic"] == "wmean"]
    if hit.empty:
        return {"note": "not in the GM-tract table"}
    r = hit.iloc[0]
    low, high = fisher_ci(float(r["pearson_r"]), int(r["n"]))
    return {"recovered_value": float(r["pearson_r"]), "ci_low": low, "ci_high": high,
            "recovered_p": float(r["pearson_p"])}


def _clinical(paper: dict, clinical: pd.DataFrame, planted: pd.DataFrame) -> list[dict]:
    """GM-clinical and Table 3 rows (patients; score ~ metric + age + sex + duration)."""
    rows = []
    n_p = int(paper["study"]["n_patients"])
    df_paper = n_p - 2 - N_CLINICAL_COVARIATES
    figures: list[tuple[str, str, str, str, str, float, float, bool]] = []
    for paper_score, regions in paper.get("gm_clinical", {}).items():
        score = SCORES.get(paper_score, paper_score)
        if isinstance(regions, dict):
            for region, (_, p) in regions.items():
                figures.append(("gm_clinical", score, GM_ATLAS, region, "gmv_pct_tiv",
                                partial_r(t_from_p(value(p), df_paper), df_paper), value(p),
                                True))
        else:  # "no significant association": every region, expected null
            for region in paper["table2"]["corticospinal"]:
                figures.append(("gm_clinical", score, GM_ATLAS, region, "gmv_pct_tiv",
                                float("nan"), float("nan"), False))
    for paper_score, tracts in paper.get("table3", {}).items():
        if paper_score not in SCORES:
            continue
        for tract, metrics in tracts.items():
            for metric, (_, t, p) in metrics.items():
                figures.append(("table3", SCORES[paper_score], "hcp842",
                                TRACTS[tract].split("/")[1], metric,
                                partial_r(value(t), df_paper), value(p), value(p) < ALPHA))
    for section, score, atlas, region, metric, paper_value, paper_p, significant in figures:
        for hemi in HEMISPHERES:
            column = (f"gm_{region}_{hemi}" if metric == "gmv_pct_tiv"
                      else f"{region}_{hemi}_{metric}")
            pr, df = _planted_partial(planted, score, column)
            row = {"section": section, "figure": f"{score} ~ {metric} {region}",
                   "hemisphere": hemi, "measure": "partial r", "paper_value": paper_value,
                   "paper_p": paper_p, "paper_significant": significant,
                   "planted_value": pr, "planted_effect": pr,
                   "power": power_correlation(pr, df)}
            row.update(_recovered_clinical(clinical, score, atlas, region, hemi, metric))
            rows.append(row)
    return rows


def _recovered_clinical(clinical: pd.DataFrame, score: str, atlas: str, region: str,
                        hemi: str, metric: str) -> dict:
    if clinical.empty:
        return {"note": "no clinical table"}
    hit = clinical[(clinical["score"] == score) & (clinical["atlas"] == atlas)
                   & (clinical["region"] == region) & (clinical["hemisphere"] == hemi)
                   & (clinical["metric"] == metric)]
    if metric != "gmv_pct_tiv":
        hit = hit[hit["statistic"] == "wmean"]
    if hit.empty or pd.isna(hit.iloc[0].get("t", np.nan)):
        return {"note": "not in the clinical table (or too few patients for the model)"}
    r = hit.iloc[0]
    n_cov = len(str(r["covariates"]).split(",")) if pd.notna(r["covariates"]) else 0
    df = int(r["n"]) - 2 - n_cov
    pr = partial_r(float(r["t"]), df)
    low, high = fisher_ci(pr, int(r["n"]) - n_cov)
    return {"recovered_value": pr, "ci_low": low, "ci_high": high,
            "recovered_p": float(r["p"]), "note": f"covariates {r['covariates']}"}


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Agreement rate overall and per section; the required rows and whether all agree."""
    judged = table[table["agrees"].notna()]
    required = table[table["required"] == True]

    def rate(t: pd.DataFrame) -> float:
        return round(float(t["agrees"].astype(float).mean()), 3) if len(t) else float("nan")

    return {"n_compared": len(judged), "agreement_rate": rate(judged),
            "by_section": {s: rate(t) for s, t in judged.groupby("section")},
            "n_required": len(required),
            "required_agree": int(required["agrees"].astype(float).sum()),
            "passed": bool(len(required)) and bool((required["agrees"] == True).all())}


SIDECAR = {
    "section": "table1 | group_differences | table2 | gm_clinical | table3 (the paper's)",
    "figure": "The paper's figure (metric/region or score ~ metric region)",
    "hemisphere": "L or R (the paper reports one value per tract/region)",
    "measure": "relative difference (patients/controls - 1), pearson r, partial r "
               "(t / sqrt(t^2 + df), score ~ metric + age + sex + duration in patients), "
               "mean or percent (Table 1)",
    "paper_value": "The paper's figure on the measure's scale (GM-clinical: sign assumed "
                   "positive; null findings: 0 or n/a)",
    "paper_p": "The paper's p (printed '<0.001' read as 0.001)",
    "paper_significant": "The paper found p < 0.05",
    "planted_value": "The measure on the simulator's per-participant truth (statsmodels/scipy)",
    "planted_effect": "Cohen d (differences) or r (associations) of the planted truth",
    "power": "Power to detect the planted effect at this sample size (alpha 0.05, two-sided)",
    "recovered_value": "The measure from alsmri's group-level tables",
    "ci_low": "95% CI of the recovered value (lower)",
    "ci_high": "95% CI of the recovered value (upper)",
    "recovered_p": "alsmri's p for the figure",
    "same_direction": "Recovered value has the paper's sign",
    "paper_in_ci": "The paper's value lies in the recovered 95% CI",
    "significance_agrees": "Recovered p < 0.05 exactly when the paper's was",
    "agrees": "All applicable checks hold",
    "required": f"Paper significant and power >= {MIN_POWER}: must agree",
    "note": "Test used, covariates, or why a value is missing",
}


def write_comparison(table: pd.DataFrame, path: Path, *, meta: dict | None = None) -> Path:
    """Write the comparison table as TSV with its JSON sidecar (+ ``meta``)."""
    return write_table(table, path, {**SIDECAR, **(meta or {})})
