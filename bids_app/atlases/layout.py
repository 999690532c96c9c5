"""File names inside the data directory built by ``alsmri fetch-data``.

::

    <data>/tpl-MNI152NLin6Asym/tpl-MNI152NLin6Asym_res-01_FA.nii.gz
    <data>/tpl-MNI152NLin6Asym/tpl-MNI152NLin6Asym_res-01_label-GM_probseg.nii.gz  (GM/WM/CSF)
    <data>/atlas-hcp842/tpl-MNI152NLin6Asym_res-01_atlas-hcp842_hemi-L_label-cst_probseg.nii.gz
    <data>/atlas-aal/tpl-MNI152NLin6Asym_res-01_atlas-aal_dseg.nii.gz  (+ _dseg.tsv)
    <data>/.stamps/<resource>.json     (recipe hash + sha256 of every output)
    <data>/.downloads/                 (online transport cache)
"""

from __future__ import annotations

import re

STAMP_DIR = ".stamps"
DOWNLOAD_DIR = ".downloads"


def entity(value: str) -> str:
    """A BIDS entity value: alphanumerics only (``harvard-oxford`` -> ``harvardoxford``)."""
    return re.sub(r"[^A-Za-z0-9]", "", value)


def _prefix(space: str, res: int) -> str:
    return f"tpl-{space}_res-{res:02d}"


def template_path(space: str, res: int, suffix: str) -> str:
    """Relative path of a derived template image (e.g. the FA template)."""
    return f"tpl-{space}/{_prefix(space, res)}_{entity(suffix)}.nii.gz"


def tissue_prior_path(space: str, res: int, tissue: str) -> str:
    """Relative path of a tissue prior probability map (``tissue``: GM, WM or CSF)."""
    return f"tpl-{space}/{_prefix(space, res)}_label-{entity(tissue)}_probseg.nii.gz"


def probseg_path(atlas: str, space: str, res: int, region: str, hemisphere: str) -> str:
    """Relative path of one tract probability map."""
    atl = entity(atlas)
    return (
        f"atlas-{atl}/{_prefix(space, res)}_atlas-{atl}_hemi-{hemisphere}"
        f"_label-{entity(region)}_probseg.nii.gz"
    )


def dseg_path(atlas: str, space: str, res: int, extension: str = ".nii.gz") -> str:
    """Relative path of a label image (``.nii.gz``) or its label table (``.tsv``)."""
    atl = entity(atlas)
    return f"atlas-{atl}/{_prefix(space, res)}_atlas-{atl}_dseg{extension}"


def stamp_path(resource: str) -> str:
    """Relative path of a resource's build stamp."""
    return f"{STAMP_DIR}/{entity(resource)}.json"
