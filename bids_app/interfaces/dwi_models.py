"""Diffusion model fits as nipype interfaces, generated from the model declarations.

One interface per model of :data:`bids_app.bids.models.DWI_MODELS`, named
``<Model>Fit`` (``TensorFit``, ``DkiFit``, ...), is generated when this module is imported:
it selects the planned shells (:attr:`bids_app.bids.plan.ModelPlan.shells`), calls the
model's core fit function with the run's options and writes one ``out_<metric>`` file per
declared map, plus ``out_maps``, the maps that enter the tract/ROI table
(:func:`bids_app.bids.outputs.summarised_maps`) as ``{metric: file}`` in declaration order.
:class:`MergeMaps` joins the ``out_maps`` of the fitted models for the statistics. The fit
fails loudly when the core function and the declaration disagree.
"""

from __future__ import annotations

import logging

import nibabel as nb
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_app.bids.models import DWI_MODELS
from bids_app.bids.outputs import summarised_maps
from bids_app.core.dwi.shells import select_volumes
from bids_app.interfaces._io import load_mask, load_nifti, save_nifti

LOGGER = logging.getLogger("nipype.interface")


def model_output_spec(model: str) -> type[TraitedSpec]:
    """Output spec of a fit of ``model``: ``out_<metric>`` per declared map, and ``out_maps``.

    The class is named ``_<Model>OutputSpec`` in this module; bind it to that module-level
    name (nipype pickles the node results, which must find the class by name).
    """
    name = f"_{model.capitalize()}OutputSpec"
    spec = {f"out_{metric}": File(exists=True, desc=f"{m.description} ({m.units})")
            for metric, m in DWI_MODELS[model].items()}
    spec["out_maps"] = traits.Dict(
        traits.Str, File(exists=True),
        desc=f"maps summarised in the tract/ROI table, in order: {summarised_maps(model)}")
    spec.update(__module__=__name__, __qualname__=name)
    return type(name, (TraitedSpec,), spec)


class _ModelFitInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed DWI series")
    in_bval = File(exists=True, mandatory=True)
    in_bvec = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True, desc="brain mask; maps are 0 outside")
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")
    shells = traits.List(traits.Float, mandatory=True,
                         desc="non-zero shells fitted besides the b0 volumes; [] = all volumes")
    options = traits.Dict(traits.Str, traits.Any, mandatory=True,
                          desc="keyword options of the core fit (from the run settings)")
    nthreads = traits.Int(desc="threads of a threaded model's fit (default 1)")


class _ModelFit(SimpleInterface):
    """Fits :attr:`model` and writes its maps as declared in DWI_MODELS."""

    model: str
    input_spec = _ModelFitInputSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        bvals = np.loadtxt(self.inputs.in_bval, ndmin=1)
        bvecs = np.loadtxt(self.inputs.in_bvec, ndmin=2).T
        keep = select_volumes(bvals, self.inputs.shells, b0_threshold=self.inputs.b0_threshold)
        LOGGER.info("%s fit: %d of %d volumes (shells %s)", self.model, len(keep), len(bvals),
                    self.inputs.shells or "all")
        model = DWI_MODELS[self.model]
        options = dict(self.inputs.options)
        if model.threaded and isdefined(self.inputs.nthreads):
            options["nthreads"] = self.inputs.nthreads
        maps = model.fit(data[..., keep], bvals[keep], bvecs[keep],
                         mask=load_mask(self.inputs.in_mask),
                         b0_threshold=self.inputs.b0_threshold, **options)
        declared = tuple(DWI_MODELS[self.model])
        if set(maps) != set(declared):
            raise RuntimeError(f"{self.model} fit returned maps {sorted(maps)}, but "
                               f"bids_app.bids.models.DWI_MODELS declares {list(declared)}")
        ref = nb.Nifti1Image(np.zeros(img.shape[:3], np.float32), img.affine, img.header)
        for metric in declared:
            self._results[f"out_{metric}"] = save_nifti(maps[metric], ref,
                                                        f"{metric}.nii.gz", runtime)
        self._results["out_maps"] = {metric: self._results[f"out_{metric}"]
                                     for metric in summarised_maps(self.model)}
        return runtime


def _fit_interface(model: str) -> type[_ModelFit]:
    name = f"{model.capitalize()}Fit"
    doc = (f"dipy {model} fit (:func:`{DWI_MODELS[model].fit.__module__}."
           f"{DWI_MODELS[model].fit.__name__}`) -> the ``{model}`` maps of "
           ":data:`bids_app.bids.models.DWI_MODELS`.")
    output_spec = model_output_spec(model)
    globals()[output_spec.__name__] = output_spec
    cls = type(name, (_ModelFit,), {"model": model, "output_spec": output_spec,
                                    "__doc__": doc, "__module__": __name__,
                                    "__qualname__": name})
    globals()[name] = cls
    return cls


#: Model-fit interface per diffusion model of :data:`bids_app.bids.models.DWI_MODELS`.
MODEL_FITS: dict[str, type[_ModelFit]] = {model: _fit_interface(model) for model in DWI_MODELS}


class _MergeMapsInputSpec(BaseInterfaceInputSpec):
    in_maps = traits.List(traits.Dict(traits.Str, File(exists=True)), mandatory=True,
                          desc="out_maps of each fitted model, in model order")


class _MergeMapsOutputSpec(TraitedSpec):
    out_maps = traits.Dict(traits.Str, File(exists=True), desc="{metric: map}, in order")


class MergeMaps(SimpleInterface):
    """Joins the summarised maps of the fitted models into one ordered ``{metric: file}``."""

    input_spec = _MergeMapsInputSpec
    output_spec = _MergeMapsOutputSpec

    def _run_interface(self, runtime):
        merged: dict[str, str] = {}
        for maps in self.inputs.in_maps:
            clash = set(merged) & set(maps)
            if clash:
                raise RuntimeError(f"metric(s) {sorted(clash)} produced by two models")
            merged.update(maps)
        self._results["out_maps"] = merged
        return runtime
