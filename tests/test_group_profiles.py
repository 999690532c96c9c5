"""Group-level along-tract profiles: pointwise OLS against statsmodels on the raw inputs,
permutation FWE (null rate, planted segment, Freedman-Lane refits), loading and reporting."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import ndimage, stats
from synthetic_group import simulate_table, write_cohort

from bids_app.bids.outputs import DWI_PROFILES, GROUP_DIR, GROUP_FIGURES, PROFILE_COLUMNS
from bids_app.bids.outputs import GROUP_OUTPUTS as OUTPUTS
from bids_app.errors import BadDataError, UsageError
from bids_app.group import spec as spec_module
from bids_app.group.permutation import (
    fit_pointwise,
    fwe_p,
    max_t_null,
    nuisance_basis,
    permutations,
    permuted_t,
    segments,
)
from bids_app.group.run import run_group
from bids_app.group.spec import ProfileSpec, load_spec
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

REL = 1e-8
N_NODES = 100
PLANTED = np.arange(40, 61)            # nodes 40-60 inclusive
REGIONS = ("cst", "corticostriatal", "corticothalamic")
BASE = {"fa": 0.55, "md": 7.8e-4}
SD = {"fa": 0.03, "md": 0.4e-4}
PROFILE_TABLES = ("profiles", "profile_segments", "profile_means")
#: Nodes refitted with statsmodels (every third, both ends, the planted segment's edges).
NODES_CHECKED = sorted({*range(0, N_NODES, 3), 39, 40, 60, 61, N_NODES - 1})


# ----------------------------------------------------------------------------- simulation
def smooth_noise(rng: np.random.Generator, n: int, *, sigma: float = 4.0) -> np.ndarray:
    """``(n, N_NODES)`` Gaussian noise smoothed along the nodes, unit SD (profiles are smooth)."""
    noise = ndimage.gaussian_filter1d(rng.normal(size=(n, N_NODES)), sigma, axis=1,
                                      mode="nearest")
    return noise / noise.std()


def simulate_profiles(table: pd.DataFrame, *, seed: int, cst_drop: float = 0.06,
                      clinical_slope: float = 0.0) -> dict[str, pd.DataFrame]:
    """Tidy profile tables per participant.

    Patients lose ``cst_drop`` FA on nodes 40-60 of the left CST (a box, nothing elsewhere);
    ``clinical_slope`` adds to ALSFRS-R (in ``table``, patients) a term proportional to a
    patient-specific FA loss on nodes 40-60 of the right CST. FA and MD fall/rise with age.
    """
    rng = np.random.default_rng(seed)
    n = len(table)
    als = (table["group"] == "ALS").to_numpy()
    age = table["age"].to_numpy(dtype=float)
    severity = np.where(als, rng.gamma(2.0, 0.03, n), 0.0)     # right-CST focal FA loss
    if clinical_slope:
        table["alsfrs_r"] = table["alsfrs_r"] - clinical_slope * (severity - 0.06) * als
    shape = 0.08 * np.sin(np.linspace(0, np.pi, N_NODES))      # FA peaks mid-tract
    rows: dict[str, list[pd.DataFrame]] = {pid: [] for pid in table["participant_id"]}
    for region in REGIONS:
        for hemi in "LR":
            for metric, base in BASE.items():
                values = (base + (shape if metric == "fa" else -1e-3 * shape)
                          + SD[metric] * (0.6 * rng.normal(size=(n, 1))
                                          + 0.8 * smooth_noise(rng, n))
                          - (0.002 if metric == "fa" else -2e-6) * (age[:, None] - 60) / 10)
                if metric == "fa" and region == "cst":
                    if hemi == "L":
                        values[np.ix_(als, PLANTED)] -= cst_drop
                    else:
                        values[:, PLANTED] -= severity[:, None]
                for i, pid in enumerate(table["participant_id"]):
                    rows[pid].append(pd.DataFrame({
                        "atlas": "hcp842", "region": region, "hemisphere": hemi,
                        "metric": metric, "node": np.arange(N_NODES), "value": values[i],
                        "n_streamlines": 250}))
    return {pid: pd.concat(parts, ignore_index=True) for pid, parts in rows.items()}


def profile_path(out: Path, pid: str) -> Path:
    return out / pid / DWI_PROFILES.datatype / (pid + DWI_PROFILES.glob().removeprefix("*"))


def write_profiles(profiles: dict[str, pd.DataFrame], out: Path) -> None:
    for pid, frame in profiles.items():
        frame[list(PROFILE_COLUMNS)].to_csv(profile_path(out, pid), sep="\t", index=False,
                                            na_rep="n/a", float_format="%.10g")


def cohort(tmp_path: Path, *, n_patients: int = 24, n_controls: int = 20, seed: int = 7,
           spec_text: str = "", **simulation) -> tuple[Path, Path, Path, pd.DataFrame]:
    """A synthetic cohort with tract tables and profiles; returns bids, out, spec, table."""
    bids, out = tmp_path / "bids", tmp_path / "out"
    table = simulate_table(n_patients, n_controls, seed=seed)
    profiles = simulate_profiles(table, seed=seed, **simulation)
    write_cohort(table, bids, out)
    write_profiles(profiles, out)
    spec = tmp_path / "spec.yaml"
    spec.write_text("metrics: [fa]\nscores: [alsfrs_r]\ninterhemispheric_metrics: [fa]\n"
                    + spec_text)
    return bids, out, spec, table


def settings(bids: Path, out: Path, **group) -> Settings:
    return Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=out,
                                                analysis_level="group", work_dir=out / "w"),
                    group=GroupSettings(**group))


def read(out: Path, key: str) -> pd.DataFrame:
    return pd.read_csv(out / GROUP_DIR / OUTPUTS[key], sep="\t", na_values=["n/a"])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """24 ALS / 20 controls, FA + MD profiles, the packaged 5,000 permutations; run once."""
    root = tmp_path_factory.mktemp("planted")
    bids, out, spec, table = cohort(root, clinical_slope=300.0,
                                    spec_text="profiles: {metrics: [fa, md]}\n")
    start = time.perf_counter()
    results = run_group(settings(bids, out, analysis_spec=spec))
    elapsed = time.perf_counter() - start
    write_outputs(results, out)
    return bids, out, table, results, elapsed


# ----------------------------------------------------------------------------- references
def raw_long(out: Path, bids: Path) -> pd.DataFrame:
    """Profile rows joined with participants.tsv and the clinical table, read with pandas."""
    frames = [pd.read_csv(p, sep="\t", na_values=["n/a"]).assign(
        participant_id=p.parent.parent.name)
        for p in sorted(out.glob("sub-*/dwi/*_desc-profiles_dwistats.tsv"))]
    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t", na_values=["n/a"])
    clin = clin.rename(columns={"ALSFRS-R": "alsfrs_r"})
    return pd.concat(frames).merge(parts, on="participant_id").merge(clin, on="participant_id")


def test_pointwise_estimates_equal_statsmodels_on_raw_inputs(planted):
    """Every node of four profiles: estimate, SE, t, df, p, CI equal statsmodels formula OLS
    fitted to the raw TSV values (comparison: value ~ group + age + sex; clinical in patients:
    alsfrs_r ~ value + age + sex + disease_duration). Diffusivities are analysed in
    10^-3 mm^2/s: the raw mm^2/s values times 1000."""
    bids, out, _, _, _ = planted
    raw = raw_long(out, bids)
    raw["value"] = raw["value"] * np.where(raw["metric"].isin(["md", "ad", "rd"]), 1e3, 1.0)
    res = read(out, "profiles")
    group_term = "C(group, Treatment('control'))"
    for analysis, formula, term, subset in (
            ("comparison", f"value ~ {group_term} + age + C(sex)", f"{group_term}[T.ALS]", None),
            ("clinical", "alsfrs_r ~ value + age + C(sex) + disease_duration", "value", "ALS")):
        for region, hemi, metric in (("cst", "L", "fa"), ("corticothalamic", "R", "md")):
            prof = raw[(raw.region == region) & (raw.hemisphere == hemi)
                       & (raw.metric == metric)]
            if subset:
                prof = prof[prof.group == subset]
            mine = res[(res.analysis == analysis) & (res.region == region)
                       & (res.hemisphere == hemi) & (res.metric == metric)].set_index("node")
            assert len(mine) == N_NODES
            for node, rows in prof[prof.node.isin(NODES_CHECKED)].groupby("node"):
                fit = smf.ols(formula, data=rows).fit()
                row = mine.loc[node]
                assert row.n == fit.nobs and row.df == fit.df_resid
                for got, want in ((row.estimate, fit.params[term]), (row.se, fit.bse[term]),
                                  (row.t, fit.tvalues[term]), (row.p, fit.pvalues[term]),
                                  (row.ci_low, fit.conf_int().loc[term, 0]),
                                  (row.ci_high, fit.conf_int().loc[term, 1])):
                    assert got == pytest.approx(want, rel=1e-6, abs=1e-12), (analysis, node)
    comp = res[res.analysis == "comparison"]
    assert (comp.covariates == "age,sex=M").all()
    assert (res[res.analysis == "clinical"].covariates == "age,sex=M,disease_duration").all()
    assert (res[res.analysis == "duration"].covariates == "age,sex=M").all()


def test_freedman_lane_refits_equal_statsmodels():
    """Each permuted t is the full-model t refitted to y* = H_Z y + P e_Z (statsmodels)."""
    rng = np.random.default_rng(11)
    n = 30
    age = rng.normal(60, 10, n)
    sex = rng.integers(0, 2, n).astype(float)
    group = np.r_[np.ones(16), np.zeros(14)]
    z = np.column_stack([np.ones(n), age, sex])
    profiles = rng.normal(size=(n, 12)) + 0.05 * age[:, None]
    score = rng.normal(size=n) + 0.1 * age
    perms = np.array([rng.permutation(n) for _ in range(4)])
    hat = z @ np.linalg.pinv(z)
    for y, x in ((profiles, group), (score, profiles)):
        got = permuted_t(y, x, z, perms)
        residual = y - hat @ y
        for j, perm in enumerate(perms):
            y_star = hat @ y + residual[perm]
            for v in (0, 5, 11):
                yv = y_star[:, v] if y_star.ndim == 2 else y_star
                xv = x[:, v] if x.ndim == 2 else x
                ref = sm.OLS(yv, np.column_stack([np.ones(n), xv, age, sex])).fit().tvalues[1]
                assert got[j, v] == pytest.approx(ref, rel=REL)
        identity = permuted_t(y, x, z, np.arange(n)[None])[0]
        np.testing.assert_allclose(identity, fit_pointwise(y, x, z, ci_level=0.95).t, rtol=REL)


def test_rank_deficient_nuisance_matches_pinv_fit():
    rng = np.random.default_rng(2)
    n = 25
    age = rng.normal(60, 10, n)
    z = np.column_stack([np.ones(n), age, 2 * age])      # collinear covariate
    assert nuisance_basis(z).shape[1] == 2
    y = rng.normal(size=(n, 5))
    x = rng.normal(size=n)
    fit = fit_pointwise(y, x, z, ci_level=0.95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # statsmodels says the design is rank-deficient
        ref = sm.OLS(y[:, 3], np.column_stack([z[:, :1], x, z[:, 1:]])).fit()
    assert fit.df == ref.df_resid == n - 3
    assert fit.t[3] == pytest.approx(ref.tvalues[1], rel=REL)


# ----------------------------------------------------------------------------- FWE behaviour
def null_rates(n_datasets: int, *, clinical: bool, seed: int) -> tuple[int, int]:
    """Datasets with any node p_FWE < 0.05 / any node uncorrected p < 0.05, under the null.

    A nuisance covariate (age) drives the profile and is correlated with the group (or the
    score), so a permutation that ignored it would not hold its level.
    """
    rng = np.random.default_rng(seed)
    fwe = uncorrected = 0
    n = 40
    for _ in range(n_datasets):
        group = np.r_[np.ones(20), np.zeros(20)]
        age = rng.normal(60, 8, n) + 6 * group
        z = np.column_stack([np.ones(n), age])
        profile = 0.08 * age[:, None] + smooth_noise(rng, n)
        if clinical:
            y, x = 0.3 * age + rng.normal(size=n), profile
        else:
            y, x = profile, group
        fit = fit_pointwise(y, x, z, ci_level=0.95)
        null = max_t_null(y, x, z, block=N_NODES, n_permutations=500,
                          seed=int(rng.integers(2**31)))
        fwe += bool((fwe_p(fit.t, null, block=N_NODES) < 0.05).any())
        uncorrected += bool((fit.p < 0.05).any())
    return fwe, uncorrected


@pytest.mark.parametrize("clinical", [False, True], ids=["comparison", "clinical"])
def test_null_family_wise_error_rate_is_alpha(clinical):
    """200 null datasets: the FWE rate is within the 99 % binomial (Clopper-Pearson) interval
    of 0.05; the uncorrected rate of 'any node p < 0.05' is far above."""
    n_datasets = 200
    fwe, uncorrected = null_rates(n_datasets, clinical=clinical, seed=2026 + clinical)
    ci = stats.binomtest(fwe, n_datasets).proportion_ci(confidence_level=0.99)
    assert ci.low <= 0.05 <= ci.high, fwe
    assert uncorrected / n_datasets > 0.2, uncorrected


def test_planted_segment_is_found_and_unaffected_profiles_are_not(planted):
    """FA -0.06 in patients on nodes 40-60 of the left CST: the significant segment covers it
    (Dice >= 0.6); no unaffected comparison profile has a significant node; the right-CST
    focal loss driving ALSFRS-R is found there by the clinical analysis."""
    _, out, _, _, _ = planted
    res = read(out, "profiles")
    comp = res[res.analysis == "comparison"]
    cst = comp[(comp.region == "cst") & (comp.hemisphere == "L") & (comp.metric == "fa")]
    found = set(cst.loc[cst.significant, "node"])
    dice = 2 * len(found & set(PLANTED)) / (len(found) + len(PLANTED))
    assert dice >= 0.6, sorted(found)
    assert (cst.loc[cst.node.isin(PLANTED), "estimate"] < 0).all()
    others = comp.drop(cst.index)
    others = others[~((others.region == "cst") & (others.hemisphere == "R")
                      & (others.metric == "fa"))]
    assert not others.significant.any(), others[others.significant].head()
    assert (comp.n_permutations == 5001).all() and comp.p_fwe.min() >= 1 / 5001
    segs = read(out, "profile_segments")
    main = segs[(segs.analysis == "comparison") & (segs.region == "cst")
                & (segs.hemisphere == "L") & (segs.metric == "fa")]
    assert len(main) >= 1 and (main.direction == "negative").all()
    assert main.start_node.min() <= 45 and main.end_node.max() >= 55
    clin = res[(res.analysis == "clinical") & (res.region == "cst") & (res.hemisphere == "R")
               & (res.metric == "fa")]
    hits = set(clin.loc[clin.significant, "node"])
    assert hits and hits <= set(range(30, 71)), sorted(hits)


def test_planted_cohort_outputs_report_and_timing(planted):
    """Tables with sidecars describing every column, method and segments in the sidecar,
    plots and the report section; the whole group level took seconds."""
    _, out, _, results, elapsed = planted
    group = out / GROUP_DIR
    for key in PROFILE_TABLES:
        path = group / OUTPUTS[key]
        columns = pd.read_csv(path, sep="\t", nrows=0).columns
        meta = json.loads(path.with_suffix(".json").read_text())
        assert all(meta[c]["Description"] != "No description" for c in columns), key
    meta = json.loads((group / OUTPUTS["profiles"]).with_suffix(".json").read_text())
    assert meta["NumberOfPermutations"] == 5000 and meta["RandomSeed"] == 20261122
    assert len(meta["SignificantSegments"]) == len(read(out, "profile_segments"))
    means = read(out, "profile_means")
    assert set(means.group) == {"patient", "control"}
    assert (means.ci_low < means["mean"]).all() and (means.n.isin([24, 20])).all()
    for key in ("profiles", "profile_clinical"):
        assert (group / GROUP_FIGURES[key]).stat().st_size > 1000
    html = (group / "report.html").read_text()
    assert "Along-tract profiles" in html and GROUP_FIGURES["profiles"] in html
    incl = read(out, "inclusion")
    assert incl.has_profiles.all() and incl.in_profile_analyses.all()
    assert (incl.n_missing_profiles == 0).all()
    assert results.profiles.skipped is None
    assert elapsed < 60, elapsed   # 12 profiles x 3 models x 5,000 permutations


def test_permutation_speed_5000_x_100_nodes_x_70():
    """5,000 permutations x 100 nodes x 70 participants (3 covariates): seconds."""
    rng = np.random.default_rng(0)
    n = 70
    group = np.r_[np.ones(39), np.zeros(31)]
    z = np.column_stack([np.ones(n), rng.normal(60, 10, n), rng.integers(0, 2, n)])
    profile = smooth_noise(rng, n)
    score = rng.normal(size=n)
    for y, x in ((profile, group), (score[group == 1], profile[group == 1])):
        zz = z if len(y) == n else z[group == 1]
        start = time.perf_counter()
        null = max_t_null(y, x, zz, block=N_NODES, n_permutations=5000, seed=1)
        assert time.perf_counter() - start < 5.0
        assert null.max_t.shape == (5001, 1)


def test_seed_determinism_and_exhaustive_small_samples():
    rng = np.random.default_rng(5)
    n = 30
    z = np.column_stack([np.ones(n), rng.normal(size=n)])
    y, x = smooth_noise(rng, n), np.r_[np.ones(15), np.zeros(15)]
    a = max_t_null(y, x, z, block=N_NODES, n_permutations=999, seed=3)
    b = max_t_null(y, x, z, block=N_NODES, n_permutations=999, seed=3)
    c = max_t_null(y, x, z, block=N_NODES, n_permutations=999, seed=4)
    np.testing.assert_array_equal(a.max_t, b.max_t)
    assert not np.array_equal(a.max_t, c.max_t)
    t = fit_pointwise(y, x, z, ci_level=0.95).t
    assert np.abs(fwe_p(t, a, block=N_NODES) - fwe_p(t, c, block=N_NODES)).max() < 0.1
    # batch size does not change the permutations
    one = np.concatenate(list(permutations(n, 50, seed=9, batch=7)))
    two = np.concatenate(list(permutations(n, 50, seed=9, batch=50)))
    np.testing.assert_array_equal(one, two)
    assert (one[0] == np.arange(n)).all() and len(one) == 51
    # n! <= n_permutations + 1: every permutation once (exact test)
    small = max_t_null(y[:5], x[:5], z[:5], block=N_NODES, n_permutations=5000, seed=0)
    assert small.exhaustive and small.n_permutations == 120


def test_segments_are_runs_of_one_sign():
    sig = np.array([0, 1, 1, 1, 0, 0, 1, 1], bool)
    t = np.array([0, -3, -4, -3, 0, 0, 3, -3.0])
    assert segments(sig, t) == [(1, 3), (6, 6), (7, 7)]
    assert segments(np.zeros(4, bool), np.zeros(4)) == []


def test_spec_seed_reaches_the_analysis(tmp_path):
    bids, out, spec, _ = cohort(tmp_path, n_patients=10, n_controls=8,
                                spec_text="profiles: {metrics: [fa], n_permutations: 200}\n")
    first = run_group(settings(bids, out, analysis_spec=spec)).profiles.stats
    again = run_group(settings(bids, out, analysis_spec=spec)).profiles.stats
    pd.testing.assert_frame_equal(first, again)
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("n_permutations: 200}",
                                              "n_permutations: 200, seed: 1}"))
    changed = run_group(settings(bids, out, analysis_spec=other)).profiles.stats
    assert not np.allclose(first.p_fwe, changed.p_fwe, equal_nan=True)
    np.testing.assert_allclose(first.t, changed.t)
    assert (first.n_permutations == 201).all()


# ----------------------------------------------------------------------------- loading
def test_no_profile_files_is_one_line_and_no_outputs(tmp_path, warnings_log):
    bids, out, spec, _ = cohort(tmp_path, n_patients=6, n_controls=5)
    for path in out.glob("sub-*/dwi/*_desc-profiles_dwistats.tsv"):
        path.unlink()
    results = run_group(settings(bids, out, analysis_spec=spec))
    written = write_outputs(results, out)
    records = {id(r): r for r in warnings_log.records}.values()   # caplog sees each twice
    lines = [r.getMessage() for r in records if "profile" in r.getMessage()]
    assert lines == [results.profiles.skipped]
    assert "no participant along-tract profiles" in lines[0]
    assert not set(PROFILE_TABLES) & set(written)
    assert not any((out / GROUP_DIR / OUTPUTS[k]).exists() for k in PROFILE_TABLES)
    assert "has_profiles" not in read(out, "inclusion").columns
    html = (out / GROUP_DIR / "report.html").read_text()
    assert results.profiles.skipped in html and OUTPUTS["profiles"] not in html


def test_missing_and_incomplete_profiles_are_named(tmp_path, warnings_log):
    bids, out, spec, _ = cohort(tmp_path, n_patients=10, n_controls=8,
                                spec_text="profiles: {metrics: [fa], n_permutations: 100}\n")
    profile_path(out, "sub-00002").unlink()
    partial = profile_path(out, "sub-00003")
    frame = pd.read_csv(partial, sep="\t")
    cut = (frame.region == "cst") & (frame.hemisphere == "L") & (frame.metric == "fa")
    frame.loc[cut & (frame.node > 90), "value"] = np.nan
    frame = frame[~((frame.region == "corticothalamic") & (frame.hemisphere == "R"))]
    frame.to_csv(partial, sep="\t", index=False, na_rep="n/a")
    results = run_group(settings(bids, out, analysis_spec=spec))
    write_outputs(results, out)
    text = warnings_log.text
    assert "without an along-tract profile table" in text and "sub-00002" in text
    assert f"{partial}: along-tract profile(s) absent or incomplete" in text
    assert "hcp842_cst_L_fa (9 of 100 nodes n/a)" in text
    incl = read(out, "inclusion").set_index("participant_id")
    assert not incl.loc["sub-00002", "has_profiles"]
    assert not incl.loc["sub-00002", "in_profile_analyses"]
    assert set(incl.loc["sub-00003", "missing_profiles"].split(";")) == {
        "hcp842_cst_L_fa", "hcp842_corticothalamic_R_fa"}
    res = read(out, "profiles")
    comp = res[res.analysis == "comparison"]
    assert (comp[(comp.region == "cst") & (comp.hemisphere == "L")].n == 16).all()
    assert (comp[(comp.region == "cst") & (comp.hemisphere == "R")].n == 17).all()


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("n_streamlines", "count", 1), "header must be exactly"),
    (lambda text: text + text.splitlines()[1] + "\n", "appears more than once"),
    (lambda text: text + "hcp842\tcst\tL\tfa\t1.5\t0.4\t3\n", "not an integer"),
    (lambda text: text + "hcp842\tcst\tL\tfa\t1\n", "line"),
])
def test_malformed_profile_table_is_bad_data(tmp_path, damage, message):
    bids, out, spec, _ = cohort(tmp_path, n_patients=4, n_controls=4)
    path = profile_path(out, "sub-00004")
    path.write_text(damage(path.read_text()))
    with pytest.raises(BadDataError, match=message) as err:
        run_group(settings(bids, out, analysis_spec=spec))
    assert path.name in str(err.value)


def test_participant_selection_applies_to_profiles(tmp_path):
    bids, out, spec, _ = cohort(tmp_path, n_patients=6, n_controls=6,
                                spec_text="profiles: {metrics: [fa], n_permutations: 50}\n")
    labels = tuple(f"{i:05d}" for i in range(1, 11))
    results = run_group(Settings(
        execution=ExecutionSettings(bids_dir=bids, output_dir=out, analysis_level="group",
                                    work_dir=out / "w", participant_label=labels),
        group=GroupSettings(analysis_spec=spec)))
    comp = results.profiles.stats.query("analysis == 'comparison'")
    assert (comp.n == 10).all()
    assert len(results.profiles.inclusion) == 10


def test_sessions_follow_the_cross_sectional_policy(tmp_path):
    """Profiles per session: the session the tract-mean analyses use (first) is analysed."""
    bids, out, spec, _ = cohort(tmp_path, n_patients=6, n_controls=6,
                                spec_text="profiles: {metrics: [fa], n_permutations: 20}\n")
    for sub in sorted(p.name for p in out.glob("sub-*")):
        for ses, shift in (("1", 0.0), ("2", 0.2)):
            for kind in ("dwi", "anat"):
                dest = out / sub / f"ses-{ses}" / kind
                dest.mkdir(parents=True)
                for path in (out / sub / kind).glob("*.tsv"):
                    target = dest / path.name.replace(f"{sub}_", f"{sub}_ses-{ses}_")
                    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
                    if "node" in frame.columns:
                        frame["value"] = frame["value"].astype(float) + shift
                    frame.to_csv(target, sep="\t", index=False)
        shutil.rmtree(out / sub / "dwi")
        shutil.rmtree(out / sub / "anat")
    results = run_group(settings(bids, out, analysis_spec=spec))
    means = results.profiles.means
    assert means["mean"].between(0.3, 0.72).all()      # ses-1 values, not ses-2 (+0.2)
    incl = results.inclusion
    assert incl.has_profiles.all() and len(incl) == 24
    assert incl.loc[incl.in_profile_analyses, "session_id"].eq("ses-1").all()


def test_profiles_without_phenotype_still_describe_the_cohort(tmp_path):
    bids, out, _, _ = cohort(tmp_path, n_patients=5, n_controls=4)
    (bids / "participants.tsv").unlink()
    shutil.rmtree(bids / "phenotype")
    results = run_group(settings(bids, out))
    written = write_outputs(results, out)
    assert results.profiles.stats.empty and results.profiles.skipped is None
    assert set(results.profiles.means.group) == {"all"}
    assert (results.profiles.means.n == 9).all()
    assert "profiles" in written and "profile_clinical" not in written


# ----------------------------------------------------------------------------- spec
def test_profile_spec_defaults_overrides_and_validation(tmp_path, monkeypatch):
    spec = load_spec()
    # `profiles.metrics: [tensor, dki, fwdti]` names models; the spec expands them to maps.
    assert spec.profiles == ProfileSpec(metrics=("fa", "md", "ad", "rd", "mk", "ak", "rk", "kfa",
                                                 "mkt", "fw", "fwfa", "fwmd", "fwad", "fwrd"),
                                        n_permutations=5000,
                                        seed=20261122, fwe_alpha=0.05)
    for f in fields(ProfileSpec):
        assert f.default is MISSING and f.default_factory is MISSING
    user = tmp_path / "user.yaml"
    user.write_text("profiles: {n_permutations: 10000}\n")
    merged = load_spec(user)
    assert merged.profiles.n_permutations == 10000 and merged.profiles.seed == 20261122
    assert merged.user_keys == frozenset({"profiles.n_permutations"})
    assert merged.to_dict()["profiles"]["metrics"] == list(spec.profiles.metrics)
    for text, message in (("profiles: {n_permutations: 0}\n", "n_permutations"),
                          ("profiles: {seed: -1}\n", "seed"),
                          ("profiles: {alpha: 0.1}\n", "unknown key"),
                          ("profiles: [fa]\n", "must be a mapping")):
        user.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_spec(user)
    packaged = spec_module.packaged_spec_path().read_text()
    assert packaged.count("  n_permutations: 5000\n") == 1
    changed = tmp_path / "analysis_spec.yaml"
    changed.write_text(packaged.replace("  n_permutations: 5000\n", ""))
    monkeypatch.setattr(spec_module, "packaged_spec_path", lambda: changed)
    with pytest.raises(UsageError, match=r"profiles\.n_permutations"):
        load_spec()
