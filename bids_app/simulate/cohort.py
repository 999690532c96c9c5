"""Plan a cohort, synthesise each participant's DWI and T1w, generate clinical scores.

All randomness flows from one seed: participant ``i`` uses ``default_rng([seed, i])`` for its
plan and ``default_rng([seed, i, 1])`` for image noise, so results do not depend on the order
or the number of participants simulated after it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from dipy.core.gradients import gradient_table
from nibabel.affines import apply_affine
from scipy import ndimage

from bids_app.atlases.api import get_template
from bids_app.core.anat import preproc, registration
from bids_app.core.anat.atrophy import plant_atrophy
from bids_app.core.anat.segmentation import segment_tissues
from bids_app.settings import TEMPLATE
from bids_app.simulate import deform, tensors
from bids_app.simulate.base import BaseAnatomy
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL
from bids_app.simulate.placement import focal_weights

HEMISPHERES = ("L", "R")
#: largest relative GM volume change planted in a region (either sign)
MAX_GM_LOSS = 0.3
#: tract probability at which the planted effect reaches its full strength (linear below)
EFFECT_SATURATION = 0.4


@dataclass(frozen=True)
class ParticipantPlan:
    """Everything drawn for one participant before any image is made."""

    participant_id: str
    index: int
    group: str
    age: float
    sex: str
    severity: float  # patients' disease-effect multiplier (0 for controls)
    #: "atlas/region/hemi" -> relative FA change of between-participant variability (everyone)
    tract_changes: dict[str, float]
    gm_changes: dict[str, float]  # "atlas/region/hemi" -> target relative volume change
    head: dict
    #: "atlas/region/hemi" -> further relative FA change from the disease (patients; tracts
    #: with a planted effect only)
    disease_changes: dict[str, float] = field(default_factory=dict)
    #: "atlas/region/hemi" -> further relative FA change of the tract's focal weights
    focal_changes: dict[str, float] = field(default_factory=dict)
    #: "atlas/region/hemi" -> relative axial-diffusivity change from the disease (patients)
    axial_changes: dict[str, float] = field(default_factory=dict)
    #: patients' onset site ("spinal"/"bulbar"; "" when the effects plan none)
    onset_site: str = ""
    site: str = ""
    """Acquisition site ("" without sites; effects ``sites``)."""
    session: str = ""
    """Session label (``ses-<k>``; "" with a single session)."""
    years: float = 0.0
    """Time of the session since the participant's first (years)."""


def plan_cohort(effects: dict, *, n_patients: int, n_controls: int, seed: int
                ) -> list[ParticipantPlan]:
    """Draw demographics, head positions and per-participant planted changes."""
    groups = [PATIENT_LABEL] * n_patients + [CONTROL_LABEL] * n_controls
    order = np.random.default_rng([seed, 10**6]).permutation(len(groups))
    var = effects["tract_variability"]
    plans = []
    for index, gi in enumerate(order):
        group = groups[gi]
        rng = np.random.default_rng([seed, index])
        demo = effects["demographics"][group]
        age = float(np.clip(rng.normal(demo["age_mean"], demo["age_sd"]), 18, 95))
        sex = "M" if rng.random() < demo["p_male"] else "F"
        patient = group == PATIENT_LABEL
        severity = float(max(0.0, rng.normal(1.0, var["severity_sd"]))) if patient else 0.0
        shared = var["participant_sd"] * rng.standard_normal()
        tract_changes, disease_changes = {}, {}
        for key, spec in effects["tracts"].items():
            for hemi in HEMISPHERES:
                tract_changes[f"{key}/{hemi}"] = float(
                    shared + var["tract_sd"] * rng.standard_normal())
                if patient and spec["fa_change"]:
                    disease_changes[f"{key}/{hemi}"] = float(spec["fa_change"] * severity)
        axial_changes = {f"{key}/{hemi}": float(spec["ad_change"] * severity)
                         for key, spec in effects["tracts"].items() if spec.get("ad_change")
                         and patient for hemi in HEMISPHERES}
        for key in effects["control_regions"]:
            tract_changes[key] = float(shared + var["tract_sd"] * rng.standard_normal())
        gm_changes = {}
        shared_z = shared / var["participant_sd"] if var["participant_sd"] else 0.0
        for key, spec in effects["gm"].items():
            coupling = float(spec.get("fa_coupling", 0.0))
            for hemi in HEMISPHERES:
                own = rng.standard_normal()
                if coupling:
                    own = coupling * shared_z + np.sqrt(1 - coupling**2) * own
                change = (spec["sd"] * own
                          + (spec["volume_change"] * severity if patient else 0.0))
                gm_changes[f"{key}/{hemi}"] = float(np.clip(change, -MAX_GM_LOSS, MAX_GM_LOSS))
        focal_changes = {f"{key}/{hemi}": float(spec["fa_change"] * severity if patient
                                                else 0.0)
                         for key, spec in effects["focal"].items() for hemi in HEMISPHERES}
        p_spinal = demo.get("p_spinal_onset")
        onset = ("" if p_spinal is None or not patient
                 else "spinal" if rng.random() < float(p_spinal) else "bulbar")
        plans.append(ParticipantPlan(
            participant_id=f"sub-{index + 1:03d}", index=index, group=group,
            age=round(age, 1), sex=sex, severity=round(severity, 4),
            tract_changes=tract_changes, gm_changes=gm_changes,
            head={"seed": [seed, index, 2]}, disease_changes=disease_changes,
            focal_changes=focal_changes, axial_changes=axial_changes, onset_site=onset))
    return plans


@dataclass(frozen=True)
class SimulatedParticipant:
    """Images (source grids) and the planted values measured on the noise-free anatomy."""

    dwi: np.ndarray  # (X, Y, Z, n) float32
    t1w: np.ndarray  # (X, Y, Z) float32
    head: dict
    tracts: list[dict]
    gm: list[dict]
    focal: list[dict] = field(default_factory=list)
    #: "tract/<key>" and "focal/<key>" -> the weights on the participant's DWI grid (the
    #: truth's definition of each tract there)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def _fov_bbox(base: BaseAnatomy) -> tuple[np.ndarray, np.ndarray]:
    corners = []
    for shape, affine in ((base.tensors.shape[:3], base.dwi_affine),
                          (base.t1.shape, base.t1_affine)):
        ijk = np.array(np.meshgrid(*[[0, s - 1] for s in shape], indexing="ij")).reshape(3, -1)
        corners.append(apply_affine(affine, ijk.T))
    corners = np.vstack(corners)
    return corners.min(axis=0), corners.max(axis=0)


@dataclass(frozen=True)
class GmTissue:
    """Gray-matter content of the source T1w (where the planted atrophy acts).

    Attributes
    ----------
    probability : ndarray
        GM posterior of a 3-class Atropos segmentation of the source T1w (T1w grid).
    regions : dict
        ``"atlas/region/hemisphere"`` -> boolean mask of the label placed by the anatomical
        workflow's registration, dilated by one voxel (so that a participant's slightly
        different label placement still sees the planted change); empty = use the base's.
    brain : ndarray or None
        Brain mask of the source T1w (the intracranial volume the participant level divides
        by); ``None``: the GM probability's support.
    """

    probability: np.ndarray
    regions: dict[str, np.ndarray] | None = None
    brain: np.ndarray | None = None


def gm_tissue(base: BaseAnatomy, *, seed: int = 1, regions: dict | None = None) -> GmTissue:
    """GM fractions of the source T1w from the anatomical workflow's own steps.

    N4, registration to MNI152NLin6Asym, template brain mask refined on the image, N4 again
    inside that mask, and 3-class Atropos read as partial volumes (:mod:`bids_app.core.anat`),
    so the atrophy is planted in the tissue the participant level measures (a K-means
    segmentation inside the looser DWI mask takes scalp into account and mistakes WM for GM).
    """
    with tempfile.TemporaryDirectory(prefix="alsmri-sim-seg-") as tmp:
        path = Path(tmp) / "t1w.nii.gz"
        nib.save(nib.Nifti1Image(base.t1.astype(np.float32), base.t1_affine), path)
        image = ants.image_read(str(path))
        corrected = preproc.n4_correct(image, mask=preproc.head_mask(image))
        template = ants.image_read(str(get_template(TEMPLATE, res=2, suffix="T1w")))
        template_mask = ants.image_read(str(get_template(TEMPLATE, res=2,
                                                         suffix="mask", desc="brain")))
        reg = registration.register_to_template(corrected, template,
                                                outprefix=str(Path(tmp) / "reg_"), seed=seed)
        prior = registration.warp_image(template_mask, corrected, reg.inverse,
                                        interpolator="linear")
        brain = preproc.refine_brain_mask(corrected, prior)
        seg = segment_tissues(preproc.n4_correct(corrected, mask=brain), brain)
        masks = {}
        for key, region in (regions or {}).items():  # label atlases (RegionSource.labels)
            labels = registration.warp_image(ants.image_read(str(region.path)), corrected,
                                             reg.inverse, interpolator="nearestNeighbor")
            masks[key] = np.isin(np.rint(labels.numpy()), region.labels)
    others = {key: ndimage.binary_dilation(mask, iterations=1) for key, mask in masks.items()}
    for key, mask in masks.items():  # grow by a voxel, never into another planted region
        taken = np.zeros_like(mask)
        for other in others:
            if other != key:
                taken |= masks[other]
        masks[key] = others[key] & ~taken
    return GmTissue(probability=seg.probseg["GM"].numpy().astype(np.float32), regions=masks,
                    brain=brain.numpy() > 0)


def atrophy_gray_matter(t1: np.ndarray, tissue: GmTissue, changes: dict[str, tuple]
                        ) -> tuple[np.ndarray, dict[str, float]]:
    """Plant smooth, localised GM volume changes with the anatomy's known-truth deformation.

    Uses :func:`bids_app.core.anat.atrophy.plant_atrophy` (the deformation validated by the
    anatomical workflow's known-truth test): the region's GM-dominant voxels contract (or
    expand) and its other voxels take up the difference, so tissue outside the region keeps
    its volume. Regions are deformed one after another.

    Parameters
    ----------
    t1
        Source T1w data.
    tissue
        Its GM probability.
    changes
        ``key -> (region mask, relative GM volume change)`` (-0.1 = 10 % loss).

    Returns
    -------
    image : ndarray
        The deformed T1w (float32).
    realised : dict
        ``key -> relative GM volume change`` actually planted (from the exact Jacobian).
    """

    image = np.asarray(t1, dtype=np.float32)
    realised = {}
    for key, (mask, change) in changes.items():
        if abs(change) < 1e-4 or not np.any(mask):
            realised[key] = 0.0
            continue
        planted = plant_atrophy(image, region=mask, gm=tissue.probability, loss=-change)
        image = planted.image
        realised[key] = -float(planted.planted_loss)
    return image, realised


def participant_transform(base: BaseAnatomy, plan: ParticipantPlan, effects: dict
                          ) -> tuple[np.ndarray, dict, deform.SmoothField]:
    """The participant's head position (4x4, params) and smooth deformation field."""
    rng = np.random.default_rng(plan.head["seed"])
    center = apply_affine(base.dwi_affine, np.argwhere(base.mask).mean(axis=0))
    matrix, head = deform.head_position(rng, center=center, **effects["head"])
    lo, hi = _fov_bbox(base)
    warp = deform.random_smooth_field(rng, bbox_min=lo, bbox_max=hi,
                                      **effects["deformation"])
    return matrix, head, warp


def focal_source_weights(base: BaseAnatomy, effects: dict) -> dict[str, np.ndarray]:
    """``"atlas/region/hemi"`` -> focal weights on the source DWI grid (tract weights times a
    Gaussian of template height, :func:`bids_app.simulate.placement.focal_weights`)."""
    return {f"{key}/{hemi}": focal_weights(base.weights[f"{key}/{hemi}"], base.template_z,
                                           z_mm=float(spec["z_mm"]),
                                           sigma_mm=float(spec["sigma_mm"]))
            for key, spec in effects["focal"].items() for hemi in HEMISPHERES}


def simulate_participant(base: BaseAnatomy, plan: ParticipantPlan, effects: dict, *,
                         seed: int, tissue: GmTissue) -> SimulatedParticipant:
    """Planted tensors -> deformed -> DWI with Rician noise; atrophied + deformed T1w.

    FA changes are planted in three stages, each relative to the FA left by the previous ones:
    between-participant variability (every region, solved jointly: overlapping regions
    interact), the disease (patients' lesioned tracts, jointly), the focal lesions.  All raise
    (or lower) the radial eigenvalues and keep the axial one
    (:func:`bids_app.simulate.tensors.scale_radial`).  A tract without an effect of its own
    keeps the disease's overlap with its neighbours: its truth then differs between groups.
    """
    mask = base.mask
    evals, evecs = tensors.eigen(base.tensors[mask].astype(np.float64))
    weights = {k: np.clip(w[mask], 0, 1).astype(np.float64) for k, w in base.weights.items()}
    effect = {k: np.clip(w / EFFECT_SATURATION, 0, 1) for k, w in weights.items()}
    focal_source = focal_source_weights(base, effects)
    focal = {k: np.clip(w[mask], 0, 1) for k, w in focal_source.items()}
    focal_effect = {k: np.clip(w / EFFECT_SATURATION, 0, 1) for k, w in focal.items()}
    factor = np.ones(len(evals))
    scales, stage_evals = {}, {}
    stage_base = evals  # eigenvalues the radial factors act on (axially scaled from the disease)
    for stage, changes, w, eff in (("variability", plan.tract_changes, weights, effect),
                                   ("disease", plan.disease_changes, weights, effect),
                                   ("focal", plan.focal_changes, focal, focal_effect)):
        changes = {k: c for k, c in changes.items() if abs(c) > 1e-9}
        if stage == "disease" and plan.axial_changes:
            stage_base, changes = _axial_disease(evals, factor, plan.axial_changes, effect,
                                                 weights, changes)
        solved = (tensors.radial_factors_for_fa(stage_base, w, eff, changes, prior=factor)
                  if changes else {})
        for key, k in solved.items():
            factor = factor * (1.0 + (k - 1.0) * eff[key])
        scales[stage] = {key: solved.get(key, 1.0) for key in w}
        stage_evals[stage] = tensors.scale_radial(stage_base, factor)
    planted_evals = stage_evals["focal"]
    planted = tensors.compose(planted_evals, evecs)
    matrix, head, warp = participant_transform(base, plan, effects)

    # DWI: resample the planted tensor field, rotate it with the head, synthesise signals
    field_lt = base.tensors.astype(np.float64).copy()
    field_lt[mask] = planted
    shape = mask.shape
    points = deform.source_points(deform.grid_points(shape, base.dwi_affine), matrix=matrix,
                                  field=warp)
    lt_out = deform.sample(field_lt, base.dwi_affine, points, order=1, cval=0.0)
    outside = deform.sample(np.ones(shape, np.float32), base.dwi_affine, points, order=0) < 0.5
    lt_out[outside] = [3e-3, 0, 3e-3, 0, 0, 3e-3]
    s0_out = deform.sample(base.s0, base.dwi_affine, points, order=1, cval=0.0)
    frame = base.bvec_frame
    rotation = frame.T @ (matrix[:3, :3] * head["scale"]) @ frame
    lt_out = tensors.rotate(lt_out, rotation)
    inside = deform.sample(mask.astype(np.float32), base.dwi_affine, points, order=0) > 0.5
    placement = base.provenance.get("regions", {})
    maps: dict[str, np.ndarray] = {}

    def participant_truth(key: str, source_weights: np.ndarray) -> dict[str, float]:
        # The participant's image holds the planted tensors resampled onto its own grid
        # (head position, deformation): trilinear mixing of neighbouring tensors lowers
        # tract FA by ~10 %, by an amount that differs per participant.  The truth a perfect
        # pipeline would measure is therefore the tract's weighted mean over the
        # participant's noise-free tensors, with the tract weights carried along.
        placed = deform.sample(source_weights, base.dwi_affine, points, order=1) * inside
        maps[key] = placed.reshape(shape).astype(np.float32)
        support = placed > 0
        return tensors.weighted_metrics(tensors.eigen(lt_out[support])[0], placed[support])

    tract_truth = []
    for key, change in plan.tract_changes.items():
        atlas, region, hemi = key.split("/")
        before = tensors.weighted_metrics(evals, weights[key])
        tract = tensors.weighted_metrics(stage_evals["disease"], weights[key])
        after = tensors.weighted_metrics(planted_evals, weights[key])
        own = participant_truth(f"tract/{key}", base.weights[key])
        disease = plan.disease_changes.get(key, 0.0)
        tract_truth.append({"atlas": atlas, "region": region, "hemisphere": hemi,
                            "placement": placement.get(key, key),
                            "target_fa_change": round((1 + change) * (1 + disease) - 1, 6),
                            "variability_fa_change": round(change, 6),
                            "disease_fa_change": round(disease, 6),
                            "disease_ad_change": round(plan.axial_changes.get(key, 0.0), 6),
                            "ad_change": after["ad"] / before["ad"] - 1.0,
                            "radial_scale": round(scales["disease"][key], 6),
                            "variability_radial_scale": round(scales["variability"][key], 6),
                            "tract_fa_change": tract["fa"] / before["fa"] - 1.0,
                            "fa_change": after["fa"] / before["fa"] - 1.0, **own,
                            **{f"source_{name}": value for name, value in after.items()}})
    focal_truth = []
    for key, w in focal.items():
        atlas, region, hemi = key.split("/")
        spec = effects["focal"][f"{atlas}/{region}"]
        tract = tensors.weighted_metrics(stage_evals["disease"], w)
        after = tensors.weighted_metrics(planted_evals, w)
        own = participant_truth(f"focal/{key}", focal_source[key])
        focal_truth.append({"atlas": atlas, "region": region, "hemisphere": hemi,
                            "placement": placement.get(key, key),
                            "z_mm": float(spec["z_mm"]), "sigma_mm": float(spec["sigma_mm"]),
                            "target_fa_change": round(plan.focal_changes.get(key, 0.0), 6),
                            "radial_scale": round(scales["focal"][key], 6),
                            "fa_change": after["fa"] / tract["fa"] - 1.0,
                            "fa_change_from_source": after["fa"] / tensors.weighted_metrics(
                                evals, w)["fa"] - 1.0, **own})
    gtab = gradient_table(base.bvals, bvecs=base.bvecs)
    # a later session has its own noise (the first session's stream is the single-session one)
    noise_rng = np.random.default_rng([seed, plan.index, 1, *(
        [int(plan.session.removeprefix("ses-"))] if plan.session not in ("", "ses-1") else [])])
    snr = float(effects["snr"]) if effects.get("snr") else None  # None: noise-free (tests)
    synthesize = (tensors.synthesize_multishell if effects["multishell"]["shells"]
                  else tensors.synthesize)
    dwi = synthesize(lt_out, s0_out, gtab, snr=snr,
                     s0_reference=float(np.median(base.s0[mask])), rng=noise_rng)
    dwi = dwi.reshape(*shape, -1).astype(np.float32)

    # T1w: GM atrophy in the source anatomy, then the same head position and field
    placed = tissue.regions or {}
    regions = {key: (placed.get(key, base.gm_masks[key]), change)
               for key, change in plan.gm_changes.items()}
    thinned, realised = atrophy_gray_matter(base.t1, tissue, regions)
    t1_points = deform.source_points(deform.grid_points(base.t1.shape, base.t1_affine),
                                     matrix=matrix, field=warp)
    t1w = np.clip(deform.sample(thinned, base.t1_affine, t1_points, order=3), 0, None)
    gm_truth = []
    voxel_mm3 = float(abs(np.linalg.det(base.t1_affine[:3, :3])))
    # The participant's head scaling and smooth field change volumes too (locally by several
    # per cent): the truth is the region's GM / intracranial volume in the participant's own
    # T1w relative to the source's, i.e. the planted atrophy times the field's volume factor
    # over the region's GM, divided by its factor over the brain.
    brain = tissue.brain if tissue.brain is not None else tissue.probability > 0
    brain_factor = _volume_factor(brain.astype(np.float32), base.t1_affine, t1_points)
    for key, change in plan.gm_changes.items():
        atlas, region, hemi = key.split("/")
        region_gm = tissue.probability * regions[key][0]
        before = float(region_gm.sum()) * voxel_mm3
        factor = _volume_factor(region_gm, base.t1_affine, t1_points) / brain_factor
        gm_truth.append({"atlas": atlas, "region": region, "hemisphere": hemi,
                         "target_volume_change": round(change, 6),
                         "volume_change": round(realised[key], 6),
                         "deformation_volume_factor": round(factor, 6),
                         "gm_volume_mm3": round(before, 1),
                         "volume_ratio": (1.0 + realised[key]) * factor})
    return SimulatedParticipant(dwi=dwi, t1w=t1w.reshape(base.t1.shape).astype(np.float32),
                                head=head, tracts=tract_truth, gm=gm_truth, focal=focal_truth,
                                maps=maps)


def _axial_disease(evals: np.ndarray, factor: np.ndarray, axial_changes: dict[str, float],
                   effect: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                   changes: dict[str, float]) -> tuple[np.ndarray, dict[str, float]]:
    """Eigenvalues with the disease's axial scaling, and FA targets relative to them.

    The axial eigenvalues are scaled so that each lesioned tract's weighted AD changes by its
    ``ad_change`` (:func:`bids_app.simulate.tensors.axial_factors_for_ad`, overlapping tracts
    solved jointly); the disease's FA changes, asked relative to the FA before
    the disease, are re-expressed relative to the FA of the axially scaled tensors, so the
    radial solve then lands on the asked FA (lower AD lowers FA by itself; the radial
    eigenvalues make up the rest, falling too when AD falls more than FA).
    """
    axial = tensors.axial_factors_for_ad(evals, weights, effect, axial_changes)
    scaled = np.array(evals, dtype=np.float64, copy=True)
    scaled[:, 0] *= axial
    before = tensors.scale_radial(evals, factor)
    after = tensors.scale_radial(scaled, factor)
    targets = {}
    for key in sorted(set(changes) | set(axial_changes)):  # no FA change asked: FA kept
        change = changes.get(key, 0.0)
        fa_before = tensors.weighted_metrics(before, weights[key])["fa"]
        fa_after = tensors.weighted_metrics(after, weights[key])["fa"]
        targets[key] = (1.0 + change) * fa_before / fa_after - 1.0
    return scaled, targets


def _volume_factor(density: np.ndarray, affine: np.ndarray, points: np.ndarray) -> float:
    """Total of ``density`` after resampling at ``points`` (one per output voxel of the same
    size) over its total before: the deformation's volume change of that tissue."""
    total = float(density.sum())
    return float(deform.sample(density, affine, points, order=1).sum()) / total if total else 1.0
