"""Thin nipype interfaces of the anatomical branch: load, call one core function, write."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_app.core.anat import io, preproc, qc, registration, segmentation, volumes
from bids_app.interfaces._io import out_path

LOGGER = logging.getLogger("nipype.interface")


class _T1wPreprocInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw T1w")


class _T1wPreprocOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="RAS+ bias-corrected T1w")
    head_mask = File(exists=True, desc="head foreground mask used by N4")


class T1wPreproc(SimpleInterface):
    """Check the T1w (3D, readable), reorient to RAS+ and N4-correct it."""

    input_spec = _T1wPreprocInputSpec
    output_spec = _T1wPreprocOutputSpec

    def _run_interface(self, runtime):
        img = io.load_t1w(self.inputs.in_file)
        warning = io.anisotropy_warning(img, name=str(self.inputs.in_file))
        if warning:
            LOGGER.warning(warning)
        ras = io.reorient_ras(img)
        ras = nib.Nifti1Image(np.asarray(ras.dataobj, dtype=np.float32), ras.affine)
        ras_file = out_path(runtime, "t1w_ras.nii.gz")
        nib.save(ras, ras_file)
        image = ants.image_read(ras_file)
        head = preproc.head_mask(image)
        corrected = preproc.n4_correct(image, mask=head)
        self._results["out_file"] = out_path(runtime, "t1w_preproc.nii.gz")
        self._results["head_mask"] = out_path(runtime, "head_mask.nii.gz")
        ants.image_write(corrected, self._results["out_file"])
        ants.image_write(head, self._results["head_mask"])
        return runtime


class _BrainBiasInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w (head N4)")
    mask = File(exists=True, mandatory=True, desc="brain mask")


class _BrainBiasOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="T1w with the residual bias inside the brain removed")


class BrainBiasCorrect(SimpleInterface):
    """A second N4 pass fitted inside the brain mask only (the input of the segmentation).

    The first pass fits the whole head (scalp and fat included); the bias it leaves inside
    the brain decided whether the interior of the thalamus and striatum was labelled GM or WM:
    over four simulated re-scans of ds-xa30 the deep-GM volumes varied by 10-18 % (CV) with
    one pass and by 3.5-7.6 % with this one (``benchmarks/anat_rescan.py``).
    """

    input_spec = _BrainBiasInputSpec
    output_spec = _BrainBiasOutputSpec

    def _run_interface(self, runtime):
        corrected = preproc.n4_correct(ants.image_read(self.inputs.in_file),
                                       mask=ants.image_read(self.inputs.mask))
        self._results["out_file"] = out_path(runtime, "t1w_brain_n4.nii.gz")
        ants.image_write(corrected, self._results["out_file"])
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    moving = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    template = File(exists=True, mandatory=True, desc="template T1w")
    seed = traits.Int(mandatory=True, desc="random seed")


class _RegisterOutputSpec(TraitedSpec):
    forward_xfm = File(exists=True, desc="T1w -> template composite transform (.h5)")
    inverse_xfm = File(exists=True, desc="template -> T1w composite transform (.h5)")
    warped = File(exists=True, desc="T1w resampled in template space")


class RegisterToTemplate(SimpleInterface):
    """Affine + SyN registration of the T1w to the template."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        reg = registration.register_to_template(
            ants.image_read(self.inputs.moving), ants.image_read(self.inputs.template),
            outprefix=out_path(runtime, "t1w2tpl_"), seed=self.inputs.seed)
        self._results["forward_xfm"] = str(reg.forward)
        self._results["inverse_xfm"] = str(reg.inverse)
        self._results["warped"] = out_path(runtime, "t1w_space-template.nii.gz")
        ants.image_write(reg.warped, self._results["warped"])
        return runtime


class _ApplyTransformInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to resample")
    reference = File(exists=True, mandatory=True, desc="target grid")
    transform = File(exists=True, mandatory=True, desc="composite transform (.h5)")
    interpolation = traits.Enum("linear", "nearestNeighbor", mandatory=True,
                                desc="nearestNeighbor for labels")


class _ApplyTransformOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ApplyTransform(SimpleInterface):
    """Resample an image through a composite transform (labels: nearest neighbour)."""

    input_spec = _ApplyTransformInputSpec
    output_spec = _ApplyTransformOutputSpec

    def _run_interface(self, runtime):
        out = registration.warp_image(
            ants.image_read(self.inputs.in_file), ants.image_read(self.inputs.reference),
            self.inputs.transform, interpolator=self.inputs.interpolation)
        if self.inputs.interpolation == "nearestNeighbor":
            out = out.new_image_like(np.rint(out.numpy()).astype(np.float32))
        self._results["out_file"] = out_path(runtime, Path(self.inputs.in_file).name.split(".")[0]
                                         + "_resampled.nii.gz")
        ants.image_write(out, self._results["out_file"])
        if self.inputs.interpolation == "nearestNeighbor":
            img = nib.load(self._results["out_file"])
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine),
                     self._results["out_file"])
        return runtime


class _RefineBrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    prior = File(exists=True, mandatory=True, desc="template brain mask in T1w space")


class RefineBrainMask(SimpleInterface):
    """Refine the template brain mask (in T1w space) on the image
    (:func:`bids_app.core.anat.preproc.refine_brain_mask`)."""

    input_spec = _RefineBrainMaskInputSpec
    output_spec = _ApplyTransformOutputSpec

    def _run_interface(self, runtime):
        mask = preproc.refine_brain_mask(ants.image_read(self.inputs.in_file),
                                         ants.image_read(self.inputs.prior))
        self._results["out_file"] = out_path(runtime, "brain_mask.nii.gz")
        _write_uint8(mask, self._results["out_file"])
        return runtime


class _SegmentInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    mask = File(exists=True, mandatory=True, desc="brain mask")
    priors = traits.List(File(exists=True), minlen=3, maxlen=3,
                         desc="GM, WM, CSF prior probability maps in T1w space")


class _SegmentOutputSpec(TraitedSpec):
    gm = File(exists=True)
    wm = File(exists=True)
    csf = File(exists=True)
    dseg = File(exists=True)


class TissueSegmentation(SimpleInterface):
    """Atropos GM/WM/CSF posteriors (with template priors when given) and the discrete
    segmentation."""

    input_spec = _SegmentInputSpec
    output_spec = _SegmentOutputSpec

    def _run_interface(self, runtime):
        priors = None
        if isdefined(self.inputs.priors):
            priors = {t: ants.image_read(f) for t, f in zip(segmentation.TISSUES,
                                                            self.inputs.priors, strict=True)}
        seg = segmentation.segment_tissues(ants.image_read(self.inputs.in_file),
                                           ants.image_read(self.inputs.mask), priors=priors)
        for tissue, img in seg.probseg.items():
            key = tissue.lower()
            self._results[key] = out_path(runtime, f"probseg_{tissue}.nii.gz")
            ants.image_write(img, self._results[key])
        self._results["dseg"] = out_path(runtime, "dseg.nii.gz")
        _write_uint8(seg.dseg, self._results["dseg"])
        return runtime


class _GMVolumesInputSpec(BaseInterfaceInputSpec):
    gm = File(exists=True, mandatory=True)
    wm = File(exists=True, mandatory=True)
    csf = File(exists=True, mandatory=True)
    labels = File(exists=True, mandatory=True, desc="atlas labels in T1w space")
    brain_mask = File(exists=True, mandatory=True)
    label_table = traits.List(traits.Dict, mandatory=True,
                              desc="atlas label records (index, hemisphere, region)")
    groups = traits.Dict(traits.Str, traits.List(traits.Str), desc="region groups")
    atlas = traits.Str(mandatory=True)


class _GMVolumesOutputSpec(TraitedSpec):
    out_tsv = File(exists=True)
    tissue_json = File(exists=True, desc="tissue volumes (mm^3)")


class GMVolumes(SimpleInterface):
    """GM volume per region/hemisphere, TIV and % TIV as a long-format TSV."""

    input_spec = _GMVolumesInputSpec
    output_spec = _GMVolumesOutputSpec

    def _run_interface(self, runtime):
        gm_img = nib.load(self.inputs.gm)
        vox = float(np.prod(gm_img.header.get_zooms()[:3]))
        probs = {t: nib.load(getattr(self.inputs, t.lower())).get_fdata(dtype=np.float32)
                 for t in segmentation.TISSUES}
        tissue = volumes.tissue_volumes(probs, voxel_volume=vox)
        table = volumes.gm_volumes(
            probs["GM"], np.asarray(nib.load(self.inputs.labels).dataobj),
            label_table=pd.DataFrame(self.inputs.label_table), voxel_volume=vox,
            tiv=tissue["TIV"], atlas=self.inputs.atlas,
            groups=self.inputs.groups if isdefined(self.inputs.groups) else None,
            brain_mask=np.asarray(nib.load(self.inputs.brain_mask).dataobj) > 0)
        self._results["out_tsv"] = out_path(runtime, "gmvolume.tsv")
        table.to_csv(self._results["out_tsv"], sep="\t", index=False, float_format="%.6g")
        self._results["tissue_json"] = out_path(runtime, "tissue.json")
        Path(self._results["tissue_json"]).write_text(json.dumps(tissue, indent=2))
        return runtime


class _AnatQCInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    brain_mask = File(exists=True, mandatory=True)
    dseg = File(exists=True, mandatory=True)
    tissue_json = File(exists=True, mandatory=True)
    warped = File(exists=True, mandatory=True, desc="T1w in template space")
    template = File(exists=True, mandatory=True)
    template_mask = File(exists=True, mandatory=True)


class _AnatQCOutputSpec(TraitedSpec):
    out_tsv = File(exists=True)
    seg_figure = File(exists=True)
    reg_figure = File(exists=True)


class AnatQC(SimpleInterface):
    """QC numbers (one-row TSV) and the segmentation/registration figures (SVG)."""

    input_spec = _AnatQCInputSpec
    output_spec = _AnatQCOutputSpec

    def _run_interface(self, runtime):
        mask_img = nib.load(self.inputs.brain_mask)
        vox = float(np.prod(mask_img.header.get_zooms()[:3]))
        warped = ants.image_read(self.inputs.warped)
        tpl = ants.image_read(self.inputs.template)
        tpl_mask = ants.image_read(self.inputs.template_mask)
        metrics = qc.qc_metrics(
            brain_mask=np.asarray(mask_img.dataobj) > 0,
            tissue=json.loads(Path(self.inputs.tissue_json).read_text()), voxel_volume=vox,
            registration_similarity=registration.similarity(warped, tpl, tpl_mask))
        self._results["out_tsv"] = out_path(runtime, "qc.tsv")
        pd.DataFrame([metrics]).to_csv(self._results["out_tsv"], sep="\t", index=False,
                                       float_format="%.6g")
        self._results["seg_figure"] = str(qc.plot_segmentation(
            nib.load(self.inputs.t1w).get_fdata(dtype=np.float32),
            np.asarray(nib.load(self.inputs.dseg).dataobj), out_path(runtime, "dseg.svg")))
        self._results["reg_figure"] = str(qc.plot_registration(
            nib.load(self.inputs.warped).get_fdata(dtype=np.float32),
            nib.load(self.inputs.template).get_fdata(dtype=np.float32),
            np.asarray(nib.load(self.inputs.template_mask).dataobj),
            out_path(runtime, "reg.svg")))
        return runtime


def _write_uint8(image: ants.ANTsImage, path: str) -> None:
    ants.image_write(image, path)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.uint8), img.affine), path)
