"""Tissue segmentation (GM/WM/CSF) with Atropos (antspyx)."""

from __future__ import annotations

from dataclasses import dataclass

import ants
import numpy as np
from scipy import ndimage

from bids_app.core.scratch import ants_scratch

#: Labels of the discrete segmentation (``dseg``), as in sMRIPrep/fMRIPrep.
DSEG_LABELS: dict[int, str] = {1: "GM", 2: "WM", 3: "CSF"}
TISSUES: tuple[str, ...] = ("GM", "WM", "CSF")
#: Atropos weight of the template tissue priors (0 = initialisation only, 1 = priors alone).
#: 0: with 0.25 the scan-rescan CV of deep GM fell from ~40 % to ~3 %, but the posteriors
#: followed the template enough to fill in planted atrophy (the demo's left precentral loss,
#: d -1.70, measured +0.13); as initialisation only the classes start right (deep GM CV
#: 9-17 %) and a planted loss stays visible.
PRIOR_WEIGHT = 0.0


#: GM/WM/CSF volumes (``probseg``) are partial-volume fractions of each voxel
#: (:func:`partial_volume_fractions`), not Atropos posteriors. Measured on the 2 mm ds-xa30 T1w
#: (benchmarks/gm_validation.py, same chain otherwise): a smooth deformation's true precentral
#: loss is followed 0.92/0.92/1.03 (posteriors 0.85/0.88/0.94); cortical thinning
#: -0.22/-0.16/-0.04 (posteriors -0.37/-0.31/-0.21); GM 40 % of TIV (34 %).
PARTIAL_VOLUME = True
#: Fewest pure (neighbourhood-interior) voxels from which a class intensity is read.
MIN_PURE_VOXELS = 50


@dataclass(frozen=True)
class Segmentation:
    """Tissue volume fractions (``probseg``, keyed GM/WM/CSF: partial-volume fractions when
    :data:`PARTIAL_VOLUME`, else the posteriors), the Atropos ``posteriors`` and the ``dseg``
    label image (largest posterior)."""

    probseg: dict[str, ants.ANTsImage]
    dseg: ants.ANTsImage
    posteriors: dict[str, ants.ANTsImage]


def segment_tissues(image: ants.ANTsImage, mask: ants.ANTsImage, *,
                    priors: dict[str, ants.ANTsImage] | None = None,
                    prior_weight: float = PRIOR_WEIGHT, mrf: float = 0.1,
                    iterations: int = 5, partial_volume: bool = PARTIAL_VOLUME) -> Segmentation:
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
        Report partial-volume fractions as ``probseg`` (see :data:`PARTIAL_VOLUME`).

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
    posteriors = {t: image.new_image_like(stack[k]) for k, t in enumerate(TISSUES)}
    dseg = np.where(inside, 1 + np.argmax(stack, axis=0), 0).astype(np.float32)
    probseg = posteriors
    if partial_volume:
        fractions = partial_volume_fractions(image.numpy(), dict(zip(TISSUES, stack)), inside)
        probseg = {t: image.new_image_like(fractions[t]) for t in TISSUES}
    return Segmentation(probseg=probseg, dseg=image.new_image_like(dseg),
                        posteriors=posteriors)


def partial_volume_fractions(image: np.ndarray, probseg: dict[str, np.ndarray],
                             mask: np.ndarray) -> dict[str, np.ndarray]:
    """GM/WM/CSF volume fractions of every voxel from its intensity (two-tissue mixel model).

    Each voxel is labelled with its largest posterior. A voxel whose neighbours (26, inside
    the mask) all carry its own label is pure; a class's intensity is the median over its
    pure voxels (over all its voxels when fewer than :data:`MIN_PURE_VOXELS`). A voxel
    darker than the GM intensity is read as a CSF/GM mixture, a brighter one as a GM/WM
    mixture, linearly between the two class intensities (the partial-volume model behind
    FSL FAST's and CAT12's partial-volume maps; purity from the neighbourhood instead of
    their Markov random fields). Unlike the
    posteriors, which saturate towards 0 or 1, a fraction follows a change of a voxel's
    content linearly, and a deep GM voxel whose intensity lies between GM and WM counts as
    the mixture it is instead of flipping between classes. Pure voxels keep fraction 1 of
    their class: mixtures only occur at tissue boundaries.

    Parameters
    ----------
    image
        Bias-corrected T1w (3D).
    probseg
        Posteriors keyed GM/WM/CSF (same grid).
    mask
        Brain mask; fractions are 0 outside.

    Returns
    -------
    dict
        Fractions keyed GM/WM/CSF (float32), summing to 1 inside the mask.

    Raises
    ------
    ValueError
        When a class has fewer than 10 voxels or the class intensities are not ordered
        CSF < GM < WM (not a T1w contrast).
    """
    data = np.asarray(image, np.float64)
    inside = np.asarray(mask) > 0
    stack = np.stack([np.asarray(probseg[t], np.float64) for t in TISSUES])
    winner = np.where(inside, np.argmax(stack, axis=0), -1)
    pure, level = {}, {}
    for k, tissue in enumerate(TISSUES):
        own = winner == k
        if own.sum() < 10:
            raise ValueError(f"fewer than 10 voxels labelled {tissue}")
        # pure: every neighbour inside the mask carries the same label (outside is no tissue)
        pure[tissue] = ndimage.binary_erosion(own | ~inside, structure=np.ones((3, 3, 3), bool),
                                              border_value=1) & own
        core = pure[tissue] if pure[tissue].sum() >= MIN_PURE_VOXELS else own
        level[tissue] = float(np.median(data[core]))
    csf, gm, wm = level["CSF"], level["GM"], level["WM"]
    if not csf < gm < wm:
        raise ValueError(f"class intensities not ordered CSF < GM < WM: {csf:.4g}, "
                         f"{gm:.4g}, {wm:.4g}")
    below = data <= gm
    gm_frac = np.where(below, np.clip((data - csf) / (gm - csf), 0, 1),
                       np.clip((wm - data) / (wm - gm), 0, 1))
    out = {"GM": gm_frac,
           "CSF": np.where(below, 1 - gm_frac, 0.0),
           "WM": np.where(below, 0.0, 1 - gm_frac)}
    # read as a mixture, noise in the interior of a class would give it a few percent of
    # the neighbouring class and bias every volume by the size of the pure regions
    for tissue, where in pure.items():
        for other in TISSUES:
            out[other] = np.where(where, float(other == tissue), out[other])
    return {t: (v * inside).astype(np.float32) for t, v in out.items()}
