"""Thin nipype interfaces of the template/atlas steps of the diffusion branch.

FA -> template registration, atlas -> native warping and the tract/ROI table, each a load,
one call to :mod:`bids_app.core.dwi` and a write to the node's working directory.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
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

from bids_app.atlases.api import get_atlas
from bids_app.core.dwi.registration import register_fa_to_template, warp_to_native
from bids_app.core.dwi.roistats import label_stats, tract_stats
from bids_app.interfaces._io import load_mask, load_nifti, read_probseg, save_nifti


class _RegisterInputSpec(BaseInterfaceInputSpec):
    in_fa = File(exists=True, mandatory=True)
    template = File(exists=True, mandatory=True, desc="FA template (MNI152NLin6Asym)")
    seed = traits.Int(mandatory=True, desc="ANTs random-sampling seed")


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
        fa, img = load_nifti(self.inputs.in_fa)
        res = register_fa_to_template(fa, affine=img.affine, template=self.inputs.template,
                                      out_dir=Path(runtime.cwd), seed=self.inputs.seed)
        self._results["out_fwd"] = str(res.forward)
        self._results["out_inv"] = str(res.inverse)
        tpl = nb.load(self.inputs.template)
        self._results["out_warped"] = save_nifti(res.warped_fa, tpl, "fa_template.nii.gz",
                                                 runtime)
        self._results["correlation"] = res.correlation
        return runtime


class _WarpAtlasInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True, desc="native image defining the grid")
    inverse = File(exists=True, mandatory=True, desc="template -> native transform")
    atlas = traits.Str(mandatory=True)
    res = traits.Int(mandatory=True, desc="atlas resolution (mm) warped from")
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
        data_dir = self.inputs.data_dir if isdefined(self.inputs.data_dir) else None
        atlas = get_atlas(self.inputs.atlas, res=self.inputs.res, data_dir=data_dir)
        ref, img = load_nifti(self.inputs.reference)
        index = Path(runtime.cwd) / f"{atlas.name}_index.tsv"
        maps = [warp_to_native(path, reference=ref, reference_affine=img.affine,
                               inverse=self.inputs.inverse, kind=atlas.kind)
                for path in atlas.images.values()]
        if atlas.kind == "probseg":
            out = save_nifti(np.stack(maps, axis=3), img, f"{atlas.name}_probseg.nii.gz",
                             runtime)
            pd.DataFrame([(i, r, h) for i, (r, h) in enumerate(atlas.images)],
                         columns=["volume", "region", "hemisphere"]).to_csv(
                index, sep="\t", index=False)
        else:
            out = save_nifti(maps[0], img, f"{atlas.name}_dseg.nii.gz", runtime, np.int32)
            atlas.labels.to_csv(index, sep="\t", index=False)
        self._results.update(out_file=out, out_index=str(index), kind=atlas.kind)
        return runtime


class _StatsInputSpec(BaseInterfaceInputSpec):
    in_maps = traits.Dict(traits.Str, File(exists=True), mandatory=True,
                          desc="{metric: native map}, summarised in this order")
    in_mask = File(exists=True, mandatory=True)
    tract_file = File(exists=True, mandatory=True)
    tract_index = File(exists=True, mandatory=True)
    tract_atlas = traits.Str(mandatory=True)
    label_file = File(exists=True, mandatory=True)
    label_table = File(exists=True, mandatory=True)
    roi_atlas = traits.Str(mandatory=True)
    threshold = traits.Float(mandatory=True, desc="tract probability threshold of 'mean'")
    extra_stats = File(exists=True, desc="rows of the same columns appended (bundle means)")


class _StatsOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class DwiStats(SimpleInterface):
    """Long-format tract/ROI table of the given maps (:mod:`bids_app.core.dwi.roistats`)."""

    input_spec = _StatsInputSpec
    output_spec = _StatsOutputSpec

    def _run_interface(self, runtime):
        metrics = {m: load_nifti(path)[0] for m, path in self.inputs.in_maps.items()}
        mask = load_mask(self.inputs.in_mask)
        tracts = tract_stats(metrics, read_probseg(self.inputs.tract_file,
                                                   self.inputs.tract_index),
                             mask=mask, threshold=self.inputs.threshold,
                             atlas=self.inputs.tract_atlas)
        labels = np.asarray(nb.load(self.inputs.label_file).dataobj).astype(np.int32)
        table = pd.read_csv(self.inputs.label_table, sep="\t", keep_default_na=False)
        rois = label_stats(metrics, labels, table, mask=mask, atlas=self.inputs.roi_atlas)
        parts = [tracts, rois]
        if isdefined(self.inputs.extra_stats):
            parts.append(pd.read_csv(self.inputs.extra_stats, sep="\t", na_values="n/a",
                                     keep_default_na=False))
        out = Path(runtime.cwd) / "dwistats.tsv"
        pd.concat(parts, ignore_index=True).to_csv(out, sep="\t", index=False,
                                                   na_rep="n/a", float_format="%.6g")
        self._results["out_file"] = str(out)
        return runtime
