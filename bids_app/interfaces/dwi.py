"""Thin nipype interfaces of the diffusion branch: load, call bids_app.core.dwi, write to cwd."""

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
    isdefined,
    traits,
)

LOGGER = logging.getLogger("nipype.interface")


def _load(path: str) -> tuple[np.ndarray, nb.Nifti1Image]:
    img = nb.load(path)
    return np.asarray(img.get_fdata(dtype=np.float32)), img


def _save(data: np.ndarray, ref: nb.Nifti1Image, name: str, runtime, dtype=np.float32) -> str:
    hdr = ref.header.copy()
    hdr.set_data_dtype(dtype)
    hdr.set_xyzt_units("mm", "sec")
    out = Path(runtime.cwd) / name
    nb.save(nb.Nifti1Image(np.asarray(data, dtype=dtype), ref.affine, hdr), out)
    return str(out)


def _save_grad(bvals, bvecs, runtime, stem: str) -> tuple[str, str]:
    bval = Path(runtime.cwd) / f"{stem}.bval"
    bvec = Path(runtime.cwd) / f"{stem}.bvec"
    np.savetxt(bval, np.asarray(bvals)[None], fmt="%g")
    np.savetxt(bvec, np.asarray(bvecs).T, fmt="%.6f")
    return str(bval), str(bvec)


def _log_warnings(caught) -> list[str]:
    msgs = [str(w.message) for w in caught]
    for msg in msgs:
        LOGGER.warning(msg)
    return msgs


class _CheckDwiInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw DWI series")
    in_bval = traits.Str(mandatory=True, desc=".bval file (existence checked with a clear error)")
    in_bvec = traits.Str(mandatory=True, desc=".bvec file")
    b0_threshold = traits.Float(50.0, usedefault=True)


class _CheckDwiOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="float32 DWI, NaN/Inf voxels zeroed")
    out_bval = File(exists=True)
    out_bvec = File(exists=True, desc="normalised b-vectors")
    shells = traits.List(traits.Float)
    n_nonfinite = traits.Int()
    warnings = traits.List(traits.Str)


class CheckDwi(SimpleInterface):
    """Gradient and image checks (:mod:`bids_app.core.dwi.gradients`); raise BadDataError."""

    input_spec = _CheckDwiInputSpec
    output_spec = _CheckDwiOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.gradients import check_dwi_array, check_gradients

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
        self._results["warnings"] = _log_warnings(caught)
        LOGGER.info("%s: shells %s s/mm^2, %d directions, %d b0", self.inputs.in_file,
                    grads.shells, grads.n_directions, int(grads.b0_mask.sum()))
        self._results["out_file"] = _save(data, img, "dwi_checked.nii", runtime)
        self._results["out_bval"], self._results["out_bvec"] = _save_grad(
            grads.bvals, grads.bvecs, runtime, "dwi_checked")
        self._results["shells"] = list(grads.shells)
        self._results["n_nonfinite"] = n_bad
        return runtime


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    in_bval = File(exists=True, mandatory=True)
    method = traits.Enum("mppca", "patch2self", "none", usedefault=True)
    b0_threshold = traits.Float(50.0, usedefault=True)


class _DenoiseOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_sigma = File(desc="MP-PCA noise SD map (mppca only)")


class Denoise(SimpleInterface):
    """MP-PCA / Patch2Self denoising (:func:`bids_app.core.dwi.preproc.denoise`)."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.preproc import denoise

        data, img = _load(self.inputs.in_file)
        out, sigma = denoise(data, method=self.inputs.method,
                             bvals=np.loadtxt(self.inputs.in_bval, ndmin=1),
                             b0_threshold=self.inputs.b0_threshold)
        self._results["out_file"] = _save(out, img, "dwi_denoised.nii", runtime)
        if sigma is not None:
            self._results["out_sigma"] = _save(sigma, img, "noise_sigma.nii", runtime)
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
        from bids_app.core.dwi.preproc import unring

        data, img = _load(self.inputs.in_file)
        out = unring(data)
        self._results["out_file"] = _save(out, img, "dwi_unringed.nii", runtime)
        return runtime


class _MotionInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    in_bval = File(exists=True, mandatory=True)
    in_bvec = File(exists=True, mandatory=True)
    b0_threshold = traits.Float(50.0, usedefault=True)
    enabled = traits.Bool(True, usedefault=True, desc="False: pass through, zero motion")
    seed = traits.Int(20261122, usedefault=True)


class _MotionOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_bvec = File(exists=True)
    out_motion = File(exists=True, desc="per-volume motion TSV")
    out_b0 = File(exists=True, desc="mean b0 (reference)")
    out_matrices = File(exists=True, desc="(N, 4, 4) RAS motion matrices (.npy)")


class MotionCorrect(SimpleInterface):
    """Volume-to-mean-b0 realignment (:func:`bids_app.core.dwi.preproc.motion_correct`)."""

    input_spec = _MotionInputSpec
    output_spec = _MotionOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.preproc import (
            MOTION_COLUMNS,
            mean_b0,
            motion_correct,
        )

        data, img = _load(self.inputs.in_file)
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
        self._results["out_file"] = _save(data, img, "dwi_hmc.nii", runtime)
        _, self._results["out_bvec"] = _save_grad(bvals, bvecs, runtime, "dwi_hmc")
        motion = Path(runtime.cwd) / "motion.tsv"
        params.to_csv(motion, sep="\t", index=False, float_format="%.6f")
        self._results["out_motion"] = str(motion)
        self._results["out_b0"] = _save(ref, img, "mean_b0.nii", runtime)
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
    sdc = traits.Bool(True, usedefault=True, desc="estimate reverse-PE SDC when applicable")
    b0_threshold = traits.Float(50.0, usedefault=True)
    seed = traits.Int(20261122, usedefault=True)


class _CombineOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_bval = File(exists=True)
    out_bvec = File(exists=True)
    out_motion = File(exists=True)
    out_report = File(exists=True, desc="JSON: method and b0 correlations")
    out_figure = File(desc="SDC before/after figure (two or more runs)")


class CombineRuns(SimpleInterface):
    """Align runs (rigid + reverse-PE SDC, :mod:`bids_app.core.dwi.sdc`) and concatenate."""

    input_spec = _CombineInputSpec
    output_spec = _CombineOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi import sdc
        from bids_app.core.dwi.qc import plot_sdc

        loaded = [_load(f) for f in self.inputs.in_files]
        ref = loaded[0][1]
        zooms = ref.header.get_zooms()[:3]
        b0s = [_load(f)[0] for f in self.inputs.in_b0s]
        bvals = [np.loadtxt(f, ndmin=1) for f in self.inputs.in_bvals]
        bvecs = [np.loadtxt(f, ndmin=2).T for f in self.inputs.in_bvecs]
        align = sdc.estimate_run_alignment(
            b0s, affine=ref.affine, pe_dirs=list(self.inputs.pe_dirs), sdc=self.inputs.sdc,
            out_dir=Path(runtime.cwd) / "xfm", seed=self.inputs.seed, zooms=zooms)
        data, bval, bvec = sdc.combine_runs(
            [d for d, _ in loaded], bvals, bvecs, affine=ref.affine, alignment=align,
            volume_matrices=[np.load(f) for f in self.inputs.in_matrices],
            b0_threshold=self.inputs.b0_threshold)
        self._results["out_file"] = _save(data, ref, "dwi_preproc.nii.gz", runtime)
        self._results["out_bval"], self._results["out_bvec"] = _save_grad(
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
        method = align.method
        if method == "rigid" and len(b0s) > 1:
            note = ("no susceptibility distortion correction: "
                    + ("disabled (--sdc none)" if not self.inputs.sdc
                       else "runs do not have opposite phase-encoding directions"))
        elif method == "none":
            note = "single run with one phase-encoding direction: no distortion correction"
        else:
            note = "reverse phase-encoding SyN (PE axis only) to the midway space"
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


class _MaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    in_bval = File(exists=True, mandatory=True)
    b0_threshold = traits.Float(50.0, usedefault=True)


class _MaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True)
    out_b0 = File(exists=True)
    mask_ml = traits.Float()


class BrainMask(SimpleInterface):
    """Hole-free median-Otsu mask of the mean b0 and mean DWI
    (:func:`bids_app.core.dwi.preproc.brain_mask`)."""

    input_spec = _MaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.preproc import brain_mask, mean_b0

        data, img = _load(self.inputs.in_file)
        bvals = np.loadtxt(self.inputs.in_bval, ndmin=1)
        b0 = mean_b0(data, bvals, b0_threshold=self.inputs.b0_threshold)
        weighted = bvals >= self.inputs.b0_threshold
        dwi_mean = (np.asarray(data[..., weighted], dtype=np.float32).mean(axis=3)
                    if weighted.any() else None)
        zooms = img.header.get_zooms()[:3]
        mask = brain_mask(b0, zooms=zooms, dwi_mean=dwi_mean, source=self.inputs.in_file)
        self._results["mask_ml"] = float(mask.sum() * np.prod(zooms) / 1000.0)
        self._results["out_mask"] = _save(mask, img, "brain_mask.nii.gz", runtime, np.uint8)
        self._results["out_b0"] = _save(b0, img, "mean_b0.nii.gz", runtime)
        return runtime


class _TensorInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    in_bval = File(exists=True, mandatory=True)
    in_bvec = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True)
    fit_method = traits.Enum("wls", "ols", "nlls", "restore", usedefault=True)
    b0_threshold = traits.Float(50.0, usedefault=True)


class _TensorOutputSpec(TraitedSpec):
    out_fa = File(exists=True)
    out_md = File(exists=True)
    out_ad = File(exists=True)
    out_rd = File(exists=True)
    out_colfa = File(exists=True)


class TensorFit(SimpleInterface):
    """dipy tensor fit -> FA/MD/AD/RD/colour FA (:func:`bids_app.core.dwi.tensor.fit_tensor`)."""

    input_spec = _TensorInputSpec
    output_spec = _TensorOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.tensor import fit_tensor

        data, img = _load(self.inputs.in_file)
        mask = np.asarray(nb.load(self.inputs.in_mask).dataobj) > 0
        maps = fit_tensor(data, np.loadtxt(self.inputs.in_bval, ndmin=1),
                          np.loadtxt(self.inputs.in_bvec, ndmin=2).T, mask=mask,
                          fit_method=self.inputs.fit_method,
                          b0_threshold=self.inputs.b0_threshold)
        ref = nb.Nifti1Image(np.zeros(img.shape[:3], np.float32), img.affine, img.header)
        for name, arr in maps.items():
            self._results[f"out_{name}"] = _save(arr, ref, f"{name}.nii.gz", runtime)
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    in_fa = File(exists=True, mandatory=True)
    template = File(exists=True, mandatory=True, desc="FA template (MNI152NLin6Asym)")
    seed = traits.Int(20261122, usedefault=True)


class _RegisterOutputSpec(TraitedSpec):
    out_fwd = File(exists=True, desc="dwi -> template composite transform (.h5)")
    out_inv = File(exists=True, desc="template -> dwi composite transform (.h5)")
    out_warped = File(exists=True, desc="FA on the template grid")
    correlation = traits.Float()


class RegisterFA(SimpleInterface):
    """FA -> template (:func:`bids_app.core.dwi.registration.register_fa_to_template`)."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.registration import register_fa_to_template

        fa, img = _load(self.inputs.in_fa)
        res = register_fa_to_template(fa, affine=img.affine, template=self.inputs.template,
                                      out_dir=Path(runtime.cwd), seed=self.inputs.seed)
        self._results["out_fwd"] = str(res.forward)
        self._results["out_inv"] = str(res.inverse)
        tpl = nb.load(self.inputs.template)
        self._results["out_warped"] = _save(res.warped_fa, tpl, "fa_template.nii.gz", runtime)
        self._results["correlation"] = res.correlation
        return runtime


class _WarpAtlasInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True, desc="native image defining the grid")
    inverse = File(exists=True, mandatory=True, desc="template -> native transform")
    atlas = traits.Str(mandatory=True)
    res = traits.Int(2, usedefault=True)
    data_dir = traits.Str(desc="built atlas directory (default: $ALSMRI_DATA)")


class _WarpAtlasOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="4D probability stack (probseg) or 3D labels (dseg)")
    out_index = File(exists=True, desc="TSV: volume/region/hemisphere, or the label table")
    kind = traits.Str()


class WarpAtlas(SimpleInterface):
    """Atlas to native space (:func:`bids_app.core.dwi.registration.warp_to_native`)."""

    input_spec = _WarpAtlasInputSpec
    output_spec = _WarpAtlasOutputSpec

    def _run_interface(self, runtime):
        from bids_app.atlases.api import get_atlas
        from bids_app.core.dwi.registration import warp_to_native

        data_dir = self.inputs.data_dir if isdefined(self.inputs.data_dir) else None
        atlas = get_atlas(self.inputs.atlas, res=self.inputs.res, data_dir=data_dir)
        ref, img = _load(self.inputs.reference)
        index = Path(runtime.cwd) / f"{atlas.name}_index.tsv"
        maps = [warp_to_native(path, reference=ref, reference_affine=img.affine,
                               inverse=self.inputs.inverse, kind=atlas.kind)
                for path in atlas.images.values()]
        if atlas.kind == "probseg":
            out = _save(np.stack(maps, axis=3), img, f"{atlas.name}_probseg.nii.gz", runtime)
            pd.DataFrame([(i, r, h) for i, (r, h) in enumerate(atlas.images)],
                         columns=["volume", "region", "hemisphere"]).to_csv(
                index, sep="\t", index=False)
        else:
            out = _save(maps[0], img, f"{atlas.name}_dseg.nii.gz", runtime, np.int32)
            atlas.labels.to_csv(index, sep="\t", index=False)
        self._results.update(out_file=out, out_index=str(index), kind=atlas.kind)
        return runtime


def _read_probseg(stack: str, index: str) -> dict[tuple[str, str], np.ndarray]:
    data = np.asarray(nb.load(stack).get_fdata(dtype=np.float32))
    table = pd.read_csv(index, sep="\t", keep_default_na=False)
    return {(r.region, r.hemisphere): data[..., int(r.volume)] for r in table.itertuples()}


class _StatsInputSpec(BaseInterfaceInputSpec):
    in_fa = File(exists=True, mandatory=True)
    in_md = File(exists=True, mandatory=True)
    in_ad = File(exists=True, mandatory=True)
    in_rd = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True)
    tract_file = File(exists=True, mandatory=True)
    tract_index = File(exists=True, mandatory=True)
    tract_atlas = traits.Str("hcp842", usedefault=True)
    label_file = File(exists=True, mandatory=True)
    label_table = File(exists=True, mandatory=True)
    roi_atlas = traits.Str("jhu", usedefault=True)
    threshold = traits.Float(0.25, usedefault=True)


class DwiStats(SimpleInterface):
    """Long-format tract/ROI table (:mod:`bids_app.core.dwi.roistats`)."""

    input_spec = _StatsInputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi.roistats import label_stats, tract_stats

        metrics = {m: _load(getattr(self.inputs, f"in_{m}"))[0] for m in ("fa", "md", "ad", "rd")}
        mask = np.asarray(nb.load(self.inputs.in_mask).dataobj) > 0
        tracts = tract_stats(metrics, _read_probseg(self.inputs.tract_file,
                                                    self.inputs.tract_index),
                             mask=mask, threshold=self.inputs.threshold,
                             atlas=self.inputs.tract_atlas)
        labels = np.asarray(nb.load(self.inputs.label_file).dataobj).astype(np.int32)
        table = pd.read_csv(self.inputs.label_table, sep="\t", keep_default_na=False)
        rois = label_stats(metrics, labels, table, mask=mask, atlas=self.inputs.roi_atlas)
        out = Path(runtime.cwd) / "dwistats.tsv"
        pd.concat([tracts, rois], ignore_index=True).to_csv(out, sep="\t", index=False,
                                                            na_rep="n/a", float_format="%.6g")
        self._results["out_file"] = str(out)
        return runtime


class _QCInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed DWI")
    in_bval = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True)
    in_b0 = File(exists=True, mandatory=True)
    in_motion = File(exists=True, mandatory=True)
    in_sigma = traits.Either(None, File(exists=True), usedefault=True)
    in_fa = File(exists=True, mandatory=True)
    tract_file = File(exists=True, mandatory=True)
    tract_index = File(exists=True, mandatory=True)
    warped_fa = File(exists=True, mandatory=True)
    template = File(exists=True, mandatory=True)
    reg_corr = traits.Float(mandatory=True)
    sdc_report = File(exists=True, mandatory=True)
    shells = traits.List(traits.Float, mandatory=True)
    threshold = traits.Float(0.25, usedefault=True)
    b0_threshold = traits.Float(50.0, usedefault=True)


class _QCOutputSpec(TraitedSpec):
    out_tsv = File(exists=True)
    out_tracts = File(exists=True)
    out_reg = File(exists=True)
    out_motion = File(exists=True)


class DwiQC(SimpleInterface):
    """QC numbers and figures (:mod:`bids_app.core.dwi.qc`)."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        from bids_app.core.dwi import qc

        cwd = Path(runtime.cwd)
        data, img = _load(self.inputs.in_file)
        bvals = np.loadtxt(self.inputs.in_bval, ndmin=1)
        mask = np.asarray(nb.load(self.inputs.in_mask).dataobj) > 0
        b0 = _load(self.inputs.in_b0)[0]
        sigma = _load(self.inputs.in_sigma)[0] if self.inputs.in_sigma else None
        motion = pd.read_csv(self.inputs.in_motion, sep="\t")
        fd = motion["framewise_displacement"].to_numpy()
        outliers = qc.outlier_volumes(data, bvals, mask, fd,
                                      b0_threshold=self.inputs.b0_threshold)
        sdc_report = json.loads(Path(self.inputs.sdc_report).read_text())
        table = qc.qc_table(snr=qc.b0_snr(b0, mask, sigma), motion=motion, outliers=outliers,
                            shells=self.inputs.shells, n_volumes=data.shape[3],
                            sdc=sdc_report, reg_corr=self.inputs.reg_corr,
                            mask_ml=float(mask.sum() * np.prod(img.header.get_zooms()[:3])
                                          / 1000.0))
        table["sdc_note"] = sdc_report.get("note", "")
        out_tsv = cwd / "qc.tsv"
        table.to_csv(out_tsv, sep="\t", index=False, na_rep="n/a")
        fa = _load(self.inputs.in_fa)[0]
        probs = _read_probseg(self.inputs.tract_file, self.inputs.tract_index)
        self._results["out_tsv"] = str(out_tsv)
        self._results["out_tracts"] = str(qc.plot_tracts(
            fa, probs, cwd / "tracts.png", threshold=self.inputs.threshold))
        self._results["out_reg"] = str(qc.plot_registration(
            _load(self.inputs.warped_fa)[0], _load(self.inputs.template)[0], cwd / "reg.png"))
        self._results["out_motion"] = str(qc.plot_motion(motion, cwd / "motion.svg"))
        return runtime
