"""Column descriptions for the JSON sidecars of the group-level TSV files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bids_app.bids.outputs import ANAT_STATS, DWI_MODELS, DWI_STATS, GROUP_OUTPUTS

#: Every group output name (:data:`~bids_app.bids.outputs.GROUP_OUTPUTS`).
OUTPUTS: Mapping[str, str] = GROUP_OUTPUTS

#: Units of the imaging metrics (statistic-independent); diffusion ones as the maps declare.
METRIC_UNITS = {**{param: spec.units for maps in DWI_MODELS.values()
                   for param, spec in maps.items() if spec.level is not None},
                "gmv": "mm^3", "gmv_pct_tiv": "percent", "tiv": "mm^3"}
METRIC_NAMES = {**{param: spec.description[:1].lower() + spec.description[1:]
                   for maps in DWI_MODELS.values() for param, spec in maps.items()
                   if spec.level is not None},
                "fa": "fractional anisotropy", "md": "mean diffusivity",
                "ad": "axial diffusivity", "rd": "radial diffusivity",
                "gmv": "gray-matter volume", "gmv_pct_tiv": "gray-matter volume (% of TIV)"}
STATISTIC_NAMES = {"wmean": "tract-probability-weighted mean", "mean": "mean within mask",
                   "sum": "sum over the region", "ratio": "ratio"}

_KEYS = {
    "atlas": "Atlas of the region (hcp842, jhu, aal, ...)",
    "region": "Canonical region name",
    "hemisphere": "L, R or bilateral",
    "metric": "Imaging metric (" + ", ".join(METRIC_UNITS) + ")",
    "statistic": "Statistic of the participant metrics table used (wmean, mean, sum, ratio)",
    "family": "Multiple-comparison family: q values are Benjamini-Hochberg within it",
    "reason": "Why statistics are missing (too few observations, constant values ...); "
              "empty when the row is complete",
    "significant": "q < fdr_alpha of the analysis spec",
}
_FIT = {
    "n": "Complete observations in the model",
    "covariates": "Design columns besides the intercept and predictor (dummy-coded "
                  "categorical levels as column=level); constant columns dropped",
    "pearson_r": "Pearson correlation (scipy.stats.pearsonr)",
    "pearson_p": "Two-sided p of pearson_r",
    "spearman_rho": "Spearman rank correlation (scipy.stats.spearmanr)",
    "spearman_p": "Two-sided p of spearman_rho",
    "beta": "OLS coefficient of the predictor, adjusted for covariates (statsmodels OLS)",
    "se": "Standard error of beta",
    "t": "t statistic of beta",
    "p": "Two-sided p of beta",
    "ci_low": "Lower bound of the 95% confidence interval of beta",
    "ci_high": "Upper bound of the 95% confidence interval of beta",
    "std_beta": "Standardised beta: beta * SD(predictor) / SD(outcome) in the model sample",
    "r2": "Model R^2",
    "adj_r2": "Model adjusted R^2",
    "q": "Benjamini-Hochberg FDR q of p within family",
    "pearson_q": "Benjamini-Hochberg FDR q of pearson_p within family",
}

COMPARISONS = {
    **{k: _KEYS[k] for k in ("atlas", "region", "hemisphere", "metric", "statistic", "family")},
    "n_patient": "Patients with a value", "n_control": "Controls with a value",
    "mean_patient": "Mean in patients", "sd_patient": "Standard deviation in patients",
    "mean_control": "Mean in controls", "sd_control": "Standard deviation in controls",
    "shapiro_p_patient": "Shapiro-Wilk p in patients",
    "shapiro_p_control": "Shapiro-Wilk p in controls",
    "levene_p": "Levene (mean-centred) p for equal variances; only when both groups are normal",
    "test": "student (normal, equal variances), welch (normal, unequal) or mann-whitney",
    "test_statistic": "t (patients minus controls) or Mann-Whitney U of the patients",
    "df": "Degrees of freedom of the t-test",
    "p": "Two-sided p of the test",
    "q": "Benjamini-Hochberg q of p within family",
    "effect_size_type": "hedges_g (t-tests) or rank_biserial (Mann-Whitney)",
    "effect_size": "Hedges g (bias-corrected, patients minus controls) or rank-biserial "
                   "correlation 2U/(n1 n2) - 1 (positive: patients higher)",
    "effect_ci_low": "Lower 95% CI of the effect size (Hedges g: normal approximation; "
                     "rank-biserial: Fisher z with SE sqrt((n1+n2+1)/(3 n1 n2)))",
    "effect_ci_high": "Upper 95% CI of the effect size",
    "adj_n": "Observations in the covariate-adjusted model",
    "adj_covariates": "Covariates of the adjusted model",
    "adj_beta": "OLS patient-minus-control difference adjusted for covariates",
    "adj_se": "Standard error of adj_beta", "adj_t": "t of adj_beta",
    "adj_p": "Two-sided p of adj_beta",
    "adj_ci_low": "Lower 95% CI of adj_beta", "adj_ci_high": "Upper 95% CI of adj_beta",
    "adj_r2": "R^2 of the adjusted model", "adj_adj_r2": "Adjusted R^2 of the adjusted model",
    "adj_q": "Benjamini-Hochberg q of adj_p within family",
    "adj_df_resid": "Residual degrees of freedom of the adjusted model",
    "significant": "q < fdr_alpha", "reason": _KEYS["reason"],
}

CLINICAL = {
    "score": "Clinical score (canonical column name; outcome of the model)",
    **{k: _KEYS[k] for k in ("atlas", "region", "hemisphere", "metric", "statistic")},
    "family": "score:metric; q values are Benjamini-Hochberg within it",
    **_FIT, "significant": _KEYS["significant"], "reason": _KEYS["reason"],
}

GMTRACT = {
    "subset": "Participants analysed: all, patient or control",
    "gm_atlas": "Atlas of the gray-matter region", "gm_region": "Gray-matter region (outcome)",
    "hemisphere": "Hemisphere of both regions", "gm_metric": "Gray-matter metric",
    "gm_statistic": "Statistic of the gray-matter metric",
    "tract_atlas": "Atlas of the tract", "tract_region": "Tract (predictor)",
    "tract_metric": "Tract metric", "tract_statistic": "Statistic of the tract metric",
    "family": "subset:gm_metric~tract_metric",
    **_FIT, "significant": _KEYS["significant"], "reason": _KEYS["reason"],
}

INTERHEMISPHERIC = {
    "subset": GMTRACT["subset"],
    **{k: _KEYS[k] for k in ("atlas", "region", "metric", "statistic")},
    "family": "subset:metric",
    "n": "Participants with both hemispheres",
    "mean_left": "Mean of the left value", "mean_right": "Mean of the right value",
    "ai_mean": "Mean asymmetry index 100 (L - R) / ((L + R) / 2), percent",
    "ai_sd": "SD of the asymmetry index", "ai_median": "Median of the asymmetry index",
    "r": "Pearson correlation between left and right", "p": "Two-sided p of r",
    "paired_t": "Paired t (left minus right, scipy.stats.ttest_rel)",
    "paired_df": "Degrees of freedom of paired_t", "paired_p": "Two-sided p of paired_t",
    "q": "Benjamini-Hochberg q of p within family",
    "paired_q": "Benjamini-Hochberg q of paired_p within family",
    "significant": "paired_q < fdr_alpha", "reason": _KEYS["reason"],
}

INCLUSION = {
    "participant_id": "Participant label (sub-<label>)",
    "session_id": "Session label (ses-<label>) or n/a",
    "has_dwi": f"A {DWI_STATS.glob()} was found",
    "has_anat": f"A {ANAT_STATS.glob()} was found",
    "n_missing_features": "Imaging features absent from this participant's tables although "
                          "other participants' tables of the same kind have them (table cut "
                          "short or header-only; those features are n/a)",
    "missing_features": "The absent features (;-separated), empty when complete",
    "has_phenotype": "Listed in participants.tsv or a phenotype/*.tsv",
    "group_label": "patient, control or n/a (from the group column and the spec's labels)",
    "in_cross_sectional": "Row used by the cross-sectional analyses (one session per "
                          "participant, spec key 'session')",
    "in_comparisons": "Entered the patient-control comparisons",
    "in_clinical": "Entered the clinical associations (patients)",
    "in_zscores": "Has z-scores against the controls (group_desc-zscores_participants.tsv)",
    "n_unreadable_phenotype": "Phenotype values (participants.tsv, sessions.tsv, "
                              "phenotype/*.tsv) that could not be read and are missing for "
                              "this participant only",
    "unreadable_phenotype": "Those values as column='value' (;-separated), empty when none",
    "converted_phenotype": "Decimal commas read as decimal points, as column='12,5'->12.5 "
                           "(;-separated), empty when none",
}

_T1_GROUP = {
    "n": "Participants of the group with a value (row n: participants of the group)",
    "missing": "Participants of the group without a value",
    "mean": "Mean", "sd": "Standard deviation", "median": "Median",
    "q1": "First quartile", "q3": "Third quartile",
    "count": "Participants of the group at this level",
    "percent": "count as percent of the participants of the group with a value",
    "shapiro_p": "Shapiro-Wilk p (decides mean (SD) + Welch vs median [IQR] + Mann-Whitney)",
}
DEMOGRAPHICS = {
    "variable": "Phenotype column (canonical name), or n",
    "level": "Level of a categorical variable; n/a for continuous ones",
    "kind": "count, continuous or categorical (data dictionary Levels or text values)",
    "summary_type": "mean_sd, median_iqr or count_percent (rule: bids_app.group.table1)",
    "patient": "Summary in patients as printed in Table 1: mean (SD), median [Q1, Q3] or "
               "count (%)",
    "control": "Summary in controls, as for patient",
    **{f"{key}_{g}": f"{text} ({'patients' if g == 'patient' else 'controls'})"
       for g in ("patient", "control") for key, text in _T1_GROUP.items()},
    "min_expected": "Smallest expected count of the group x level table",
    "test": "welch (Welch t), mann-whitney (U), chi-square (Pearson, no continuity correction)"
            " or fisher (exact; Monte Carlo p for tables larger than 2 x 2)",
    "test_statistic": "t (patients minus controls), U of the patients, chi-square, or the "
                      "Fisher statistic (2 x 2: odds ratio; larger: probability of the table)",
    "df": "Degrees of freedom (Welch t, chi-square)",
    "p": "Two-sided p of the test (the same on every level row of a variable)",
    "reason": "Why there is no test (n < min_n in a group, a single level, constant values)",
}

#: Columns added to every table with a primary (hypothesis) family
#: (:func:`bids_app.group.primary.mark_primary`).
PRIMARY = {
    "primary": "Row of the primary family (the seeds' hypotheses, spec section 'primary'); "
               "false: exploratory",
    "primary_family": "Primary family of the row (primary[:outcome]); n/a when exploratory",
    "primary_q": "Benjamini-Hochberg q of p within primary_family (the primary rows only)",
    "primary_significant": "primary_q < fdr_alpha",
}
for _table in (COMPARISONS, CLINICAL, GMTRACT):
    _table.update(PRIMARY)

SIDESCORES = {
    "score": "Clinical score recorded per body side (canonical name; outcome)",
    "side": "Body side of the score column (L or R)",
    "score_column": "Phenotype column of that side",
    "relation": "contralateral (tract hemisphere opposite to the body side) or ipsilateral",
    **{k: _KEYS[k] for k in ("atlas", "region", "hemisphere", "metric", "statistic")},
    "family": "score:relation:metric; q values are Benjamini-Hochberg within it",
    **_FIT, "significant": _KEYS["significant"], **PRIMARY, "reason": _KEYS["reason"],
}

ONSET = {
    "subgroup": "Onset-site subgroup of the patients compared with all controls (the "
                "*_patient columns describe the subgroup)",
    **COMPARISONS,
    "family": "subgroup:metric; q values are Benjamini-Hochberg within it",
}

TRACTCORR = {
    "subset": GMTRACT["subset"],
    "metric": _KEYS["metric"], "statistic": _KEYS["statistic"],
    **{f"{k}_{s}": f"{_KEYS[k]} of the {'first' if s == 'a' else 'second'} tract"
       for s in ("a", "b") for k in ("atlas", "region", "hemisphere")},
    "family": "subset:statistic; q values are Benjamini-Hochberg within it",
    "n": "Participants with both values",
    "r": "Pearson correlation (scipy.stats.pearsonr)", "p": "Two-sided p of r",
    "q": "Benjamini-Hochberg q of p within family",
    "significant": _KEYS["significant"], "reason": _KEYS["reason"],
}

HARMONISATION = {
    "feature": "Imaging feature (column of the joined table)",
    **{k: _KEYS[k] for k in ("atlas", "region", "hemisphere", "metric", "statistic")},
    "n_sites": "Sites (values of the spec's harmonize.column)",
    "n_controls": "Controls (cross-sectional session) with a value, a site and complete "
                  "harmonize.covariates: the rows of the site F-tests and of the ComBat fit",
    "controls_per_site": "Controls per site entering the fit",
    "f_before": "F statistic of site in the controls, OLS feature ~ covariates + site vs "
                "feature ~ covariates, values as measured",
    "p_before": "p of f_before",
    "harmonised": "Whether the feature was harmonised (ComBat, neuroHarmonize)",
    "f_after": "F statistic of site in the controls after harmonisation",
    "p_after": "p of f_after",
}

_TIME = "years since the participant's first session (sessions.tsv acq_time or age)"
CHANGE = {
    "participant_id": "Participant", "group_label": "patient, control or n/a",
    "n_sessions": "Sessions with a time",
    "time_source": "sessions.tsv column giving the session times (acq_time or age)",
    "span_years": f"Last session time, {_TIME}",
}
CHANGE_SUFFIX = ("Annualised change (OLS slope on time; two sessions: difference over the "
                 "interval), per year, in the analysis unit of the metric")
LONGITUDINAL = {
    "feature": "Imaging feature",
    **{k: _KEYS[k] for k in ("atlas", "region", "hemisphere", "metric", "statistic")},
    "n_participants": "Participants with >= 2 sessions with a value and complete covariates",
    "n_observations": "Participant/session rows in the model",
    "term": "time: change per year in controls; group: patient - control difference at "
            "time 0; time_x_group: patient - control difference of the change per year; "
            "patient_time: change per year in patients (time + time_x_group)",
    "estimate": "Fixed effect of the linear mixed model feature ~ time * group + covariates "
                "(REML; random intercept per participant, and random slope on time when "
                "random_slope)",
    "se": "Standard error of estimate", "z": "estimate / se",
    "p": "Two-sided normal p of z",
    "ci_low": "Lower bound of the 95% (normal) confidence interval",
    "ci_high": "Upper bound of the 95% (normal) confidence interval",
    "random_slope": "Whether the model has a random slope on time",
    "converged": "Whether the REML optimisation converged",
    "residual_sd": "Residual (within-participant) standard deviation",
    "participant_sd": "Standard deviation of the random intercept",
    "family": "term:metric; q values are Benjamini-Hochberg within it",
    "q": "Benjamini-Hochberg FDR q of p within family",
    "significant": _KEYS["significant"],
    "reason": _KEYS["reason"],
}
PROGRESSION = {
    "score": "Annualised change of the progression score (points per year; the "
             "progression rate), outcome of the model",
    **{k: _KEYS[k] for k in ("atlas", "region", "hemisphere", "metric", "statistic")},
    "family": "score:metric; q values are Benjamini-Hochberg within it",
    **_FIT, "significant": _KEYS["significant"], "reason": _KEYS["reason"],
}
HARMONISED_HEAD = {
    "participant_id": "Participant", "session_id": "Session (n/a when none)",
}
for _table in (LONGITUDINAL, PROGRESSION):
    _table.update(PRIMARY)

ZSCORE_HEAD = {
    "participant_id": INCLUSION["participant_id"],
    "session_id": INCLUSION["session_id"],
    "group_label": "patient or control (controls: leave-one-out z-scores)",
    "n_zscores": "Features with a z-score",
    "n_abs_z_ge_2": "Features with |z| >= 2",
    "max_abs_z": "Largest |z| over the features",
    "max_abs_z_feature": "Feature with the largest |z|",
}


def zscore_description(feature: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """Sidecar entry of one z-score column: what, against which model, how many controls."""
    desc = feature_description(feature["atlas"], feature["region"], feature["hemisphere"],
                               feature["metric"], feature["statistic"])["Description"]
    entry: dict[str, Any] = {
        "Description": f"z-score of the {desc} against the controls, adjusted for "
                       f"{model.get('covariates') or 'nothing'}",
        "Units": "standard deviations of the control residuals",
        "NumberOfControls": int(model["n_controls"])}
    if isinstance(model.get("residual_sd"), float) and model["residual_sd"] == \
            model["residual_sd"]:
        entry["ResidualSD"] = model["residual_sd"]
        entry["ResidualDegreesOfFreedom"] = int(model["df_resid"])
    if isinstance(model.get("reason"), str):
        entry["Reason"] = model["reason"]
    return entry


def feature_description(atlas: str, region: str, hemisphere: str, metric: str,
                        statistic: str) -> dict[str, str]:
    """Sidecar entry of one imaging feature column of the joined table."""
    text = (f"{STATISTIC_NAMES.get(statistic, statistic)} of "
            f"{METRIC_NAMES.get(metric, metric)} in {atlas} {region} ({hemisphere})")
    return {"Description": text, "Units": METRIC_UNITS.get(metric, "n/a")}


def sidecar(columns: Iterable[str], described: Mapping[str, Any]) -> dict[str, Any]:
    """``{column: {"Description": ...}}`` for every column (unknown ones say so)."""
    out: dict[str, Any] = {}
    for col in columns:
        value = described.get(col, "No description")
        out[col] = value if isinstance(value, dict) else {"Description": value}
    return out
