"""Anatomical branch: N4, MNI registration, brain mask, tissues, atlas GM volumes, QC."""

from __future__ import annotations

import logging
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_app.atlases.api import get_atlas, get_template, get_tissue_priors
from bids_app.atlases.manifest import atlas_choices
from bids_app.bids.outputs import ANAT_OUTPUTS
from bids_app.core.anat import io
from bids_app.core.anat.segmentation import TISSUES
from bids_app.errors import UsageError
from bids_app.interfaces import anat as ia
from bids_app.interfaces.bids import DerivativesDataSink
from bids_app.settings import (
    ANAT_TEMPLATE_RES,
    GM_ATLAS_RES,
    TEMPLATE,
    TISSUE_PRIOR_RES,
    AnatSettings,
)

LOGGER = logging.getLogger("nipype.workflow")

#: outputnode fields: one per declared anatomical output.
OUTPUT_FIELDS = list(ANAT_OUTPUTS)

def init_anat_wf(*, t1w: Path, settings: AnatSettings, output_dir: Path,
                 data_dir: Path | None, omp_nthreads: int = 1,
                 name: str = "anat_wf") -> pe.Workflow:
    """Anatomical participant workflow of one T1w.

    The T1w is checked when the graph is built (a 4D or unreadable file raises
    :class:`~bids_app.errors.BadDataError`; strongly anisotropic voxels are logged as a
    warning), so bad input fails before anything runs.

    Parameters
    ----------
    t1w
        The selected T1w image (BIDS raw path; subject/session come from its name).
    settings
        Anatomical options (``gm_atlas``, ``seed``).
    output_dir
        Derivatives root; every output is written there by ``ds_*`` nodes.
    data_dir
        Built templates/atlases (``None`` = default location, see ``alsmri fetch-data``).
    omp_nthreads
        Threads for ANTs (registration, N4, Atropos).
    name
        Workflow name.

    Inputs
    ------
    t1w
        T1w file (preset to ``t1w``).

    Outputs
    -------
    t1w_preproc, brain_mask, gm_probseg, wm_probseg, csf_probseg, dseg
        Native-space (RAS+) images.
    t1w2mni_xfm, mni2t1w_xfm
        Composite ANTs transforms (``.h5``) T1w -> MNI152NLin6Asym and back.
    t1w_mni
        Bias-corrected T1w in MNI152NLin6Asym space (2 mm).
    atlas_t1w
        GM label atlas in T1w space.
    volumes_tsv, qc_tsv
        GM volumes (long format) and QC numbers.
    seg_figure, reg_figure
        QC figures (SVG).
    """
    gm_atlases = atlas_choices("gm")
    if settings.gm_atlas not in gm_atlases:
        raise UsageError(f"unknown GM atlas {settings.gm_atlas!r}; use one of "
                         f"{', '.join(gm_atlases)}")
    t1w = Path(t1w)
    img = io.load_t1w(t1w)
    warning = io.anisotropy_warning(img, name=str(t1w))
    if warning:
        LOGGER.warning(warning)
    template = get_template(TEMPLATE, res=ANAT_TEMPLATE_RES, suffix="T1w", data_dir=data_dir)
    template_mask = get_template(TEMPLATE, res=ANAT_TEMPLATE_RES, suffix="mask", desc="brain",
                                 data_dir=data_dir)
    priors = get_tissue_priors(TEMPLATE, res=TISSUE_PRIOR_RES, data_dir=data_dir)
    atlas = get_atlas(settings.gm_atlas, res=GM_ATLAS_RES, data_dir=data_dir)
    if atlas.kind != "dseg" or atlas.labels is None:
        raise UsageError(f"GM atlas {settings.gm_atlas!r} is not a label (dseg) atlas")
    label_records = [
        {"index": int(r["index"]), "hemisphere": str(r["hemisphere"]),
         "region": str(r["region"])} for r in atlas.labels.to_dict("records")]

    workflow = pe.Workflow(name=name)

    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w"]), name="inputnode")
    inputnode.inputs.t1w = str(t1w)
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    t1w_preproc = pe.Node(ia.T1wPreproc(), name="t1w_preproc", n_procs=omp_nthreads)
    register = pe.Node(ia.RegisterToTemplate(template=str(template), seed=settings.seed),
                       name="register", n_procs=omp_nthreads)
    mask_to_t1w = pe.Node(ia.ApplyTransform(in_file=str(template_mask),
                                            interpolation="linear"), name="mask_to_t1w")
    brain_mask = pe.Node(ia.RefineBrainMask(), name="brain_mask")
    priors_to_t1w = pe.MapNode(ia.ApplyTransform(interpolation="linear"),
                               iterfield=["in_file"], name="priors_to_t1w")
    priors_to_t1w.inputs.in_file = [str(priors[t]) for t in TISSUES]  # the order `segment` reads
    brain_n4 = pe.Node(ia.BrainBiasCorrect(), name="brain_n4", n_procs=omp_nthreads)
    segment = pe.Node(ia.TissueSegmentation(), name="segment",
                      n_procs=omp_nthreads)
    atlas_to_t1w = pe.Node(ia.ApplyTransform(in_file=str(atlas.images[("all", "bilateral")]),
                                             interpolation="nearestNeighbor"),
                           name="atlas_to_t1w")
    gm_volumes = pe.Node(ia.GMVolumes(label_table=label_records, groups=dict(atlas.groups),
                                      atlas=settings.gm_atlas), name="gm_volumes")
    anat_qc = pe.Node(ia.AnatQC(template=str(template), template_mask=str(template_mask)),
                      name="anat_qc")

    workflow.connect([
        (inputnode, t1w_preproc, [("t1w", "in_file")]),
        (t1w_preproc, register, [("out_file", "moving")]),
        (t1w_preproc, mask_to_t1w, [("out_file", "reference")]),
        (register, mask_to_t1w, [("inverse_xfm", "transform")]),
        (t1w_preproc, brain_mask, [("out_file", "in_file")]),
        (mask_to_t1w, brain_mask, [("out_file", "prior")]),
        (t1w_preproc, brain_n4, [("out_file", "in_file")]),
        (brain_mask, brain_n4, [("out_file", "mask")]),
        (brain_n4, segment, [("out_file", "in_file")]),
        (brain_mask, segment, [("out_file", "mask")]),
        (t1w_preproc, priors_to_t1w, [("out_file", "reference")]),
        (register, priors_to_t1w, [("inverse_xfm", "transform")]),
        (priors_to_t1w, segment, [("out_file", "priors")]),
        (t1w_preproc, atlas_to_t1w, [("out_file", "reference")]),
        (register, atlas_to_t1w, [("inverse_xfm", "transform")]),
        (segment, gm_volumes, [("gm", "gm"), ("wm", "wm"), ("csf", "csf")]),
        (atlas_to_t1w, gm_volumes, [("out_file", "labels")]),
        (brain_mask, gm_volumes, [("out_file", "brain_mask")]),
        (t1w_preproc, anat_qc, [("out_file", "t1w")]),
        (brain_mask, anat_qc, [("out_file", "brain_mask")]),
        (segment, anat_qc, [("dseg", "dseg")]),
        (gm_volumes, anat_qc, [("tissue_json", "tissue_json")]),
        (register, anat_qc, [("warped", "warped")]),
        (t1w_preproc, outputnode, [("out_file", "t1w_preproc")]),
        (brain_mask, outputnode, [("out_file", "brain_mask")]),
        (segment, outputnode, [("gm", "gm_probseg"), ("wm", "wm_probseg"),
                               ("csf", "csf_probseg"), ("dseg", "dseg")]),
        (register, outputnode, [("forward_xfm", "t1w2mni_xfm"),
                                ("inverse_xfm", "mni2t1w_xfm"), ("warped", "t1w_mni")]),
        (atlas_to_t1w, outputnode, [("out_file", "atlas_t1w")]),
        (gm_volumes, outputnode, [("out_tsv", "volumes_tsv")]),
        (anat_qc, outputnode, [("out_tsv", "qc_tsv"), ("seg_figure", "seg_figure"),
                               ("reg_figure", "reg_figure")]),
    ])
    _connect_sinks(workflow, outputnode, t1w=str(t1w), output_dir=Path(output_dir),
                   atlas=settings.gm_atlas, atlas_citation=atlas.citation)
    return workflow


def _connect_sinks(workflow: pe.Workflow, outputnode: pe.Node, *, t1w: str, output_dir: Path,
                   atlas: str, atlas_citation: str) -> None:
    """One ``ds_<what>`` DerivativesDataSink per output, wired from the outputnode.

    ``overwrite=True``: a sink always runs, so a resumed run restores deleted outputs.
    """
    extra = {
        "atlas_t1w": {"entities": {"atlas": atlas},
                      "meta": {"Atlas": atlas, "References": atlas_citation}},
        "volumes_tsv": {"meta": {"Atlas": atlas, "References": atlas_citation}},
    }
    for field, output in ANAT_OUTPUTS.items():
        run = extra.get(field, {})
        sink = pe.Node(DerivativesDataSink(base_directory=str(output_dir), source_file=t1w,
                                           **run.get("entities", {}),
                                           **output.sink_inputs(**run.get("meta", {}))),
                       name=f"ds_{field}", run_without_submitting=True, overwrite=True)
        workflow.connect(outputnode, field, sink, "in_file")
