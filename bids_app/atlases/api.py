"""Public API used by the workflows: templates, atlases, citations and licences.

Everything resolves locally: TemplateFlow files through ``templateflow.api.get`` (honours
``TEMPLATEFLOW_HOME``), derived files from the data directory built by ``alsmri fetch-data``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from bids_app.atlases import layout
from bids_app.atlases.manifest import Manifest, load_manifest
from bids_app.errors import MissingInputError, UsageError
from bids_app.settings import (
    DWI_ATLAS_RES,
    DWI_TEMPLATE_RES,
    GM_ATLAS_RES,
    TEMPLATE,
    TISSUE_PRIOR_RES,
)

FETCH_HINT = "run `alsmri fetch-data`"
TEMPLATEFLOW_SUFFIXES = ("T1w", "mask")


def default_data_dir() -> Path:
    """``$ALSMRI_DATA``, else ``$XDG_CACHE_HOME/alsmri/data`` (``~/.cache/alsmri/data``)."""
    if os.environ.get("ALSMRI_DATA"):
        return Path(os.environ["ALSMRI_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "alsmri" / "data"


def _data_dir(data_dir: Path | str | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def get_template(
    space: str = TEMPLATE,
    *,
    res: int,
    suffix: str = "T1w",
    desc: str | None = None,
    data_dir: Path | str | None = None,
) -> Path:
    """Path of a template image in ``space`` at ``res`` mm.

    Parameters
    ----------
    space
        Template name (only ``MNI152NLin6Asym`` has an FA template).
    res
        Resolution in mm (1 or 2).
    suffix
        ``"T1w"`` or ``"mask"`` (with ``desc="brain"``): from TemplateFlow, no network;
        ``"FA"``: the MNI FA template resampled onto the TemplateFlow grid, from the data dir.
    desc
        TemplateFlow ``desc`` entity (``None`` = no desc).
    data_dir
        Data directory for derived templates (default :func:`default_data_dir`).

    Raises
    ------
    MissingInputError
        The file is not available locally (message says to run ``alsmri fetch-data``).
    """
    if suffix == "FA":
        path = _data_dir(data_dir) / layout.template_path(space, int(res), "FA")
        if not path.is_file():
            raise MissingInputError(f"FA template {path} not found; {FETCH_HINT}")
        return path
    if suffix not in TEMPLATEFLOW_SUFFIXES:
        raise UsageError(f"unknown template suffix {suffix!r}; use T1w, mask or FA")
    from templateflow import api as tf

    try:
        found = tf.get(space, resolution=int(res), suffix=suffix, desc=desc, extension=".nii.gz")
    except Exception as exc:
        raise MissingInputError(
            f"TemplateFlow cannot provide {space} res-{res} {suffix}: {exc}; {FETCH_HINT} "
            "or set TEMPLATEFLOW_HOME"
        ) from exc
    if isinstance(found, list):
        if len(found) != 1:
            raise MissingInputError(
                f"TemplateFlow has {len(found)} files for {space} res-{res} desc-{desc} {suffix} "
                f"in {os.environ.get('TEMPLATEFLOW_HOME', '~/.cache/templateflow')}; "
                f"{FETCH_HINT} or set TEMPLATEFLOW_HOME"
            )
        found = found[0]
    return Path(found)


@dataclass(frozen=True)
class Atlas:
    """A built atlas on one template grid.

    ``images``: for ``kind == "probseg"`` {(region, hemisphere): float map in [0, 1]};
    for ``kind == "dseg"`` {("all", "bilateral"): integer label image}.
    ``labels``: DataFrame (index, name, hemisphere, region) for dseg atlases, else ``None``.
    ``groups``: group region -> member regions (from the manifest).
    ``citation``: references, one per line; ``license``: licence summary.
    """

    name: str
    kind: str
    space: str
    res: int
    images: dict[tuple[str, str], Path]
    labels: pd.DataFrame | None
    groups: dict[str, list[str]]
    citation: str
    license: str


#: Tissue classes of :func:`get_tissue_priors`, in the order of the T1w segmentation.
PRIOR_TISSUES = ("GM", "WM", "CSF")


def get_tissue_priors(space: str = TEMPLATE, *, res: int,
                      data_dir: Path | str | None = None) -> dict[str, Path]:
    """Paths of the GM/WM/CSF prior probability maps in ``space`` at ``res`` mm.

    Built by ``alsmri fetch-data`` (resource ``tissue-priors``).

    Raises
    ------
    MissingInputError
        A map is absent (the message says to run ``alsmri fetch-data``).
    """
    root = _data_dir(data_dir)
    paths = {t: root / layout.tissue_prior_path(space, int(res), t) for t in PRIOR_TISSUES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingInputError(f"tissue priors {', '.join(missing)} not found; {FETCH_HINT}")
    return paths


def require_participant_data(*, tract_atlas: str, roi_atlas: str, gm_atlas: str,
                             data_dir: Path | str | None = None) -> None:
    """Check that everything a participant run reads from the data directory is built.

    Raises
    ------
    MissingInputError
        Something is missing (the message names it and says to run ``alsmri fetch-data``).
    """
    for name, res in ((tract_atlas, DWI_ATLAS_RES), (roi_atlas, DWI_ATLAS_RES),
                      (gm_atlas, GM_ATLAS_RES)):
        get_atlas(name, res=res, data_dir=data_dir)
    get_template(TEMPLATE, res=DWI_TEMPLATE_RES, suffix="FA", data_dir=data_dir)
    get_tissue_priors(TEMPLATE, res=TISSUE_PRIOR_RES, data_dir=data_dir)


def _resource(manifest: Manifest, name: str):
    if name not in manifest.resources or manifest.resources[name].kind == "template":
        known = [n for n, r in manifest.resources.items() if r.kind != "template"]
        raise UsageError(f"unknown atlas {name!r}; known: {', '.join(known)}")
    return manifest.resources[name]


def get_atlas(name: str, *, res: int, data_dir: Path | str | None = None) -> Atlas:
    """Load a built atlas (paths + label table) from the data directory.

    Raises
    ------
    UsageError
        Unknown atlas name or resolution.
    MissingInputError
        The atlas has not been built in ``data_dir`` (message says to run ``alsmri fetch-data``).
    """
    manifest = load_manifest()
    resource = _resource(manifest, name)
    res = int(res)
    if res not in manifest.resolutions:
        raise UsageError(f"atlas resolution {res} mm not available; use one of "
                         f"{', '.join(map(str, manifest.resolutions))}")
    root = _data_dir(data_dir)
    stamp = root / layout.stamp_path(name)
    if not stamp.is_file():
        raise MissingInputError(f"atlas {name!r} not built in {root}; {FETCH_HINT}")
    space = manifest.space
    labels = None
    if resource.kind == "probseg":
        entries = resource.spec.get("tracts") or resource.spec.get("maps") or []
        images = {
            (e["region"], e["hemisphere"]):
                root / layout.probseg_path(name, space, res, e["region"], e["hemisphere"])
            for e in entries
        }
    else:
        images = {("all", "bilateral"): root / layout.dseg_path(name, space, res)}
        tsv = root / layout.dseg_path(name, space, res, ".tsv")
        if tsv.is_file():
            labels = pd.read_csv(tsv, sep="\t", dtype={"index": int}, keep_default_na=False)
    missing = [str(p) for p in images.values() if not p.is_file()]
    if resource.kind == "dseg" and labels is None:
        missing.append(str(tsv))
    if missing:
        raise MissingInputError(
            f"atlas {name!r} is incomplete in {root} (missing {missing[0]}); {FETCH_HINT}"
        )
    return Atlas(
        name=name, kind=resource.kind, space=space, res=res, images=images, labels=labels,
        groups={k: list(v) for k, v in resource.groups.items()},
        citation="\n".join(resource.citation), license=resource.license,
    )


def citations(names) -> list[str]:
    """References for the named resources (templates or atlases), deduplicated, in order."""
    manifest = load_manifest()
    out: list[str] = []
    for name in names:
        if name not in manifest.resources:
            raise UsageError(f"unknown resource {name!r}")
        for ref in manifest.resources[name].citation:
            if ref not in out:
                out.append(ref)
    return out



@dataclass(frozen=True)
class ResourceCredit:
    """How a run credits one template or atlas (read from the manifest).

    ``label``: short display name (the description up to its first ``(``, ``,`` or ``;``);
    ``references``: the citation entries that are publications; ``acknowledgements``: those
    equal to a top-level ``*_acknowledgement`` text of the manifest (e.g. the HCP one).
    """

    name: str
    kind: str
    label: str
    description: str
    references: tuple[str, ...]
    acknowledgements: tuple[str, ...]
    license: str
    commercial_use: str


def credits(names) -> list[ResourceCredit]:
    """References, acknowledgements and licence of the named resources, in the given order.

    Raises
    ------
    UsageError
        If a name is not in the manifest.
    """
    manifest = load_manifest()
    raw = yaml.safe_load(manifest.path.read_text()) or {}
    acks = {" ".join(str(v).split()) for k, v in raw.items()
            if str(k).endswith("acknowledgement") and isinstance(v, str)}
    out: list[ResourceCredit] = []
    for name in dict.fromkeys(names):
        if name not in manifest.resources:
            raise UsageError(f"unknown resource {name!r}; known: {', '.join(manifest.resources)}")
        res = manifest.resources[name]
        entries = [" ".join(str(c).split()) for c in res.citation]
        label = re.split(r"\s*[(,;]", res.description, maxsplit=1)[0].strip().rstrip(".")
        out.append(ResourceCredit(
            name=name, kind=res.kind, label=label or name, description=res.description,
            references=tuple(c for c in entries if c not in acks),
            acknowledgements=tuple(c for c in entries if c in acks),
            license=res.license, commercial_use=res.commercial_use,
        ))
    return out

@dataclass(frozen=True)
class LicenseInfo:
    """Licence terms of one resource (as stated by its origin; not legal advice)."""

    name: str
    license: str
    commercial_use: str
    redistribution: str

    @property
    def non_commercial(self) -> bool:
        """True unless commercial use is plainly allowed."""
        return self.commercial_use.strip().lower() != "yes"


def licenses(names=None) -> list[LicenseInfo]:
    """Licence information for the named resources (all when ``names`` is None)."""
    manifest = load_manifest()
    selected = manifest.select(list(names) if names is not None else None)
    return [LicenseInfo(r.name, r.license, r.commercial_use, r.redistribution) for r in selected]


def model_bundle_path(atlas: str, space: str, region: str, hemisphere: str) -> str:
    """Relative path of one model bundle (``.trk``, template world mm) in the data directory."""
    atl = layout.entity(atlas)
    return (f"atlas-{atl}/tpl-{space}_atlas-{atl}_hemi-{hemisphere}_label-{layout.entity(region)}"
            f"_desc-model_tractography.trk")


@dataclass(frozen=True)
class ModelBundles:
    """Model bundles of a streamline atlas (for RecoBundles), as built by ``alsmri fetch-data``.

    ``bundles``: {(region, hemisphere): ``.trk`` path}; streamlines in ``space`` world (RAS)
    mm, each resampled to ``n_points`` points with node 0 at the bundle's inferior end;
    ``n_streamlines`` drawn per tract with ``seed`` (see ``model_bundles`` in the manifest).
    """

    atlas: str
    space: str
    bundles: dict[tuple[str, str], Path]
    n_streamlines: int
    n_points: int
    seed: int
    citation: str
    license: str


def get_model_bundles(name: str, *, data_dir: Path | str | None = None) -> ModelBundles:
    """Paths and parameters of the model bundles of atlas ``name`` (e.g. ``hcp842``).

    Raises
    ------
    UsageError
        Unknown atlas, or an atlas without model bundles in the manifest.
    MissingInputError
        The bundles have not been built in ``data_dir`` (message says to run
        ``alsmri fetch-data``).
    """
    manifest = load_manifest()
    resource = _resource(manifest, name)
    params = resource.spec.get("model_bundles")
    if not params:
        with_bundles = [n for n, r in manifest.resources.items() if r.spec.get("model_bundles")]
        raise UsageError(f"atlas {name!r} has no model bundles; atlases with model bundles: "
                         f"{', '.join(with_bundles) or 'none'}")
    root = _data_dir(data_dir)
    bundles = {
        (t["region"], t["hemisphere"]):
            root / model_bundle_path(name, manifest.space, t["region"], t["hemisphere"])
        for t in resource.spec["tracts"]
    }
    missing = [str(p) for p in bundles.values() if not p.is_file()]
    if missing or not (root / layout.stamp_path(name)).is_file():
        raise MissingInputError(f"model bundles of atlas {name!r} not built in {root} "
                                f"(missing {missing[0] if missing else 'stamp'}); {FETCH_HINT}")
    return ModelBundles(
        atlas=name, space=manifest.space, bundles=bundles,
        n_streamlines=int(params["n_streamlines"]), n_points=int(params["n_points"]),
        seed=int(params["seed"]), citation="\n".join(resource.citation),
        license=resource.license,
    )
