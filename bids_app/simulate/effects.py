"""Planted-effect specification: defaults, YAML overrides, validation.

Defaults follow the second study's findings in direction and location (lower FA / higher RD in
the corticospinal and corticostriatal tracts, largest focally at the level of the internal
capsule and cerebral peduncle; precentral GM atrophy; clinical scores related to tract FA and
precentral volume), with magnitudes deliberately larger than the study's (FA -22..-25 %,
Cohen d ~3, b0 SNR 80, score correlations |r| 0.6-0.85) chosen so that the 7 + 7 demo cohort
could detect them despite measurement noise; ``--effects`` overrides them.  The corticothalamic
tract has no effect of its own: it is the neighbour in which a measurement's leakage shows.
Every relative change is a fraction (-0.1 = 10 % lower).

Tract keys name the *measured* tract (``hcp842/cst``: the participant level's feature);
``placement`` says where the simulator itself puts that tract (another atlas source, carried by
a T1w-driven registration: :mod:`bids_app.simulate.placement`), so the planted truth does not
share the measurement's atlas or registration.

Between-participant tract variability is mostly one factor shared by all tracts of a participant
(``participant_sd``), i.e. spatially coherent like the disease effect, and large compared with
the pipeline's measurement noise (registration, noise: ~1-2 % of FA), so that what the recovered
Cohen d loses (measurement error attenuates d by ``sqrt(reliability)``) comes mostly from how
the measurement's tract differs from the simulator's (atlas, registration, mask): with the
independent placement the per-participant r with the truth was 0.74-0.99 on a 4 + 4 cohort
(``benchmarks/tract_validation.py``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bids_app.errors import MissingInputError, UsageError

PATIENT_LABEL = "ALS"
CONTROL_LABEL = "control"

DEFAULT_EFFECTS: dict[str, Any] = {
    "snr": 80.0,
    # acquisition: null keeps the source's (single-shell) gradient table and the tensor
    # signal; a list of b-values (e.g. [1000, 2000, 3000]) writes that many shells of
    # `directions` directions plus `b0_volumes` b0 with a free-water + stick + tensor signal
    # (kurtosis-bearing; tensors.synthesize_multishell)
    "multishell": {"shells": None, "directions": 30, "b0_volumes": 6},
    "head": {"max_rotation_deg": 4.0, "max_translation_mm": 4.0, "scale_sd": 0.03},
    "deformation": {"rms_mm": 1.5, "smoothness_mm": 15.0},
    "demographics": {
        PATIENT_LABEL: {"age_mean": 60.0, "age_sd": 10.0, "p_male": 0.6},
        CONTROL_LABEL: {"age_mean": 58.0, "age_sd": 10.0, "p_male": 0.55},
    },
    # mean relative FA change in patients (planted through the radial eigenvalues); optional
    # ad_change: relative axial-diffusivity change in patients (the axial eigenvalue is scaled
    # first, the radial ones then solved so that FA still changes by fa_change)
    "tracts": {
        "hcp842/cst": {"fa_change": -0.25},
        "hcp842/corticostriatal": {"fa_change": -0.22},
        "hcp842/corticothalamic": {"fa_change": 0.0},  # unlesioned neighbour (leakage)
    },
    # the simulator's own definition of each measured tract: "atlas/region" of another atlas
    # (XTRACT: other group, other method; HCP1065 where XTRACT has no such tract; a group
    # region is the voxel-wise maximum of its members), placed through the source T1w
    "placement": {
        "hcp842/cst": "xtract/cst",
        "hcp842/corticostriatal": "hcp1065/corticostriatal",
        "hcp842/corticothalamic": "xtract/corticothalamic",
    },
    # focal damage (patients, x severity): a further relative FA change of the tract's
    # weights times a Gaussian of MNI152NLin6Asym height z (mm), on top of the tract change;
    # z -5 mm: between the cerebral peduncle (~-15) and the posterior limb of the internal
    # capsule (~+5), where ALS lowers CST FA most
    "focal": {"hcp842/cst": {"z_mm": -5.0, "sigma_mm": 6.0, "fa_change": -0.15}},
    # between-participant variability of the relative tract FA (everyone), and the spread of
    # the patients' disease effect (SD of a severity multiplier with mean 1)
    "tract_variability": {"participant_sd": 0.07, "tract_sd": 0.01, "severity_sd": 0.2},
    # regions given the same variability in both groups and no group effect
    # (the splenium of the corpus callosum: callosal fibres, no overlap with the planted tracts)
    "control_regions": {"jhu/cc_splenium/bilateral": {}},
    # GM atrophy: a smooth local deformation of the region's gray matter (the anatomical
    # workflow's known-truth method, bids_app.core.anat.atrophy); relative volume change
    # N(0, sd) in everyone plus volume_change x severity in patients; optional fa_coupling:
    # correlation of that N(0, sd) term with the participant's shared tract-FA variability
    # (a GM-tract relation within groups; the disease adds its own through severity)
    "gm": {"aal/precentral": {"volume_change": -0.15, "sd": 0.04}},
    # Acquisition sites (default: none, one scanner). Each site: fa_shift, a relative FA change
    # added to every tract of its participants (additive scanner effect), and fa_scale, a
    # factor on each participant's own relative FA deviations (variability, disease, focal;
    # multiplicative scanner effect), both applied to the tensors before the DWI is
    # synthesised. Within each group the k-th participant goes to site k mod n_sites (balanced).
    "sites": {},
    # Sessions (default: one). Session k is acquired k * interval_years after the first;
    # patients' planted tracts (tracts with fa_change) lose fa_decline_per_year x severity
    # (relative FA) per year on top of their disease change, and their `score` changes by
    # score_per_fa_change x that relative FA change (a per-year ALSFRS-R decline tied to the
    # FA decline). Controls do not change.
    "sessions": {"n": 1, "interval_years": 1.0, "fa_decline_per_year": -0.05,
                 "score": "alsfrs_r", "score_per_fa_change": 150.0},
    # scores (patients only; column names as in the group level's alias table) generated from
    # a planted driver: "atlas/region/metric", averaged over L and R; r = population Pearson r
    # with the driver; covariate weights are the
    # correlations of the score residual with age (per SD) and male sex; optional
    # extra_drivers: {driver: r} further population correlations with other planted values
    # (the score is then the least-squares combination of all drivers that has them)
    "scores": {
        "alsfrs_r": {"driver": "hcp842/cst/fa", "r": 0.85, "mean": 38.0, "sd": 6.0,
                     "min": 0, "max": 48, "decimals": 0, "age_weight": -0.2,
                     "sex_weight": 0.0, "long_name": "ALS Functional Rating Scale - Revised",
                     "units": "points (0-48)"},
        "mrc_sum": {"driver": "aal/precentral/gmv_pct_tiv", "r": 0.6, "mean": 50.0, "sd": 6.0,
                          "min": 0, "max": 60, "decimals": 0, "age_weight": -0.1,
                          "sex_weight": 0.1, "long_name": "Medical Research Council sum score",
                          "units": "points (0-60)"},
        "fvc": {"driver": "aal/precentral/gmv_pct_tiv", "r": 0.6, "mean": 85.0, "sd": 15.0,
                        "min": 20, "max": 130, "decimals": 1, "age_weight": -0.2,
                        "sex_weight": 0.0, "long_name": "Forced vital capacity",
                        "units": "percent of predicted"},
        "cmap_z_sum": {"driver": "hcp842/cst/fa", "r": 0.85, "mean": -6.0, "sd": 3.0,
                       "min": -20, "max": 5, "decimals": 2, "age_weight": -0.1,
                       "sex_weight": 0.0, "long_name": "Compound muscle action potential "
                       "Z sum score", "units": "sum of Z scores"},
        "penn_score": {"driver": "hcp842/cst/fa", "r": -0.85, "mean": 12.0, "sd": 5.0,
                       "min": 0, "max": 32, "decimals": 0, "age_weight": 0.0,
                       "sex_weight": 0.0, "long_name": "Penn upper motor neuron score",
                       "units": "points (0-32)"},
        "disease_duration": {"driver": "hcp842/corticostriatal/fa", "r": -0.85,
                                    "mean": 24.0, "sd": 10.0, "min": 3, "max": 120,
                                    "decimals": 0, "age_weight": 0.0, "sex_weight": 0.0,
                                    "long_name": "Disease duration since symptom onset",
                                    "units": "months"},
    },
}


def load_effects(path: Path | None = None, *,
                 base_override: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults merged (recursively) with ``base_override`` (a preset, e.g.
    :func:`bids_app.simulate.reference.preset_effects`) and then a YAML file's overrides,
    validated."""
    effects = copy.deepcopy(DEFAULT_EFFECTS)
    if base_override:
        _merge(effects, base_override)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"{path}: effects file not found")
        try:
            override = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(override, dict):
            raise UsageError(f"{path}: top level must be a mapping")
        unknown = set(override) - set(DEFAULT_EFFECTS)
        if unknown:
            raise UsageError(f"{path}: unknown keys {sorted(unknown)}; "
                             f"allowed {sorted(DEFAULT_EFFECTS)}")
        _merge(effects, override)
    validate_effects(effects, source=str(path) if path else "preset" if base_override
                     else "defaults")
    return effects


def _merge(into: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict) and key not in (
                "tracts", "control_regions", "gm", "scores", "placement", "focal", "sites"):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def validate_effects(effects: dict[str, Any], *, source: str) -> None:
    """Raise :class:`UsageError` naming ``source`` when the spec is inconsistent."""
    def fail(message: str) -> None:
        raise UsageError(f"{source}: {message}")

    if not effects["snr"] or float(effects["snr"]) <= 0:
        fail("snr must be > 0")
    for group, demo in effects["demographics"].items():
        if not 0 <= float(demo.get("p_spinal_onset", 0)) <= 1:
            fail(f"demographics {group}: p_spinal_onset must be in [0, 1]")
    shells = effects["multishell"].get("shells")
    if shells is not None and (not shells or any(not 0 < float(b) <= 10000 for b in shells)):
        fail("multishell.shells must be null or a list of b-values in (0, 10000]")
    for key, spec in effects["tracts"].items():
        if len(key.split("/")) != 2:
            fail(f"tract key {key!r} must be 'atlas/region'")
        if not -0.5 < float(spec.get("fa_change", 0)) < 0.5:
            fail(f"{key}: fa_change must be in (-0.5, 0.5)")
        if not -0.5 < float(spec.get("ad_change", 0)) < 0.5:
            fail(f"{key}: ad_change must be in (-0.5, 0.5)")
    placement = effects["placement"]
    if set(placement) != set(effects["tracts"]):
        fail(f"placement must name a source for each tract: tracts {sorted(effects['tracts'])}"
             f", placement {sorted(placement)}")
    for key, placed in placement.items():
        if len(str(placed).split("/")) != 2:
            fail(f"placement of {key}: {placed!r} must be 'atlas/region'")
        if str(placed).split("/")[0] == key.split("/")[0]:
            fail(f"placement of {key}: {placed!r} is the measured atlas itself; the truth "
                 "must come from another atlas")
    for key, spec in effects["focal"].items():
        if key not in effects["tracts"]:
            fail(f"focal {key!r} is not one of the tracts {sorted(effects['tracts'])}")
        if not float(spec.get("sigma_mm", 0)) > 0 or "z_mm" not in spec:
            fail(f"focal {key}: need z_mm and sigma_mm > 0")
        if not -0.5 < float(spec.get("fa_change", 0)) < 0.5:
            fail(f"focal {key}: fa_change must be in (-0.5, 0.5)")
    for key in effects["control_regions"]:
        if len(key.split("/")) != 3:
            fail(f"control region {key!r} must be 'atlas/region/hemisphere'")
    for key, spec in effects["gm"].items():
        if len(key.split("/")) != 2:
            fail(f"gm key {key!r} must be 'atlas/region'")
        if not -0.4 < float(spec.get("volume_change", 0)) < 0.4:
            fail(f"{key}: volume_change must be in (-0.4, 0.4)")
        if not -1 < float(spec.get("fa_coupling", 0)) < 1:
            fail(f"{key}: fa_coupling must be in (-1, 1)")
    for name, spec in effects["sites"].items():
        if not (isinstance(name, str) and name.isalnum()) or not isinstance(spec, dict):
            fail(f"site {name!r}: a site is a letters/digits name mapping to "
                 "{fa_shift, fa_scale}")
        if not -0.3 < float(spec.get("fa_shift", 0)) < 0.3 or \
                not 0.5 <= float(spec.get("fa_scale", 1)) <= 2.0:
            fail(f"site {name}: need fa_shift in (-0.3, 0.3) and fa_scale in [0.5, 2]")
    ses = effects["sessions"]
    if not isinstance(ses.get("n"), int) or not 1 <= ses["n"] <= 10 or \
            not float(ses.get("interval_years", 0)) > 0:
        fail("sessions: need an integer n in [1, 10] and interval_years > 0")
    if not -0.3 < float(ses.get("fa_decline_per_year", 0)) <= 0:
        fail("sessions: fa_decline_per_year must be in (-0.3, 0]")
    if ses.get("score") not in effects["scores"]:
        fail(f"sessions: score {ses.get('score')!r} is not one of {sorted(effects['scores'])}")
    drivers = {f"{k}/fa" for k in effects["tracts"]} | {f"{k}/gmv_pct_tiv" for k in effects["gm"]}
    for name, spec in effects["scores"].items():
        for driver in (spec.get("driver"), *spec.get("extra_drivers", {})):
            if driver not in drivers:
                fail(f"score {name}: driver {driver!r} is not one of {sorted(drivers)}")
        if not all(-1 < float(r) < 1 for r in spec.get("extra_drivers", {}).values()):
            fail(f"score {name}: extra_drivers correlations must be in (-1, 1)")
        weights = float(spec.get("age_weight", 0)) ** 2 + float(spec.get("sex_weight", 0)) ** 2
        if not -1 < float(spec["r"]) < 1 or weights >= 1:
            fail(f"score {name}: need |r| < 1 and age_weight^2 + sex_weight^2 < 1")
        for required in ("mean", "sd"):
            if required not in spec:
                fail(f"score {name}: missing {required!r}")
