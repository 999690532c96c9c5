"""Core diffusion functions on synthetic data with known answers."""

from __future__ import annotations

import inspect
import tempfile

import numpy as np
import pandas as pd
import pytest
from dipy.core.gradients import gradient_table
from dipy.sims.voxel import single_tensor
from scipy import ndimage

from bids_app.core.dwi import qc
from bids_app.core.dwi._ants import matrix_transform, rotate_bvecs, transform_matrix
from bids_app.core.dwi.gradients import check_gradients, preflight_dwi
from bids_app.core.dwi.motion import motion_correct, motion_params
from bids_app.core.dwi.preproc import (
    brain_mask,
    denoise,
    dwi_brain_mask,
    fill_mask,
)
from bids_app.core.dwi.registration import register_fa_to_template
from bids_app.core.dwi.roistats import label_stats, tract_stats
from bids_app.core.dwi.sdc import combine_runs, estimate_run_alignment, restrict_vector
from bids_app.core.dwi.tensor import fit_tensor
from bids_app.core.tables import STATS_COLUMNS
from bids_app.errors import BadDataError


def _scheme(n=30, seed=3):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.r_[0, 0, np.full(n, 1000.0)], np.vstack([np.zeros((2, 3)), v])


@pytest.mark.parametrize("method", ["wls", "ols", "nlls", "restore"])
def test_tensor_recovers_known_eigenvalues(method):
    bvals, bvecs = _scheme()
    gtab = gradient_table(bvals, bvecs=bvecs)
    evals = np.array([1.7e-3, 0.3e-3, 0.3e-3])
    signal = single_tensor(gtab, S0=1000, evals=evals, evecs=np.eye(3))
    data = np.tile(signal, (3, 3, 2, 1)).astype(np.float32)
    mask = np.ones(data.shape[:3], bool)
    mask[0, 0, 0] = False
    maps = fit_tensor(data, bvals, bvecs, mask=mask, fit_method=method, b0_threshold=50.0)
    l1, l2, l3 = evals
    md = evals.mean()
    fa = np.sqrt(0.5 * ((l1 - l2) ** 2 + (l2 - l3) ** 2 + (l1 - l3) ** 2) / (evals ** 2).sum())
    assert maps["fa"][1, 1, 1] == pytest.approx(fa, abs=1e-3)
    assert maps["md"][1, 1, 1] == pytest.approx(md, rel=1e-3)
    assert maps["ad"][1, 1, 1] == pytest.approx(l1, rel=1e-3)
    assert maps["rd"][1, 1, 1] == pytest.approx(l2, rel=1e-3)
    assert maps["fa"][0, 0, 0] == 0  # outside the mask
    assert maps["colfa"].shape == (3, 3, 2, 3)
    assert maps["colfa"][1, 1, 1, 0] == pytest.approx(fa, abs=1e-3)  # principal axis = x


def test_fast_wls_equals_dipy_wls_on_noisy_tensors():
    """The normal-equation WLS is dipy's two-pass WLS estimator, to float precision."""
    from dipy.reconst.dti import TensorModel
    from dipy.sims.voxel import add_noise

    from bids_app.core.dwi.tensor import wls_normal_equations

    bvals, bvecs = _scheme()
    gtab = gradient_table(bvals, bvecs=bvecs)
    rng = np.random.default_rng(7)
    signals = []
    for _ in range(300):  # random orientations and anisotropies, Rician noise (SNR 20)
        evecs = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        evals = np.sort(rng.uniform(0.2e-3, 2.0e-3, 3))[::-1]
        clean = single_tensor(gtab, S0=1000, evals=evals, evecs=evecs)
        signals.append(add_noise(clean, snr=20, S0=1000, noise_type="rician", rng=rng))
    data = np.asarray(signals).reshape(10, 30, 1, -1)
    ref = TensorModel(gtab, fit_method="WLS").fit(data)
    fast = TensorModel(gtab, fit_method=wls_normal_equations).fit(data)
    for metric in ("fa", "md", "ad", "rd"):
        np.testing.assert_allclose(getattr(fast, metric), getattr(ref, metric),
                                   rtol=1e-7, atol=1e-12, err_msg=metric)
    np.testing.assert_allclose(np.abs((fast.evecs[..., 0] * ref.evecs[..., 0]).sum(-1)), 1.0,
                               atol=1e-6)


def test_tract_and_label_stats():
    fa = np.zeros((4, 4, 4))
    fa[:2] = 0.6
    fa[2:] = 0.2
    metrics = {"fa": fa, "md": fa * 1e-3}
    prob = np.zeros_like(fa)
    prob[0] = 1.0
    prob[3] = 0.2
    mask = np.ones(fa.shape, bool)
    table = tract_stats(metrics, {("cst", "L"): prob}, mask=mask, threshold=0.25,
                        atlas="hcp842")
    assert tuple(table.columns) == STATS_COLUMNS
    row = table.set_index(["metric", "statistic"]).loc[("fa", "wmean")]
    assert row["value"] == pytest.approx((16 * 0.6 + 16 * 0.2 * 0.2) / (16 + 16 * 0.2))
    assert row["n_voxels"] == 32
    row = table.set_index(["metric", "statistic"]).loc[("fa", "mean")]
    assert row["value"] == pytest.approx(0.6) and row["n_voxels"] == 16
    labels_img = np.zeros(fa.shape, int)
    labels_img[0] = 7
    labels_img[3] = 8
    labels = pd.DataFrame({"index": [7, 8, 9], "name": ["a", "b", "c"],
                           "hemisphere": ["R", "L", "bilateral"], "region": ["cst", "cst", ""]})
    rois = label_stats(metrics, labels_img, labels, mask=mask, atlas="jhu")
    fa_rows = rois[rois.metric == "fa"].set_index("hemisphere")
    assert fa_rows.loc["R", "value"] == pytest.approx(0.6)
    assert fa_rows.loc["L", "value"] == pytest.approx(0.2)
    assert set(rois.statistic) == {"mean"} and len(fa_rows) == 2  # empty region skipped


def test_motion_params_and_fd():
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 0, 0]
    rot = np.eye(4)
    c, s = np.cos(0.01), np.sin(0.01)
    rot[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    params = motion_params([np.eye(4), shift, rot], center=np.zeros(3))
    assert params.loc[1, "trans_x"] == pytest.approx(1.0)
    assert params.loc[2, "rot_z"] == pytest.approx(0.01)
    assert params["framewise_displacement"].tolist() == pytest.approx([0, 1.0, 1.0 + 0.5])


def test_matrix_roundtrip_and_bvec_rotation():
    mat = np.eye(4)
    c, s = np.cos(0.2), np.sin(0.2)
    mat[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    mat[:3, 3] = [2, -1, 3]
    assert np.allclose(transform_matrix(matrix_transform(mat)), mat)
    las = np.diag([-2.0, 2, 2, 1])
    g = np.array([[1.0, 0, 0]])
    out = rotate_bvecs(g, [mat], las)
    # world(g) = -x; R^T (-x) = (-c, s, 0) in world; back to LAS voxel axes: (c, s, 0)
    assert np.allclose(out[0], [c, s, 0])


def test_restrict_vector():
    assert restrict_vector(np.diag([-3.0, 3, 3, 1]), 1) == (0.0, 1.0, 0.0)


def test_qc_numbers_and_figures(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(100, 1, size=(6, 6, 4, 8)).astype(np.float32)
    data[..., 5] *= 0.5  # dropout volume
    bvals = np.r_[0, np.full(7, 1000.0)]
    mask = np.ones((6, 6, 4), bool)
    fd = np.zeros(8)
    fd[2] = 3.0
    flags = qc.outlier_volumes(data, bvals, mask, fd, b0_threshold=50.0)
    assert np.flatnonzero(flags).tolist() == [2, 5]
    assert qc.b0_snr(data[..., 0], mask, np.full((6, 6, 4), 2.0)) == pytest.approx(50, rel=0.02)
    motion = pd.DataFrame(np.zeros((8, 7)), columns=["trans_x", "trans_y", "trans_z", "rot_x",
                                                      "rot_y", "rot_z",
                                                      "framewise_displacement"])
    assert qc.plot_motion(motion, tmp_path / "m.svg").stat().st_size > 0
    fa = rng.uniform(0, 1, (20, 20, 10))
    assert qc.plot_tracts(fa, {("cst", "L"): fa}, tmp_path / "t.png",
                         threshold=0.25).stat().st_size > 0
    assert qc.plot_registration(fa, fa, tmp_path / "r.png").stat().st_size > 0
    assert qc.plot_sdc((fa, fa), (fa, fa), tmp_path / "s.png").stat().st_size > 0


def _head(shape=(40, 40, 30)):
    """A boolean ellipsoid 'brain' filling most of the array."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    r = ((z - c[0]) / 16) ** 2 + ((y - c[1]) / 16) ** 2 + ((x - c[2]) / 11) ** 2
    return r <= 1


def test_brain_mask_includes_tissue_dark_on_b0_but_bright_on_dwi():
    """Real DWI (ds-xa30): the brainstem is darker than Otsu's threshold on the b0 but is
    white matter, bright on the mean DWI; the mask must include it."""
    rng = np.random.default_rng(0)
    brain = _head()
    b0 = np.where(brain, 1000.0, 5.0) + rng.normal(0, 5, brain.shape)
    dwi = np.where(brain, 300.0, 2.0) + rng.normal(0, 2, brain.shape)
    # a block dark on the b0 (near background) but bright on the DWI, at the brain surface
    stem = np.zeros_like(brain)
    stem[4:28, 8:32, 0:10] = True
    stem &= brain
    b0[stem] = 20.0
    dwi[stem] = 320.0
    zooms = (3.5, 3.5, 3.5)  # ~500 mL, inside the plausible range
    b0_only = brain_mask(b0, zooms=zooms)
    full = brain_mask(b0, zooms=zooms, dwi_mean=dwi)
    assert b0_only[stem].mean() < 0.1
    assert full[stem].mean() > 0.9
    # still the brain: nothing outside it, its surface shell at most lost to the median filter
    assert not (full & ~brain).any()
    assert full[brain].mean() > 0.9


def test_fill_mask_fills_enclosed_and_fov_open_holes_and_drops_islands():
    brain = _head()[:, :, 8:]                  # brain cut by the bottom (x=0) of the FOV
    mask = brain.copy()
    mask[18:22, 18:22, 10:14] = False          # enclosed hole
    mask[18:22, 18:22, 0:8] = False            # channel open to the FOV edge (a brainstem)
    island = np.zeros_like(mask)
    island[0:3, 0:3, 18:21] = True             # 'eye': separate component
    filled = fill_mask(mask | island, closing=0)
    assert filled[18:22, 18:22, 10:14].all()
    # 3D filling leaves the channel (open to the border); the x-slices enclose it
    assert filled[18:22, 18:22, 0:8].all()
    assert not filled[island].any()
    assert (filled == brain).all()
    assert not fill_mask(np.zeros((4, 4, 4), bool)).any()


def test_brain_mask_volume_check_names_the_source():
    b0 = np.zeros((20, 20, 20))
    b0[8:12, 8:12, 8:12] = 1000.0  # 64 voxels of 1 mm^3: far below 300 mL
    with pytest.raises(BadDataError, match=r"sub-01_dwi.nii.gz: brain mask volume 0 mL is "
                                           r"outside the plausible range \[300, 3000\] mL"):
        brain_mask(b0, zooms=(1.0, 1.0, 1.0), source="sub-01_dwi.nii.gz")


def test_motion_correct_recovers_a_translation_and_leaves_no_files(tmp_path, monkeypatch):
    # ants.registration without an outprefix leaves a transform per call in the temp dir
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rng = np.random.default_rng(5)
    brain = _head(shape=(32, 32, 24)).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.normal(size=brain.shape), 1.5)
    b0 = brain * (100.0 + 300.0 * texture)
    bvals, bvecs = _scheme(n=6)
    data = np.stack([b0 if b < 50 else 0.4 * b0 for b in bvals], axis=-1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data[..., 4] = ndimage.shift(data[..., 4], (1.5, 0, 0), order=1)  # +3 mm along x
    result = motion_correct(data, affine=affine, bvals=bvals, bvecs=bvecs,
                            b0_threshold=50.0, seed=20261122)
    shift = result.params.loc[4, ["trans_x", "trans_y", "trans_z"]].to_numpy()
    assert abs(abs(shift[0]) - 3.0) < 0.5 and np.all(np.abs(shift[1:]) < 0.5), shift
    still = result.params.drop(index=4)[["trans_x", "trans_y", "trans_z"]].to_numpy()
    assert np.all(np.abs(still) < 0.5)
    assert list(tmp_path.iterdir()) == []


def test_dwi_brain_mask_is_the_mask_of_mean_b0_and_mean_dwi():
    rng = np.random.default_rng(1)
    brain = _head()
    bvals = np.array([0.0, 5.0, 1000.0, 1000.0, 2000.0])
    data = np.stack([np.where(brain, s, 5.0) + rng.normal(0, 3, brain.shape)
                     for s in (1000.0, 990.0, 300.0, 320.0, 150.0)], axis=-1)
    zooms = (3.5, 3.5, 3.5)
    mask, b0 = dwi_brain_mask(data, bvals, b0_threshold=50.0, zooms=zooms, source="dwi")
    assert b0.dtype == np.float32
    assert np.array_equal(b0, data[..., :2].astype(np.float32).mean(axis=3))
    dwi_mean = data[..., 2:].astype(np.float32).mean(axis=3)
    assert np.array_equal(mask, brain_mask(b0, zooms=zooms, dwi_mean=dwi_mean))
    only_b0, _ = dwi_brain_mask(data[..., :2], bvals[:2], b0_threshold=50.0, zooms=zooms,
                                source="dwi")
    assert np.array_equal(only_b0, brain_mask(b0, zooms=zooms))


@pytest.mark.parametrize(("func", "names"), [
    (denoise, ("b0_threshold",)),
    (motion_correct, ("b0_threshold", "seed")),
    (qc.outlier_volumes, ("b0_threshold",)),
    (qc.plot_tracts, ("threshold",)),
    (fit_tensor, ("b0_threshold", "fit_method")),
    (combine_runs, ("b0_threshold",)),
    (estimate_run_alignment, ("seed",)),
    (check_gradients, ("b0_threshold",)),
    (preflight_dwi, ("b0_threshold",)),
    (register_fa_to_template, ("seed",)),
    (tract_stats, ("threshold", "atlas")),
    (label_stats, ("atlas",)),
])
def test_run_settings_have_no_core_default(func, names):
    """Defaults live in bids_app.settings only; core callers pass them."""
    params = inspect.signature(func).parameters
    for name in names:
        assert params[name].default is inspect.Parameter.empty, f"{func.__name__}({name}=...)"
