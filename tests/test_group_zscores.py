"""Patient z-scores against controls: statsmodels OLS on the raw inputs, planted deviations,
refusal below the minimum number of controls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from synthetic_group import plant_deviations, simulate_table, write_cohort

from bids_app.bids.outputs import GROUP_DIR
from bids_app.group.columns import OUTPUTS
from bids_app.group.run import run_group
from bids_app.group.spec import load_spec
from bids_app.group.zscores import control_zscores
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

FAST = "metrics: [fa]\nscores: [alsfrs_r]\ninterhemispheric_metrics: [fa]\n"
FEATURE = "hcp842_cst_L_fa_wmean"
PLANTED = {"sub-00001": -3.0, "sub-00002": -2.0, "sub-00003": -1.0, "sub-00004": 1.0,
           "sub-00005": 2.0, "sub-00006": 3.0}


def settings(bids: Path, out: Path, spec: Path) -> Settings:
    return Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                analysis_level="group", work_dir=out / "w"),
                    group=GroupSettings(analysis_spec=spec))


def run(tmp_path: Path, table: pd.DataFrame, spec_text: str = FAST):
    bids, out = tmp_path / "bids", tmp_path / "out"
    write_cohort(table, bids, out)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    results = run_group(settings(bids, out, spec))
    write_outputs(results, out)
    return results, bids, out / GROUP_DIR


def reference_zscores(bids: Path, out: Path, feature: str) -> pd.Series:
    """statsmodels OLS on the raw files: participants.tsv and each metrics table as written."""
    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    atlas, region, hemi, metric, stat = feature.split("_", 4)
    values = {}
    for path in sorted(out.glob("sub-*/dwi/*_desc-tracts_dwistats.tsv")):
        rows = pd.read_csv(path, sep="\t")
        hit = rows[(rows.atlas == atlas) & (rows.region == region) & (rows.hemisphere == hemi)
                   & (rows.metric == metric) & (rows.statistic == stat)]
        values[path.name.split("_")[0]] = float(hit["value"].iloc[0])
    parts["y"] = parts["participant_id"].map(values)
    design = np.column_stack([np.ones(len(parts)), parts["age"], parts["sex"].eq("M")])
    y = parts["y"].to_numpy()
    control = parts["group"].eq("control").to_numpy()
    z = pd.Series(np.nan, index=parts["participant_id"])
    fit = sm.OLS(y[control], design[control]).fit()
    patients = ~control
    z[patients] = (y[patients] - fit.predict(design[patients])) / np.sqrt(fit.scale)
    for i in np.flatnonzero(control):
        others = control.copy()
        others[i] = False
        loo = sm.OLS(y[others], design[others]).fit()
        z.iloc[i] = (y[i] - loo.predict(design[i:i + 1])[0]) / np.sqrt(loo.scale)
    return z


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """6 patients planted at known z on one feature, 600 controls.

    The error of a recovered z is about sqrt(1/n + z^2 / (2 n)) (prediction and residual SD
    estimated from n controls): 0.10 at z = 3 with 600 controls, so 0.3 is a 3-SD bound.
    """
    table = plant_deviations(simulate_table(6, 600, seed=11), FEATURE, PLANTED, seed=11)
    return run(tmp_path_factory.mktemp("planted"), table)


def test_planted_deviations_recovered(planted):
    _, _, group_dir = planted
    z = pd.read_csv(group_dir / OUTPUTS["zscores"], sep="\t", na_values=["n/a"])
    got = z.set_index("participant_id")[FEATURE]
    errors = {pid: got[pid] - true for pid, true in PLANTED.items()}
    print("planted z -> recovered - true:", {k: round(v, 3) for k, v in errors.items()})
    assert max(abs(e) for e in errors.values()) < 0.3, errors
    # the controls' leave-one-out z-scores are standard normal under the generating model
    controls = got[z.set_index("participant_id")["group_label"] == "control"]
    assert len(controls) == 600 and abs(controls.mean()) < 0.15
    assert 0.8 < controls.std() < 1.2


def test_zscores_match_statsmodels_on_raw_inputs(planted):
    _, bids, group_dir = planted
    out = group_dir.parent
    z = pd.read_csv(group_dir / OUTPUTS["zscores"], sep="\t", na_values=["n/a"])
    got = z.set_index("participant_id")
    for feature in (FEATURE, "hcp842_corticothalamic_R_fa_wmean"):
        ref = reference_zscores(bids, out, feature)
        np.testing.assert_allclose(got[feature].loc[ref.index], ref, rtol=0, atol=1e-8)
    # summary columns agree with the feature columns
    features = [c for c in got.columns if c.endswith(("_fa_wmean", "_fa_mean"))]
    np.testing.assert_allclose(got["max_abs_z"], got[features].abs().max(axis=1), atol=1e-12)
    assert (got["n_abs_z_ge_2"] == (got[features].abs() >= 2).sum(axis=1)).all()


def test_zscore_sidecar_report_and_inclusion(planted):
    results, _, group_dir = planted
    meta = json.loads((group_dir / OUTPUTS["zscores"]).with_suffix(".json").read_text())
    columns = pd.read_csv(group_dir / OUTPUTS["zscores"], sep="\t", nrows=0).columns
    assert [c for c in meta if c in columns] == list(columns)
    assert meta[FEATURE]["NumberOfControls"] == 600
    assert meta[FEATURE]["ResidualDegreesOfFreedom"] == 597
    assert meta["MinimumControls"] == load_spec().zscores.min_controls == 10
    assert meta["Covariates"] == ["age", "sex"]
    html = (group_dir / "report.html").read_text()
    assert "Patient z-scores against controls" in html
    assert html.count("<details>") == 6 and "sub-00006" in html
    incl = pd.read_csv(group_dir / OUTPUTS["inclusion"], sep="\t")
    assert incl["in_zscores"].all()
    assert results.tables["zscore_models"]["n_controls"].eq(600).all()


def test_too_few_controls_refused_rest_continues(tmp_path):
    results, _, group_dir = run(tmp_path, simulate_table(8, 9, seed=2))
    reason = results.skipped["zscores"]
    assert reason == ("patient z-scores need at least zscores.min_controls = 10 controls with "
                      "complete covariates (age, sex); 9 available, analysis skipped")
    assert reason in results.notes.warnings
    assert not (group_dir / OUTPUTS["zscores"]).exists()
    assert {"comparisons", "demographics", "clinical"} <= set(results.tables)
    html = (group_dir / "report.html").read_text()
    assert "Not computed: patient z-scores need at least" in html
    assert not pd.read_csv(group_dir / OUTPUTS["inclusion"], sep="\t")["in_zscores"].any()
    spec = json.loads((group_dir / OUTPUTS["spec"]).read_text())
    assert spec["skipped"]["zscores"] == reason
    # a user spec lowers the minimum; switching off is listed too
    results, _, _ = run(tmp_path / "b", simulate_table(8, 9, seed=2),
                        FAST + "zscores: {min_controls: 5}\n")
    assert "zscores" in results.tables and "zscores" not in results.skipped
    results, _, _ = run(tmp_path / "c", simulate_table(8, 12, seed=2),
                        FAST + "zscores: {enabled: false}\n")
    assert results.skipped["zscores"] == "switched off (zscores.enabled: false)"


def test_control_zscores_missing_values_and_categorical_covariate():
    """Feature-specific samples (missing values), a three-level covariate, leave-one-out."""
    rng = np.random.default_rng(4)
    n = 40
    site = rng.choice(["a", "b", "c"], n)
    age = rng.normal(60, 8, n)
    control = np.arange(n) >= 12
    cov = pd.DataFrame({"age": age, "site=b": (site == "b") * 1.0,
                        "site=c": (site == "c") * 1.0})
    values = pd.DataFrame({"f1": 1 + 0.01 * age + rng.normal(0, 0.1, n),
                           "f2": 2 - 0.02 * age + rng.normal(0, 0.2, n)})
    values.loc[[3, 20, 21], "f2"] = np.nan
    cov.loc[5, "age"] = np.nan
    z, models = control_zscores(values, cov, control, min_controls=10)
    for feature in values:
        ok = values[feature].notna() & cov.notna().all(axis=1)
        x = sm.add_constant(cov.to_numpy())
        y = values[feature].to_numpy()
        ctrl = (ok & control).to_numpy()
        fit = sm.OLS(y[ctrl], x[ctrl]).fit()
        for i in np.flatnonzero(ok):
            if control[i]:
                others = ctrl.copy()
                others[i] = False
                ref = sm.OLS(y[others], x[others]).fit()
            else:
                ref = fit
            expected = (y[i] - ref.predict(x[i:i + 1])[0]) / np.sqrt(ref.scale)
            assert abs(z.loc[i, feature] - expected) < 1e-8, (feature, i)
        assert z.loc[~ok, feature].isna().all()
        row = models.set_index("feature").loc[feature]
        assert row["n_controls"] == ctrl.sum() and row["covariates"] == "age,site=b,site=c"
        assert abs(row["residual_sd"] - np.sqrt(fit.scale)) < 1e-10
    few, models = control_zscores(values, cov, control & (np.arange(n) < 20),
                                  min_controls=10)
    assert few.isna().all().all() and models["reason"].str.contains("fewer than").all()
