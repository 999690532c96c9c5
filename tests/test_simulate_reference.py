"""The reference-study preset and the paper comparison (bids_app.simulate.reference,
bids_app.simulate.paper_comparison).

Two independent checks:

* the preset plants the paper's figures: a large cohort *planned* from the preset (the
  simulator's own draws, no images) has the paper's relative FA/AD and GM differences, its
  Cohen d, Table 2 correlations and the score correlations asked (scipy on the raw draws);
* the comparison reads the group level right: an oracle cohort (participant tables = the
  planted truth) through alsmri's group level gives back, for every figure, exactly the
  statistic statsmodels/scipy compute on the truth itself (alsmri's group statistics and the
  comparison's planted statistics are separate implementations).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bids_app.bids.outputs import ANAT_STATS, DWI_STATS, STATS_COLUMNS
from bids_app.reports.paper_comparison import write_paper_comparison_html
from bids_app.simulate.cohort import plan_cohort
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL, load_effects
from bids_app.simulate.paper_comparison import (
    COLUMNS,
    paper_comparison,
    power_correlation,
    power_difference,
    summary,
    write_comparison,
)
from bids_app.simulate.reference import (
    GM_REGIONS,
    TRACTS,
    load_reference,
    preset_effects,
    reference_path,
    value,
)
from bids_app.simulate.scores import generate_scores

pytestmark = pytest.mark.skipif(
    not reference_path("hsueh2023").is_file(),
    reason="needs $ALSMRI_SHARED/reference/hsueh2023.yaml")

BASE = {"fa": 0.45, "ad": 1.30e-3}


@pytest.fixture(scope="module")
def paper():
    return load_reference(reference_path("hsueh2023"))


@pytest.fixture(scope="module")
def effects():
    return load_effects(base_override=preset_effects("hsueh2023").effects)


def oracle_truth(effects: dict, n_patients: int, n_controls: int, seed: int) -> dict:
    """truth.json-like participants from the cohort plan alone: tract FA = base x planted
    relative changes, AD = base x axial change, RD/MD of the cylindrical tensor with that FA
    and AD, GM volume ratio = 1 + planted change; scores by the simulator's generator."""
    participants = {}
    for plan in plan_cohort(effects, n_patients=n_patients, n_controls=n_controls, seed=seed):
        tracts = []
        for key, change in plan.tract_changes.items():
            atlas, region, hemi = key.split("/")
            if atlas != "hcp842":
                continue
            fa = BASE["fa"] * (1 + change) * (1 + plan.disease_changes.get(key, 0.0))
            ad = BASE["ad"] * (1 + plan.axial_changes.get(key, 0.0))
            # FA^2 (a^2 + 2 r^2) = (a - r)^2 solved for the radial eigenvalue r < a
            qa, qb, qc = 2 * fa**2 - 1, 2 * ad, (fa**2 - 1) * ad**2
            rd = (-qb + np.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
            tracts.append({"atlas": atlas, "region": region, "hemisphere": hemi, "fa": fa,
                           "ad": ad, "rd": rd, "md": (ad + 2 * rd) / 3})
        gm = [{"atlas": k.split("/")[0], "region": k.split("/")[1],
               "hemisphere": k.split("/")[2], "volume_ratio": 1 + c}
              for k, c in plan.gm_changes.items()]
        participants[plan.participant_id] = {
            "group": plan.group, "age": plan.age, "sex": plan.sex,
            "onset_site": plan.onset_site, "tracts": tracts, "gm": gm}
    for pid, scores in generate_scores(participants, effects, seed=seed).items():
        participants[pid]["scores"] = scores
    return {"participants": participants}


def test_rd_of_the_oracle_tensor_has_the_asked_fa():
    from dipy.reconst.dti import fractional_anisotropy
    truth = oracle_truth(load_effects(), 2, 2, seed=1)
    t = truth["participants"]["sub-001"]["tracts"][0]
    evals = np.array([[t["ad"], t["rd"], t["rd"]]])
    assert fractional_anisotropy(evals)[0] == pytest.approx(t["fa"], rel=1e-9)


def test_preset_plants_the_papers_figures(paper, effects):
    """A 2000 + 2000 planned cohort: relative differences, d, Table 2 r and score r."""
    truth = oracle_truth(effects, 2000, 2000, seed=7)
    rows = []
    for p in truth["participants"].values():
        row = {"group": p["group"], **p["scores"]} if "scores" in p else {"group": p["group"]}
        for t in p["tracts"]:
            for m in ("fa", "ad"):
                row[f"{t['region']}_{t['hemisphere']}_{m}"] = t[m]
        for g in p["gm"]:
            row[f"gm_{g['region']}_{g['hemisphere']}"] = g["volume_ratio"]
        row["male"] = p["sex"] == "M"
        row["spinal"] = p["onset_site"] == "spinal"
        row["age"] = p["age"]
        rows.append(row)
    t = pd.DataFrame(rows)
    pat, con = t[t["group"] == PATIENT_LABEL], t[t["group"] == CONTROL_LABEL]
    diffs = paper["group_differences"]
    for tract, key in TRACTS.items():
        region = key.split("/")[1]
        for metric, figures in (("fa", diffs["fa"][tract]),
                                ("ad", diffs["ad_1e-3_mm2_s"][tract])):
            want = value(figures[0]) / value(figures[2]) - 1
            got = pat[f"{region}_L_{metric}"].mean() / con[f"{region}_L_{metric}"].mean() - 1
            assert got == pytest.approx(want, abs=0.01), (tract, metric)
        # Cohen d: the paper's (pooled printed SDs) vs the planted
        fa = diffs["fa"][tract]
        pooled = np.sqrt((38 * value(fa[1]) ** 2 + 31 * value(fa[3]) ** 2) / 69)
        d_paper = (value(fa[0]) - value(fa[2])) / pooled
        col = f"{region}_L_fa"
        sd = np.sqrt((pat[col].var() + con[col].var()) / 2)
        assert (pat[col].mean() - con[col].mean()) / sd == pytest.approx(d_paper, abs=0.15)
    gm = diffs["gm_pct_tiv"]["precentral"]
    assert pat["gm_precentral_L"].mean() / con["gm_precentral_L"].mean() - 1 == \
        pytest.approx(value(gm[0]) / value(gm[2]) - 1, abs=0.01)
    # Table 2: pooled GM-FA r near the paper's, averaged over the three tracts (one coupling)
    for region in GM_REGIONS:
        want = np.mean([np.sign(value(paper["table2"][tr][region][2]))
                        * np.sqrt(value(paper["table2"][tr][region][0])) for tr in TRACTS])
        got = np.mean([stats.pearsonr(t[f"gm_{region}_L"], t[f"{k.split('/')[1]}_L_fa"])[0]
                       for k in TRACTS.values()])
        assert got == pytest.approx(want, abs=0.06), region
    # demographics and the scores' primary driver correlations
    p1 = paper["table1"]["patients"]
    assert pat["male"].mean() == pytest.approx(p1["male"] / p1["n"], abs=0.03)
    assert pat["spinal"].mean() == pytest.approx(p1["spinal_onset"] / p1["n"], abs=0.03)
    assert pat["age"].mean() == pytest.approx(value(p1["age_at_study"]["mean"]), abs=1.0)
    for name, spec in effects["scores"].items():
        region = spec["driver"].split("/")[1]
        driver = (pat[f"{region}_L_fa"] + pat[f"{region}_R_fa"]) / 2
        r = stats.pearsonr(driver, pat[name])[0]
        # clipping at the instruments' ranges (Penn score near 0) attenuates r a little
        assert r == pytest.approx(spec["r"], abs=0.08), name


def test_power_against_statsmodels_and_simulation():
    from statsmodels.stats.power import TTestIndPower
    # two-sample: statsmodels' t power; a very large effect: 1 (statsmodels gives NaN there)
    for d in (0.2, 0.75, 1.5):
        assert power_difference(d, 39, 32) == pytest.approx(
            TTestIndPower().power(d, nobs1=39, ratio=32 / 39, alpha=0.05), abs=1e-6)
    assert power_difference(-6.4, 39, 32) == pytest.approx(1.0)
    # correlation: Monte Carlo of the Pearson test at r = 0.4, n = 39
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(4000):
        x = rng.standard_normal(39)
        y = 0.4 * x + np.sqrt(1 - 0.16) * rng.standard_normal(39)
        hits += stats.pearsonr(x, y)[1] < 0.05
    assert power_correlation(0.4, 37) == pytest.approx(hits / 4000, abs=0.03)


def _write_oracle_outputs(truth: dict, bids: Path, out: Path) -> None:
    """participants.tsv, phenotype and participant metrics tables holding the truth."""
    parts = truth["participants"]
    (bids / "phenotype").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        '{"Name": "oracle", "BIDSVersion": "1.9.0"}')
    pd.DataFrame([{"participant_id": pid, "age": p["age"], "sex": p["sex"],
                   "group": p["group"], "onset_site": p["onset_site"] or None}
                  for pid, p in parts.items()]).to_csv(
        bids / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    pd.DataFrame([{"participant_id": pid, **p.get("scores", {})} for pid, p in parts.items()]
                 ).to_csv(bids / "phenotype" / "clinical.tsv", sep="\t", index=False,
                          na_rep="n/a")
    for pid, p in parts.items():
        dwi = ["\t".join(STATS_COLUMNS)]
        for t in p["tracts"]:
            for m in ("fa", "md", "ad", "rd"):
                dwi.append(f"hcp842\t{t['region']}\t{t['hemisphere']}\t{m}\twmean\t"
                           f"{t[m]:.10g}\t1000")
        anat = ["\t".join(STATS_COLUMNS)]
        for g in p["gm"]:
            anat.append(f"aal\t{g['region']}\t{g['hemisphere']}\tgmv_pct_tiv\tratio\t"
                        f"{0.7 * g['volume_ratio']:.10g}\t1000")
        anat.append("aal\ttiv\tbilateral\tgmv\tsum\t1500000\t0")
        for output, lines in ((DWI_STATS, dwi), (ANAT_STATS, anat)):
            d = out / pid / output.datatype
            d.mkdir(parents=True, exist_ok=True)
            (d / (pid + output.glob().removeprefix("*"))).write_text("\n".join(lines) + "\n")


def test_oracle_cohort_through_the_group_level(tmp_path, paper, effects):
    from bids_app.group.run import run_group
    from bids_app.reports.group import write_outputs
    from bids_app.settings import ExecutionSettings, GroupSettings, Settings

    truth = oracle_truth(effects, 39, 32, seed=20261207)
    bids, out = tmp_path / "bids", tmp_path / "out"
    _write_oracle_outputs(truth, bids, out)
    spec = tmp_path / "spec.yaml"
    spec.write_text("scores: [alsfrs_r, mrc_sum, fvc, cmap_z_sum, penn_score]\n"
                    "interhemispheric_metrics: [fa]\nzscores: {enabled: false}\n"
                    "tract_correlations: {enabled: false}\n"
                    "side_scores: {enabled: false}\nduration_scatter: {enabled: false}\n"
                    "max_figure_panels: 1\n")
    settings = Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                    analysis_level="group",
                                                    work_dir=out / "w"),
                        group=GroupSettings(analysis_spec=spec))
    written = write_outputs(run_group(settings), out)
    table = paper_comparison(paper, written["report"].parent, truth)
    assert list(table.columns) == list(COLUMNS)
    # every figure of the paper is there, per hemisphere
    assert set(table["section"]) == {"table1", "group_differences", "table2", "gm_clinical",
                                     "table3"}
    n_t3 = sum(len(metrics) for score, tracts in paper["table3"].items()
               if score != "r2_reported" for metrics in tracts.values())
    assert (table["section"] == "table3").sum() == 2 * n_t3
    # alsmri's group statistics equal statsmodels/scipy on the truth (oracle measurement)
    imaging = table[table["section"] != "table1"]
    assert imaging["recovered_value"].notna().all(), imaging[imaging["recovered_value"].isna()]
    np.testing.assert_allclose(imaging["recovered_value"], imaging["planted_value"],
                               rtol=1e-6, atol=1e-6)
    # the recovered CI covers the recovered value and the power is a probability
    assert (imaging["ci_low"] <= imaging["recovered_value"]).all()
    assert (imaging["recovered_value"] <= imaging["ci_high"]).all()
    assert imaging["power"].between(0, 1).all(), imaging.loc[~imaging["power"].between(0, 1),
                                                             ["figure", "planted_effect"]]
    # Table 1 rows: the group level's means are the truth's
    age = table[(table["section"] == "table1") & (table["figure"] == f"age ({PATIENT_LABEL})")]
    ages = [p["age"] for p in truth["participants"].values() if p["group"] == PATIENT_LABEL]
    assert age["recovered_value"].iloc[0] == pytest.approx(np.mean(ages))
    result = summary(table)
    assert 0 <= result["agreement_rate"] <= 1 and result["n_required"] > 0
    path = write_comparison(table, tmp_path / "paper_comparison.tsv", meta={"summary": result})
    assert path.with_suffix(".json").is_file()
    page = write_paper_comparison_html(table, result, tmp_path / "paper_comparison.html",
                                       title="oracle").read_text()
    assert page.count("<h2>") == 5 and page.count("<tr") == len(table) + 5
    if os.environ.get("ALSMRI_KEEP"):
        print(table.to_string())
