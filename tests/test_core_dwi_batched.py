"""Batched MP-PCA and Gibbs unringing agree with dipy's reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from dipy.denoise.gibbs import gibbs_removal
from dipy.denoise.localpca import mppca

from bids_app.core.dwi.batched import (
    _mp_noise_variance,
    gibbs_removal_batched,
    mppca_batched,
)


def _phantom(shape=(14, 13, 9), n_vol=12, seed=3):
    """Smooth low-rank signal (3 components) plus Gaussian noise, with a background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    inside = (grid ** 2).sum(axis=0) < 0.8
    maps = [inside * (1.0 + 0.3 * grid[0]), inside * (0.5 + 0.2 * grid[1]),
            inside * 0.3 * np.cos(2 * grid[2])]
    loadings = rng.uniform(0.2, 1.0, size=(3, n_vol))
    clean = np.einsum("cxyz,cv->xyzv", np.stack(maps), loadings) * 100.0
    return clean + rng.normal(0, 3.0, size=clean.shape), clean, inside


@pytest.mark.parametrize("radius", [1, 2])
def test_mppca_matches_dipy(radius):
    noisy, _, inside = _phantom()
    with np.errstate(invalid="ignore", divide="ignore"):
        ref, ref_sigma = mppca(noisy, mask=inside, patch_radius=radius, return_sigma=True)
    ref, ref_sigma = np.nan_to_num(ref), np.nan_to_num(ref_sigma)
    out, sigma = mppca_batched(noisy, mask=inside, patch_radius=radius, return_sigma=True,
                               batch=97)  # several batches, one ragged
    assert out.dtype == noisy.dtype
    np.testing.assert_allclose(out, ref, rtol=1e-7, atol=1e-7 * ref.max())
    np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-7, atol=1e-7 * ref_sigma.max())


def test_mppca_denoises_and_estimates_the_noise():
    noisy, clean, inside = _phantom(shape=(16, 16, 12), n_vol=20)
    out, sigma = mppca_batched(noisy, mask=inside, patch_radius=2, return_sigma=True)
    interior = inside.copy()
    interior[[0, 1, -2, -1], :, :] = interior[:, [0, 1, -2, -1], :] = False
    err_in = np.sqrt(((noisy - clean)[interior] ** 2).mean())
    err_out = np.sqrt(((out - clean)[interior] ** 2).mean())
    assert err_out < 0.6 * err_in
    assert np.median(sigma[interior]) == pytest.approx(3.0, rel=0.25)
    assert (out[~inside] == 0).all()


def test_mp_noise_variance_matches_the_loop():
    from dipy.denoise.localpca import _pca_classifier

    rng = np.random.default_rng(0)
    evals = np.sort(rng.gamma(2.0, 1.0, size=(50, 12)) * rng.uniform(0.5, 5, (50, 1)), axis=1)
    evals[:10, -2:] *= 40  # a few signal components
    got = _mp_noise_variance(evals, 27)
    want = [_pca_classifier(row, 27)[0] for row in evals]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_mppca_rejects_3d():
    with pytest.raises(ValueError, match="4D"):
        mppca_batched(np.zeros((5, 5, 5)))


@pytest.mark.parametrize("shape,axis", [((18, 16, 5, 3), 2), ((17, 15, 6, 2), 0),
                                        ((16, 7, 15), 1), ((16, 15, 4), 2)])
def test_gibbs_matches_dipy(shape, axis):
    rng = np.random.default_rng(1)
    # a sharp-edged object rings after k-space truncation
    vol = np.zeros(shape)
    vol[tuple(slice(s // 4, 3 * s // 4) for s in shape[:3])] = 100.0
    vol = vol + rng.normal(0, 1.0, size=shape)
    ref = gibbs_removal(vol, slice_axis=axis, inplace=False)
    out = gibbs_removal_batched(vol, slice_axis=axis, batch=3)
    assert out.shape == vol.shape
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_gibbs_float32_stays_float32_and_close():
    rng = np.random.default_rng(2)
    vol = rng.normal(50, 5, size=(20, 20, 4, 2)).astype(np.float32)
    out = gibbs_removal_batched(vol)
    assert out.dtype == np.float32
    ref = gibbs_removal(vol.astype(np.float64), inplace=False)
    assert np.median(np.abs(out - ref)) < 1e-4 * np.abs(ref).max()


def test_gibbs_rejects_bad_axis():
    with pytest.raises(ValueError, match="slice_axis"):
        gibbs_removal_batched(np.zeros((4, 4, 4)), slice_axis=3)
