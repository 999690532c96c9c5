"""``alsmri demo`` end to end: simulate a known-truth cohort, run participant + group, recover.

Runs the real pipeline on the default demo cohort (7 + 7; about 13 min on 2 cores, of which
~2 min build the simulation's base anatomy on a fresh clone).  The base anatomy is cached under
the repository's git-ignored ``.cache/simulate`` (shared with ``tests/test_simulate_dataset.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bids_validation import assert_valid

from bids_app.cli.run import main

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TRACTS = {("hcp842", region, hemi) for region in ("cst", "corticostriatal", "corticothalamic")
          for hemi in ("L", "R")}
PLANTED = ("cst", "corticostriatal")
FA_SCORES = {"alsfrs_r", "cmap_z_sum", "penn_score", "disease_duration"}
GM_SCORES = {"mrc_sum", "fvc"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, built_data_dir):
    out = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALSMRI_DATA", str(built_data_dir))
        mp.setenv("ALSMRI_CACHE", str(REPO / ".cache"))
        rc = main(["demo", str(out), "--nprocs", "2"])
    return rc, out


def test_demo_exits_zero_and_writes_the_table(demo_run):
    rc, out = demo_run
    assert rc == 0
    tsv = out / "recovery.tsv"
    assert tsv.is_file() and tsv.with_suffix(".json").is_file()
    meta = json.loads(tsv.with_suffix(".json").read_text())
    table = pd.read_csv(tsv, sep="\t", na_values=["n/a"], keep_default_na=False)
    for column in table.columns:  # every column is described in the sidecar
        assert column in meta or column in ("atlas", "region", "hemisphere", "metric",
                                            "score", "n_patients", "n_controls",
                                            "slope_ci_low", "slope_ci_high"), column
    assert {"--no-motion-correction"} <= set(meta["ParticipantOptions"])
    assert (out / "derivatives" / "group" / "group_desc-joined_participants.tsv").is_file()
    truth = json.loads((out / "bids" / "truth.json").read_text())
    n_patients = sum(p["group"] == "ALS" for p in truth["participants"].values())
    assert meta["Cohort"]["n_patients"] == n_patients >= 4


def test_demo_derivatives_pass_the_bids_validator(demo_run):
    """The demo's participant + group derivatives: 0 validator errors (warnings allowed)."""
    _, out = demo_run
    assert_valid(out / "derivatives")


def test_recovery_table_meets_the_issue_criteria(demo_run):
    """Re-check every criterion from the TSV's numbers (independently of ``passed``)."""
    _, out = demo_run
    table = pd.read_csv(out / "recovery.tsv", sep="\t", na_values=["n/a"],
                        keep_default_na=False)
    truth = json.loads((out / "bids" / "truth.json").read_text())
    n_patients = sum(p["group"] == "ALS" for p in truth["participants"].values())
    n_controls = len(truth["participants"]) - n_patients

    rows = table[table["check"] == "tract_difference"]
    assert set(zip(rows.atlas, rows.region, rows.hemisphere)) == TRACTS
    assert (rows.n_patients == n_patients).all() and (rows.n_controls == n_controls).all()
    assert ((rows.ci_low <= rows.recovered) & (rows.recovered <= rows.ci_high)).all()
    # lesioned tracts (placed independently of the measurement): significant, right sign;
    # the corticothalamic neighbour has no effect of its own and is reported only
    tracts = rows[rows.region.isin(PLANTED)]
    assert tracts.required.all() and not rows[~rows.region.isin(PLANTED)].required.any()
    assert (tracts.q < 0.05).all()
    assert (tracts.recovered < 0).all() and (tracts.planted < 0).all()
    assert (tracts.d_within_tolerance == ((tracts.recovered - tracts.planted).abs() <= 0.3)).all()

    control = table[table["check"] == "control_region"]
    assert list(zip(control.atlas, control.region, control.hemisphere)) == [
        ("jhu", "cc_splenium", "bilateral")]
    assert (control.q >= 0.05).all()

    gm = table[table["check"] == "gm_difference"]
    assert set(zip(gm.region, gm.hemisphere)) == {("precentral", "L"), ("precentral", "R")}
    assert (gm.recovered < 0).all() and (gm.planted < 0).all()

    corr = table[table["check"] == "score_correlation"].set_index("score")
    assert set(corr.index) == FA_SCORES | GM_SCORES
    fa_rows = corr.loc[sorted(FA_SCORES)]
    assert (fa_rows.metric == "fa").all() and fa_rows.required.all()
    assert (np.sign(fa_rows.recovered) == np.sign(fa_rows.planted)).all()
    assert np.isfinite(fa_rows.recovered_slope).all()
    assert (np.sign(fa_rows.recovered_slope) == np.sign(fa_rows.planted_slope)).all()

    required = table[table.required.astype(bool)]
    assert len(required) == len(tracts) + len(control) + len(gm) + len(FA_SCORES)
    assert required.passed.astype(bool).all()


def test_tract_validation_reports_ratios_against_the_independent_truth(demo_run):
    """``tract_validation.tsv``: the atlas-based tract means and alsmri's own maps under the
    simulator's weights, recomputed here from the truth and the participant tables."""
    _, out = demo_run
    table = pd.read_csv(out / "tract_validation.tsv", sep="\t", na_values=["n/a"],
                        keep_default_na=False)
    truth = json.loads((out / "bids" / "truth.json").read_text())
    assert set(table.measure) == {"hcp842", "simweights"}
    atlas = table[table.measure == "hcp842"].set_index(["region", "hemisphere"])
    groups = {pid: p["group"] for pid, p in truth["participants"].items()}
    for (region, hemi), row in atlas.iterrows():
        measured, true = {}, {}
        for pid in groups:
            stats = pd.read_csv(next((out / "derivatives" / pid / "dwi").glob(
                "*_desc-tracts_dwistats.tsv")), sep="\t")
            hit = stats[(stats.atlas == "hcp842") & (stats.region == region)
                        & (stats.hemisphere == hemi) & (stats.metric == "fa")
                        & (stats.statistic == "wmean")]
            measured[pid] = float(hit.value.iloc[0])
            true[pid] = next(t["fa"] for t in truth["participants"][pid]["tracts"]
                             if (t["region"], t["hemisphere"]) == (region, hemi))
        diff = {k: np.mean([v[p] for p in groups if groups[p] == "ALS"])
                - np.mean([v[p] for p in groups if groups[p] == "control"])
                for k, v in (("m", measured), ("t", true))}
        assert row.ratio == pytest.approx(diff["m"] / diff["t"], rel=1e-4)
    # lesioned tracts: the atlas mean recovers part of the true difference, never more
    for region in PLANTED:
        assert (0 < atlas.loc[region].ratio).all() and (atlas.loc[region].ratio < 1.2).all()
