"""Diffusion tensor fit (dipy) and scalar maps."""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel, color_fa

#: Accepted ``--tensor-fit`` values -> dipy ``fit_method`` names.
FIT_METHODS = {"wls": "WLS", "ols": "OLS", "nlls": "NLLS", "restore": "RESTORE"}
#: Scalar maps and their units (b-values in s/mm^2 -> diffusivities in mm^2/s).
TENSOR_MAPS = {"fa": "arbitrary", "md": "mm^2/s", "ad": "mm^2/s", "rd": "mm^2/s"}


def fit_tensor(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    mask: np.ndarray,
    fit_method: str = "wls",
    b0_threshold: float = 50.0,
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
        ``wls`` (default), ``ols``, ``nlls`` or ``restore``.
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
    model = TensorModel(gtab, fit_method=FIT_METHODS[fit_method], **kwargs)
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
