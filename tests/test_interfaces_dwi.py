"""The nipype interfaces: required options, outputs from the declaration, thin adapters."""

from __future__ import annotations

import inspect
import pickle

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nipype.interfaces.base import BaseInterface

from bids_app.bids.outputs import DWI_MODELS, summarised_maps
from bids_app.core.dwi.preproc import dwi_brain_mask
from bids_app.core.dwi.tensor import fit_tensor
from bids_app.interfaces import anat, dwi_atlas, dwi_models, dwi_preproc, dwi_qc
from bids_app.interfaces.dwi_atlas import DwiStats
from bids_app.interfaces.dwi_models import MODEL_FITS, TensorFit
from bids_app.interfaces.dwi_preproc import Denoise, DwiBrainMask

MODULES = (dwi_preproc, dwi_models, dwi_atlas, dwi_qc, anat)
#: Input names that mirror a run setting (or a constant of bids_app.settings).
SETTING_MIRRORS = {"b0_threshold", "seed", "threshold", "method", "fit_method", "res", "atlas",
                   "tract_atlas", "roi_atlas", "enabled", "interpolation", "pe_axis",
                   "polarities", "sdc_method", "sdc_note"}


def _interfaces():
    return [obj for module in MODULES for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, BaseInterface) and obj.__module__ == module.__name__
            and getattr(obj, "input_spec", None) is not None]


def test_every_interface_module_is_covered():
    names = {cls.__name__ for cls in _interfaces()}
    assert {"CheckDwi", "Denoise", "Unring", "MotionCorrect", "CombineRuns", "DwiBrainMask",
            "TensorFit", "RegisterFA", "WarpAtlas", "DwiStats", "DwiQC", "RefineBrainMask",
            "ApplyTransform", "RegisterToTemplate"} <= names
    assert "BrainMask" not in names  # one name per interface: DwiBrainMask / RefineBrainMask


@pytest.mark.parametrize("interface", _interfaces(), ids=lambda c: c.__name__)
def test_setting_mirrors_are_mandatory_without_default(interface):
    """An option the workflow forgets to pass fails loudly instead of using a default."""
    spec = interface.input_spec()
    for name, trait in spec.traits().items():
        if name in SETTING_MIRRORS:
            assert trait.mandatory, f"{interface.__name__}.{name} is not mandatory"
        assert not trait.usedefault, f"{interface.__name__}.{name} has a usable default"


def test_missing_option_fails_loudly(tmp_path):
    img = tmp_path / "dwi.nii.gz"
    nb.save(nb.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), img)
    bval = tmp_path / "dwi.bval"
    bval.write_text("0 1000 1000\n")
    with pytest.raises(ValueError, match="b0_threshold"):
        Denoise(in_file=str(img), in_bval=str(bval), method="none").run(cwd=str(tmp_path))


def test_model_fit_outputs_follow_the_declaration():
    assert set(MODEL_FITS) == set(DWI_MODELS)
    for model, interface in MODEL_FITS.items():
        spec = interface.output_spec()
        assert set(spec.copyable_trait_names()) == ({f"out_{p}" for p in DWI_MODELS[model]}
                                                    | {"out_maps"})
        # nipype pickles node results: the generated class must be importable by name
        assert type(pickle.loads(pickle.dumps(spec))) is interface.output_spec


# --------------------------------------------------------------------------- synthetic run
def _scheme(n=12, seed=3):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.r_[0, 0, np.full(n, 1000.0)], np.vstack([np.zeros((2, 3)), v])


@pytest.fixture(scope="module")
def dwi_files(tmp_path_factory):
    """A 3.5 mm ellipsoid 'brain' (~500 mL) with an anisotropic tensor signal."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import single_tensor

    tmp = tmp_path_factory.mktemp("dwi")
    shape = (40, 40, 30)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    brain = ((z - c[0]) / 16) ** 2 + ((y - c[1]) / 16) ** 2 + ((x - c[2]) / 11) ** 2 <= 1
    bvals, bvecs = _scheme()
    signal = single_tensor(gradient_table(bvals, bvecs=bvecs), S0=1000,
                           evals=np.array([1.7e-3, 0.3e-3, 0.3e-3]), evecs=np.eye(3))
    rng = np.random.default_rng(0)
    data = (brain[..., None] * signal + rng.normal(0, 5, shape + (len(bvals),)) + 10)
    affine = np.diag([3.5, 3.5, 3.5, 1.0])
    paths = {"dwi": tmp / "dwi.nii.gz", "bval": tmp / "dwi.bval", "bvec": tmp / "dwi.bvec"}
    nb.save(nb.Nifti1Image(data.astype(np.float32), affine), paths["dwi"])
    np.savetxt(paths["bval"], bvals[None], fmt="%g")
    np.savetxt(paths["bvec"], bvecs.T, fmt="%.6f")
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def mask_result(dwi_files, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("mask")
    return DwiBrainMask(in_file=dwi_files["dwi"], in_bval=dwi_files["bval"],
                        b0_threshold=50.0).run(cwd=str(cwd)).outputs


def test_dwi_brain_mask_adapts_the_core_function(dwi_files, mask_result):
    img = nb.load(dwi_files["dwi"])
    zooms = img.header.get_zooms()[:3]
    mask, b0 = dwi_brain_mask(img.get_fdata(dtype=np.float32),
                              np.loadtxt(dwi_files["bval"]), b0_threshold=50.0, zooms=zooms,
                              source=dwi_files["dwi"])
    written = nb.load(mask_result.out_mask)
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj) > 0, mask)
    assert np.array_equal(nb.load(mask_result.out_b0).get_fdata(dtype=np.float32), b0)
    assert mask_result.mask_ml == float(mask.sum() * np.prod(zooms) / 1000.0)
    assert 300 < mask_result.mask_ml < 3000


def test_tensor_fit_writes_every_declared_map(dwi_files, mask_result, tmp_path):
    out = TensorFit(in_file=dwi_files["dwi"], in_bval=dwi_files["bval"],
                    in_bvec=dwi_files["bvec"], in_mask=mask_result.out_mask,
                    options={"fit_method": "wls"}, shells=[],
                    b0_threshold=50.0).run(cwd=str(tmp_path)).outputs
    assert tuple(out.out_maps) == summarised_maps("tensor") == ("fa", "md", "ad", "rd")
    expected = fit_tensor(nb.load(dwi_files["dwi"]).get_fdata(dtype=np.float32),
                          np.loadtxt(dwi_files["bval"]), np.loadtxt(dwi_files["bvec"]).T,
                          mask=np.asarray(nb.load(mask_result.out_mask).dataobj) > 0,
                          fit_method="wls", b0_threshold=50.0)
    for param in DWI_MODELS["tensor"]:
        path = getattr(out, f"out_{param}")
        assert np.array_equal(nb.load(path).get_fdata(dtype=np.float32), expected[param])
        if param in out.out_maps:
            assert out.out_maps[param] == path
    assert nb.load(out.out_colfa).shape == (40, 40, 30, 3)
    fa = nb.load(out.out_fa).get_fdata()
    assert fa[20, 20, 15] == pytest.approx(0.8, abs=0.05)


def test_dwi_stats_summarises_the_given_maps_in_order(dwi_files, mask_result, tmp_path):
    shape = (40, 40, 30)
    affine = nb.load(dwi_files["dwi"]).affine
    maps = {}
    for name, value in (("md", 1e-3), ("fa", 0.5)):
        maps[name] = str(tmp_path / f"{name}.nii.gz")
        nb.save(nb.Nifti1Image(np.full(shape, value, np.float32), affine), maps[name])
    prob = np.zeros(shape + (1,), np.float32)
    prob[15:25, 15:25, 10:20, 0] = 1.0
    nb.save(nb.Nifti1Image(prob, affine), tmp_path / "tracts.nii.gz")
    pd.DataFrame({"volume": [0], "region": ["cst"], "hemisphere": ["L"]}).to_csv(
        tmp_path / "tracts.tsv", sep="\t", index=False)
    labels = np.zeros(shape, np.int32)
    labels[15:25, 15:25, 10:20] = 3
    nb.save(nb.Nifti1Image(labels, affine), tmp_path / "labels.nii.gz")
    pd.DataFrame({"index": [3], "region": ["plic"], "hemisphere": ["R"]}).to_csv(
        tmp_path / "labels.tsv", sep="\t", index=False)
    out = DwiStats(in_maps=maps, in_mask=mask_result.out_mask,
                   tract_file=str(tmp_path / "tracts.nii.gz"),
                   tract_index=str(tmp_path / "tracts.tsv"), tract_atlas="hcp842",
                   label_file=str(tmp_path / "labels.nii.gz"),
                   label_table=str(tmp_path / "labels.tsv"), roi_atlas="jhu",
                   threshold=0.25).run(cwd=str(tmp_path)).outputs
    table = pd.read_csv(out.out_file, sep="\t")
    assert table["metric"].tolist() == ["md", "md", "fa", "fa", "md", "fa"]
    assert table["atlas"].tolist() == ["hcp842"] * 4 + ["jhu"] * 2
    assert table.loc[table.metric == "fa", "value"].tolist() == pytest.approx([0.5] * 3)
