"""Methods boilerplate (``logs/CITATION.md``) assembled from the ``boilerplate/`` templates."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from importlib import metadata, resources
from string import Template

from bids_app import __version__
from bids_app.atlases import api
from bids_app.bids.model_plan import selected_models
from bids_app.bids.models import DWI_MODELS
from bids_app.bids.plan import (
    MPPCA_MIN_SNR,
    NO_SDC,
    DenoisePlan,
    DwiUnit,
    ParticipantPlan,
    SdcPlan,
)
from bids_app.core.anat.segmentation import PARTIAL_VOLUME, PRIOR_WEIGHT
from bids_app.core.dwi.bundles import RECOGNITION_DEFAULTS
from bids_app.core.dwi.motion import MOTION_MIN_DISPLACEMENT, MOTION_TRANSFORM
from bids_app.core.dwi.tractography import CSD_MIN_DIRECTIONS, TRACKING_DEFAULTS
from bids_app.core.dwi.tractometry import PROFILE_NODES
from bids_app.settings import (
    ANAT_TEMPLATE_RES,
    BUNDLE_ATLAS,
    DENOISE_AUTO,
    TEMPLATE,
    TISSUE_PRIORS,
    Settings,
)

_CITE = re.compile(r"@([A-Za-z0-9_]+)")
_ENTRY = re.compile(r"@(\w+)\{([^,]+),(.*?)\n\}", re.DOTALL)
_FIELD = re.compile(r"(\w+)\s*=\s*\{(.*?)\},?\s*(?=\w+\s*=|$)", re.DOTALL)

_DENOISE = {
    "mppca": "Noise was removed with Marchenko-Pastur PCA denoising [@veraart2016] (DIPY).",
    "patch2self": "Noise was removed with Patch2Self [@fadnavis2020] (DIPY).",
    "none": "No denoising was applied.",
}
_MOTION_MODEL = {"Rigid": "rigid-body (6 degrees of freedom)",
                 "Affine": "affine (12 degrees of freedom)"}
FA_TEMPLATE = "fa-template"


def library_versions() -> dict[str, str]:
    """Installed versions of alsmri and its core libraries."""
    versions = {"alsmri": __version__}
    for dist in ("nipype", "pybids", "dipy", "antspyx", "nibabel", "templateflow", "numpy",
                 "scipy", "pandas", "statsmodels", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _template(name: str) -> Template:
    return Template(resources.files("bids_app.boilerplate").joinpath(name).read_text())


def load_references() -> dict[str, str]:
    """Formatted reference strings keyed by BibTeX key (from ``references.bib``)."""
    text = resources.files("bids_app.boilerplate").joinpath("references.bib").read_text()
    refs = {}
    for _kind, key, body in _ENTRY.findall(text):
        fields = {k.lower(): " ".join(v.split()) for k, v in _FIELD.findall(body.strip())}
        parts = [fields.get("author", ""), f"({fields['year']})" if "year" in fields else "",
                 fields.get("title", "") + ".",
                 fields.get("journal", fields.get("booktitle", fields.get("howpublished", "")))]
        if "volume" in fields:
            parts.append(f"{fields['volume']}" + (f":{fields['pages']}" if "pages" in fields
                                                  else ""))
        if "doi" in fields:
            parts.append(f"doi:{fields['doi']}")
        refs[key.strip()] = " ".join(p for p in parts if p).strip()
    return refs


def used_resources(settings: Settings, *, has_dwi: bool, has_anat: bool) -> list[str]:
    """Manifest names of the templates and atlases a run uses, in order of first use."""
    names: list[str] = []
    if has_dwi:
        names += [FA_TEMPLATE, TEMPLATE, settings.dwi.tract_atlas, settings.dwi.roi_atlas]
        if settings.dwi.bundles:
            names.append(BUNDLE_ATLAS)
    if has_anat:
        names += [TEMPLATE, TISSUE_PRIORS, settings.anat.gm_atlas]
    return list(dict.fromkeys(names))


def render_citation(settings: Settings, plans: Sequence[ParticipantPlan], *,
                    versions: Mapping[str, str] | None = None) -> str:
    """Render the methods text with numbered references.

    Parameters
    ----------
    settings
        The run settings (options change the text).
    plans
        The participant plans of the run (:func:`bids_app.bids.plan.plan_participant`): who
        is processed, which branches run and which distortion correction each DWI unit gets.
    versions
        Library versions (default :func:`library_versions`).

    Returns
    -------
    str
        Markdown: methods, references (BibTeX entries and the atlas manifest's citations),
        the templates and atlases used with their licences, acknowledgements, versions.
    """
    has_dwi = any(plan.dwi_units for plan in plans)
    has_anat = any(plan.t1w is not None for plan in plans)
    sdc_plans = [unit.sdc for plan in plans for unit in plan.dwi_units]
    versions = dict(versions or library_versions())
    dwi, anat = settings.dwi, settings.anat
    credits = api.credits(used_resources(settings, has_dwi=has_dwi, has_anat=has_anat))
    refs = load_references()
    cite = _credit_keys(credits, refs)
    label = {c.name: c.label for c in credits}
    values = {
        "alsmri_version": versions["alsmri"], "nipype_version": versions["nipype"],
        "pybids_version": versions["pybids"], "dipy_version": versions["dipy"],
        "ants_version": versions["antspyx"], "nibabel_version": versions["nibabel"],
        "validation": "BIDS validation skipped" if settings.execution.skip_bids_validation
        else "with BIDS validation",
        "participants": ", ".join(plan.label for plan in plans) or "none",
        "b0_threshold": f"{dwi.b0_threshold:g}",
        "denoise_text": _denoise_text(dwi.denoise, [unit.denoise for plan in plans
                                                     for unit in plan.dwi_units]),
        "unringing_text": _unringing_text(dwi.unringing),
        "motion_text": _motion_text(dwi.motion_correction),
        "runs_text": _runs_text(dwi.dwi_runs),
        "sdc_text": _sdc_text(dwi.sdc, sdc_plans, dwi_runs=dwi.dwi_runs),
        "models_text": _models_text(settings, [u for plan in plans for u in plan.dwi_units]),
        "metrics_text": _metrics_text(settings, [u for plan in plans
                                                 for u in plan.dwi_units]),
        "tract_threshold": f"{dwi.tract_threshold:g}",
        "bundles_text": _bundles_text(dwi.bundles, label.get(BUNDLE_ATLAS, BUNDLE_ATLAS),
                                      cite.get(BUNDLE_ATLAS, "")),
        "mni_cite": cite.get(TEMPLATE, ""),
        "priors_cite": cite.get(TISSUE_PRIORS, ""),
        "anat_template_res": str(ANAT_TEMPLATE_RES),
        "prior_weight": f"{PRIOR_WEIGHT:g}",
        "volume_text": _volume_text(PARTIAL_VOLUME),
    }
    for field, name in (("fa_template", FA_TEMPLATE), ("tract_atlas", dwi.tract_atlas),
                        ("roi_atlas", dwi.roi_atlas), ("gm_atlas", anat.gm_atlas)):
        values[f"{field}_name"] = label.get(name, name)
        values[f"{field}_cite"] = cite.get(name, "")
    sections = [_template("general.md").substitute(values)]
    if has_dwi:
        sections.append(_template("dwi.md").substitute(values))
    if has_anat:
        sections.append(_template("anat.md").substitute(values))
    if settings.execution.analysis_level == "group":
        sections.append(_template("group.md").substitute(values))
    body = "\n\n".join(_tidy(s) for s in sections)
    order: list[str] = []
    for key in _CITE.findall(body) + _CITE.findall(" ".join(cite.values())):
        if key in refs and key not in order:
            order.append(key)

    def _number(match: re.Match) -> str:
        keys = [k.strip().lstrip("@") for k in match.group(1).split(";")]
        return "[" + ", ".join(str(order.index(k) + 1) for k in keys if k in order) + "]"

    body = re.sub(r"\[(@[^\]]+)\]", _number, body)
    lines = ["# Methods (alsmri boilerplate)", "",
             ("The following text may be copied into a manuscript; it describes what was (or "
             "will be) run, with the versions used."), "", body, "", "## References", ""]
    lines += [f"{i}. {refs[k]}" for i, k in enumerate(order, 1)]
    if credits:
        lines += ["", "## Templates and atlases", ""]
        for credit in credits:
            numbers = re.sub(r"\[(@[^\]]+)\]", _number, cite.get(credit.name, ""))
            lines.append(f"- **{credit.name}** ({credit.kind}): {credit.description} "
                         f"References: {numbers or 'none listed'}. "
                         f"Licence: {credit.license or 'not stated'}; "
                         f"commercial use: {credit.commercial_use or 'not stated'}.")
    acks = list(dict.fromkeys(a for c in credits for a in c.acknowledgements))
    if acks:
        lines += ["", "## Acknowledgements", ""] + acks
    lines += ["", "## Software versions", ""]
    lines += [f"- {name} {ver}" for name, ver in versions.items()]
    return "\n".join(lines) + "\n"


def _credit_keys(credits, refs: dict[str, str]) -> dict[str, str]:
    """Add each resource's manifest references to ``refs``; resource name -> ``[@k; ...]``."""
    by_text = {text: key for key, text in refs.items()}
    out = {}
    for credit in credits:
        keys = []
        for text in credit.references:
            if text not in by_text:
                by_text[text] = f"manifest{len(by_text) + 1}"
                refs[by_text[text]] = text
            keys.append(by_text[text])
        out[credit.name] = "[" + "; ".join(f"@{k}" for k in keys) + "]" if keys else ""
    return out


def _tidy(text: str) -> str:
    # Switched-off steps leave empty placeholders: collapse the doubled spaces they leave.
    text = re.sub(r"[ \t]{2,}", " ", text.strip())
    return re.sub(r"[ \t]*\n[ \t]*", "\n", text)


#: tract names in prose where the region key differs
_REGION_NAMES = {"cst": "corticospinal"}


def _pruning_text(r) -> str:
    names = " and ".join(_REGION_NAMES.get(x, x) for x in r.partial_regions)
    distance = "minimum average direct-flip distance" if r.pruning_distance == "mdf" else \
        "mean average minimum distance"
    if not names:
        return f" by {distance}"
    return (f" by {distance}; the {names} bundle, which tracking follows only in part, by "
            "mean average minimum distance")


def _cleaning_text(r) -> str:
    if r.clean_distance is None:
        return ""
    return (" Each bundle was then cleaned as in AFQ: streamlines with a node more than "
            f"{r.clean_distance:g} standard deviations (Mahalanobis) from the bundle core, or a "
            f"length more than {r.clean_length:g} standard deviations from the mean, were "
            "removed, iteratively [@yeatman2012].")


def _bundles_text(enabled: bool, atlas: str, atlas_cite: str) -> str:
    if not enabled:
        return ""
    p, r = TRACKING_DEFAULTS, RECOGNITION_DEFAULTS
    return (
        "Whole-brain deterministic tractography (dipy EuDX; principal directions of the tensor "
        f"below {CSD_MIN_DIRECTIONS} gradient directions, of constrained spherical "
        f"deconvolution otherwise) was seeded at {p.seeds_per_mm3:g} seeds/mm³ where FA > "
        f"{p.seed_fa:g} (step {p.step_size_mm:g} mm, maximum angle {p.max_angle:g}°, stopping "
        f"at FA < {p.stop_fa:g}, streamlines {p.min_length_mm:g}-{p.max_length_mm:g} mm) "
        "[@dipy]. The corticospinal, corticostriatal and corticothalamic bundles of each "
        f"hemisphere were recognised with RecoBundles [@garyfallidis2018] against the {atlas} "
        f"{atlas_cite} model bundles carried into native space by the FA registration "
        f"(pruning at {r.pruning_thr:g} mm{_pruning_text(r)}; fewer than "
        f"{r.min_streamlines} streamlines = not recognised, reported, with the atlas-based "
        f"values kept).{_cleaning_text(r)} In each recognised bundle "
        "the streamline-density-weighted mean of every map was computed, and "
        f"along-tract profiles at {PROFILE_NODES} nodes (node 0 at the inferior end) as "
        "Gaussian-weighted means over streamlines [@yeatman2012].")


def _volumes(unit: DwiUnit, shells: tuple[float, ...]) -> str:
    listed = "/".join(f"{b:g}" for b in shells or unit.shells) + " s/mm²"
    return f"the b=0 volumes and b = {listed}" if shells else \
        f"every volume (b=0 and b = {listed})"


def _models_text(settings: Settings, units: Sequence[DwiUnit]) -> str:
    """One sentence per selected model: the volumes it was fitted to, or why it was not."""
    dwi = settings.dwi
    parts = []
    for name in selected_models(dwi):
        model = DWI_MODELS[name]
        plans = [(u, p) for u in units for p in u.models if p.model == name]
        decided = [(u, p) for u, p in plans if p.decided]
        if not decided:  # planned without reading the images
            rule = model.shells
            limit = getattr(dwi, rule.max_b_option) if rule.max_b_option else rule.max_b
            volumes = ("the b=0 volumes and the shells with at least "
                       f"{rule.min_directions} directions"
                       + (f" at b <= {limit:g} s/mm²" if limit is not None else "")
                       + (" (every volume where there was none)" if rule.fallback_all
                          else f" (at least {rule.min_shells} such shells required)"))
            parts.append(model.methods_text(dwi, volumes=volumes))
            continue
        fitted = [(u, p) for u, p in decided if p.runs]
        if not fitted:
            notes = sorted({p.note.removeprefix("skipped: ") for _, p in decided})
            parts.append(f"The {name} model was not fitted: it " + "; ".join(notes) + ".")
            continue
        volumes = " or ".join(sorted({_volumes(u, p.shells) for u, p in fitted}))
        text = model.methods_text(dwi, volumes=volumes)
        warned = sorted({p.note for _, p in fitted if p.warn})
        if warned:
            text += " " + " ".join(f"{n[0].upper()}{n[1:]}." for n in warned)
        if len(fitted) < len(decided):
            text += (f" {len(decided) - len(fitted)} of {len(decided)} series did not meet "
                     "its requirements and were not fitted.")
        parts.append(text)
    return " ".join(parts)


def _metrics_text(settings: Settings, units: Sequence[DwiUnit]) -> str:
    fitted = {p.model for u in units for p in u.fitted_models} or {"tensor"}
    names = [m.upper() for name in selected_models(settings.dwi) if name in fitted
             for m, spec in DWI_MODELS[name].items() if spec.level is not None]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def _denoise_text(denoise: str, plans: Sequence[DenoisePlan | None]) -> str:
    if denoise != DENOISE_AUTO:
        return _DENOISE[denoise]
    resolved = [p for p in plans if p is not None and p.method is not None]
    rule = ("The denoising of each series was decided from its diffusion-weighted SNR (median "
            "brain signal of the lowest shell's direction-averaged image over the "
            "Marchenko-Pastur noise level of 5x5x5 patches): Marchenko-Pastur PCA denoising "
            f"[@veraart2016] (DIPY) when it was at least {MPPCA_MIN_SNR:g}, none below, where "
            "MP-PCA of magnitude data removes part of the direction dependence and lowers FA.")
    if not resolved:
        return rule
    snr = sorted(v for p in resolved for v in p.snr if not math.isnan(v))
    span = (f" (measured: {snr[0]:.1f}" + (f"-{snr[-1]:.1f})" if snr[-1] != snr[0] else ")")
            if snr else "")
    methods = {p.method for p in resolved}
    if methods == {"mppca"}:
        return rule + f" All series reached it{span}: noise was removed with MP-PCA."
    if methods == {"none"}:
        return rule + f" No series reached it{span}: no denoising was applied."
    n = sum(p.method == "mppca" for p in resolved)
    return rule + (f" {n} of {len(resolved)} series reached it and were denoised with "
                   f"MP-PCA{span}.")


def _volume_text(partial_volume: bool) -> str:
    if partial_volume:
        return ("the sum of the gray-matter partial-volume fraction times the voxel volume. A "
                "voxel whose neighbours all had its own tissue label counted as pure; any other "
                "voxel as a two-tissue mixture, CSF/GM when darker than the gray-matter "
                "intensity and GM/WM when brighter, its fraction interpolated linearly between "
                "the class intensities (medians of the pure voxels)")
    return "the sum of the gray-matter probability times the voxel volume"


def _unringing_text(enabled: bool) -> str:
    if enabled:
        return "Gibbs ringing was removed with the local sub-voxel shift method [@kellner2016]."
    return ("No Gibbs-ringing removal was applied. It runs only on request, because on data "
            "without ringing (simulated, partial-Fourier or scanner-filtered acquisitions) the "
            "local sub-voxel shift method acts as a smoothing filter and lowers white-matter "
            "FA.")


def _motion_text(enabled: bool) -> str:
    if not enabled:
        return ("No between-volume motion correction was applied (disabled by the user), so "
                "the b-vectors were not rotated.")
    return (f"Between-volume head motion was corrected by {_MOTION_MODEL[MOTION_TRANSFORM]} "
            "registration in ANTs [@avants2008] with Mattes mutual information: b=0 volumes "
            "were registered rigidly to the mean b=0 image and each diffusion-weighted volume "
            "(the affine part absorbing eddy-current scaling and shear) to the "
            "signal predicted for its gradient by a diffusion tensor fitted to the other "
            "volumes (two passes; as FSL eddy and QSIPrep's SHORELine register to model "
            "predictions, because a single diffusion-weighted volume differs in contrast from "
            "the mean images; no cross-contrast registration of the diffusion-weighted volumes to "
            "the b=0 image). Motion displacing no head voxel by "
            f"{MOTION_MIN_DISPLACEMENT:g} voxel was not applied (those volumes were not "
            "resampled). The b-vectors were rotated by the rotation part of each applied "
            "transform [@leemans2009], and framewise displacement was computed from its "
            "translation and rotation [@power2012].")


def _runs_text(dwi_runs: str) -> str:
    if dwi_runs == "separate":
        return "Each DWI run was processed separately."
    return ("When a session had several DWI runs, their mean b=0 images were rigidly aligned to "
            "the first run's, each run was scaled to the first run's median b=0 brain signal, "
            "and the runs were concatenated; motion, between-run and distortion transforms were "
            "applied in a single resampling.")


def _sdc_text(method: str, plans: Sequence[SdcPlan], *, dwi_runs: str) -> str:
    if method == "none":
        return "No susceptibility distortion correction was applied (disabled by the user)."
    if dwi_runs == "separate":
        return ("No susceptibility distortion correction was applied because runs were "
                "processed separately.")
    if not any(plan.applied for plan in plans):
        reasons = sorted({plan.note.removeprefix(NO_SDC) for plan in plans})
        return ("No susceptibility distortion correction was applied ("
                + "; ".join(reasons) + ").")
    return ("When runs with opposite phase-encoding directions along the same axis were "
            "available, a susceptibility distortion correction was estimated without a "
            "fieldmap from their mean b=0 images: after rigid alignment, SyN registration "
            "restricted to the phase-encoding axis [@avants2008] registered the two polarities "
            "and half of the displacement field took each to their midway space "
            "[@andersson2003]; series without a reverse phase-encoded counterpart were not "
            "distortion-corrected.")
