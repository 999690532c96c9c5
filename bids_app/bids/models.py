"""Diffusion models, each declared once: what the acquisition must provide, the core fit,
the parameter maps, and how the methods text describes it.

Everything about a model is derived from its :class:`DwiModel` entry in :data:`DWI_MODELS`:
the plan decides from :attr:`DwiModel.shells` whether (and on which shells) it runs
(:func:`bids_app.bids.model_plan.plan_models`), the fit interface and its outputs follow
:attr:`DwiModel.fit` and :attr:`DwiModel.maps` (:mod:`bids_app.interfaces.dwi_models`), the
workflow adds one fit node and one sink per map, the output names and sidecars come from
:func:`bids_app.bids.outputs.dwi_map_output`, the tract/ROI tables (and the group level,
which reads them) get every map with a ``level``, and the methods text uses
:attr:`DwiModel.methods`. A new model (e.g. NODDI) is one entry here plus its core function.

A model is a read-only mapping of its maps (metric name -> :class:`ParamMap`), so
``DWI_MODELS[model][metric]`` is a map's declaration. Metric names are unique over all
models: they name the tract/ROI table rows, the workflow fields and the group features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from bids_app.core.dwi.freewater import FREE_WATER_DIFFUSIVITY, fit_fwdti
from bids_app.core.dwi.kurtosis import KURTOSIS_RANGE, fit_dki
from bids_app.core.dwi.shells import SHELL_TOLERANCE, Shell
from bids_app.core.dwi.tensor import fit_tensor

__all__ = ["DWI_MODELS", "DwiModel", "ParamMap", "ShellRule"]


@dataclass(frozen=True)
class ParamMap:
    """A parameter map of a diffusion model."""

    description: str
    units: str
    level: str | None = None
    """How the metric is described in the tract/ROI table; ``None``: not summarised there
    (e.g. the colour FA, an RGB image)."""
    param: str | None = None
    """BEP016 ``param`` label of the file name; ``None``: the metric name."""


@dataclass(frozen=True)
class ShellRule:
    """What the acquisition must provide, and which of its shells the model is fitted to."""

    min_shells: int
    """Non-zero shells (at or below the maximum b) the model needs."""
    min_directions: int
    """Non-collinear directions each of those shells needs."""
    max_b: float | None = None
    """Shells above this b-value (s/mm^2, plus the shell tolerance) are not used; ``None``:
    every shell."""
    max_b_option: str | None = None
    """A :class:`~bids_app.settings.DwiSettings` field that sets :attr:`max_b` for the run."""
    fallback_all: bool = False
    """When too few shells qualify: fit every volume (with a warning) instead of skipping."""

    def resolve(self, shells: Sequence[Shell], *, max_b: float | None
                ) -> tuple[tuple[float, ...] | None, str, bool]:
        """Shells the model is fitted to, a one-line note, and whether the note is a warning.

        Returns ``(None, reason, True)`` when the model is skipped; an empty tuple means every
        volume.
        """
        limit = max_b if max_b is not None else self.max_b
        usable = [s for s in shells if limit is None or s.bval <= limit + SHELL_TOLERANCE]
        enough = [s for s in usable if s.n_directions >= self.min_directions]
        listing = ", ".join(f"{s.bval:g}" for s in shells) or "none"
        if len(enough) >= self.min_shells:
            used = tuple(s.bval for s in enough)
            if len(used) == len(shells):
                return (), f"b0 and every shell (b = {_bvals(used)} s/mm²)", False
            return used, f"b0 and b = {_bvals(used)} s/mm²", False
        where = f" at b <= {limit:g} s/mm²" if limit is not None else ""
        need = (f"{self.min_shells} non-zero shell(s){where} with >= {self.min_directions} "
                f"directions each (data: shells {listing} s/mm²)")
        if self.fallback_all and shells:
            every = _bvals(s.bval for s in shells)
            return (), (f"no shell{where}: fitted to every volume (b = {every} s/mm²); "
                        "values are not comparable with fits at b ~ 1000 s/mm²"), True
        return None, f"skipped: needs {need}", True


def _bvals(values) -> str:
    return "/".join(f"{b:g}" for b in values)


@dataclass(frozen=True, eq=False)
class DwiModel(Mapping[str, ParamMap]):
    """One diffusion model: requirements, core fit, maps, texts."""

    name: str
    """BEP016 ``model`` label of the maps (``model-<name>``)."""
    fit: Callable[..., dict[str, np.ndarray]]
    """Core function ``fit(data, bvals, bvecs, *, mask, b0_threshold, **options)`` returning
    one array per declared map."""
    maps: Mapping[str, ParamMap]
    shells: ShellRule
    description: str
    """Sidecar ``Model`` text (``str.format`` fields: the options)."""
    methods: str
    """Methods sentence (``{volumes}``: the shells used; ``{<option>}``: the option's text
    from :attr:`option_texts`); ``[@key]`` citations from ``boilerplate/references.bib``."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Fit keyword -> :class:`~bids_app.settings.DwiSettings` field it is taken from."""
    option_texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Methods text of each option value."""
    threaded: bool = False
    """The fit takes ``nthreads`` (the node then reserves ``--omp-nthreads`` cores)."""

    def __getitem__(self, metric: str) -> ParamMap:
        return self.maps[metric]

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def __len__(self) -> int:
        return len(self.maps)

    def fit_options(self, settings: Any) -> dict[str, Any]:
        """The fit's keyword options from the run's diffusion settings."""
        return {key: getattr(settings, attr) for key, attr in self.options.items()}

    def model_description(self, settings: Any) -> str:
        """Sidecar ``Model`` text for the run."""
        return self.description.format(**self.fit_options(settings))

    def methods_text(self, settings: Any, *, volumes: str) -> str:
        """Methods sentence for the run (``volumes``: which volumes were fitted)."""
        texts = {key: self.option_texts.get(key, {}).get(value, str(value))
                 for key, value in self.fit_options(settings).items()}
        return self.methods.format(volumes=volumes, **texts)


_LO, _HI = KURTOSIS_RANGE

#: Every diffusion model, in fitting (and output, table) order; ``tensor`` first (its FA
#: drives the registration, the tractography and the QC).
DWI_MODELS: Mapping[str, DwiModel] = MappingProxyType({m.name: m for m in (
    DwiModel(
        name="tensor", fit=fit_tensor,
        maps=MappingProxyType({
            "fa": ParamMap("Fractional anisotropy", "arbitrary",
                           "fractional anisotropy (unitless)"),
            "md": ParamMap("Mean diffusivity", "mm^2/s", "mean diffusivity (mm^2/s)"),
            "ad": ParamMap("Axial diffusivity (first eigenvalue)", "mm^2/s",
                           "axial diffusivity (mm^2/s)"),
            "rd": ParamMap("Radial diffusivity (mean of 2nd and 3rd eigenvalues)", "mm^2/s",
                           "radial diffusivity (mm^2/s)"),
            "colfa": ParamMap("Colour FA: FA-weighted |principal eigenvector| (RGB = x, y, z)",
                              "arbitrary"),
        }),
        shells=ShellRule(min_shells=1, min_directions=6, max_b_option="dti_max_b",
                         fallback_all=True),
        description="tensor (DIPY TensorModel, fit_method={fit_method})",
        methods=("The diffusion tensor was fitted to {volumes} with {fit_method}, and "
                 "fractional anisotropy (FA), mean (MD), axial (AD) and radial (RD) "
                 "diffusivity maps were derived."),
        options=MappingProxyType({"fit_method": "tensor_fit"}),
        option_texts=MappingProxyType({"fit_method": MappingProxyType({
            "wls": "weighted least squares [@basser1994]",
            "ols": "ordinary least squares [@basser1994]",
            "nlls": "non-linear least squares [@basser1994]",
            "restore": "the RESTORE outlier-robust estimator [@basser1994; @chang2005]",
        })}),
    ),
    DwiModel(
        name="dki", fit=fit_dki,
        maps=MappingProxyType({
            "mk": ParamMap("Mean kurtosis (mean of the directional kurtosis over the sphere)",
                           "arbitrary", "mean kurtosis (unitless)"),
            "ak": ParamMap("Axial kurtosis (along the first eigenvector)", "arbitrary",
                           "axial kurtosis (unitless)"),
            "rk": ParamMap("Radial kurtosis (perpendicular to the first eigenvector)",
                           "arbitrary", "radial kurtosis (unitless)"),
            "kfa": ParamMap("Kurtosis fractional anisotropy", "arbitrary",
                            "kurtosis fractional anisotropy (unitless)"),
            "mkt": ParamMap("Mean of the kurtosis tensor", "arbitrary",
                            "mean kurtosis tensor (unitless)"),
        }),
        # 21 tensor elements + S0 need two non-zero shells; 15 directions (the kurtosis
        # tensor's elements) per shell; b above 3000 leaves the cumulant expansion's range
        shells=ShellRule(min_shells=2, min_directions=15, max_b=3000.0), threaded=True,
        description=("diffusion kurtosis (DIPY DiffusionKurtosisModel, weighted least "
                     f"squares; kurtoses clipped to [{_LO:g}, {_HI:g}])"),
        methods=("Where the acquisition had at least two non-zero shells, the diffusion "
                 "kurtosis model [@jensen2005] was fitted to {volumes} by weighted linear "
                 "least squares [@veraart2013] (DIPY), and mean, axial and radial kurtosis "
                 "(MK, AK, RK), the mean of the kurtosis tensor (MKT) and the kurtosis "
                 f"fractional anisotropy (KFA) were derived, kurtoses clipped to the range "
                 f"{_LO:g}-{_HI:g}."),
    ),
    DwiModel(
        name="fwdti", fit=fit_fwdti,
        maps=MappingProxyType({
            "fw": ParamMap("Free-water volume fraction", "arbitrary",
                           "free-water volume fraction (unitless)"),
            "fwfa": ParamMap("Fractional anisotropy of the free-water-corrected (tissue) "
                             "tensor", "arbitrary",
                             "free-water-corrected fractional anisotropy (unitless)",
                             param="fa"),
            "fwmd": ParamMap("Mean diffusivity of the tissue tensor", "mm^2/s",
                             "free-water-corrected mean diffusivity (mm^2/s)", param="md"),
            "fwad": ParamMap("Axial diffusivity of the tissue tensor", "mm^2/s",
                             "free-water-corrected axial diffusivity (mm^2/s)", param="ad"),
            "fwrd": ParamMap("Radial diffusivity of the tissue tensor", "mm^2/s",
                             "free-water-corrected radial diffusivity (mm^2/s)", param="rd"),
        }),
        # the tissue compartment is a Gaussian tensor: shells up to b ~ 2000 only
        shells=ShellRule(min_shells=2, min_directions=6, max_b=2000.0), threaded=True,
        description=("free-water DTI (weighted least squares, DIPY FreeWaterTensorModel "
                     f"WLS; free-water diffusivity {FREE_WATER_DIFFUSIVITY:g} mm^2/s)"),
        methods=("Where the acquisition had at least two non-zero shells at b <= 2000 s/mm², "
                 "a free-water elimination tensor model [@pasternak2009; @hoy2014] was "
                 "fitted to {volumes} by DIPY's weighted least squares grid search "
                 f"(free-water diffusivity {FREE_WATER_DIFFUSIVITY:g} mm²/s), giving the "
                 "free-water volume fraction (FW) and the FA, MD, AD and RD of the tissue "
                 "tensor."),
    ),
)})


def _check_unique_metrics() -> None:
    seen: dict[str, str] = {}
    for model in DWI_MODELS.values():
        for metric in model:
            if metric in seen:
                raise RuntimeError(f"metric {metric!r} declared by models {seen[metric]!r} "
                                   f"and {model.name!r}: metric names must be unique")
            seen[metric] = model.name


_check_unique_metrics()
