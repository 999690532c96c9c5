"""Along-tract profiles: orientation (node 0 inferior) and Gaussian-weighted values.

The truth is analytic: a bundle of straight or curved streamlines through a map whose value is
a known function of position, so the profile each node must show is computed from the formula,
not from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from dipy.stats.analysis import gaussian_weights
from dipy.tracking.streamline import Streamlines

from bids_app.core.dwi import profiles as prof

N = 100
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = [-40.0, -40.0, -40.0]
SHAPE = (41, 41, 41)


def _world_grid() -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    return ijk * 2.0 + AFFINE[:3, 3]


def _vertical_bundle(n: int = 60, seed: int = 0, *, reverse_every: int = 2) -> list[np.ndarray]:
    """Streamlines from z = -30 to z = +30 near x = y = 0; every other one stored top-down."""
    rng = np.random.default_rng(seed)
    z = np.linspace(-30.0, 30.0, 121)
    out = []
    for i in range(n):
        x, y = rng.normal(0, 1.5, 2)
        line = np.column_stack([np.full(z.size, x), np.full(z.size, y), z])
        out.append(line[::-1] if i % reverse_every == 0 else line)
    return out


def test_vectorised_weights_equal_dipy():
    rng = np.random.default_rng(4)
    bundle = Streamlines([line + rng.normal(0, 0.3, line.shape)
                          for line in _vertical_bundle(40, seed=1, reverse_every=10**6)])
    ours = prof.bundle_weights(bundle, n_nodes=N)
    np.testing.assert_allclose(ours, gaussian_weights(bundle, n_points=N), rtol=1e-9)
    np.testing.assert_allclose(ours.sum(axis=0), 1.0)


def test_profile_recovers_a_linear_gradient_with_node0_inferior():
    values = 0.2 + 0.01 * (_world_grid()[..., 2] + 30.0)  # 0.2 at z=-30 .. 0.8 at z=+30
    bundle = _vertical_bundle()
    up_reference = np.column_stack([np.zeros(N), np.zeros(N), np.linspace(-30, 30, N)])
    table = prof.tract_profiles({("cst", "L"): bundle}, {"fa": values}, AFFINE,
                                references={("cst", "L"): up_reference},
        n_nodes=N, atlas="hcp842")
    assert list(table.columns) == list(prof.PROFILE_COLUMNS)
    assert (table["n_streamlines"] == len(bundle)).all()
    expected = 0.2 + 0.01 * np.linspace(0.0, 60.0, N)
    np.testing.assert_allclose(table["value"].to_numpy(), expected, atol=1e-6)
    assert table["node"].tolist() == list(range(N))


def test_reference_decides_the_direction_not_the_storage():
    values = 0.2 + 0.01 * (_world_grid()[..., 2] + 30.0)
    bundle = [line[::-1] for line in _vertical_bundle(reverse_every=10**6)]  # all top-down
    down_reference = np.column_stack([np.zeros(N), np.zeros(N), np.linspace(30, -30, N)])
    up_reference = down_reference[::-1]
    up = prof.tract_profiles({("cst", "L"): bundle}, {"fa": values}, AFFINE,
                             references={("cst", "L"): up_reference},
        n_nodes=N, atlas="hcp842")
    down = prof.tract_profiles({("cst", "L"): bundle}, {"fa": values}, AFFINE,
                               references={("cst", "L"): down_reference},
        n_nodes=N, atlas="hcp842")
    assert up["value"].iloc[0] == pytest.approx(0.2, abs=1e-6)
    np.testing.assert_allclose(down["value"].to_numpy(), up["value"].to_numpy()[::-1])


def test_inferior_first_and_centroid_on_a_curved_bundle():
    """A U-shaped bundle stored in mixed directions: centroid + orientation by template z."""
    t = np.linspace(0.0, np.pi, 80)
    rng = np.random.default_rng(2)
    lines = []
    for i in range(30):
        r = 20.0 + rng.normal(0, 0.5)
        # from (20, 0, -25) (low end) over the top to (-20, 0, 5) (high end)
        z = r * np.sin(t) - 25 + 30 * t / np.pi
        line = np.column_stack([r * np.cos(t), np.zeros_like(t), z])
        lines.append(line if i % 3 else line[::-1])
    centroid = prof.inferior_first(prof.bundle_centroid(lines, n_points=N))
    assert centroid[0, 2] < centroid[-1, 2]
    assert centroid[0, 0] == pytest.approx(20.0, abs=1.0)
    oriented = prof.orient_bundle(lines, centroid)
    assert all(s[0, 2] < s[-1, 2] for s in oriented)
    # the head tilted 90 degrees (native "up" = +x): the same rule, with the head's axis
    tilted = prof.inferior_first(centroid, up=(-1.0, 0.0, 0.0))
    np.testing.assert_allclose(tilted, centroid)


def test_profiles_of_several_maps_and_a_failed_bundle():
    grid = _world_grid()
    maps = {"fa": 0.5 + 0 * grid[..., 0], "md": 1e-3 + 1e-5 * grid[..., 2]}
    bundle = _vertical_bundle(20)
    reference = np.column_stack([np.zeros(N), np.zeros(N), np.linspace(-30, 30, N)])
    table = prof.tract_profiles(
        {("cst", "L"): bundle, ("cst", "R"): bundle[:2]}, maps, AFFINE,
        references={("cst", "L"): reference, ("cst", "R"): reference},
        n_nodes=N, atlas="hcp842")
    assert len(table) == 2 * 2 * N
    left = table[(table.hemisphere == "L") & (table.metric == "fa")]["value"]
    np.testing.assert_allclose(left, 0.5)
    right = table[table.hemisphere == "R"]
    assert right["value"].isna().all() and (right["n_streamlines"] == 2).all()
    with pytest.raises(ValueError, match="orientation reference"):
        prof.tract_profiles({("cst", "L"): bundle}, maps, AFFINE, references={},
        n_nodes=N, atlas="hcp842")


def test_node_distances_equal_dipy_mahalanobis():
    rng = np.random.default_rng(5)
    bundle = Streamlines([line + rng.normal(0, 0.3, line.shape)
                          for line in _vertical_bundle(30, seed=2, reverse_every=10**6)])
    ours = prof.node_distances(bundle, n_nodes=N)
    theirs = gaussian_weights(bundle, n_points=N, return_mahalnobis=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
