"""The atlas manifest (``bids_app/data/atlases.yaml``) as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bids_app.errors import BadDataError, UsageError

MANIFEST_NAME = "atlases.yaml"
KINDS = ("template", "probseg", "dseg")
#: What an atlas may be chosen for (``use`` in the manifest) and the kind each use needs.
USES = {"tract": "probseg", "roi": "dseg", "gm": "dseg"}


@dataclass(frozen=True)
class Origin:
    """Where a source file comes from online: a base URL, or a pinned PyPI wheel."""

    name: str
    url: str | None = None
    pypi: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class SourceFile:
    """One upstream file: its mirror path, online origin + member, and sha256."""

    path: str
    sha256: str
    origin: Origin | None = None
    member: str | None = None

    @property
    def url(self) -> str | None:
        """The download URL for URL origins (``None`` for PyPI members)."""
        if self.origin is None or self.origin.url is None:
            return None
        return self.origin.url + (self.member or self.path)


@dataclass(frozen=True)
class Resource:
    """One template or atlas: how to build it and its licence/citation."""

    name: str
    kind: str
    builder: str
    sources: tuple[SourceFile, ...]
    spec: dict[str, Any]
    groups: dict[str, list[str]] = field(default_factory=dict)
    citation: tuple[str, ...] = ()
    license: str = ""
    commercial_use: str = ""
    redistribution: str = ""
    description: str = ""
    use: str | None = None
    """``tract``, ``roi`` or ``gm`` (see :data:`USES`); ``None`` for templates."""


@dataclass(frozen=True)
class Manifest:
    """The whole manifest: target space, resolutions and resources by name."""

    space: str
    resolutions: tuple[int, ...]
    resources: dict[str, Resource]
    path: Path

    def select(self, names: list[str] | tuple[str, ...] | None) -> list[Resource]:
        """Resources named in ``names`` (all when empty/None), in manifest order.

        Raises
        ------
        UsageError
            If a name is not in the manifest.
        """
        if not names:
            return list(self.resources.values())
        unknown = sorted(set(names) - set(self.resources))
        if unknown:
            raise UsageError(
                f"unknown resource(s) {', '.join(unknown)}; known: {', '.join(self.resources)}"
            )
        return [res for name, res in self.resources.items() if name in names]


def default_manifest_path() -> Path:
    """Path of the manifest shipped in :mod:`bids_app.data`."""
    return Path(str(resources.files("bids_app.data") / MANIFEST_NAME))


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate the atlas manifest.

    Parameters
    ----------
    path
        YAML file; default: the packaged ``bids_app/data/atlases.yaml``.

    Returns
    -------
    Manifest
    """
    path = Path(path) if path is not None else default_manifest_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BadDataError(f"{path}: cannot read atlas manifest: {exc}") from exc
    origins = {
        name: Origin(name=name, url=o.get("url"), pypi=o.get("pypi"), version=o.get("version"))
        for name, o in (raw.get("origins") or {}).items()
    }
    out: dict[str, Resource] = {}
    for entry in raw["resources"]:
        name = entry["name"]
        if entry["kind"] not in KINDS:
            raise BadDataError(f"{path}: resource {name!r} has unknown kind {entry['kind']!r}")
        sources = []
        for src in entry.get("sources") or []:
            origin = origins.get(src.get("origin")) if src.get("origin") else None
            if src.get("origin") and origin is None:
                raise BadDataError(f"{path}: {name}: unknown origin {src['origin']!r}")
            sources.append(
                SourceFile(path=src["path"], sha256=src["sha256"].lower(), origin=origin,
                           member=src.get("member"))
            )
        use = entry.get("use")
        if use is not None and USES.get(use) != entry["kind"]:
            raise BadDataError(f"{path}: resource {name!r}: use {use!r} needs kind "
                               f"{USES.get(use, 'one of ' + ', '.join(USES))!r}")
        reserved = {"name", "kind", "builder", "sources", "groups", "citation", "license",
                    "commercial_use", "redistribution", "description", "use"}
        out[name] = Resource(
            name=name,
            kind=entry["kind"],
            builder=entry["builder"],
            sources=tuple(sources),
            spec={k: v for k, v in entry.items() if k not in reserved},
            groups={k: list(v) for k, v in (entry.get("groups") or {}).items()},
            citation=tuple(entry.get("citation") or ()),
            license=entry.get("license", ""),
            commercial_use=str(entry.get("commercial_use", "")),
            redistribution=str(entry.get("redistribution", "")),
            description=" ".join(str(entry.get("description", "")).split()),
            use=use,
        )
    return Manifest(
        space=raw["space"],
        resolutions=tuple(int(r) for r in raw["resolutions"]),
        resources=out,
        path=path,
    )


def atlas_choices(use: str, path: Path | None = None) -> tuple[str, ...]:
    """Names of the manifest's atlases usable as ``use`` (``tract``, ``roi``, ``gm``), in order.

    The command-line choices of ``--tract-atlas``, ``--roi-atlas`` and ``--gm-atlas``.
    """
    if use not in USES:
        raise ValueError(f"unknown atlas use {use!r}; use one of {', '.join(USES)}")
    return tuple(r.name for r in load_manifest(path).resources.values() if r.use == use)
