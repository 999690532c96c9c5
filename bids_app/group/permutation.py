"""Pointwise OLS over many columns and permutation max-statistic family-wise error control.

Pure numpy/scipy (arrays in, arrays out). One model is fitted at every column ``v`` (a node of
an along-tract profile)::

    y_v = beta_v x_v + Z gamma_v + e_v

where either the outcome ``y`` or the predictor ``x`` varies with ``v`` (the other is one
column shared by every ``v``) and the nuisance design ``Z`` (intercept and covariates) is the
same for all. By the Frisch-Waugh-Lovell theorem ``beta_v`` is the slope of ``R y_v`` on
``R x_v``, ``R = I - H_Z`` the residual-forming matrix of ``Z``, so every column is three dot
products.

Family-wise error along a profile: the permutation distribution of the maximum ``|t|`` over
the profile's nodes [Nichols & Holmes 2002], with nuisance variables handled by Freedman-Lane
[Freedman & Lane 1983; Winkler et al. 2014]: the residuals of the reduced model
``e = R y`` are permuted, ``y* = H_Z y + P e``, and the full model is refitted to ``y*``. Since
``R y* = R P e``, the refitted statistic needs only ``<P e, R x_v>`` and ``||Q_Z' P e||``
(``Q_Z`` an orthonormal basis of ``Z``), so each permutation costs one small matrix product.
The identity is the first permutation, hence ``p_FWE >= 1 / (N + 1)``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Target size (bytes) of the per-batch intermediate arrays of the permutation loop.
BATCH_BYTES = 32 * 2**20


def nuisance_basis(z: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of ``z`` (SVD; rank as ``numpy.linalg.matrix_rank``).

    A rank-deficient ``z`` (collinear covariates) keeps its rank, as a pseudo-inverse fit does.
    """
    z = np.asarray(z, dtype=float)
    if z.shape[1] == 0:
        return np.zeros((z.shape[0], 0))
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    tol = s.max() * max(z.shape) * np.finfo(float).eps
    return u[:, s > tol]


def _residual(a: np.ndarray, qz: np.ndarray) -> np.ndarray:
    return a - qz @ (qz.T @ a)


def _columns(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    y, x = (y[:, None] if y.ndim == 1 else y), (x[:, None] if x.ndim == 1 else x)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows, x has {x.shape[0]}")
    if min(y.shape[1], x.shape[1]) != 1 and y.shape[1] != x.shape[1]:
        raise ValueError("y and x: one must be a single column or both the same width")
    return y, x


@dataclass(frozen=True)
class _Residuals:
    """What every permutation of one model family reuses."""

    ey: np.ndarray   # reduced-model residuals of the outcome, (n, Vy)
    ex: np.ndarray   # nuisance-residualised predictor, (n, Vx)
    qz: np.ndarray   # orthonormal basis of Z, (n, q)
    qe: np.ndarray   # the part of qz a permuted residual can load on (see _residuals)
    sxx: np.ndarray
    syy: np.ndarray
    df: int


def _residuals(y: np.ndarray, x: np.ndarray, z: np.ndarray) -> _Residuals:
    y, x = _columns(y, x)
    qz = nuisance_basis(z)
    ey, ex = _residual(y, qz), _residual(x, qz)
    sxx = (ex ** 2).sum(axis=0)
    # x_v in the span of Z (e.g. constant): no slope to estimate; NaN, not rounding noise
    sxx = np.where(sxx > 1e-12 * np.maximum((x ** 2).sum(axis=0), np.finfo(float).tiny),
                   sxx, np.nan)
    # With an intercept in Z the residuals sum to zero and so does any permutation of them:
    # the constant direction of Z never loads on P e, so it is left out of the products.
    ones = np.ones((y.shape[0], 1))
    qe = qz
    if qz.shape[1] and np.abs(_residual(ones, qz)).max() < 1e-9:
        qe = nuisance_basis(_residual(np.asarray(z, dtype=float), ones / np.sqrt(len(ones))))
    return _Residuals(ey=ey, ex=ex, qz=qz, qe=qe, sxx=sxx, syy=(ey ** 2).sum(axis=0),
                      df=y.shape[0] - qz.shape[1] - 1)


@dataclass(frozen=True)
class PointwiseFit:
    """Coefficient of ``x`` in ``y_v ~ x_v + Z`` at every column (arrays of one length)."""

    estimate: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    """Two-sided parametric p (Student t, ``df`` degrees of freedom)."""
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: int
    """Residual degrees of freedom: ``n - rank(Z) - 1``."""


def fit_pointwise(y: np.ndarray, x: np.ndarray, z: np.ndarray, *,
                  ci_level: float) -> PointwiseFit:
    """OLS ``y_v ~ x_v + z`` at every column ``v``: the coefficient of ``x``, vectorised.

    Parameters
    ----------
    y, x
        ``(n,)`` or ``(n, V)``; one of them may be a single column shared by every ``v``.
    z
        ``(n, k)`` nuisance design, intercept included (rank-deficient allowed).
    ci_level
        Confidence level of ``ci_low``/``ci_high`` (e.g. 0.95).

    Returns
    -------
    PointwiseFit
        NaN where ``x_v`` lies in the span of ``z`` (no variation left to estimate a slope).
    """
    r = _residuals(y, x, z)
    df, sxx = r.df, r.sxx
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = (r.ex * r.ey).sum(axis=0) / sxx
        rss = ((r.ey - beta * r.ex) ** 2).sum(axis=0)
        se = np.sqrt(rss / df / sxx) if df > 0 else np.full_like(beta, np.nan)
        t = beta / se
    p = 2.0 * stats.t.sf(np.abs(t), df) if df > 0 else np.full_like(t, np.nan)
    half = stats.t.isf((1.0 - ci_level) / 2.0, df) * se if df > 0 else np.nan * se
    return PointwiseFit(estimate=beta, se=se, t=t, p=p, ci_low=beta - half,
                        ci_high=beta + half, df=int(df))


def permutations(n: int, n_permutations: int, *, seed: int,
                 batch: int) -> Iterator[np.ndarray]:
    """Row permutations in batches: the identity first, then ``n_permutations`` random ones.

    When ``n!`` is at most ``n_permutations + 1`` every permutation is listed once instead
    (exact test). Batching does not change the sequence (``Generator.permuted`` draws row by
    row), so a given ``(n, n_permutations, seed)`` always yields the same permutations.
    """
    if math.factorial(n) <= n_permutations + 1:
        every = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
        for start in range(0, len(every), batch):
            yield every[start:start + batch]
        return
    rng = np.random.default_rng(seed)
    yield np.arange(n, dtype=np.intp)[None, :]
    for start in range(0, n_permutations, batch):
        size = min(batch, n_permutations - start)
        yield rng.permuted(np.tile(np.arange(n, dtype=np.intp), (size, 1)), axis=1)


def _permuted_t2(r: _Residuals, perms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d1, t^2)`` of every permutation and column; ``sign(t) = sign(d1)``."""
    if r.ey.shape[1] == 1:   # one outcome, many predictors: permute the outcome residuals
        e_perm = r.ey[perms, 0]                                     # (b, n)
        d1 = e_perm @ r.ex                                          # (b, V)
        d2 = ((e_perm @ r.qe) ** 2).sum(axis=1)[:, None]            # (b, 1)
    else:                    # many outcomes, one predictor: <P e, w> = <e, P' w>
        b, n = perms.shape
        w = np.column_stack([r.ex, r.qe])                           # (n, k)
        k = w.shape[1]
        wp = np.ascontiguousarray(w[np.argsort(perms, axis=1)].transpose(0, 2, 1))
        c = (wp.reshape(b * k, n) @ r.ey).reshape(b, k, -1)         # (b, k, V)
        d1 = c[:, 0, :]
        d2 = np.einsum("bkv,bkv->bv", c[:, 1:, :], c[:, 1:, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = d1 * d1
        explained /= r.sxx
        rss = np.subtract(r.syy - d2, explained)
        np.maximum(rss, 0.0, out=rss)
        explained /= rss
        explained *= r.df
    return d1, explained


def permuted_t(y: np.ndarray, x: np.ndarray, z: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Freedman-Lane t of ``x`` at every column for each row permutation of ``perms``.

    ``perms`` is ``(b, n)``; row ``j`` permutes the reduced-model residuals as
    ``(P e)[i] = e[perms[j, i]]``, i.e. the full model is refitted to
    ``y* = H_Z y + P e``. Returns ``(b, V)``. The identity permutation gives the statistic of
    :func:`fit_pointwise` (up to rounding).
    """
    d1, t2 = _permuted_t2(_residuals(y, x, z), np.asarray(perms, dtype=np.intp))
    return np.sign(d1) * np.sqrt(t2)


@dataclass(frozen=True)
class MaxTNull:
    """Permutation distribution of the maximum ``|t|`` within each block of columns."""

    max_t: np.ndarray
    """``(n_perm, n_blocks)``; row 0 is the identity (the observed data)."""
    exhaustive: bool
    """Every permutation of the rows was used (``n!`` small)."""

    @property
    def n_permutations(self) -> int:
        """Permutations in the distribution, the identity included."""
        return int(self.max_t.shape[0])


def max_t_null(y: np.ndarray, x: np.ndarray, z: np.ndarray, *, block: int,
               n_permutations: int, seed: int) -> MaxTNull:
    """Freedman-Lane permutation distribution of ``max |t|`` over each block of columns.

    Parameters
    ----------
    y, x, z
        As in :func:`fit_pointwise`; the varying side has ``V`` columns, ``V`` a multiple of
        ``block``.
    block
        Columns per block (nodes of one profile): the maximum is taken within each block,
        so several profiles sharing rows and design are permuted together (same
        permutations for each, FWE controlled within each).
    n_permutations
        Random permutations besides the identity.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    MaxTNull
    """
    r = _residuals(y, x, z)
    n, width = r.ey.shape[0], max(r.ey.shape[1], r.ex.shape[1])
    if width % block:
        raise ValueError(f"{width} columns are not a multiple of block={block}")
    q = r.qz.shape[1]
    per_perm = 8 * (width * (q + 6) + 2 * n * (q + 2))
    batch = int(max(1, min(n_permutations + 1, BATCH_BYTES // per_perm)))
    maxima = []
    exhaustive = math.factorial(n) <= n_permutations + 1
    for perms in permutations(n, n_permutations, seed=seed, batch=batch):
        t2 = _permuted_t2(r, perms)[1].reshape(len(perms), width // block, block)
        maxima.append(np.sqrt(np.fmax.reduce(t2, axis=2)))
    return MaxTNull(max_t=np.concatenate(maxima), exhaustive=exhaustive)


def fwe_p(t: np.ndarray, null: MaxTNull, *, block: int) -> np.ndarray:
    """FWE-corrected p of every column: share of permutations whose block maximum reaches
    ``|t|`` (the identity counts, so ``p >= 1/N``). NaN where ``t`` is NaN."""
    t = np.abs(np.asarray(t, dtype=float)).reshape(-1, block)        # (n_blocks, block)
    # relative tolerance: the identity's maximum equals max|t| up to rounding
    hits = null.max_t[:, :, None] >= t[None] * (1.0 - 1e-9)
    p = hits.mean(axis=0).reshape(-1)
    return np.where(np.isfinite(t.reshape(-1)), p, np.nan)


def fwe_threshold(null: MaxTNull, *, alpha: float) -> np.ndarray:
    """Critical ``|t|`` per block: the ``1 - alpha`` quantile of the maximum distribution."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a block without any finite t
        return np.nanquantile(null.max_t, 1.0 - alpha, axis=0, method="higher")


def segments(significant: np.ndarray, t: np.ndarray) -> list[tuple[int, int]]:
    """Runs of contiguous significant columns with one sign of ``t``: ``(first, last)``.

    >>> segments(np.array([0, 1, 1, 0, 1, 1], bool), np.array([0, 2, 3, 0, 2, -2.0]))
    [(1, 2), (4, 4), (5, 5)]
    """
    runs: list[tuple[int, int]] = []
    start = None
    sign = np.sign(np.nan_to_num(t))
    for i, flag in enumerate(np.asarray(significant, dtype=bool)):
        if start is not None and (not flag or sign[i] != sign[start]):
            runs.append((start, i - 1))
            start = None
        if flag and start is None:
            start = i
    if start is not None:
        runs.append((start, len(significant) - 1))
    return runs
