"""The seeds' further analyses and the primary family, against scipy/statsmodels on the raw
inputs (the simulated table written to participants.tsv, phenotype/ and the metrics files)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests
from synthetic_group import SIDE_SCORES, simulate_table, write_cohort

from bids_app.bids.outputs import GROUP_DIR, GROUP_FIGURES
from bids_app.bids.outputs import GROUP_OUTPUTS as OUTPUTS
from bids_app.group.notes import Notes
from bids_app.group.run import run_group
from bids_app.group.seeds import discover_side_columns
from bids_app.group.spec import load_aliases, load_spec
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

SPEC = "metrics: [fa, md, gmv_pct_tiv]\nscores: [alsfrs_r]\ninterhemispheric_metrics: [fa]\n"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    table = simulate_table(24, 16, seed=11)
    write_cohort(table, root / "bids", root / "out")
    (root / "spec.yaml").write_text(SPEC)
    settings = Settings(execution=ExecutionSettings(
        bids_dir=root / "bids", output_dir=root / "out", analysis_level="group",
        work_dir=root / "w"), group=GroupSettings(analysis_spec=root / "spec.yaml"))
    write_outputs(run_group(settings), root / "out")
    raw = pd.read_csv(root / "bids" / "participants.tsv", sep="\t").merge(
        pd.read_csv(root / "bids" / "phenotype" / "clinical.tsv", sep="\t",
                    na_values=["n/a"]), on="participant_id")
    features = table.drop(columns=[c for c in table.columns if c in raw.columns
                                   and c != "participant_id"])
    # the values as the metrics files hold them (8 significant digits)
    cols = [c for c in features.columns if c != "participant_id"]
    features[cols] = features[cols].map(lambda v: float(f"{v:.8g}"))
    return raw.merge(features, on="participant_id"), root / "out" / GROUP_DIR


def read(group_dir, key):
    return pd.read_csv(group_dir / OUTPUTS[key], sep="\t", na_values=["n/a"])


def test_side_columns_discovered_through_aliases():
    spec = load_spec()
    columns = ["participant_id", "Penn UMN right", "Penn UMN left", "musix_R", "musix_L",
               "munixr", "onset_site", "alsfrs_r"]
    found = discover_side_columns(columns, spec, load_aliases(), notes=Notes())
    assert found == (("musix", "musix_L", "musix_R"),
                     ("penn_score", "Penn UMN left", "Penn UMN right"))


def test_side_scores_equal_statsmodels(cohort):
    raw, group_dir = cohort
    side = read(group_dir, "sidescores")
    pat = raw[raw.group == "ALS"].rename(columns={"Penn UMN right": "penn_r"})
    row = side[(side.score_column == "Penn UMN right") & (side.region == "cst")
               & (side.atlas == "hcp842") & (side.hemisphere == "L")].iloc[0]
    assert row.relation == "contralateral" and row.side == "R"
    assert SIDE_SCORES["Penn UMN right"][0] == "hcp842_cst_L_fa_wmean"
    fit = smf.ols("penn_r ~ hcp842_cst_L_fa_wmean + age + C(sex) + disease_duration",
                  data=pat).fit()
    assert row.beta == pytest.approx(fit.params["hcp842_cst_L_fa_wmean"], rel=1e-8)
    assert row.p == pytest.approx(fit.pvalues["hcp842_cst_L_fa_wmean"], rel=1e-8)
    r = stats.pearsonr(pat["penn_r"], pat["hcp842_cst_L_fa_wmean"])
    assert row.pearson_r == pytest.approx(r.statistic, rel=1e-10) and row.pearson_r < -0.5
    ipsi = side[(side.score_column == "Penn UMN right") & (side.region == "cst")
                & (side.atlas == "hcp842") & (side.hemisphere == "R")].iloc[0]
    assert ipsi.relation == "ipsilateral"


def test_onset_subgroups_equal_scipy_and_statsmodels(cohort):
    raw, group_dir = cohort
    onset = read(group_dir, "onset")
    assert set(onset.subgroup) == {"spinal", "bulbar"}
    for name in ("spinal", "bulbar"):
        sub = raw[(raw.group == "control") | (raw.onset_site == name)].copy()
        sub["is_sub"] = (sub.group == "ALS").astype(float)
        row = onset[(onset.subgroup == name) & (onset.atlas == "hcp842")
                    & (onset.region == "cst") & (onset.hemisphere == "L")
                    & (onset.metric == "fa")].iloc[0]
        xp, xc = (sub.loc[sub.is_sub == 1, "hcp842_cst_L_fa_wmean"],
                  sub.loc[sub.is_sub == 0, "hcp842_cst_L_fa_wmean"])
        assert row.n_patient == len(xp) and row.n_control == len(xc) == 16
        want = (stats.mannwhitneyu(xp, xc).pvalue if row.test == "mann-whitney" else
                stats.ttest_ind(xp, xc, equal_var=row.test == "student").pvalue)
        assert row.p == pytest.approx(want, rel=1e-10)
        fit = smf.ols("hcp842_cst_L_fa_wmean ~ is_sub + age + C(sex)", data=sub).fit()
        assert row.adj_beta == pytest.approx(fit.params["is_sub"], rel=1e-8)


def test_tract_correlations_equal_scipy(cohort):
    raw, group_dir = cohort
    tc = read(group_dir, "tractcorr")
    row = tc[(tc.subset == "patient") & (tc.statistic == "wmean") & (tc.region_a == "cst")
             & (tc.hemisphere_a == "L") & (tc.region_b == "corticothalamic")
             & (tc.hemisphere_b == "R")].iloc[0]
    pat = raw[raw.group == "ALS"]
    r = stats.pearsonr(pat["hcp842_cst_L_fa_wmean"], pat["hcp842_corticothalamic_R_fa_wmean"])
    assert (row.r, row.p) == (pytest.approx(r.statistic), pytest.approx(r.pvalue))
    fam = tc[tc.family == row.family]
    assert np.allclose(fam.q, multipletests(fam.p, method="fdr_bh")[1])


def test_full_gm_tract_matrix_and_primary_family(cohort):
    _, group_dir = cohort
    gm = read(group_dir, "gmtract")
    hcp = gm[(gm.subset == "all") & (gm.tract_atlas == "hcp842") & (gm.hemisphere == "L")]
    assert len(hcp) == 6 * 3 + 2                  # six GM regions x 3 tracts + caudate/putamen
    assert set(hcp.gm_region) == {"precentral", "superior_frontal", "middle_frontal",
                                  "medial_superior_frontal", "striatum", "thalamus",
                                  "caudate", "putamen"}
    comp = read(group_dir, "comparisons")
    prim = comp[comp.primary]
    assert {"cst", "corticostriatal", "corticothalamic", "mcp", "precentral"} <= set(prim.region)
    assert not comp[comp.region.isin(["plic", "cerebral_peduncle"])].primary.any()
    assert np.allclose(prim.primary_q, multipletests(prim.p, method="fdr_bh")[1])
    assert comp[~comp.primary].primary_q.isna().all()


def test_diffusivities_in_analysis_units(cohort):
    raw, group_dir = cohort
    comp = read(group_dir, "comparisons")
    row = comp[(comp.atlas == "hcp842") & (comp.region == "cst") & (comp.hemisphere == "R")
               & (comp.metric == "md")].iloc[0]
    want = raw.loc[raw.group == "ALS", "hcp842_cst_R_md_wmean"].mean() * 1e3
    assert row.mean_patient == pytest.approx(want, rel=1e-7) and 0.5 < row.mean_patient < 1.2
    meta = json.loads((group_dir / OUTPUTS["comparisons"]).with_suffix(".json").read_text())
    assert meta["MetricUnits"]["md"] == "10^-3 mm^2/s"


def test_seed_figures_drawn_and_switchable(cohort, tmp_path):
    _, group_dir = cohort
    for key in ("duration_scatter", "gmtract_matrix", "tractcorr", "onset_boxplots",
                "sidescores", "heatmap"):
        assert (group_dir / GROUP_FIGURES[key]).stat().st_size > 5000, key
    off = tmp_path / "off.yaml"
    off.write_text(SPEC + "".join(f"{k}: {{enabled: false}}\n" for k in (
        "side_scores", "onset_subgroups", "tract_correlations", "duration_scatter")))
    spec = load_spec(off)
    assert not (spec.side_scores.enabled or spec.onset_subgroups.enabled
                or spec.tract_correlations.enabled or spec.duration_scatter.enabled)
