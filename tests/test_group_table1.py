"""Table 1 against scipy run directly on the raw phenotype files, and the test-choice rule."""

from __future__ import annotations

import json
from itertools import product
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_group import simulate_table, write_cohort

from bids_app.bids.outputs import GROUP_DIR
from bids_app.group.columns import DEMOGRAPHICS, OUTPUTS
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.run import run_group
from bids_app.group.table1 import choose_test, demographics
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

FAST = "metrics: [fa]\nscores: [alsfrs_r, fvc]\ninterhemispheric_metrics: [fa]\n"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("t1")
    table = simulate_table(30, 24, seed=8)
    table["onset_site"] = np.where(table["group"] == "ALS",
                                   np.resize(["spinal", "bulbar", "spinal"], len(table)), None)
    table.loc[2, "alsfrs_r"] = np.nan
    write_cohort(table, root / "bids", root / "out")
    clin = pd.read_csv(root / "bids" / "phenotype" / "clinical.tsv", sep="\t")
    clin["onset_site"] = table["onset_site"].to_numpy()
    clin.to_csv(root / "bids" / "phenotype" / "clinical.tsv", sep="\t", index=False,
                na_rep="n/a")
    spec = root / "spec.yaml"
    spec.write_text(FAST)
    settings = Settings(execution=ExecutionSettings(
        bids_dir=root / "bids", output_dir=root / "out", analysis_level="group",
        work_dir=root / "w"), group=GroupSettings(analysis_spec=spec))
    results = run_group(settings)
    write_outputs(results, root / "out")
    return results, root / "bids", root / "out" / GROUP_DIR


def raw(bids: Path) -> pd.DataFrame:
    """participants.tsv + phenotype/clinical.tsv read with pandas only."""
    parts = pd.read_csv(bids / "participants.tsv", sep="\t", na_values=["n/a"])
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t", na_values=["n/a"])
    return parts.merge(clin.rename(columns={"ALSFRS-R": "alsfrs_r"}), on="participant_id")


def test_table1_matches_scipy_on_raw_files(cohort):
    _, bids, group_dir = cohort
    t1 = pd.read_csv(group_dir / OUTPUTS["demographics"], sep="\t", na_values=["n/a"],
                     keep_default_na=False)
    data = raw(bids)
    pat, con = data[data.group == "ALS"], data[data.group == "control"]
    n = t1[t1.variable == "n"].iloc[0]
    assert (n.n_patient, n.n_control) == (30, 24)
    age = t1[t1.variable == "age"].iloc[0]
    normal = min(stats.shapiro(pat.age).pvalue, stats.shapiro(con.age).pvalue) > 0.05
    ref = (stats.ttest_ind(pat.age, con.age, equal_var=False) if normal else
           stats.mannwhitneyu(pat.age, con.age, alternative="two-sided"))
    assert age.test == ("welch" if normal else "mann-whitney")
    np.testing.assert_allclose([age.test_statistic, age.p], [ref.statistic, ref.pvalue],
                               rtol=1e-10)
    np.testing.assert_allclose([age.mean_patient, age.sd_patient, age.median_control],
                               [pat.age.mean(), pat.age.std(), con.age.median()], rtol=1e-12)
    sex = t1[t1.variable == "sex"].set_index("level")
    counts = pd.crosstab(data.sex, data.group).loc[["M", "F"], ["ALS", "control"]].to_numpy()
    chi = stats.chi2_contingency(counts, correction=False)
    expected_test = "fisher" if chi.expected_freq.min() < 5 else "chi-square"
    assert (sex.test == expected_test).all()
    p = chi.pvalue if expected_test == "chi-square" else stats.fisher_exact(counts).pvalue
    np.testing.assert_allclose(sex.p, p, rtol=1e-10)
    assert sex.loc["M", "count_patient"] == counts[0, 0]
    assert sex.loc["M", "patient"] == f"{counts[0, 0]} ({100 * counts[0, 0] / 30:.1f}%)"
    alsfrs = t1[t1.variable == "alsfrs_r"].iloc[0]
    assert alsfrs.n_patient == 29 and alsfrs.missing_patient == 1 and alsfrs.n_control == 0
    assert alsfrs.reason == "no test: no values in controls" and pd.isna(alsfrs.p)
    onset = t1[t1.variable == "onset_site"].set_index("level")
    assert onset.loc["spinal", "count_patient"] == (pat.onset_site == "spinal").sum()
    assert set(t1.variable) == {"n", "age", "sex", "disease_duration", "alsfrs_r", "fvc",
                                "onset_site"}   # variables, duration column, scores


def test_table1_sidecar_report_and_switch(cohort, tmp_path):
    results, _, group_dir = cohort
    path = group_dir / OUTPUTS["demographics"]
    columns = pd.read_csv(path, sep="\t", nrows=0).columns
    meta = json.loads(path.with_suffix(".json").read_text())
    assert list(meta) == list(columns)
    assert all(m["Description"] != "No description" for m in meta.values())
    assert set(columns) <= set(DEMOGRAPHICS)
    html = (group_dir / "report.html").read_text()
    assert "Table 1: demographic and clinical characteristics" in html
    assert "age, mean (SD)" in html or "age, median [IQR]" in html
    assert results.spec.table1.enabled


def test_choose_test_rule_boundaries():
    assert choose_test("continuous", normal=True) == ("mean_sd", "welch")
    assert choose_test("continuous", normal=False) == ("median_iqr", "mann-whitney")
    assert choose_test("categorical", min_expected=5.0, fisher_min_expected=5) == (
        "count_percent", "chi-square")
    assert choose_test("categorical", min_expected=4.99, fisher_min_expected=5)[1] == "fisher"


def exact_2xk_p(counts: np.ndarray) -> float:
    """Fisher's exact p for a 2 x K table by enumerating all tables with its margins."""
    cols, r1, total = counts.sum(axis=0), counts[0].sum(), counts.sum()
    def pmf(row):
        return np.prod([comb(int(c), int(a)) for c, a in zip(cols, row)]) / comb(int(total),
                                                                                int(r1))
    observed = pmf(counts[0])
    p = 0.0
    for row in product(*[range(int(c) + 1) for c in cols]):
        if sum(row) == r1:
            value = pmf(row)
            if value <= observed * (1 + 1e-9):
                p += value
    return p


def test_categorical_tests_small_and_large_tables():
    rng = np.random.default_rng(1)
    labels = pd.Series([PATIENT] * 12 + [CONTROL] * 10)
    table = pd.DataFrame({
        "site": ["a"] * 8 + ["b"] * 3 + ["c"] * 1 + ["a"] * 2 + ["b"] * 4 + ["c"] * 4,
        "sex": rng.choice(["M", "F"], 22), "score": rng.lognormal(0, 1, 22)})
    t1 = demographics(table, labels, ["site", "sex", "score"], dictionary={},
                      normality_alpha=0.05, fisher_min_expected=5, seed=3, min_n=3)
    site = t1[t1.variable == "site"]
    counts = np.array([[8, 3, 1], [2, 4, 4]])   # patients / controls x a, b, c
    assert (site.test == "fisher").all()
    assert abs(site.p.iloc[0] - exact_2xk_p(counts)) < 0.005   # Monte Carlo vs exact
    sex = t1[t1.variable == "sex"]
    crosstab = pd.crosstab(table.sex, labels).loc[["F", "M"], [PATIENT, CONTROL]].to_numpy()
    chi = stats.chi2_contingency(crosstab, correction=False)
    if chi.expected_freq.min() < 5:
        assert (sex.test == "fisher").all()
        assert abs(sex.p.iloc[0] - stats.fisher_exact(crosstab).pvalue) < 1e-12
    else:
        assert (sex.test == "chi-square").all() and abs(sex.p.iloc[0] - chi.pvalue) < 1e-12
    np.testing.assert_allclose(sex.min_expected.iloc[0], chi.expected_freq.min())
    score = t1[t1.variable == "score"].iloc[0]
    xp, xc = table.score[:12], table.score[12:]
    normal = min(stats.shapiro(xp).pvalue, stats.shapiro(xc).pvalue) > 0.05
    assert score.test == ("welch" if normal else "mann-whitney")
    if not normal:
        assert score.summary_type == "median_iqr"
        assert abs(score.p - stats.mannwhitneyu(xp, xc).pvalue) < 1e-12
