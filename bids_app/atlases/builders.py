"""Builders: source files -> derived images/tables on the MNI152NLin6Asym template grids.

Each builder takes a manifest :class:`Resource`, its verified local sources and the target grids,
and yields ``(relative output path, payload)`` pairs (a NIfTI image or a label DataFrame); the
caller writes them atomically. All resampling goes through the image affines.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.processing import resample_from_to
from scipy import ndimage

from bids_app.atlases import labels as lab
from bids_app.atlases import layout
from bids_app.atlases.api import get_template, model_bundle_path
from bids_app.atlases.manifest import Resource
from bids_app.core.dwi.profiles import (
    bundle_centroid,
    inferior_first,
    orient_bundle,
    resample_bundle,
)
from bids_app.errors import BadDataError, MissingInputError

MNI_XFORM_CODE = 4


@dataclass(frozen=True)
class Grid:
    """A target voxel grid: shape and voxel-to-MNI affine (from the TemplateFlow T1w)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths in mm."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))


@dataclass(frozen=True)
class TractogramPayload:
    """Streamlines in template world mm, written as a TrackVis ``.trk`` on ``grid``.

    Has the ``to_filename`` of a nibabel image, so :func:`nibabel.save` writes it; the trk
    header carries the grid (dimensions, voxel sizes, voxel-to-RAS affine), the points are
    stored in RAS mm and read back by ``nibabel.streamlines.load`` / dipy ``load_tractogram``
    unchanged. No timestamp is written: the same streamlines give the same bytes.
    """

    streamlines: tuple[np.ndarray, ...]
    grid: Grid

    def to_filename(self, filename) -> None:
        """Write the streamlines as ``.trk``."""
        from nibabel.streamlines import Field, Tractogram, TrkFile

        header = {
            Field.VOXEL_TO_RASMM: self.grid.affine.astype(np.float32),
            Field.VOXEL_SIZES: self.grid.voxel_size.astype(np.float32),
            Field.DIMENSIONS: np.asarray(self.grid.shape, dtype=np.int16),
            Field.VOXEL_ORDER: "".join(nib.aff2axcodes(self.grid.affine)),
        }
        tractogram = Tractogram(list(self.streamlines), affine_to_rasmm=np.eye(4))
        TrkFile(tractogram, header=header).save(str(filename))


Payload = nib.Nifti1Image | pd.DataFrame | TractogramPayload


def make_image(data: np.ndarray, grid: Grid, dtype: type) -> nib.Nifti1Image:
    """A NIfTI image on ``grid`` with MNI sform/qform codes and an explicit on-disk dtype."""
    # Fortran order = NIfTI on-disk order: nibabel then writes without a transposed copy.
    img = nib.Nifti1Image(np.asfortranarray(data, dtype=dtype), grid.affine)
    img.set_sform(grid.affine, code=MNI_XFORM_CODE)
    img.set_qform(grid.affine, code=MNI_XFORM_CODE)
    img.set_data_dtype(dtype)
    return img


def _integer_index_map(src_affine: np.ndarray, grid: Grid):
    """Per-axis (step, offset) when every target voxel centre is exactly a source voxel centre.

    That is the case between FSL-style (LAS) and TemplateFlow (RAS) files on the same MNI grid
    (step -1) and from 1 mm onto the 2 mm grid (step +-2); ``None`` otherwise.
    """
    vox = np.linalg.inv(src_affine) @ grid.affine
    lin, off = vox[:3, :3], vox[:3, 3]
    steps = np.diag(lin)
    exact = (
        np.allclose(lin, np.diag(steps), atol=1e-6)
        and np.allclose(steps, np.round(steps), atol=1e-6)
        and np.allclose(off, np.round(off), atol=1e-6)
        and np.all(np.round(steps) != 0)
    )
    return (np.round(steps).astype(int), np.round(off).astype(int)) if exact else None


def _sample_on_grid(data: np.ndarray, src_affine: np.ndarray, grid: Grid, *, order: int):
    """Values of ``data`` at the voxel centres of ``grid`` (through the affines; 0 outside)."""
    index_map = _integer_index_map(src_affine, grid)
    if index_map is None:
        src = nib.Nifti1Image(data, src_affine)
        out = resample_from_to(src, (grid.shape, grid.affine), order=order, mode="constant",
                               cval=0)
        return np.asarray(out.dataobj)
    steps, offsets = index_map
    src_sl, dst_sl = [], []
    for axis in range(3):
        idx = steps[axis] * np.arange(grid.shape[axis]) + offsets[axis]
        inside = np.nonzero((idx >= 0) & (idx < data.shape[axis]))[0]
        if inside.size == 0:
            return np.zeros(grid.shape, dtype=data.dtype)
        first, last = int(idx[inside[0]]), int(idx[inside[-1]])
        stop = last + (1 if steps[axis] > 0 else -1)
        src_sl.append(slice(first, stop if stop >= 0 else None, int(steps[axis])))
        dst_sl.append(slice(int(inside[0]), int(inside[-1]) + 1))
    out = np.zeros(grid.shape, dtype=data.dtype)
    out[tuple(dst_sl)] = data[tuple(src_sl)]
    return out


def resample_continuous(img: nib.spatialimages.SpatialImage, grid: Grid) -> np.ndarray:
    """Trilinear resampling of a scalar image onto ``grid`` (through the affines).

    When the target voxels are coarser than the source voxels the source is first smoothed
    with a Gaussian of sigma ``(factor - 1) / 2`` source voxels per axis (anti-aliasing).
    """
    src_vox = np.asarray(img.header.get_zooms()[:3], dtype=float)
    factor = grid.voxel_size / src_vox
    data = img.get_fdata(dtype=np.float32)
    sigma = np.clip((factor - 1.0) / 2.0, 0.0, None)
    if np.any(sigma > 0):
        data = ndimage.gaussian_filter(data, sigma)
    return _sample_on_grid(data, img.affine, grid, order=1).astype(np.float32)


def resample_labels(img: nib.spatialimages.SpatialImage, grid: Grid) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label image onto ``grid``."""
    data = np.rint(np.asarray(img.dataobj, dtype=np.float64)).astype(np.int32)
    return np.rint(_sample_on_grid(data, img.affine, grid, order=0)).astype(np.int32)


def smooth_in_box(data: np.ndarray, sigma_vox: np.ndarray, *, truncate: float = 4.0):
    """Gaussian smoothing restricted to the bounding box of the non-zero voxels plus margin.

    Same result as smoothing the whole volume (the kernel is truncated at ``truncate`` sigma),
    much faster for a tract that fills a few percent of the brain.
    """
    nonzero = np.nonzero(data)
    if not nonzero[0].size:
        return data
    margin = np.ceil(truncate * np.asarray(sigma_vox)).astype(int) + 1
    box = tuple(
        slice(max(int(ax.min()) - m, 0), min(int(ax.max()) + m + 1, n))
        for ax, m, n in zip(nonzero, margin, data.shape)
    )
    out = np.zeros_like(data)
    out[box] = ndimage.gaussian_filter(data[box], sigma_vox, truncate=truncate)
    return out


def load_trk_archive(path: Path, offset_mm: tuple[float, float, float]):
    """Streamlines of the single ``.trk`` in a ``.trk.tar.xz``, translated into MNI mm.

    The DSI Studio trk header (157x189x136, LPS, no offset) puts the points in a frame where
    ``MNI = point + offset_mm`` (``(78, 76, -50)`` for HCP842/HCP1065).
    """
    from dipy.tracking.streamline import transform_streamlines

    try:
        with tarfile.open(path, mode="r:xz") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            if len(members) != 1 or not members[0].name.endswith(".trk"):
                raise BadDataError(f"{path}: expected exactly one .trk member, got {members}")
            payload = archive.extractfile(members[0]).read()
        trk = nib.streamlines.load(io.BytesIO(payload))
    except (tarfile.TarError, OSError, EOFError, nib.streamlines.DataError) as exc:
        raise BadDataError(f"{path}: cannot read tractogram: {exc}") from exc
    shift = np.eye(4)
    shift[:3, 3] = offset_mm
    return transform_streamlines(trk.streamlines, shift)


def tract_probability(
    streamlines, grid: Grid, *, sigma_mm: float, percentile: float, envelope_fraction: float
) -> np.ndarray:
    """Streamline density on ``grid`` -> smoothed, robustly normalised map in [0, 1].

    ``dipy.tracking.utils.density_map`` counts the streamlines crossing each voxel; the count is
    smoothed (Gaussian, ``sigma_mm``) and divided by its ``percentile``-th percentile over the
    voxels holding at least ``envelope_fraction`` of the maximum, then clipped to [0, 1].
    """
    from dipy.tracking.utils import density_map

    try:
        density = density_map(streamlines, grid.affine, grid.shape).astype(np.float32)
    except (ValueError, IndexError) as exc:
        raise BadDataError(f"streamlines fall outside the template grid: {exc}") from exc
    if sigma_mm > 0:
        density = smooth_in_box(density, sigma_mm / grid.voxel_size)
    peak = float(density.max())
    if peak <= 0:
        raise BadDataError("tractogram has no streamline inside the template grid")
    scale = float(np.percentile(density[density >= envelope_fraction * peak], percentile))
    return np.clip(density / scale, 0.0, 1.0)


def model_bundle(streamlines, *, n_streamlines: int, n_points: int, seed: int):
    """A RecoBundles model bundle: a seeded subsample, resampled, node 0 at the inferior end.

    ``n_streamlines`` streamlines drawn without replacement by ``numpy.random.default_rng(seed)``
    (all of them when there are fewer), kept in source order, each resampled to ``n_points``
    equidistant points, then all flipped to run like the bundle's mean streamline oriented with
    its first point lower in template z (:func:`bids_app.core.dwi.profiles.inferior_first`).

    Returns
    -------
    tuple of ndarray
        (n_points, 3) float32 streamlines in the input frame (template world mm).
    """
    if len(streamlines) == 0:
        raise BadDataError("tractogram has no streamline to make a model bundle from")
    rng = np.random.default_rng(int(seed))
    count = min(int(n_streamlines), len(streamlines))
    picked = np.sort(rng.choice(len(streamlines), size=count, replace=False))
    lines = resample_bundle([streamlines[int(i)] for i in picked], n_points=int(n_points))
    centroid = inferior_first(bundle_centroid(lines, n_points=int(n_points)))
    return tuple(np.asarray(s, dtype=np.float32) for s in orient_bundle(lines, centroid))


def _local(sources: dict[str, Path], rel: str, resource: Resource) -> Path:
    if rel not in sources:
        raise BadDataError(f"manifest: resource {resource.name!r} uses {rel} not in its sources")
    return sources[rel]


def build_templateflow(resource, sources, grids, *, space) -> Iterator[tuple[str, Payload]]:
    """Check that TemplateFlow provides the template files at every resolution (no output)."""
    for res in grids:
        for query in resource.spec["query"]["files"]:
            get_template(space, res=res, suffix=query["suffix"], desc=query["desc"])
    return iter(())


def build_fa_template(resource, sources, grids, *, space) -> Iterator[tuple[str, Payload]]:
    """The FA template resampled onto each grid (trilinear), clipped to [0, 1]."""
    img = nib.load(_local(sources, resource.spec["image"], resource))
    for res, grid in grids.items():
        data = np.clip(resample_continuous(img, grid), 0.0, 1.0)
        yield layout.template_path(space, res, "FA"), make_image(data, grid, np.float32)


def build_trk_density(resource, sources, grids, *, space) -> Iterator[tuple[str, Payload]]:
    """Tract probability maps from .trk archives (see :func:`tract_probability`)."""
    params = resource.spec["density"]
    for tract in resource.spec["tracts"]:
        streamlines = load_trk_archive(
            _local(sources, tract["source"], resource), tuple(params["offset_mm"])
        )
        for res, grid in grids.items():
            prob = tract_probability(
                streamlines, grid, sigma_mm=float(params["smoothing_sigma_mm"]),
                percentile=float(params["norm_percentile"]),
                envelope_fraction=float(params["envelope_fraction"]),
            )
            rel = layout.probseg_path(resource.name, space, res, tract["region"],
                                      tract["hemisphere"])
            yield rel, make_image(prob, grid, np.float32)
        model = resource.spec.get("model_bundles")
        if model:
            finest = grids[min(grids)]
            lines = model_bundle(streamlines, n_streamlines=int(model["n_streamlines"]),
                                 n_points=int(model["n_points"]), seed=int(model["seed"]))
            rel = model_bundle_path(resource.name, space, tract["region"], tract["hemisphere"])
            yield rel, TractogramPayload(lines, finest)


def build_prob_maps(resource, sources, grids, *, space) -> Iterator[tuple[str, Payload]]:
    """Probability maps resampled onto each grid (trilinear), clipped to [0, 1]."""
    for item in resource.spec["maps"]:
        img = nib.load(_local(sources, item["source"], resource))
        for res, grid in grids.items():
            data = np.clip(resample_continuous(img, grid), 0.0, 1.0)
            rel = layout.probseg_path(resource.name, space, res, item["region"],
                                      item["hemisphere"])
            yield rel, make_image(data, grid, np.float32)


def _component(resource, sources, comp, grid) -> tuple[np.ndarray, pd.DataFrame]:
    names = lab.read_label_csv(_local(sources, comp["labels"], resource))
    table = lab.component_table(
        names, renames=resource.spec.get("renames") or {},
        overrides={int(k): v for k, v in (comp.get("overrides") or {}).items()},
        exclude=comp.get("exclude") or (), swap_hemispheres=bool(comp.get("swap_hemispheres")),
        drop_abbreviation=bool(comp.get("drop_abbreviation")),
    )
    data = resample_labels(nib.load(_local(sources, comp["image"], resource)), grid)
    data[~np.isin(data, table["index"].to_numpy())] = 0
    if comp.get("split_hemispheres"):
        right_offset = int(comp["right_offset"])
        i, j, k = np.ogrid[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
        row = grid.affine[0]
        x = row[0] * i + row[1] * j + row[2] * k + row[3]  # world x of every voxel centre
        data = np.where((data > 0) & (x >= 0), data + right_offset, data)
        left, right = table.copy(), table.copy()
        left["hemisphere"], right["hemisphere"] = "L", "R"
        left["name"] = left["name"] + "_L"
        right["name"] = right["name"] + "_R"
        right["index"] = right["index"] + right_offset
        table = pd.concat([left, right], ignore_index=True)
    offset = int(comp.get("index_offset", 0))
    data = np.where(data > 0, data + offset, 0)
    table["index"] = table["index"] + offset
    return data, table


def build_label_atlas(resource, sources, grids, *, space) -> Iterator[tuple[str, Payload]]:
    """A dseg image + label TSV per grid; earlier components win where components overlap."""
    for res, grid in grids.items():
        merged = np.zeros(grid.shape, dtype=np.int32)
        tables = []
        for comp in resource.spec["components"]:
            data, table = _component(resource, sources, comp, grid)
            free = merged == 0
            merged[free] = data[free]
            tables.append(table)
        table = pd.concat(tables, ignore_index=True)
        table = table[table["index"].isin(np.unique(merged))].sort_values("index")
        table = table.reset_index(drop=True)[lab.LABEL_COLUMNS]
        where = f"atlas {resource.name!r} at res-{res:02d}"
        if table["index"].duplicated().any():
            raise BadDataError(f"{where}: label indices of its components collide")
        lab.check_table(table, merged, grid.affine, where=where)
        yield layout.dseg_path(resource.name, space, res), make_image(merged, grid, np.int16)
        yield layout.dseg_path(resource.name, space, res, ".tsv"), table


def build_tissue_priors(resource, sources, grids, *, space) -> Iterator[tuple[str, Payload]]:
    """GM/WM/CSF prior probability maps carried onto the template by one registration.

    The source maps (GM and WM, and the brain-only T1w they belong to) are drawn in another
    MNI152 space (ICBM 2009a). That T1w is registered (affine + SyN, ``spec["registration"]``)
    to the template's brain-extracted T1w at ``registration_res`` mm, and the GM and WM maps
    follow (linear interpolation) onto every grid. CSF is the rest of the template's brain
    mask: ``clip(mask - GM - WM, 0, 1)``; outside the mask all three are 0.
    """
    import ants

    from bids_app.core.seeding import ants_seed

    spec = resource.spec
    reg = spec["registration"]
    res0 = int(reg["res"])
    fixed = ants.image_read(str(get_template(space, res=res0, suffix="T1w")))
    fixed_mask = ants.image_read(str(get_template(space, res=res0, suffix="mask",
                                                  desc="brain")))
    moving = ants.image_read(str(_local(sources, spec["t1w"], resource)))
    with ants_seed(int(reg["seed"])):
        out = ants.registration(
            fixed=fixed * fixed_mask, moving=moving, type_of_transform="SyN",
            aff_metric="mattes", aff_random_sampling_rate=1.0,
            syn_metric=str(reg["metric"]), syn_sampling=int(reg["sampling"]),
            reg_iterations=tuple(reg["syn_iterations"]))
    scale = float(spec["scale"])
    for res, grid in grids.items():
        ref = ants.image_read(str(get_template(space, res=res, suffix="T1w")))
        mask = nib.load(get_template(space, res=res, suffix="mask", desc="brain"))
        inside = np.asarray(mask.dataobj) > 0
        maps = {}
        for tissue in ("GM", "WM"):
            img = ants.image_read(str(_local(sources, spec[tissue.lower()], resource)))
            warped = ants.apply_transforms(fixed=ref, moving=img,
                                           transformlist=out["fwdtransforms"],
                                           interpolator="linear")
            maps[tissue] = np.clip(warped.numpy() / scale, 0, 1) * inside
        total = maps["GM"] + maps["WM"]
        over = total > 1  # interpolation can push the sum above 1: renormalise
        for tissue in ("GM", "WM"):
            maps[tissue] = np.where(over, maps[tissue] / np.maximum(total, 1e-6), maps[tissue])
        maps["CSF"] = np.clip(inside - maps["GM"] - maps["WM"], 0, 1)
        for tissue, data in maps.items():
            yield layout.tissue_prior_path(space, res, tissue), make_image(data, grid,
                                                                           np.float32)


BUILDERS: dict[str, Callable[..., Iterator[tuple[str, Payload]]]] = {
    "templateflow": build_templateflow,
    "fa_template": build_fa_template,
    "trk_density": build_trk_density,
    "prob_maps": build_prob_maps,
    "label_atlas": build_label_atlas,
    "tissue_priors": build_tissue_priors,
}


def get_builder(resource: Resource) -> Callable[..., Iterator[tuple[str, Payload]]]:
    """The builder function named by ``resource.builder``."""
    try:
        return BUILDERS[resource.builder]
    except KeyError:
        raise MissingInputError(
            f"manifest: resource {resource.name!r} has unknown builder {resource.builder!r}"
        ) from None
