"""Diffusion kurtosis imaging (DKI) fit (dipy ``DiffusionKurtosisModel``) and scalar maps."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst import dki
from dipy.reconst.dti import decompose_tensor, from_lower_triangular

#: Kurtosis values are clipped to this range (dipy's defaults allow -3/7 .. 10; below 0 and
#: above 3 are noise or fit failures in brain tissue, Tabesh et al. 2011).
KURTOSIS_RANGE = (0.0, 3.0)
#: Signals are clipped to this positive minimum before the log (dipy's MIN_POSITIVE_SIGNAL).
MIN_SIGNAL = 1e-4
#: Voxels fitted at once (bounds the memory of the (n, 22, 22) normal equations).
CHUNK = 20000


def dki_wls(design_matrix: np.ndarray, data: np.ndarray, *, return_S0_hat: bool = False,
            min_diffusivity: float = 0.0, **kwargs):
    """dipy's two-pass WLS DKI fit (Veraart et al. 2013), solved by normal equations.

    Same estimator as :func:`dipy.reconst.dki.ls_fit_dki` with ``weights=True`` (OLS fit ->
    weights = squared predicted signal -> weighted least squares on the log signal), but
    every voxel's 22 x 22 system is solved at once instead of a per-voxel pseudo-inverse
    (dipy's loop: 12 s per 10,000 voxels). Returns dipy's parameter layout, so every scalar
    map is dipy's; ``tests/test_core_dwi_models.py`` checks it against dipy's WLS.

    Parameters
    ----------
    design_matrix
        (g, 22) dipy DKI design matrix.
    data
        (N, g) signals (clipped to a positive minimum by dipy).
    return_S0_hat
        Also return the fitted non-diffusion-weighted signal.
    min_diffusivity
        Eigenvalues below are raised to it (as dipy).

    Returns
    -------
    tuple
        ``(params, None)``: params (N, 27) as dipy's (eigenvalues, eigenvectors, 15 kurtosis
        tensor elements), or ``((params, S0), None)`` with ``return_S0_hat``.
    """
    x = np.asarray(design_matrix, dtype=np.float64)
    data = np.atleast_2d(np.asarray(data, dtype=np.float64))
    pinv = np.linalg.pinv(x)
    # X^T W X = sum_g w_g x_g x_g^T: one matrix product with the outer products of the rows
    iu = np.triu_indices(x.shape[1])
    outer = (x[:, :, None] * x[:, None, :])[:, iu[0], iu[1]]  # (g, 253)
    params = np.empty((len(data), 27))
    s0 = np.empty(len(data))
    for start in range(0, len(data), CHUNK):
        log_s = np.log(data[start:start + CHUNK])
        w2 = np.exp(2.0 * (log_s @ pinv.T @ x.T))  # squared OLS-predicted signal
        lhs = np.empty((len(log_s), x.shape[1], x.shape[1]))
        lhs[:, iu[0], iu[1]] = w2 @ outer
        lhs[:, iu[1], iu[0]] = lhs[:, iu[0], iu[1]]
        rhs = (w2 * log_s) @ x
        beta = np.linalg.solve(lhs, rhs[..., None])[..., 0]
        evals, evecs = decompose_tensor(from_lower_triangular(beta[:, :6]),
                                        min_diffusivity=min_diffusivity)
        md2 = evals.mean(axis=-1) ** 2
        kt = np.divide(beta[:, 6:21], md2[:, None], out=np.zeros_like(beta[:, 6:21]),
                       where=md2[:, None] > 0)
        params[start:start + CHUNK] = np.concatenate(
            [evals, evecs[:, 0], evecs[:, 1], evecs[:, 2], kt], axis=1)
        s0[start:start + CHUNK] = np.exp(-beta[:, 21])
    if return_S0_hat:
        return (params, s0), None
    return params, None


def kurtosis_maps(params: np.ndarray) -> dict[str, np.ndarray]:
    """MK, AK, RK, KFA and MKT from dipy DKI parameters (..., 27).

    Kurtoses are clipped to :data:`KURTOSIS_RANGE`; non-finite values become 0.
    """
    lo, hi = KURTOSIS_RANGE
    maps = {
        "mk": dki.mean_kurtosis(params, min_kurtosis=lo, max_kurtosis=hi),
        "ak": dki.axial_kurtosis(params, min_kurtosis=lo, max_kurtosis=hi),
        "rk": dki.radial_kurtosis(params, min_kurtosis=lo, max_kurtosis=hi),
        "kfa": dki.kurtosis_fractional_anisotropy(params),
        "mkt": dki.mean_kurtosis_tensor(params, min_kurtosis=lo, max_kurtosis=hi),
    }
    maps["kfa"] = np.clip(np.nan_to_num(maps["kfa"]), 0.0, 1.0)
    return {k: np.nan_to_num(v) for k, v in maps.items()}


def fit_dki(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    mask: np.ndarray,
    b0_threshold: float,
    nthreads: int = 1,
) -> dict[str, np.ndarray]:
    """Fit the diffusion kurtosis model (WLS) in the mask and return the kurtosis maps.

    Parameters
    ----------
    data
        4D DWI series (b0 and at least two non-zero shells).
    bvals, bvecs
        (N,) b-values (s/mm^2) and (N, 3) unit b-vectors.
    mask
        Boolean brain mask; voxels outside are 0 in every map.
    b0_threshold
        b-values below are b0.
    nthreads
        Threads (voxel chunks fitted in parallel; numpy releases the GIL in its loops).

    Returns
    -------
    dict
        ``mk``, ``ak``, ``rk``, ``kfa``, ``mkt`` (float32 3D, unitless).
    """
    gtab = gradient_table(np.asarray(bvals, dtype=float), bvecs=np.asarray(bvecs, dtype=float),
                          b0_threshold=b0_threshold)
    inside = np.asarray(mask, dtype=bool)
    x = dki.design_matrix(gtab)
    signal = np.maximum(np.asarray(data, dtype=np.float32)[inside], MIN_SIGNAL)

    def one(part: np.ndarray) -> dict[str, np.ndarray]:
        return kurtosis_maps(dki_wls(x, part, min_diffusivity=1e-6 / -x.min())[0])

    parts = np.array_split(signal, max(1, min(nthreads, len(signal) // CHUNK)))
    with ThreadPoolExecutor(max(1, nthreads)) as pool:
        results = list(pool.map(one, parts))
    out = {}
    for name in results[0]:
        out[name] = np.zeros(inside.shape, np.float32)
        out[name][inside] = np.concatenate([r[name] for r in results])
    return out
