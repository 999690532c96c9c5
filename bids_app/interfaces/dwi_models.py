"""Diffusion model fits as nipype interfaces; their outputs follow the output declaration.

The output spec of a model fit is generated from
:data:`bids_app.bids.outputs.DWI_MODELS` when this module is imported: one
``out_<param>`` file per declared parameter map (for the ``ds_*`` sinks and the outputnode,
e.g. ``out_fa`` for the registration) and ``out_maps``, the maps that enter the tract/ROI
table (:func:`bids_app.bids.outputs.summarised_maps`) as ``{param: file}`` in declaration
order, which :class:`bids_app.interfaces.dwi_atlas.DwiStats` takes as is. A new parameter map
is therefore the core function returning it plus one ``DWI_MODELS`` entry; the fit fails
loudly when the two disagree.
"""

from __future__ import annotations

import nibabel as nb
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_app.bids.outputs import DWI_MODELS, summarised_maps
from bids_app.core.dwi.tensor import FIT_METHODS, fit_tensor
from bids_app.interfaces._io import load_mask, load_nifti, save_nifti


def model_output_spec(model: str) -> type[TraitedSpec]:
    """Output spec of a fit of ``model``: ``out_<param>`` per declared map, and ``out_maps``.

    The class is named ``_<Model>OutputSpec`` in this module; bind it to that module-level
    name (nipype pickles the node results, which must find the class by name).
    """
    name = f"_{model.capitalize()}OutputSpec"
    spec = {f"out_{param}": File(exists=True, desc=f"{m.description} ({m.units})")
            for param, m in DWI_MODELS[model].items()}
    spec["out_maps"] = traits.Dict(
        traits.Str, File(exists=True),
        desc=f"maps summarised in the tract/ROI table, in order: {summarised_maps(model)}")
    spec.update(__module__=__name__, __qualname__=name)
    return type(name, (TraitedSpec,), spec)


class _ModelFit(SimpleInterface):
    """Writes the maps of :attr:`model` returned by a core fit as declared in DWI_MODELS."""

    model: str

    def _write_maps(self, maps: dict[str, np.ndarray], ref: nb.Nifti1Image, runtime) -> None:
        declared = tuple(DWI_MODELS[self.model])
        if set(maps) != set(declared):
            raise RuntimeError(f"{self.model} fit returned maps {sorted(maps)}, but "
                               f"bids_app.bids.outputs.DWI_MODELS declares {list(declared)}")
        for param in declared:
            self._results[f"out_{param}"] = save_nifti(maps[param], ref, f"{param}.nii.gz",
                                                       runtime)
        self._results["out_maps"] = {param: self._results[f"out_{param}"]
                                     for param in summarised_maps(self.model)}


_TensorOutputSpec = model_output_spec("tensor")


class _TensorInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed DWI series")
    in_bval = File(exists=True, mandatory=True)
    in_bvec = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True, desc="brain mask; maps are 0 outside")
    fit_method = traits.Enum(*FIT_METHODS, mandatory=True)
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")


class TensorFit(_ModelFit):
    """dipy tensor fit (:func:`bids_app.core.dwi.tensor.fit_tensor`) -> the ``tensor`` maps
    of :data:`bids_app.bids.outputs.DWI_MODELS` (FA, MD, AD, RD, colour FA)."""

    model = "tensor"
    input_spec = _TensorInputSpec
    output_spec = _TensorOutputSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        maps = fit_tensor(data, np.loadtxt(self.inputs.in_bval, ndmin=1),
                          np.loadtxt(self.inputs.in_bvec, ndmin=2).T,
                          mask=load_mask(self.inputs.in_mask),
                          fit_method=self.inputs.fit_method,
                          b0_threshold=self.inputs.b0_threshold)
        ref = nb.Nifti1Image(np.zeros(img.shape[:3], np.float32), img.affine, img.header)
        self._write_maps(maps, ref, runtime)
        return runtime


#: Model-fit interface per diffusion model of :data:`bids_app.bids.outputs.DWI_MODELS`.
MODEL_FITS: dict[str, type[_ModelFit]] = {"tensor": TensorFit}
