"""Tractography, bundle recognition and the template -> native point transform.

Truth is placed independently of the code under test: the phantom's fibre directions are
written analytically (a curved and a straight tube), its signal is simulated from those
tensors, and the model bundle is drawn from the analytic arc; the point-transform test
compares real antspyx transforms applied to points with the same transforms applied to images,
and with the known synthetic deformation.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dipy.tracking.streamline import set_number_of_points
from scipy import ndimage

from bids_app.core.dwi import bundles as bun
from bids_app.core.dwi import tractography as trk
from bids_app.core.dwi.registration import register_fa_to_template, warp_to_native

VOX = 2.0
SHAPE = (40, 40, 36)
ARC_CENTRE = np.array([0.0, 0.0, -16.0])
ARC_RADIUS = 22.0
TUBE = 4.0
LINE_Z = ARC_CENTRE[2] + ARC_RADIUS + 12.0  # straight tube along y, above the arc


def _gradients(n: int) -> tuple[np.ndarray, np.ndarray]:
    """One b0 + ``n`` b=1000 directions spread over the half sphere (Fibonacci)."""
    k = np.arange(n) + 0.5
    z = k / n
    phi = np.pi * (1 + 5 ** 0.5) * k
    dirs = np.column_stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z])
    return np.r_[0.0, np.full(n, 1000.0)], np.vstack([[0.0, 0.0, 0.0], dirs])


@pytest.fixture(scope="module")
def phantom():
    """A half-circle tube in the x-z plane and a straight tube along y, in isotropic tissue."""
    affine = np.diag([VOX, VOX, VOX, 1.0])
    affine[:3, 3] = -np.asarray(SHAPE) * VOX / 2
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    xyz = ijk * VOX + affine[:3, 3]
    d = xyz - ARC_CENTRE
    rxz = np.hypot(d[..., 0], d[..., 2])
    arc = (np.hypot(rxz - ARC_RADIUS, d[..., 1]) < TUBE) & (d[..., 2] >= 4.0)
    line = (np.hypot(xyz[..., 0], xyz[..., 2] - LINE_Z) < TUBE) & (np.abs(xyz[..., 1]) < 30)
    evec = np.zeros(SHAPE + (3,))
    evec[..., 0] = 1.0
    evec[arc] = (np.stack([-d[..., 2], np.zeros_like(rxz), d[..., 0]], -1)
                 / np.maximum(rxz, 1e-6)[..., None])[arc]
    evec[line] = [0.0, 1.0, 0.0]
    fibre = arc | line
    bvals, bvecs = _gradients(30)
    l1 = np.where(fibre, 1.7e-3, 0.9e-3)
    l2 = np.where(fibre, 0.3e-3, 0.9e-3)
    cos2 = np.einsum("...k,gk->...g", evec, bvecs) ** 2
    data = 1000.0 * np.exp(-bvals * (l2[..., None] + (l1 - l2)[..., None] * cos2))
    rng = np.random.default_rng(3)
    data = np.abs(data + rng.normal(0, 1000.0 / 40, data.shape)).astype(np.float32)
    fa_fibre = (1.7 - 0.3) / np.sqrt(1.7**2 + 2 * 0.3**2)  # FA of the simulated tensor
    return {"affine": affine, "data": data, "bvals": bvals, "bvecs": bvecs, "arc": arc,
            "line": line, "fa": np.where(fibre, fa_fibre, 0.0)}


def _along_arc(line: np.ndarray) -> bool:
    """Every point within the tube (+ one voxel of partial volume) of the analytic arc."""
    d = line - ARC_CENTRE
    return bool(np.hypot(np.hypot(d[:, 0], d[:, 2]) - ARC_RADIUS, d[:, 1]).max() < TUBE + VOX)


def _along_line(line: np.ndarray) -> bool:
    """Every point within the tube (+ one voxel) of the straight tube's axis."""
    return bool(np.hypot(line[:, 0], line[:, 2] - LINE_Z).max() < TUBE + VOX)


def _arc_model(n: int = 200, seed: int = 0) -> list[np.ndarray]:
    """Model streamlines drawn from the analytic arc (not from the tracker)."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(np.arcsin(4.5 / ARC_RADIUS), np.pi - np.arcsin(4.5 / ARC_RADIUS), 100)
    out = []
    for _ in range(n):
        r = ARC_RADIUS + rng.normal(0, 1.0)
        y = rng.normal(0, 1.0)
        out.append(np.column_stack([r * np.cos(angles), np.full(angles.size, y),
                                    r * np.sin(angles)]) + ARC_CENTRE)
    return [np.asarray(s) for s in set_number_of_points(out, nb_points=100)]


def _long_arc_model(below_mm: int) -> list[np.ndarray]:
    """The model arc continued ``below_mm`` straight down from its first end (1 mm steps)."""
    long_model = []
    for line in _arc_model():
        below = np.linspace(line[0] - [0, 0, float(below_mm)], line[0], below_mm,
                            endpoint=False)
        long_model.append(np.vstack([below, line]))
    return [np.asarray(s) for s in set_number_of_points(long_model, nb_points=100)]


@pytest.fixture(scope="module")
def tracked(phantom):
    directions = trk.fit_directions(phantom["data"], phantom["bvals"], phantom["bvecs"],
                                    mask=np.ones(SHAPE, bool), model="tensor", b0_threshold=50)
    streamlines = trk.track(directions, phantom["fa"], phantom["affine"],
                            params=trk.TRACKING_DEFAULTS, seed=7, nthreads=1)
    return directions, streamlines


def test_choose_directions_follows_the_acquisition():
    assert trk.choose_directions(*_gradients(20), b0_threshold=50) == "tensor"
    assert trk.choose_directions(*_gradients(30), b0_threshold=50) == "csd"
    bvals, bvecs = _gradients(20)
    repeated = (np.r_[bvals, bvals[1:]], np.vstack([bvecs, -bvecs[1:]]))  # antipodes repeat
    assert trk.unique_directions(*repeated, b0_threshold=50) == 20
    with pytest.raises(ValueError, match="unknown direction model"):
        trk.fit_directions(np.ones((2, 2, 2, 21)), bvals, bvecs, mask=np.ones((2, 2, 2), bool),
                           model="dsi", b0_threshold=50)


def test_tracking_follows_both_tubes(phantom, tracked):
    _, streamlines = tracked
    in_arc = np.array([_along_arc(s) for s in streamlines])
    in_line = np.array([_along_line(s) for s in streamlines])
    assert len(streamlines) > 300
    assert in_arc.sum() > 200 and in_line.sum() > 100
    assert np.mean(in_arc | in_line) > 0.98  # streamlines stay in their tube
    spacing = np.linalg.norm(np.diff(streamlines[0], axis=0), axis=1)
    np.testing.assert_allclose(spacing, trk.TRACKING_DEFAULTS.step_size_mm, rtol=1e-3)
    lengths = np.array([np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in streamlines])
    assert lengths.min() >= trk.TRACKING_DEFAULTS.min_length_mm - 0.5
    # full-length arc streamlines span the half circle (~pi * R minus the tube's cut ends)
    assert np.percentile(lengths[in_arc], 90) > 0.8 * np.pi * ARC_RADIUS


def test_tracking_is_reproducible(phantom, tracked):
    directions, first = tracked
    again = trk.track(directions, phantom["fa"], phantom["affine"],
                      params=trk.TRACKING_DEFAULTS, seed=7, nthreads=2)
    assert len(first) == len(again)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_recognition_finds_the_arc_and_not_the_line(phantom, tracked):
    _, streamlines = tracked
    in_arc = np.array([_along_arc(s) for s in streamlines])
    lengths = np.array([np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in streamlines])
    model = _arc_model()
    elsewhere = [s + [0.0, 0.0, -60.0] for s in model]  # where no streamline runs
    found = bun.recognise_bundles(
        streamlines, {("arc", "L"): model, ("nothing", "L"): elsewhere},
        field_of_view=np.ones(SHAPE, bool), affine=phantom["affine"],
        params=bun.RECOGNITION_DEFAULTS, seed=1, nthreads=1)
    arc = found[("arc", "L")]
    assert arc.recognised and arc.count == len(arc.indices)
    assert in_arc[arc.indices].all()  # precision: nothing from the straight tube
    long_arc = np.nonzero(in_arc & (lengths > 0.6 * np.pi * ARC_RADIUS))[0]
    recall = np.isin(long_arc, arc.indices).mean()
    assert recall > 0.8, recall
    # node 0 of the orientation reference = the model's first end
    np.testing.assert_allclose(arc.reference, np.mean(model, axis=0))
    missing = found[("nothing", "L")]
    assert not missing.recognised and missing.count < bun.RECOGNITION_DEFAULTS.min_streamlines


def test_bundle_weighted_mean_matches_a_voxel_count():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    shape = (10, 10, 10)
    values = np.arange(np.prod(shape), dtype=float).reshape(shape)
    # two streamlines along x through voxel rows j=3 and j=5 (k=4); one doubled -> weight 2
    xs = np.arange(2.0, 16.01, 0.5)
    row3 = np.column_stack([xs, np.full(xs.size, 6.0), np.full(xs.size, 8.0)])
    row5 = np.column_stack([xs, np.full(xs.size, 10.0), np.full(xs.size, 8.0)])
    bundle = bun.Bundle("x", "L", bun.Streamlines([row3, row3, row5]), np.arange(3),
                        row3, True)
    mask = np.ones(shape, bool)
    mask[8:] = False  # i = 8 (x = 16 mm) is outside
    table = bun.bundle_weighted_means({"v": values}, {("x", "L"): bundle}, affine, mask=mask,
                                      atlas="test")
    i = np.arange(1, 8)  # voxels i = 1..7 are crossed (x from 2 to 14 mm)
    expected = (2 * values[i, 3, 4].sum() + values[i, 5, 4].sum()) / (3 * i.size)
    row = table.iloc[0]
    assert row["statistic"] == bun.BUNDLE_STATISTIC and row["n_voxels"] == 2 * i.size
    assert row["value"] == pytest.approx(expected)
    failed = bun.Bundle("x", "L", bun.Streamlines([row3]), np.arange(1), row3, False)
    table = bun.bundle_weighted_means({"v": values}, {("x", "L"): failed}, affine, mask=mask,
                                      atlas="test")
    assert np.isnan(table["value"].iloc[0]) and table["n_voxels"].iloc[0] == 0


# --- template -> native points through real antspyx transforms -------------------------------

def _true_native_to_template(points: np.ndarray) -> np.ndarray:
    """The synthetic deformation: native world mm -> template world mm."""
    angle = np.deg2rad(8.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]])
    moved = points @ rot.T + np.array([6.0, -4.0, 3.0])
    moved[:, 2] += 2.0 * np.sin(points[:, 0] / 15.0)  # a smooth non-linear part
    return moved


@pytest.fixture(scope="module")
def registration(tmp_path_factory):
    """A textured template and a native image made from it by a known deformation."""
    tmp = tmp_path_factory.mktemp("reg")
    rng = np.random.default_rng(11)
    tshape = (40, 44, 40)
    taff = np.diag([2.5, 2.5, 2.5, 1.0])
    taff[:3, 3] = -np.asarray(tshape) * 2.5 / 2
    tex = ndimage.gaussian_filter(rng.normal(size=tshape), 2.0)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in tshape], indexing="ij"), -1)
    txyz = ijk * 2.5 + taff[:3, 3]
    inside = np.linalg.norm(txyz / [40, 45, 38], axis=-1) < 1
    template = np.where(inside, 0.4 + 3 * tex, 0).clip(0, 1).astype(np.float32)
    nib.save(nib.Nifti1Image(template, taff), tmp / "tpl.nii.gz")
    # native grid: 3 mm, LAS and tilted 10 degrees about x (an oblique acquisition)
    tilt = np.deg2rad(10.0)
    rot = np.array([[-1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt),
                                                                    np.cos(tilt)]])
    nshape = (34, 36, 32)
    naff = np.eye(4)
    naff[:3, :3] = rot * 3.0
    naff[:3, 3] = -naff[:3, :3] @ (np.asarray(nshape) / 2)
    nijk = np.stack(np.meshgrid(*[np.arange(n) for n in nshape], indexing="ij"), -1)
    nxyz = nijk @ naff[:3, :3].T + naff[:3, 3]
    tvox = np.linalg.solve(taff, np.c_[_true_native_to_template(nxyz.reshape(-1, 3)),
                                       np.ones(nxyz[..., 0].size)].T)[:3]
    native = ndimage.map_coordinates(template, tvox, order=1).reshape(nshape)
    reg = register_fa_to_template(native.astype(np.float32), affine=naff,
                                  template=tmp / "tpl.nii.gz", out_dir=tmp, seed=5)
    return {"tmp": tmp, "taff": taff, "tshape": tshape, "txyz": txyz, "native": native,
            "naff": naff, "nxyz": nxyz, "reg": reg}


def test_points_land_where_images_land(registration):
    r = registration
    points = np.array([[-15.0, 10.0, 5.0], [12.0, -14.0, -8.0], [0.0, 20.0, 15.0]])
    moved = bun.transform_points(points, [r["reg"].forward])
    wrong_way = bun.transform_points(points, [r["reg"].inverse])
    for p, q, wrong in zip(points, moved, wrong_way):
        blob = np.exp(-((r["txyz"] - p) ** 2).sum(-1) / (2 * 4.0**2)).astype(np.float32)
        path = r["tmp"] / "blob.nii.gz"
        nib.save(nib.Nifti1Image(blob, r["taff"]), path)
        warped = warp_to_native(path, reference=r["native"], reference_affine=r["naff"],
                                inverse=r["reg"].inverse, kind="probseg")
        w = warped / warped.sum()
        centroid = (r["nxyz"] * w[..., None]).reshape(-1, 3).sum(0)
        assert np.linalg.norm(q - centroid) < 1.0, (q, centroid)
        assert np.linalg.norm(wrong - centroid) > 5.0
    # and the known deformation maps the native points back onto the template points
    np.testing.assert_allclose(_true_native_to_template(moved), points, atol=2.0)


def test_streamlines_transform_keeps_structure(registration):
    r = registration
    lines = [np.array([[0.0, 0, 0], [1, 2, 3], [4, 4, 4]]), np.array([[5.0, 5, 5], [6, 6, 6]])]
    moved = bun.transform_streamlines(lines, [r["reg"].forward])
    assert [len(s) for s in moved] == [3, 2]
    np.testing.assert_allclose(moved[1][0], bun.transform_points(lines[1][:1],
                                                                 [r["reg"].forward])[0],
                               atol=1e-4)


def test_csd_directions_track_the_arc_too(phantom):
    """With 30 directions CSD (lmax 6) is chosen; its peaks follow the same tubes."""
    assert trk.choose_directions(phantom["bvals"], phantom["bvecs"], b0_threshold=50) == "csd"
    near = ndimage.binary_dilation(phantom["arc"] | phantom["line"], iterations=2)
    directions = trk.fit_directions(phantom["data"], phantom["bvals"], phantom["bvecs"],
                                    mask=near, model="csd", b0_threshold=50)
    assert directions.sh_order == 6
    streamlines = trk.track(directions, phantom["fa"], phantom["affine"],
                            params=trk.TRACKING_DEFAULTS, seed=7, nthreads=1)
    in_arc = np.array([_along_arc(s) for s in streamlines])
    in_line = np.array([_along_line(s) for s in streamlines])
    assert in_arc.sum() > 100 and np.mean(in_arc | in_line) > 0.95


def test_crop_to_mask_keeps_the_longest_inside_run():
    affine = np.eye(4)
    mask = np.zeros((10, 10, 40), bool)
    mask[:, :, 5:15] = True
    mask[:, :, 20:38] = True
    z = np.arange(0.25, 40.0, 0.5)
    line = np.column_stack([np.full(z.size, 5.0), np.full(z.size, 5.0), z])
    cropped = bun.crop_to_mask([line, line[:4]], mask, affine, min_length_mm=5.0)
    assert len(cropped) == 1  # the 1.5 mm stub outside the mask is dropped
    # voxels 20..37 hold z in [19.5, 37.5): the longest run inside
    assert cropped[0][0, 2] == pytest.approx(19.75) and cropped[0][-1, 2] == pytest.approx(37.25)


def test_recognition_survives_a_model_longer_than_the_field_of_view(phantom, tracked):
    """The model arc continues 20 mm below the imaged slab, as the CST below a DWI slab."""
    _, streamlines = tracked
    long_model = _long_arc_model(20)
    fov = np.zeros(SHAPE, bool)
    fov[:, :, 14:] = True  # z >= -12 mm, where the arc tube ends: the added segment is outside
    kwargs = {"affine": phantom["affine"], "params": bun.RECOGNITION_DEFAULTS, "seed": 1,
              "nthreads": 1}
    cropped = bun.recognise_bundles(streamlines, {("arc", "L"): long_model},
                                    field_of_view=fov, **kwargs)[("arc", "L")]
    uncropped = bun.recognise_bundles(streamlines, {("arc", "L"): long_model},
                                      field_of_view=np.ones(SHAPE, bool), **kwargs)[("arc", "L")]
    reference = bun.recognise_bundles(streamlines, {("arc", "L"): _arc_model()},
                                      field_of_view=fov, **kwargs)[("arc", "L")]
    assert cropped.recognised
    assert cropped.count >= 0.8 * reference.count
    assert uncropped.count < 0.5 * cropped.count  # MDF (default): the crop keeps the bundle
    # MAM pruning tolerates a model that continues beyond the tracked part
    from dataclasses import replace

    mam = {**kwargs, "params": replace(bun.RECOGNITION_DEFAULTS, pruning_distance="mam")}
    uncropped_mam = bun.recognise_bundles(streamlines, {("arc", "L"): long_model},
                                          field_of_view=np.ones(SHAPE, bool), **mam)[("arc", "L")]
    assert uncropped_mam.recognised


def test_a_partial_region_is_pruned_by_mam(phantom, tracked):
    """Regions in ``partial_regions`` (the CST by default) use MAM pruning whatever the
    default distance: the uncropped long model, missed by MDF, is then found."""
    from dataclasses import replace

    _, streamlines = tracked
    long_model = _long_arc_model(30)
    kwargs = {"field_of_view": np.ones(SHAPE, bool), "affine": phantom["affine"], "seed": 1,
              "nthreads": 1}
    params = replace(bun.RECOGNITION_DEFAULTS, partial_regions=())
    mdf = bun.recognise_bundles(streamlines, {("arc", "L"): long_model}, params=params,
                                **kwargs)[("arc", "L")]
    partial = bun.recognise_bundles(streamlines, {("arc", "L"): long_model},
                                    params=replace(params, partial_regions=("arc",)),
                                    **kwargs)[("arc", "L")]
    assert partial.recognised and partial.count > 2 * mdf.count
    assert "cst" in bun.RECOGNITION_DEFAULTS.partial_regions


def test_cleaning_drops_planted_outliers_only():
    """60 streamlines along a vertical tube (Gaussian cross-section) plus planted outliers
    (12-18 mm detours, one streamline 1.8x as long): cleaning drops every outlier and keeps
    the tube, less the ~1 % of a 2D Gaussian beyond 3 standard deviations."""
    rng = np.random.default_rng(11)
    z = np.linspace(-30.0, 30.0, 121)
    tube = [np.column_stack([np.full(z.size, x), np.full(z.size, y), z])
            for x, y in rng.normal(0.0, 1.5, (60, 2))]
    detour = []
    for shift in (12.0, 15.0, 18.0):
        line = np.column_stack([np.zeros(z.size), np.zeros(z.size), z])
        line[:, 0] += shift * np.exp(-0.5 * (z / 6.0) ** 2)
        detour.append(line)
    z_long = np.linspace(-30.0, 78.0, 217)
    longer = [np.column_stack([np.zeros(z_long.size), np.zeros(z_long.size), z_long])]
    lines = tube + detour + longer
    kept = bun.clean_bundle(lines, distance=3.0, length=4.0, min_streamlines=20)
    assert not set(kept.tolist()) & {60, 61, 62, 63}
    assert np.isin(np.arange(60), kept).sum() >= 57
    # a bundle as small as the minimum is left alone
    small = bun.clean_bundle(tube[:17] + detour, distance=3.0, length=4.0, min_streamlines=20)
    assert len(small) == 20
