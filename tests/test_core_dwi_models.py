"""Shells, model plans, DKI and free-water DTI: recovered against dipy's simulators and fits.

References placed independently of the fits: the phantom truth comes from dipy's
``multi_tensor``/``multi_tensor_dki`` signal generators (known compartments), and the
vectorised fits are compared with dipy's own per-voxel estimators.
"""

from __future__ import annotations

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.core.sphere import HemiSphere, disperse_charges
from dipy.reconst import dki, dti, fwdti
from dipy.sims.voxel import multi_tensor, multi_tensor_dki

from bids_app.bids.model_plan import plan_models
from bids_app.bids.models import DWI_MODELS
from bids_app.core.dwi.freewater import fit_fwdti, fwdti_wls
from bids_app.core.dwi.kurtosis import KURTOSIS_RANGE, dki_wls, fit_dki
from bids_app.core.dwi.shells import detect_shells, select_volumes
from bids_app.settings import DwiSettings

SNR = 30.0


def _directions(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hemi = HemiSphere(theta=np.arccos(rng.uniform(-1, 1, n)), phi=rng.uniform(0, 2 * np.pi, n))
    return disperse_charges(hemi, 500)[0].vertices


def _scheme(shells, n_dirs=30, n_b0=6):
    bvals, bvecs = [0.0] * n_b0, [np.zeros(3)] * n_b0
    for i, b in enumerate(shells):
        bvals += [float(b)] * n_dirs
        bvecs += list(_directions(n_dirs, seed=i + 1))
    return np.array(bvals), np.array(bvecs)


def _noisy(signal: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` Rician realisations of a signal with S0 = 100 at SNR 30."""
    rng = np.random.default_rng(seed)
    sigma = 100.0 / SNR
    clean = np.tile(signal, (n, 1))
    return np.hypot(clean + rng.normal(0, sigma, clean.shape),
                    rng.normal(0, sigma, clean.shape)).astype(np.float32)


# ----------------------------------------------------------------------------- shells
def test_shells_are_clustered_and_counted():
    bvals, bvecs = _scheme((1000, 2000), n_dirs=20)
    bvals[7] = 995.0  # scanner jitter stays in the shell
    shells = detect_shells(bvals, bvecs, b0_threshold=50)
    assert [(s.bval, s.n_volumes, s.n_directions) for s in shells] == [(1000, 20, 20),
                                                                       (2000, 20, 20)]
    keep = select_volumes(bvals, [1000.0], b0_threshold=50)
    assert keep.tolist() == list(range(26))
    with pytest.raises(ValueError, match="3000"):
        select_volumes(bvals, [3000.0], b0_threshold=50)


@pytest.mark.parametrize(("shells", "expected"), [
    # single shell at b = 2500 (ds-xa30): tensor on every volume with a warning, no DKI/FW
    ((2500,), {"tensor": ((), True), "dki": (None, True), "fwdti": (None, True)}),
    ((1000, 2000), {"tensor": ((1000.0,), False), "dki": ((), False),
                    "fwdti": ((), False)}),
    ((1000, 2000, 3000), {"tensor": ((1000.0,), False), "dki": ((), False),
                          "fwdti": ((1000.0, 2000.0), False)}),
    ((500, 1000), {"tensor": ((), False), "dki": ((), False), "fwdti": ((), False)}),
])
def test_models_are_planned_from_their_declared_requirements(shells, expected):
    bvals, bvecs = _scheme(shells)
    info = detect_shells(bvals, bvecs, b0_threshold=50)
    plans = {p.model: (p.shells, p.warn) for p in plan_models(info, DwiSettings())}
    assert plans == expected
    (tensor,) = [p for p in plan_models(info, DwiSettings()) if p.model == "tensor"]
    if shells == (2500,):
        assert "no shell at b <= 1500" in tensor.note and "2500" in tensor.note


def test_too_few_directions_skip_dki():
    bvals, bvecs = _scheme((1000, 2000), n_dirs=12)
    plans = plan_models(detect_shells(bvals, bvecs, b0_threshold=50), DwiSettings())
    assert {p.model: p.runs for p in plans} == {"tensor": True, "dki": False, "fwdti": True}


def test_metric_names_are_unique_and_files_follow_bep016():
    from bids_app.bids.outputs import dwi_map_output

    metrics = [m for model in DWI_MODELS.values() for m in model]
    assert len(metrics) == len(set(metrics))
    out = dwi_map_output("fwdti", "fwfa", model_description="x")
    assert out.glob() == "*_space-dwi_model-fwdti_param-fa_dwimap"
    assert dwi_map_output("dki", "mk", model_description="x").glob() == \
        "*_space-dwi_model-dki_param-mk_dwimap"


# ----------------------------------------------------------------------------- DKI
def test_dki_wls_equals_dipys_wls():
    bvals, bvecs = _scheme((1000, 2000))
    gtab = gradient_table(bvals, bvecs=bvecs)
    sig, _, _ = multi_tensor_dki(gtab, np.array([[1.7e-3, 3e-4, 3e-4], [1e-3, 8e-4, 8e-4]]),
                                 S0=100, angles=[(20, 30), (80, 10)], fractions=[60, 40],
                                 snr=None)
    data = _noisy(sig, 50, seed=1)
    ref = dki.DiffusionKurtosisModel(gtab, fit_method="WLS").fit(data).model_params
    x = dki.design_matrix(gtab)
    ours, _ = dki_wls(x, np.maximum(data, 1e-4), min_diffusivity=1e-6 / -x.min())
    assert np.allclose(ours[:, :3], ref[:, :3], rtol=1e-5, atol=1e-9)
    assert np.allclose(ours[:, 12:], ref[:, 12:27 - 0][:, :15], rtol=1e-4, atol=1e-6)


def test_dki_recovers_the_mean_kurtosis_of_a_single_fibre_phantom():
    """Single fibre, b = 0/1000/2000/3000, SNR 30: MK within 0.05 of the simulator's truth."""
    bvals, bvecs = _scheme((1000, 2000, 3000))
    gtab = gradient_table(bvals, bvecs=bvecs)
    # one fibre population as in white-matter tract integrity (Fieremans et al. 2011):
    # intra-axonal stick (axonal water fraction 0.49) + extra-axonal tensor
    mevals = np.array([[0.99e-3, 0, 0], [2.26e-3, 0.87e-3, 0.87e-3]])
    sig, dt, kt = multi_tensor_dki(gtab, mevals, S0=100, angles=[(30, 45), (30, 45)],
                                   fractions=[49, 51], snr=None)
    evals, evecs = dti.decompose_tensor(dti.from_lower_triangular(dt))
    truth = dki.mean_kurtosis(np.concatenate([evals, evecs.T.ravel(), kt]),
                              min_kurtosis=KURTOSIS_RANGE[0], max_kurtosis=KURTOSIS_RANGE[1])
    data = _noisy(sig, 400, seed=2).reshape(20, 20, 1, -1)
    maps = fit_dki(data, bvals, bvecs, mask=np.ones((20, 20, 1), bool), b0_threshold=50)
    assert 1.0 < truth < 2.0
    assert abs(np.median(maps["mk"]) - truth) < 0.05
    assert set(maps) == set(DWI_MODELS["dki"])


# ----------------------------------------------------------------------------- free water
def test_fwdti_wls_equals_dipys_wls():
    bvals, bvecs = _scheme((1000, 2000))
    gtab = gradient_table(bvals, bvecs=bvecs)
    sig, _ = multi_tensor(gtab, np.array([[1.6e-3, 4e-4, 4e-4], [3e-3, 3e-3, 3e-3]]), S0=100,
                          angles=[(40, 20), (0, 0)], fractions=[75, 25], snr=None)
    data = _noisy(sig, 30, seed=3)
    ref = fwdti.FreeWaterTensorModel(gtab, fit_method="WLS").fit(data).model_params
    ours = fwdti_wls(dti.design_matrix(gtab), data, data[:, gtab.b0s_mask].mean(axis=1))
    # the grid search runs in float32: f is dipy's or one finest grid step (0.001) away
    assert np.abs(ours[:, 12] - ref[:, 12]).max() <= 1e-3 + 1e-9
    assert np.allclose(ours[:, :3], ref[:, :3], rtol=0, atol=2e-5)


def test_fwdti_recovers_free_water_and_tissue_fa():
    """Tissue tensor (FA 0.72) + 30 % free water, b = 0/1000/2000, SNR 30: f within 0.05,
    tissue FA within 0.03 of the truth (median over 400 noisy voxels)."""
    bvals, bvecs = _scheme((1000, 2000))
    gtab = gradient_table(bvals, bvecs=bvecs)
    tissue = np.array([1.6e-3, 3.5e-4, 3.5e-4])
    sig, _ = multi_tensor(gtab, np.array([tissue, [3e-3] * 3]), S0=100,
                          angles=[(60, 30), (0, 0)], fractions=[70, 30], snr=None)
    data = _noisy(sig, 400, seed=4).reshape(20, 20, 1, -1)
    maps = fit_fwdti(data, bvals, bvecs, mask=np.ones((20, 20, 1), bool), b0_threshold=50)
    plain = dti.TensorModel(gtab).fit(data).fa
    truth_fa = dti.fractional_anisotropy(tissue)
    assert abs(np.median(maps["fw"]) - 0.30) < 0.05
    assert abs(np.median(maps["fwfa"]) - truth_fa) < 0.03
    assert np.median(plain) < truth_fa - 0.1  # the uncorrected FA is biased by the water
    assert set(maps) == set(DWI_MODELS["fwdti"])
