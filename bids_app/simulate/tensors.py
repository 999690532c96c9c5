"""Tensor-field operations for the simulator (dipy does the tensor algebra).

Tensors are stored as dipy's lower-triangular 6-vectors ``(Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)`` in
the b-vector frame of the source acquisition (mm^2/s).
"""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.reconst.dti import (
    axial_diffusivity,
    decompose_tensor,
    design_matrix,
    fractional_anisotropy,
    from_lower_triangular,
    lower_triangular,
    mean_diffusivity,
    radial_diffusivity,
)
from dipy.sims.voxel import add_noise

MIN_EVAL = 1e-5
MAX_EVAL = 3.5e-3


def regularise(lt: np.ndarray) -> np.ndarray:
    """Clip eigenvalues of lower-triangular tensors (N, 6) to a physical range."""
    evals, evecs = eigen(lt)
    return compose(np.clip(evals, MIN_EVAL, MAX_EVAL), evecs)


def compose(evals: np.ndarray, evecs: np.ndarray) -> np.ndarray:
    """Lower-triangular tensors (N, 6) from eigenvalues (N, 3) and eigenvectors (N, 3, 3)."""
    full = np.einsum("nij,nj,nkj->nik", evecs, evals, evecs)
    return lower_triangular(full)


def scale_radial(evals: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Eigenvalues (N, 3) with the two radial ones multiplied by ``factor`` (N,).

    A factor > 1 raises radial diffusivity and lowers FA; the axial eigenvalue is unchanged
    and caps the radial ones (so FA falls monotonically with the factor).
    """
    out = np.array(evals, dtype=np.float64, copy=True)
    out[:, 1:] = np.minimum(out[:, 1:] * np.asarray(factor, float)[:, None], out[:, :1])
    return np.clip(out, MIN_EVAL, MAX_EVAL)


def eigen(lt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (N, 3, descending) and eigenvectors (N, 3, 3) of tensors (N, 6)."""
    return decompose_tensor(from_lower_triangular(lt))


def metrics(evals: np.ndarray) -> dict[str, np.ndarray]:
    """FA, MD, AD, RD (N,) from eigenvalues (N, 3)."""
    return {"fa": fractional_anisotropy(evals), "md": mean_diffusivity(evals),
            "ad": axial_diffusivity(evals), "rd": radial_diffusivity(evals)}


def weighted_metrics(evals: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Weight-averaged FA, MD, AD, RD of eigenvalues (N, 3) with weights (N,)."""
    total = float(weights.sum())
    if total <= 0:
        return {name: float("nan") for name in ("fa", "md", "ad", "rd")}
    return {name: float((values * weights).sum() / total)
            for name, values in metrics(evals).items()}


def radial_factors_for_fa(evals: np.ndarray, weights: dict[str, np.ndarray],
                          effects: dict[str, np.ndarray], changes: dict[str, float], *,
                          prior: np.ndarray | None = None, sweeps: int = 4,
                          tol: float = 1e-5) -> dict[str, float]:
    """Per-region radial factors ``k`` so that each region's weighted FA changes as asked.

    The factor applied to a voxel is ``prior * prod_r (1 + (k_r - 1) effect_r)``; overlapping
    regions therefore interact, and the ``k_r`` are solved jointly (Gauss-Seidel sweeps of a
    bisection per region, FA falling monotonically with each ``k``).  ``changes`` are relative
    changes of the ``weights``-averaged FA (-0.1 = 10 % lower) from the FA with the ``prior``
    factors alone (default 1: the unchanged tensors).
    """
    prior = np.ones(len(evals)) if prior is None else np.asarray(prior, float)
    base_fa = fractional_anisotropy(scale_radial(evals, prior))
    k = {key: 1.0 for key in changes}

    def voxel_factor(skip: str | None = None) -> np.ndarray:
        factor = prior.copy()
        for key, value in k.items():
            if key != skip:
                factor *= 1.0 + (value - 1.0) * effects[key]
        return factor

    for _ in range(sweeps):
        for key, change in changes.items():
            w = weights[key]
            support = (w > 0) | (effects[key] > 0)
            wsum = w[support].sum()
            target = (base_fa[support] * w[support]).sum() / wsum * (1.0 + change)
            args = (evals[support], voxel_factor(skip=key)[support], effects[key][support],
                    w[support] / wsum)
            lo, hi = 0.2, 8.0
            if not _fa_at(hi, *args) <= target <= _fa_at(lo, *args):
                raise ValueError(f"{key}: FA change {change} not reachable by radial scaling")
            while hi - lo > tol:
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if _fa_at(mid, *args) > target else (lo, mid)
            k[key] = 0.5 * (lo + hi)
    return k


def axial_factors_for_ad(evals: np.ndarray, weights: dict[str, np.ndarray],
                         effects: dict[str, np.ndarray], changes: dict[str, float], *,
                         sweeps: int = 10) -> np.ndarray:
    """Per-voxel axial-eigenvalue factors (N,) so that each region's weighted AD changes as
    asked.

    The factor of a voxel is ``prod_r (1 + (k_r - 1) effect_r)``; the weighted AD is linear
    in each ``k_r``, so each is solved in closed form given the others (Gauss-Seidel sweeps):
    overlapping regions do not compound their changes.
    """
    axial = np.asarray(evals, float)[:, 0]
    k = {key: 1.0 + change for key, change in changes.items()}

    def others(skip: str) -> np.ndarray:
        factor = np.ones(len(axial))
        for key, value in k.items():
            if key != skip:
                factor *= 1.0 + (value - 1.0) * effects[key]
        return factor

    for _ in range(sweeps):
        for key, change in changes.items():
            w, e, o = weights[key], effects[key], others(key)
            fixed = float((w * axial * o * (1.0 - e)).sum())
            moving = float((w * axial * o * e).sum())
            if moving > 0:
                k[key] = max(((1.0 + change) * float((w * axial).sum()) - fixed) / moving, 0.05)
    return others("")


def _fa_at(value: float, evals: np.ndarray, others: np.ndarray, effect: np.ndarray,
           weights: np.ndarray) -> float:
    factor = others * (1.0 + (value - 1.0) * effect)
    return float((fractional_anisotropy(scale_radial(evals, factor)) * weights).sum())


def rotate(lt: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate tensors (N, 6): ``D' = R^T D R`` (``R`` maps output to source directions)."""
    full = from_lower_triangular(lt)
    return lower_triangular(np.einsum("ji,njk,kl->nil", rotation, full, rotation))


def synthesize(lt: np.ndarray, s0: np.ndarray, gtab: GradientTable, *, snr: float,
               s0_reference: float, rng: np.random.Generator) -> np.ndarray:
    """Diffusion signals (N, n_volumes) from tensors with Rician noise.

    ``S = S0 exp(-b g^T D g)`` through dipy's tensor design matrix; noise sigma =
    ``s0_reference / snr`` (dipy :func:`~dipy.sims.voxel.add_noise`).
    """
    dm = design_matrix(gtab)  # (n, 7): -b g g^T terms, then the log S0 column
    log_signal = lt @ dm[:, :6].T
    signal = s0[:, None] * np.exp(log_signal)
    return add_noise(signal, snr, s0_reference, noise_type="rician", rng=rng)
