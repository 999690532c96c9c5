"""Per-participant spatial transforms: head position and smooth random deformation.

Every transform is a function of *world* (scanner, mm) coordinates, so one participant's
transform applies identically to the DWI grid and the T1w grid (both live in the scanner frame
of the source subject).  Output images keep the source grids (the scanner's field of view does
not move; the head moves inside it): for each output voxel centre ``y`` the source point is

    x = A y + u(A y)          (A: rigid + isotropic scale about the brain centre, u: smooth field)

(GM atrophy is planted separately: :func:`bids_app.simulate.cohort.atrophy_gray_matter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.spatial.transform import Rotation


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 3) through a 4x4 affine (plain matmul: nibabel's is slow on 10^6 points)."""
    return points @ affine[:3, :3].T + affine[:3, 3]


@dataclass(frozen=True)
class SmoothField:
    """A smooth displacement field sampled on a coarse world-aligned grid.

    Attributes
    ----------
    affine : ndarray (4, 4)
        Voxel-to-world affine of the coarse grid.
    values : ndarray (3, nx, ny, nz)
        Displacement in mm (world axes) at each coarse grid node.
    """

    affine: np.ndarray
    values: np.ndarray

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Displacement (N, 3) at world points (N, 3); zero-padded outside the grid."""
        ijk = apply_affine(np.linalg.inv(self.affine), points).T
        return np.stack([map_coordinates(v, ijk, order=1, mode="nearest") for v in self.values],
                        axis=1)


def random_smooth_field(rng: np.random.Generator, *, bbox_min: np.ndarray,
                        bbox_max: np.ndarray, rms_mm: float, smoothness_mm: float,
                        spacing_mm: float = 6.0) -> SmoothField:
    """Gaussian-smoothed white noise displacement field with a given RMS amplitude.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller).
    bbox_min, bbox_max : ndarray (3,)
        World bounding box (mm) the field must cover (a margin is added).
    rms_mm : float
        Root-mean-square displacement magnitude per axis, in mm.
    smoothness_mm : float
        Standard deviation of the Gaussian smoothing kernel, in mm.
    spacing_mm : float
        Coarse grid spacing.

    Returns
    -------
    SmoothField
    """
    margin = 2 * smoothness_mm
    lo = np.asarray(bbox_min, float) - margin
    hi = np.asarray(bbox_max, float) + margin
    shape = tuple(int(np.ceil((h - low) / spacing_mm)) + 1 for low, h in zip(lo, hi))
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    values = np.empty((3, *shape), dtype=np.float32)
    for axis in range(3):
        noise = gaussian_filter(rng.standard_normal(shape), smoothness_mm / spacing_mm,
                                mode="wrap")
        values[axis] = noise / (noise.std() or 1.0) * rms_mm
    return SmoothField(affine=affine, values=values)


def head_position(rng: np.random.Generator, *, center: np.ndarray, max_rotation_deg: float,
                  max_translation_mm: float, scale_sd: float) -> tuple[np.ndarray, dict]:
    """Random rigid head position (+ isotropic head-size scale) about ``center``.

    Returns
    -------
    matrix : ndarray (4, 4)
        Maps output (participant) world points to source world points.
    params : dict
        ``rotation_deg`` (xyz Euler), ``translation_mm``, ``scale`` (JSON-serialisable).
    """
    angles = rng.uniform(-max_rotation_deg, max_rotation_deg, 3)
    translation = rng.uniform(-max_translation_mm, max_translation_mm, 3)
    scale = round(float(np.clip(1.0 + scale_sd * rng.standard_normal(), 0.8, 1.2)), 6)
    rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    center = np.asarray(center, float)
    linear = rot / scale  # a larger head: each output point samples closer to the centre
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = center - linear @ center + translation
    params = {"rotation_deg": [round(float(a), 4) for a in angles],
              "translation_mm": [round(float(t), 4) for t in translation],
              "scale": scale}
    return matrix, params


def grid_points(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (N, 3) of every voxel centre of a 3D grid (C order)."""
    ijk = np.indices(shape[:3], dtype=np.float64).reshape(3, -1).T
    return apply_affine(affine, ijk)


def source_points(points: np.ndarray, *, matrix: np.ndarray, field: SmoothField) -> np.ndarray:
    """Apply head position then the smooth field: ``x = A y + u(A y)``."""
    moved = apply_affine(matrix, points)
    return moved + field(moved)


def sample(volume: np.ndarray, affine: np.ndarray, points: np.ndarray, *, order: int = 1,
           cval: float = 0.0) -> np.ndarray:
    """Values of ``volume`` (3D, or 4D sampled per last-axis channel) at world points."""
    ijk = apply_affine(np.linalg.inv(affine), points).T
    if volume.ndim == 3:
        return map_coordinates(volume, ijk, order=order, mode="constant", cval=cval)
    return np.stack([map_coordinates(volume[..., c], ijk, order=order, mode="constant",
                                     cval=cval) for c in range(volume.shape[-1])], axis=-1)
