"""Motion correction against planted motion: corrected when real, a no-op when absent."""

from __future__ import annotations

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import design_matrix
from scipy import ndimage

from bids_app.core.dwi.motion import MOTION_MIN_DISPLACEMENT, motion_correct, predict_signal
from bids_app.core.dwi.sdc import apply_run_transforms

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (36, 36, 28)


def _scheme(n=20, seed=3):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.r_[0.0, 0.0, np.full(n, 1000.0)], np.vstack([np.zeros((2, 3)), v])


def _phantom(bvals, bvecs, *, noise=2.0, seed=7):
    """Textured ellipsoid 'head' with fibres whose direction turns across it (tensor signal)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE, dtype=float)
    centre = (np.asarray(SHAPE, dtype=float) - 1) / 2
    radii = np.array([14.0, 15.0, 11.0])
    inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2
              ).sum(axis=0) <= 1
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.5)
    texture /= texture.std()
    s0 = np.where(inside, 600.0 + 150.0 * texture, 0.0)
    angle = grid[1] / SHAPE[1] * np.pi  # principal direction turns with y
    e1 = np.stack([np.cos(angle), np.sin(angle), np.full(SHAPE, 0.3)], axis=-1)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    wm = inside & (texture > 0)
    lam1 = np.where(wm, 1.7e-3, 0.9e-3)
    lam2 = np.where(wm, 0.35e-3, 0.8e-3)
    g = np.asarray(bvecs, dtype=float)
    proj = (e1[..., None, :] * g[None, None, None]).sum(-1)  # (x, y, z, n) cos to e1
    adc = lam2[..., None] + (lam1 - lam2)[..., None] * proj ** 2
    signal = s0[..., None] * np.exp(-np.asarray(bvals)[None, None, None] * adc)
    noisy = np.sqrt((signal + rng.normal(0, noise, signal.shape)) ** 2
                    + rng.normal(0, noise, signal.shape) ** 2)
    return noisy.astype(np.float32)


def _correct(data, bvals, bvecs):
    return motion_correct(data, affine=AFFINE, bvals=bvals, bvecs=bvecs, b0_threshold=50.0,
                          seed=20261122)


def test_motion_free_series_is_returned_bit_identical():
    bvals, bvecs = _scheme()
    data = _phantom(bvals, bvecs)
    result = _correct(data, bvals, bvecs)
    # spurious estimates stay below the declared floor (0.1 voxel = 0.2 mm here)
    assert result.displacement.max() < MOTION_MIN_DISPLACEMENT * 2.0, result.displacement
    assert all(np.array_equal(m, np.eye(4)) for m in result.matrices)
    assert np.array_equal(result.data, data)
    assert np.array_equal(result.bvecs[2:], bvecs[2:])
    assert not result.params.drop(columns="framewise_displacement").to_numpy().any()
    # ... and the single resampling of the workflow copies every volume unchanged
    moved = apply_run_transforms(data, affine=AFFINE, transforms=(),
                                 volume_matrices=np.stack(result.matrices))
    assert np.array_equal(moved, data)


def test_planted_1mm_and_1degree_motion_is_corrected():
    bvals, bvecs = _scheme()
    data = _phantom(bvals, bvecs)
    # volume 5: +1 mm along x (half a voxel); volume 12: 1 degree about z (array centre)
    data[..., 5] = ndimage.shift(data[..., 5], (0.5, 0.0, 0.0), order=3)
    data[..., 12] = ndimage.rotate(data[..., 12], 1.0, axes=(0, 1), reshape=False, order=3)
    result = _correct(data, bvals, bvecs)
    p = result.params
    assert abs(p.loc[5, "trans_x"]) == pytest.approx(1.0, abs=0.25), p.loc[5]
    assert np.all(np.abs(p.loc[5, ["trans_y", "trans_z"]]) < 0.15)
    # sub-voxel rotations are under-estimated by intensity registration (measured here:
    # 0.65 degree; the mean-image targets this replaced: 0.14)
    assert 0.5 < abs(np.degrees(p.loc[12, "rot_z"])) < 1.25, p.loc[12]
    assert np.all(np.abs(np.degrees(p.loc[12, ["rot_x", "rot_y"]])) < 0.2)
    still = [k for k in range(len(bvals)) if k not in (5, 12)]
    assert all(np.array_equal(result.matrices[k], np.eye(4)) for k in still), \
        result.displacement
    assert np.array_equal(result.data[..., still], data[..., still])
    # the corrected volume is back in place: closer to its motion-free version than before
    clean = _phantom(bvals, bvecs)
    inside = clean[..., 0] > 100
    for k, gain in ((5, 0.6), (12, 1.0)):
        before = np.abs(data[..., k] - clean[..., k])[inside].mean()
        after = np.abs(result.data[..., k] - clean[..., k])[inside].mean()
        assert after < gain * before, (k, before, after)


def test_predict_signal_is_leave_one_out():
    bvals, bvecs = _scheme()
    data = _phantom(bvals, bvecs, noise=0.0)
    mask = data[..., 0] > 0
    pred = predict_signal(data, bvals, bvecs, mask=mask, b0_threshold=50.0)
    # noise-free tensor data: every diffusion-weighted volume predicted from the others
    rel = np.abs(pred[mask][:, 2:] - data[mask][:, 2:]) / data[mask][:, 2:]
    assert np.median(rel) < 1e-3
    # a volume's own value does not enter its prediction (leave-one-out, closed form)
    changed = data.copy()
    changed[..., 7] *= 1.5
    again = predict_signal(changed, bvals, bvecs, mask=mask, b0_threshold=50.0)
    assert np.allclose(again[..., 7], pred[..., 7], rtol=1e-4)
    assert not np.allclose(again[..., 8], pred[..., 8], rtol=1e-4)
    # closed form == refitting without the volume
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50.0)
    x = design_matrix(gtab)
    keep = np.arange(len(bvals)) != 7
    y = np.log(np.maximum(changed[mask].astype(float), 1e-3 * changed.max()))
    beta = np.linalg.lstsq(x[keep], y[:, keep].T, rcond=None)[0]
    assert np.allclose(np.exp(x[7] @ beta), again[mask][:, 7], rtol=1e-3)
