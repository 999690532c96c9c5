"""Fast tests of the simulator's pure functions (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.core.sphere import HemiSphere, disperse_charges
from dipy.reconst.dti import TensorModel, fractional_anisotropy

from bids_app.errors import MissingInputError, UsageError
from bids_app.simulate import deform, tensors, writer
from bids_app.simulate.acquisition import session_plans, session_score_change, with_sites
from bids_app.simulate.cohort import plan_cohort
from bids_app.simulate.effects import DEFAULT_EFFECTS, load_effects
from bids_app.simulate.scores import generate_scores


def _gtab(n=30, b=1000.0):
    rng = np.random.default_rng(0)
    theta, phi = np.arccos(rng.uniform(-1, 1, n)), rng.uniform(0, 2 * np.pi, n)
    hemi, _ = disperse_charges(HemiSphere(theta=theta, phi=phi), 200)
    bvecs = np.vstack([[0, 0, 0], hemi.vertices])
    return gradient_table(np.r_[0, np.full(n, b)], bvecs=bvecs)


def _tensors(n=50, seed=1):
    rng = np.random.default_rng(seed)
    evals = np.sort(rng.uniform(2e-4, 1.8e-3, (n, 3)), axis=1)[:, ::-1]
    evecs = np.stack([np.linalg.qr(rng.standard_normal((3, 3)))[0] for _ in range(n)])
    return evals, evecs


def test_synthesize_noise_free_is_recovered_by_dipy():
    gtab = _gtab()
    evals, evecs = _tensors()
    lt = tensors.compose(evals, evecs)
    signal = tensors.synthesize(lt, np.full(len(lt), 1000.0), gtab, snr=None,
                                s0_reference=1000.0, rng=np.random.default_rng(0))
    fit = TensorModel(gtab, fit_method="OLS").fit(signal)
    np.testing.assert_allclose(fit.lower_triangular(), lt, atol=1e-7)
    np.testing.assert_allclose(fit.fa, fractional_anisotropy(evals), atol=1e-5)


def test_rician_noise_level_matches_snr():
    gtab = _gtab()
    lt = np.tile([1e-3, 0, 1e-3, 0, 0, 1e-3], (20000, 1))
    signal = tensors.synthesize(lt, np.zeros(len(lt)), gtab, snr=20.0,
                                s0_reference=100.0, rng=np.random.default_rng(1))
    # zero signal: Rayleigh noise, mean = sigma sqrt(pi/2) with sigma = 100 / 20
    assert signal.mean() == pytest.approx(5.0 * np.sqrt(np.pi / 2), rel=0.02)


def test_scale_radial_raises_rd_keeps_ad_lowers_fa():
    evals, _ = _tensors()
    out = tensors.scale_radial(evals, np.full(len(evals), 1.2))
    np.testing.assert_allclose(out[:, 0], evals[:, 0])
    assert np.all(out[:, 1:] >= evals[:, 1:] - 1e-12)
    assert np.all(fractional_anisotropy(out) <= fractional_anisotropy(evals) + 1e-12)


def test_radial_factors_hit_target_changes_with_overlap():
    evals, _ = _tensors(400)
    w1 = np.r_[np.ones(250), np.zeros(150)]
    w2 = np.r_[np.zeros(150), np.ones(250)]  # overlaps w1 on 100 voxels
    weights, effect = {"a": w1, "b": w2}, {"a": w1, "b": w2}
    changes = {"a": -0.10, "b": -0.05}
    k = tensors.radial_factors_for_fa(evals, weights, effect, changes)
    factor = (1 + (k["a"] - 1) * w1) * (1 + (k["b"] - 1) * w2)
    planted = tensors.scale_radial(evals, factor)
    for key, change in changes.items():
        before = tensors.weighted_metrics(evals, weights[key])["fa"]
        after = tensors.weighted_metrics(planted, weights[key])["fa"]
        assert after / before - 1 == pytest.approx(change, abs=2e-3)


def test_radial_factors_on_top_of_a_prior_change():
    """A second stage (disease, focal) changes FA relative to the FA the first one left."""
    evals, _ = _tensors(400)
    w1 = np.r_[np.ones(250), np.zeros(150)]
    focal = np.r_[np.zeros(100), np.linspace(0, 1, 100), np.zeros(200)]
    k1 = tensors.radial_factors_for_fa(evals, {"a": w1}, {"a": w1}, {"a": -0.2})["a"]
    prior = 1 + (k1 - 1) * w1
    k2 = tensors.radial_factors_for_fa(evals, {"f": focal}, {"f": focal}, {"f": -0.1},
                                       prior=prior)["f"]
    assert k2 > 1
    first = tensors.scale_radial(evals, prior)
    both = tensors.scale_radial(evals, prior * (1 + (k2 - 1) * focal))
    after, before = (tensors.weighted_metrics(e, focal)["fa"] for e in (both, first))
    assert after / before - 1 == pytest.approx(-0.1, abs=2e-3)
    np.testing.assert_allclose(both[:, 0], evals[:, 0])  # axial kept, radial up
    assert np.all(both[:, 1:] >= first[:, 1:] - 1e-15)
    # outside the focal weights nothing more changes
    np.testing.assert_array_equal(both[focal == 0], first[focal == 0])


def test_focal_weights_and_length_fractions():
    from bids_app.simulate.placement import centre_line, focal_weights, length_fraction, world_z

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20, -20, -40]
    z = world_z((21, 21, 41), affine)
    assert z[0, 0, 0] == -40 and z[0, 0, -1] == 40
    # a straight vertical tube from z = -30 to +30 mm, then bending 45 degrees laterally
    prob = np.zeros((21, 21, 41), np.float32)
    for k in range(5, 36):
        prob[10, 10, k] = 1.0
    line = centre_line(prob, affine)
    assert line[0, 2] == -30 and line[-1, 2] == 30 and np.allclose(line[:, :2], 0)
    assert length_fraction(line, 0.0) == pytest.approx(0.5)
    assert length_fraction(line, -15.0, floor_mm=-20.0) == pytest.approx(5 / 50)
    w = focal_weights(prob, z, z_mm=10.0, sigma_mm=4.0)
    assert w.max() == pytest.approx(1.0) and z[w == w.max()][0] == 10.0
    centre = (w * z).sum() / w.sum()
    assert centre == pytest.approx(10.0, abs=1e-4)
    assert np.sqrt((w * (z - centre) ** 2).sum() / w.sum()) == pytest.approx(4.0, rel=0.05)
    with pytest.raises(ValueError, match="no voxel"):
        centre_line(np.zeros((3, 3, 3)), affine)


def test_plan_splits_variability_disease_and_focal():
    eff = load_effects()
    for plan in plan_cohort(eff, n_patients=3, n_controls=3, seed=4):
        assert set(plan.tract_changes) == {f"{k}/{h}" for k in eff["tracts"] for h in "LR"} \
            | set(eff["control_regions"])
        if plan.group == "control":
            assert plan.disease_changes == {} and set(plan.focal_changes.values()) == {0.0}
            continue
        # patients: the disease only in tracts with a planted effect, x severity
        assert set(plan.disease_changes) == {f"{k}/{h}" for k, s in eff["tracts"].items()
                                             if s["fa_change"] for h in "LR"}
        for key, change in plan.disease_changes.items():
            spec = eff["tracts"][key.rsplit("/", 1)[0]]["fa_change"]
            assert change == pytest.approx(spec * plan.severity, abs=1e-4)
        for key, change in plan.focal_changes.items():
            spec = eff["focal"][key.rsplit("/", 1)[0]]["fa_change"]
            assert change == pytest.approx(spec * plan.severity, abs=1e-4)


def test_rotate_preserves_invariants():
    evals, evecs = _tensors()
    lt = tensors.compose(evals, evecs)
    rot = deform.Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix()
    out = tensors.rotate(lt, rot)
    new_evals, new_evecs = tensors.eigen(out)
    np.testing.assert_allclose(new_evals, evals, rtol=1e-6)
    # principal direction maps to R^T v1
    expected = evecs[:, :, 0] @ rot
    assert np.allclose(np.abs((new_evecs[:, :, 0] * expected).sum(axis=1)), 1, atol=1e-6)


def test_head_position_and_field_are_seeded():
    def make(seed):
        rng = np.random.default_rng(seed)
        m, p = deform.head_position(rng, center=np.zeros(3), max_rotation_deg=5,
                                    max_translation_mm=3, scale_sd=0.03)
        f = deform.random_smooth_field(rng, bbox_min=np.zeros(3), bbox_max=np.full(3, 60.0),
                                       rms_mm=2.0, smoothness_mm=10.0)
        return m, p, f

    m1, p1, f1 = make(3)
    m2, p2, f2 = make(3)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(f1.values, f2.values)
    assert p1 == p2 and max(abs(a) for a in p1["rotation_deg"]) <= 5
    rot = m1[:3, :3] * p1["scale"]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-10)
    assert f1.values.std() == pytest.approx(2.0, rel=0.05)


def test_atrophy_gray_matter_plants_the_asked_change_locally():
    from bids_app.simulate.cohort import GmTissue, atrophy_gray_matter

    # a GM shell (CSF inside, WM around) and two separate regions cutting through it
    grid = np.indices((40, 40, 40)).astype(float) - 19.5
    radius = np.sqrt((grid ** 2).sum(axis=0))
    p_gm = np.clip(1 - np.abs(radius - 12) / 3, 0, 1).astype(np.float32)
    t1 = (40 + 60 * p_gm + 100 * (radius > 15)).astype(np.float32)
    left, right = (radius < 17) & (grid[0] < -4), (radius < 17) & (grid[0] > 4)
    out, realised = atrophy_gray_matter(t1, GmTissue(p_gm), {"L": (left, -0.10),
                                                             "R": (right, 0.05)})
    assert realised["L"] == pytest.approx(-0.10, abs=0.01)
    assert realised["R"] == pytest.approx(0.05, abs=0.01)
    far = np.abs(grid[0]) < 1  # between the regions: (almost) untouched
    assert np.abs(out[far] - t1[far]).max() < 0.1 * np.ptp(t1)
    unchanged, zero = atrophy_gray_matter(t1, GmTissue(p_gm), {"L": (left, 0.0)})
    assert zero == {"L": 0.0} and np.array_equal(unchanged, t1)


def test_effects_defaults_and_overrides(tmp_path):
    eff = load_effects()
    assert set(eff["tracts"]) == {"hcp842/cst", "hcp842/corticostriatal",
                                  "hcp842/corticothalamic"}
    assert eff["tracts"]["hcp842/cst"]["fa_change"] < 0
    assert eff["tracts"]["hcp842/corticostriatal"]["fa_change"] < 0
    assert eff["tracts"]["hcp842/corticothalamic"]["fa_change"] == 0  # the leakage neighbour
    # the simulator's truth never shares the measured atlas
    assert set(eff["placement"]) == set(eff["tracts"])
    assert all(src.split("/")[0] not in ("hcp842", key.split("/")[0])
               for key, src in eff["placement"].items())
    assert eff["focal"]["hcp842/cst"]["fa_change"] < 0
    assert eff["gm"]["aal/precentral"]["volume_change"] < 0
    assert "jhu/cc_splenium/bilateral" in eff["control_regions"]
    assert {"alsfrs_r", "mrc_sum", "fvc", "cmap_z_sum", "penn_score",
            "disease_duration"} <= set(eff["scores"])
    path = tmp_path / "e.yaml"
    path.write_text("snr: 50\nhead: {max_rotation_deg: 1}\ntracts:\n  hcp842/cst: "
                    "{fa_change: -0.2}\n  hcp842/corticostriatal: {fa_change: -0.1}\n"
                    "placement: {hcp842/cst: hcp1065/cst, hcp842/corticostriatal: "
                    "hcp1065/corticostriatal}\n")
    eff = load_effects(path)
    assert eff["snr"] == 50 and eff["head"]["max_rotation_deg"] == 1
    assert eff["head"]["max_translation_mm"] == DEFAULT_EFFECTS["head"]["max_translation_mm"]
    assert eff["tracts"] == {"hcp842/cst": {"fa_change": -0.2},
                             "hcp842/corticostriatal": {"fa_change": -0.1}}
    assert eff["placement"]["hcp842/cst"] == "hcp1065/cst"
    # the scores driven by the dropped tract are now invalid
    with pytest.raises(UsageError, match="driver"):
        path.write_text("tracts:\n  hcp842/cst: {fa_change: -0.2}\n"
                        "placement: {hcp842/cst: xtract/cst}\n")
        load_effects(path)


def test_benchmark_study_effects_are_smaller_versions_of_the_defaults():
    """benchmarks/recovery.py plants these: same tracts, regions and scores, smaller effects."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "study-effects.yaml"
    eff = load_effects(path)
    assert set(eff["tracts"]) == set(DEFAULT_EFFECTS["tracts"])
    assert eff["placement"] == DEFAULT_EFFECTS["placement"]
    for key, spec in eff["tracts"].items():
        default = DEFAULT_EFFECTS["tracts"][key]["fa_change"]
        if default == 0:  # the unlesioned neighbour stays unlesioned
            assert spec["fa_change"] == 0
        else:
            assert default < spec["fa_change"] <= -0.05
    for key, spec in eff["focal"].items():
        default = DEFAULT_EFFECTS["focal"][key]
        assert default["fa_change"] < spec["fa_change"] < 0
        assert (spec["z_mm"], spec["sigma_mm"]) == (default["z_mm"], default["sigma_mm"])
    precentral = eff["gm"]["aal/precentral"]
    assert DEFAULT_EFFECTS["gm"]["aal/precentral"]["volume_change"] \
        < precentral["volume_change"] < 0
    assert set(eff["scores"]) == set(DEFAULT_EFFECTS["scores"])
    for name, spec in eff["scores"].items():
        default = DEFAULT_EFFECTS["scores"][name]
        assert {k: v for k, v in spec.items() if k != "r"} == \
            {k: v for k, v in default.items() if k != "r"}
        assert np.sign(spec["r"]) == np.sign(default["r"]) and abs(spec["r"]) < abs(default["r"])


@pytest.mark.parametrize("text, match", [
    ("bogus: 1\n", "unknown keys"), ("- a\n", "mapping"), ("snr: [\n", "YAML"),
    ("gm: {aal/precentral: {volume_change: 0.9}}\n", "volume_change"),
    # the truth must not come from the measured atlas, and every tract needs a source
    (("placement: {hcp842/cst: hcp842/cst, hcp842/corticostriatal: hcp1065/corticostriatal, "
     "hcp842/corticothalamic: xtract/corticothalamic}\n"), "measured atlas itself"),
    ("placement: {hcp842/cst: xtract/cst}\n", "a source for each tract"),
    (("placement: {hcp842/cst: xtract, hcp842/corticostriatal: hcp1065/corticostriatal, "
     "hcp842/corticothalamic: xtract/corticothalamic}\n"), "'atlas/region'"),
    ("focal: {hcp842/ilf: {z_mm: 0, sigma_mm: 5, fa_change: -0.1}}\n", "not one of"),
    ("focal: {hcp842/cst: {z_mm: 0, sigma_mm: 0, fa_change: -0.1}}\n", "sigma_mm"),
    ("focal: {hcp842/cst: {z_mm: 0, sigma_mm: 5, fa_change: -0.6}}\n", "fa_change"),
    ("sites: {A: {fa_shift: 0.5}}\n", "fa_shift"),
    ("sites: {A-1: {fa_shift: 0.01}}\n", "letters/digits"),
    ("sessions: {n: 0}\n", "integer n"),
    ("sessions: {fa_decline_per_year: 0.1}\n", "fa_decline_per_year"),
    ("sessions: {score: bogus}\n", "score 'bogus'"),
])
def test_effects_errors(tmp_path, text, match):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_effects(path)
    with pytest.raises(MissingInputError):
        load_effects(tmp_path / "missing.yaml")


def test_plan_is_deterministic_and_balanced():
    eff = load_effects()
    a = plan_cohort(eff, n_patients=5, n_controls=3, seed=7)
    b = plan_cohort(eff, n_patients=5, n_controls=3, seed=7)
    c = plan_cohort(eff, n_patients=5, n_controls=3, seed=8)
    assert a == b and a != c
    assert [p.group for p in a].count("ALS") == 5
    assert all(p.severity == 0 for p in a if p.group == "control")


def test_scores_follow_planted_driver():
    eff = load_effects()
    rng = np.random.default_rng(0)
    n = 400
    truth = {f"sub-{i}": {"group": "ALS", "age": float(rng.normal(60, 10)),
                          "sex": "M" if rng.random() < 0.5 else "F",
                          "tracts": [{"atlas": "hcp842", "region": r, "hemisphere": h,
                                      "fa": float(v)} for r in
                                     ("cst", "corticostriatal", "corticothalamic")
                                     for h, v in zip("LR", rng.normal(0.5, 0.05, 2))],
                          "gm": [{"atlas": "aal", "region": "precentral", "hemisphere": h,
                                  "volume_ratio": float(rng.normal(0.9, 0.05))}
                                 for h in "LR"]} for i in range(n)}
    scores = generate_scores(truth, eff, seed=1)
    drv = np.array([np.mean([t["fa"] for t in p["tracts"] if t["region"] == "cst"])
                    for p in truth.values()])
    for name in ("alsfrs_r", "cmap_z_sum", "penn_score"):
        values = np.array([scores[pid][name] for pid in truth])
        r = np.corrcoef(drv, values)[0, 1]
        assert r == pytest.approx(eff["scores"][name]["r"], abs=0.1)
        assert values.min() >= eff["scores"][name]["min"]
        assert values.max() <= eff["scores"][name]["max"]


def test_multishell_signal_carries_the_planted_tract_effect_into_fa_and_mk():
    """The multi-shell simulator: a radial increase of the tensor (the planted tract effect)
    lowers the low-shell DTI FA and the DKI mean kurtosis fitted by alsmri's core."""
    from bids_app.core.dwi.kurtosis import fit_dki
    from bids_app.core.dwi.shells import select_volumes
    from bids_app.core.dwi.tensor import fit_tensor

    bvals, bvecs = tensors.multishell_scheme((1000, 2000, 3000), directions=30, b0_volumes=6)
    assert len(bvals) == 96 and np.allclose(np.linalg.norm(bvecs[6:], axis=1), 1)
    gtab = gradient_table(bvals, bvecs=bvecs)
    evals = np.array([[1.6e-3, 4e-4, 4e-4]])
    evecs = np.eye(3)[None]
    lesioned = tensors.scale_radial(evals, np.array([1.4]))
    lt = np.concatenate([tensors.compose(evals, evecs), tensors.compose(lesioned, evecs)])
    rng = np.random.default_rng(0)
    clean = tensors.synthesize_multishell(lt, np.full(2, 1000.0), gtab, snr=None,
                                          s0_reference=1000.0, rng=rng)
    noisy = np.concatenate([tensors.synthesize_multishell(
        np.repeat(lt[i:i + 1], 200, axis=0), np.full(200, 1000.0), gtab, snr=30.0,
        s0_reference=1000.0, rng=rng) for i in range(2)]).reshape(20, 20, 1, -1)
    assert clean[:, 0] == pytest.approx([1000.0, 1000.0])
    mask = np.ones((20, 20, 1), bool)
    low = select_volumes(bvals, [1000.0], b0_threshold=50)
    fa = fit_tensor(noisy[..., low], bvals[low], bvecs[low], mask=mask, fit_method="wls",
                    b0_threshold=50)["fa"].reshape(400)
    assert np.median(fa[200:]) < np.median(fa[:200]) - 0.05
    # the kurtosis change is small against the noise of 200 voxels: read it noise-free
    mk = fit_dki(clean.reshape(2, 1, 1, -1), bvals, bvecs, mask=np.ones((2, 1, 1), bool),
                 b0_threshold=50)["mk"].ravel()
    assert mk[1] < mk[0] - 0.03


def test_axial_factors_reach_each_regions_ad_change_despite_overlap():
    """Two overlapping regions: each region's weighted axial diffusivity changes as asked
    (numpy on the raw eigenvalues), where multiplying the two changes would compound them."""
    from bids_app.simulate.tensors import axial_factors_for_ad

    rng = np.random.default_rng(0)
    n = 5000
    evals = np.column_stack([rng.uniform(1.2e-3, 1.8e-3, n), rng.uniform(3e-4, 6e-4, n),
                             rng.uniform(3e-4, 6e-4, n)])
    w = {"a": np.clip(rng.uniform(-0.5, 1, n), 0, 1), "b": np.clip(rng.uniform(-0.5, 1, n), 0, 1)}
    effect = {k: np.clip(v / 0.4, 0, 1) for k, v in w.items()}
    changes = {"a": -0.2, "b": -0.1}
    factor = axial_factors_for_ad(evals, w, effect, changes)
    for key, change in changes.items():
        got = (w[key] * evals[:, 0] * factor).sum() / (w[key] * evals[:, 0]).sum() - 1
        assert got == pytest.approx(change, abs=1e-4)
    naive = (1 - 0.2 * effect["a"]) * (1 - 0.1 * effect["b"])
    assert (w["a"] * evals[:, 0] * naive).sum() / (w["a"] * evals[:, 0]).sum() - 1 < -0.22


def test_defaults_have_one_site_and_one_session():
    """The demo and the existing cohorts are unchanged: no site column, no sessions."""
    eff = load_effects()
    assert eff["sites"] == {} and eff["sessions"]["n"] == 1
    plans = plan_cohort(eff, n_patients=3, n_controls=2, seed=7)
    assert with_sites(plans, eff["sites"]) == plans
    assert session_plans(plans, eff) == plans
    assert all(p.site == "" and p.session == "" and p.years == 0 for p in plans)


def test_sites_add_a_shift_and_scale_the_deviations():
    eff = load_effects()
    plans = plan_cohort(eff, n_patients=4, n_controls=4, seed=3)
    sites = {"A": {"fa_shift": 0.05, "fa_scale": 1.0}, "B": {"fa_shift": -0.02, "fa_scale": 1.5}}
    sited = with_sites(plans, sites)
    # balanced within each group (the plans interleave patients and controls)
    for group in ("ALS", "control"):
        assert [p.site for p in sited if p.group == group] == ["A", "B"] * 2
    for before, after in zip(plans, sited):
        shift, scale = sites[after.site]["fa_shift"], sites[after.site]["fa_scale"]
        for key, value in before.tract_changes.items():
            assert after.tract_changes[key] == pytest.approx(shift + scale * value, abs=1e-6)
        for key, value in before.disease_changes.items():
            assert after.disease_changes[key] == pytest.approx(scale * value, abs=1e-6)
        assert (after.group, after.severity, after.age) == (before.group, before.severity,
                                                            before.age)


def test_sessions_plant_a_per_year_decline_in_patients_and_tie_the_score():
    eff = load_effects()
    eff["sessions"] = {**eff["sessions"], "n": 3, "interval_years": 0.5}
    plans = plan_cohort(eff, n_patients=3, n_controls=2, seed=5)
    runs = session_plans(plans, eff)
    assert len(runs) == 3 * len(plans)
    rate = eff["sessions"]["fa_decline_per_year"]
    for run in runs:
        first = next(p for p in plans if p.participant_id == run.participant_id)
        assert run.session in ("ses-1", "ses-2", "ses-3")
        assert run.years == pytest.approx(0.5 * (int(run.session[-1]) - 1))
        assert run.tract_changes == first.tract_changes  # the participant is the same
        for key, value in first.disease_changes.items():
            assert run.disease_changes[key] == pytest.approx(
                value + rate * first.severity * run.years, abs=1e-6)
        change = session_score_change(run, eff)
        assert change == pytest.approx(eff["sessions"]["score_per_fa_change"] * rate
                                       * run.severity * run.years)
        if run.group == "control":
            assert run.disease_changes == {} and change == 0


def test_writer_writes_sites_and_sessions(tmp_path):
    eff = load_effects()
    people = [{"participant_id": "sub-01", "age": 60.0, "sex": "M", "group": "ALS",
               "site": "A"},
              {"participant_id": "sub-02", "age": 55.0, "sex": "F", "group": "control",
               "site": "B"}]
    sessions = {p["participant_id"]: [
        {"session_id": f"ses-{k}", "acq_time": f"2025-0{k}-01T00:00:00", "age": p["age"] + k,
         "alsfrs_r": 40.0 - k} for k in (1, 2)] for p in people}
    writer.write_dataset_files(tmp_path, participants=people, scores={}, effects=eff,
                               truth={}, source_name="x", sessions=sessions)
    table = (tmp_path / "participants.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["participant_id", "age", "sex", "group", "site"]
    rows = (tmp_path / "sub-01" / "sub-01_sessions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["session_id", "acq_time", "age", "alsfrs_r"]
    assert rows[2].startswith("ses-2\t2025-02-01")
    assert (tmp_path / "sessions.json").is_file()
    assert writer.truth_map_name("sub-01", "tract/hcp842/cst/L", "ses-2").as_posix() == (
        "derivatives/simulate-truth/sub-01/ses-2/dwi/"
        "sub-01_ses-2_hemi-L_label-cst_desc-truth_probseg.nii.gz")
