"""Methods boilerplate (``logs/CITATION.md``) assembled from the ``boilerplate/`` templates."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import metadata, resources
from string import Template

from bids_app import __version__
from bids_app.settings import Settings

_CITE = re.compile(r"@([A-Za-z0-9_]+)")
_ENTRY = re.compile(r"@(\w+)\{([^,]+),(.*?)\n\}", re.DOTALL)
_FIELD = re.compile(r"(\w+)\s*=\s*\{(.*?)\},?\s*(?=\w+\s*=|$)", re.DOTALL)

_DENOISE = {
    "mppca": "Noise was removed with Marchenko-Pastur PCA denoising [@veraart2016].",
    "patch2self": "Noise was removed with Patch2Self [@fadnavis2020].",
    "none": "No denoising was applied.",
}
_TENSOR = {
    "wls": "weighted least squares", "ols": "ordinary least squares",
    "nlls": "non-linear least squares", "restore": "the RESTORE outlier-robust estimator",
}
_TRACT_ATLAS = {
    "hcp842": (("HCP842 population tractography atlas (corticospinal, corticostriatal and "
               "corticothalamic tracts)"), "@yeh2018"),
    "hcp1065": ("HCP1065 population tractography atlas", "@yeh2022"),
    "xtract": ("XTRACT HCP tract atlas", "@warrington2020"),
}
_GM_ATLAS = {
    "aal": ("AAL", "@tzourio2002"),
    "harvard-oxford": ("Harvard-Oxford", "@desikan2006"),
    "neuromorphometrics": ("Neuromorphometrics", "@neuromorphometrics"),
}


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


def render_citation(settings: Settings, *, participants: Iterable[str], has_dwi: bool,
                    has_anat: bool, sdc_applied: bool | None = None,
                    versions: Mapping[str, str] | None = None) -> str:
    """Render the methods text with numbered references.

    Parameters
    ----------
    settings
        The run settings (options change the text).
    participants
        ``sub-X[_ses-Y]`` labels of what was (or will be) processed.
    has_dwi, has_anat
        Whether the diffusion and anatomical branches run.
    sdc_applied
        ``True``/``False`` when known; ``None`` = depends on the data (reverse-PE pairs).
    """
    versions = dict(versions or library_versions())
    dwi, anat = settings.dwi, settings.anat
    values = {
        "alsmri_version": versions["alsmri"], "nipype_version": versions["nipype"],
        "pybids_version": versions["pybids"], "dipy_version": versions["dipy"],
        "ants_version": versions["antspyx"], "nibabel_version": versions["nibabel"],
        "validation": "BIDS validation skipped" if settings.execution.skip_bids_validation
        else "with BIDS validation",
        "participants": ", ".join(participants) or "none",
        "b0_threshold": f"{dwi.b0_threshold:g}",
        "denoise_text": _DENOISE[dwi.denoise],
        "unringing_text": ("Gibbs ringing was removed with the local sub-voxel shift method "
                           "[@kellner2016]." if dwi.unringing else ""),
        "sdc_text": _sdc_text(dwi.sdc, sdc_applied),
        "tensor_fit_text": _TENSOR[dwi.tensor_fit],
        "tract_atlas_name": _TRACT_ATLAS[dwi.tract_atlas][0],
        "tract_atlas_cite": _TRACT_ATLAS[dwi.tract_atlas][1],
        "tract_threshold": f"{dwi.tract_threshold:g}",
        "gm_atlas_name": _GM_ATLAS[anat.gm_atlas][0],
        "gm_atlas_cite": _GM_ATLAS[anat.gm_atlas][1],
    }
    sections = [_template("general.md").substitute(values)]
    if has_dwi:
        sections.append(_template("dwi.md").substitute(values))
    if has_anat:
        sections.append(_template("anat.md").substitute(values))
    if settings.execution.analysis_level == "group":
        sections.append(_template("group.md").substitute(values))
    body = "\n\n".join(s.strip() for s in sections)
    refs = load_references()
    order: list[str] = []
    for key in _CITE.findall(body):
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
    lines += ["", "## Software versions", ""]
    lines += [f"- {name} {ver}" for name, ver in versions.items()]
    return "\n".join(lines) + "\n"


def _sdc_text(method: str, applied: bool | None) -> str:
    if method == "none":
        return "No susceptibility distortion correction was applied (disabled by the user)."
    text = ("When runs with opposite phase-encoding directions were available, a "
            "susceptibility distortion correction was estimated from their mean b=0 images with "
            "SyN registration restricted to the phase-encoding axis, towards their midway space "
            "[@andersson2003; @avants2008], and applied to each run before combining them.")
    if applied is False:
        return ("No reverse phase-encoded runs were available, so no susceptibility distortion "
                "correction was applied.")
    return text
