"""Anatomical branch: N4, MNI registration, brain mask, tissues, atlas GM volumes, QC."""

from __future__ import annotations

import logging
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_app.atlases.api import get_atlas, get_template
from bids_app.core.anat import io
from bids_app.core.anat.segmentation import DSEG_LABELS
from bids_app.core.anat.volumes import VOLUMES_DATA_DICTIONARY
from bids_app.errors import UsageError
from bids_app.interfaces import anat as ia
from bids_app.interfaces.bids import DerivativesDataSink
from bids_app.settings import GM_ATLASES, AnatSettings

LOGGER = logging.getLogger("nipype.workflow")

TEMPLATE = "MNI152NLin6Asym"
#: Registration runs at the 2 mm template grid (fast, adequate for 1-2 mm T1w).
TEMPLATE_RES = 2
#: Label atlases are warped from their 1 mm version (finer boundaries in T1w space).
ATLAS_RES = 1

OUTPUT_FIELDS = ["t1w_preproc", "brain_mask", "gm_probseg", "wm_probseg", "csf_probseg",
                 "dseg", "t1w2mni_xfm", "mni2t1w_xfm", "t1w_mni", "atlas_t1w", "volumes_tsv",
                 "qc_tsv", "seg_figure", "reg_figure"]

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
    if settings.gm_atlas not in GM_ATLASES:
        raise UsageError(f"unknown GM atlas {settings.gm_atlas!r}; use one of "
                         f"{', '.join(GM_ATLASES)}")
    t1w = Path(t1w)
    img = io.load_t1w(t1w)
    warning = io.anisotropy_warning(img, name=str(t1w))
    if warning:
        LOGGER.warning(warning)
    template = get_template(TEMPLATE, res=TEMPLATE_RES, suffix="T1w", data_dir=data_dir)
    template_mask = get_template(TEMPLATE, res=TEMPLATE_RES, suffix="mask", desc="brain",
                                 data_dir=data_dir)
    atlas = get_atlas(settings.gm_atlas, res=ATLAS_RES, data_dir=data_dir)
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
    brain_mask = pe.Node(ia.BrainMask(), name="brain_mask")
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
        (t1w_preproc, segment, [("out_file", "in_file")]),
        (brain_mask, segment, [("out_file", "mask")]),
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
    """One ``ds_<what>`` DerivativesDataSink per output, wired from the outputnode."""
    base = str(output_dir)
    tpl_meta = {"Template": TEMPLATE, "Resolution": f"{TEMPLATE_RES} mm"}
    xfm = {"datatype": "anat", "mode": "image", "suffix": "xfm", "extension": ".h5"}
    specs = {
        "t1w_preproc": {"datatype": "anat", "desc": "preproc", "suffix": "T1w",
                        "meta_dict": {"SkullStripped": False,
                                      "Description": "RAS+ reoriented, N4 bias-corrected"}},
        "brain_mask": {"datatype": "anat", "desc": "brain", "suffix": "mask",
                       "meta_dict": {"Type": "Brain"}},
        "gm_probseg": {"datatype": "anat", "label": "GM", "suffix": "probseg"},
        "wm_probseg": {"datatype": "anat", "label": "WM", "suffix": "probseg"},
        "csf_probseg": {"datatype": "anat", "label": "CSF", "suffix": "probseg"},
        "dseg": {"datatype": "anat", "suffix": "dseg",
                 "meta_dict": {"Labels": {str(k): v for k, v in DSEG_LABELS.items()}}},
        "t1w2mni_xfm": {**xfm, "from_space": "T1w", "to_space": TEMPLATE},
        "mni2t1w_xfm": {**xfm, "from_space": TEMPLATE, "to_space": "T1w"},
        "t1w_mni": {"datatype": "anat", "space": TEMPLATE, "res": str(TEMPLATE_RES),
                    "desc": "preproc", "suffix": "T1w", "meta_dict": tpl_meta},
        "atlas_t1w": {"datatype": "anat", "atlas": atlas, "suffix": "dseg",
                      "meta_dict": {"Atlas": atlas, "Interpolation": "nearest neighbour",
                                    "References": atlas_citation}},
        "volumes_tsv": {"datatype": "anat", "desc": "gmvolume", "suffix": "morph",
                        "meta_dict": {**VOLUMES_DATA_DICTIONARY, "Atlas": atlas,
                                      "References": atlas_citation}},
        "qc_tsv": {"datatype": "anat", "desc": "anat", "suffix": "qc",
                   "meta_dict": _QC_DICTIONARY},
        "seg_figure": {"datatype": "figures", "desc": "seg", "suffix": "T1w"},
        "reg_figure": {"datatype": "figures", "space": TEMPLATE, "desc": "reg", "suffix": "T1w"},
    }
    for field, spec in specs.items():
        sink = pe.Node(DerivativesDataSink(base_directory=base, source_file=t1w, **spec),
                       name=f"ds_{field}", run_without_submitting=True)
        workflow.connect(outputnode, field, sink, "in_file")


_QC_DICTIONARY = {
    "brain_volume_cm3": {"Description": "Brain-mask volume", "Units": "cm^3"},
    "tiv_cm3": {"Description": "Total intracranial volume (GM + WM + CSF)", "Units": "cm^3"},
    "gm_cm3": {"Description": "Gray-matter volume", "Units": "cm^3"},
    "wm_cm3": {"Description": "White-matter volume", "Units": "cm^3"},
    "csf_cm3": {"Description": "CSF volume in the brain mask", "Units": "cm^3"},
    "gm_fraction": {"Description": "GM volume / TIV"},
    "wm_fraction": {"Description": "WM volume / TIV"},
    "csf_fraction": {"Description": "CSF volume / TIV"},
    "registration_similarity": {"Description": "Pearson correlation of the T1w warped to "
                                               "MNI152NLin6Asym with the template inside the "
                                               "template brain mask"},
}
