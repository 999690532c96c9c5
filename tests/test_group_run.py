"""End-to-end group level: simulated ALS cohort, outputs, sidecars and every bad-input case."""

from __future__ import annotations

import inspect
import json
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_group import TRUE_SLOPES, simulate_table, write_cohort

from bids_app.bids.outputs import GROUP_DIR, GROUP_FIGURES
from bids_app.bids.outputs import GROUP_OUTPUTS as OUTPUTS
from bids_app.cli.run import main
from bids_app.errors import EXIT_NO_DATA, BadDataError, NoDataError, UsageError
from bids_app.group import spec as spec_module
from bids_app.group.notes import Notes
from bids_app.group.run import GroupResults, run_group, warn_unmatched_imaging_names
from bids_app.group.spec import load_spec
from bids_app.reports.group import (
    association_scatter,
    group_boxplots,
    write_outputs,
)
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

STATS_TABLES = ("comparisons", "clinical", "duration", "gmtract", "interhemispheric")
FAST_SPEC = "metrics: [fa]\nscores: [alsfrs_r, cmap_z_sum]\ninterhemispheric_metrics: [fa]\n"


def settings(bids: Path, out: Path, **group) -> Settings:
    return Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                analysis_level="group", work_dir=out / "w"),
                    group=GroupSettings(**group))


def run(settings: Settings) -> Path:
    """Analyse, then write the outputs (what the command line does); return the group dir."""
    results = run_group(settings)
    assert isinstance(results, GroupResults)
    written = write_outputs(results, settings.execution.output_dir)
    assert written["report"].parent == settings.execution.output_dir / GROUP_DIR
    return written["report"].parent


def small_cohort(tmp_path: Path, n_patients: int = 8, n_controls: int = 6, *, seed: int = 3):
    bids, out = tmp_path / "bids", tmp_path / "out"
    write_cohort(simulate_table(n_patients, n_controls, seed=seed), bids, out)
    spec = tmp_path / "fast.yaml"
    spec.write_text(FAST_SPEC)
    return bids, out, spec


def read(out: Path, key: str) -> pd.DataFrame:
    return pd.read_csv(out / GROUP_DIR / OUTPUTS[key], sep="\t", na_values=["n/a"])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The 39 ALS / 32 control cohort analysed once with the default spec."""
    root = tmp_path_factory.mktemp("study")
    table = simulate_table(39, 32, seed=20261122)
    write_cohort(table, root / "bids", root / "out")
    group_dir = run(settings(root / "bids", root / "out"))
    return table, root / "out", group_dir


def test_simulated_study_recovers_slopes(study):
    _, out, group_dir = study
    assert group_dir == out / "group"
    clin = read(out, "clinical")
    assert set(clin["score"]) == {"alsfrs_r", "mrc_sum", "fvc", "cmap_z_sum", "penn_score",
                                  "munix", "musix", "dynamometry"}  # ALSFRS-R via the alias
    for score, (feature, slope) in TRUE_SLOPES.items():
        atlas, region, hemi = feature.split("_")[:3]
        metric = "fa" if feature.endswith("fa_wmean") else "gmv_pct_tiv"
        row = clin[(clin.score == score) & (clin.atlas == atlas) & (clin.region == region)
                   & (clin.hemisphere == hemi) & (clin.metric == metric)].iloc[0]
        assert row.n == 39
        assert row.covariates == "age,sex=M,disease_duration"
        assert row.ci_low < slope < row.ci_high, (score, row.beta, row.ci_low, row.ci_high)
        assert row.p < 0.05


def test_simulated_study_group_difference_and_tables(study):
    table, out, _ = study
    comp = read(out, "comparisons")
    cst = comp[(comp.atlas == "hcp842") & (comp.region == "cst") & (comp.metric == "fa")]
    assert (cst.n_patient == 39).all() and (cst.n_control == 32).all()
    assert (cst.mean_patient < cst.mean_control).all() and (cst.q < 0.05).all()
    assert set(comp.family) == {"fa", "md", "ad", "rd", "gmv_pct_tiv"}
    joined = read(out, "joined")
    assert len(joined) == 71 and "alsfrs_r" in joined and "ALSFRS-R" not in joined
    assert "hcp842_cst_L_fa_wmean" in joined
    # label-atlas ROIs (JHU: no probability weights, only "mean") enter the analyses too
    assert {"jhu_cst_L_fa_mean", "jhu_mcp_bilateral_fa_mean"} <= set(joined.columns)
    jhu = comp[(comp.atlas == "jhu") & (comp.metric == "fa")]
    assert set(jhu.region) == {"cst", "cerebral_peduncle", "plic", "mcp"}
    assert (jhu.statistic == "mean").all() and jhu.p.notna().all()
    np.testing.assert_allclose(joined.set_index("participant_id")["hcp842_cst_L_fa_wmean"],
                               table.set_index("participant_id")["hcp842_cst_L_fa_wmean"],
                               rtol=1e-7)
    sidecar = json.loads((out / "group" / OUTPUTS["joined"]).with_suffix(".json").read_text())
    assert sidecar["alsfrs_r"]["OriginalName"] == "ALSFRS-R"
    assert sidecar["age"]["Units"] == "year"
    assert sidecar["hcp842_cst_L_md_wmean"]["Units"] == "mm^2/s"
    gm = read(out, "gmtract")
    assert {"all", "patient", "control"} == set(gm.subset)
    assert {("precentral", "cst"), ("thalamus", "corticothalamic")} <= set(
        zip(gm.gm_region, gm.tract_region))
    lr = read(out, "interhemispheric")
    assert {"r", "ai_mean", "paired_t"} <= set(lr.columns)
    dur = read(out, "duration")
    assert set(dur.score) == {"disease_duration"}
    fa = dur[(dur.atlas == "hcp842") & (dur.region == "cst") & (dur.metric == "fa")]
    assert (fa.pearson_r < 0).all()   # FA falls with disease duration in the simulation
    incl = read(out, "inclusion")
    assert incl.in_comparisons.all() and incl.in_clinical.sum() == 39


def test_every_tsv_has_a_sidecar_describing_every_column(study):
    _, _, group_dir = study
    for key in ("joined", "inclusion", *STATS_TABLES):
        path = group_dir / OUTPUTS[key]
        columns = pd.read_csv(path, sep="\t", nrows=0).columns
        meta = json.loads(path.with_suffix(".json").read_text())
        units = meta.pop("MetricUnits", None)   # units of the values per metric
        assert units is None or units.get("md", "10^-3 mm^2/s") == "10^-3 mm^2/s", key
        assert list(meta) == list(columns), key
        assert all(m["Description"] != "No description" for m in meta.values()), key
    assert not list(group_dir.rglob("*.tmp"))


def test_report_and_figures(study):
    _, _, group_dir = study
    html = (group_dir / "report.html").read_text()
    for name in ("group_desc-comparisons_heatmap.png", "group_desc-comparisons_boxplot.png",
                 "group_desc-clinical_scatter.png"):
        assert (group_dir / "figures" / name).stat().st_size > 1000
        assert f"figures/{name}" in html
    assert "39 patient(s), 32 control(s)" in html
    spec = json.loads((group_dir / OUTPUTS["spec"]).read_text())
    assert spec["fdr_alpha"] == 0.05 and spec["skipped"] == {}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG (IHDR chunk)."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def panels(path: Path) -> tuple[int, int]:
    """Columns and rows of a panel grid drawn by ``reports.group`` (3.2 x 3.0 in at 90 dpi)."""
    width, height = png_size(path)
    return round(width / (3.2 * 90)), round(height / (3.0 * 90))


def test_figure_panels_follow_the_spec(study):
    """13 significant comparisons, max_figure_panels 8 in the packaged spec: 4 x 2 panels."""
    _, out, group_dir = study
    assert read(out, "comparisons").significant.sum() > 8
    assert load_spec().max_figure_panels == 8
    assert panels(group_dir / "figures" / "group_desc-comparisons_boxplot.png") == (4, 2)
    assert panels(group_dir / "figures" / "group_desc-clinical_scatter.png") == (4, 2)
    for function in (group_boxplots, association_scatter):
        parameter = inspect.signature(function).parameters["max_panels"]
        assert parameter.default is inspect.Parameter.empty, function.__name__


def test_packaged_spec_value_reaches_the_analysis(tmp_path, monkeypatch):
    """The packaged YAML is the only source of defaults: changing it changes the analysis."""
    packaged = spec_module.packaged_spec_path().read_text()
    changed = tmp_path / "analysis_spec.yaml"
    edits = {"\ncovariates: [age, sex]\n": "\ncovariates: [age]\n",
             "\nclinical_covariates: [age, sex, disease_duration]\n":
                 "\nclinical_covariates: [sex]\n",
             "\nmax_figure_panels: 8\n": "\nmax_figure_panels: 2\n"}
    for old, new in edits.items():
        assert packaged.count(old) == 1, old
        packaged = packaged.replace(old, new)
    changed.write_text(packaged)
    monkeypatch.setattr(spec_module, "packaged_spec_path", lambda: changed)
    bids, out, spec = small_cohort(tmp_path)
    group_dir = run(settings(bids, out, analysis_spec=spec))
    comp = read(out, "comparisons")
    assert (comp.adj_covariates == "age").all() and comp.significant.sum() >= 2
    assert (read(out, "clinical").covariates == "sex=M").all()
    assert (read(out, "duration").covariates == "sex=M").all()
    assert (read(out, "gmtract").covariates == "age,sex=M").all()   # gm_tract.covariates
    assert panels(group_dir / "figures" / "group_desc-comparisons_boxplot.png") == (2, 1)
    resolved = json.loads((group_dir / OUTPUTS["spec"]).read_text())
    assert resolved["max_figure_panels"] == 2 and resolved["covariates"] == ["age"]


def cli_group(bids: Path, out: Path, spec: Path, *options: str) -> None:
    assert main([str(bids), str(out), "group", "--skip-bids-validation", "--analysis-spec",
                 str(spec), *options]) == 0


def test_covariates_option_keeps_clinical_covariates(tmp_path):
    """--covariates sets the comparison and GM-vs-tract models, not the clinical ones."""
    bids, out, spec = small_cohort(tmp_path)
    cli_group(bids, out, spec, "--covariates", "age")
    assert (read(out, "comparisons").adj_covariates == "age").all()
    assert (read(out, "gmtract").covariates == "age").all()
    assert (read(out, "clinical").covariates == "age,sex=M,disease_duration").all()
    assert (read(out, "duration").covariates == "age,sex=M").all()


def test_clinical_covariates_option_changes_only_clinical_models(tmp_path):
    bids, out, spec = small_cohort(tmp_path)
    cli_group(bids, out, spec, "--clinical-covariates", "age")
    assert (read(out, "clinical").covariates == "age").all()
    assert (read(out, "duration").covariates == "age").all()
    assert (read(out, "comparisons").adj_covariates == "age,sex=M").all()
    assert (read(out, "gmtract").covariates == "age,sex=M").all()
    cli_group(bids, out, spec, "--clinical-covariates")   # none: unadjusted
    assert read(out, "clinical").covariates.isna().all()
    assert (read(out, "comparisons").adj_covariates == "age,sex=M").all()


# ----------------------------------------------------------------------------- bad input
def test_no_participant_outputs_exit_18(tmp_path):
    (tmp_path / "bids").mkdir()
    (tmp_path / "out").mkdir()
    with pytest.raises(NoDataError, match="run the participant level first") as err:
        run(settings(tmp_path / "bids", tmp_path / "out"))
    assert err.value.exit_code == EXIT_NO_DATA == 18


def test_missing_participants_tsv_keeps_joined_table(tmp_path, warnings_log):
    bids, out, _ = small_cohort(tmp_path)
    (bids / "participants.tsv").unlink()
    shutil.rmtree(bids / "phenotype")
    group_dir = run(settings(bids, out))   # default spec: names cannot be checked
    assert len(read(out, "joined")) == 14
    assert read(out, "comparisons").empty and read(out, "clinical").empty
    assert "participants.tsv: missing" in warnings_log.text
    assert "group comparisons skipped" in warnings_log.text
    assert "comparisons" in json.loads((group_dir / OUTPUTS["spec"]).read_text())["skipped"]
    assert (group_dir / "report.html").is_file()


def test_group_column_absent_or_single_level(tmp_path, warnings_log):
    bids, out, spec = small_cohort(tmp_path)
    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    parts.drop(columns="group").to_csv(bids / "participants.tsv", sep="\t", index=False)
    run(settings(bids, out, analysis_spec=spec))
    assert "group_column: column(s) ['group'] not in the phenotype data" in warnings_log.text
    assert read(out, "comparisons").empty
    assert not read(out, "clinical").empty   # falls back to every participant
    parts.assign(group="ALS").to_csv(bids / "participants.tsv", sep="\t", index=False)
    warnings_log.clear()
    run(settings(bids, out, analysis_spec=spec))
    assert "only one group level present" in warnings_log.text
    assert read(out, "comparisons").empty and (read(out, "clinical").n == 8).all()


def test_user_named_unknown_column_is_usage_error(tmp_path):
    bids, out, spec = small_cohort(tmp_path)
    with pytest.raises(UsageError, match=r"'not_a_score'.*participants.tsv") as err:
        run(settings(bids, out, analysis_spec=spec, scores=("not_a_score",)))
    assert err.value.exit_code == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("group_column: diagnosis_typo\n")
    with pytest.raises(UsageError, match=f"{bad}.*diagnosis_typo"):
        run(settings(bids, out, analysis_spec=bad))


def test_unreadable_score_value_is_missing_for_that_participant_only(tmp_path, warnings_log):
    """One bad value no longer drops the column: that participant's value is n/a, named."""
    bids, out, spec = small_cohort(tmp_path)
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t", dtype=str)
    clin.loc[0, "cmap_z_sum"] = "not done"
    clin.loc[1, "cmap_z_sum"] = "n/a"
    clin.to_csv(bids / "phenotype" / "clinical.tsv", sep="\t", index=False)
    run(settings(bids, out, analysis_spec=spec))
    assert ("clinical.tsv: column 'cmap_z_sum': value(s) not readable, missing for those "
            "participants only: sub-00001 'not done'") in warnings_log.text
    clinical = read(out, "clinical")
    assert set(clinical.score) == {"alsfrs_r", "cmap_z_sum"}
    assert (clinical.query("score == 'cmap_z_sum'").n == 6).all()   # 8 patients, 2 n/a
    incl = read(out, "inclusion").set_index("participant_id")
    assert incl.loc["sub-00001", "unreadable_phenotype"] == "cmap_z_sum='not done'"
    assert incl.loc["sub-00001", "n_unreadable_phenotype"] == 1
    assert pd.isna(incl.loc["sub-00002", "unreadable_phenotype"])   # n/a is not an error


def test_tiny_cells_and_constant_columns_write_reasons(tmp_path):
    bids, out, spec = small_cohort(tmp_path, n_patients=2, n_controls=5)
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t")
    clin["cmap_z_sum"] = -3.0
    clin.to_csv(bids / "phenotype" / "clinical.tsv", sep="\t", index=False, na_rep="n/a")
    run(settings(bids, out, analysis_spec=spec))
    comp = read(out, "comparisons")
    assert (comp.n_patient == 2).all() and comp.reason.str.contains("n < 3").all()
    assert comp.p.isna().all()
    clin_out = read(out, "clinical")
    assert (clin_out.n == 2).all() and clin_out.reason.str.contains("n < 3").all()
    bids2, out2, spec2 = small_cohort(tmp_path / "b", n_patients=10, n_controls=5)
    clin = pd.read_csv(bids2 / "phenotype" / "clinical.tsv", sep="\t")
    clin["cmap_z_sum"] = -3.0
    clin.to_csv(bids2 / "phenotype" / "clinical.tsv", sep="\t", index=False, na_rep="n/a")
    run(settings(bids2, out2, analysis_spec=spec2))
    cmap = read(out2, "clinical").query("score == 'cmap_z_sum'")
    assert (cmap.reason == "constant outcome").all() and (cmap.n == 10).all()


def test_phenotype_without_imaging_and_imaging_without_phenotype(tmp_path, warnings_log):
    bids, out, spec = small_cohort(tmp_path)
    shutil.rmtree(out / "sub-00002")
    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    parts[parts.participant_id != "sub-00003"].to_csv(bids / "participants.tsv", sep="\t",
                                                      index=False)
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t")
    clin[clin.participant_id != "sub-00003"].to_csv(bids / "phenotype" / "clinical.tsv",
                                                    sep="\t", index=False, na_rep="n/a")
    run(settings(bids, out, analysis_spec=spec))
    assert "without participant outputs: sub-00002" in warnings_log.text
    assert "imaging but no phenotype row: sub-00003" in warnings_log.text
    incl = read(out, "inclusion").set_index("participant_id")
    assert not incl.loc["sub-00002", "has_dwi"] and incl.loc["sub-00002", "has_phenotype"]
    assert incl.loc["sub-00003", "has_dwi"] and not incl.loc["sub-00003", "has_phenotype"]
    assert "sub-00002" not in set(read(out, "joined").participant_id)


def test_one_participant_dataset_completes(ds_xa30, tmp_path, warnings_log):
    """The real ds-xa30 (participants.tsv with participant_id only) and one subject's tables."""
    out = tmp_path / "out"
    table = simulate_table(1, 0, seed=1).assign(participant_id="sub-01")
    write_cohort(table, tmp_path / "scratch", out)
    group_dir = run(settings(ds_xa30, out))
    joined = read(out, "joined")
    assert joined.participant_id.tolist() == ["sub-01"] and joined.shape[1] > 50
    assert (group_dir / "report.html").is_file()
    for key in STATS_TABLES:
        assert (group_dir / OUTPUTS[key]).is_file()
    assert "group comparisons skipped" in warnings_log.text


def test_sessions_join_and_first_session_policy(tmp_path):
    bids, out, spec = small_cohort(tmp_path)
    for sub in sorted(p.name for p in out.glob("sub-*")):
        for ses in ("1", "2"):
            for kind, name in (("dwi", "desc-tracts_dwistats"), ("anat", "desc-gmvolume_morph")):
                dest = out / sub / f"ses-{ses}" / kind
                dest.mkdir(parents=True)
                text = (out / sub / kind / f"{sub}_{name}.tsv").read_text()
                (dest / f"{sub}_ses-{ses}_{name}.tsv").write_text(text)
        shutil.rmtree(out / sub / "dwi")
        shutil.rmtree(out / sub / "anat")
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t")
    visits = pd.concat([clin.assign(session_id="ses-1"),
                        clin.assign(session_id="ses-2", cmap_z_sum=clin.cmap_z_sum - 1)])
    visits.to_csv(bids / "phenotype" / "clinical.tsv", sep="\t", index=False, na_rep="n/a")
    run(settings(bids, out, analysis_spec=spec))
    joined = read(out, "joined")
    assert len(joined) == 28 and set(joined.session_id) == {"ses-1", "ses-2"}
    ses2 = joined[joined.session_id == "ses-2"].set_index("participant_id").cmap_z_sum
    ses1 = joined[joined.session_id == "ses-1"].set_index("participant_id").cmap_z_sum
    np.testing.assert_allclose(ses2.dropna(), (ses1 - 1).dropna())
    incl = read(out, "inclusion")
    assert incl[incl.in_cross_sectional].session_id.eq("ses-1").all()


def test_malformed_participant_table_is_bad_data(tmp_path):
    bids, out, spec = small_cohort(tmp_path)
    path = next(out.glob("sub-*/dwi/*_dwistats.tsv"))
    path.write_text("atlas\tregion\tvalue\nhcp842\tcst\t0.5\n")
    with pytest.raises(BadDataError, match=path.name):
        run(settings(bids, out, analysis_spec=spec))


def test_real_participants_example_with_non_numeric_age(shared_data, tmp_path, warnings_log):
    """bids-examples genetics_ukbb participants.tsv: group patient/control, age with '89+'."""
    bids = shared_data / "bids" / "participants-example"
    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    out = tmp_path / "out"
    table = simulate_table(len(parts), 0, seed=5).assign(
        participant_id=parts.participant_id.to_numpy())
    write_cohort(table, tmp_path / "scratch", out)
    spec = tmp_path / "spec.yaml"
    spec.write_text("metrics: [fa]\nscores: []\ninterhemispheric_metrics: [fa]\n")
    run(settings(bids, out, analysis_spec=spec))
    over = parts.loc[parts.age.astype(str) == "89+", "participant_id"].tolist()
    assert len(over) == 4
    assert ("participants.tsv: column 'age': value(s) not readable, missing for those "
            "participants only: " + ", ".join(f"{p} '89+'" for p in over)) in warnings_log.text
    comp = read(out, "comparisons")
    assert (comp.n_patient == 7).all() and (comp.n_control == 7).all()
    # age kept as a covariate (n/a for the four '89+'), sex dummy-coded
    assert (comp.adj_covariates == "age,sex=M").all() and (comp.adj_n == 10).all()
    incl = read(out, "inclusion").set_index("participant_id")
    assert (incl.loc[over, "unreadable_phenotype"] == "age='89+'").all()
    joined = read(out, "joined")
    assert {"genetic_id", "BatchID", "age"} <= set(joined.columns)
    sidecar = json.loads((out / "group" / OUTPUTS["joined"]).with_suffix(".json").read_text())
    assert sidecar["sex"]["Levels"] == {"M": "male", "F": "female"}


def test_cli_group_level_exit_codes(tmp_path):
    bids, out, spec = small_cohort(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(bids), str(empty), "group", "--skip-bids-validation"]) == 18
    assert main([str(bids), str(out), "group", "--skip-bids-validation",
                 "--analysis-spec", str(spec), "--scores", "nope"]) == 64
    assert main([str(bids), str(out), "group", "--skip-bids-validation",
                 "--analysis-spec", str(spec), "--scores", "ALSFRS-R"]) == 0
    assert set(read(out, "clinical").score) == {"alsfrs_r"}


def test_spec_metrics_and_regions_without_data_are_named():
    """A spec metric/region that no participant table has is named, not silently empty."""
    catalogue = pd.DataFrame({"metric": ["fa", "md", "gmv_pct_tiv"],
                              "region": ["cst", "cst", "precentral"]})
    default = load_spec()
    spec = replace(default, metrics=("fa", "kurtosis"), interhemispheric_metrics=("fa",),
                   gm_tract=replace(default.gm_tract, pairs=(("precentral", "cst"),
                                                             ("insula", "cst"))))
    notes = Notes()
    messages = warn_unmatched_imaging_names(spec, catalogue, notes=notes)
    assert len(messages) == 2 and notes.warnings == messages
    assert "'metrics'" in messages[0] and "['kurtosis']" in messages[0]
    assert "insula" in messages[1] and "precentral" not in messages[1]


def test_incomplete_participant_tables_are_named_and_listed(tmp_path, warnings_log):
    """A table cut at a line boundary or left header-only: a warning naming the file, the
    inclusion table lists the features it lacks, header-only counts as no DWI."""
    bids, out, spec = small_cohort(tmp_path)
    cut = out / "sub-00002" / "dwi" / "sub-00002_desc-tracts_dwistats.tsv"
    empty = out / "sub-00011" / "dwi" / "sub-00011_desc-tracts_dwistats.tsv"
    assert cut.is_file() and empty.is_file()
    lines = cut.read_text().splitlines()
    kept = lines[:len(lines) // 2]
    cut.write_text("\n".join(kept) + "\n")
    empty.write_text(lines[0] + "\n")
    lost = {"_".join(line.split("\t")[:5]) for line in lines[len(lines) // 2:]}
    group_dir = run(settings(bids, out, analysis_spec=spec))
    text = warnings_log.text
    assert f"{cut}: lacks {len(lost)} of the " in text
    assert f"{empty}: holds no metric rows (header only)" in text
    incl = read(out, "inclusion").set_index("participant_id")
    assert incl.loc["sub-00002", "n_missing_features"] == len(lost)
    assert set(incl.loc["sub-00002", "missing_features"].split(";")) == lost
    assert not incl.loc["sub-00011", "has_dwi"] and incl.loc["sub-00011", "has_anat"]
    complete = incl.drop(index=["sub-00002", "sub-00011"])
    assert (complete["n_missing_features"] == 0).all()
    assert complete["missing_features"].isna().all()
    sidecar = json.loads((group_dir / OUTPUTS["inclusion"]).with_suffix(".json").read_text())
    assert "missing_features" in sidecar


def test_model_maps_enter_the_analyses_without_wiring(tmp_path, warnings_log):
    """Kurtosis and free-water rows in the participant tables are analysed by the packaged
    spec (no spec naming them); tensor-only data leave the absent models out silently."""
    bids, out, spec = small_cohort(tmp_path)
    spec.write_text("scores: [alsfrs_r]\n")
    group = run(settings(bids, out, analysis_spec=spec))
    assert not [r for r in warnings_log.records
                if r.levelname == "WARNING" and ("mk" in r.message or "dki" in r.message)]
    assert set(read(out, "comparisons").family) == {"fa", "md", "ad", "rd", "gmv_pct_tiv"}
    model_figure = group / GROUP_FIGURES["model_heatmap"]
    assert not model_figure.exists()  # tensor-only data: no kurtosis / free-water figure
    rng = np.random.default_rng(7)
    planted = {}
    for path in sorted(out.glob("sub-*/dwi/*_desc-tracts_dwistats.tsv")):
        pid = path.name.split("_")[0]
        als = pid in set(pd.read_csv(bids / "participants.tsv", sep="\t")
                         .query("group == 'ALS'").participant_id)
        lines = []
        for metric, mean in (("mk", 1.0), ("kfa", 0.45), ("fw", 0.12), ("fwfa", 0.60)):
            for hemi in "LR":
                value = mean * (0.9 if als and metric == "mk" else 1.0) + rng.normal(0, 0.02)
                planted[(pid, metric, hemi)] = value
                lines.append(f"hcp842\tcst\t{hemi}\t{metric}\twmean\t{value:.8g}\t1000")
        path.write_text(path.read_text() + "\n".join(lines) + "\n")
    warnings_log.clear()
    run(settings(bids, out, analysis_spec=spec))
    comp = read(out, "comparisons")
    assert {"mk", "kfa", "fw", "fwfa"} <= set(comp.family)
    truth = pd.Series(planted).rename_axis(["pid", "metric", "hemi"]).reset_index(name="v")
    groups = pd.read_csv(bids / "participants.tsv", sep="\t").set_index("participant_id").group
    truth["group"] = truth.pid.map(groups)
    for (metric, hemi), rows in truth.groupby(["metric", "hemi"]):
        row = comp[(comp.metric == metric) & (comp.hemisphere == hemi)].iloc[0]
        np.testing.assert_allclose(row.mean_patient, rows[rows.group == "ALS"].v.mean(),
                                   rtol=1e-6)
        np.testing.assert_allclose(row.mean_control, rows[rows.group == "control"].v.mean(),
                                   rtol=1e-6)
    mk = comp[comp.metric == "mk"]
    assert (mk.mean_patient < mk.mean_control).all()
    # the model maps get their own figure (one column per map), listed in the report
    assert model_figure.is_file()
    width, height = struct.unpack(">II", model_figure.read_bytes()[16:24])
    assert width > 300 and height > 200
    assert GROUP_FIGURES["model_heatmap"] in (group / OUTPUTS["report"]).read_text()
    # partial models (some maps of a model absent) are still named
    assert any("['ak', 'fwad', 'fwmd', 'fwrd', 'mkt', 'rk']" in r.message
               for r in warnings_log.records if r.levelname == "WARNING")
