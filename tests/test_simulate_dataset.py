"""``alsmri simulate`` end to end on the real ds-xa30 anatomy (2 patients + 2 controls).

The base anatomy (tensor fit + two antspyx registrations, ~30 s) is cached once per session
under the repository's git-ignored ``.cache/``; each participant takes ~5-20 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel

from bids_app.cli.simulate import main as simulate_main
from bids_app.core.seeding import single_threaded
from bids_app.simulate import cohort, deform
from bids_app.simulate.base import SourceSubject, load_or_build_base
from bids_app.simulate.dataset import BASE_SEED, atlas_inputs, simulate_dataset
from bids_app.simulate.effects import load_effects

REPO = Path(__file__).resolve().parents[1]
SEED = 11
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def sim_effects():
    return load_effects()


@pytest.fixture(scope="session")
def sim_base(built_data_dir, ds_xa30, sim_effects):
    return load_or_build_base(SourceSubject.from_bids(ds_xa30),
                              atlas_inputs(sim_effects, data_dir=built_data_dir),
                              cache_dir=REPO / ".cache" / "simulate")


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory, sim_base, sim_effects):
    out = tmp_path_factory.mktemp("sim") / "bids"
    truth = simulate_dataset(out, sim_base, sim_effects, n_patients=2, n_controls=2, seed=SEED)
    return out, truth


def test_base_anatomy_is_plausible(sim_base):
    assert sim_base.tensors.shape == (72, 72, 39, 6) and sim_base.t1.shape == (96, 128, 128)
    assert sim_base.template_z.shape == (72, 72, 39)
    assert -60 < np.nanmin(sim_base.template_z[sim_base.mask]) < -20  # brainstem to vertex
    assert 60 < np.nanmax(sim_base.template_z[sim_base.mask]) < 110
    assert 1.0e6 < sim_base.mask.sum() * 27 < 2.0e6  # brain-mask volume in mm^3
    for key in ("hcp842/cst/L", "hcp842/cst/R", "hcp842/corticostriatal/L",
                "hcp842/corticothalamic/R", "jhu/cc_splenium/bilateral"):
        assert sim_base.weights[key].sum() > 50, key
    for hemi in "LR":  # AAL precentral gyrus is ~15-30 cm^3 per hemisphere
        assert 12e3 < sim_base.gm_masks[f"aal/precentral/{hemi}"].sum() * 8 < 35e3
    # left tracts lie left of right tracts (world x)
    centre = {h: np.average(np.argwhere(sim_base.weights[f"hcp842/cst/{h}"] > 0.2)
                            @ sim_base.dwi_affine[:3, :3].T, axis=0)[0] for h in "LR"}
    assert centre["L"] < centre["R"]


def test_bids_validity_and_files(sim_dataset):
    from bids import BIDSLayout

    out, _ = sim_dataset
    layout = BIDSLayout(out, validate=True)
    assert sorted(layout.get_subjects()) == ["001", "002", "003", "004"]
    for sub in layout.get_subjects():
        dwi = layout.get(subject=sub, suffix="dwi", extension=".nii.gz")
        assert len(dwi) == 1
        assert layout.get_metadata(dwi[0].path)["PhaseEncodingDirection"] == "j-"
        assert len(layout.get(subject=sub, suffix="T1w", extension=".nii.gz")) == 1
        base = out / f"sub-{sub}" / "dwi" / f"sub-{sub}_dwi"
        img = nib.load(base.with_suffix(".nii.gz"))
        assert img.shape == (72, 72, 39, 21)
        assert np.loadtxt(base.with_suffix(".bval")).shape == (21,)
        assert np.loadtxt(base.with_suffix(".bvec")).shape == (3, 21)
        assert nib.load(out / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz").shape == \
            (96, 128, 128)
    for name in ("dataset_description.json", "README", ".bidsignore", "participants.tsv",
                 "participants.json", "phenotype/clinical.tsv", "phenotype/clinical.json",
                 "truth.json", "derivatives/simulate-truth/dataset_description.json"):
        assert (out / name).is_file(), name
    assert "truth.json" in (out / ".bidsignore").read_text()
    parts = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(parts.columns) == ["participant_id", "age", "sex", "group"]
    assert sorted(parts.group) == ["ALS", "ALS", "control", "control"]
    pheno = pd.read_csv(out / "phenotype" / "clinical.tsv", sep="\t", na_values="n/a")
    dictionary = json.loads((out / "phenotype" / "clinical.json").read_text())
    for col in ("alsfrs_r", "mrc_sum", "fvc", "cmap_z_sum", "penn_score", "disease_duration"):
        assert col in pheno.columns and col in dictionary
    patients = parts.loc[parts.group == "ALS", "participant_id"]
    assert pheno.set_index("participant_id").loc[patients].notna().all().all()


def test_truth_contents(sim_dataset, sim_effects):
    out, _truth = sim_dataset
    on_disk = json.loads((out / "truth.json").read_text())
    assert on_disk["seed"] == SEED and on_disk["n_patients"] == 2
    assert on_disk["schema_version"] == 2
    assert set(on_disk["participants"]) == {"sub-001", "sub-002", "sub-003", "sub-004"}
    focal = on_disk["focal"]["hcp842/cst"]
    assert focal["z_mm"] == sim_effects["focal"]["hcp842/cst"]["z_mm"]
    assert set(focal["hemispheres"]) == {"L", "R"}
    for part in on_disk["participants"].values():
        keys = {(t["atlas"], t["region"], t["hemisphere"]) for t in part["tracts"]}
        assert ("jhu", "cc_splenium", "bilateral") in keys and ("hcp842", "cst", "L") in keys
        assert len(part["gm"]) == 2 and set(part["head"]) == {"rotation_deg",
                                                              "translation_mm", "scale"}
        for t in part["tracts"]:  # realised tract FA change equals the planted target
            if t["disease_fa_change"] or part["group"] == "control":
                assert t["tract_fa_change"] == pytest.approx(t["target_fa_change"], abs=0.01)
            else:  # no effect of its own: a patient's overlap with lesioned tracts only
                assert t["tract_fa_change"] < t["target_fa_change"] + 0.01
            assert {"fa", "md", "ad", "rd", "radial_scale", "source_fa"} <= set(t)
            if t["atlas"] == "hcp842":  # the truth comes from another atlas
                assert t["placement"].split("/")[0] in ("xtract", "hcp1065")
            # resampling onto the participant's grid mixes neighbouring tensors: lower FA
            assert 0.75 < t["fa"] / t["source_fa"] < 1.01, (t["region"], t["hemisphere"])
        for f in part["focal"]:
            assert f["fa_change"] == pytest.approx(f["target_fa_change"], abs=0.01)
        for rel in part["maps"].values():  # the participant's truth weights are written
            assert (out / rel).is_file(), rel
        assert len(part["maps"]) == len(part["tracts"]) + len(part["focal"])
        for g in part["gm"]:
            assert g["volume_change"] == pytest.approx(g["target_volume_change"], abs=0.02)
            # head scale and smooth field: a few per cent of local volume, never more than 15
            assert 0.85 < g["deformation_volume_factor"] < 1.15
            assert g["volume_ratio"] == pytest.approx(
                (1 + g["volume_change"]) * g["deformation_volume_factor"], rel=1e-6)
        if part["group"] == "ALS":
            assert set(part["scores"]) == set(sim_effects["scores"])
            cst = [t for t in part["tracts"] if t["region"] == "cst"]
            assert all(t["fa_change"] < t["tract_fa_change"] < 0 and t["radial_scale"] > 1
                       for t in cst)
            assert all(f["fa_change"] < 0 for f in part["focal"])
    checks = {row["check"] for row in on_disk["sample"]}
    assert checks == {"tract_difference", "control_region", "gm_difference",
                      "score_correlation"}
    assert on_disk["effects"] == sim_effects


def _fit_fa(dwi: np.ndarray, base) -> np.ndarray:
    gtab = gradient_table(base.bvals, bvecs=base.bvecs)
    return TensorModel(gtab).fit(dwi, mask=dwi[..., 0] > 0.2 * np.median(base.s0[base.mask])).fa


def test_planted_fa_reduction_is_measurable_and_deterministic(sim_base, sim_effects):
    plan = next(p for p in cohort.plan_cohort(sim_effects, n_patients=2, n_controls=2,
                                              seed=SEED) if p.group == "ALS")
    unchanged = type(plan)(**{**vars(plan), "tract_changes": {
        k: 0.0 for k in plan.tract_changes}, "disease_changes": {}, "focal_changes": {}})
    tissue = cohort.gm_tissue(sim_base)
    noise_free = {**sim_effects, "snr": None}

    def run(p, effects):
        return cohort.simulate_participant(sim_base, p, effects, seed=SEED,
                                           tissue=tissue)

    sick = run(plan, sim_effects)
    again = run(plan, sim_effects)
    np.testing.assert_array_equal(sick.dwi, again.dwi)
    np.testing.assert_array_equal(sick.t1w, again.t1w)
    fa = {"sick": _fit_fa(sick.dwi, sim_base),
          "healthy": _fit_fa(run(unchanged, sim_effects).dwi, sim_base),
          "sick_clean": _fit_fa(run(plan, noise_free).dwi, sim_base),
          "healthy_clean": _fit_fa(run(unchanged, noise_free).dwi, sim_base)}
    matrix, _, field = cohort.participant_transform(sim_base, plan, sim_effects)
    shape = sim_base.mask.shape
    points = deform.source_points(deform.grid_points(shape, sim_base.dwi_affine),
                                  matrix=matrix, field=field)
    brain = deform.sample(sim_base.mask.astype(np.float32), sim_base.dwi_affine,
                          points).reshape(shape) > 0.5
    for truth in sick.tracts:
        if truth["atlas"] != "hcp842":
            continue
        key = f"hcp842/{truth['region']}/{truth['hemisphere']}"
        w = deform.sample(sim_base.weights[key], sim_base.dwi_affine, points).reshape(shape)
        w = w * brain

        def change(a: str, b: str) -> float:
            return (w * fa[a]).sum() / (w * fa[b]).sum() - 1  # noqa: B023 - used at once

        # the truth is what the participant's noise-free image holds in the carried weights
        assert (w * fa["sick_clean"]).sum() / w.sum() == pytest.approx(truth["fa"], rel=0.02)
        # without noise the dipy fit on the resampled, rotated DWI gives the planted change
        assert change("sick_clean", "healthy_clean") == pytest.approx(
            truth["fa_change"], abs=0.15 * abs(truth["fa_change"])), key
        # with Rician noise the FA noise floor compresses the relative change (not the sign)
        noisy = change("sick", "healthy")
        assert truth["fa_change"] < noisy < 0.3 * truth["fa_change"], key
    # outside the planted tracts the two participants agree (same deformation and noise)
    far = sum(deform.sample(w, sim_base.dwi_affine, points) for k, w in
              sim_base.weights.items() if k.startswith("hcp842")).reshape(shape) < 1e-3
    far &= fa["healthy"] > 0
    assert np.abs(fa["sick"][far] - fa["healthy"][far]).mean() < 0.01


def test_cli_errors(tmp_path):
    assert simulate_main([str(tmp_path / "x"), "--n-patients", "-1"]) == 64
    assert simulate_main([str(tmp_path / "x"), "--effects", str(tmp_path / "no.yaml")]) == 66
    bad = tmp_path / "e.yaml"
    bad.write_text("nope: 1\n")
    assert simulate_main([str(tmp_path / "x"), "--effects", str(bad)]) == 64


def test_refuses_non_empty_output(sim_dataset, sim_base, sim_effects):
    from bids_app.errors import CannotCreateOutput

    out, _ = sim_dataset
    with pytest.raises(CannotCreateOutput):
        simulate_dataset(out, sim_base, sim_effects, n_patients=1, n_controls=1, seed=SEED)


def test_default_source_dir(monkeypatch, tmp_path):
    """$ALSMRI_SHARED wins; else ../shared beside the checkout, else beside the working dir."""
    from bids_app.simulate import dataset

    tail = Path("data") / "bids" / "ds-xa30"
    monkeypatch.setenv("ALSMRI_SHARED", str(tmp_path))
    assert dataset.default_source_dir() == tmp_path / tail
    monkeypatch.delenv("ALSMRI_SHARED")
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    beside = REPO.parent / "shared" / tail
    expected = beside if beside.is_dir() else tmp_path / "shared" / tail
    assert dataset.default_source_dir() == expected


def test_gm_tissue_is_reproducible(sim_base, sim_effects, built_data_dir):
    """The GM map and regions where atrophy is planted are bit-identical across runs (seeded,
    one ITK thread), so a cohort is a function of its seed and the base anatomy."""
    regions = atlas_inputs(sim_effects, data_dir=built_data_dir).gm
    first, second = (single_threaded(cohort.gm_tissue, sim_base, seed=BASE_SEED,
                                     regions=regions) for _ in range(2))
    np.testing.assert_array_equal(first.probability, second.probability)
    assert first.regions.keys() == second.regions.keys() and first.regions
    for key, mask in first.regions.items():
        np.testing.assert_array_equal(mask, second.regions[key])
        assert mask.sum() > 1000  # a real precentral gyrus at 1 mm, not an empty label
