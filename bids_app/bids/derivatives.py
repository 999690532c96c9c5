"""BIDS-derivatives naming and atomic writing (no nipype here)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bids_app import __version__
from bids_app.errors import CannotCreateOutput

CODE_URL = "https://github.com/alsmri/alsmri"

#: Entity order in derivative file names (BIDS order; from/to/mode as in fMRIPrep transforms).
ENTITY_ORDER: tuple[tuple[str, str], ...] = (
    ("subject", "sub"),
    ("session", "ses"),
    ("acquisition", "acq"),
    ("direction", "dir"),
    ("run", "run"),
    ("from_space", "from"),
    ("to_space", "to"),
    ("mode", "mode"),
    ("hemi", "hemi"),
    ("space", "space"),
    ("res", "res"),
    ("atlas", "atlas"),
    ("label", "label"),
    ("model", "model"),
    ("param", "param"),
    ("desc", "desc"),
)

#: Multi-part extensions recognised when an extension is taken from an input file name.
KNOWN_EXTENSIONS = (".nii.gz", ".tsv.gz", ".bval", ".bvec", ".nii", ".tsv", ".json", ".svg",
                    ".png", ".h5", ".mat", ".txt", ".html", ".csv", ".toml", ".md", ".trk")

#: Non-standard files listed in the derivative's ``.bidsignore`` (gitignore syntax). The BIDS
#: validator (3.x) tests a directory's own path without a trailing slash, so a ``figures/``
#: pattern hides the files inside but still reports the directory: directories are listed
#: without the slash. ``logs/`` is BIDS-defined (listed for older validators). Transforms
#: (``_xfm``), diffusion parameter maps (``_dwimap``, BEP016) and gradient files of a
#: derivative DWI and streamlines (``_tractography``, BEP016 draft) are not in BIDS 1.11.
BIDSIGNORE = ("logs/", "/group", "*.html", "figures", "*_dwistats.*", "*_morph.*", "*_qc.*",
              "*_motion.*", "*_xfm.*", "*_dwimap.*", "*_dwi.bval", "*_dwi.bvec",
              "*_tractography.*")


def split_extension(path: str | os.PathLike[str]) -> str:
    """Return the (possibly double) extension of ``path``, e.g. ``.nii.gz``."""
    name = Path(path).name
    for ext in KNOWN_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return Path(name).suffix


def build_path(
    entities: Mapping[str, Any], *, datatype: str, suffix: str, extension: str
) -> Path:
    """Build a derivative path relative to the output directory.

    Parameters
    ----------
    entities
        Entity values keyed by the long names of :data:`ENTITY_ORDER` (``subject`` required).
        ``None``/empty values are omitted; unknown keys raise ``ValueError``.
    datatype
        ``anat``, ``dwi`` or ``figures``.
    suffix
        BIDS suffix (``dwimap``, ``mask``, ``xfm`` ...).
    extension
        With leading dot.

    Returns
    -------
    Path
        ``sub-X[/ses-Y]/<datatype>/sub-X[_ses-Y]_..._<suffix><extension>``.
    """
    known = {long for long, _ in ENTITY_ORDER}
    unknown = {k for k, v in entities.items() if v not in (None, "")} - known
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    if not entities.get("subject"):
        raise ValueError("a derivative needs a subject entity")
    parts = []
    for long, short in ENTITY_ORDER:
        value = entities.get(long)
        if value not in (None, ""):
            value = str(value)
            if not value.replace(".", "").isalnum():
                raise ValueError(f"entity {short}-{value} is not alphanumeric")
            parts.append(f"{short}-{value}")
    folder = Path(f"sub-{entities['subject']}")
    if entities.get("session"):
        folder = folder / f"ses-{entities['session']}"
    return folder / datatype / ("_".join(parts) + f"_{suffix}{extension}")


#: ``errno`` values of a full file system (no space left, disk quota exceeded).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def no_space_error(path: str | os.PathLike[str], exc: OSError) -> CannotCreateOutput | None:
    """A :class:`CannotCreateOutput` naming ``path`` when ``exc`` means the disk is full."""
    if exc.errno in NO_SPACE_ERRNOS:
        return CannotCreateOutput(f"{path}: no space left on device")
    return None


def _stage(dest: Path, data: bytes | str | None, src: str | os.PathLike[str] | None) -> str:
    """Write the content of ``dest`` to a temporary file beside it; return its path."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise (no_space_error(dest, exc)
               or CannotCreateOutput(f"{dest.parent}: cannot create output ({exc.strerror})")
               ) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if src is not None:
                with open(src, "rb") as fin:
                    shutil.copyfileobj(fin, fh, length=1 << 20)
            elif isinstance(data, str):
                fh.write(data.encode("utf-8"))
            elif data is not None:
                fh.write(data)
        os.chmod(tmp, 0o644)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = no_space_error(dest, exc) if isinstance(exc, OSError) else None
        if full is not None:
            raise full from exc
        raise
    return tmp


def write_atomic(dest: str | os.PathLike[str], data: bytes | str | None = None, *,
                 src: str | os.PathLike[str] | None = None) -> Path:
    """Write ``data`` (or copy ``src``) to ``dest`` through a temp file and ``os.replace``.

    An interrupted write never leaves a partial file under the final name; a full disk
    (``ENOSPC``/``EDQUOT``, when the temp file is created or written) raises
    :class:`~bids_app.errors.CannotCreateOutput` naming ``dest``.
    """
    return write_atomic_together([(dest, data, src)])[0]


def write_atomic_together(
    files: Iterable[tuple[str | os.PathLike[str], bytes | str | None,
                          str | os.PathLike[str] | None]],
) -> list[Path]:
    """Write several ``(dest, data, src)`` files so that either all or none get their names.

    Every file is first written to a temp file; the final names are given only once all
    of them are complete, so an image is never left without its sidecar (e.g. on a full
    disk). Should a rename fail midway, the files already renamed are removed again.
    """
    staged: list[tuple[Path, str]] = []
    try:
        for dest, data, src in files:
            dest = Path(dest)
            staged.append((dest, _stage(dest, data, src)))
    except BaseException:
        for _, tmp in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    done: list[Path] = []
    try:
        for dest, tmp in staged:
            os.replace(tmp, dest)
            done.append(dest)
    except BaseException as exc:
        for dest, tmp in staged:
            Path(tmp).unlink(missing_ok=True)
        for dest in done:
            dest.unlink(missing_ok=True)
        full = no_space_error(staged[len(done)][0], exc) if isinstance(exc, OSError) else None
        if full is not None:
            raise full from exc
        raise
    return done


def json_text(payload: Mapping[str, Any]) -> str:
    """``payload`` as the indented JSON text of every sidecar."""
    return json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"


def write_json(dest: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Atomically write ``payload`` as indented JSON."""
    return write_atomic(dest, json_text(payload))


def bids_uri(path: str | os.PathLike[str], bids_root: str | os.PathLike[str] | None,
             *, dataset: str = "raw") -> str:
    """``bids:<dataset>:<relative path>`` for a file inside ``bids_root`` (else the plain path)."""
    path = Path(path)
    if bids_root is not None:
        try:
            return f"bids:{dataset}:{path.resolve().relative_to(Path(bids_root).resolve())}"
        except ValueError:
            pass
    return str(path)


def find_bids_root(path: str | os.PathLike[str]) -> Path | None:
    """Closest parent of ``path`` holding a ``dataset_description.json``."""
    for parent in Path(path).resolve().parents:
        if (parent / "dataset_description.json").is_file():
            return parent
    return None


def dataset_description(bids_dir: str | os.PathLike[str], *,
                        container: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Contents of the derivative ``dataset_description.json``.

    ``SourceDatasets`` carries the input's DOI (or URL) when its description gives one.
    """
    generated = {"Name": "alsmri", "Version": __version__, "CodeURL": CODE_URL}
    if container:
        generated["Container"] = dict(container)
    desc: dict[str, Any] = {
        "Name": "alsmri derivatives: DTI tract metrics and gray-matter volumes",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "HowToAcknowledge": "Cite alsmri and the references in logs/CITATION.md.",
        "DatasetLinks": {"raw": Path(bids_dir).resolve().as_uri()},
    }
    src = Path(bids_dir) / "dataset_description.json"
    source: dict[str, str] = {}
    if src.is_file():
        try:
            raw = json.loads(src.read_text())
        except (OSError, ValueError):
            raw = {}
        if raw.get("DatasetDOI"):
            doi = str(raw["DatasetDOI"])
            source["DOI"] = doi if doi.startswith("doi:") else f"doi:{doi.split('doi.org/')[-1]}"
        for key in ("URL", "DatasetURL"):
            if raw.get(key):
                source["URL"] = str(raw[key])
        if raw.get("Version"):
            source["Version"] = str(raw["Version"])
    if source:
        desc["SourceDatasets"] = [source]
    return desc


def container_info() -> dict[str, str] | None:
    """``{"Type": "docker", "Tag": ...}`` when running inside the alsmri image."""
    tag = os.environ.get("ALSMRI_CONTAINER_TAG")
    if not tag:
        return None
    return {"Type": os.environ.get("ALSMRI_CONTAINER_TYPE", "docker"), "Tag": tag}


def init_derivatives(output_dir: str | os.PathLike[str], bids_dir: str | os.PathLike[str],
                     *, extra_ignore: Iterable[str] = ()) -> Path:
    """Create ``output_dir`` with ``dataset_description.json`` and ``.bidsignore``."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutput(
            f"{out}: cannot create output directory ({exc.strerror})") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise CannotCreateOutput(f"{out}: output directory is not writable")
    write_json(out / "dataset_description.json",
               dataset_description(bids_dir, container=container_info()))
    write_atomic(out / ".bidsignore", "\n".join((*BIDSIGNORE, *extra_ignore)) + "\n")
    return out
