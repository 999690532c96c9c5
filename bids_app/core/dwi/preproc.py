"""DWI preprocessing: denoising, Gibbs unringing, motion correction, brain mask (dipy/antspyx)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ants
import numpy as np
import pandas as pd
from dipy.denoise.patch2self import patch2self
from dipy.segment.mask import median_otsu
from scipy import ndimage
from scipy.spatial.transform import Rotation

from bids_app.core.dwi._ants import (
    matrix_transform,
    rotate_bvecs,
    rotation_part,
    to_ants,
    transform_matrix,
)
from bids_app.core.dwi.batched import gibbs_removal_batched, mppca_batched
from bids_app.core.scratch import ants_scratch
from bids_app.core.seeding import ants_seed
from bids_app.errors import BadDataError

#: Columns of the motion TSV (fMRIPrep names; translations mm, rotations rad, RAS axes).
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                  "framewise_displacement")
#: Head radius (mm) converting rotations to displacements in Power's FD.
FD_RADIUS = 50.0


def mean_b0(data: np.ndarray, bvals: np.ndarray, *, b0_threshold: float) -> np.ndarray:
    """Mean of the b0 volumes (b < ``b0_threshold``)."""
    return np.asarray(data[..., np.asarray(bvals) < b0_threshold], dtype=np.float32).mean(axis=3)


def rough_mask(b0: np.ndarray, *, dilate: int = 2) -> np.ndarray:
    """Generous head mask (median Otsu, dilated) to restrict costly steps to the head."""
    _, mask = median_otsu(b0, median_radius=2, numpass=1, dilate=dilate)
    return mask & (b0 > 0)


def _mppca_radius(n_volumes: int) -> int:
    # Smallest cubic patch holding at least as many voxels as there are volumes
    # (MP-PCA needs more samples than dimensions); r = 1 for <= 27 volumes.
    radius = 1
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
        ``mppca`` (Marchenko-Pastur PCA, patch radius 1 up to 27 volumes, restricted to a
        head mask), ``patch2self`` (OLS) or ``none``.
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
        raise ValueError(f"unknown denoising method {method!r}; choose from {list(DENOISERS)}")
    if mask is None:
        mask = rough_mask(mean_b0(data, bvals, b0_threshold=b0_threshold))
    return DENOISERS[method](np.asarray(data, dtype=np.float32), bvals=bvals,
                             b0_threshold=b0_threshold, mask=mask)


def unring(data: np.ndarray, *, slice_axis: int = 2) -> np.ndarray:
    """Gibbs-ringing removal (local sub-voxel shifts; dipy's algorithm, batched)."""
    return gibbs_removal_batched(np.asarray(data, dtype=np.float32),
                                 slice_axis=slice_axis).astype(np.float32)


@dataclass(frozen=True)
class MotionResult:
    """Output of :func:`motion_correct`."""

    data: np.ndarray
    """Realigned 4D series on the reference grid."""
    bvecs: np.ndarray
    """(N, 3) b-vectors rotated into the reference frame."""
    params: pd.DataFrame
    """Per-volume :data:`MOTION_COLUMNS`."""
    matrices: tuple[np.ndarray, ...]
    """Per-volume 4x4 RAS matrices (reference -> volume points)."""
    reference: np.ndarray
    """The reference image (mean b0 of the input)."""


def motion_params(matrices: list[np.ndarray], *, center: np.ndarray) -> pd.DataFrame:
    """Translations of ``center`` (mm), Euler rotations (rad, xyz) and Power's FD.

    FD = sum |d translation| + ``FD_RADIUS`` * sum |d rotation| between consecutive volumes
    (0 for the first volume).
    """
    rows = []
    for mat in matrices:
        trans = mat[:3, :3] @ center + mat[:3, 3] - center
        rot = Rotation.from_matrix(rotation_part(mat)).as_euler("xyz")
        rows.append([*trans, *rot])
    arr = np.asarray(rows, dtype=float).reshape(-1, 6)
    diff = np.abs(np.diff(arr, axis=0))
    fd = np.concatenate([[0.0], diff[:, :3].sum(axis=1) + FD_RADIUS * diff[:, 3:].sum(axis=1)])
    return pd.DataFrame(np.column_stack([arr, fd]), columns=list(MOTION_COLUMNS))


#: Transform model of the between-volume motion correction (the methods text reads it).
MOTION_TRANSFORM = "Affine"


def motion_correct(
    data: np.ndarray,
    *,
    affine: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    b0_threshold: float,
    seed: int | None,
    transform: str = MOTION_TRANSFORM,
    iterations: tuple[int, ...] = (30,),
    shrink_factors: tuple[int, ...] = (2,),
    smoothing_sigmas: tuple[int, ...] = (1,),
    sampling_rate: float = 0.1,
) -> MotionResult:
    """Between-volume motion correction into the mean-b0 space (antspyx).

    b0 volumes are registered to the mean b0; diffusion-weighted volumes to the mean DW
    image, itself registered once to the mean b0, and the two transforms are composed so
    each volume is resampled once. Mattes mutual information; by default one
    level at half resolution with 30 iterations and 10 % sampling (~0.25 s per volume; the
    full-resolution level costs ~3x more for sub-0.1 mm changes). b-vectors are rotated by
    each volume's rotation.

    Parameters
    ----------
    data
        4D series.
    affine
        Voxel-to-world affine.
    bvals, bvecs
        (N,) and (N, 3) FSL-convention gradients.
    b0_threshold
        b-values below are b0.
    seed
        ANTs random-sampling seed (``None``: not seeded).
    transform
        ``Affine`` (12 dof: also absorbs eddy-current scaling/shear; the issue's model) or
        ``Rigid`` (6 dof). Translations/rotations in the motion table and the b-vector
        rotation use the rotation part of each matrix.
    iterations, shrink_factors, smoothing_sigmas, sampling_rate
        ANTs optimisation settings.

    Returns
    -------
    MotionResult
    """
    is_b0 = np.asarray(bvals) < b0_threshold
    ref = mean_b0(data, bvals, b0_threshold=b0_threshold)
    mask = rough_mask(ref)
    center = affine[:3, :3] @ np.mean(np.argwhere(mask), axis=0) + affine[:3, 3]
    b0_ref = to_ants(ref, affine)
    settings = {"type_of_transform": transform, "aff_iterations": tuple(iterations),
                "aff_shrink_factors": tuple(shrink_factors),
                "aff_smoothing_sigmas": tuple(smoothing_sigmas),
                "aff_random_sampling_rate": sampling_rate}
    out = np.empty(data.shape, dtype=np.float32)
    matrices = []
    with ants_seed(seed), ants_scratch():  # unnamed transforms go to a private dir
        # DW volumes are registered to the mean DW image (same contrast, much more robust
        # than low-SNR high-b volumes against the b0), which is registered once to the b0.
        dw_to_b0 = np.eye(4)
        if (~is_b0).any():
            dw_mean = np.asarray(data[..., ~is_b0], dtype=np.float32).mean(axis=3)
            dw_ref = to_ants(dw_mean, affine)
            reg = ants.registration(b0_ref, dw_ref, **settings)
            dw_to_b0 = transform_matrix(ants.read_transform(reg["fwdtransforms"][0]))
        for k in range(data.shape[3]):
            moving = to_ants(data[..., k], affine)
            target = b0_ref if is_b0[k] else dw_ref
            reg = ants.registration(target, moving, **settings)
            mat = transform_matrix(ants.read_transform(reg["fwdtransforms"][0]))
            if not is_b0[k]:
                mat = mat @ dw_to_b0  # b0-reference point -> mean-DW point -> volume point
            matrices.append(mat)
            out[..., k] = matrix_transform(mat).apply_to_image(
                moving, reference=b0_ref, interpolation="linear").numpy()
    params = motion_params(matrices, center=center)
    new_bvecs = rotate_bvecs(bvecs, matrices, affine)
    new_bvecs[np.asarray(bvals) < b0_threshold] = 0.0
    return MotionResult(data=out, bvecs=new_bvecs, params=params, matrices=tuple(matrices),
                        reference=ref)


def brain_mask(b0: np.ndarray, *, zooms: tuple[float, ...], dwi_mean: np.ndarray | None = None,
               min_ml: float = 300.0, max_ml: float = 3000.0, source: str = "DWI") -> np.ndarray:
    """Brain mask by median Otsu on the mean b0 (and mean DWI), hole-free, volume-checked.

    Otsu on the b0 alone leaves out tissue whose b0 is darker than the threshold; on real
    Siemens data (ds-xa30) that is the brainstem and midbrain, i.e. the inferior
    corticospinal tract and the cerebral peduncles.  The mask is therefore the union of the
    median-Otsu masks of the mean b0 and of the mean diffusion-weighted image (where white
    matter is bright and CSF dark), closed by two voxels, with enclosed holes filled in 3D
    and in every axial, coronal and sagittal slice (holes open to the field-of-view edge,
    like a brainstem leaving the bottom of the FOV, are enclosed in the other orientations),
    and reduced to its largest connected component (no eyes or neck).

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
    _, mask = median_otsu(b0, median_radius=2, numpass=2)
    if dwi_mean is not None:
        _, dwi_mask = median_otsu(np.asarray(dwi_mean, dtype=np.float32), median_radius=2,
                                  numpass=2)
        mask = mask | dwi_mask
    mask = fill_mask(mask) & (b0 > 0)
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


def fill_mask(mask: np.ndarray, *, closing: int = 2) -> np.ndarray:
    """Close (``closing`` voxels), fill holes (3D, then slice-wise along each axis), keep the
    largest connected component."""
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
    for axis in range(3):
        mask = np.stack([ndimage.binary_fill_holes(plane) for plane in np.moveaxis(mask, axis, 0)],
                        axis=axis)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == int(np.argmax(sizes)) + 1
    return mask

