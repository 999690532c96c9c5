"""Intensity non-uniformity correction and brain masking (antspyx)."""

from __future__ import annotations

import ants
import numpy as np
from scipy import ndimage


def head_mask(image: ants.ANTsImage) -> ants.ANTsImage:
    """Rough foreground (head) mask: Otsu threshold, largest component, holes filled."""
    arr = image.numpy()
    thr = ants.threshold_image(image, "Otsu", 1).numpy() > 0
    if not thr.any():
        thr = arr > np.percentile(arr, 50)
    lab, n = ndimage.label(thr)
    if n > 1:
        sizes = ndimage.sum(thr, lab, index=np.arange(1, n + 1))
        thr = lab == (1 + int(np.argmax(sizes)))
    thr = ndimage.binary_closing(thr, iterations=2)
    thr = _fill_holes_slicewise(thr)
    return image.new_image_like(thr.astype(np.float32))


def tissue_foreground(image: ants.ANTsImage) -> ants.ANTsImage:
    """Everything that is not air: Otsu threshold of ``log(1 + I)``, largest component, holes
    filled.

    On a T1w the intensity Otsu threshold of :func:`head_mask` falls between gray and white
    matter (ds-xa30: 310 with GM ~250, WM ~500, air < 60) and relies on hole filling to get
    the dark tissue back; under a smooth bias field (+-15 %) one simulated re-scan of ds-xa30
    lost 127 cm^3 of cortex that way. On the log scale the threshold separates air from tissue
    (ds-xa30: 107); it is raised to the air class's mean + 5 SD so that noise tails never join.
    """
    positive = np.clip(image.numpy(), 0, None)
    log_image = image.new_image_like(np.log1p(positive).astype(np.float32))
    tissue = ants.threshold_image(log_image, "Otsu", 1).numpy() > 0
    air = positive[~tissue]
    if air.size > 1:
        tissue &= positive > air.mean() + 5 * air.std()
    lab, n = ndimage.label(tissue)
    if n > 1:
        sizes = ndimage.sum(tissue, lab, index=np.arange(1, n + 1))
        tissue = lab == (1 + int(np.argmax(sizes)))
    return image.new_image_like(_fill_holes_slicewise(tissue).astype(np.float32))


def n4_correct(image: ants.ANTsImage, *, mask: ants.ANTsImage | None = None,
               shrink_factor: int = 4, spline_distance: float = 100.0,
               iterations: tuple[int, ...] = (20, 20, 20)) -> ants.ANTsImage:
    """N4 bias-field correction [@tustison2010] restricted to ``mask``.

    Parameters
    ----------
    image
        T1w image.
    mask
        Voxels used to fit the bias field (default: :func:`head_mask`).
    shrink_factor, spline_distance, iterations
        N4 settings; the defaults are chosen for speed (a few seconds at 1-2 mm).

    Returns
    -------
    ants.ANTsImage
        Corrected image, float32, negative values clipped to 0.
    """
    if mask is None:
        mask = head_mask(image)
    out = ants.n4_bias_field_correction(
        image, mask=mask, shrink_factor=shrink_factor, spline_param=spline_distance,
        convergence={"iters": list(iterations), "tol": 1e-4})
    return out.new_image_like(np.clip(out.numpy(), 0, None).astype(np.float32))


def refine_brain_mask(image: ants.ANTsImage, prior: ants.ANTsImage, *,
                      threshold: float = 0.5) -> ants.ANTsImage:
    """Brain mask from a template mask brought into T1w space, refined on the image.

    The template mask (probability after linear interpolation) is thresholded and
    intersected with the image's tissue foreground (:func:`tissue_foreground`), so that a
    registration that overshoots the head never puts air in the mask; the largest connected
    component is kept and holes are filled. (The intersection used the N4 head mask until
    2026-12: its threshold between GM and WM cut peripheral cortex under a bias field, and
    TIV varied by 5.2 % over four simulated re-scans of ds-xa30; 0.7 % now.)

    Parameters
    ----------
    image
        Bias-corrected T1w.
    prior
        Template brain mask resampled to ``image`` (values in [0, 1]).
    threshold
        Probability above which a voxel belongs to the prior mask.

    Returns
    -------
    ants.ANTsImage
        Binary mask (float32 0/1) on the grid of ``image``.
    """
    mask = (prior.numpy() > threshold) & (tissue_foreground(image).numpy() > 0)
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    mask = ndimage.binary_fill_holes(mask)
    return image.new_image_like(mask.astype(np.float32))


def _fill_holes_slicewise(mask: np.ndarray) -> np.ndarray:
    out = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        out = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(out, axis, 0)],
                       axis=0)
        out = np.moveaxis(out, 0, axis)
    return out
