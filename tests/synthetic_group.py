"""Synthetic ALS cohorts for the group-level tests and ``benchmarks/group.py`` (test data).

Writes a BIDS-like ``participants.tsv`` + ``phenotype/clinical.tsv`` (with JSON dictionaries)
and per-participant long-format metrics tables exactly as the participant level names them.
Distributions are plausible Table-1-like values of a 39-patient / 32-control ALS DTI study
(means/SDs chosen for realism, not copied from a publication). Three clinical scores depend
linearly on one imaging feature (true slopes in :data:`TRUE_SLOPES`), so a correctly specified
``score ~ metric + age + sex + disease_duration`` model should cover them with its 95 % CI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.bids.outputs import (
    ANAT_STATS,
    DWI_STATS,
    STATS_COLUMNS,
    Output,
    feature_name,
)

#: score -> (feature, slope per unit of the feature)
TRUE_SLOPES = {
    "cmap_z_sum": ("hcp842_cst_L_fa_wmean", 60.0),
    "alsfrs_r": ("hcp842_cst_R_fa_wmean", 80.0),
    "mrc_sum": ("aal_precentral_L_gmv_pct_tiv_ratio", 30.0),
}
#: Score means/SDs in patients (residual SD for the three slope scores).
SCORES = {"alsfrs_r": (38.0, 4.0), "mrc_sum": (50.0, 5.0), "fvc": (86.0, 17.0),
          "cmap_z_sum": (-6.0, 2.5), "penn_score": (12.0, 7.0), "munix": (520.0, 240.0),
          "musix": (105.0, 30.0), "dynamometry": (310.0, 110.0)}
DTI = {"fa": (0.52, 0.03), "md": (7.8e-4, 0.4e-4), "ad": (1.35e-3, 0.6e-4),
       "rd": (5.5e-4, 0.4e-4)}
HCP = ("cst", "corticostriatal", "corticothalamic")
JHU = ("cst", "cerebral_peduncle", "plic")
AAL = {"precentral": 1.05, "superior_frontal": 1.55, "striatum": 0.62, "caudate": 0.27,
       "putamen": 0.35, "thalamus": 0.52}
#: GM regions of the seeds drawn after everything else (own generator, so adding them left
#: the other values unchanged): region -> mean percent of TIV.
EXTRA_GM = {"middle_frontal": 1.40, "medial_superior_frontal": 0.90}
ALS_FA_DROP = 0.025
ALS_GM_DROP = 0.06
#: Per-side scores (written under these column names, found through the alias table):
#: column -> (contralateral feature, intercept, slope per unit FA, residual SD).
SIDE_SCORES = {
    "Penn UMN right": ("hcp842_cst_L_fa_wmean", 6.0, -120.0, 1.5),
    "Penn UMN left": ("hcp842_cst_R_fa_wmean", 6.0, -120.0, 1.5),
    "musix_R": ("hcp842_cst_L_fa_wmean", 105.0, 0.0, 30.0),
    "musix_L": ("hcp842_cst_R_fa_wmean", 105.0, 0.0, 30.0),
}
#: Share of bulbar onset among patients (the others: spinal).
BULBAR_SHARE = 0.35


@dataclass(frozen=True)
class Feature:
    atlas: str
    region: str
    hemisphere: str
    metric: str
    statistic: str
    kind: str

    @property
    def name(self) -> str:
        return feature_name(self.atlas, self.region, self.hemisphere, self.metric,
                            self.statistic)


def features() -> list[Feature]:
    """The 54 analysed features of the synthetic cohort, named as the participant level does.

    Tract (probability) atlases: ``wmean``; JHU labels: ``mean`` (no weights); GM: ``ratio``.
    """
    out = [Feature("hcp842", r, h, m, "wmean", "dwi") for r in HCP for h in "LR" for m in DTI]
    out += [Feature("jhu", r, h, m, "mean", "dwi") for r in JHU for h in "LR" for m in ("fa",
                                                                                         "md")]
    out += [Feature("jhu", "mcp", "bilateral", m, "mean", "dwi") for m in ("fa", "md")]
    out += [Feature("aal", r, h, "gmv_pct_tiv", "ratio", "anat") for r in (*AAL, *EXTRA_GM)
            for h in "LR"]
    return out


def simulate_table(n_patients: int = 39, n_controls: int = 32, *,
                   seed: int = 20261122) -> pd.DataFrame:
    """One row per participant: demographics, scores and the 50 imaging features."""
    rng = np.random.default_rng(seed)
    n = n_patients + n_controls
    als = np.r_[np.ones(n_patients, bool), np.zeros(n_controls, bool)]
    t = pd.DataFrame({"participant_id": [f"sub-{i:05d}" for i in range(1, n + 1)],
                      "group": np.where(als, "ALS", "control")})
    t["age"] = np.round(np.where(als, rng.normal(60, 10, n), rng.normal(57, 9, n)), 1)
    t["sex"] = np.where(rng.random(n) < np.where(als, 0.64, 0.53), "M", "F")
    duration = np.round(rng.gamma(2.0, 10.0, n), 1)
    t["disease_duration"] = np.where(als, duration, np.nan)
    dur = np.nan_to_num(t["disease_duration"].to_numpy())
    subject_fa = rng.normal(0, 0.018, n)  # shared across tracts and hemispheres
    for f in features():
        if f.region in EXTRA_GM:
            continue  # drawn by add_seed_columns
        if f.metric == "gmv_pct_tiv":
            base = AAL[f.region] * (1 - ALS_GM_DROP * als * (f.region == "precentral"))
            t[f.name] = base * (1 + rng.normal(0, 0.08, n))
            continue
        mean, sd = DTI[f.metric]
        if f.metric == "fa":
            drop = ALS_FA_DROP * als * (f.region in ("cst", "cerebral_peduncle", "plic"))
            t[f.name] = mean - drop - 0.0004 * dur + subject_fa + rng.normal(0, 0.015, n)
        else:
            t[f.name] = rng.normal(mean, sd, n) * (1 + 0.03 * als * (f.region == "cst"))
    for score, (mean, sd) in SCORES.items():
        value = rng.normal(mean, sd, n)
        if score in TRUE_SLOPES:
            feat, slope = TRUE_SLOPES[score]
            x = t[feat].to_numpy()
            value = mean + slope * (x - 0.5) - 0.05 * (t["age"].to_numpy() - 60) \
                - 0.05 * (dur - 20) + rng.normal(0, sd, n)
        t[score] = np.where(als, np.round(value, 3), np.nan)
    return add_seed_columns(t, als, seed=seed + 1)


def add_seed_columns(t: pd.DataFrame, als: np.ndarray, *, seed: int) -> pd.DataFrame:
    """Extra GM regions, onset site and per-side scores of the patients (own generator: the
    other columns stay as they were). Penn UMN scores fall with the contralateral CST FA
    (:data:`SIDE_SCORES`)."""
    rng = np.random.default_rng(seed)
    n = len(t)
    for f in features():
        if f.region in EXTRA_GM:
            t[f.name] = EXTRA_GM[f.region] * (1 + rng.normal(0, 0.08, n))
    t["onset_site"] = np.where(als, np.where(rng.random(n) < BULBAR_SHARE, "bulbar", "spinal"),
                               None)
    for column, (feature, intercept, slope, sd) in SIDE_SCORES.items():
        value = intercept + slope * (t[feature].to_numpy() - 0.5) + rng.normal(0, sd, n)
        t[column] = np.where(als, np.round(value, 3), np.nan)
    return t


def _rows(feats: list[Feature], values: np.ndarray, rng: np.random.Generator) -> str:
    lines = ["\t".join(STATS_COLUMNS)]
    for f, v in zip(feats, values):
        nvox = int(rng.integers(200, 5000))
        prefix = f"{f.atlas}\t{f.region}\t{f.hemisphere}\t{f.metric}"
        lines.append(f"{prefix}\t{f.statistic}\t{v:.8g}\t{nvox}")
        if f.kind == "dwi" and f.statistic != "mean":
            # probability atlases also have the thresholded mean (label atlases only have it)
            lines.append(f"{prefix}\tmean\t{v * 1.02:.8g}\t{nvox // 2}")
    return "\n".join(lines) + "\n"


def _file_name(output: Output, participant_id: str) -> str:
    """``sub-X_desc-..._suffix.ext`` of a participant-level output (no session)."""
    return participant_id + output.glob().removeprefix("*")


def write_cohort(table: pd.DataFrame, bids_dir: Path, output_dir: Path, *,
                 alias_spelling: bool = True, seed: int = 0) -> None:
    """Write ``participants.tsv``, ``phenotype/clinical.tsv`` and the metrics tables.

    With ``alias_spelling`` the ALSFRS-R column is written as ``ALSFRS-R`` (alias table test).
    A table with ``session_id`` (:func:`add_sites_and_sessions`) is written per session, with
    ``sub-*/sub-*_sessions.tsv`` (``acq_time``) and a ``site`` column in participants.tsv.
    """
    rng = np.random.default_rng(seed)
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    (bids_dir / "phenotype").mkdir(parents=True, exist_ok=True)
    (bids_dir / "dataset_description.json").write_text(
        json.dumps({"Name": "synthetic ALS cohort", "BIDSVersion": "1.9.0"}))
    sessions = table if "session_id" in table.columns else None
    if sessions is not None:
        for pid, rows in sessions.groupby("participant_id", sort=False):
            (bids_dir / pid).mkdir(parents=True, exist_ok=True)
            rows[["session_id", "acq_time"]].to_csv(bids_dir / pid / f"{pid}_sessions.tsv",
                                                    sep="\t", index=False)
        table = sessions.drop_duplicates("participant_id")
    demo = table[["participant_id", "age", "sex", "group",
                  *(["site"] if "site" in table.columns else [])]]
    demo.to_csv(bids_dir / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (bids_dir / "participants.json").write_text(json.dumps({
        "age": {"Description": "age at scan", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "group": {"Description": "diagnosis", "Levels": {"ALS": "patient", "control": "HC"}}}))
    clin = table[["participant_id", "disease_duration", *SCORES,
                  *[c for c in ("onset_site", *SIDE_SCORES) if c in table.columns]]]
    if alias_spelling:
        clin = clin.rename(columns={"alsfrs_r": "ALSFRS-R"})
    clin.to_csv(bids_dir / "phenotype" / "clinical.tsv", sep="\t", index=False, na_rep="n/a")
    (bids_dir / "phenotype" / "clinical.json").write_text(json.dumps({
        "disease_duration": {"Description": "months since symptom onset", "Units": "month"},
        "ALSFRS-R": {"Description": "ALS functional rating scale revised", "Units": "points"}}))
    feats = features()
    dwi = [f for f in feats if f.kind == "dwi"]
    anat = [f for f in feats if f.kind == "anat"]
    rows = table if sessions is None else sessions
    dwi_vals = rows[[f.name for f in dwi]].to_numpy()
    anat_vals = rows[[f.name for f in anat]].to_numpy()
    tiv = rng.normal(1.5e6, 1.2e5, len(rows))
    ses = rows["session_id"].tolist() if sessions is not None else [""] * len(rows)
    for i, pid in enumerate(rows["participant_id"]):
        base = output_dir / pid / ses[i]
        stem = f"{pid}_{ses[i]}" if ses[i] else pid
        d = base / DWI_STATS.datatype
        d.mkdir(parents=True, exist_ok=True)
        (d / _file_name(DWI_STATS, stem)).write_text(_rows(dwi, dwi_vals[i], rng))
        a = base / ANAT_STATS.datatype
        a.mkdir(parents=True, exist_ok=True)
        text = _rows(anat, anat_vals[i], rng)
        extra = [f"aal\t{f.region}\t{f.hemisphere}\tgmv\tsum\t{v / 100 * tiv[i]:.8g}\t0"
                 for f, v in zip(anat, anat_vals[i])]
        extra += [f"aal\ttotal_gm\tbilateral\tgmv\tsum\t{0.45 * tiv[i]:.8g}\t0",
                  f"aal\ttiv\tbilateral\tgmv\tsum\t{tiv[i]:.8g}\t0"]
        (a / _file_name(ANAT_STATS, stem)).write_text(text + "\n".join(extra) + "\n")


def add_sites_and_sessions(table: pd.DataFrame, *, sites: tuple[str, ...] = ("A", "B", "C"),
                           sessions: int = 2, seed: int = 1) -> pd.DataFrame:
    """:func:`simulate_table` over ``sites`` (random per participant; per site an additive
    shift of up to one SD and a scale of the deviations from the feature mean) and
    ``sessions`` (about a year apart; patients' tract FA falls by 0.02 per year), one row per
    participant/session with ``session_id``, ``acq_time`` and ``site``."""
    rng = np.random.default_rng(seed)
    n = len(table)
    site = rng.choice(np.asarray(sites), n)
    shift = dict(zip(sites, np.linspace(-1.0, 1.0, len(sites))))
    scale = dict(zip(sites, np.linspace(0.8, 1.2, len(sites))))
    names = [f.name for f in features()]
    base = table.copy()
    base["site"] = site
    als = (base["group"] == "ALS").to_numpy()
    start = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    parts = []
    for k in range(sessions):
        part = base.copy()
        t = np.zeros(n) if k == 0 else k + rng.uniform(-0.3, 0.3, n)
        part["session_id"] = f"ses-{k + 1}"
        part["acq_time"] = (start + pd.to_timedelta(np.round(t * 365.25), unit="D")).strftime(
            "%Y-%m-%d")
        for name in names:
            values = base[name].to_numpy(dtype=float)
            decline = -0.02 * als * ("_fa_" in name and name.startswith("hcp842_cst"))
            values = values + decline * t + rng.normal(0, 0.1 * np.nanstd(values), n) * (k > 0)
            mean, sd = np.nanmean(values), np.nanstd(values)
            factor = np.array([scale[s] for s in site])
            part[name] = mean + factor * (values - mean) + np.array([shift[s] for s in site]) * sd
        parts.append(part)
    return pd.concat(parts).sort_values(["participant_id", "session_id"]).reset_index(drop=True)


#: Control model of a feature with planted deviations: value = intercept + age_slope * (age -
#: 60) + male_shift * (sex == M) + N(0, sd).
PLANTED_MODEL = {"intercept": 0.50, "age_slope": -0.002, "male_shift": 0.015, "sd": 0.02}


def plant_deviations(table: pd.DataFrame, feature: str, z: dict[str, float], *,
                     seed: int = 7) -> pd.DataFrame:
    """Rewrite ``feature`` so that controls follow :data:`PLANTED_MODEL` and each patient
    in ``z`` (participant_id -> true z) lies ``z`` model SDs from its age/sex expectation.

    Patients not in ``z`` get a control-like value. The truth is set from the generating model
    (not estimated from the cohort), so the recovered z also carries the estimation error of
    the control fit.
    """
    rng = np.random.default_rng(seed)
    m = PLANTED_MODEL
    out = table.copy()
    expected = (m["intercept"] + m["age_slope"] * (out["age"].to_numpy() - 60)
                + m["male_shift"] * (out["sex"].to_numpy() == "M"))
    deviation = rng.normal(0, 1, len(out))
    planted = out["participant_id"].map(z)
    deviation = np.where(planted.notna(), planted.to_numpy(dtype=float), deviation)
    out[feature] = expected + m["sd"] * deviation
    return out


# --------------------------------------------------------------------------- sites, sessions
#: Multi-site, two-session cohort (harmonisation and longitudinal tests, benchmark):
#: feature -> (control mean at age 60, female; participant SD; session noise SD;
#: patient difference; patient change per year). Controls change by AGEING_PER_YEAR x SD.
LONGITUDINAL_MODEL = {
    "hcp842_cst_L_fa_wmean": (0.52, 0.015, 0.008, -0.04, -0.02),
    "hcp842_cst_R_fa_wmean": (0.52, 0.015, 0.008, -0.04, -0.02),
    "hcp842_corticostriatal_L_fa_wmean": (0.45, 0.015, 0.008, -0.02, -0.01),
    "hcp842_cst_L_md_wmean": (7.8e-4, 0.3e-4, 0.15e-4, 0.2e-4, 0.1e-4),
    "jhu_mcp_bilateral_fa_mean": (0.60, 0.015, 0.008, 0.0, 0.0),
    "aal_precentral_L_gmv_pct_tiv_ratio": (1.05, 0.06, 0.02, -0.06, -0.03),
}
#: Age per decade and male shifts of every feature, in participant SDs.
AGE_SHIFT, MALE_SHIFT, AGEING_PER_YEAR = -0.5, 0.4, -0.05
#: Site -> (patients, controls) per 100 participants of that site (unbalanced on purpose:
#: without harmonisation the site effects bias the patient-control difference), additive
#: shift in participant SDs, multiplicative factor of the deviations (its square averaged over
#: the controls is 1, so ComBat's pooled control scale equals the site-free one).
SITES = {"A": (0.75, 3.0, np.sqrt(1.3)), "B": (0.5, -1.5, 1.0), "C": (0.25, 0.0, np.sqrt(0.9))}
#: ALSFRS-R = 38 + SCORE_SLOPE x (site-free CST-R FA - 0.52) + participant noise (SD 2) +
#: session noise (SD 0.3): its change per year is SCORE_SLOPE x the FA change per year.
SCORE_FEATURE, SCORE_SLOPE = "hcp842_cst_R_fa_wmean", 200.0


def simulate_sessions(n_per_site: int = 200, *, sessions: int = 2, sites: tuple[str, ...] = (
        "A", "B", "C"), seed: int = 20261207) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per participant/session: site-free (``<feature>_true``) and measured features.

    Returns
    -------
    table : DataFrame
        ``participant_id, session_id, site, group, age (first session), sex, time (years),
        acq_time, alsfrs_r`` and per feature the measured and ``_true`` (site-free) values.
    truth : DataFrame
        Per feature the planted ``difference`` and patient ``decline`` (per year) and the
        control ``ageing`` (per year).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for site in sites:
        share, _, _ = SITES[site]
        n_pat = round(n_per_site * share)
        for i in range(n_per_site):
            rows.append({"participant_id": f"sub-{site}{i:04d}", "site": site,
                         "group": "ALS" if i < n_pat else "control"})
    people = pd.DataFrame(rows)
    n = len(people)
    als = (people["group"] == "ALS").to_numpy()
    people["age"] = np.round(rng.normal(60, 9, n), 1)
    people["sex"] = np.where(rng.random(n) < 0.55, "M", "F")
    times = np.column_stack([np.zeros(n)] + [k + rng.uniform(-0.4, 0.4, n)
                                             for k in range(1, sessions)])
    out = pd.concat([people.assign(session_id=f"ses-{k + 1}", time=times[:, k])
                     for k in range(sessions)], ignore_index=True)
    m = len(out)
    pat = np.tile(als, sessions)
    t = out["time"].to_numpy()
    sex_m = (out["sex"] == "M").to_numpy()
    age = out["age"].to_numpy()
    site_idx = out["site"].map({s: k for k, s in enumerate(sites)}).to_numpy()
    for feat, (mean, sd_p, sd_e, diff, decline) in LONGITUDINAL_MODEL.items():
        subject = np.tile(rng.normal(0, sd_p, n), sessions)
        slope = np.tile(rng.normal(0, abs(decline) * 0.2, n), sessions) * pat
        expected = mean + sd_p * (AGE_SHIFT * (age - 60) / 10 + MALE_SHIFT * sex_m)
        deviation = (subject + pat * (diff + decline * t) + slope * t
                     + AGEING_PER_YEAR * sd_p * t + rng.normal(0, sd_e, m))
        out[feat + "_true"] = expected + deviation
        shift = np.array([SITES[s][1] for s in sites])[site_idx] * sd_p
        scale = np.array([SITES[s][2] for s in sites])[site_idx]
        out[feat] = expected + shift + scale * deviation
    noise = np.tile(rng.normal(0, 2.0, n), sessions) + rng.normal(0, 0.3, m)
    score = 38 + SCORE_SLOPE * (out[SCORE_FEATURE + "_true"] - 0.52) + noise
    out["alsfrs_r"] = np.where(pat, np.round(score, 4), np.nan)
    start = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    out["acq_time"] = (np.tile(start.to_numpy(), sessions)
                       + pd.to_timedelta(t * 365.25 * 86400, unit="s").to_numpy())
    out["acq_time"] = pd.to_datetime(out["acq_time"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    out["time"] = (pd.to_datetime(out["acq_time"]) - pd.to_datetime(
        np.tile(pd.to_datetime(out["acq_time"][:n]).to_numpy(), sessions))
    ).dt.total_seconds() / (365.25 * 86400)
    truth = pd.DataFrame([{"feature": f, "difference": v[3], "decline": v[4],
                           "ageing": AGEING_PER_YEAR * v[1]}
                          for f, v in LONGITUDINAL_MODEL.items()])
    return out.sort_values(["participant_id", "session_id"]).reset_index(drop=True), truth


def _parse_feature(name: str) -> tuple[str, str, str, str, str, str]:
    atlas, rest = name.split("_", 1)
    for metric in ("gmv_pct_tiv", "fa", "md"):
        for hemi in ("L", "R", "bilateral"):
            tail = f"_{hemi}_{metric}_"
            if tail in rest:
                region, stat = rest.split(tail)
                kind = "anat" if metric.startswith("gmv") else "dwi"
                return atlas, region, hemi, metric, stat, kind
    raise ValueError(name)


def write_sessions_cohort(table: pd.DataFrame, bids_dir: Path, output_dir: Path, *,
                          seed: int = 0) -> None:
    """Write participants.tsv (site, group, age, sex), ``sub-*/sub-*_sessions.tsv``
    (acq_time, ALSFRS-R) and per-session metrics tables of :func:`simulate_sessions`."""
    rng = np.random.default_rng(seed)
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    bids_dir.mkdir(parents=True, exist_ok=True)
    (bids_dir / "dataset_description.json").write_text(
        json.dumps({"Name": "synthetic multi-site ALS cohort", "BIDSVersion": "1.9.0"}))
    people = table.drop_duplicates("participant_id")[["participant_id", "site", "group", "age",
                                                      "sex"]]
    people.to_csv(bids_dir / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (bids_dir / "participants.json").write_text(json.dumps({
        "age": {"Description": "age at the first session", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "site": {"Description": "acquisition site"}}))
    feats = [Feature(*_parse_feature(f)) for f in LONGITUDINAL_MODEL]
    dwi = [f for f in feats if f.kind == "dwi"]
    anat = [f for f in feats if f.kind == "anat"]
    for pid, rows in table.groupby("participant_id", sort=False):
        sub = bids_dir / pid
        sub.mkdir(exist_ok=True)
        rows[["session_id", "acq_time", "alsfrs_r"]].to_csv(
            sub / f"{pid}_sessions.tsv", sep="\t", index=False, na_rep="n/a")
        for row in rows.itertuples(index=False):
            stem = f"{pid}_{row.session_id}"
            for group, output in ((dwi, DWI_STATS), (anat, ANAT_STATS)):
                d = output_dir / pid / row.session_id / output.datatype
                d.mkdir(parents=True, exist_ok=True)
                values = [getattr(row, f.name) for f in group]
                (d / (stem + output.glob().removeprefix("*"))).write_text(
                    _rows(group, values, rng))
