"""Small antspyx helpers: arrays + NIfTI affines <-> ANTs images and transforms."""

from __future__ import annotations

from collections.abc import Sequence

import ants
import numpy as np
from scipy.linalg import polar

#: RAS <-> LPS (ITK physical space) sign flip.
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def to_ants(data: np.ndarray, affine: np.ndarray) -> ants.ANTsImage:
    """3D array + RAS voxel-to-world affine -> ANTs image (same voxel order)."""
    q = LPS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(q[:3, :3], axis=0)
    direction = q[:3, :3] / spacing
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32),
                           origin=q[:3, 3].tolist(), spacing=spacing.tolist(),
                           direction=direction)


def transform_matrix(tx: ants.ANTsTransform) -> np.ndarray:
    """4x4 matrix (RAS world mm) of an ANTs affine/rigid transform (fixed -> moving points)."""
    params = np.asarray(tx.parameters, dtype=float)
    center = np.asarray(tx.fixed_parameters, dtype=float)
    mat = params[:9].reshape(3, 3)
    trans = params[9:12]
    lps = np.eye(4)
    lps[:3, :3] = mat
    lps[:3, 3] = trans + center - mat @ center
    return LPS @ lps @ LPS


def matrix_transform(matrix: np.ndarray) -> ants.ANTsTransform:
    """ANTs affine transform from a 4x4 RAS matrix (inverse of :func:`transform_matrix`)."""
    lps = LPS @ np.asarray(matrix, dtype=float) @ LPS
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(np.concatenate([lps[:3, :3].ravel(), lps[:3, 3]]))
    tx.set_fixed_parameters(np.zeros(3))
    return tx


def rotation_part(matrix: np.ndarray) -> np.ndarray:
    """Closest rotation (polar decomposition) to the linear part of a 4x4 matrix."""
    rot, _ = polar(np.asarray(matrix, dtype=float)[:3, :3])
    if np.linalg.det(rot) < 0:  # pragma: no cover - a reflection is not a head motion
        rot = -rot
    return rot


def rotate_bvecs(bvecs: np.ndarray, matrices: Sequence[np.ndarray | None],
                 affine: np.ndarray) -> np.ndarray:
    """Rotate FSL-convention b-vectors by the rotations of per-volume world transforms.

    Each matrix maps reference (fixed) points to the points of that volume (RAS mm). A
    gradient applied along ``g`` in that volume's acquisition is along ``R^T g`` in the
    reference frame. FSL b-vectors are in image voxel axes (x flipped when the affine has a
    positive determinant).

    Parameters
    ----------
    bvecs
        (N, 3) b-vectors.
    matrices
        N 4x4 matrices (``None`` = identity).
    affine
        Voxel-to-world affine of the image the b-vectors refer to.

    Returns
    -------
    ndarray
        (N, 3) rotated b-vectors (zero vectors stay zero).
    """
    lin = np.asarray(affine, dtype=float)[:3, :3]
    dirs = lin / np.linalg.norm(lin, axis=0)
    flip = np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(lin) > 0 else np.eye(3)
    to_world = dirs @ flip  # FSL b-vector -> RAS world direction
    out = np.array(bvecs, dtype=float, copy=True)
    for i, mat in enumerate(matrices):
        if mat is None:
            continue
        rot = rotation_part(mat)
        world = to_world @ out[i]
        out[i] = np.linalg.solve(to_world, rot.T @ world)
    return out


def correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two images inside a boolean mask."""
    x = np.asarray(a, dtype=float)[mask]
    y = np.asarray(b, dtype=float)[mask]
    return float(np.corrcoef(x, y)[0, 1])
