"""Diffusion tensor fit (dipy) and scalar maps."""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel, color_fa

#: Accepted ``--tensor-fit`` values -> dipy ``fit_method`` names.
FIT_METHODS = {"wls": "WLS", "ols": "OLS", "nlls": "NLLS", "restore": "RESTORE"}


def wls_normal_equations(design_matrix: np.ndarray, data: np.ndarray, *,
                         return_S0_hat: bool = False, **kwargs):
    """dipy's two-pass WLS tensor fit (Chung et al. 2006), solved by normal equations.

    Same estimator as :func:`dipy.reconst.dti.wls_fit_tensor` (OLS fit -> weights = squared
    predicted signal -> weighted least squares on the log signal), but each voxel's 7x7
    system ``(X^T W X) beta = X^T W log S`` is solved directly instead of through a
    per-voxel SVD pseudo-inverse of the ``g x 7`` weighted design, which makes dipy's WLS
    about 4x slower than MRtrix3's ``dwi2tensor`` (see ``benchmarks/dwi.py``). Used as
    dipy's ``TensorModel(fit_method=callable)``, so masking, eigen-decomposition and every
    scalar map stay dipy's; ``tests/test_core_dwi.py`` checks it against dipy's own WLS.

    Parameters
    ----------
    design_matrix
        (g, 7) dipy tensor design matrix.
    data
        (N, g) signals (already clipped to a positive minimum by dipy).
    return_S0_hat
        Also return the fitted non-diffusion-weighted signal.

    Returns
    -------
    tuple
        ``(params, None)`` as dipy's fit functions: params (N, 12) eigenvalues + vectors, or
        ``((params, S0), None)`` with ``return_S0_hat``.
    """
    from dipy.reconst.dti import eig_from_lo_tri, ols_fit_tensor

    data = np.asarray(data, dtype=np.float64)
    x = np.asarray(design_matrix, dtype=np.float64)
    log_s = np.log(data)
    ols, _ = ols_fit_tensor(x, data, return_lower_triangular=True)
    w2 = np.exp(2.0 * (ols @ x.T))  # squared predicted signal
    lhs = np.einsum("gi,ng,gj->nij", x, w2, x, optimize=True)
    rhs = np.einsum("gi,ng->ni", x, w2 * log_s, optimize=True)
    beta = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    params = eig_from_lo_tri(beta, min_diffusivity=1e-6 / -x.min())
    if return_S0_hat:
        return (params, np.exp(-beta[:, -1])), None
    return params, None


def fit_tensor(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    mask: np.ndarray,
    fit_method: str,
    b0_threshold: float,
    sigma: float | None = None,
) -> dict[str, np.ndarray]:
    """Fit the diffusion tensor in the mask and return FA, MD, AD, RD and colour FA.

    Parameters
    ----------
    data
        4D DWI series.
    bvals, bvecs
        (N,) b-values (s/mm^2) and (N, 3) unit b-vectors.
    mask
        Boolean brain mask; voxels outside are 0 in every map.
    fit_method
        ``wls``, ``ols``, ``nlls`` or ``restore``.
    b0_threshold
        b-values below are b0.
    sigma
        Noise standard deviation (RESTORE only; estimated by dipy when ``None``).

    Returns
    -------
    dict
        ``fa``, ``md``, ``ad``, ``rd`` (float32 3D; diffusivities in mm^2/s) and ``colfa``
        (float32 4D RGB, FA-weighted principal direction).
    """
    if fit_method not in FIT_METHODS:
        raise ValueError(f"unknown tensor fit {fit_method!r}; choose from {list(FIT_METHODS)}")
    gtab = gradient_table(np.asarray(bvals, dtype=float), bvecs=np.asarray(bvecs, dtype=float),
                          b0_threshold=b0_threshold)
    kwargs = {}
    if fit_method == "restore" and sigma is not None:
        kwargs["sigma"] = sigma
    method = wls_normal_equations if fit_method == "wls" else FIT_METHODS[fit_method]
    model = TensorModel(gtab, fit_method=method, **kwargs)
    fit = model.fit(np.asarray(data, dtype=np.float32), mask=np.asarray(mask, dtype=bool))
    out = {
        "fa": np.clip(np.nan_to_num(fit.fa), 0.0, 1.0),
        "md": np.nan_to_num(fit.md),
        "ad": np.nan_to_num(fit.ad),
        "rd": np.nan_to_num(fit.rd),
    }
    out["colfa"] = np.nan_to_num(color_fa(out["fa"], fit.evecs))
    inside = np.asarray(mask, dtype=bool)
    return {k: np.where(inside[..., None] if v.ndim == 4 else inside, v, 0).astype(np.float32)
            for k, v in out.items()}
