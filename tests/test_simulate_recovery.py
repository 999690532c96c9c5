"""Recovery-table logic on hand-made truth and group tables (independent references)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bids_app.errors import MissingInputError
from bids_app.simulate.effects import load_effects
from bids_app.simulate.recovery import (
    JOINED,
    build_recovery_table,
    cohen_d,
    format_table,
    planted_table,
    recovered_all,
    recovery_from_outputs,
    write_recovery,
)

TRACTS = ("cst", "corticostriatal", "corticothalamic")


def _truth(n_patients=8, n_controls=8, seed=0):
    rng = np.random.default_rng(seed)
    effects = load_effects()
    participants = {}
    for i in range(n_patients + n_controls):
        patient = i < n_patients
        shift = -0.08 if patient else 0.0
        part = {"group": "ALS" if patient else "control", "age": 60.0, "sex": "M",
                "tracts": [{"atlas": "hcp842", "region": r, "hemisphere": h,
                            "fa": float(0.5 + shift + rng.normal(0, 0.02))}
                           for r in TRACTS for h in "LR"],
                "gm": [{"atlas": "aal", "region": "precentral", "hemisphere": h,
                        "volume_ratio": float(1 + (-0.1 if patient else 0) +
                                              rng.normal(0, 0.02))} for h in "LR"]}
        part["tracts"].append({"atlas": "jhu", "region": "cc_splenium",
                               "hemisphere": "bilateral",
                               "fa": float(0.4 + rng.normal(0, 0.02))})
        if patient:
            cst = np.mean([t["fa"] for t in part["tracts"] if t["region"] == "cst"])
            ct = np.mean([t["fa"] for t in part["tracts"] if t["region"] == "corticothalamic"])
            vol = np.mean([g["volume_ratio"] for g in part["gm"]])
            part["scores"] = {"alsfrs_r": 100 * cst + rng.normal(0, 1),
                              "cmap_z_sum": 50 * cst + rng.normal(0, 1),
                              "penn_score": -80 * cst + rng.normal(0, 1),
                              "mrc_sum": 40 * vol + rng.normal(0, 1),
                              "fvc": 90 * vol + rng.normal(0, 1),
                              "disease_duration": -60 * ct + rng.normal(0, 1)}
        participants[f"sub-{i + 1:03d}"] = part
    return {"effects": effects, "participants": participants}


def _joined(truth, *, noise=0.0, seed=1):
    """A group-level joined table built from the planted values (+ measurement noise)."""
    rng = np.random.default_rng(seed)
    table = planted_table(truth)
    features = [c for c in table.columns if c.endswith(("mean", "_ratio"))]
    table[features] = table[features] + rng.normal(0, noise, (len(table), len(features)))
    table.insert(1, "session_id", np.nan)
    table["participant_id"] = table["participant_id"].str.removeprefix("sub-")
    return table.drop(columns=["group"]).assign(group=table["group"])


def test_identical_values_pass_and_match_references():
    truth = _truth()
    table = build_recovery_table(truth, _joined(truth))
    assert recovered_all(table)
    diff = table[table["check"].isin(["tract_difference", "control_region"])]
    np.testing.assert_allclose(diff["planted"], diff["recovered"])
    # independent references: scipy Welch t-test, BH q, Cohen d, Pearson r
    pt = planted_table(truth)
    pvals = []
    for row in diff.itertuples():
        statistic = "mean" if row.atlas == "jhu" else "wmean"  # label atlas: plain mean
        col = f"{row.atlas}_{row.region}_{row.hemisphere}_fa_{statistic}"
        a = pt.loc[pt.group == "ALS", col].to_numpy()
        b = pt.loc[pt.group == "control", col].to_numpy()
        pvals.append(stats.ttest_ind(a, b, equal_var=False).pvalue)
        pooled = np.sqrt((a.var(ddof=1) * (len(a) - 1) + b.var(ddof=1) * (len(b) - 1))
                         / (len(a) + len(b) - 2))
        assert row.recovered == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-10)
    np.testing.assert_allclose(diff["p"], pvals, rtol=1e-10)
    np.testing.assert_allclose(diff["q"], multipletests(pvals, method="fdr_bh")[1], rtol=1e-10)
    corr = table[table["check"] == "score_correlation"].set_index("score")
    pat = pt[pt.group == "ALS"]
    cst = pat[[f"hcp842_cst_{h}_fa_wmean" for h in "LR"]].mean(axis=1)
    assert corr.loc["alsfrs_r", "recovered"] == pytest.approx(
        stats.pearsonr(cst, pat["alsfrs_r"]).statistic, rel=1e-10)
    assert corr.loc["alsfrs_r", "recovered_slope"] == pytest.approx(
        stats.linregress(cst, pat["alsfrs_r"]).slope, rel=1e-10)
    assert set(table["check"]) == {"tract_difference", "control_region", "gm_difference",
                                   "score_correlation"}
    assert (table["check"] == "tract_difference").sum() == 6
    assert "RECOVERED" in format_table(table).splitlines()[-1]
    # identical values: perfect per-participant agreement; score rows have none
    agree = table.set_index("check")["agreement_r"]
    np.testing.assert_allclose(agree.drop("score_correlation"), 1.0)
    assert agree["score_correlation"].isna().all()


def test_wrong_sign_or_lost_effect_fails():
    truth = _truth()
    joined = _joined(truth)
    cst = "hcp842_cst_L_fa_wmean"
    patients = joined["group"] == "ALS"
    joined.loc[patients, cst] = joined.loc[patients, cst] + 0.2  # patients now higher
    table = build_recovery_table(truth, joined)
    row = table[(table.region == "cst") & (table.hemisphere == "L")].iloc[0]
    assert row.recovered > 0 and not row.passed
    assert not recovered_all(table)
    assert format_table(table).splitlines()[-1] == "NOT RECOVERED"


def test_control_region_difference_fails_and_d_tolerance():
    truth = _truth()
    joined = _joined(truth)
    patients = joined["group"] == "ALS"
    joined.loc[patients, "jhu_cc_splenium_bilateral_fa_mean"] -= 0.1
    table = build_recovery_table(truth, joined)
    control = table[table.check == "control_region"].iloc[0]
    assert control.q < 0.05 and not control.passed
    # heavy measurement noise: d shrinks by more than 0.3 -> reported (not within the
    # tolerance); such a row still passes when q < 0.05 with the planted sign
    noisy = build_recovery_table(truth, _joined(truth, noise=0.05))
    rows = noisy[noisy.check == "tract_difference"]
    shrunk = (rows.planted - rows.recovered).abs() > 0.3
    assert shrunk.any() and not rows.loc[shrunk, "d_within_tolerance"].astype(bool).any()
    assert (rows.loc[~shrunk, "d_within_tolerance"].astype(bool)).all()
    significant = rows.required & (rows.q < 0.05) & (np.sign(rows.recovered) == -1)
    assert (rows.loc[significant, "passed"].astype(bool)).all()
    assert not rows.loc[rows.required & ~significant, "passed"].astype(bool).any()
    # the agreement column is Pearson r of planted vs noisy values over all participants
    noisy_joined, pt = _joined(truth, noise=0.05), planted_table(truth)
    col = "hcp842_cst_L_fa_wmean"
    row = rows[(rows.region == "cst") & (rows.hemisphere == "L")].iloc[0]
    assert row.agreement_r == pytest.approx(
        np.corrcoef(pt[col], noisy_joined[col])[0, 1], rel=1e-10)
    assert row.agreement_r < 0.95


def test_tract_without_planted_effect_is_reported_not_required():
    """The corticothalamic tract has no effect of its own (the leakage neighbour): a lost or
    spurious difference there is reported but does not decide RECOVERED."""
    truth = _truth()
    assert truth["effects"]["tracts"]["hcp842/corticothalamic"]["fa_change"] == 0
    joined = _joined(truth)
    patients = joined["group"] == "ALS"
    joined.loc[patients, "hcp842_corticothalamic_L_fa_wmean"] += 0.08  # difference lost
    table = build_recovery_table(truth, joined)
    rows = table[table.region == "corticothalamic"].set_index("hemisphere")
    assert not rows.required.any()
    assert not rows.loc["L", "passed"] and rows.loc["R", "passed"]
    assert "no planted effect" in rows.loc["L", "criterion"]
    assert recovered_all(table)


def test_correlation_tolerance():
    truth = _truth()
    joined = _joined(truth)
    patients = joined["group"] == "ALS"
    joined.loc[patients, "alsfrs_r"] = -joined.loc[patients, "alsfrs_r"]  # r flips sign
    table = build_recovery_table(truth, joined)
    row = table[table.score == "alsfrs_r"].iloc[0]
    assert abs(row.recovered - row.planted) > 0.15 and not row.passed and row.required
    assert not row.d_within_tolerance
    # an attenuated correlation of the planted sign passes (its tolerance is reported)
    joined = _joined(truth)
    rng = np.random.default_rng(3)
    joined.loc[patients, "alsfrs_r"] += rng.normal(0, 3 * joined.loc[patients, "alsfrs_r"].std(),
                                                   patients.sum())
    row = build_recovery_table(truth, joined).query("score == 'alsfrs_r'").iloc[0]
    assert np.sign(row.recovered) == np.sign(row.planted) and row.passed
    assert row.d_within_tolerance == (abs(row.recovered - row.planted) <= 0.15)


def test_missing_participants_and_columns_give_nan_not_crash():
    truth = _truth()
    joined = _joined(truth).iloc[3:].drop(columns=["hcp842_cst_R_fa_wmean"])
    table = build_recovery_table(truth, joined)
    row = table[(table.region == "cst") & (table.hemisphere == "R")].iloc[0]
    assert np.isnan(row.recovered) and not row.passed
    assert table[(table.region == "cst") & (table.hemisphere == "L")].n_patients.iloc[0] == 5


def test_recovery_from_outputs_and_writer(tmp_path):
    truth = _truth()
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    with pytest.raises(MissingInputError, match="truth.json"):
        recovery_from_outputs(bids, out)
    (bids / "truth.json").write_text(json.dumps(truth))
    with pytest.raises(MissingInputError, match="group level"):
        recovery_from_outputs(bids, out)
    (out / JOINED).parent.mkdir(parents=True)
    _joined(truth).to_csv(out / JOINED, sep="\t", index=False, na_rep="n/a")
    table = recovery_from_outputs(bids, out)
    assert recovered_all(table)
    path = write_recovery(table, tmp_path / "recovery.tsv")
    back = pd.read_csv(path, sep="\t")
    assert list(back.columns) == list(table.columns) and len(back) == len(table)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert set(table.columns) <= set(sidecar)  # every column is described


def test_cohen_d_reference():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    pooled = np.sqrt((3 * np.var(a, ddof=1) + 2 * np.var(b, ddof=1)) / 5)
    assert cohen_d(a, b) == pytest.approx((2.5 - 4.0) / pooled)
