"""A published study's reported figures as the simulator's planted effects.

The second reference study (Hsueh et al. 2023; 39 ALS patients, 32 controls) reports its
cohort (Table 1), patient-control differences of tract FA/AD/MD/RD and precentral GM % TIV,
GM-vs-FA regressions (Table 2), GM-clinical and tract-clinical regressions (Table 3).  Its
figures are read from ``$ALSMRI_SHARED/reference/hsueh2023.yaml`` (facts about a publication,
never copied into the package) and turned into an effects specification
(:mod:`bids_app.simulate.effects`) by :func:`reference_effects`, which also lists every choice
it had to make (:class:`ReferencePreset`).

How the printed figures are read
--------------------------------
* FA "mean +- sd": standard deviations (the patients' are a quarter of the controls'; a
  Welch t-test on them gives the printed p = 0.003 for the CST).  The simulator has one
  between-participant SD for both groups: the pooled relative SD.
* AD/MD/RD "+-" values (0.006-0.025 x 10^-3 mm^2/s): standard errors (as SDs they would
  give Cohen d ~15); only the means are used: the relative AD change is planted with the
  relative FA change, MD and RD follow from the tensor (they are not planted separately:
  FA, AD and RD of the printed means over-determine the tensor).
* GM % TIV: standard deviations (Cohen d 0.58 reproduces p = 0.03 at 39 + 32).
* Table 2 (all participants, GM ~ FA): a simple regression (model p = slope p); its
  correlation ``sign(beta) sqrt(R^2)`` is reproduced by a within-group coupling of the GM
  region's variability with the participant's tract-FA variability plus what the group
  differences contribute; one coupling per region (the simulator has one FA factor shared
  by the tracts): the mean over the three tracts.
* Table 3 / GM-clinical (patients, score ~ metric + age + sex + duration): the partial
  correlation ``t / sqrt(t^2 + df)`` with ``df = 39 - 5``; GM-clinical prints only R^2 and
  p of the models: |t| from p, sign assumed positive (more GM, better function).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from bids_app.errors import MissingInputError, UsageError
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL

#: presets: name -> reference file under ``$ALSMRI_SHARED/reference``
PRESETS: dict[str, str] = {"hsueh2023": "hsueh2023.yaml"}
#: the paper's tract names -> the measured tract keys
TRACTS: dict[str, str] = {"corticospinal": "hcp842/cst",
                          "corticostriatal": "hcp842/corticostriatal",
                          "corticothalamic": "hcp842/corticothalamic"}
#: the paper's GM regions -> the measured GM atlas keys (the default GM atlas's regions)
GM_ATLAS = "aal"
GM_REGIONS: tuple[str, ...] = ("precentral", "superior_frontal", "medial_superior_frontal",
                               "middle_frontal", "striatum", "thalamus")
#: the paper's score names -> the simulated (phenotype) column names
SCORES: dict[str, str] = {"alsfrs_r": "alsfrs_r", "mrc_sum": "mrc_sum", "fvc_percent": "fvc",
                          "cmap_z_sum": "cmap_z_sum", "penn_score": "penn_score",
                          "disease_duration_months": "disease_duration"}
#: score ranges (clipping) and rounding: the instruments' ranges where the paper gives none
SCORE_FORMAT: dict[str, dict[str, Any]] = {
    "alsfrs_r": {"min": 0, "max": 48, "decimals": 0, "long_name":
                 "ALS Functional Rating Scale - Revised", "units": "points (0-48)"},
    "mrc_sum": {"min": 0, "max": 60, "decimals": 0, "long_name":
                "Medical Research Council sum score", "units": "points"},
    "fvc": {"min": 10, "max": 150, "decimals": 1, "long_name": "Forced vital capacity",
            "units": "percent of predicted"},
    "cmap_z_sum": {"min": -30, "max": 5, "decimals": 2, "long_name":
                   "Compound muscle action potential Z sum score", "units": "sum of Z scores"},
    "penn_score": {"min": 0, "max": 32, "decimals": 0, "long_name":
                   "Penn upper motor neuron score", "units": "points (0-32)"},
    "disease_duration": {"min": 1, "max": 240, "decimals": 0, "long_name":
                         "Disease duration since symptom onset", "units": "months"},
}
#: covariates of the paper's clinical regressions besides the metric (age, sex, duration)
N_CLINICAL_COVARIATES = 3
#: tract-specific FA variability (SD of relative FA) on top of the shared factor: the paper
#: gives no between-tract correlation; 0.04 with the shared SD (~0.12) makes tract FAs
#: correlate ~0.9, as tract means of one brain do
TRACT_SD = 0.04
#: largest |coupling| / |correlation| the derivation plants
MAX_COUPLING = 0.9


@dataclass(frozen=True)
class ReferencePreset:
    """An effects override derived from a paper, with the choices made on the way."""

    name: str
    effects: dict[str, Any]
    n_patients: int
    n_controls: int
    choices: list[dict[str, str]] = field(default_factory=list)


def reference_path(name: str) -> Path:
    """Path of preset ``name``'s reference file (``$ALSMRI_SHARED/reference/...``)."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    shared = os.environ.get("ALSMRI_SHARED")
    root = (Path(shared).expanduser() if shared
            else Path(__file__).resolve().parents[3] / "shared")
    return root / "reference" / PRESETS[name]


def load_reference(path: Path) -> dict[str, Any]:
    """The reference YAML (mapping) at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: reference figures not found (set ALSMRI_SHARED)")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "group_differences" not in data:
        raise UsageError(f"{path}: not a reference-figures file (no group_differences)")
    return data


def preset_effects(name: str) -> ReferencePreset:
    """The effects override of preset ``name`` (see :func:`reference_effects`)."""
    return reference_effects(load_reference(reference_path(name)), name=name)


def value(x: Any) -> float:
    """A printed number; ``"<0.001"`` -> 0.001 (the bound)."""
    return float(str(x).lstrip("<>= ")) if isinstance(x, str) else float(x)


def partial_r(t: float, df: int) -> float:
    """Partial correlation of a regression coefficient from its t and residual df."""
    return float(t / np.sqrt(t * t + df))


def t_from_p(p: float, df: int) -> float:
    """|t| of a two-sided p with ``df`` degrees of freedom."""
    return float(stats.t.isf(p / 2.0, df))


def pooled_sd(sd1: float, n1: int, sd2: float, n2: int) -> float:
    """Pooled standard deviation of two groups."""
    return float(np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / (n1 + n2 - 2)))


def within_coupling(r_total: float, *, d_gm: float, d_fa: float, share: float,
                    sd_gm: float, sd_shared: float, sd_fa: float) -> float:
    """Within-group correlation of GM variability with the shared FA factor that gives a
    pooled (both groups) GM-FA correlation ``r_total``.

    With relative changes ``d`` (patients minus controls), within-group SDs ``sd`` and a
    patient share ``share``: ``cov = rho sd_gm sd_shared + share (1 - share) d_gm d_fa``,
    ``var = sd^2 + share (1 - share) d^2``; solved for ``rho`` and clipped to
    +-:data:`MAX_COUPLING`.
    """
    between = share * (1 - share)
    total_sd = np.sqrt((sd_gm**2 + between * d_gm**2) * (sd_fa**2 + between * d_fa**2))
    rho = (r_total * total_sd - between * d_gm * d_fa) / (sd_gm * sd_shared)
    return float(np.clip(rho, -MAX_COUPLING, MAX_COUPLING))


def reference_effects(paper: dict[str, Any], *, name: str = "reference") -> ReferencePreset:
    """Effects override planting a paper's reported figures (module docstring: how read).

    Parameters
    ----------
    paper
        The reference figures (``hsueh2023.yaml`` layout).
    name
        Preset name (for the choices' text).

    Returns
    -------
    ReferencePreset
    """
    n_p, n_c = int(paper["study"]["n_patients"]), int(paper["study"]["n_controls"])
    t1 = paper["table1"]
    pat, con = t1["patients"], t1["controls"]
    choices: list[dict[str, str]] = []

    def choose(figure: str, choice: str) -> None:
        choices.append({"figure": figure, "choice": choice})

    demographics = {
        PATIENT_LABEL: {"age_mean": value(pat["age_at_study"]["mean"]),
                        "age_sd": value(pat["age_at_study"]["sd"]),
                        "p_male": pat["male"] / pat["n"],
                        "p_spinal_onset": pat["spinal_onset"] / pat["n"]},
        CONTROL_LABEL: {"age_mean": value(con["age_at_study"]["mean"]),
                        "age_sd": value(con["age_at_study"]["sd"]),
                        "p_male": con["male"] / con["n"]},
    }
    diffs = paper["group_differences"]
    tracts, rel_sd = {}, []
    for tract, key in TRACTS.items():
        fa_p, fa_psd, fa_c, fa_csd = (value(v) for v in diffs["fa"][tract][:4])
        ad_p, ad_c = value(diffs["ad_1e-3_mm2_s"][tract][0]), value(
            diffs["ad_1e-3_mm2_s"][tract][2])
        tracts[key] = {"fa_change": fa_p / fa_c - 1.0, "ad_change": ad_p / ad_c - 1.0}
        rel_sd.append(pooled_sd(fa_psd, n_p, fa_csd, n_c) / ((fa_p * n_p + fa_c * n_c)
                                                            / (n_p + n_c)))
    total_sd = float(np.sqrt(np.mean(np.square(rel_sd))))
    shared_sd = float(np.sqrt(max(total_sd**2 - TRACT_SD**2, 1e-6)))
    choose("FA sd", f"pooled relative SD of the three tracts {total_sd:.3f} (printed SDs, "
           f"both groups): shared factor {shared_sd:.3f} + tract-specific {TRACT_SD}")
    choose("AD/MD/RD", "AD relative change planted with FA's; MD and RD follow from the "
           "tensor; the printed +- read as standard errors (not used)")
    choose("focal", "no focal lesion (the paper reports whole-tract means only)")

    gm_p, gm_psd, gm_c, gm_csd = (value(v) for v in diffs["gm_pct_tiv"]["precentral"][:4])
    gm_mean = (gm_p * n_p + gm_c * n_c) / (n_p + n_c)
    gm_sd = pooled_sd(gm_psd, n_p, gm_csd, n_c) / gm_mean
    choose("GM sd", f"relative SD {gm_sd:.3f} (precentral, pooled) for all six regions: the "
           "paper prints SDs for the precentral gyrus only")
    share = n_p / (n_p + n_c)
    fa_sd = float(np.sqrt(shared_sd**2 + TRACT_SD**2))
    gm = {}
    for region in GM_REGIONS:
        change = gm_p / gm_c - 1.0 if region == "precentral" else 0.0
        rhos = []
        for tract, key in TRACTS.items():
            r2, _, beta = (value(v) for v in paper["table2"][tract][region][:3])
            r_total = float(np.sign(beta) * np.sqrt(r2))
            rhos.append(within_coupling(r_total, d_gm=change, d_fa=tracts[key]["fa_change"],
                                        share=share, sd_gm=gm_sd, sd_shared=shared_sd,
                                        sd_fa=fa_sd))
        gm[f"{GM_ATLAS}/{region}"] = {"volume_change": change, "sd": gm_sd,
                                      "fa_coupling": float(np.mean(rhos))}
    choose("Table 2", "one within-group GM-FA coupling per region (the mean of the three "
           "tracts' solutions); tract-specific differences are not planted")

    scores = _scores(paper, tracts, n_p=n_p, choose=choose)
    effects = {
        "demographics": demographics,
        "tracts": tracts,
        "placement": {"hcp842/cst": "xtract/cst",
                      "hcp842/corticostriatal": "hcp1065/corticostriatal",
                      "hcp842/corticothalamic": "xtract/corticothalamic"},
        "focal": {},
        "tract_variability": {"participant_sd": shared_sd, "tract_sd": TRACT_SD,
                              "severity_sd": 0.2},
        "gm": gm,
        "scores": scores,
    }
    return ReferencePreset(name=name, effects=effects, n_patients=n_p, n_controls=n_c,
                           choices=choices)


def _scores(paper: dict, tracts: dict, *, n_p: int, choose) -> dict[str, dict]:
    """Scores: Table 1's patient mean/SD; drivers from Table 3 (FA) and GM-clinical."""
    df = n_p - 2 - N_CLINICAL_COVARIATES
    pat = paper["table1"]["patients"]
    out = {}
    for paper_name, name in SCORES.items():
        spec = {"mean": value(pat[paper_name]["mean"]), "sd": value(pat[paper_name]["sd"]),
                "age_weight": 0.0, "sex_weight": 0.0, **SCORE_FORMAT[name]}
        fa_r = {}
        for tract, key in TRACTS.items():
            row = paper["table3"].get(paper_name, {}).get(tract)
            if row:
                fa_r[f"{key}/fa"] = partial_r(value(row["fa"][1]), df)
        gm_r = {}
        clinical = paper.get("gm_clinical", {}).get(paper_name)
        if isinstance(clinical, dict):
            for region, (_, p) in clinical.items():
                gm_r[f"{GM_ATLAS}/{region}/gmv_pct_tiv"] = partial_r(
                    t_from_p(value(p), df), df)
        if fa_r:
            driver = max(fa_r, key=lambda k: abs(fa_r[k]))
            spec.update(driver=driver, r=fa_r[driver])
        else:  # no reported association (disease duration): no driver effect
            spec.update(driver=f"{TRACTS['corticospinal']}/fa", r=0.0)
        if gm_r:  # the strongest GM association as a second driver
            region = max(gm_r, key=lambda k: abs(gm_r[k]))
            spec["extra_drivers"] = {region: gm_r[region]}
        out[name] = spec
    choose("Table 3", "each score's driver: the tract FA with the largest |t| (partial r = "
           f"t / sqrt(t^2 + {df})); the other tracts' and metrics' associations follow from "
           "the tracts' correlation (tract-specific patterns such as MRC vs CST FA null but "
           "vs corticostriatal FA significant are not planted)")
    choose("GM-clinical", "the strongest reported GM region as a second driver (|t| from "
           "p, sign assumed positive); age and sex weights 0 (not reported)")
    choose("disease duration", "Table 1 mean/SD, Gaussian clipped at 1 month (the printed "
           "SD equals the mean: the real distribution is skewed); no driver")
    return out


def preset_yaml(preset: ReferencePreset) -> str:
    """The preset as an effects YAML (``--effects``), its choices as comments."""
    lines = [f"# alsmri simulate preset '{preset.name}': planted effects derived from the "
             + "reference study's reported figures",
             f"# cohort: {preset.n_patients} patients + {preset.n_controls} controls",
             "# choices:"]
    lines += [f"#   {c['figure']}: {c['choice']}" for c in preset.choices]
    return "\n".join(lines) + "\n" + yaml.safe_dump(_plain(preset.effects), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return round(float(obj), 6)
    return obj
