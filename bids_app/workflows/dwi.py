"""Diffusion branch of the participant level: preprocessing, model, tract statistics, outputs.

One :class:`~bids_app.bids.plan.DwiUnit` (the runs combined into one series, or one run with
``--dwi-runs separate``) becomes three sub-workflows: ``dwi_preproc_wf`` (checks, denoising,
unringing, motion, run alignment and the planned distortion correction, brain mask),
``dwi_model_wf`` (model fit, FA-to-template registration, atlases in DWI space, tract/ROI
statistics, QC) and ``ds_dwi_wf`` (one ``ds_*`` sink per output declared in
:mod:`bids_app.bids.outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nipype.interfaces.utility import IdentityInterface, Merge, Select
from nipype.pipeline import engine as pe

from bids_app.atlases.api import get_model_bundles, get_template
from bids_app.bids.models import DWI_MODELS
from bids_app.bids.outputs import (
    BUNDLE_OUTPUTS,
    DWI_OUTPUTS,
    bundle_output,
    dwi_map_output,
    stats_dictionary,
)
from bids_app.bids.plan import DwiUnit, ModelPlan
from bids_app.core.dwi.preproc import NOISE_MAP_DENOISERS
from bids_app.interfaces.bids import DerivativesDataSink
from bids_app.interfaces.dwi_atlas import DwiStats, RegisterFA, WarpAtlas
from bids_app.interfaces.dwi_bundles import Tractometry
from bids_app.interfaces.dwi_models import MODEL_FITS, MergeMaps
from bids_app.interfaces.dwi_preproc import (
    CheckDwi,
    CombineRuns,
    Denoise,
    DwiBrainMask,
    MotionCorrect,
    Unring,
)
from bids_app.interfaces.dwi_qc import DwiQC
from bids_app.settings import (
    BUNDLE_ATLAS,
    DWI_ATLAS_RES,
    DWI_MODEL,
    DWI_TEMPLATE_RES,
    TEMPLATE,
    DwiSettings,
)

#: Outputs of the preprocessing sub-workflow.
PREPROC_FIELDS = ("dwi_preproc", "bval", "bvec", "motion", "mask", "b0", "mask_ml",
                  "sdc_report", "fig_sdc", "sigma")
#: Outputs of the preprocessing sub-workflow the model sub-workflow takes (and the template).
MODEL_INPUTS = ("dwi_preproc", "bval", "bvec", "mask", "b0", "mask_ml", "motion", "sdc_report",
                "sigma")
#: Outputs of the model sub-workflow besides the parameter maps.
MODEL_FIELDS = ("xfm_to_template", "xfm_from_template", "stats", "qc", "fig_tracts",
                "fig_reg", "fig_motion")
#: outputnode fields of :func:`init_dwi_wf` (each a list with one item per unit): every
#: declared DWI output but the SDC figure (two-run units only), and the maps of the tensor
#: (and of every other model a unit fits, :func:`output_fields`).
OUTPUT_FIELDS = tuple(k for k in DWI_OUTPUTS if k != "fig_sdc") + tuple(DWI_MODELS[DWI_MODEL])
#: Further outputs with ``--bundles`` (``bundles``: the recognised bundles' ``.trk`` files, in
#: the order of the model-bundle atlas).
BUNDLE_FIELDS = (*BUNDLE_OUTPUTS, "bundles")


def fitted_models(units: Sequence[DwiUnit]) -> tuple[str, ...]:
    """Models fitted to at least one of the units, in declaration order."""
    fitted = {p.model for unit in units for p in unit.fitted_models}
    return tuple(m for m in DWI_MODELS if m in fitted)


def output_fields(settings: DwiSettings, units: Sequence[DwiUnit] = ()) -> tuple[str, ...]:
    """outputnode fields of :func:`init_dwi_wf` (and of its model sub-workflow's extras):
    :data:`OUTPUT_FIELDS`, the maps of the other models the ``units`` fit, and
    :data:`BUNDLE_FIELDS` with ``--bundles``."""
    extra_maps = tuple(metric for model in fitted_models(units) if model != DWI_MODEL
                       for metric in DWI_MODELS[model])
    return OUTPUT_FIELDS + extra_maps + (BUNDLE_FIELDS if settings.bundles else ())


def init_dwi_wf(
    *,
    units: Sequence[DwiUnit],
    settings: DwiSettings,
    output_dir: Path,
    data_dir: Path | None,
    omp_nthreads: int = 1,
    name: str = "dwi_wf",
) -> pe.Workflow:
    """Build the diffusion workflow of one participant/session.

    Parameters
    ----------
    units
        The planned DWI units (:func:`bids_app.bids.plan.plan_participant`).
    settings
        Diffusion options.
    output_dir
        Derivatives root; every output is written by a ``ds_*`` DerivativesDataSink.
    data_dir
        Built templates/atlases (``None`` = default location).
    omp_nthreads
        Threads of the multithreaded nodes (tracking and bundle recognition).
    name
        Workflow name.

    Inputs
    ------
    fa_template
        MNI152NLin6Asym FA template (preset from :func:`bids_app.atlases.api.get_template`).

    Outputs
    -------
    See :func:`output_fields`; each field is a list with one entry per unit.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=["fa_template"]), name="inputnode")
    inputnode.inputs.fa_template = str(get_template(TEMPLATE, res=DWI_TEMPLATE_RES,
                                                    suffix="FA", data_dir=data_dir))
    fields = output_fields(settings, units)
    outputnode = pe.Node(IdentityInterface(fields=list(fields)), name="outputnode")
    merges = {}
    for field in fields:
        merges[field] = pe.Node(Merge(len(units)), name=f"merge_{field}")
        workflow.connect(merges[field], "out", outputnode, field)
    for u, unit in enumerate(units, start=1):
        tag = "" if len(units) == 1 else f"_u{u}"
        preproc_wf = init_dwi_preproc_wf(unit=unit, settings=settings,
                                         name=f"dwi_preproc_wf{tag}")
        model_wf = init_dwi_model_wf(unit=unit, settings=settings, data_dir=data_dir,
                                     omp_nthreads=omp_nthreads, name=f"dwi_model_wf{tag}")
        ds_wf = init_ds_dwi_wf(unit=unit, settings=settings, output_dir=Path(output_dir),
                               data_dir=data_dir,
                               name=f"ds_dwi_wf{tag}")
        workflow.connect(inputnode, "fa_template", model_wf, "inputnode.fa_template")
        for field in MODEL_INPUTS:
            workflow.connect(preproc_wf, f"outputnode.{field}", model_wf, f"inputnode.{field}")
        # every output the unit's sinks declare comes from one of the two sub-workflows
        for field in ds_wf.get_node("inputnode").inputs.copyable_trait_names():
            src = preproc_wf if field in PREPROC_FIELDS else model_wf
            workflow.connect(src, f"outputnode.{field}", ds_wf, f"inputnode.{field}")
        model_fields = set(model_wf.get_node("outputnode").inputs.copyable_trait_names())
        for field in fields:
            if field in PREPROC_FIELDS:
                workflow.connect(preproc_wf, f"outputnode.{field}", merges[field], f"in{u}")
            elif field in model_fields:  # maps of a model this unit does not fit: none
                workflow.connect(model_wf, f"outputnode.{field}", merges[field], f"in{u}")
    return workflow


def init_dwi_preproc_wf(*, unit: DwiUnit, settings: DwiSettings,
                        name: str = "dwi_preproc_wf") -> pe.Workflow:
    """Checks, denoising, unringing, motion correction, run alignment + SDC, brain mask.

    Every run is resampled once (motion, between-run alignment and the distortion correction
    of ``unit.sdc`` composed) by the ``combine`` node.

    Outputs
    -------
    See :data:`PREPROC_FIELDS` (``sigma``: the first run's noise map for a denoiser that
    estimates one, else ``None``; ``fig_sdc``: only when ``unit.has_sdc_figure``).
    """
    thr, seed = settings.b0_threshold, settings.seed
    workflow = pe.Workflow(name=name)
    outputnode = pe.Node(IdentityInterface(fields=list(PREPROC_FIELDS)), name="outputnode")
    n = len(unit.runs)
    m_dwi, m_bval, m_bvec, m_b0, m_motion, m_mats = (
        pe.Node(Merge(n), name=f"collect_{what}")
        for what in ("dwi", "bval", "bvec", "b0", "motion", "matrices"))
    for i, run in enumerate(unit.runs, start=1):
        check = pe.Node(CheckDwi(in_file=str(run.dwi), in_bval=str(run.bval),
                                 in_bvec=str(run.bvec), b0_threshold=thr), name=f"check_r{i}")
        denoise = pe.Node(Denoise(method=unit.denoise_method, b0_threshold=thr),
                          name=f"denoise_r{i}")
        hmc = pe.Node(MotionCorrect(b0_threshold=thr, seed=seed,
                                    enabled=settings.motion_correction), name=f"hmc_r{i}")
        workflow.connect([
            (check, denoise, [("out_file", "in_file"), ("out_bval", "in_bval")]),
            (check, hmc, [("out_bval", "in_bval"), ("out_bvec", "in_bvec")]),
            (check, m_bval, [("out_bval", f"in{i}")]),
            (check, m_bvec, [("out_bvec", f"in{i}")]),
            (hmc, m_mats, [("out_matrices", f"in{i}")]),
            (hmc, m_b0, [("out_b0", f"in{i}")]),
            (hmc, m_motion, [("out_motion", f"in{i}")]),
        ])
        last = denoise
        if settings.unringing:
            unring = pe.Node(Unring(), name=f"unring_r{i}")
            workflow.connect(denoise, "out_file", unring, "in_file")
            last = unring
        workflow.connect([(last, hmc, [("out_file", "in_file")]),
                          (last, m_dwi, [("out_file", f"in{i}")])])
        if i == 1 and unit.denoise_method in NOISE_MAP_DENOISERS:
            workflow.connect(denoise, "out_sigma", outputnode, "sigma")
    if unit.denoise_method not in NOISE_MAP_DENOISERS:
        outputnode.inputs.sigma = None  # QC estimates the noise from the b0 instead

    sdc = unit.sdc
    combine = pe.Node(CombineRuns(pe_dirs=list(sdc.pe_dirs), polarities=list(sdc.polarities),
                                  pe_axis=sdc.pe_axis, sdc_method=sdc.method,
                                  sdc_note=sdc.note, b0_threshold=thr, seed=seed),
                      name="combine")
    mask = pe.Node(DwiBrainMask(b0_threshold=thr), name="mask")
    workflow.connect([
        (m_dwi, combine, [("out", "in_files")]),
        (m_bval, combine, [("out", "in_bvals")]),
        (m_bvec, combine, [("out", "in_bvecs")]),
        (m_b0, combine, [("out", "in_b0s")]),
        (m_motion, combine, [("out", "in_motion")]),
        (m_mats, combine, [("out", "in_matrices")]),
        (combine, mask, [("out_file", "in_file"), ("out_bval", "in_bval")]),
        (combine, outputnode, [("out_file", "dwi_preproc"), ("out_bval", "bval"),
                               ("out_bvec", "bvec"), ("out_motion", "motion"),
                               ("out_report", "sdc_report")]),
        (mask, outputnode, [("out_mask", "mask"), ("out_b0", "b0"), ("mask_ml", "mask_ml")]),
    ])
    if unit.has_sdc_figure:
        workflow.connect(combine, "out_figure", outputnode, "fig_sdc")
    return workflow


def init_dwi_model_wf(*, unit: DwiUnit, settings: DwiSettings, data_dir: Path | None,
                      omp_nthreads: int = 1, name: str = "dwi_model_wf") -> pe.Workflow:
    """Model fit, FA-to-template registration, atlases in DWI space, statistics and QC.

    Inputs
    ------
    dwi_preproc, bval, bvec, mask, b0, mask_ml, motion, sdc_report, sigma
        From :func:`init_dwi_preproc_wf` (:data:`MODEL_INPUTS`).
    fa_template
        The FA template.

    Outputs
    -------
    One field per parameter map of the model (:data:`bids_app.bids.outputs.DWI_MODELS`),
    :data:`MODEL_FIELDS` and, with ``settings.bundles``, :data:`BUNDLE_FIELDS` (the
    ``tractometry`` node; its bundle-weighted means join the tract/ROI table).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=[*MODEL_INPUTS, "fa_template"]),
                        name="inputnode")
    plans = unit.fitted_models
    maps = tuple(metric for p in plans for metric in DWI_MODELS[p.model])
    extra = BUNDLE_FIELDS if settings.bundles else ()
    outputnode = pe.Node(IdentityInterface(fields=[*maps, *MODEL_FIELDS, *extra]),
                         name="outputnode")
    fits = {p.model: _fit_node(p, settings, omp_nthreads) for p in plans}
    collect_maps = pe.Node(Merge(len(fits)), name="collect_maps")
    merge_maps = pe.Node(MergeMaps(), name="merge_maps")
    workflow.connect(collect_maps, "out", merge_maps, "in_maps")
    for i, (model, node) in enumerate(fits.items(), start=1):
        workflow.connect([
            (inputnode, node, [("dwi_preproc", "in_file"), ("bval", "in_bval"),
                               ("bvec", "in_bvec"), ("mask", "in_mask")]),
            (node, collect_maps, [("out_maps", f"in{i}")]),
            (node, outputnode, [(f"out_{metric}", metric) for metric in DWI_MODELS[model]]),
        ])
    fit = fits[DWI_MODEL]
    reg = pe.Node(RegisterFA(seed=settings.seed), name="reg")
    warp_tracts = pe.Node(WarpAtlas(atlas=settings.tract_atlas, res=DWI_ATLAS_RES),
                          name="warp_tracts")
    warp_rois = pe.Node(WarpAtlas(atlas=settings.roi_atlas, res=DWI_ATLAS_RES),
                        name="warp_rois")
    if data_dir is not None:
        warp_tracts.inputs.data_dir = str(data_dir)
        warp_rois.inputs.data_dir = str(data_dir)
    stats = pe.Node(DwiStats(tract_atlas=settings.tract_atlas, roi_atlas=settings.roi_atlas,
                             threshold=settings.tract_threshold), name="stats")
    qc = pe.Node(DwiQC(threshold=settings.tract_threshold, b0_threshold=settings.b0_threshold,
                       shells=list(unit.shells),
                       model_notes={p.model: p.note for p in unit.models or plans}),
                 name="qc")
    workflow.connect([
        (fit, reg, [("out_fa", "in_fa")]),
        (inputnode, reg, [("fa_template", "template")]),
        (fit, warp_tracts, [("out_fa", "reference")]),
        (fit, warp_rois, [("out_fa", "reference")]),
        (reg, warp_tracts, [("out_inv", "inverse")]),
        (reg, warp_rois, [("out_inv", "inverse")]),
        (merge_maps, stats, [("out_maps", "in_maps")]),
        (inputnode, stats, [("mask", "in_mask")]),
        (warp_tracts, stats, [("out_file", "tract_file"), ("out_index", "tract_index")]),
        (warp_rois, stats, [("out_file", "label_file"), ("out_index", "label_table")]),
        (inputnode, qc, [("dwi_preproc", "in_file"), ("bval", "in_bval"),
                         ("motion", "in_motion"), ("sdc_report", "sdc_report"),
                         ("mask", "in_mask"), ("b0", "in_b0"), ("mask_ml", "mask_ml"),
                         ("sigma", "in_sigma"), ("fa_template", "template")]),
        (fit, qc, [("out_fa", "in_fa")]),
        (warp_tracts, qc, [("out_file", "tract_file"), ("out_index", "tract_index")]),
        (reg, qc, [("out_warped", "warped_fa"), ("correlation", "reg_corr")]),
        (reg, outputnode, [("out_fwd", "xfm_to_template"), ("out_inv", "xfm_from_template")]),
        (stats, outputnode, [("out_file", "stats")]),
        (qc, outputnode, [("out_tsv", "qc"), ("out_tracts", "fig_tracts"),
                          ("out_reg", "fig_reg"), ("out_motion", "fig_motion")]),
    ])
    if settings.bundles:
        models = get_model_bundles(BUNDLE_ATLAS, data_dir=data_dir)
        tractometry = pe.Node(Tractometry(
            models=[(r, h, str(p)) for (r, h), p in models.bundles.items()],
            atlas=BUNDLE_ATLAS, b0_threshold=settings.b0_threshold, seed=settings.seed,
            nthreads=omp_nthreads), name="tractometry", n_procs=omp_nthreads)
        workflow.connect([
            (inputnode, tractometry, [("dwi_preproc", "in_file"), ("bval", "in_bval"),
                                      ("bvec", "in_bvec"), ("mask", "in_mask")]),
            (merge_maps, tractometry, [("out_maps", "in_maps")]),
            (reg, tractometry, [("out_fwd", "to_template")]),
            (tractometry, stats, [("out_stats", "extra_stats")]),
            (tractometry, outputnode, [("out_bundles", "bundles"),
                                       ("out_profiles", "profiles"),
                                       ("out_qc", "bundle_qc"),
                                       ("out_figure", "fig_bundles"),
                                       ("out_profile_figure", "fig_profiles")]),
        ])
    return workflow


def _fit_node(plan: ModelPlan, settings: DwiSettings, omp_nthreads: int) -> pe.Node:
    """The fit node of one planned model (``fit_<model>``)."""
    if not plan.decided:
        raise ValueError(f"DWI model {plan.model!r} planned without its shells: build the "
                         "plan with plan_participant(..., check_images=True)")
    model = DWI_MODELS[plan.model]
    node = pe.Node(MODEL_FITS[plan.model](b0_threshold=settings.b0_threshold,
                                          shells=list(plan.shells),
                                          options=model.fit_options(settings)),
                   name=f"fit_{plan.model}", n_procs=omp_nthreads if model.threaded else 1)
    if model.threaded:
        node.inputs.nthreads = omp_nthreads
    return node


def init_ds_dwi_wf(*, unit: DwiUnit, settings: DwiSettings, output_dir: Path,
                   data_dir: Path | None, name: str = "ds_dwi_wf") -> pe.Workflow:
    """One DerivativesDataSink per declared DWI output and parameter map of the unit.

    Names and sidecars come from :data:`bids_app.bids.outputs.DWI_OUTPUTS` and
    :func:`bids_app.bids.outputs.dwi_map_output`; this function adds only what depends on
    the run (SDC method, model fit method, atlases, threshold). Sinks are never taken from
    the work directory's cache (``overwrite=True``): a resumed run rewrites every output
    from the cached results of the steps before them.
    """
    workflow = pe.Workflow(name=name)
    plans = unit.fitted_models
    declared = {key: out.sink_inputs() for key, out in DWI_OUTPUTS.items()
                if key != "fig_sdc" or unit.has_sdc_figure}
    declared["dwi_preproc"] = DWI_OUTPUTS["dwi_preproc"].sink_inputs(SDC=unit.sdc.method)
    declared["stats"] = DWI_OUTPUTS["stats"].sink_inputs(
        **stats_dictionary([p.model for p in plans], tract_atlas=settings.tract_atlas,
                           roi_atlas=settings.roi_atlas),
        TractThreshold=settings.tract_threshold,
        TractAtlas=settings.tract_atlas, RoiAtlas=settings.roi_atlas)
    for plan in plans:
        model = DWI_MODELS[plan.model]
        description = model.model_description(settings)
        for metric in model:
            declared[metric] = dwi_map_output(plan.model, metric,
                                              model_description=description).sink_inputs(
                ShellsFitted=[0.0, *(plan.shells or unit.shells)],
                ShellsNote=plan.note)
    bundle_sinks = {}
    if settings.bundles:
        declared.update({key: out.sink_inputs() for key, out in BUNDLE_OUTPUTS.items()})
        models = get_model_bundles(BUNDLE_ATLAS, data_dir=data_dir)
        bundle_sinks = {(r, h): bundle_output(r, h).sink_inputs(
            Atlas=BUNDLE_ATLAS, Method="dipy RecoBundles on whole-brain deterministic "
            "tractography", Space="native DWI (world RAS mm)")
            for r, h in models.bundles}
    fields = list(declared) + (["bundles"] if bundle_sinks else [])
    inputnode = pe.Node(IdentityInterface(fields=fields), name="inputnode")
    for key, kwargs in declared.items():
        sink = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                           source_file=unit.sources, **unit.entities,
                                           **kwargs),
                       name=f"ds_{key}", run_without_submitting=True, overwrite=True)
        workflow.connect(inputnode, key, sink, "in_file")
    for i, ((region, hemi), kwargs) in enumerate(bundle_sinks.items()):
        select = pe.Node(Select(index=[i]), name=f"select_bundle_{region}_{hemi}",
                         run_without_submitting=True)
        sink = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                           source_file=unit.sources, **unit.entities,
                                           **kwargs),
                       name=f"ds_bundle_{region}_{hemi}", run_without_submitting=True,
                       overwrite=True)
        workflow.connect([(inputnode, select, [("bundles", "inlist")]),
                          (select, sink, [("out", "in_file")])])
    return workflow
