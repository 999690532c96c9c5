"""Site harmonisation (ComBat via neuroHarmonize) on a synthetic 3-site, 2-session cohort.

The cohort (``synthetic_group.simulate_sessions``) plants per-site additive and multiplicative
effects on site-free values with a known patient-control difference, a known score slope and
a known per-year decline in patients; the sites are unbalanced (75 / 50 / 25 % patients), so
unharmonised analyses are biased. Every check is against an independent computation on the
written files (neuroHarmonize and statsmodels run directly) or against the planted truth.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from neuroHarmonize import harmonizationApply, harmonizationLearn
from synthetic_group import (
    LONGITUDINAL_MODEL,
    SCORE_FEATURE,
    SCORE_SLOPE,
    simulate_sessions,
    simulate_table,
    write_cohort,
    write_sessions_cohort,
)
from test_group_profiles import PLANTED as PLANTED_NODES
from test_group_profiles import simulate_profiles, write_profiles

from bids_app.bids.outputs import GROUP_DIR
from bids_app.bids.outputs import GROUP_OUTPUTS as OUTPUTS
from bids_app.cli.parser import build_parser
from bids_app.group.harmonise import (
    SWITCHED_OFF,
    harmonise_profiles,
    methods_text,
    site_f_test,
)
from bids_app.group.notes import Notes
from bids_app.group.profiles import load_profiles
from bids_app.group.run import analyse, load_inputs
from bids_app.group.spec import load_spec
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

#: Features whose planted patient-control difference (2.7 participant SDs) is estimated to
#: about 3 % (SE) by this cohort: the 10 % criterion is a test of the method, not of luck.
PLANTED = ("hcp842_cst_L_fa_wmean", "hcp842_cst_R_fa_wmean")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    table, truth = simulate_sessions(150)
    bids, out = root / "bids", root / "out"
    write_sessions_cohort(table, bids, out)
    settings = Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                    analysis_level="group",
                                                    work_dir=out / "w"))
    inputs = load_inputs(settings, notes=Notes())
    results = analyse(inputs, notes=Notes())
    written = write_outputs(results, out)
    return table, truth, inputs, results, written, bids, out / GROUP_DIR


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)


def _controls_first_session(group_dir: Path, bids: Path, name: str) -> pd.DataFrame:
    values = _read(group_dir / OUTPUTS[name])[["participant_id", "session_id",
                                                 *LONGITUDINAL_MODEL]]
    people = _read(bids / "participants.tsv")
    rows = values.merge(people, on="participant_id")
    return rows[(rows["group"] == "control") & (rows["session_id"] == "ses-1")]


def site_p(rows: pd.DataFrame, feature: str) -> float:
    """statsmodels: F-test of site given age and sex (nested OLS models)."""
    data = rows.rename(columns={feature: "y"})
    full = smf.ols("y ~ age + C(sex) + C(site)", data).fit()
    reduced = smf.ols("y ~ age + C(sex)", data).fit()
    return float(full.compare_f_test(reduced)[1])


def test_site_effect_gone_after_harmonisation(cohort):
    _, _, _, results, written, bids, group_dir = cohort
    effects = results.tables["harmonisation"].set_index("feature")
    assert set(LONGITUDINAL_MODEL) <= set(effects.index)
    assert effects["harmonised"].all()
    raw = _controls_first_session(group_dir, bids, "joined")
    harmonised = _controls_first_session(group_dir, bids, "harmonised")
    assert len(raw) == len(harmonised) == 225
    for feature in LONGITUDINAL_MODEL:
        before, after = site_p(raw, feature), site_p(harmonised, feature)
        assert before < 1e-6, feature
        assert after > 0.05, feature
        # the written table is the same test
        assert effects.loc[feature, "p_before"] == pytest.approx(before, rel=1e-6)
        assert effects.loc[feature, "p_after"] == pytest.approx(after, rel=1e-6, abs=1e-12)
    assert written["harmonisation_scatter"].stat().st_size > 1000
    html = (group_dir / "report.html").read_text()
    assert "Site harmonisation" in html and OUTPUTS["harmonised"] in html


def test_neuroharmonize_directly_gives_the_same_values(cohort):
    """harmonizationLearn on the controls' first sessions, harmonizationApply to all rows,
    from the joined table and participants.tsv as written."""
    *_, bids, group_dir = cohort
    joined = _read(group_dir / OUTPUTS["joined"])
    people = _read(bids / "participants.tsv")
    rows = joined[["participant_id", "session_id"]].merge(people, on="participant_id")
    features = list(LONGITUDINAL_MODEL)
    covars = pd.DataFrame({"SITE": rows["site"], "age": rows["age"],
                           "sex": (rows["sex"] == "M").astype(float)})
    fit = ((rows["group"] == "control") & (rows["session_id"] == "ses-1")).to_numpy()
    data = joined[features].to_numpy(dtype=float)
    model, _ = harmonizationLearn(data[fit], covars[fit].reset_index(drop=True))
    direct = harmonizationApply(data, covars, model)
    ours = _read(group_dir / OUTPUTS["harmonised"])
    assert (ours["participant_id"] == joined["participant_id"]).all()
    np.testing.assert_allclose(ours[features].to_numpy(), direct, rtol=1e-12, atol=1e-15)


def test_planted_difference_and_score_slope_recovered(cohort, unharmonised):
    """Within 10 % of the truth after harmonisation; biased without it (unbalanced sites)."""
    _, truth, _, results, *_ = cohort
    truth = truth.set_index("feature")
    comp = results.tables["comparisons"]
    comp = comp.assign(feature=comp["atlas"] + "_" + comp["region"] + "_" + comp["hemisphere"]
                       + "_" + comp["metric"] + "_" + comp["statistic"]).set_index("feature")
    comp_off = unharmonised[0].tables["comparisons"]
    comp_off = comp_off.assign(feature=comp["atlas"].to_numpy() + "_" + comp_off["region"]
                               + "_" + comp_off["hemisphere"] + "_" + comp_off["metric"] + "_"
                               + comp_off["statistic"]).set_index("feature")
    for feature in PLANTED:
        planted = truth.loc[feature, "difference"]
        assert comp.loc[feature, "adj_beta"] / planted == pytest.approx(1, abs=0.10), feature
        assert abs(comp_off.loc[feature, "adj_beta"] / planted - 1) > 0.10, feature
    clinical = results.tables["clinical"]
    row = clinical[(clinical["score"] == "alsfrs_r") & (clinical["region"] == "cst")
                   & (clinical["hemisphere"] == "R") & (clinical["metric"] == "fa")].iloc[0]
    assert SCORE_FEATURE == "hcp842_cst_R_fa_wmean"
    assert row["beta"] / SCORE_SLOPE == pytest.approx(1, abs=0.10)


def test_mixed_model_equals_statsmodels_and_covers_the_planted_slopes(cohort):
    """alsmri's REML random-intercept fit vs statsmodels MixedLM on the written harmonised
    values and the sessions.tsv times; 95 % CIs contain the planted per-year changes."""
    _, truth, _, results, _, bids, group_dir = cohort
    truth = truth.set_index("feature")
    long = results.tables["longitudinal"].set_index(["feature", "term"])
    harmonised = _read(group_dir / OUTPUTS["harmonised"])
    people = _read(bids / "participants.tsv")
    times = pd.concat([_read(p).assign(participant_id=p.name.split("_")[0])
                       for p in sorted(bids.glob("sub-*/sub-*_sessions.tsv"))])
    when = pd.to_datetime(times["acq_time"])
    times["time"] = (when - when.groupby(times["participant_id"]).transform("min")) \
        .dt.total_seconds() / (365.25 * 86400)
    data = harmonised.merge(times, on=["participant_id", "session_id"]).merge(
        people, on="participant_id")
    data["patient"] = (data["group"] == "ALS").astype(float)
    for feature in ("hcp842_cst_R_fa_wmean", "aal_precentral_L_gmv_pct_tiv_ratio"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = smf.mixedlm(f"{feature} ~ time * patient + age + C(sex)", data,
                              groups=data["participant_id"]).fit(reml=True)
        for term, name in (("time", "time"), ("group", "patient"),
                           ("time_x_group", "time:patient")):
            assert long.loc[(feature, term), "estimate"] == pytest.approx(
                fit.fe_params[name], rel=1e-4, abs=1e-7), (feature, term)
            assert long.loc[(feature, term), "se"] == pytest.approx(fit.bse_fe[name],
                                                                    rel=1e-2), (feature, term)
    for feature in LONGITUDINAL_MODEL:
        scale = 1e3 if "_md_" in feature else 1.0  # diffusivities in 10^-3 mm^2/s
        for term, planted in (("time", truth.loc[feature, "ageing"]),
                              ("time_x_group", truth.loc[feature, "decline"])):
            row = long.loc[(feature, term)]
            assert row["ci_low"] <= planted * scale <= row["ci_high"], (feature, term)
    progression = results.tables["progression"]
    row = progression[(progression["region"] == "cst") & (progression["hemisphere"] == "R")
                      & (progression["metric"] == "fa")].iloc[0]
    assert row["beta"] / SCORE_SLOPE == pytest.approx(1, abs=0.10)
    assert row["ci_low"] <= SCORE_SLOPE <= row["ci_high"]


def test_too_few_controls_refuses_with_one_line_and_continues(cohort):
    _, _, inputs, _, _, _, _ = cohort
    notes = Notes()
    spec = replace(inputs.spec, harmonize=replace(inputs.spec.harmonize,
                                                  min_controls_per_site=45))
    results = analyse(replace(inputs, spec=spec), notes=notes)
    reason = results.skipped["harmonisation"]
    assert "A (38)" in reason and "\n" not in reason and reason in notes.warnings
    assert results.harmonisation.values is None
    effects = results.tables["harmonisation"]
    assert not effects["harmonised"].any() and (effects["p_before"] < 1e-6).all()
    assert "comparisons" in results.tables and "longitudinal" in results.tables


def test_outputs_have_sidecars(cohort):
    *_, group_dir = cohort
    for key in ("harmonisation", "harmonised", "change", "longitudinal", "progression"):
        path = group_dir / OUTPUTS[key]
        columns = pd.read_csv(path, sep="\t", nrows=0).columns
        meta = json.loads(path.with_suffix(".json").read_text())
        meta.pop("MetricUnits", None)
        method = meta.pop("Method", None)
        assert (method is not None) == (key in ("harmonisation", "harmonised")), key
        assert list(meta) == list(columns), key
        assert all(m["Description"] != "No description" for m in meta.values()), key


@pytest.fixture(scope="module")
def unharmonised(cohort):
    """The cohort analysed with ``--no-harmonize`` (command line -> settings -> spec)."""
    inputs, group_dir = cohort[2], cohort[-1]
    opts = build_parser().parse_args([str(group_dir), str(group_dir), "group",
                                      "--no-harmonize"])
    spec = load_spec(overrides=GroupSettings(harmonize=opts.harmonize))
    notes = Notes()
    off = analyse(replace(inputs, spec=replace(inputs.spec, harmonize=spec.harmonize)),
                  notes=notes)
    return off, notes, spec


def test_no_harmonize_reports_site_effects_and_says_so(cohort, unharmonised):
    *_, group_dir = cohort
    results = cohort[3]
    off, notes, spec = unharmonised
    assert build_parser().parse_args([str(group_dir), str(group_dir), "group"]).harmonize is None
    assert spec.harmonize.enabled is False and "harmonize.enabled" in spec.user_keys
    assert off.harmonisation.values is None and off.skipped["harmonisation"] == SWITCHED_OFF
    assert not any("harmonis" in w for w in notes.warnings)
    before = results.tables["harmonisation"]
    pd.testing.assert_series_equal(off.tables["harmonisation"]["p_before"], before["p_before"])
    assert off.tables["harmonisation"]["p_after"].isna().all()
    ran = methods_text(results.harmonisation, results.spec.harmonize)
    assert ran.startswith("Imaging features (") and "3 sites of column 'site'" in ran
    assert "switched off" in methods_text(off.harmonisation, spec.harmonize)
    written = json.loads((group_dir / OUTPUTS["spec"]).read_text())
    assert written["methods"]["harmonisation"] == ran


def test_profiles_are_harmonised_node_by_node(tmp_path):
    """Along-tract profiles with planted site effects: the group level harmonises them with
    the features' fit rows and covariates; equal to neuroHarmonize run directly on the
    written profile files, site effect gone at every node, the patients' planted CST segment
    kept."""

    table = simulate_table(18, 30, seed=11)
    table["site"] = np.array(["A", "B", "C"])[np.arange(len(table)) % 3]
    profiles = simulate_profiles(table, seed=11, cst_drop=0.06)
    shift = {"A": 0.0, "B": 0.1, "C": -0.1}   # FA; participant SD 0.03 (0.06 at the ends)
    scale = {"A": 1.0, "B": 1.4, "C": 0.7}
    for pid, frame in profiles.items():
        site = table.set_index("participant_id").at[pid, "site"]
        fa = frame["metric"] == "fa"
        frame.loc[fa, "value"] = 0.55 + scale[site] * (frame.loc[fa, "value"] - 0.55) \
            + shift[site]
    bids, out = tmp_path / "bids", tmp_path / "out"
    write_cohort(table, bids, out)
    write_profiles(profiles, out)
    spec = tmp_path / "spec.yaml"
    spec.write_text("metrics: [fa]\nscores: [alsfrs_r]\ninterhemispheric_metrics: [fa]\n"
                    "profiles: {metrics: [fa], n_permutations: 200}\n"
                    "harmonize: {min_controls_per_site: 5}\n")
    settings = Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                    analysis_level="group", work_dir=out / "w"),
                        group=GroupSettings(analysis_spec=spec))
    inputs = load_inputs(settings, notes=Notes())
    results = analyse(inputs, notes=Notes())
    assert results.harmonisation.skipped is None
    assert "along-tract profiles node by node" in methods_text(
        results.harmonisation, results.spec.harmonize)

    # independent: the profile files and participants.tsv as written, neuroHarmonize directly
    long = pd.concat([pd.read_csv(p, sep="\t").assign(participant_id=p.name.split("_")[0])
                      for p in sorted(out.glob("sub-*/dwi/*_desc-profiles_dwistats.tsv"))])
    long = long[long["metric"] == "fa"]
    wide = long.pivot_table(index="participant_id", columns=["region", "hemisphere", "node"],
                            values="value").sort_index(axis=1)
    people = pd.read_csv(bids / "participants.tsv", sep="\t").set_index("participant_id")
    people = people.loc[wide.index]
    covars = pd.DataFrame({"SITE": people["site"].to_numpy(), "age": people["age"].to_numpy(),
                           "sex": (people["sex"] == "M").astype(float).to_numpy()})
    fit = (people["group"] == "control").to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = harmonizationLearn(wide.to_numpy()[fit], covars[fit].reset_index(drop=True))
        direct = harmonizationApply(wide.to_numpy(), covars, model)

    data = load_profiles(out, inputs.profiles.files, results.spec.profiles, notes=Notes())
    ours = harmonise_profiles(data.values, data.files[["participant_id", "session_id"]],
                              inputs.joined, results.harmonisation, notes=Notes())
    order = [list(data.files["participant_id"]).index(pid) for pid in wide.index]
    cat = data.catalogue.reset_index(drop=True)
    for j, (region, hemi) in enumerate(zip(cat["region"], cat["hemisphere"])):
        cols = [k for k, c in enumerate(wide.columns) if c[:2] == (region, hemi)]
        np.testing.assert_allclose(ours[order, j, :100], direct[:, cols], rtol=1e-10,
                                   atol=1e-12)
    # site effect at every node of the left CST: present before, gone after (controls)
    j = int(np.flatnonzero((cat["region"] == "cst") & (cat["hemisphere"] == "L"))[0])
    ctrl = np.flatnonzero(fit)
    cov = covars[["age", "sex"]].to_numpy()[ctrl]
    site = covars["SITE"].to_numpy()[ctrl]
    _, p_before, _ = site_f_test(data.values[order][ctrl, j, :100], site, cov)
    _, p_after, _ = site_f_test(ours[order][ctrl, j, :100], site, cov)
    assert (p_before < 1e-3).all() and (p_after > 0.05).all()
    # the planted patient segment survives: patients - controls at the planted nodes
    segment = ours[order][:, j, PLANTED_NODES]
    drop = segment[~fit].mean() - segment[fit].mean()
    assert drop == pytest.approx(-0.06, abs=0.02)
