"""Free-water elimination DTI (dipy ``FreeWaterTensorModel``, WLS) and its scalar maps."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import (
    axial_diffusivity,
    decompose_tensor,
    design_matrix,
    fractional_anisotropy,
    from_lower_triangular,
    mean_diffusivity,
    radial_diffusivity,
)

#: Diffusivity of free water at body temperature (mm^2/s; dipy's ``Diso``).
FREE_WATER_DIFFUSIVITY = 3.0e-3
#: A voxel whose plain-DTI MD exceeds this is free water only (f = 1, no tissue tensor;
#: dipy's ``mdreg``, 90 % of the free-water diffusivity).
MD_FREE_WATER = 2.7e-3
#: Grid refinements of the free-water fraction (precision 10^-n; dipy's ``piterations``).
F_ITERATIONS = 3
#: Signals are clipped to this positive minimum (dipy's ``min_signal``).
MIN_SIGNAL = 1e-6
#: Voxels fitted at once (bounds the memory of the (n, 19, g) candidate signals).
CHUNK = 5000


def fwdti_wls(design: np.ndarray, signal: np.ndarray, s0: np.ndarray, *,
              diso: float = FREE_WATER_DIFFUSIVITY, mdreg: float = MD_FREE_WATER,
              iterations: int = F_ITERATIONS, nthreads: int = 1) -> np.ndarray:
    """dipy's free-water WLS fit (:func:`dipy.reconst.fwdti.wls_iter`), every voxel at once.

    Per voxel: a WLS tensor fit with weights = squared signal; voxels with MD >= ``mdreg``
    are free water only; else the free-water fraction f is searched on a grid (9 values,
    then 19 around the best, ``iterations`` times, precision 10^-iterations), each f giving
    the tensor of the log of the free-water-corrected signal with the same WLS operator,
    and kept where the signal residual is smallest. dipy loops over voxels in Python (2.5 ms
    per voxel); this is the same search vectorised over voxels, its candidates evaluated in
    float32 (f equals dipy's or is one finest grid step, 0.001, away; checked against dipy in
    ``tests/test_core_dwi_models.py``).

    Parameters
    ----------
    design
        (g, 7) dipy tensor design matrix.
    signal
        (N, g) signals.
    s0
        (N,) mean b0 signal.
    nthreads
        Chunks of voxels fitted in parallel threads.

    Returns
    -------
    ndarray
        (N, 13): tissue eigenvalues, eigenvectors (as dipy) and the free-water fraction.
    """
    w = np.asarray(design, dtype=np.float64)
    sig = np.asarray(signal, dtype=np.float64)
    s0 = np.asarray(s0, dtype=np.float64)
    out = np.zeros((len(sig), 13))
    chunks = [slice(i, i + CHUNK) for i in range(0, len(sig), CHUNK)]

    def one(sl: slice) -> None:
        out[sl] = _fwdti_chunk(w, sig[sl], s0[sl], diso=diso, mdreg=mdreg,
                               iterations=iterations)

    if nthreads > 1 and len(chunks) > 1:  # numpy releases the GIL in its array loops
        with ThreadPoolExecutor(nthreads) as pool:
            list(pool.map(one, chunks))
    else:
        for sl in chunks:
            one(sl)
    return out


def _fwdti_chunk(w: np.ndarray, si: np.ndarray, s0c: np.ndarray, *, diso: float,
                 mdreg: float, iterations: int) -> np.ndarray:
    fwsig = np.exp(w @ np.array([diso, 0, diso, 0, 0, diso, 0]))
    wts = si ** 2
    iu = np.triu_indices(7)
    normal = np.empty((len(si), 7, 7))
    normal[:, iu[0], iu[1]] = wts @ (w[:, iu[0]] * w[:, iu[1]])
    normal[:, iu[1], iu[0]] = normal[:, iu[0], iu[1]]
    # (W^T S^2 W)^-1 W^T S^2: dipy takes a pseudo-inverse; the normal matrix is full rank
    # for any tensor design, where both are the inverse
    op = np.linalg.solve(normal, w.T[None] * wts[:, None, :])  # (n, 7, g)
    params = (op @ np.log(np.maximum(si, MIN_SIGNAL))[:, :, None])[..., 0]
    md = (params[:, 0] + params[:, 2] + params[:, 5]) / 3
    tissue = (md < mdreg) & (si.mean(axis=1) > MIN_SIGNAL) & (s0c > MIN_SIGNAL)
    rows = np.arange(len(si))
    f = np.zeros(len(si))
    low, high = np.zeros(len(si)), np.ones(len(si))
    df, ns = 1.0, 9
    # the grid search in float32 (half the memory traffic of its (n, ns, g) arrays); the
    # chosen f and the tensor of the chosen f are recomputed in float64 below
    si32 = si.astype(np.float32)[:, None, :]
    water = (s0c[:, None, None] * fwsig).astype(np.float32)
    op_t = op.transpose(0, 2, 1).astype(np.float32)
    w32 = w.T.astype(np.float32)
    for _ in range(iterations):
        df *= 0.1
        fs = np.linspace(low + df, high - df, num=ns, axis=1)[:, :, None]  # (n, ns, 1)
        fs32 = fs.astype(np.float32)
        sa = fs32 * water
        np.subtract(si32, sa, out=sa)
        sa[sa <= 0] = MIN_SIGNAL
        np.log(sa, out=sa)
        sa -= np.log1p(-fs32)
        cand = sa @ op_t  # (n, ns, 7)
        pred = np.exp(cand @ w32)
        pred *= 1 - fs32
        pred += fs32 * water
        np.subtract(si32, pred, out=pred)
        best = np.argmin(np.einsum("nsg,nsg->ns", pred, pred), axis=1)
        f = fs[rows, best, 0]
        low, high = f - df, f + df
        ns = 19
    corrected = si - f[:, None] * s0c[:, None] * fwsig
    corrected[corrected <= 0] = MIN_SIGNAL
    params = (op @ np.log(corrected / (1 - f[:, None]))[:, :, None])[..., 0]
    evals, evecs = decompose_tensor(from_lower_triangular(params[:, :6]))
    chunk = np.concatenate([evals, evecs[:, 0], evecs[:, 1], evecs[:, 2], f[:, None]], axis=1)
    chunk[~tissue] = 0.0
    chunk[~tissue & (md > mdreg), 12] = 1.0
    return chunk


def fit_fwdti(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    mask: np.ndarray,
    b0_threshold: float,
    nthreads: int = 1,
) -> dict[str, np.ndarray]:
    """Fit free-water elimination DTI (WLS) in the mask.

    Parameters
    ----------
    data
        4D DWI series (b0 and at least two non-zero shells, b <= ~2000 s/mm^2).
    bvals, bvecs
        (N,) b-values (s/mm^2) and (N, 3) unit b-vectors.
    mask
        Boolean brain mask; voxels outside are 0 in every map.
    b0_threshold
        b-values below are b0.
    nthreads
        Threads (voxel chunks fitted in parallel).

    Returns
    -------
    dict
        ``fw`` (free-water volume fraction) and the tissue tensor's ``fwfa``, ``fwmd``,
        ``fwad``, ``fwrd`` (float32 3D; diffusivities in mm^2/s).
    """
    gtab = gradient_table(np.asarray(bvals, dtype=float), bvecs=np.asarray(bvecs, dtype=float),
                          b0_threshold=b0_threshold)
    inside = np.asarray(mask, dtype=bool)
    voxels = np.asarray(data, dtype=np.float32)[inside]
    s0 = voxels[:, gtab.b0s_mask].mean(axis=1)
    params = fwdti_wls(design_matrix(gtab), voxels, s0, nthreads=nthreads)
    evals = params[:, :3]
    values = {"fw": params[:, 12],
              "fwfa": np.clip(np.nan_to_num(fractional_anisotropy(evals)), 0.0, 1.0),
              "fwmd": mean_diffusivity(evals), "fwad": axial_diffusivity(evals),
              "fwrd": radial_diffusivity(evals)}
    out = {}
    for name, v in values.items():
        out[name] = np.zeros(inside.shape, np.float32)
        out[name][inside] = np.nan_to_num(v)
    return out
