"""Diffusion branch of the participant level: preprocessing, tensor metrics, tract statistics."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.utility import IdentityInterface, Merge
from nipype.pipeline import engine as pe

from bids_app.bids.records import DwiRun
from bids_app.core.dwi.roistats import STATS_DICTIONARY
from bids_app.interfaces.bids import DerivativesDataSink
from bids_app.interfaces.dwi import (
    BrainMask,
    CheckDwi,
    CombineRuns,
    Denoise,
    DwiQC,
    DwiStats,
    MotionCorrect,
    RegisterFA,
    TensorFit,
    Unring,
    WarpAtlas,
)
from bids_app.settings import DwiSettings

TEMPLATE = "MNI152NLin6Asym"

#: outputnode fields (each a list with one item per processing unit: one when runs are
#: combined, one per run with ``dwi_runs="separate"``).
OUTPUT_FIELDS = ("dwi_preproc", "bval", "bvec", "mask", "motion", "fa", "md", "ad", "rd",
                 "colfa", "xfm_to_template", "xfm_from_template", "stats", "qc",
                 "fig_tracts", "fig_reg", "fig_motion")

_MAP_META = {
    "fa": {"Description": "Fractional anisotropy", "Units": "arbitrary"},
    "md": {"Description": "Mean diffusivity", "Units": "mm^2/s"},
    "ad": {"Description": "Axial diffusivity (first eigenvalue)", "Units": "mm^2/s"},
    "rd": {"Description": "Radial diffusivity (mean of 2nd and 3rd eigenvalues)",
           "Units": "mm^2/s"},
    "colfa": {"Description": "Colour FA: FA-weighted |principal eigenvector| (RGB = x, y, z)",
              "Units": "arbitrary"},
}


def init_dwi_wf(
    *,
    runs: tuple[DwiRun, ...],
    settings: DwiSettings,
    output_dir: Path,
    data_dir: Path | None,
    omp_nthreads: int = 1,
    name: str = "dwi_wf",
) -> pe.Workflow:
    """Build the diffusion workflow for one participant/session.

    Parameters
    ----------
    runs
        The DWI runs (with bval/bvec and sidecar metadata).
    settings
        Diffusion options.
    output_dir
        Derivatives root; every output is written by a ``ds_*`` DerivativesDataSink.
    data_dir
        Built templates/atlases (``None`` = default location).
    omp_nthreads
        Threads for multi-threaded steps (Gibbs unringing).
    name
        Workflow name.

    Inputs
    ------
    fa_template
        MNI152NLin6Asym FA template (preset from :func:`bids_app.atlases.api.get_template`).

    Outputs
    -------
    See :data:`OUTPUT_FIELDS`; each field is a list with one entry per processing unit.

    Raises
    ------
    BadDataError
        A run fails the header/gradient pre-flight check
        (:func:`bids_app.core.dwi.gradients.preflight_dwi`).
    """
    from bids_app.atlases.api import get_template
    from bids_app.core.dwi.gradients import preflight_dwi

    for run in runs:  # header + gradient checks now: a bad run fails before anything runs
        preflight_dwi(run.dwi, run.bval, run.bvec, b0_threshold=settings.b0_threshold)
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=["fa_template"]), name="inputnode")
    inputnode.inputs.fa_template = str(get_template(TEMPLATE, res=2, suffix="FA",
                                                    data_dir=data_dir))
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    units = [(run,) for run in runs] if settings.dwi_runs == "separate" else [tuple(runs)]
    merges = {}
    for field in OUTPUT_FIELDS:
        merges[field] = pe.Node(Merge(len(units)), name=f"merge_{field}")
        workflow.connect(merges[field], "out", outputnode, field)
    for u, unit in enumerate(units):
        entities = _unit_entities(unit) if settings.dwi_runs == "separate" else {}
        tag = "" if len(units) == 1 else f"_u{u + 1}"
        _add_unit(workflow, unit, settings=settings, output_dir=Path(output_dir),
                  data_dir=data_dir, omp_nthreads=omp_nthreads, tag=tag, entities=entities,
                  inputnode=inputnode, merges=merges, index=u + 1)
    return workflow


def _unit_entities(unit: tuple[DwiRun, ...]) -> dict[str, str]:
    ent = unit[0].entities
    return {key: str(ent[key]) for key in ("acquisition", "direction", "run") if ent.get(key)}


def _add_unit(workflow, unit, *, settings, output_dir, data_dir, omp_nthreads, tag, entities,
              inputnode, merges, index):
    thr = settings.b0_threshold
    seed = settings.seed
    sources = [str(run.dwi) for run in unit]
    n = len(unit)
    m_dwi, m_bval, m_bvec, m_b0, m_motion, m_mats = (
        pe.Node(Merge(n), name=f"collect_{what}{tag}")
        for what in ("dwi", "bval", "bvec", "b0", "motion", "matrices"))
    denoise_nodes = []
    for i, run in enumerate(unit):
        sfx = f"{tag}_r{i + 1}"
        check = pe.Node(CheckDwi(in_file=str(run.dwi), in_bval=str(run.bval),
                                 in_bvec=str(run.bvec), b0_threshold=thr), name=f"check{sfx}")
        denoise = pe.Node(Denoise(method=settings.denoise, b0_threshold=thr),
                          name=f"denoise{sfx}")
        hmc = pe.Node(MotionCorrect(b0_threshold=thr, seed=seed,
                                    enabled=settings.motion_correction), name=f"hmc{sfx}")
        workflow.connect([
            (check, denoise, [("out_file", "in_file"), ("out_bval", "in_bval")]),
            (check, hmc, [("out_bval", "in_bval"), ("out_bvec", "in_bvec")]),
            (check, m_bval, [("out_bval", f"in{i + 1}")]),
            (check, m_bvec, [("out_bvec", f"in{i + 1}")]),
            (hmc, m_mats, [("out_matrices", f"in{i + 1}")]),
            (hmc, m_b0, [("out_b0", f"in{i + 1}")]),
            (hmc, m_motion, [("out_motion", f"in{i + 1}")]),
        ])
        if settings.unringing:
            unring = pe.Node(Unring(), name=f"unring{sfx}")
            workflow.connect([(denoise, unring, [("out_file", "in_file")]),
                              (unring, hmc, [("out_file", "in_file")]),
                              (unring, m_dwi, [("out_file", f"in{i + 1}")])])
        else:
            workflow.connect([(denoise, hmc, [("out_file", "in_file")]),
                              (denoise, m_dwi, [("out_file", f"in{i + 1}")])])
        denoise_nodes.append(denoise)
        if i == 0:
            shells_src = check

    combine = pe.Node(CombineRuns(pe_dirs=[run.phase_encoding_direction or "" for run in unit],
                                  sdc=settings.sdc != "none", b0_threshold=thr, seed=seed),
                      name=f"combine{tag}")
    mask = pe.Node(BrainMask(b0_threshold=thr), name=f"mask{tag}")
    tensor = pe.Node(TensorFit(fit_method=settings.tensor_fit, b0_threshold=thr),
                     name=f"tensor{tag}")
    reg = pe.Node(RegisterFA(seed=seed), name=f"reg{tag}")
    dd = str(data_dir) if data_dir is not None else None
    warp_tracts = pe.Node(WarpAtlas(atlas=settings.tract_atlas, res=2), name=f"warp_tracts{tag}")
    warp_rois = pe.Node(WarpAtlas(atlas=settings.roi_atlas, res=2), name=f"warp_rois{tag}")
    if dd:
        warp_tracts.inputs.data_dir = dd
        warp_rois.inputs.data_dir = dd
    stats = pe.Node(DwiStats(tract_atlas=settings.tract_atlas, roi_atlas=settings.roi_atlas,
                             threshold=settings.tract_threshold), name=f"stats{tag}")
    qc = pe.Node(DwiQC(threshold=settings.tract_threshold, b0_threshold=thr), name=f"qc{tag}")
    if settings.denoise == "mppca":
        workflow.connect(denoise_nodes[0], "out_sigma", qc, "in_sigma")
    workflow.connect([
        (m_dwi, combine, [("out", "in_files")]),
        (m_bval, combine, [("out", "in_bvals")]),
        (m_bvec, combine, [("out", "in_bvecs")]),
        (m_b0, combine, [("out", "in_b0s")]),
        (m_motion, combine, [("out", "in_motion")]),
        (m_mats, combine, [("out", "in_matrices")]),
        (combine, mask, [("out_file", "in_file"), ("out_bval", "in_bval")]),
        (combine, tensor, [("out_file", "in_file"), ("out_bval", "in_bval"),
                           ("out_bvec", "in_bvec")]),
        (mask, tensor, [("out_mask", "in_mask")]),
        (tensor, reg, [("out_fa", "in_fa")]),
        (inputnode, reg, [("fa_template", "template")]),
        (tensor, warp_tracts, [("out_fa", "reference")]),
        (tensor, warp_rois, [("out_fa", "reference")]),
        (reg, warp_tracts, [("out_inv", "inverse")]),
        (reg, warp_rois, [("out_inv", "inverse")]),
        (tensor, stats, [("out_fa", "in_fa"), ("out_md", "in_md"), ("out_ad", "in_ad"),
                         ("out_rd", "in_rd")]),
        (mask, stats, [("out_mask", "in_mask")]),
        (warp_tracts, stats, [("out_file", "tract_file"), ("out_index", "tract_index")]),
        (warp_rois, stats, [("out_file", "label_file"), ("out_index", "label_table")]),
        (combine, qc, [("out_file", "in_file"), ("out_bval", "in_bval"),
                       ("out_motion", "in_motion"), ("out_report", "sdc_report")]),
        (mask, qc, [("out_mask", "in_mask"), ("out_b0", "in_b0")]),
        (tensor, qc, [("out_fa", "in_fa")]),
        (warp_tracts, qc, [("out_file", "tract_file"), ("out_index", "tract_index")]),
        (reg, qc, [("out_warped", "warped_fa"), ("correlation", "reg_corr")]),
        (inputnode, qc, [("fa_template", "template")]),
        (shells_src, qc, [("shells", "shells")]),
    ])

    def sink(node_name, src, field, **kwargs):
        ds = pe.Node(DerivativesDataSink(base_directory=str(output_dir), source_file=sources,
                                         **entities, **kwargs),
                     name=f"{node_name}{tag}", run_without_submitting=True)
        workflow.connect(src, field, ds, "in_file")
        return ds

    model_meta = {"Model": f"tensor (DIPY TensorModel, fit_method={settings.tensor_fit})"}
    sink("ds_dwi", combine, "out_file", datatype="dwi", desc="preproc", suffix="dwi",
         meta_dict={"SkullStripped": False, "SDC": settings.sdc})
    sink("ds_bval", combine, "out_bval", datatype="dwi", desc="preproc", suffix="dwi")
    sink("ds_bvec", combine, "out_bvec", datatype="dwi", desc="preproc", suffix="dwi")
    sink("ds_mask", mask, "out_mask", datatype="dwi", space="dwi", desc="brain",
         suffix="mask", meta_dict={"Type": "Brain"})
    sink("ds_motion", combine, "out_motion", datatype="dwi", desc="dwi", suffix="motion",
         meta_dict={"Units": {"trans": "mm", "rot": "rad", "framewise_displacement": "mm"}})
    for param in ("fa", "md", "ad", "rd", "colfa"):
        sink(f"ds_{param}", tensor, f"out_{param}", datatype="dwi", space="dwi",
             model="tensor", param=param, suffix="dwimap",
             meta_dict={**model_meta, **_MAP_META[param]})
    sink("ds_xfm_fwd", reg, "out_fwd", datatype="dwi", from_space="dwi", to_space=TEMPLATE,
         mode="image", suffix="xfm")
    sink("ds_xfm_inv", reg, "out_inv", datatype="dwi", from_space=TEMPLATE, to_space="dwi",
         mode="image", suffix="xfm")
    sink("ds_stats", stats, "out_file", datatype="dwi", desc="tracts", suffix="dwistats",
         meta_dict={**STATS_DICTIONARY, "TractThreshold": settings.tract_threshold,
                    "TractAtlas": settings.tract_atlas, "RoiAtlas": settings.roi_atlas})
    sink("ds_qc", qc, "out_tsv", datatype="dwi", desc="dwi", suffix="qc")
    sink("ds_fig_tracts", qc, "out_tracts", datatype="figures", desc="tracts", suffix="dwi")
    sink("ds_fig_reg", qc, "out_reg", datatype="figures", space=TEMPLATE, desc="reg",
         suffix="dwi")
    sink("ds_fig_motion", qc, "out_motion", datatype="figures", desc="motion", suffix="dwi")
    if len(unit) > 1:
        sink("ds_fig_sdc", combine, "out_figure", datatype="figures", desc="sdc", suffix="dwi")

    for field, src, out in (
            ("dwi_preproc", combine, "out_file"), ("bval", combine, "out_bval"),
            ("bvec", combine, "out_bvec"), ("mask", mask, "out_mask"),
            ("motion", combine, "out_motion"), ("fa", tensor, "out_fa"),
            ("md", tensor, "out_md"), ("ad", tensor, "out_ad"), ("rd", tensor, "out_rd"),
            ("colfa", tensor, "out_colfa"), ("xfm_to_template", reg, "out_fwd"),
            ("xfm_from_template", reg, "out_inv"), ("stats", stats, "out_file"),
            ("qc", qc, "out_tsv"), ("fig_tracts", qc, "out_tracts"),
            ("fig_reg", qc, "out_reg"), ("fig_motion", qc, "out_motion")):
        workflow.connect(src, out, merges[field], f"in{index}")
