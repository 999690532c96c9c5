"""Longitudinal group analyses: session times, annualised change, mixed models (against
statsmodels run directly), the random-slope path and the cross-sectional default."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLM
from synthetic_group import LONGITUDINAL_MODEL, simulate_sessions, write_sessions_cohort

from bids_app.bids.outputs import GROUP_OUTPUTS as OUTPUTS
from bids_app.group.longitudinal import annual_change
from bids_app.group.mixed import random_intercept_reml
from bids_app.group.notes import Notes
from bids_app.group.run import analyse, load_inputs
from bids_app.settings import ExecutionSettings, Settings


def test_random_intercept_reml_equals_statsmodels():
    """Unbalanced groups (1-4 rows), a covariate: fixed effects, their SEs and the variance
    components equal statsmodels MixedLM (REML)."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 5, 300)
    groups = np.repeat(np.arange(300), sizes)
    n = len(groups)
    x = np.column_stack([np.ones(n), rng.uniform(0, 2, n), rng.normal(size=n)])
    y = x @ [1.0, -0.3, 0.2] + rng.normal(0, 0.7, 300)[groups] + rng.normal(0, 0.5, n)
    ours = random_intercept_reml(y, x, groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLM(y, x, groups=groups).fit(reml=True)
    np.testing.assert_allclose(ours.params, ref.fe_params, rtol=1e-4)
    assert ours.scale == pytest.approx(ref.scale, rel=1e-3)
    tau2 = float(np.asarray(ref.cov_re)[0, 0])
    assert ours.re_var == pytest.approx(tau2, rel=1e-3)
    assert ours.converged
    # standard errors: the GLS ones, (X' V^-1 X)^-1 with V built densely from statsmodels'
    # variance components; statsmodels' own (inverse of the full observed information,
    # with fixed x variance cross terms) differ by < 1 % on unbalanced data
    v = ref.scale * np.eye(n) + tau2 * (groups[:, None] == groups[None, :])
    gls = np.sqrt(np.diag(np.linalg.inv(x.T @ np.linalg.solve(v, x))))
    np.testing.assert_allclose(np.sqrt(np.diag(ours.cov)), gls, rtol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(ours.cov)), ref.bse_fe, rtol=1e-2)


def test_annual_change_is_the_per_participant_slope():
    ids = np.array(["a", "a", "b", "b", "b", "c"])
    time = np.array([0.0, 0.5, 0.0, 1.0, 2.0, 0.0])
    values = pd.DataFrame({"f": [1.0, 0.9, 2.0, 1.5, 1.2, 3.0], "g": [1, np.nan, 1, 2, 3, 4]})
    change = annual_change(values, time, ids)
    assert change.loc["a", "f"] == pytest.approx(-0.2)
    assert change.loc["b", "f"] == pytest.approx(np.polyfit([0, 1, 2], [2.0, 1.5, 1.2], 1)[0])
    assert np.isnan(change.loc["c", "f"]) and np.isnan(change.loc["a", "g"])
    assert change.loc["b", "g"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def three_sessions(tmp_path_factory):
    """One site, 3 sessions timed by age only (no acq_time): the random-slope path."""
    root = tmp_path_factory.mktemp("long")
    table, truth = simulate_sessions(60, sessions=3, sites=("B",), seed=5)
    table["session_age"] = table["age"] + table["time"]
    bids, out = root / "bids", root / "out"
    write_sessions_cohort(table, bids, out)
    for path in bids.glob("sub-*/sub-*_sessions.tsv"):
        pid = path.name.split("_")[0]
        rows = table[table["participant_id"] == pid]
        pd.DataFrame({"session_id": rows["session_id"], "age": rows["session_age"].round(6),
                      "alsfrs_r": rows["alsfrs_r"]}).to_csv(path, sep="\t", index=False,
                                                            na_rep="n/a")
    settings = Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                    analysis_level="group",
                                                    work_dir=out / "w"))
    notes = Notes()
    inputs = load_inputs(settings, notes=notes)
    spec = replace(inputs.spec, longitudinal=replace(inputs.spec.longitudinal, metrics=("fa",)))
    return table, truth, analyse(replace(inputs, spec=spec), notes=notes), bids


def test_age_times_and_random_slope_equal_statsmodels(three_sessions):
    table, truth, results, bids = three_sessions
    change = results.tables["change"]
    assert (change["time_source"] == "age").all() and (change["n_sessions"] == 3).all()
    assert "harmonisation" not in results.tables  # one site: nothing to harmonise
    long = results.tables["longitudinal"].set_index(["feature", "term"])
    feature = "hcp842_cst_L_fa_wmean"
    assert bool(long.loc[(feature, "time"), "random_slope"])
    people = pd.read_csv(bids / "participants.tsv", sep="\t")
    ages = pd.concat([pd.read_csv(p, sep="\t").assign(participant_id=p.name.split("_")[0])
                      for p in bids.glob("sub-*/sub-*_sessions.tsv")])
    ages["time"] = ages["age"] - ages.groupby("participant_id")["age"].transform("min")
    data = table[["participant_id", "session_id", feature]].merge(
        ages[["participant_id", "session_id", "time"]]).merge(people, on="participant_id")
    data["patient"] = (data["group"] == "ALS").astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm(f"{feature} ~ time * patient + age + C(sex)", data,
                          groups=data["participant_id"], re_formula="~time").fit(reml=True)
    for term, name in (("time", "time"), ("group", "patient"), ("time_x_group", "time:patient")):
        assert long.loc[(feature, term), "estimate"] == pytest.approx(
            ref.fe_params[name], rel=1e-3, abs=2e-6)
    decline = truth.set_index("feature").loc[feature, "decline"]
    row = long.loc[(feature, "time_x_group")]
    assert row["ci_low"] <= decline <= row["ci_high"]
    # annualised change of a participant = OLS slope of its three values on time
    pid = change["participant_id"].iat[0]
    rows = data[data["participant_id"] == pid].sort_values("time")
    slope = np.polyfit(rows["time"], rows[feature], 1)[0]
    assert change.set_index("participant_id").loc[pid, feature + "_per_year"] == \
        pytest.approx(slope, rel=1e-6)


def test_cross_sectional_data_have_no_longitudinal_entries(three_sessions, tmp_path):
    """One session per participant: no change tables and nothing listed as skipped."""
    table, *_ = three_sessions
    first = table[table["session_id"] == "ses-1"].head(30)
    bids, out = tmp_path / "bids", tmp_path / "out"
    write_sessions_cohort(first, bids, out)
    settings = Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                    analysis_level="group",
                                                    work_dir=out / "w"))
    notes = Notes()
    results = analyse(load_inputs(settings, notes=notes), notes=notes)
    assert not {"change", "longitudinal", "progression"} & set(results.tables)
    assert not {"change", "longitudinal", "progression"} & set(results.skipped)
    assert results.sessions.empty
    assert set(OUTPUTS) >= {"change", "longitudinal", "progression"}
    assert Path(OUTPUTS["longitudinal"]).suffix == ".tsv"
    assert set(LONGITUDINAL_MODEL) <= set(results.joined.columns)
