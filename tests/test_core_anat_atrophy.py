"""Known-truth deformation used to validate GM volumes (synthetic, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bids_app.core.anat.atrophy import (
    displacement_from_source,
    jacobian_determinant,
    plant_atrophy,
    plant_thinning,
)


def test_displacement_solves_poisson():
    rng = np.random.default_rng(0)
    src = ndimage.gaussian_filter(rng.normal(size=(24, 24, 24)), 2)
    src[:4] = src[-4:] = 0
    src -= src.mean()
    w = displacement_from_source(src)
    div = sum(np.gradient(w[i])[i] for i in range(3))
    inner = (slice(3, -3),) * 3
    assert np.corrcoef(div[inner].ravel(), src[inner].ravel())[0, 1] > 0.95


def test_jacobian_of_uniform_scaling():
    grid = np.indices((10, 10, 10)).astype(float)
    w = 0.1 * grid  # x -> 1.1 x
    np.testing.assert_allclose(jacobian_determinant(w), 1.1**3)


def _phantom():
    shape = (40, 40, 40)
    grid = np.indices(shape) - 19.5
    r = np.sqrt((grid**2).sum(0))
    gm = np.clip(1 - np.abs(r - 11) / 3, 0, 1)  # GM shell around r = 11
    image = 100 - 40 * gm + np.where(r > 14, -60, 0)
    left = grid[0] < 0
    region = (r < 15) & left & (grid[2] > 3)  # a cap of the left shell
    return image, gm, region, r


def test_plant_atrophy_hits_target_and_spares_elsewhere():
    image, gm, region, _ = _phantom()
    out = plant_atrophy(image, region=region, gm=gm, loss=0.10)
    assert out.planted_loss == pytest.approx(0.10, abs=0.002)
    det = jacobian_determinant(out.displacement.astype(float))
    far = ndimage.distance_transform_edt(~region) > 4
    assert np.abs(det[far] - 1).max() < 0.02
    assert np.linalg.norm(out.displacement, axis=0)[far].max() < 0.2
    # independent estimate: GM of the region pulled back through the field (interpolation)
    grid = np.indices(image.shape, dtype=float) + out.displacement
    gm_back = ndimage.map_coordinates(gm * region, grid, order=1)
    assert 1 - gm_back.sum() / (gm * region).sum() == pytest.approx(0.10, abs=0.01)
    # GM of the mirrored (right) cap is unchanged
    mirror = region[::-1]
    gm_mirror = ndimage.map_coordinates(gm * mirror, grid, order=1)
    assert gm_mirror.sum() / (gm * mirror).sum() == pytest.approx(1.0, abs=0.002)


def test_plant_atrophy_rejects_empty_region():
    image, gm, region, _ = _phantom()
    with pytest.raises(ValueError, match="empty region"):
        plant_atrophy(image, region=np.zeros_like(region), gm=gm)


def _slabs(h: float = 1.0):
    """CSF | GM (6 mm) | WM slabs along x, voxel edge ``h`` mm, a smooth bias along y."""
    n = round(30 / h)
    x = (np.arange(n) + 0.5) * h
    depth_in_gm = x - 8.0  # the outer GM surface at x = 8 mm, WM from x = 14 mm
    gm = np.clip(np.minimum(depth_in_gm, 14.0 - x) / h + 0.5, 0, 1)
    csf = np.clip(0.5 - depth_in_gm / h, 0, 1)
    wm = 1 - gm - csf
    shape = (n, 12, 12)
    gm, csf, wm = (np.broadcast_to(v[:, None, None], shape).copy() for v in (gm, csf, wm))
    bias = np.linspace(0.95, 1.05, 12)[None, :, None]
    image = (20 * csf + 60 * gm + 100 * wm) * bias
    return image, gm, csf, wm


@pytest.mark.parametrize("h", [1.0, 2.0])
def test_plant_thinning_removes_a_layer_from_the_outer_surface(h):
    image, gm, csf, wm = _slabs(h)
    region = np.zeros(gm.shape, bool)
    region[:, :, : gm.shape[2] // 2] = True  # half of the slab
    out = plant_thinning(image, region=region, gm=gm, csf=csf, voxel_size=(h, h, h),
                         loss=0.25)
    assert out.planted_loss == pytest.approx(0.25, abs=1e-3)
    # 25 % of a 6 mm cortex = 1.5 mm from the outer surface
    assert out.thickness_mm == pytest.approx(1.5, abs=0.05)
    # an independent reading of the image: GM fraction by linear unmixing of the intensity
    # between the local CSF and GM levels (outer half of the cortex only: no WM there)
    bias = np.linspace(0.95, 1.05, 12)[None, :, None]
    outer = (np.arange(gm.shape[0]) * h + h / 2 < 11.0)[:, None, None] & (wm < 1e-9)
    frac_gm = np.clip((out.image / bias - 20) / 40, 0, 1)
    lost = ((gm - frac_gm) * outer)[region].sum() / (gm[region]).sum()
    assert lost == pytest.approx(0.25, abs=0.01)
    # nothing outside the region, no WM voxel, nothing deeper than the removed layer
    image = image.astype(np.float32)
    assert np.array_equal(out.image[~region], image[~region])
    assert np.array_equal(out.image[wm > 0.999], image[wm > 0.999])
    np.testing.assert_allclose(out.removed.sum(), 0.25 * gm[region].sum(), rtol=1e-3)


def test_plant_thinning_rejects_bad_input():
    image, gm, csf, _ = _slabs()
    with pytest.raises(ValueError, match="empty region"):
        plant_thinning(image, region=np.zeros(gm.shape, bool), gm=gm, csf=csf,
                       voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match="outside"):
        plant_thinning(image, region=gm > 0, gm=gm, csf=csf, voxel_size=(1, 1, 1), loss=1.5)


def test_plant_thinning_reads_csf_intensity_inside_the_brain():
    # bright scalp outside the brain counted as "CSF" (the outer surface) must not set the
    # CSF intensity the thinned cortex takes
    image, gm, csf, _ = _slabs()
    brain = np.ones(gm.shape, bool)
    brain[:3] = False
    image = image.copy()
    image[:3] = 150.0
    region = np.zeros(gm.shape, bool)
    region[:, :, :6] = True
    out = plant_thinning(image, region=region, gm=gm, csf=csf, brain=brain,
                         voxel_size=(1, 1, 1), loss=0.25)
    changed = out.removed > 0
    # GM (60) turned into CSF (20): intensities drop, by 40 per unit of GM removed (+-bias)
    drop = (image - out.image)[changed] / out.removed[changed]
    assert np.all((drop > 40 * 0.94) & (drop < 40 * 1.06))
