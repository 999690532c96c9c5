"""DWI preprocessing: denoising, Gibbs unringing, brain mask (dipy); motion correction is in
:mod:`bids_app.core.dwi.motion`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import unique_bvals_tolerance
from dipy.denoise.patch2self import patch2self
from dipy.segment.mask import median_otsu
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

from bids_app.core.dwi.batched import gibbs_removal_batched, mp_noise_sigma, mppca_batched
from bids_app.errors import BadDataError


def mean_b0(data: np.ndarray, bvals: np.ndarray, *, b0_threshold: float) -> np.ndarray:
    """Mean of the b0 volumes (b < ``b0_threshold``)."""
    return np.asarray(data[..., np.asarray(bvals) < b0_threshold], dtype=np.float32).mean(axis=3)


def rough_mask(b0: np.ndarray, *, dilate: int = 2) -> np.ndarray:
    """Generous head mask (median Otsu, dilated) to restrict costly steps to the head."""
    _, mask = median_otsu(b0, median_radius=2, numpass=1, dilate=dilate)
    return mask & (b0 > 0)


#: Smallest MP-PCA patch radius (5x5x5, dipy's default and MRtrix3 ``dwidenoise``'s minimum).
MPPCA_MIN_RADIUS = 2


def _mppca_radius(n_volumes: int) -> int:
    # Smallest cubic patch of at least MPPCA_MIN_RADIUS holding as many voxels as there are
    # volumes (MP-PCA needs more samples than dimensions). A 3x3x3 patch (27 samples for 21
    # volumes) estimated the noise of the real ds-xa30 runs 35-40 % below dwidenoise's
    # 5x5x5 estimate (2.5-2.8 vs 4.2; 5x5x5 here: 4.3), which the QC SNR then inherited.
    radius = MPPCA_MIN_RADIUS
    while (2 * radius + 1) ** 3 < n_volumes:
        radius += 1
    return radius


def _denoise_mppca(data, *, bvals, b0_threshold, mask):
    den, sigma = mppca_batched(data, mask=mask, patch_radius=_mppca_radius(data.shape[3]),
                               return_sigma=True)
    den = np.where(mask[..., None], den, data).astype(np.float32)
    return den, sigma.astype(np.float32)


def _denoise_patch2self(data, *, bvals, b0_threshold, mask):
    den = patch2self(data, np.asarray(bvals), model="ols", b0_threshold=b0_threshold,
                     shift_intensity=True, clip_negative_vals=False, verbose=False)
    return np.asarray(den, dtype=np.float32), None


def _denoise_none(data, *, bvals, b0_threshold, mask):
    return np.asarray(data, dtype=np.float32), None


@dataclass(frozen=True)
class DiffusionSnr:
    """What :func:`diffusion_snr` measured."""

    snr: float
    """Median brain signal of the lowest shell's direction-averaged image / noise sigma."""
    shell: float
    """The lowest non-zero b-value (s/mm^2)."""
    sigma: float
    """Median Marchenko-Pastur noise standard deviation over the sampled brain patches."""
    signal: float
    """Median brain signal of the lowest shell's direction-averaged image."""


def diffusion_snr(data: np.ndarray, bvals: np.ndarray, *, b0_threshold: float,
                  max_patches: int = 2000) -> DiffusionSnr:
    """Signal-to-noise ratio of the diffusion-weighted images of a series (before any step).

    The noise sigma is the Marchenko-Pastur estimate of MP-PCA (same patch size as
    :func:`denoise`) at up to ``max_patches`` brain voxels taken at a regular stride (no
    random sampling); the signal is the median over the brain (median Otsu of the mean b0)
    of the lowest shell's direction-averaged image. This is the quantity that decides
    whether MP-PCA keeps the anisotropy (``benchmarks/fidelity.py``): on magnitude data
    whose diffusion-weighted signal sits a few sigma above the noise floor (e.g. one
    b = 2500 s/mm^2 shell at a b0 SNR of 25) the components that carry the direction
    dependence fall below the Marchenko-Pastur edge and are removed, lowering FA.

    Parameters
    ----------
    data
        4D series (a slab of slices is enough).
    bvals
        (N,) b-values.
    b0_threshold
        b-values below are b0.
    max_patches
        Brain patches sampled for the noise estimate.

    Returns
    -------
    DiffusionSnr

    Raises
    ------
    ValueError
        No diffusion-weighted volume, or no brain voxel whose patch fits in the array.
    """
    bvals = np.asarray(bvals, dtype=float)
    weighted = bvals >= b0_threshold
    if not weighted.any():
        raise ValueError("no diffusion-weighted volume to measure an SNR on")
    shell = float(unique_bvals_tolerance(bvals[weighted], tol=b0_threshold).min())
    in_shell = weighted & (np.abs(bvals - shell) <= b0_threshold)
    data = np.asarray(data, dtype=np.float32)
    _, brain = median_otsu(mean_b0(data, bvals, b0_threshold=b0_threshold), median_radius=2,
                           numpass=2)
    radius = _mppca_radius(data.shape[3])
    inner = np.zeros(brain.shape, dtype=bool)
    inner[tuple(slice(radius, n - radius) for n in brain.shape)] = True
    candidates = np.argwhere(brain & inner)
    if not len(candidates):
        raise ValueError(f"no brain voxel with a {2 * radius + 1}-voxel patch inside the "
                         f"array of shape {data.shape[:3]}")
    centres = candidates[::max(1, len(candidates) // max_patches)][:max_patches]
    sigma = float(np.median(mp_noise_sigma(data, centres, patch_radius=radius)))
    signal = float(np.median(data[..., in_shell].mean(axis=3)[brain]))
    return DiffusionSnr(snr=signal / sigma if sigma > 0 else float("inf"), shell=shell,
                        sigma=sigma, signal=signal)


#: Denoisers that also return a noise standard-deviation map.
NOISE_MAP_DENOISERS = frozenset({"mppca"})

DENOISERS: dict[str, Callable] = {
    "mppca": _denoise_mppca,
    "patch2self": _denoise_patch2self,
    "none": _denoise_none,
}


def denoise(data: np.ndarray, *, method: str, bvals: np.ndarray, b0_threshold: float,
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Denoise a DWI series with dipy.

    Parameters
    ----------
    data
        4D series.
    method
        ``mppca`` (Marchenko-Pastur PCA, 5x5x5 patches up to 125 volumes, restricted to a
        head mask), ``patch2self`` (OLS) or ``none``. ``--denoise auto`` is resolved to one
        of these by the plan (:func:`bids_app.bids.plan.plan_denoise`), never here.
    bvals
        b-values (patch2self needs them).
    b0_threshold
        b-values below are b0.
    mask
        Voxels to denoise (MP-PCA); default: :func:`rough_mask` of the mean b0.

    Returns
    -------
    denoised : ndarray
        float32 4D series.
    sigma : ndarray or None
        MP-PCA noise standard deviation map (``None`` for other methods).
    """
    if method not in DENOISERS:
        raise ValueError(f"unknown denoising method {method!r}; choose from {list(DENOISERS)} "
                         "('auto' is resolved by bids_app.bids.plan.plan_denoise)")
    if mask is None:
        mask = rough_mask(mean_b0(data, bvals, b0_threshold=b0_threshold))
    return DENOISERS[method](np.asarray(data, dtype=np.float32), bvals=bvals,
                             b0_threshold=b0_threshold, mask=mask)


def unring(data: np.ndarray, *, slice_axis: int = 2) -> np.ndarray:
    """Gibbs-ringing removal (local sub-voxel shifts; dipy's algorithm, batched)."""
    return gibbs_removal_batched(np.asarray(data, dtype=np.float32),
                                 slice_axis=slice_axis).astype(np.float32)


#: Gaussian scale (mm) of the receive-coil shading divided out before thresholding.
SHADING_SIGMA_MM = 30.0
#: Bridges thinner than ``2 * DETACH_VOXELS + 1`` voxels (optic nerves, neck) are cut before
#: the largest connected component is kept.
DETACH_VOXELS = 2


def flatten_shading(image: np.ndarray, head: np.ndarray, *, zooms: tuple[float, ...],
                    sigma_mm: float = SHADING_SIGMA_MM) -> np.ndarray:
    """Divide out the slowly varying receive-coil shading (normalised Gaussian convolution
    inside ``head``), keeping the image's median head intensity; 0 outside ``head``.

    On ds-xa30 (head coil elements only) the b0 falls from ~850 at the vertex to ~250 in the
    brainstem, below a global Otsu threshold (~280) although it is twice the scalp's.
    """
    head = np.asarray(head, dtype=bool)
    image = np.asarray(image, dtype=np.float32)
    if not head.any():
        return np.zeros_like(image)
    sigma = sigma_mm / np.asarray(zooms[:3], dtype=float)
    num = ndimage.gaussian_filter(np.where(head, image, 0.0), sigma)
    den = ndimage.gaussian_filter(head.astype(np.float32), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        shading = np.where(den > 0.05, num / den, 0.0)
        flat = np.where(head & (shading > 0), image / shading, 0.0)
    return (flat * float(np.median(image[head]))).astype(np.float32)


def brain_mask(b0: np.ndarray, *, zooms: tuple[float, ...], dwi_mean: np.ndarray | None = None,
               min_ml: float = 300.0, max_ml: float = 3000.0, source: str = "DWI") -> np.ndarray:
    """Brain mask by median Otsu on the shading-corrected mean b0 (and mean DWI), hole-free,
    volume-checked.

    A global Otsu threshold on the b0 alone leaves out tissue darker than the threshold; on
    real Siemens data (ds-xa30) that is the brainstem and midbrain, i.e. the inferior
    corticospinal tract and the cerebral peduncles, for two reasons handled here: the
    receive-coil shading (divided out first, :func:`flatten_shading`, inside a generous head
    mask) and contrast (the mask is the union of the median-Otsu masks of the mean b0 and
    of the mean diffusion-weighted image). It is then made hole-free by :func:`fill_mask`:
    a brainstem leaving the field of view through a face is enclosed there by the convex
    hull of the mask's footprint on that face, thin bridges (optic nerves) are cut and the
    largest connected component is kept. On both ds-xa30 runs the mask then holds >= 98 % of
    every HCP842 tract's in-field-of-view weight (corticospinal tract before: 82-92 %;
    ``tests/test_core_dwi_preproc_mask.py``).

    Parameters
    ----------
    b0
        Mean b0 image.
    zooms
        Voxel size (mm).
    dwi_mean
        Mean of the diffusion-weighted volumes (optional; b0 only when ``None``).
    min_ml, max_ml
        Plausible mask volume range (mL); a partial-coverage DWI still exceeds 300 mL.
    source
        Name used in the error message.

    Returns
    -------
    ndarray
        Boolean mask (voxels with b0 <= 0, e.g. NaN/Inf voxels zeroed by the checks, excluded).

    Raises
    ------
    BadDataError
        When the mask volume is outside ``[min_ml, max_ml]``.
    """
    b0 = np.asarray(b0, dtype=np.float32)
    images = [b0] if dwi_mean is None else [b0, np.asarray(dwi_mean, dtype=np.float32)]
    head = np.logical_or.reduce([rough_mask(image) for image in images])
    mask = np.zeros(b0.shape, dtype=bool)
    for image in images:
        _, otsu = median_otsu(flatten_shading(image, head, zooms=zooms), median_radius=2,
                              numpass=2)
        mask |= otsu
    mask = fill_mask(mask, detach=DETACH_VOXELS) & (b0 > 0)
    volume_ml = float(mask.sum() * np.prod(zooms[:3]) / 1000.0)
    if not (min_ml <= volume_ml <= max_ml):
        raise BadDataError(f"{source}: brain mask volume {volume_ml:.0f} mL is outside the "
                           f"plausible range [{min_ml:g}, {max_ml:g}] mL")
    return mask


def dwi_brain_mask(data: np.ndarray, bvals: np.ndarray, *, b0_threshold: float,
                   zooms: tuple[float, ...], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Brain mask of a DWI series: :func:`brain_mask` of its mean b0 and mean DW image.

    Parameters
    ----------
    data
        4D series.
    bvals
        (N,) b-values.
    b0_threshold
        b-values below are b0; the others form the mean diffusion-weighted image (none: the
        mask comes from the b0 alone).
    zooms
        Voxel size (mm).
    source
        Name used in the error message.

    Returns
    -------
    mask : ndarray
        Boolean brain mask.
    b0 : ndarray
        float32 mean b0 (:func:`mean_b0`).

    Raises
    ------
    BadDataError
        When the mask volume is implausible (see :func:`brain_mask`).
    """
    b0 = mean_b0(data, bvals, b0_threshold=b0_threshold)
    weighted = np.asarray(bvals) >= b0_threshold
    dwi_mean = (np.asarray(data[..., weighted], dtype=np.float32).mean(axis=3)
                if weighted.any() else None)
    mask = brain_mask(b0, zooms=zooms, dwi_mean=dwi_mean, source=source)
    return mask, b0


def fill_mask(mask: np.ndarray, *, closing: int = 2, detach: int = 0) -> np.ndarray:
    """Close (``closing`` voxels), fill holes (3D, then slice-wise along each axis), cut
    bridges thinner than ``2 * detach + 1`` voxels, keep the largest connected component.

    For the slice-wise filling every face of the array the mask touches is closed by the
    convex hull of the mask's footprint on it: a channel open to the field-of-view edge (a
    brainstem leaving the bottom of the FOV between the temporal lobes and the cerebellum)
    is then enclosed in the slices perpendicular to that face, as it is in the brain.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    if closing:
        pad = closing + 1  # closing must not erode at the array border
        padded = np.pad(mask, pad)
        padded = ndimage.binary_closing(padded, ndimage.generate_binary_structure(3, 1),
                                        iterations=closing)
        mask = padded[pad:-pad, pad:-pad, pad:-pad]
    mask = ndimage.binary_fill_holes(mask)
    framed = np.pad(mask, 1)
    for axis in range(3):
        for side in (0, -1):
            footprint = np.take(mask, side, axis=axis)
            index = [slice(1, -1)] * 3
            index[axis] = side
            framed[tuple(index)] = _convex_hull_2d(footprint)
    for axis in range(3):
        framed = np.stack([ndimage.binary_fill_holes(plane)
                           for plane in np.moveaxis(framed, axis, 0)], axis=axis)
    mask = framed[1:-1, 1:-1, 1:-1]
    if detach:
        cross = ndimage.generate_binary_structure(3, 1)
        core = _largest_component(ndimage.binary_erosion(mask, cross, iterations=detach,
                                                         border_value=1))
        if core.any():
            mask = ndimage.binary_dilation(core, cross, iterations=detach) & mask
    return _largest_component(mask)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return labels == int(np.argmax(sizes)) + 1


def _convex_hull_2d(footprint: np.ndarray) -> np.ndarray:
    """Filled convex hull of a 2D boolean footprint (empty, or the footprint itself when it
    has fewer than three non-collinear points)."""
    points = np.argwhere(footprint)
    if len(points) < 3:
        return footprint.copy()
    try:
        hull = Delaunay(points[ConvexHull(points).vertices])
    except QhullError:  # collinear points
        return footprint.copy()
    grid = np.argwhere(np.ones(footprint.shape, dtype=bool))
    return (hull.find_simplex(grid) >= 0).reshape(footprint.shape) | footprint
