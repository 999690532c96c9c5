"""Build the data directory: fetch + verify all sources first, then build each resource.

Idempotent: a resource is skipped when its stamp records the same recipe (manifest entry, source
checksums, target grids, builder version) and every recorded output still has its sha256.
Atomic: outputs are written to temporary names next to their targets and renamed with
``os.replace`` only once the whole resource has been built; on failure they are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_app.atlases import layout
from bids_app.atlases.api import get_template
from bids_app.atlases.builders import Grid, get_builder
from bids_app.atlases.manifest import Manifest, Resource
from bids_app.atlases.transport import Transport, fetch_verified, sha256_file
from bids_app.errors import CannotCreateOutput

BUILD_VERSION = "1"


@dataclass(frozen=True)
class BuildResult:
    """What happened to one resource."""

    name: str
    status: str  # "built" or "up-to-date"
    outputs: tuple[str, ...]
    seconds: float


def template_grids(space: str, resolutions: tuple[int, ...]) -> dict[int, Grid]:
    """Target grids read from the TemplateFlow T1w template at each resolution."""
    grids = {}
    for res in resolutions:
        img = nib.load(get_template(space, res=res, suffix="T1w"))
        grids[res] = Grid(shape=tuple(int(n) for n in img.shape[:3]), affine=img.affine.copy())
    return grids


def recipe_hash(resource: Resource, grids: dict[int, Grid]) -> str:
    """sha256 of everything that determines a resource's outputs."""
    recipe = {
        "build_version": BUILD_VERSION,
        "resource": {
            "name": resource.name,
            "builder": resource.builder,
            "sources": [[s.path, s.sha256] for s in resource.sources],
            "spec": resource.spec,
        },
        "grids": {str(r): [list(g.shape), np.round(g.affine, 6).tolist()]
                  for r, g in grids.items()},
    }
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def is_up_to_date(dest: Path, resource: Resource, recipe: str) -> bool:
    """True when the stamp matches ``recipe`` and every output has its recorded sha256."""
    stamp = dest / layout.stamp_path(resource.name)
    try:
        record = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    if record.get("recipe") != recipe:
        return False
    for rel, digest in record.get("outputs", {}).items():
        path = dest / rel
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return True


def _write_tmp(payload, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name.split('.')[0]}-",
                               suffix=suffix)
    os.close(fd)
    if isinstance(payload, pd.DataFrame):
        payload.to_csv(tmp, sep="\t", index=False)
    else:
        nib.save(payload, tmp)
    return Path(tmp)


def build_resource(
    resource: Resource, sources: dict[str, Path], grids: dict[int, Grid], dest: Path, *,
    space: str, recipe: str,
) -> tuple[str, ...]:
    """Build one resource into ``dest`` atomically and write its stamp; return output paths."""
    builder = get_builder(resource)
    pending: dict[str, Path] = {}
    try:
        for rel, payload in builder(resource, sources, grids, space=space):
            pending[rel] = _write_tmp(payload, dest / rel)
        digests = {rel: sha256_file(tmp) for rel, tmp in pending.items()}
        stamp_tmp = _write_stamp_tmp(dest / layout.stamp_path(resource.name), recipe, digests)
    except BaseException:
        for tmp in pending.values():
            tmp.unlink(missing_ok=True)
        raise
    for rel, tmp in pending.items():
        os.replace(tmp, dest / rel)
    os.replace(stamp_tmp, dest / layout.stamp_path(resource.name))
    return tuple(pending)


def _write_stamp_tmp(stamp: Path, recipe: str, digests: dict[str, str]) -> Path:
    stamp.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=stamp.parent, prefix=".tmp-stamp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump({"recipe": recipe, "outputs": digests}, fh, indent=1, sort_keys=True)
    return Path(tmp)


def _build_timed(resource, sources, grids, dest, space, recipe):
    start = time.perf_counter()
    outputs = build_resource(resource, sources, grids, dest, space=space, recipe=recipe)
    return BuildResult(resource.name, "built", outputs, time.perf_counter() - start)


def default_jobs() -> int:
    """Worker processes for building: the usable CPUs, at most 2."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


def build_all(
    manifest: Manifest, dest: Path, transport: Transport, *, only: list[str] | None = None,
    jobs: int = 1, log=print,
) -> list[BuildResult]:
    """Fetch, verify and build the selected resources into ``dest``.

    Every source of every out-of-date resource is fetched and checksum-verified before anything
    is built, so a missing (exit 66) or corrupt (exit 65) source leaves no new derived file.
    With ``jobs > 1`` resources are built in that many worker processes (largest first).
    """
    selected = manifest.select(only)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutput(f"{dest}: cannot create data directory: {exc}") from exc
    grids = template_grids(manifest.space, manifest.resolutions)
    todo: list[tuple[Resource, str, dict[str, Path]]] = []
    results: list[BuildResult] = []
    for resource in selected:
        recipe = recipe_hash(resource, grids)
        if is_up_to_date(dest, resource, recipe):
            record = json.loads((dest / layout.stamp_path(resource.name)).read_text())
            results.append(BuildResult(resource.name, "up-to-date", tuple(record["outputs"]), 0.0))
            log(f"{resource.name}: up to date")
            continue
        todo.append((resource, recipe, fetch_verified(transport, resource)))
    todo.sort(key=lambda item: len(item[0].sources), reverse=True)
    args = [(res, srcs, grids, dest, manifest.space, recipe) for res, recipe, srcs in todo]
    if jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            futures = [pool.submit(_build_timed, *a) for a in args]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                log(f"{result.name}: built {len(result.outputs)} file(s) in "
                    f"{result.seconds:.1f} s")
    else:
        for a in args:
            result = _build_timed(*a)
            results.append(result)
            log(f"{result.name}: built {len(result.outputs)} file(s) in {result.seconds:.1f} s")
    order = {res.name: i for i, res in enumerate(selected)}
    return sorted(results, key=lambda r: order[r.name])
