"""Tensor-field operations for the simulator (dipy does the tensor algebra).

Tensors are stored as dipy's lower-triangular 6-vectors ``(Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)`` in
the b-vector frame of the source acquisition (mm^2/s).
"""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.core.sphere import HemiSphere, disperse_charges
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


def regional_factor(k: dict[str, float], effects: dict[str, np.ndarray], *,
                    prior: np.ndarray, skip: str | None = None) -> np.ndarray:
    """Per-voxel factor ``prior * prod_r (1 + (k_r - 1) effect_r)`` over the regions (all but
    ``skip``)."""
    factor = np.array(prior, dtype=np.float64, copy=True)
    for key, value in k.items():
        if key != skip:
            factor *= 1.0 + (value - 1.0) * effects[key]
    return factor


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
        return regional_factor(k, effects, prior=prior, skip=skip)

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
        return regional_factor(k, effects, prior=np.ones(len(axial)), skip=skip)

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


#: Free water (mm^2/s) and the intra-axonal stick's axial diffusivity as a fraction of the
#: tensor's first eigenvalue in :func:`synthesize_multishell`.
FREE_WATER = 3.0e-3
STICK_AXIAL = 0.7


def multishell_scheme(shells, *, directions: int, b0_volumes: int, seed: int = 1
                      ) -> tuple[np.ndarray, np.ndarray]:
    """b-values and unit b-vectors (n, 3) of a multi-shell acquisition: ``b0_volumes`` b0,
    then per shell ``directions`` electrostatically repelled directions (own set per shell)."""
    bvals, bvecs = [0.0] * b0_volumes, [np.zeros(3)] * b0_volumes
    for i, b in enumerate(shells):
        rng = np.random.default_rng([seed, i])
        hemi = HemiSphere(theta=np.arccos(rng.uniform(-1, 1, directions)),
                          phi=rng.uniform(0, 2 * np.pi, directions))
        bvals += [float(b)] * directions
        bvecs += list(disperse_charges(hemi, 500)[0].vertices)
    return np.array(bvals), np.array(bvecs)


def multishell_compartments(lt: np.ndarray) -> dict[str, np.ndarray]:
    """Compartments of :func:`synthesize_multishell` from tensors (N, 6).

    Free-water fraction from MD (0 at MD <= 0.9e-3, 1 at 3e-3 mm^2/s: CSF), axonal water
    fraction 0.1 + 0.5 FA (at most 0.6): a radial change of the tensor (the planted tract
    effect) lowers FA, hence the axonal fraction and the kurtosis, as well as the low-shell FA.
    """
    evals, evecs = eigen(lt)
    md = mean_diffusivity(evals)
    fa = np.nan_to_num(fractional_anisotropy(evals))
    return {"fw": np.clip((md - 0.9e-3) / (FREE_WATER - 0.9e-3), 0.0, 1.0),
            "awf": np.clip(0.1 + 0.5 * fa, 0.0, 0.6), "e1": evecs[..., 0],
            "stick": STICK_AXIAL * evals[..., 0]}


def synthesize_multishell(lt: np.ndarray, s0: np.ndarray, gtab: GradientTable, *,
                          snr: float | None, s0_reference: float,
                          rng: np.random.Generator) -> np.ndarray:
    """Multi-compartment signals (N, n_volumes) with Rician noise.

    ``S = S0 [f e^{-b Dw} + (1 - f)(a e^{-b Da (g.e1)^2} + (1 - a) e^{-b g^T D g})]``: free
    water, an intra-axonal stick along the tensor's first eigenvector and the tensor itself
    as extra-axonal space (:func:`multishell_compartments`); non-Gaussian where ``a > 0``
    (kurtosis), partial-volumed with CSF where ``f > 0``.
    """
    c = multishell_compartments(lt)
    b = np.asarray(gtab.bvals, dtype=float)[None]
    cos2 = (c["e1"] @ np.asarray(gtab.bvecs, dtype=float).T) ** 2
    tensor = np.exp(lt @ design_matrix(gtab)[:, :6].T)
    tissue = (c["awf"][:, None] * np.exp(-b * c["stick"][:, None] * cos2)
              + (1 - c["awf"][:, None]) * tensor)
    signal = s0[:, None] * (c["fw"][:, None] * np.exp(-b * FREE_WATER)
                            + (1 - c["fw"][:, None]) * tissue)
    if snr is None:
        return signal
    return add_noise(signal, snr, s0_reference, noise_type="rician", rng=rng)
