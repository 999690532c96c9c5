"""Every participant-level output, declared once as data.

Writers (the ``ds_*`` nodes of :mod:`bids_app.workflows`) and readers (:mod:`bids_app.group`,
:mod:`bids_app.simulate.recovery`) both take names, entities and sidecar fields from here;
nothing else spells an output name. The diffusion parameter maps are declared with their
model in :data:`bids_app.bids.models.DWI_MODELS` (re-exported here): a new map or model is
one entry there plus the core function that computes it; the fit node, its sinks, the
tract/ROI table and the outputnode follow from the entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bids_app.bids.derivatives import ENTITY_ORDER
from bids_app.bids.models import DWI_MODELS, ParamMap
from bids_app.core.anat.segmentation import DSEG_LABELS
from bids_app.core.tables import PROFILE_COLUMNS, STATS_COLUMNS
from bids_app.settings import ANAT_TEMPLATE_RES, TEMPLATE

__all__ = ["ANAT_OUTPUTS", "ANAT_STATS", "BUNDLE_OUTPUTS", "DWI_MODELS", "DWI_OUTPUTS",
           "DWI_PROFILES", "DWI_STATS", "GROUP_DIR", "GROUP_FIGURES", "GROUP_OUTPUTS",
           "PROFILE_COLUMNS", "STATS_COLUMNS", "Output", "ParamMap",
           "bundle_output", "dwi_map_output", "feature_name", "stats_dictionary",
           "summarised_maps"]


@dataclass(frozen=True)
class Output:
    """One derivative file: where it goes and what its sidecar says.

    ``entities`` use the long names of :data:`bids_app.bids.derivatives.ENTITY_ORDER`;
    ``extension`` ``None`` keeps the extension of the produced file.
    """

    datatype: str
    suffix: str
    entities: Mapping[str, str] = field(default_factory=dict)
    extension: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def sink_inputs(self, **meta: Any) -> dict[str, Any]:
        """Keyword arguments of a DerivativesDataSink writing this output.

        ``meta`` adds run-dependent sidecar fields (atlas, thresholds) to the declared ones.
        """
        kwargs: dict[str, Any] = {"datatype": self.datatype, "suffix": self.suffix,
                                  **self.entities}
        if self.extension:
            kwargs["extension"] = self.extension
        sidecar = {**self.meta, **meta}
        if sidecar:
            kwargs["meta_dict"] = sidecar
        return kwargs

    def glob(self) -> str:
        """File-name pattern of this output for any participant (``*_desc-x_suffix.ext``)."""
        middle = "".join(f"_{short}-{self.entities[long]}" for long, short in ENTITY_ORDER
                         if long in self.entities)
        return f"*{middle}_{self.suffix}{self.extension or ''}"


# --------------------------------------------------------------------------- diffusion maps
# The models and their maps are declared in bids_app.bids.models (DWI_MODELS).


def summarised_maps(model: str) -> tuple[str, ...]:
    """Maps of ``model`` that enter the tract/ROI statistics table, in order."""
    return tuple(k for k, v in DWI_MODELS[model].items() if v.level is not None)


def dwi_map_output(model: str, metric: str, *, model_description: str) -> Output:
    """The ``space-dwi_model-<model>_param-<param>_dwimap`` output of one declared map."""
    spec = DWI_MODELS[model][metric]
    return Output("dwi", "dwimap", {"space": "dwi", "model": model,
                                    "param": spec.param or metric},
                  meta={"Model": model_description, "Description": spec.description,
                        "Units": spec.units})


def stats_dictionary(models: Sequence[str], *, tract_atlas: str, roi_atlas: str
                     ) -> dict[str, Any]:
    """JSON data dictionary of the ``*_dwistats.tsv`` columns (metric levels and units from
    the declarations of the fitted ``models``, atlas names from the run)."""
    maps = {k: v for model in models for k, v in DWI_MODELS[model].items()
            if v.level is not None}
    units: dict[str, list[str]] = {}
    for name, spec in maps.items():
        units.setdefault("unitless" if spec.units == "arbitrary" else spec.units,
                         []).append(name.upper())
    return {
        "atlas": {"Description": f"Atlas the region comes from ({tract_atlas} tracts, "
                                 f"{roi_atlas} labels)."},
        "region": {"Description": "Canonical region name (region names of the atlas manifest, "
                                  "bids_app/data/atlases.yaml)."},
        "hemisphere": {"Description": "L, R or bilateral.", "Levels": {
            "L": "left", "R": "right", "bilateral": "midline or both hemispheres"}},
        "metric": {"Description": f"Diffusion metric ({', '.join(models)} models).",
                   "Levels": {k: v.level for k, v in maps.items()}},
        "statistic": {"Description": "Summary statistic.", "Levels": {
            "wmean": "tract-probability-weighted mean over the brain mask",
            "mean": "mean over voxels with tract probability > threshold, or inside the "
                    "label",
            "bundle": "streamline-density-weighted mean over the participant's own bundle "
                      "(RecoBundles); n/a when the bundle was not recognised"}},
        "value": {"Description": "Value of the statistic; n/a when no voxel is available.",
                  "Units": "; ".join(f"{'/'.join(names)} {unit}"
                                     for unit, names in units.items())},
        "n_voxels": {"Description": "Native DWI voxels contributing (p > 0 for wmean, "
                                    "crossed by the bundle for bundle, "
                                    "p > threshold or in label for mean)."},
    }


# --------------------------------------------------------------------------- tables
#: The participant metrics tables the group level reads (columns :data:`STATS_COLUMNS`).
DWI_STATS = Output("dwi", "dwistats", {"desc": "tracts"}, ".tsv")
ANAT_STATS = Output("anat", "morph", {"desc": "gmvolume"}, ".tsv")
#: Profile table sidecar: what each column means.
PROFILES_DICTIONARY: Mapping[str, Any] = MappingProxyType({
    "atlas": {"Description": "Atlas of the model bundles recognised in the participant "
                             "(RecoBundles)."},
    "region": {"Description": "Canonical tract name."},
    "hemisphere": {"Description": "L or R."},
    "metric": {"Description": "Diffusion metric sampled along the bundle."},
    "node": {"Description": "Node along the bundle (equidistant points of every streamline); "
                            "node 0 at the inferior end (brainstem for the corticospinal, "
                            "striatum / thalamus for the corticostriatal / corticothalamic "
                            "tracts)."},
    "value": {"Description": "Gaussian-weighted mean over the bundle's streamlines at the node "
                             "(dipy afq_profile); n/a when the bundle was not recognised."},
    "n_streamlines": {"Description": "Streamlines of the recognised bundle."},
})

#: Bundle QC table sidecar.
BUNDLES_QC_DICTIONARY: Mapping[str, Any] = MappingProxyType({
    "n_streamlines": {"Description": "Streamlines RecoBundles assigned to the bundle"},
    "recognised": {"Description": "True when at least the minimum number of streamlines "
                                  "was found; otherwise the bundle metrics are n/a"},
    "directions": {"Description": "Fibre-direction model of the tracking (tensor or csd)"},
    "n_unique_directions": {"Description": "Unique diffusion gradient directions"},
    "tractogram_streamlines": {"Description": "Streamlines of the whole-brain tractogram"},
})


def bundle_output(region: str, hemisphere: str) -> Output:
    """The recognised streamlines of one bundle (``.trk``, native DWI world mm)."""
    return Output("dwi", "tractography", {"hemi": hemisphere, "label": region,
                                          "desc": "bundle"}, ".trk")


#: Along-tract profiles of each recognised bundle: a tidy table with the columns
#: :data:`PROFILE_COLUMNS`, one row per atlas/region/hemisphere/metric/node (node 0 at the
#: inferior/brainstem end).
DWI_PROFILES = Output("dwi", "dwistats", {"desc": "profiles"}, ".tsv", meta=PROFILES_DICTIONARY)


def feature_name(atlas: str, region: str, hemisphere: str, metric: str, statistic: str) -> str:
    """Column name of one imaging feature in the group tables.

    >>> feature_name("hcp842", "cst", "L", "fa", "wmean")
    'hcp842_cst_L_fa_wmean'
    """
    return f"{atlas}_{region}_{hemisphere}_{metric}_{statistic}"


# --------------------------------------------------------------------------- DWI outputs
#: DWI outputs other than the parameter maps, keyed by the diffusion workflow's outputnode
#: field. Run-dependent sidecar fields are added by the workflow.
DWI_OUTPUTS: Mapping[str, Output] = MappingProxyType({
    "dwi_preproc": Output("dwi", "dwi", {"desc": "preproc"}, meta={"SkullStripped": False}),
    # BIDS allows .bval/.bvec only under the raw dwi rule (no desc entity); by inheritance
    # sub-X_dwi.bval applies to sub-X_desc-preproc_dwi.nii.gz.
    # BIDS has no derivative rule for gradient files: named like the image they belong to
    # (as QSIPrep does) and listed in the .bidsignore.
    "bval": Output("dwi", "dwi", {"desc": "preproc"}),
    "bvec": Output("dwi", "dwi", {"desc": "preproc"}),
    # no space entity: native DWI space like the preprocessed DWI (space-dwi, a non-standard
    # space, would require a per-subject SpatialReference).
    "mask": Output("dwi", "mask", {"desc": "brain"}, meta={"Type": "Brain"}),
    "motion": Output("dwi", "motion", {"desc": "dwi"}, ".tsv", meta={"Units": {
        "trans": "mm", "rot": "rad", "framewise_displacement": "mm"}}),
    "xfm_to_template": Output("dwi", "xfm", {"from_space": "dwi", "to_space": TEMPLATE,
                                             "mode": "image"}),
    "xfm_from_template": Output("dwi", "xfm", {"from_space": TEMPLATE, "to_space": "dwi",
                                               "mode": "image"}),
    "stats": DWI_STATS,
    "qc": Output("dwi", "qc", {"desc": "dwi"}, ".tsv"),
    "fig_tracts": Output("figures", "dwi", {"desc": "tracts"}),
    "fig_reg": Output("figures", "dwi", {"space": TEMPLATE, "desc": "reg"}),
    "fig_motion": Output("figures", "dwi", {"desc": "motion"}),
    "fig_sdc": Output("figures", "dwi", {"desc": "sdc"}),
})

#: Outputs of the tractometry step (``--bundles``), keyed by its outputnode field; the
#: bundles themselves are declared per tract by :func:`bundle_output`.
BUNDLE_OUTPUTS: Mapping[str, Output] = MappingProxyType({
    "profiles": DWI_PROFILES,
    "bundle_qc": Output("dwi", "qc", {"desc": "bundles"}, ".tsv",
                        meta=BUNDLES_QC_DICTIONARY),
    "fig_bundles": Output("figures", "dwi", {"desc": "bundles"}),
    "fig_profiles": Output("figures", "dwi", {"desc": "profiles"}),
})


# --------------------------------------------------------------------------- anat outputs
ANAT_QC_DICTIONARY: Mapping[str, Any] = MappingProxyType({
    "brain_volume_cm3": {"Description": "Brain-mask volume", "Units": "cm^3"},
    "tiv_cm3": {"Description": "Total intracranial volume (GM + WM + CSF)", "Units": "cm^3"},
    "gm_cm3": {"Description": "Gray-matter volume", "Units": "cm^3"},
    "wm_cm3": {"Description": "White-matter volume", "Units": "cm^3"},
    "csf_cm3": {"Description": "CSF volume in the brain mask", "Units": "cm^3"},
    "gm_fraction": {"Description": "GM volume / TIV"},
    "wm_fraction": {"Description": "WM volume / TIV"},
    "csf_fraction": {"Description": "CSF volume / TIV"},
    "registration_similarity": {"Description": "Pearson correlation of the T1w warped to "
                                               f"{TEMPLATE} with the template inside the "
                                               "template brain mask"},
})

VOLUMES_DICTIONARY: Mapping[str, Any] = MappingProxyType({
    "atlas": {"Description": "Gray-matter label atlas warped to T1w space (nearest neighbour)"},
    "region": {"Description": "Canonical region name; total_gm = whole-brain GM, tiv = total "
                              "intracranial volume (GM + WM + CSF)"},
    "hemisphere": {"Description": "Hemisphere", "Levels": {"L": "left", "R": "right",
                                                           "bilateral": "both/whole brain"}},
    "metric": {"Description": "Measured quantity", "Levels": {
        "gmv": "gray-matter volume = sum of GM probability x voxel volume",
        "gmv_pct_tiv": "gray-matter volume divided by TIV",
        "tiv": "total intracranial volume = GM + WM + CSF volume in the brain mask"}},
    "statistic": {"Description": "How voxels are summarised", "Levels": {
        "sum": "sum over the region's voxels", "ratio": "ratio of two sums"}},
    "value": {"Description": "Value of the metric; gmv and tiv in mm^3, gmv_pct_tiv in percent"},
    "n_voxels": {"Description": "Number of T1w voxels in the region (brain mask for total_gm "
                                "and tiv)"},
})

#: Anatomical outputs keyed by the anatomical workflow's outputnode field.
ANAT_OUTPUTS: Mapping[str, Output] = MappingProxyType({
    "t1w_preproc": Output("anat", "T1w", {"desc": "preproc"},
                          meta={"SkullStripped": False,
                                "Description": "RAS+ reoriented, N4 bias-corrected"}),
    "brain_mask": Output("anat", "mask", {"desc": "brain"}, meta={"Type": "Brain"}),
    "gm_probseg": Output("anat", "probseg", {"label": "GM"}),
    "wm_probseg": Output("anat", "probseg", {"label": "WM"}),
    "csf_probseg": Output("anat", "probseg", {"label": "CSF"}),
    "dseg": Output("anat", "dseg", meta={"Labels": {str(k): v for k, v in DSEG_LABELS.items()}}),
    "t1w2mni_xfm": Output("anat", "xfm", {"from_space": "T1w", "to_space": TEMPLATE,
                                          "mode": "image"}, ".h5"),
    "mni2t1w_xfm": Output("anat", "xfm", {"from_space": TEMPLATE, "to_space": "T1w",
                                          "mode": "image"}, ".h5"),
    "t1w_mni": Output("anat", "T1w", {"space": TEMPLATE, "res": str(ANAT_TEMPLATE_RES),
                                      "desc": "preproc"},
                      meta={"SkullStripped": False, "Template": TEMPLATE,
                            "Resolution": f"{ANAT_TEMPLATE_RES} mm"}),
    "atlas_t1w": Output("anat", "dseg", meta={"Interpolation": "nearest neighbour"}),
    "volumes_tsv": Output("anat", "morph", {"desc": "gmvolume"}, ".tsv",
                          meta=VOLUMES_DICTIONARY),
    "qc_tsv": Output("anat", "qc", {"desc": "anat"}, ".tsv", meta=ANAT_QC_DICTIONARY),
    "seg_figure": Output("figures", "T1w", {"desc": "seg"}),
    "reg_figure": Output("figures", "T1w", {"space": TEMPLATE, "desc": "reg"}),
})


# --------------------------------------------------------------------------- group outputs
#: Directory of the group outputs under OUTPUT_DIR.
GROUP_DIR = "group"
#: File names under OUTPUT_DIR/group/ (each TSV has a .json sidecar next to it).
GROUP_OUTPUTS: Mapping[str, str] = MappingProxyType({
    "joined": "group_desc-joined_participants.tsv",
    "inclusion": "group_desc-inclusion_participants.tsv",
    "comparisons": "group_desc-comparisons_stats.tsv",
    "clinical": "group_desc-clinical_correlations.tsv",
    "duration": "group_desc-duration_correlations.tsv",
    "gmtract": "group_desc-gmtract_stats.tsv",
    "interhemispheric": "group_desc-interhemispheric_stats.tsv",
    # along-tract profiles: written only when participant profile tables exist
    "profiles": "group_desc-profiles_stats.tsv",
    "profile_segments": "group_desc-profilesegments_stats.tsv",
    "profile_means": "group_desc-profilemeans_stats.tsv",
    # Table 1 and per-participant z-scores: written when their analysis ran
    "demographics": "group_desc-demographics_stats.tsv",
    "zscores": "group_desc-zscores_participants.tsv",
    # the seeds' further analyses: written when their analysis ran
    "sidescores": "group_desc-sidescores_correlations.tsv",
    "onset": "group_desc-onset_stats.tsv",
    "tractcorr": "group_desc-tractcorrelations_stats.tsv",
    # site harmonisation: written when a site column names >= 2 sites
    "harmonisation": "group_desc-harmonisation_stats.tsv",
    "harmonised": "group_desc-harmonised_participants.tsv",
    # longitudinal analyses: written when participants have >= 2 timed sessions
    "change": "group_desc-change_participants.tsv",
    "longitudinal": "group_desc-longitudinal_stats.tsv",
    "progression": "group_desc-progression_correlations.tsv",
    "spec": "group_desc-analysis_spec.json",
    "report": "report.html",
})
#: Figures under OUTPUT_DIR/group/ (drawn when the data give something to show).
GROUP_FIGURES: Mapping[str, str] = MappingProxyType({
    "boxplots": "figures/group_desc-comparisons_boxplot.png",
    "heatmap": "figures/group_desc-comparisons_heatmap.png",
    "model_heatmap": "figures/group_desc-modelcomparisons_heatmap.png",
    "scatter": "figures/group_desc-clinical_scatter.png",
    "clinical_heatmap": "figures/group_desc-clinical_heatmap.png",
    "profiles": "figures/group_desc-profiles_lineplot.png",
    "profile_clinical": "figures/group_desc-profilesclinical_lineplot.png",
    "duration_scatter": "figures/group_desc-duration_scatter.png",
    "gmtract_matrix": "figures/group_desc-gmtract_heatmap.png",
    "tractcorr": "figures/group_desc-tractcorrelations_heatmap.png",
    "onset_boxplots": "figures/group_desc-onset_boxplot.png",
    "sidescores": "figures/group_desc-sidescores_heatmap.png",
    "harmonisation_scatter": "figures/group_desc-harmonisation_scatter.png",
    "longitudinal_lineplot": "figures/group_desc-longitudinal_lineplot.png",
})
