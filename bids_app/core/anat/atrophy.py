"""Known-truth validation: plant a smooth, localised GM volume loss in a T1w.

The pull-back displacement ``w`` (voxel units; deformed image ``I'(x) = I(x + w(x))``) is the
gradient of a potential ``f`` solving the Poisson equation ``lap f = s`` (FFT, zero padded).
The source ``s`` is positive on the region's GM-dominant voxels (local expansion of the
pull-back = contraction of tissue) and negative on its other voxels (CSF/WM grow to fill the
space), with zero total, and is Gaussian-smoothed: ``det(I + grad w) ~ 1 + s``, so tissue
elsewhere keeps its volume (it only moves by a fraction of a voxel). The planted loss is
computed from the exact Jacobian determinant of the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class PlantedAtrophy:
    """Deformed image, its displacement field (voxels, shape (3, X, Y, Z)) and the truth."""

    image: np.ndarray
    displacement: np.ndarray
    planted_loss: float
    """Fractional GM loss of the region: ``1 - sum(GM / J(phi^-1)) / sum(GM)`` over the region,
    with ``J`` the Jacobian determinant of the pull-back ``phi(x) = x + w(x)``, evaluated where
    each region voxel's tissue ends up."""


def displacement_from_source(source: np.ndarray, *, pad: int = 16) -> np.ndarray:
    """Curl-free field ``w = grad f`` with ``lap f = source`` (voxel units, FFT solve)."""
    src = np.pad(source - source.mean(), pad)
    k = [np.fft.fftfreq(n) * 2 * np.pi for n in src.shape]
    kx, ky, kz = np.meshgrid(*k, indexing="ij")
    # Discrete Laplacian eigenvalues, consistent with central-difference gradients.
    lap = (2 * np.cos(kx) - 2) + (2 * np.cos(ky) - 2) + (2 * np.cos(kz) - 2)
    lap[0, 0, 0] = 1.0
    fhat = np.fft.fftn(src) / lap
    fhat[0, 0, 0] = 0.0
    f = np.real(np.fft.ifftn(fhat))
    grad = np.stack(np.gradient(f), axis=0)
    sl = (slice(None),) + tuple(slice(pad, pad + n) for n in source.shape)
    return grad[sl]


def jacobian_determinant(w: np.ndarray) -> np.ndarray:
    """``det(I + grad w)`` of a displacement field in voxel units."""
    jac = np.empty(w.shape[1:] + (3, 3))
    for i in range(3):
        grads = np.gradient(w[i])
        for j in range(3):
            jac[..., i, j] = grads[j] + (1.0 if i == j else 0.0)
    return np.linalg.det(jac)


def inverse_displacement(w: np.ndarray, *, iterations: int = 10) -> np.ndarray:
    """Displacement ``v`` of the inverse map (``y + v(y) = phi^-1(y)``), fixed-point iteration."""
    grid = np.indices(w.shape[1:], dtype=np.float64)
    v = -w.astype(np.float64)
    for _ in range(iterations):
        v = -np.stack([ndimage.map_coordinates(w[i], grid + v, order=1, mode="nearest")
                       for i in range(3)])
    return v


def plant_atrophy(image: np.ndarray, *, region: np.ndarray, gm: np.ndarray,
                  loss: float = 0.10, sigma: float = 0.5, margin: int = 12,
                  iterations: int = 6) -> PlantedAtrophy:
    """Shrink the GM of ``region`` by about ``loss`` with a smooth deformation.

    The region's GM-dominant voxels contract and its other voxels (CSF, WM) expand by the
    same total volume, so tissue outside the region keeps its volume and moves by a fraction
    of a voxel at most.

    Parameters
    ----------
    image
        T1w data (3D).
    region
        Boolean region mask on the same grid (e.g. the atlas precentral label in T1w space).
    gm
        GM probability map (same grid).
    loss
        Target fractional GM volume loss inside ``region``.
    sigma
        Gaussian smoothing (voxels) of the source term.
    margin
        Voxels around the region's bounding box where the field is computed (it decays
        quickly outside: the source has zero total).
    iterations
        Secant iterations matching the planted loss (from the Jacobian) to ``loss``.

    Returns
    -------
    PlantedAtrophy
    """
    region = region.astype(bool)
    if not region.any():
        raise ValueError("empty region")
    idx = np.argwhere(region)
    box = tuple(slice(max(lo - margin, 0), min(hi + margin + 1, n))
                for lo, hi, n in zip(idx.min(0), idx.max(0), region.shape))
    reg, g = region[box], gm[box]
    core = reg & (g >= 0.5)
    pos = ndimage.gaussian_filter(core.astype(float), sigma)
    neg = ndimage.gaussian_filter((reg & ~core).astype(float), sigma)
    unit = pos - neg * (pos.sum() / max(neg.sum(), 1e-9))
    weights = g * reg

    grid = np.indices(unit.shape, dtype=np.float64)

    def planted(scale: float) -> tuple[float, np.ndarray]:
        w = displacement_from_source(scale * unit)
        # tissue at y ends up at phi^-1(y), where the pull-back expands volume by det
        det = ndimage.map_coordinates(jacobian_determinant(w), grid + inverse_displacement(w),
                                      order=1, mode="nearest")
        return 1.0 - float(np.sum(weights / det) / np.sum(weights)), w

    scales, losses = [0.0, loss], [0.0]
    value, w = planted(scales[1])
    losses.append(value)
    for _ in range(iterations):
        if abs(losses[-1] - loss) < 2e-4 or losses[-1] == losses[-2]:
            break
        nxt = scales[-1] + (loss - losses[-1]) * (scales[-1] - scales[-2]) / (
            losses[-1] - losses[-2])
        value, w = planted(nxt)
        scales.append(nxt)
        losses.append(value)
    field = np.zeros((3,) + image.shape)
    field[(slice(None),) + box] = w
    grid = np.indices(image.shape, dtype=np.float64)
    deformed = ndimage.map_coordinates(image.astype(np.float64), grid + field, order=3,
                                       mode="nearest")
    deformed = np.clip(deformed, image.min(), image.max())
    return PlantedAtrophy(image=deformed.astype(np.float32),
                          displacement=field.astype(np.float32), planted_loss=losses[-1])


@dataclass(frozen=True)
class PlantedThinning:
    """Thinned image, the removed GM fraction per voxel and the truth."""

    image: np.ndarray
    removed: np.ndarray
    """Fraction of each voxel turned from GM into CSF (0-1)."""
    thickness_mm: float
    """Depth of cortex removed from the outer surface."""
    planted_loss: float
    """Fractional GM loss of the region's cortex: ``sum(removed) / sum(gm)`` over its voxels
    below the surface (CSF-dominant voxels excluded)."""


def plant_thinning(image: np.ndarray, *, region: np.ndarray, gm: np.ndarray,
                   csf: np.ndarray, voxel_size: tuple[float, float, float],
                   loss: float = 0.10, pure: float = 0.5,
                   brain: np.ndarray | None = None) -> PlantedThinning:
    """Thin the cortex of ``region`` from its outer (CSF) surface, as atrophy looks.

    Each GM voxel's depth below the outer surface is the Euclidean distance (mm) from the
    nearest CSF voxel (``csf >= pure``) minus one voxel edge (the depth of its outer face).
    A layer of thickness ``t`` is removed: a voxel whose outer face lies at depth ``d`` loses the
    fraction ``clip((t - d) / h, 0, 1)`` of its GM (``h`` the voxel's mean edge), and its
    intensity moves by that fraction of its GM from the local GM intensity to the CSF
    intensity (a partial-volume mixture). ``t`` is found by bisection so that the region's GM
    loss ``sum(removed) / sum(gm)`` equals ``loss``. Unlike :func:`plant_atrophy`, nothing
    moves: the brain surface stays, the sulcal CSF widens, and WM is untouched.

    Parameters
    ----------
    image
        T1w data (3D; CSF < GM < WM).
    region
        Boolean region mask on the same grid; only its voxels change.
    gm, csf
        GM and CSF probability maps (same grid) of ``image``.
    voxel_size
        Voxel edges in mm.
    loss
        Target fractional GM volume loss of the region (0-0.9).
    pure
        Probability above which a voxel counts as CSF (the outer surface) or as pure GM
        (whose mean intensity is the GM intensity).
    brain
        Optional brain mask: the CSF intensity is then read inside it only (``csf`` may count
        everything outside the brain as CSF, so that the brain's outline is a surface, while
        skull and scalp do not look like CSF on a T1w).

    Returns
    -------
    PlantedThinning
    """
    region = np.asarray(region, bool)
    gm = np.clip(np.asarray(gm, np.float64), 0, 1)
    if not region.any() or not (gm[region] > 0).any():
        raise ValueError("empty region")
    if not 0 <= loss <= 0.9:
        raise ValueError(f"loss {loss} outside [0, 0.9]")
    surface = np.asarray(csf) >= pure
    if not surface.any():
        raise ValueError("no CSF voxel: the outer surface is undefined")
    spacing = np.asarray(voxel_size, float)
    h = float(spacing.mean())
    # distance between voxel centres minus one edge: the depth of the voxel's outer face
    depth = ndimage.distance_transform_edt(~surface, sampling=spacing) - h
    # CSF-dominant voxels are the surface itself, not cortex below it: they keep their GM
    target = gm * (region & ~surface)
    total = target.sum()
    if total <= 0:
        raise ValueError("empty region")

    def removed(t: float) -> np.ndarray:
        return target * np.clip((t - depth) / h, 0, 1)

    lo, hi = 0.0, float(depth[region].max()) + h
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if removed(mid).sum() / total < loss:
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    frac = removed(t)
    data = np.asarray(image, np.float64)
    # local tissue intensities (the raw image may carry a bias field): pure voxels within
    # 10 mm of the region
    near = ndimage.distance_transform_edt(~region, sampling=spacing) <= 10.0
    inside = near if brain is None else near & np.asarray(brain, bool)
    i_csf = _pure_median(data, np.asarray(csf) * inside, pure)
    i_gm = _pure_median(data, gm * near, pure)
    out = data + frac * (i_csf - i_gm)
    return PlantedThinning(image=out.astype(np.float32), removed=frac.astype(np.float32),
                           thickness_mm=t, planted_loss=float(frac.sum() / total))


def _pure_median(data: np.ndarray, probability: np.ndarray, pure: float) -> float:
    """Median intensity of the purest voxels of a class (probability >= 0.9, else >= pure)."""
    for level in (0.9, pure):
        sel = probability >= level
        if sel.any():
            return float(np.median(data[sel]))
    raise ValueError("no voxel of the class near the region")
