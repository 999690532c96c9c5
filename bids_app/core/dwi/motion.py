"""Between-volume motion correction: every volume registered to a prediction of itself (antspyx).

A diffusion-weighted volume does not look like the mean diffusion-weighted image (its contrast
depends on its gradient direction), nor like the mean b0 (CSF bright there, dark here), so
registering to either has a biased optimum. On the motion-free simulated cohort of issue 28
(3 mm voxels, 20 directions at b = 2500 s/mm^2, MP-PCA denoised) Mattes mutual information put
single volumes 0.6-0.9 mm (mean over the head) from the mean diffusion-weighted image and that
image 1.6-4.8 mm (up to 11 mm with an affine) from the mean b0, with the metric's optimum, not
the optimiser, off identity; resampling by those transforms compressed true patient-control FA
differences by up to 27 %. Here, as in FSL ``eddy`` (Andersson & Sotiropoulos 2016) and
QSIPrep's SHORELine (Cieslak et al. 2021), each diffusion-weighted volume is registered to the
signal a model fitted to the other volumes predicts for its own gradient (a tensor,
:func:`predict_signal`): same contrast, so the optimum sits at the true position (largest
spurious displacement 0.2-0.3 mm on that cohort, FA unchanged). b0 volumes are registered
rigidly to the mean b0. A second pass
refits the model to the series realigned by the first. There is no cross-contrast registration
of the diffusion-weighted volumes to the b0 (FSL ``eddy --dont_peas``): motion between a block
of b0 volumes acquired first and the diffusion-weighted block is not estimated. Estimated
motion smaller than :data:`MOTION_MIN_DISPLACEMENT` of a voxel everywhere in the head is not
applied and that volume is not resampled (see :func:`motion_correct`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ants
import numpy as np
import pandas as pd
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import design_matrix
from scipy.spatial.transform import Rotation

from bids_app.core.dwi._ants import (
    matrix_transform,
    rotate_bvecs,
    rotation_part,
    to_ants,
    transform_matrix,
)
from bids_app.core.dwi.preproc import mean_b0, rough_mask
from bids_app.core.scratch import ants_scratch
from bids_app.core.seeding import ants_seed

#: Columns of the motion TSV (fMRIPrep names; translations mm, rotations rad, RAS axes).
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                  "framewise_displacement")
#: Head radius (mm) converting rotations to displacements in Power's FD.
FD_RADIUS = 50.0
#: Transform model of the diffusion-weighted volumes (the methods text reads it); b0 volumes,
#: which eddy currents do not distort, are registered rigidly. Against the leave-one-out
#: targets an affine adds little spurious motion on the motion-free simulated cohort (largest
#: 0.31 mm, FA unchanged to 0.0002) and on ds-xa30 (b = 2500 s/mm^2) lowers the tensor-fit
#: residual more than a rigid model (AP run: 12.9 % of the signal uncorrected, 9.1 % rigid,
#: 8.5 % affine): eddy-current scaling and shear are there.
MOTION_TRANSFORM = "Affine"
#: Largest leverage of a volume in the tensor fit for which its leave-one-out prediction is used
#: (its residual is divided by ``1 - leverage``: at most 5x here).
MAX_LEVERAGE = 0.8
#: Model fit + registration passes (the second refits to the series realigned by the first;
#: skipped when the first applied no motion).
MOTION_PASSES = 2
#: Estimated motion whose largest displacement over the head is below this fraction of the
#: (mean) voxel size is not applied, so that volume is not resampled. On the motion-free
#: simulated cohort (3 mm voxels) the spurious estimates reached 0.2-0.3 mm; applying them all
#: changed tract FA by <= 0.0003 (``benchmarks/motion_fidelity.py --min-displacement 0``), so
#: the floor does not keep FA, it spares a resampling that moves a volume by less than a tenth
#: of a voxel (a motion-free series comes back bit-identical) and its cost. Planted motion of
#: 1 mm or 1 degree is >= 3x larger and is applied (``tests/test_core_dwi_motion.py``).
MOTION_MIN_DISPLACEMENT = 0.1


@dataclass(frozen=True)
class MotionResult:
    """Output of :func:`motion_correct`."""

    data: np.ndarray
    """Realigned 4D series on the reference grid (volumes not moved are the input's)."""
    bvecs: np.ndarray
    """(N, 3) b-vectors rotated into the reference frame."""
    params: pd.DataFrame
    """Per-volume :data:`MOTION_COLUMNS` (of the applied transforms)."""
    matrices: tuple[np.ndarray, ...]
    """Per-volume 4x4 RAS matrices (reference -> volume points); identity = not moved."""
    reference: np.ndarray
    """The reference image (mean b0 of the input)."""
    displacement: np.ndarray
    """(N,) largest displacement (mm) over the head of each volume's estimated transform,
    applied or not."""


def motion_params(matrices: Sequence[np.ndarray], *, center: np.ndarray) -> pd.DataFrame:
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


def max_displacement(matrix: np.ndarray, points: np.ndarray) -> float:
    """Largest distance (mm) a 4x4 RAS matrix moves any of ``points`` ((M, 3) RAS mm)."""
    mat = np.asarray(matrix, dtype=float)
    moved = points @ mat[:3, :3].T + mat[:3, 3]
    return float(np.sqrt(((moved - points) ** 2).sum(axis=1)).max()) if len(points) else 0.0


def predict_signal(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, *,
                   mask: np.ndarray, b0_threshold: float) -> np.ndarray:
    """Every volume's signal as a tensor fitted to all the other volumes predicts it.

    Leave-one-out predictions of the log-linear least-squares tensor fit, in closed form: with
    the hat matrix ``H`` of the (volumes x 7) design, the prediction of volume ``i`` without
    it is ``y_i - e_i / (1 - H_ii)`` (``e`` the residuals), one matrix product for every
    voxel. Left out, a moved volume does not pull its own target towards itself. A volume the
    others cannot predict (leverage ``H_ii`` >= :data:`MAX_LEVERAGE`, e.g. in a six-direction
    scheme, or the only b0) gets the mean of the other volumes of its shell (b-values within
    ``b0_threshold``), or, when it is alone in its shell, the in-sample fit.

    Returns
    -------
    ndarray
        float32 4D series, 0 outside ``mask``.
    """
    bvals = np.asarray(bvals, dtype=float)
    gtab = gradient_table(bvals, bvecs=np.asarray(bvecs, dtype=float), b0_threshold=b0_threshold)
    design = design_matrix(gtab)
    hat = design @ np.linalg.pinv(design)
    leverage = np.diag(hat)
    values = np.asarray(data, dtype=np.float64)[mask]
    top = float(values.max()) if values.size else 1.0
    log_s = np.log(np.maximum(values, 1e-3 * top))
    fitted = log_s @ hat.T
    pred = np.exp(np.minimum(fitted, np.log(2.0 * top)))
    for i, lev in enumerate(leverage):
        others = np.flatnonzero(np.abs(bvals - bvals[i]) < b0_threshold)
        others = others[others != i]
        if lev < MAX_LEVERAGE:
            loo = log_s[:, i] - (log_s[:, i] - fitted[:, i]) / (1.0 - lev)
            pred[:, i] = np.exp(np.minimum(loo, np.log(2.0 * top)))
        elif len(others):
            pred[:, i] = values[:, others].mean(axis=1)
    out = np.zeros(data.shape, dtype=np.float32)
    out[mask] = pred
    return out


def _register(fixed: ants.ANTsImage, moving: np.ndarray, affine: np.ndarray,
              mask: ants.ANTsImage, settings: dict) -> np.ndarray:
    reg = ants.registration(fixed, to_ants(moving, affine), initial_transform="Identity",
                            mask=mask, mask_all_stages=True, **settings)
    return transform_matrix(ants.read_transform(reg["fwdtransforms"][0]))


def _threshold(matrices: Sequence[np.ndarray], points: np.ndarray,
               limit: float) -> list[np.ndarray]:
    """Identity for every transform that moves no point by ``limit`` mm."""
    return [m if max_displacement(m, points) >= limit else np.eye(4) for m in matrices]


def _apply(data: np.ndarray, matrices: Sequence[np.ndarray], affine: np.ndarray,
           reference: ants.ANTsImage) -> np.ndarray:
    """Linear resampling of the moved volumes; the others are copied unchanged."""
    out = np.array(data, dtype=np.float32, copy=True)
    for k, mat in enumerate(matrices):
        if not np.array_equal(mat, np.eye(4)):
            out[..., k] = matrix_transform(mat).apply_to_image(
                to_ants(data[..., k], affine), reference=reference,
                interpolation="linear").numpy()
    return out


def motion_correct(
    data: np.ndarray,
    *,
    affine: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    b0_threshold: float,
    seed: int | None,
    transform: str = MOTION_TRANSFORM,
    passes: int = MOTION_PASSES,
    min_displacement: float = MOTION_MIN_DISPLACEMENT,
    iterations: tuple[int, ...] = (30,),
    shrink_factors: tuple[int, ...] = (2,),
    smoothing_sigmas: tuple[int, ...] = (0,),
    sampling_rate: float = 0.2,
) -> MotionResult:
    """Between-volume motion correction into the mean-b0 space (antspyx).

    b0 volumes are registered to the mean b0 (when there are several); each diffusion-weighted
    volume to the signal a tensor fitted to the series predicts for its gradient
    (:func:`predict_signal`), ``passes`` times (each pass refits to the series realigned by
    the previous one, with rotated b-vectors). Mattes mutual information inside a generous
    head mask, identity start (no centre-of-mass initialisation); by default one level at half
    resolution (unsmoothed), 30 iterations, 20 % sampling. Transforms that move no head point by
    ``min_displacement`` voxels are replaced by the identity, so those volumes are never
    resampled (bit-identical here and in the final single resampling,
    :func:`bids_app.core.dwi.sdc.apply_run_transforms`). b-vectors are rotated by each
    applied transform's rotation.

    Parameters
    ----------
    data
        4D series.
    affine
        Voxel-to-world affine.
    bvals, bvecs
        (N,) and (N, 3) FSL-convention gradients (a tensor-estimable scheme, which
        :func:`bids_app.core.dwi.gradients.check_gradients` guarantees).
    b0_threshold
        b-values below are b0.
    seed
        ANTs random-sampling seed (``None``: not seeded).
    transform
        Model of the diffusion-weighted volumes: ``Affine`` (12 dof) or ``Rigid`` (6 dof); b0
        volumes are always rigid. Translations/rotations in the motion table and the b-vector
        rotation use the rotation part of each matrix.
    passes
        Model fit + registration passes (>= 1).
    min_displacement
        Smallest applied motion, as a fraction of the mean voxel size (0: apply all).
    iterations, shrink_factors, smoothing_sigmas, sampling_rate
        ANTs optimisation settings.

    Returns
    -------
    MotionResult
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    bvals = np.asarray(bvals, dtype=float)
    is_b0 = bvals < b0_threshold
    n = data.shape[3]
    ref = mean_b0(data, bvals, b0_threshold=b0_threshold)
    head = rough_mask(ref)
    points = np.argwhere(head) @ affine[:3, :3].T + affine[:3, 3]
    center = points.mean(axis=0)
    voxel = float(np.mean(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)))
    ref_img = to_ants(ref, affine)
    head_img = to_ants(head.astype(np.float32), affine)
    settings = {"type_of_transform": transform, "aff_iterations": tuple(iterations),
                "aff_shrink_factors": tuple(shrink_factors),
                "aff_smoothing_sigmas": tuple(smoothing_sigmas),
                "aff_random_sampling_rate": sampling_rate}
    matrices = [np.eye(4) for _ in range(n)]
    with ants_seed(seed), ants_scratch():  # unnamed transforms go to a private dir
        if is_b0.sum() > 1:
            for k in np.flatnonzero(is_b0):
                matrices[k] = _register(ref_img, data[..., k], affine, head_img,
                                        {**settings, "type_of_transform": "Rigid"})
        fitted_to = None
        for _ in range(passes):
            applied = _threshold(matrices, points, min_displacement * voxel)
            if fitted_to is not None and all(map(np.array_equal, applied, fitted_to)):
                break  # same series as the last fit: the pass would repeat it
            fitted_to = applied
            aligned = _apply(data, applied, affine, ref_img)
            pred = predict_signal(aligned, bvals, rotate_bvecs(bvecs, applied, affine),
                                  mask=head, b0_threshold=b0_threshold)
            for k in np.flatnonzero(~is_b0):
                matrices[k] = _register(to_ants(pred[..., k], affine), data[..., k], affine,
                                        head_img, settings)
        displacement = np.array([max_displacement(m, points) for m in matrices])
        matrices = _threshold(matrices, points, min_displacement * voxel)
        out = _apply(data, matrices, affine, ref_img)
    new_bvecs = rotate_bvecs(bvecs, matrices, affine)
    new_bvecs[is_b0] = 0.0
    return MotionResult(data=out, bvecs=new_bvecs, params=motion_params(matrices, center=center),
                        matrices=tuple(matrices), reference=ref, displacement=displacement)
