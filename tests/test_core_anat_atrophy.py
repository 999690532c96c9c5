"""Known-truth deformation used to validate GM volumes (synthetic, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bids_app.core.anat.atrophy import (
    displacement_from_source,
    jacobian_determinant,
    plant_atrophy,
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
