"""Tissue segmentation (GM/WM/CSF) with Atropos (antspyx) and partial-volume fractions."""

from __future__ import annotations

from dataclasses import dataclass

import ants
import numpy as np
from scipy import ndimage

from bids_app.core.scratch import ants_scratch

#: Labels of the discrete segmentation (``dseg``), as in sMRIPrep/fMRIPrep.
DSEG_LABELS: dict[int, str] = {1: "GM", 2: "WM", 3: "CSF"}
TISSUES: tuple[str, ...] = ("GM", "WM", "CSF")


@dataclass(frozen=True)
class Segmentation:
    """Tissue maps (``probseg``, keyed GM/WM/CSF: partial-volume fractions or posteriors) and
    the ``dseg`` label image."""

    probseg: dict[str, ants.ANTsImage]
    dseg: ants.ANTsImage


def segment_tissues(image: ants.ANTsImage, mask: ants.ANTsImage, *,
                    priors: dict[str, ants.ANTsImage] | None = None,
                    prior_weight: float = 0.25, mrf: float = 0.1,
                    iterations: int = 5, partial_volume: bool = True) -> Segmentation:
    """Three-class Atropos segmentation [@avants2011] of a bias-corrected T1w.

    Classes are initialised by K-means (T1w contrast: CSF < GM < WM) or, when ``priors`` are
    given, by template tissue priors warped to the T1w. Atropos runs with its constant
    internal seed (``--use-random-seed 0``): its default draws a new seed per call, which
    made repeated segmentations of one image differ by up to 0.09 in GM probability (it
    does not read ``ANTS_RANDOM_SEED``).

    Parameters
    ----------
    image
        Bias-corrected T1w.
    mask
        Brain mask; posteriors are 0 outside.
    priors
        Optional GM/WM/CSF probability maps on the grid of ``image``.
    prior_weight, mrf, iterations
        Atropos prior weight, MRF smoothing factor and number of EM iterations.
    partial_volume
        ``probseg`` holds partial-volume fractions (:func:`partial_volume_fractions`, from the
        Atropos posteriors and the image) instead of the posteriors. On four simulated
        re-scans of ds-xa30 (``benchmarks/anat_rescan.py``) the posteriors' hard
        GM/WM decision in the striatum and thalamus made their GM volumes vary most.
        ``dseg`` is the most probable class of the posteriors either way.

    Returns
    -------
    Segmentation
    """
    options = {"x": mask, "m": f"[{mrf},1x1x1]", "c": f"[{iterations},0]", "r": 0}
    order = ("CSF", "GM", "WM")
    with ants_scratch():  # ants.atropos leaves its probability images in the temp dir
        if priors is None:
            seg = ants.atropos(a=image, i="kmeans[3]", **options)
        else:
            seg = ants.atropos(a=image, i=[priors[t] for t in order],
                               priorweight=prior_weight, **options)
    probs = {name: seg["probabilityimages"][k] for k, name in enumerate(order)}
    inside = mask.numpy() > 0
    stack = np.stack([probs[t].numpy() for t in TISSUES], axis=0)
    stack = np.clip(stack, 0, 1) * inside
    total = stack.sum(axis=0)
    stack = np.where(total > 0, stack / np.maximum(total, 1e-12), 0.0).astype(np.float32)
    dseg = np.where(inside, 1 + np.argmax(stack, axis=0), 0).astype(np.float32)
    if partial_volume:
        fractions = partial_volume_fractions(
            image.numpy(), {t: stack[k] for k, t in enumerate(TISSUES)}, inside,
            voxel_size=float(np.prod(image.spacing)) ** (1 / 3))
        stack = np.stack([fractions[t] for t in TISSUES], axis=0)
    probseg = {t: image.new_image_like(stack[k]) for k, t in enumerate(TISSUES)}
    return Segmentation(probseg=probseg, dseg=image.new_image_like(dseg))


def partial_volume_fractions(intensity: np.ndarray, posteriors: dict[str, np.ndarray],
                             mask: np.ndarray, *, voxel_size: float,
                             sigma_mm: float = 20.0, pure: float = 0.9
                             ) -> dict[str, np.ndarray]:
    """Partial-volume tissue fractions from local class means (two-class linear unmixing).

    The mean intensity of each tissue is estimated locally, from its "pure" voxels (posterior
    above ``pure``) averaged with a Gaussian window of ``sigma_mm``, so that a residual smooth
    bias shifts the class means with the voxels. Each voxel is then a mixture of the two
    tissues whose local means bracket its intensity (CSF/GM below the GM mean, GM/WM above),
    as in FSL FAST's and CAT12's partial-volume estimates. Intermediate-intensity structures
    (thalamus, striatum, which hard posteriors flip between GM and WM from one scan to the
    next) get a stable fraction instead.

    Parameters
    ----------
    intensity
        Bias-corrected T1w (CSF < GM < WM).
    posteriors
        Tissue posteriors keyed ``GM``/``WM``/``CSF`` (e.g. Atropos).
    mask
        Brain mask; fractions are 0 outside.
    voxel_size
        Voxel edge in mm (isotropic approximation: the geometric mean of the spacing).
    sigma_mm, pure
        Width of the local-mean window and posterior threshold of a pure voxel.

    Returns
    -------
    dict
        ``GM``/``WM``/``CSF`` fractions (float32), summing to 1 inside ``mask``.
    """
    inside = np.asarray(mask) > 0
    image = np.asarray(intensity, dtype=np.float64)
    sigma = sigma_mm / voxel_size
    means = {}
    for tissue in TISSUES:
        weight = ((posteriors[tissue] > pure) & inside).astype(np.float64)
        if not weight.any():
            raise ValueError(f"no voxel with {tissue} posterior above {pure}")
        overall = float((weight * image).sum() / weight.sum())
        num = ndimage.gaussian_filter(weight * image, sigma, mode="constant")
        den = ndimage.gaussian_filter(weight, sigma, mode="constant")
        # far from any pure voxel the global mean stands in (weight ramps in smoothly)
        blend = np.clip(den / 0.05, 0, 1)
        means[tissue] = blend * num / np.maximum(den, 1e-12) + (1 - blend) * overall
    csf, gm, wm = means["CSF"], means["GM"], means["WM"]
    gm = np.maximum(gm, csf + 1e-6)
    wm = np.maximum(wm, gm + 1e-6)
    low = image < gm
    gm_frac = np.where(low, (image - csf) / (gm - csf), (wm - image) / (wm - gm))
    gm_frac = np.clip(gm_frac, 0, 1)
    out = {"GM": gm_frac, "WM": np.where(low, 0.0, 1 - gm_frac),
           "CSF": np.where(low, 1 - gm_frac, 0.0)}
    return {t: (v * inside).astype(np.float32) for t, v in out.items()}
