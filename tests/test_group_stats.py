"""Group statistics against scipy / statsmodels / pingouin called directly (rel. tol 1e-8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bids_app.group.design import covariate_frame, group_labels
from bids_app.group.notes import Notes
from bids_app.group.relations import interhemispheric
from bids_app.group.stats import associations, compare_groups, fdr

REL = 1e-8
#: Thresholds of the analyses under test (the spec's keys; stated here, no hidden defaults).
FIT = {"fdr_alpha": 0.05, "min_n": 3}
TESTS = {**FIT, "normality_alpha": 0.05, "equal_variance_alpha": 0.05}


def close(a, b):
    return a == pytest.approx(b, rel=REL, abs=1e-12)


@pytest.fixture
def table():
    """Fixed table: 3 features with normal/equal, normal/unequal and skewed distributions."""
    rng = np.random.default_rng(42)
    n_p, n_c = 30, 25
    patient = np.r_[np.ones(n_p, bool), np.zeros(n_c, bool)]
    t = pd.DataFrame({
        "age": rng.normal(60, 10, n_p + n_c).round(1),
        "sex": rng.choice(["M", "F"], n_p + n_c),
        "equal": np.r_[rng.normal(0.50, 0.03, n_p), rng.normal(0.53, 0.03, n_c)],
        "unequal": np.r_[rng.normal(10.0, 4.0, n_p), rng.normal(12.0, 0.5, n_c)],
        "skewed": np.r_[rng.exponential(2.0, n_p), rng.exponential(1.0, n_c)],
    })
    t["score"] = 40 + 80 * (t["equal"] - 0.5) - 0.1 * (t["age"] - 60) + rng.normal(0, 3, len(t))
    t["patient"] = patient
    cat = pd.DataFrame({"feature": ["equal", "unequal", "skewed"], "atlas": "hcp842",
                        "region": ["cst", "corticostriatal", "corticothalamic"],
                        "hemisphere": "L", "metric": ["fa", "fa", "md"], "statistic": "wmean"})
    return t, cat


def _compare(t, cat):
    cov = covariate_frame(t, ["age", "sex"], dictionary={}, notes=Notes())
    return compare_groups(t[cat["feature"]], cat, t["patient"].to_numpy(), cov,
                          **TESTS).set_index("region")


def test_comparisons_match_scipy_statsmodels_pingouin(table):
    t, cat = table
    res = _compare(t, cat)
    xp = {f: t.loc[t.patient, f].to_numpy() for f in cat.feature}
    xc = {f: t.loc[~t.patient, f].to_numpy() for f in cat.feature}
    expected_test = {}
    for feat, region in zip(cat.feature, cat.region):
        row = res.loc[region]
        sh_p, sh_c = stats.shapiro(xp[feat]).pvalue, stats.shapiro(xc[feat]).pvalue
        assert close(row.shapiro_p_patient, sh_p) and close(row.shapiro_p_control, sh_c)
        assert close(row.mean_patient, xp[feat].mean())
        assert close(row.sd_control, np.std(xc[feat], ddof=1))
        if sh_p > 0.05 and sh_c > 0.05:
            lev = stats.levene(xp[feat], xc[feat], center="mean").pvalue
            ref = stats.ttest_ind(xp[feat], xc[feat], equal_var=lev > 0.05)
            expected_test[feat] = "student" if lev > 0.05 else "welch"
            assert close(row.levene_p, lev)
            assert close(row.test_statistic, ref.statistic) and close(row.p, ref.pvalue)
            assert close(row.df, ref.df)
            g = pg.compute_effsize(xp[feat], xc[feat], eftype="hedges")
            assert row.effect_size_type == "hedges_g" and close(row.effect_size, g)
            assert row.effect_ci_low < g < row.effect_ci_high
        else:
            expected_test[feat] = "mann-whitney"
            ref = stats.mannwhitneyu(xp[feat], xc[feat], alternative="two-sided")
            assert close(row.test_statistic, ref.statistic) and close(row.p, ref.pvalue)
            rbc = pg.mwu(xp[feat], xc[feat], alternative="two-sided")["RBC"].iloc[0]
            assert row.effect_size_type == "rank_biserial" and close(row.effect_size, rbc)
        assert row.test == expected_test[feat]
        # covariate-adjusted difference: an independent formula fit in the test
        df = t.assign(y=t[feat], grp=t.patient.astype(int))
        fit = smf.ols("y ~ grp + age + C(sex)", data=df).fit()
        assert close(row.adj_beta, fit.params["grp"]) and close(row.adj_se, fit.bse["grp"])
        assert close(row.adj_t, fit.tvalues["grp"]) and close(row.adj_p, fit.pvalues["grp"])
        ci = fit.conf_int().loc["grp"]
        assert close(row.adj_ci_low, ci[0]) and close(row.adj_ci_high, ci[1])
        assert close(row.adj_r2, fit.rsquared)
    # the fixture was built to exercise all three branches
    assert set(expected_test.values()) == {"student", "welch", "mann-whitney"}
    # BH within metric family: fa holds two features, md one
    fa = res[res.metric == "fa"]
    assert np.allclose(fa.q, multipletests(fa.p, method="fdr_bh")[1], rtol=REL)
    assert close(res.loc["corticothalamic", "q"], res.loc["corticothalamic", "p"])


def test_associations_match_scipy_statsmodels(table):
    t, _ = table
    pt = t[t.patient].reset_index(drop=True)
    pt.loc[[0, 5], "unequal"] = np.nan    # a second sample: correlations computed per block
    feats = ("equal", "unequal", "skewed")
    pairs = pd.DataFrame([{"score": "score", "y": "score", "x": f, "family": "score:fa"}
                          for f in feats])
    cov = covariate_frame(pt, ["age", "sex"], dictionary={}, notes=Notes())
    res = associations(pt, pt, pairs, {"score": cov}, **FIT).set_index("x")
    ps = []
    full = pt
    for feat in feats:
        row = res.loc[feat]
        pt = full.dropna(subset=[feat])
        pr, sr = stats.pearsonr(pt[feat], pt.score), stats.spearmanr(pt[feat], pt.score)
        assert close(row.pearson_r, pr.statistic) and close(row.pearson_p, pr.pvalue)
        assert close(row.spearman_rho, sr.statistic) and close(row.spearman_p, sr.pvalue)
        fit = smf.ols(f"score ~ {feat} + age + C(sex)", data=pt).fit()
        for ours, ref in (("beta", fit.params[feat]), ("se", fit.bse[feat]),
                          ("t", fit.tvalues[feat]), ("p", fit.pvalues[feat]),
                          ("ci_low", fit.conf_int().loc[feat, 0]),
                          ("ci_high", fit.conf_int().loc[feat, 1]),
                          ("r2", fit.rsquared), ("adj_r2", fit.rsquared_adj)):
            assert close(row[ours], ref), ours
        z = pt[["score", feat, "age"]].apply(lambda c: (c - c.mean()) / c.std(ddof=1))
        zfit = smf.ols(f"score ~ {feat} + age + C(sex)", data=z.assign(sex=pt.sex)).fit()
        assert close(row.std_beta, zfit.params[feat])
        assert row.n == len(pt) == (28 if feat == "unequal" else 30)
        ps.append(fit.pvalues[feat])
    assert np.allclose(res.q.to_numpy(), multipletests(ps, method="fdr_bh")[1], rtol=REL)


def test_small_and_constant_cells_get_reasons(table):
    t, cat = table
    t = t.copy()
    t.loc[t.patient, "equal"] = np.nan
    t.loc[t.index[t.patient][:2], "equal"] = [0.5, 0.6]   # only 2 patients left
    t["unequal"] = 1.0                                     # constant feature
    res = _compare(t, cat)
    assert res.loc["cst", "n_patient"] == 2 and "n < 3" in res.loc["cst", "reason"]
    assert np.isnan(res.loc["cst", "p"])
    assert res.loc["corticostriatal", "reason"] == "constant values"
    pairs = pd.DataFrame([{"y": "score", "x": "unequal", "family": "f"},
                          {"y": "score", "x": "equal", "family": "f"}])
    pt = t[t.patient].reset_index(drop=True)
    out = associations(pt, pt, pairs, {}, **FIT)
    assert out.loc[0, "reason"] == "constant predictor"
    assert out.loc[1, "n"] == 2 and out.loc[1, "reason"] == "n < 3"


def test_fdr_ignores_missing_and_groups_families():
    p = pd.Series([0.01, np.nan, 0.04, 0.03, 0.5])
    fam = pd.Series(["a", "a", "a", "b", "b"])
    q = fdr(p, fam)
    assert np.isnan(q[1])
    assert np.allclose(q[[0, 2]], multipletests([0.01, 0.04], method="fdr_bh")[1])
    assert np.allclose(q[[3, 4]], multipletests([0.03, 0.5], method="fdr_bh")[1])


def test_interhemispheric_matches_scipy():
    rng = np.random.default_rng(1)
    left = rng.normal(0.5, 0.03, 40)
    values = pd.DataFrame({"l": left, "r": left * 0.98 + rng.normal(0, 0.01, 40)})
    cat = pd.DataFrame({"feature": ["l", "r"], "atlas": "hcp842", "region": "cst",
                        "hemisphere": ["L", "R"], "metric": "fa", "statistic": "wmean"})
    res = interhemispheric(values, cat, ["fa"], {"all": np.ones(40, bool)}, **FIT).iloc[0]
    pr, tt = stats.pearsonr(values.l, values.r), stats.ttest_rel(values.l, values.r)
    assert close(res.r, pr.statistic) and close(res.p, pr.pvalue)
    assert close(res.paired_t, tt.statistic) and close(res.paired_p, tt.pvalue)
    ai = 100 * (values.l - values.r) / ((values.l + values.r) / 2)
    assert close(res.ai_mean, ai.mean()) and close(res.ai_sd, ai.std(ddof=1))


def test_group_labels_and_dummies():
    t = pd.DataFrame({"group": ["ALS", "als ", "Control", "other", None],
                      "sex": ["M", "F", None, "F", "M"]})
    labels = group_labels(t.group, patient=["ALS"], control=["control"])
    assert labels.tolist()[:3] == ["patient", "patient", "control"]
    assert pd.isna(labels[3]) and pd.isna(labels[4])
    cov = covariate_frame(t, ["sex"], dictionary={}, notes=Notes())
    assert list(cov.columns) == ["sex=M"] and np.isnan(cov.iloc[2, 0])
