"""Thin nipype interfaces of DWI preprocessing: checks, denoising, unringing, motion, runs, mask.

Each loads its inputs, calls one function of :mod:`bids_app.core.dwi` and writes to the node's
working directory. Options that mirror a run setting (``b0_threshold``, ``seed``, ``method``,
``enabled``) are mandatory: the workflow passes them from
:class:`bids_app.settings.DwiSettings`, and the run alignment's (``pe_axis``, ``polarities``,
``sdc_method``, ``sdc_note``) from the unit's :class:`~bids_app.bids.plan.SdcPlan`.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_app.core.dwi import sdc
from bids_app.core.dwi.gradients import check_dwi_array, check_gradients
from bids_app.core.dwi.motion import MOTION_COLUMNS, motion_correct
from bids_app.core.dwi.preproc import (
    DENOISERS,
    denoise,
    dwi_brain_mask,
    mean_b0,
    unring,
)
from bids_app.core.dwi.qc import plot_sdc
from bids_app.interfaces._io import load_nifti, log_warnings, save_gradients, save_nifti

LOGGER = logging.getLogger("nipype.interface")


class _CheckDwiInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw DWI series")
    in_bval = traits.Str(mandatory=True, desc=".bval file (existence checked with a clear error)")
    in_bvec = traits.Str(mandatory=True, desc=".bvec file")
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")


class _CheckDwiOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="float32 DWI, NaN/Inf voxels zeroed")
    out_bval = File(exists=True)
    out_bvec = File(exists=True, desc="normalised b-vectors")
    n_nonfinite = traits.Int()
    warnings = traits.List(traits.Str)


class CheckDwi(SimpleInterface):
    """Gradient and image checks (:mod:`bids_app.core.dwi.gradients`); raise BadDataError."""

    input_spec = _CheckDwiInputSpec
    output_spec = _CheckDwiOutputSpec

    def _run_interface(self, runtime):
        img = nb.load(self.inputs.in_file)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if len(img.shape) != 4:
                check_dwi_array(np.empty(img.shape), dwi_file=self.inputs.in_file)
            grads = check_gradients(self.inputs.in_bval, self.inputs.in_bvec,
                                    n_volumes=img.shape[3], dwi_file=self.inputs.in_file,
                                    b0_threshold=self.inputs.b0_threshold)
            data, n_bad = check_dwi_array(img.get_fdata(dtype=np.float32),
                                          dwi_file=self.inputs.in_file)
        self._results["warnings"] = log_warnings(caught)
        LOGGER.info("%s: shells %s s/mm^2, %d directions, %d b0", self.inputs.in_file,
                    grads.shells, grads.n_directions, int(grads.b0_mask.sum()))
        self._results["out_file"] = save_nifti(data, img, "dwi_checked.nii", runtime)
        self._results["out_bval"], self._results["out_bvec"] = save_gradients(
            grads.bvals, grads.bvecs, runtime, "dwi_checked")
        self._results["n_nonfinite"] = n_bad
        return runtime


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    in_bval = File(exists=True, mandatory=True)
    method = traits.Enum(*DENOISERS, mandatory=True)
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")


class _DenoiseOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_sigma = File(desc="MP-PCA noise SD map (mppca only)")


class Denoise(SimpleInterface):
    """MP-PCA / Patch2Self denoising (:func:`bids_app.core.dwi.preproc.denoise`)."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        out, sigma = denoise(data, method=self.inputs.method,
                             bvals=np.loadtxt(self.inputs.in_bval, ndmin=1),
                             b0_threshold=self.inputs.b0_threshold)
        self._results["out_file"] = save_nifti(out, img, "dwi_denoised.nii", runtime)
        if sigma is not None:
            self._results["out_sigma"] = save_nifti(sigma, img, "noise_sigma.nii", runtime)
        return runtime


class _UnringInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)


class _OutFileSpec(TraitedSpec):
    out_file = File(exists=True)


class Unring(SimpleInterface):
    """Gibbs unringing (:func:`bids_app.core.dwi.preproc.unring`)."""

    input_spec = _UnringInputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        out = unring(data)
        self._results["out_file"] = save_nifti(out, img, "dwi_unringed.nii", runtime)
        return runtime


class _MotionInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    in_bval = File(exists=True, mandatory=True)
    in_bvec = File(exists=True, mandatory=True)
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")
    enabled = traits.Bool(mandatory=True, desc="False: pass through, zero motion")
    seed = traits.Int(mandatory=True, desc="ANTs random-sampling seed")


class _MotionOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_bvec = File(exists=True)
    out_motion = File(exists=True, desc="per-volume motion TSV")
    out_b0 = File(exists=True, desc="mean b0 (reference)")
    out_matrices = File(exists=True, desc="(N, 4, 4) RAS motion matrices (.npy)")


class MotionCorrect(SimpleInterface):
    """Volume-to-mean-b0 realignment (:func:`bids_app.core.dwi.motion.motion_correct`)."""

    input_spec = _MotionInputSpec
    output_spec = _MotionOutputSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        bvals = np.loadtxt(self.inputs.in_bval, ndmin=1)
        bvecs = np.loadtxt(self.inputs.in_bvec, ndmin=2).T
        if self.inputs.enabled:
            res = motion_correct(data, affine=img.affine, bvals=bvals, bvecs=bvecs,
                                 b0_threshold=self.inputs.b0_threshold, seed=self.inputs.seed)
            data, bvecs, params, ref = res.data, res.bvecs, res.params, res.reference
            matrices = np.stack(res.matrices)
        else:
            matrices = np.tile(np.eye(4), (data.shape[3], 1, 1))
            params = pd.DataFrame(np.zeros((data.shape[3], len(MOTION_COLUMNS))),
                                  columns=list(MOTION_COLUMNS))
            ref = mean_b0(data, bvals, b0_threshold=self.inputs.b0_threshold)
        self._results["out_file"] = save_nifti(data, img, "dwi_hmc.nii", runtime)
        _, self._results["out_bvec"] = save_gradients(bvals, bvecs, runtime, "dwi_hmc")
        motion = Path(runtime.cwd) / "motion.tsv"
        params.to_csv(motion, sep="\t", index=False, float_format="%.6f")
        self._results["out_motion"] = str(motion)
        self._results["out_b0"] = save_nifti(ref, img, "mean_b0.nii", runtime)
        np.save(Path(runtime.cwd) / "motion_matrices.npy", matrices)
        self._results["out_matrices"] = str(Path(runtime.cwd) / "motion_matrices.npy")
        return runtime


class _CombineInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="runs before motion correction (resampled once here)")
    in_matrices = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="per-run motion matrices (.npy)")
    in_bvals = InputMultiObject(File(exists=True), mandatory=True)
    in_bvecs = InputMultiObject(File(exists=True), mandatory=True)
    in_b0s = InputMultiObject(File(exists=True), mandatory=True)
    in_motion = InputMultiObject(File(exists=True), mandatory=True)
    pe_dirs = traits.List(traits.Str, mandatory=True, desc="PhaseEncodingDirection per run")
    polarities = traits.List(traits.Int, mandatory=True, desc="PE polarity (+1/-1) per run")
    pe_axis = traits.Either(None, traits.Int, mandatory=True,
                            desc="voxel PE axis of the reverse-PE SDC; None: no SDC")
    sdc_method = traits.Str(mandatory=True, desc="what the plan decided (checked on exit)")
    sdc_note = traits.Str(mandatory=True, desc="the plan's one-line account of it")
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")
    seed = traits.Int(mandatory=True, desc="ANTs random-sampling seed")


class _CombineOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_bval = File(exists=True)
    out_bvec = File(exists=True)
    out_motion = File(exists=True)
    out_report = File(exists=True, desc="JSON: method and b0 correlations")
    out_figure = File(desc="SDC before/after figure (two or more runs)")


class CombineRuns(SimpleInterface):
    """Align runs (rigid + reverse-PE SDC, :mod:`bids_app.core.dwi.sdc`) and concatenate.

    Carries out the unit's :class:`~bids_app.bids.plan.SdcPlan` (``pe_axis``, ``polarities``)
    and fails if the method that ran is not the planned one."""

    input_spec = _CombineInputSpec
    output_spec = _CombineOutputSpec

    def _run_interface(self, runtime):
        loaded = [load_nifti(f) for f in self.inputs.in_files]
        ref = loaded[0][1]
        zooms = ref.header.get_zooms()[:3]
        b0s = [load_nifti(f)[0] for f in self.inputs.in_b0s]
        bvals = [np.loadtxt(f, ndmin=1) for f in self.inputs.in_bvals]
        bvecs = [np.loadtxt(f, ndmin=2).T for f in self.inputs.in_bvecs]
        align = sdc.estimate_run_alignment(
            b0s, affine=ref.affine, polarities=list(self.inputs.polarities),
            pe_axis=self.inputs.pe_axis, out_dir=Path(runtime.cwd) / "xfm",
            seed=self.inputs.seed, zooms=zooms)
        if align.method != self.inputs.sdc_method:
            raise RuntimeError(f"distortion correction ran as {align.method!r} but the plan "
                               f"said {self.inputs.sdc_method!r}")
        data, bval, bvec = sdc.combine_runs(
            [d for d, _ in loaded], bvals, bvecs, affine=ref.affine, alignment=align,
            volume_matrices=[np.load(f) for f in self.inputs.in_matrices],
            b0_threshold=self.inputs.b0_threshold)
        self._results["out_file"] = save_nifti(data, ref, "dwi_preproc.nii.gz", runtime)
        self._results["out_bval"], self._results["out_bvec"] = save_gradients(
            bval, bvec, runtime, "dwi_combined")
        tables = []
        for i, f in enumerate(self.inputs.in_motion):
            table = pd.read_csv(f, sep="\t")
            table.insert(0, "run_index", i + 1)
            tables.append(table)
        motion = Path(runtime.cwd) / "motion.tsv"
        pd.concat(tables, ignore_index=True).to_csv(motion, sep="\t", index=False,
                                                    float_format="%.6f")
        self._results["out_motion"] = str(motion)
        method, note = align.method, self.inputs.sdc_note
        report = {"method": method, "note": note, "pe_dirs": list(self.inputs.pe_dirs),
                  "corr_raw": align.corr_raw, "corr_rigid": align.corr_rigid,
                  "corr_sdc": align.corr_sdc}
        out_report = Path(runtime.cwd) / "sdc.json"
        out_report.write_text(json.dumps(report, indent=2))
        self._results["out_report"] = str(out_report)
        if len(b0s) > 1:
            self._results["out_figure"] = str(plot_sdc(
                align.b0_before, align.b0_after, Path(runtime.cwd) / "sdc.png",
                title=f"{note}; r {align.corr_raw:.3f} -> {align.corr_sdc:.3f}"))
        return runtime


class _DwiMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed DWI series")
    in_bval = File(exists=True, mandatory=True)
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")


class _DwiMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="uint8 brain mask")
    out_b0 = File(exists=True, desc="mean b0")
    mask_ml = traits.Float(desc="mask volume (mL)")


class DwiBrainMask(SimpleInterface):
    """Hole-free median-Otsu mask of the mean b0 and mean DWI
    (:func:`bids_app.core.dwi.preproc.dwi_brain_mask`)."""

    input_spec = _DwiMaskInputSpec
    output_spec = _DwiMaskOutputSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        zooms = img.header.get_zooms()[:3]
        mask, b0 = dwi_brain_mask(data, np.loadtxt(self.inputs.in_bval, ndmin=1),
                                  b0_threshold=self.inputs.b0_threshold, zooms=zooms,
                                  source=self.inputs.in_file)
        self._results["mask_ml"] = float(mask.sum() * np.prod(zooms) / 1000.0)
        self._results["out_mask"] = save_nifti(mask, img, "brain_mask.nii.gz", runtime,
                                               np.uint8)
        self._results["out_b0"] = save_nifti(b0, img, "mean_b0.nii.gz", runtime)
        return runtime
