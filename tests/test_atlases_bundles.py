"""HCP842 model bundles written by the data manager (RecoBundles models, issue #28).

Placement and orientation are checked against atlases from other sources: XTRACT's
corticospinal maps (FSL cohort tractography) and AAL's striatum and thalamus labels.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_app.atlases import api
from bids_app.atlases.builders import model_bundle
from bids_app.errors import UsageError

TRACTS = [(r, h) for r in ("cst", "corticostriatal", "corticothalamic") for h in "LR"]
#: AAL regions at each bundle's inferior end (node 0)
INFERIOR_END = {"corticostriatal": ["caudate", "putamen", "pallidum"],
                "corticothalamic": ["thalamus"]}


@pytest.fixture(scope="module")
def models(built_data_dir):
    info = api.get_model_bundles("hcp842", data_dir=built_data_dir)
    lines = {key: np.array(list(nib.streamlines.load(path).streamlines))
             for key, path in info.bundles.items()}
    return info, lines


def _voxels(points: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, ...]:
    inv = np.linalg.inv(affine)
    return tuple(np.rint(points @ inv[:3, :3].T + inv[:3, 3]).astype(int).T)


def test_every_tract_has_a_model_of_the_documented_size(models):
    info, lines = models
    assert set(info.bundles) == set(TRACTS)
    assert (info.n_streamlines, info.n_points, info.space) == (1000, 100, "MNI152NLin6Asym")
    for key in TRACTS:
        assert lines[key].shape == (info.n_streamlines, info.n_points, 3), key


def test_cst_models_lie_in_xtract_cst_of_their_side(models, built_data_dir):
    _, lines = models
    xtract = api.get_atlas("xtract", res=1, data_dir=built_data_dir)
    for hemi, other in (("L", "R"), ("R", "L")):
        same = nib.load(xtract.images[("cst", hemi)])
        opposite = np.asarray(nib.load(xtract.images[("cst", other)]).dataobj)
        where = _voxels(lines[("cst", hemi)].reshape(-1, 3), same.affine)
        assert np.asarray(same.dataobj)[where].mean() > 0.4
        assert opposite[where].mean() < 0.01


def test_node0_is_the_inferior_end(models, built_data_dir):
    _, lines = models
    aal = api.get_atlas("aal", res=1, data_dir=built_data_dir)
    img = nib.load(aal.images[("all", "bilateral")])
    labels = np.asarray(img.dataobj)
    for (region, hemi), model in lines.items():
        centroid = model.mean(axis=0)
        assert centroid[0, 2] < centroid[-1, 2], (region, hemi)
        first = model[:, 0, :]
        if region == "cst":
            assert np.mean(first[:, 2] < -30) > 0.95  # brainstem
            continue
        table = aal.labels
        wanted = table[table.region.isin(INFERIOR_END[region]) & (table.hemisphere == hemi)]
        near = ndimage.binary_dilation(np.isin(labels, wanted["index"]), iterations=5)
        assert near[_voxels(first, img.affine)].mean() > 0.9, (region, hemi)


def test_model_bundle_is_seeded_and_resampled():
    rng = np.random.default_rng(0)
    lines = [np.column_stack([np.full(n, i), np.zeros(n), np.linspace(0, 50, n)])
             for i, n in enumerate(rng.integers(10, 60, 30))]
    lines = [s if i % 2 else s[::-1] for i, s in enumerate(lines)]
    first = model_bundle(lines, n_streamlines=10, n_points=20, seed=3)
    again = model_bundle(lines, n_streamlines=10, n_points=20, seed=3)
    other = model_bundle(lines, n_streamlines=10, n_points=20, seed=4)
    assert len(first) == 10 and all(s.shape == (20, 3) for s in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert {s[0, 0] for s in first} != {s[0, 0] for s in other}
    assert all(s[0, 2] == pytest.approx(0.0) and s[-1, 2] == pytest.approx(50.0) for s in first)
    assert len(model_bundle(lines, n_streamlines=100, n_points=20, seed=3)) == 30


def test_atlas_without_models_is_refused(built_data_dir):
    with pytest.raises(UsageError, match="no model bundles"):
        api.get_model_bundles("xtract", data_dir=built_data_dir)
