"""Tract validation table: ratios, slope, r and leakage against numbers known by construction;
readers of the participant tables and of the simulator's truth maps.  The end-to-end run is
the demo's (``tests/test_demo.py`` checks its ``tract_validation.tsv``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_app.simulate.validation import (
    COLUMNS,
    DESCRIPTIONS,
    SIMWEIGHTS,
    format_side_by_side,
    participant_features,
    side_by_side,
    simulator_weight_features,
    tract_validation,
    write_validation,
)

REPO = Path(__file__).resolve().parents[1]
REGIONS = {"cst": -0.25, "corticostriatal": -0.2, "corticothalamic": 0.0}


def _truth(n_patients=5, n_controls=5, seed=0):
    """truth.json-like dict: patients' CST lower by 0.08, corticothalamic by 0.03 (overlap)."""
    rng = np.random.default_rng(seed)
    drop = {"cst": 0.08, "corticostriatal": 0.06, "corticothalamic": 0.03}
    participants = {}
    for i in range(n_patients + n_controls):
        patient = i < n_patients
        shared = rng.normal(0, 0.02)
        participants[f"sub-{i + 1:02d}"] = {
            "group": "ALS" if patient else "control",
            "tracts": [{"atlas": "hcp842", "region": region, "hemisphere": hemi,
                        "placement": f"xtract/{region}/{hemi}",
                        **{m: 0.4 + shared - (drop[region] if patient else 0.0)
                           + (0.0 if m == "fa" else 1.0) for m in ("fa", "md", "ad", "rd")}}
                       for region in REGIONS for hemi in "LR"]
            + [{"atlas": "jhu", "region": "cc_splenium", "hemisphere": "bilateral",
                "fa": 0.5, "md": 1, "ad": 1, "rd": 1}]}
    effects = {"tracts": {f"hcp842/{r}": {"fa_change": c} for r, c in REGIONS.items()}}
    return {"participants": participants, "effects": effects}


def _measured(truth, *, gain, offset=-0.05, extra_ct=0.0, prefix="hcp842"):
    """A measure = offset + gain x truth (+ extra patient drop in the corticothalamic)."""
    rows = []
    for pid, part in truth["participants"].items():
        row = {"participant_id": pid[len("sub-"):]}  # the readers accept both forms
        for t in part["tracts"]:
            if t["atlas"] != "hcp842":
                continue
            value = offset + gain[t["region"]] * t["fa"]
            if t["region"] == "corticothalamic" and part["group"] == "ALS":
                value -= extra_ct
            row[f"{prefix}_{t['region']}_{t['hemisphere']}_fa_wmean"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def test_ratio_slope_r_and_leakage_are_the_constructed_ones():
    truth = _truth()
    gain = {"cst": 0.4, "corticostriatal": 0.6, "corticothalamic": 1.0}
    table = tract_validation(truth, _measured(truth, gain=gain, extra_ct=0.02))
    assert list(table.columns) == list(COLUMNS) and set(COLUMNS) <= set(DESCRIPTIONS)
    rows = table.set_index(["region", "hemisphere"])
    for region, g in gain.items():
        for hemi in "LR":
            row = rows.loc[(region, hemi)]
            assert row.placement == f"xtract/{region}/{hemi}"
            assert row.n_patients == 5 and row.n_controls == 5
            if region != "corticothalamic":
                assert row.slope == pytest.approx(g) and row.r == pytest.approx(1.0)
                assert row.ratio == pytest.approx(g)
                assert np.isnan(row.leakage)
    ct = rows.loc[("corticothalamic", "L")]
    assert ct.r < 0.99  # the extra patient drop is not in the truth

    def true_difference(region):
        values = {g: [t["fa"] for p in truth["participants"].values() if p["group"] == g
                      for t in p["tracts"] if (t["region"], t["hemisphere"]) == (region, "L")]
                  for g in ("ALS", "control")}
        return np.mean(values["ALS"]) - np.mean(values["control"])

    # measured difference = true + extra (-0.02)
    true_ct, true_cst = true_difference("corticothalamic"), true_difference("cst")
    assert ct.true_difference == pytest.approx(true_ct)
    assert ct.measured_difference == pytest.approx(true_ct - 0.02)
    assert ct.ratio == pytest.approx((true_ct - 0.02) / true_ct)
    assert ct.leakage == pytest.approx((true_ct - 0.02) / true_cst)
    assert ct.leakage_reference == "cst"
    assert ct.excess_leakage == pytest.approx(-0.02 / true_cst)
    assert rows.loc[("cst", "L")].bias == pytest.approx(
        np.mean([-0.05 + (0.4 - 1) * t["fa"] for p in truth["participants"].values()
                 for t in p["tracts"] if (t["region"], t["hemisphere"]) == ("cst", "L")]))


def test_a_second_measure_sits_side_by_side_and_missing_features_give_nan(tmp_path):
    truth = _truth()
    atlas = tract_validation(truth, _measured(truth, gain=dict.fromkeys(REGIONS, 0.4)))
    bundle = tract_validation(
        truth, _measured(truth, gain=dict.fromkeys(REGIONS, 0.9), prefix="hcp842bundle"),
        feature="hcp842bundle_{region}_{hemisphere}_{metric}_wmean", measure="bundle")
    missing = tract_validation(truth, pd.DataFrame({"participant_id": ["01"]}),
                               feature=SIMWEIGHTS, measure="simweights")
    assert missing["ratio"].isna().all() and (missing["n_patients"] == 0).all()
    table = pd.concat([atlas, bundle, missing], ignore_index=True)
    wide = side_by_side(table)
    assert len(wide) == 6
    assert wide["hcp842:ratio"].to_numpy() == pytest.approx(0.4)
    assert wide["bundle:ratio"].to_numpy() == pytest.approx(0.9)
    assert wide["simweights:ratio"].isna().all()
    assert list(wide.columns[:5]) == ["region", "hemisphere", "placement",
                                      "planted_fa_change", "true_difference"]
    assert "bundle:leakage" in format_side_by_side(table)
    path = write_validation(table, tmp_path / "v.tsv", meta={"Cohort": {"n": 10}})
    back = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    assert list(back.columns) == list(COLUMNS) and len(back) == 18
    assert json.loads(path.with_suffix(".json").read_text())["Cohort"] == {"n": 10}


def test_participant_tables_and_simulator_weights_are_read(tmp_path):
    out, bids = tmp_path / "derivatives", tmp_path / "bids"
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    rng = np.random.default_rng(2)
    fa = rng.uniform(0.2, 0.6, (6, 6, 4)).astype(np.float32)
    mask = np.ones((6, 6, 4), np.float32)
    mask[0] = 0
    w = np.zeros((6, 6, 4), np.float32)
    w[:3, :3] = 0.5
    w[1, 1] = 1.0
    truth = {"participants": {"sub-01": {"maps": {
        "tract/hcp842/cst/L": "derivatives/simulate-truth/sub-01/w.nii.gz",
        "focal/hcp842/cst/L": "derivatives/simulate-truth/sub-01/w.nii.gz"}}}}
    (bids / "derivatives/simulate-truth/sub-01").mkdir(parents=True)
    nib.save(nib.Nifti1Image(w, affine), bids / "derivatives/simulate-truth/sub-01/w.nii.gz")
    dwi = out / "sub-01" / "dwi"
    dwi.mkdir(parents=True)
    for metric in ("fa", "md", "ad", "rd"):
        nib.save(nib.Nifti1Image(fa, affine),
                 dwi / f"sub-01_space-dwi_model-tensor_param-{metric}_dwimap.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), dwi / "sub-01_desc-brain_mask.nii.gz")
    pd.DataFrame([("hcp842", "cst", "L", "fa", "wmean", 0.31, 10),
                  ("hcp842", "cst", "L", "fa", "mean", 0.35, 3)],
                 columns=["atlas", "region", "hemisphere", "metric", "statistic", "value",
                          "n_voxels"]).to_csv(dwi / "sub-01_desc-tracts_dwistats.tsv",
                                              sep="\t", index=False)
    features = participant_features(out)
    assert features.loc[0, "hcp842_cst_L_fa_wmean"] == 0.31
    assert features.loc[0, "participant_id"] == "sub-01"
    weights = simulator_weight_features(bids, out, truth)
    inside = w * mask  # alsmri's mask, the simulator's weights
    expected = float((inside * fa).sum() / inside.sum())
    assert weights.loc[0, "simweights_cst_L_fa_wmean"] == pytest.approx(expected, rel=1e-6)
    assert list(weights.columns).count("simweights_cst_L_fa_wmean") == 1  # focal maps skipped
    with pytest.raises(Exception, match="no participant tract table"):
        participant_features(tmp_path / "empty")


def test_bundle_coverage_is_the_planted_strength_the_bundle_sits_in(tmp_path):
    """Two streamlines through known voxels of a known truth map: coverage = their mean
    effect strength (weight / saturation, at most 1) over the truth-weighted mean strength,
    computed here by hand from the voxels each streamline crosses."""
    from nibabel.streamlines import Tractogram, TrkFile

    from bids_app.simulate.validation import bundle_coverage

    out, bids = tmp_path / "derivatives", tmp_path / "bids"
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    shape = (10, 6, 6)
    w = np.zeros(shape, np.float32)
    w[:, 2, 2] = 0.8  # saturated core (strength 1)
    w[:, 3, 2] = 0.2  # rim (strength 0.5)
    (bids / "derivatives/simulate-truth/sub-01").mkdir(parents=True)
    nib.save(nib.Nifti1Image(w, affine), bids / "derivatives/simulate-truth/sub-01/w.nii.gz")
    dwi = out / "sub-01" / "dwi"
    dwi.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine),
             dwi / "sub-01_desc-brain_mask.nii.gz")
    x = np.arange(0.0, 18.01, 0.5)  # voxel centres 0..9 along x (2 mm voxels)
    core = np.column_stack([x, np.full(x.size, 4.0), np.full(x.size, 4.0)])  # j = 2
    rim = np.column_stack([x, np.full(x.size, 6.0), np.full(x.size, 4.0)])  # j = 3
    header = {"voxel_to_rasmm": affine, "voxel_sizes": (2.0, 2.0, 2.0), "dimensions": shape,
              "voxel_order": "RAS"}
    TrkFile(Tractogram([core, core, rim], affine_to_rasmm=np.eye(4)), header=header).save(
        str(dwi / "sub-01_hemi-L_label-cst_desc-bundle_tractography.trk"))
    truth = {"measurement": {"effect_saturation": 0.4}, "participants": {"sub-01": {"maps": {
        "tract/hcp842/cst/L": "derivatives/simulate-truth/sub-01/w.nii.gz",
        "tract/hcp842/cst/R": "derivatives/simulate-truth/sub-01/w.nii.gz"}}}}
    table = bundle_coverage(bids, out, truth)
    assert len(table) == 1  # no right bundle written: left out
    planted = (0.8 * 1.0 + 0.2 * 0.5) / (0.8 + 0.2)  # truth-weighted strength per column
    seen = (2 * 1.0 + 1 * 0.5) / 3  # density 2 in the core column, 1 in the rim
    assert table.loc[0, "coverage"] == pytest.approx(seen / planted, rel=1e-6)
    assert table.loc[0, "inside"] == pytest.approx(1.0)
