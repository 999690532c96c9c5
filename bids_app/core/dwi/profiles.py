"""Along-tract profiles: bundle orientation (node 0 at the inferior end) and AFQ-style profiles.

A bundle's streamlines are first made to run the same way (dipy ``orient_by_streamline``
against a reference streamline whose first point is the bundle's inferior end), then each
streamline is resampled to ``n_nodes`` equidistant points and a scalar map is sampled at every
node (trilinear); the profile at a node is the mean over streamlines weighted by the inverse
Mahalanobis distance of each streamline's node from the bundle core (dipy ``gaussian_weights`` /
``afq_profile``; Yeatman et al. 2012, the pyAFQ profile).

Which end is "inferior" is decided once per bundle, on its mean streamline in template space
(MNI z is the head's inferior-superior axis whatever the head position in the scanner), and
carried into native space with the streamlines themselves: brainstem for the corticospinal tract,
striatum for the corticostriatal and thalamus for the corticothalamic tracts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from dipy.segment.clustering import QuickBundles
from dipy.segment.featurespeed import ResampleFeature
from dipy.segment.metricspeed import AveragePointwiseEuclideanMetric
from dipy.stats.analysis import afq_profile
from dipy.tracking.streamline import Streamlines, orient_by_streamline, set_number_of_points

from bids_app.core.tables import PROFILE_COLUMNS

#: Fewest streamlines for which a profile is computed (the node covariance of
#: ``gaussian_weights`` needs at least 4 points in 3D to be invertible).
MIN_PROFILE_STREAMLINES = 4
#: Points used to compare a streamline with the reference when orienting.
_ORIENT_POINTS = 20


def bundle_centroid(streamlines: Sequence[np.ndarray], *, n_points: int) -> np.ndarray:
    """Mean streamline of a bundle, its members flipped to run the same way first.

    One QuickBundles cluster (unbounded threshold, MDF metric, which aligns each streamline
    with the running centroid before averaging), so the result does not depend on the
    direction in which each streamline happens to be stored.

    Parameters
    ----------
    streamlines
        Streamlines (N_i, 3) in any world frame.
    n_points
        Points of the returned centroid.

    Returns
    -------
    ndarray
        (n_points, 3) centroid, in the order QuickBundles found (not yet oriented).
    """
    if len(streamlines) == 0:
        raise ValueError("cannot compute the centroid of an empty bundle")
    metric = AveragePointwiseEuclideanMetric(ResampleFeature(nb_points=n_points))
    clusters = QuickBundles(threshold=np.inf, metric=metric).cluster(
        [np.asarray(s, dtype=np.float32) for s in streamlines])
    return np.asarray(clusters[0].centroid, dtype=float)


def inferior_first(line: np.ndarray, *, up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``line`` reversed when its first point is higher along ``up`` than its last.

    Parameters
    ----------
    line
        (N, 3) points.
    up
        The head's inferior-to-superior direction in the frame of ``line`` (MNI +z in template
        space).
    """
    line = np.asarray(line, dtype=float)
    up = np.asarray(up, dtype=float)
    return line[::-1].copy() if float(line[0] @ up) > float(line[-1] @ up) else line


def orient_bundle(streamlines: Sequence[np.ndarray], reference: np.ndarray) -> Streamlines:
    """Flip every streamline to run the same way as ``reference`` (dipy ``orient_by_streamline``).

    Parameters
    ----------
    streamlines
        Streamlines of one bundle (world mm).
    reference
        (M, 3) streamline in the same frame whose first point is the end that node 0 must be
        at (e.g. the bundle's template centroid carried into native space).

    Returns
    -------
    Streamlines
        Same streamlines and order, some reversed.
    """
    if len(streamlines) == 0:
        return Streamlines()
    return Streamlines(orient_by_streamline(Streamlines(streamlines),
                                            np.asarray(reference, dtype=float),
                                            n_points=_ORIENT_POINTS))


def node_distances(streamlines: Streamlines, *, n_nodes: int) -> np.ndarray:
    """(N, n_nodes) Mahalanobis distance of each streamline's node from the bundle core.

    The streamlines are resampled to ``n_nodes`` points; at every node the distance uses the
    covariance of that node's points over the bundle, inverted as dipy's ``gaussian_weights``
    does (upper triangle; a pseudo-inverse where it is singular, where dipy raises), so the
    values equal dipy's ``gaussian_weights(..., return_mahalnobis=True)``, computed for all
    streamlines at once (dipy's per-streamline Python loop took ~10 s per 1,000 streamlines).
    A node where all points coincide has distance 0 for every streamline.
    """
    lines = np.asarray(set_number_of_points(Streamlines(streamlines), nb_points=n_nodes),
                       dtype=float)
    out = np.zeros(lines.shape[:2])
    if len(lines) == 1:
        return out
    for node in range(n_nodes):
        coords = lines[:, node, :]
        cov = np.cov(coords.T, ddof=0)
        if np.allclose(cov, 0):
            continue
        try:
            inv = np.linalg.inv(np.triu(cov))
        except np.linalg.LinAlgError:  # e.g. every node in one plane; dipy would raise
            inv = np.linalg.pinv(np.triu(cov))
        delta = coords - coords.mean(axis=0)
        out[:, node] = np.sqrt(np.einsum("ni,ij,nj->n", delta, inv, delta))
    return out


def bundle_weights(streamlines: Streamlines, *, n_nodes: int) -> np.ndarray:
    """(N, n_nodes) weights of dipy ``gaussian_weights``: the inverse of
    :func:`node_distances`, each node normalised to sum 1 (identical weights at a node where
    the covariance is 0); ``tests/test_core_dwi_profiles.py`` checks the equality with dipy.
    """
    distance = node_distances(streamlines, n_nodes=n_nodes)
    if len(distance) == 1:
        return np.ones((1, n_nodes))
    out = np.empty_like(distance)
    for node in range(n_nodes):
        d = distance[:, node]
        if not d.any():
            out[:, node] = 1.0 / len(d)
            continue
        weights = 1.0 / d
        out[:, node] = weights / weights.sum()
    return out


def tract_profiles(
    bundles: Mapping[tuple[str, str], Sequence[np.ndarray]],
    maps: Mapping[str, np.ndarray],
    affine: np.ndarray,
    *,
    references: Mapping[tuple[str, str], np.ndarray],
    n_nodes: int,
    atlas: str,
) -> pd.DataFrame:
    """Gaussian-weighted along-tract profiles of every scalar map in every bundle.

    Parameters
    ----------
    bundles
        ``{(region, hemisphere): streamlines}`` in the world (RAS mm) frame of ``affine``.
    maps
        ``{metric: 3D array}`` on the grid of ``affine`` (e.g. ``fa``, ``md``, ``ad``, ``rd``).
    affine
        Voxel-to-world affine of the maps.
    references
        ``{(region, hemisphere): (M, 3) streamline}`` whose first point marks node 0 (see
        :func:`orient_bundle`); required for every bundle.
    n_nodes
        Nodes per profile (100 in pyAFQ and TractSeg's Tractometry).
    atlas
        Name of the model-bundle atlas (the ``atlas`` column).

    Returns
    -------
    DataFrame
        Columns :data:`PROFILE_COLUMNS`; node 0 at the reference's first end. A bundle with
        fewer than :data:`MIN_PROFILE_STREAMLINES` streamlines gets NaN values (its
        ``n_streamlines`` says why).
    """
    missing = sorted(set(bundles) - set(references))
    if missing:
        raise ValueError(f"no orientation reference for bundle(s) {missing}")
    affine = np.asarray(affine, dtype=float)
    shapes = {name: np.shape(m) for name, m in maps.items()}
    if len(set(shapes.values())) > 1 or any(len(s) != 3 for s in shapes.values()):
        raise ValueError(f"profile maps must be 3D arrays on one grid, got {shapes}")
    frames = []
    nodes = np.arange(n_nodes)
    for (region, hemi), streamlines in bundles.items():
        count = len(streamlines)
        enough = count >= MIN_PROFILE_STREAMLINES
        if enough:
            oriented = orient_bundle(streamlines, references[(region, hemi)])
            weights = bundle_weights(oriented, n_nodes=n_nodes)
        for metric, data in maps.items():
            if enough:
                values = afq_profile(np.asarray(data, dtype=float), oriented, affine,
                                     n_points=n_nodes, weights=weights)
            else:
                values = np.full(n_nodes, np.nan)
            frames.append(pd.DataFrame({
                "atlas": atlas, "region": region, "hemisphere": hemi, "metric": metric,
                "node": nodes,
                "value": np.asarray(values, dtype=float), "n_streamlines": count,
            }))
    if not frames:
        return pd.DataFrame(columns=list(PROFILE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(PROFILE_COLUMNS)]


def resample_bundle(streamlines: Sequence[np.ndarray], *, n_points: int) -> list[np.ndarray]:
    """Every streamline resampled to ``n_points`` equidistant points (float32)."""
    return [np.asarray(s, dtype=np.float32)
            for s in set_number_of_points(Streamlines(streamlines), nb_points=n_points)]
