"""Whole-brain deterministic tractography in native DWI space (dipy).

Directions come from one of :data:`DIRECTION_MODELS` (a registry: one declaration plus one
function each) as peaks: the diffusion tensor's principal eigenvector, or up to three peaks of
the fibre ODFs of constrained spherical deconvolution (CSD, single-shell, ``auto_response_ssst``
response) when the acquisition supports it (:func:`choose_directions`). Tracking is dipy's
multithreaded EuDX (``dipy.tracking.tracker.eudx_tracking``; Garyfallidis 2012): deterministic,
each step along the peak closest to the previous direction, interpolated over the 8 nearest
voxels, within ``max_angle``; it stops where FA falls below ``stop_fa`` (the whole-brain mask
bounds it too: FA is 0 outside) or no peak lies within the angle, and keeps streamlines between
``min_length_mm`` and ``max_length_mm``. Seeds are drawn uniformly at random inside the voxels of
a white-matter mask (FA above ``seed_fa``) with an explicit seed.

The defaults (:data:`TRACKING_DEFAULTS`) follow mature tools: a 0.5 mm step and 30 degrees per
step (pyAFQ), FA 0.1 to stop (MRtrix3 ``Tensor_Det``'s cutoff), seeds where FA > 0.2 (pyAFQ
and the usual white-matter definition), 20-250 mm (short corticostriatal streamlines are kept),
every streamline kept whatever ended it (dipy's and pyAFQ's ``return_all``; keeping only those
that ended at the FA threshold dropped 96 % of them on ds-xa30).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import GradientTable, gradient_table
from dipy.data import get_sphere
from dipy.direction.peaks import PeaksAndMetrics
from dipy.tracking.stopping_criterion import ThresholdStoppingCriterion
from dipy.tracking.streamline import Streamlines
from dipy.tracking.tracker import eudx_tracking
from dipy.tracking.utils import random_seeds_from_mask
from scipy.spatial import cKDTree

from bids_app.core.dwi.tensor import wls_normal_equations

#: Unique gradient directions needed to fit CSD at each maximal SH order (order 4: 15
#: coefficients, 6: 28, 8: 45), with the margin MRtrix3 asks for (its ``dwi2fod`` refuses
#: lmax > what the directions support).
CSD_ORDERS: dict[int, int] = {8: 45, 6: 28, 4: 15}
#: Fewest unique directions for which CSD is chosen over the tensor: at lmax 4 on ~20
#: directions the deconvolution is ill-posed and its spurious lobes make deterministic tracking
#: jump between false peaks, so the tensor is used below 28 (lmax 6).
CSD_MIN_DIRECTIONS = 28


@dataclass(frozen=True)
class TrackingParams:
    """Settings of :func:`track` (all lengths in mm, angle in degrees)."""

    step_size_mm: float
    max_angle: float
    stop_fa: float
    seed_fa: float
    seeds_per_mm3: float
    """Seed density; each seed-mask voxel gets ``max(1, round(density * voxel volume))``
    seeds, so the tractogram's size (and the recognition time) hardly depends on the
    resolution."""
    min_length_mm: float
    max_length_mm: float


#: The defaults, defined once (see the module docstring for their sources).
#: 0.15 seeds/mm^3 = 4 seeds per 3 mm voxel: ~49,000 streamlines on ds-xa30 in ~11 s of CPU.
TRACKING_DEFAULTS = TrackingParams(step_size_mm=0.5, max_angle=30.0, stop_fa=0.1, seed_fa=0.2,
                                   seeds_per_mm3=0.15, min_length_mm=20.0,
                                   max_length_mm=250.0)


@dataclass(frozen=True)
class Directions:
    """Fibre directions for the tracker: peaks (indices into ``peaks.sphere``) per voxel."""

    model: str
    peaks: PeaksAndMetrics
    sh_order: int | None = None
    """Maximal SH order of the CSD fit (``None`` for the tensor)."""


def unique_directions(bvals: np.ndarray, bvecs: np.ndarray, *, b0_threshold: float) -> int:
    """Diffusion-weighted directions that differ by more than ~2.6 degrees (antipodes equal)."""
    dirs = np.asarray(bvecs, dtype=float)[np.asarray(bvals, dtype=float) > b0_threshold]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    kept: list[np.ndarray] = []
    for d in dirs:
        if all(abs(float(d @ k)) < 0.999 for k in kept):
            kept.append(d)
    return len(kept)


def choose_directions(bvals: np.ndarray, bvecs: np.ndarray, *, b0_threshold: float) -> str:
    """``csd`` when the unique directions reach :data:`CSD_MIN_DIRECTIONS`, else ``tensor``."""
    n = unique_directions(bvals, bvecs, b0_threshold=b0_threshold)
    return "csd" if n >= CSD_MIN_DIRECTIONS else "tensor"


def _gtab(bvals, bvecs, b0_threshold) -> GradientTable:
    return gradient_table(np.asarray(bvals, dtype=float), bvecs=np.asarray(bvecs, dtype=float),
                          b0_threshold=b0_threshold)


def tensor_directions(data, gtab: GradientTable, *, mask: np.ndarray) -> Directions:
    """Principal eigenvector of the WLS tensor, snapped to the nearest vertex of a dense sphere.

    The sphere is ``symmetric724`` subdivided once (2,890 vertices, ~3.5 degrees apart), so the
    discretisation adds at most ~2 degrees to each step's direction.
    """
    from dipy.reconst.dti import TensorModel

    fit = TensorModel(gtab, fit_method=wls_normal_equations).fit(
        np.asarray(data, dtype=np.float32), mask=mask)
    sphere = get_sphere(name="symmetric724").subdivide(n=1)
    evec = np.nan_to_num(fit.evecs[..., 0])
    inside = mask & (np.linalg.norm(evec, axis=-1) > 0)
    indices = np.full(mask.shape + (1,), -1, dtype=np.int32)
    values = np.zeros(mask.shape + (1,), dtype=float)
    # the sphere is symmetric, so the nearest vertex to the eigenvector is the best match
    indices[inside, 0] = cKDTree(sphere.vertices).query(evec[inside])[1]
    values[inside, 0] = 1.0
    peaks = PeaksAndMetrics()
    peaks.sphere = sphere
    peaks.peak_indices = indices
    peaks.peak_values = values
    peaks.peak_dirs = sphere.vertices[np.clip(indices, 0, None)] * values[..., None]
    return Directions(model="tensor", peaks=peaks)


def csd_directions(data, gtab: GradientTable, *, mask: np.ndarray) -> Directions:
    """Up to three peaks of single-shell CSD fibre ODFs in the mask.

    The response is dipy's ``auto_response_ssst`` (voxels with FA > 0.7 within 10 voxels of the
    centre); the maximal SH order is the highest of :data:`CSD_ORDERS` that the unique
    gradient directions support; peaks on ``repulsion724`` at least 25 degrees apart and at
    least half the largest (dipy ``peaks_from_model`` defaults in its tracking examples).
    """
    from dipy.direction.peaks import peaks_from_model
    from dipy.reconst.csdeconv import ConstrainedSphericalDeconvModel, auto_response_ssst

    n_dirs = unique_directions(gtab.bvals, gtab.bvecs, b0_threshold=gtab.b0_threshold)
    orders = [order for order, needed in CSD_ORDERS.items() if n_dirs >= needed]
    if not orders:
        raise ValueError(f"CSD needs >= {min(CSD_ORDERS.values())} unique directions, "
                         f"the data have {n_dirs}")
    order = max(orders)
    data = np.asarray(data, dtype=np.float32)
    response, _ = auto_response_ssst(gtab, data, roi_radii=10, fa_thr=0.7)
    model = ConstrainedSphericalDeconvModel(gtab, response, sh_order_max=order)
    peaks = peaks_from_model(model, data, get_sphere(name="repulsion724"),
                             relative_peak_threshold=0.5, min_separation_angle=25, mask=mask,
                             npeaks=3, return_sh=False, parallel=False)
    return Directions(model="csd", peaks=peaks, sh_order=order)


#: Direction models by name (``--tract-directions`` choices when wired).
DIRECTION_MODELS: dict[str, Callable[..., Directions]] = {
    "tensor": tensor_directions,
    "csd": csd_directions,
}


def fit_directions(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    mask: np.ndarray,
    model: str,
    b0_threshold: float,
) -> Directions:
    """Fibre directions of ``model`` (a key of :data:`DIRECTION_MODELS`) inside ``mask``.

    Parameters
    ----------
    data
        4D preprocessed DWI series (native grid).
    bvals, bvecs
        (N,) b-values and (N, 3) unit b-vectors (rotated with the motion correction).
    mask
        Boolean brain mask.
    model
        ``tensor`` or ``csd`` (see :func:`choose_directions`).
    b0_threshold
        b-values below are b0.
    """
    if model not in DIRECTION_MODELS:
        raise ValueError(f"unknown direction model {model!r}; choose from "
                         f"{list(DIRECTION_MODELS)}")
    gtab = _gtab(bvals, bvecs, b0_threshold)
    return DIRECTION_MODELS[model](data, gtab, mask=np.asarray(mask, dtype=bool))


def seed_points(mask: np.ndarray, affine: np.ndarray, *, per_voxel: int,
                seed: int) -> np.ndarray:
    """(N, 3) seeds in world mm, ``per_voxel`` uniformly at random in every ``mask`` voxel."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the seed mask is empty")
    return np.asarray(random_seeds_from_mask(mask, np.asarray(affine, dtype=float),
                                             seeds_count=int(per_voxel),
                                             seed_count_per_voxel=True, random_seed=int(seed)))


def track(
    directions: Directions,
    fa: np.ndarray,
    affine: np.ndarray,
    *,
    params: TrackingParams,
    seed: int,
    nthreads: int,
    seed_mask: np.ndarray | None = None,
) -> Streamlines:
    """Whole-brain deterministic tractography.

    Parameters
    ----------
    directions
        From :func:`fit_directions` (same grid as ``fa``).
    fa
        FA map (0 outside the brain mask): stopping criterion and default seed region.
    affine
        Voxel-to-world (RAS mm) affine of the grid.
    params
        Step, angle, thresholds, seeding density and length limits.
    seed
        Seed of the random seed placement (tracking itself is deterministic).
    nthreads
        Tracker threads (dipy would use every CPU when given 0).
    seed_mask
        Where to seed (default: FA > ``params.seed_fa``).

    Returns
    -------
    Streamlines
        In native world (RAS mm) coordinates, in seed order.
    """
    fa = np.asarray(fa, dtype=float)
    affine = np.asarray(affine, dtype=float)
    if seed_mask is None:
        seed_mask = fa > params.seed_fa
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    per_voxel = max(1, round(params.seeds_per_mm3 * voxel_mm3))
    seeds = seed_points(seed_mask, affine, per_voxel=per_voxel, seed=seed)
    stopping = ThresholdStoppingCriterion(fa, params.stop_fa)
    # random_seed only fixes the tracker's generator (EuDX draws nothing); 0 would mean "any"
    generator = eudx_tracking(
        seeds, stopping, affine, pam=directions.peaks, sphere=directions.peaks.sphere,
        min_len=params.min_length_mm, max_len=params.max_length_mm,
        step_size=params.step_size_mm, max_angle=params.max_angle, pmf_threshold=0.0,
        nbr_threads=max(1, int(nthreads)), random_seed=1, return_all=True)
    return Streamlines(generator)
