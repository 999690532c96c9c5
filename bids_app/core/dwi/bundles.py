"""Bundle recognition in native space (dipy RecoBundles) and bundle-weighted tract metrics.

Model bundles live in template world mm; they are carried into native DWI world mm by the
FA-to-template registration (:mod:`bids_app.core.dwi.registration`). ANTs transforms act on
points in the opposite direction to images: the transform list that resamples a native image
onto the template grid (``forward``: template points -> native points) is the one that maps
template *points* to native points. ITK points are LPS; the streamlines here are RAS, so x and y
change sign on the way in and out (:func:`transform_points`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from dipy.segment.bundles import RecoBundles
from dipy.tracking.streamline import Streamlines
from dipy.tracking.streamline import length as dipy_length
from dipy.tracking.utils import density_map

from bids_app.core.dwi.profiles import MIN_PROFILE_STREAMLINES, node_distances, orient_bundle
from bids_app.core.tables import STATS_COLUMNS

#: ``statistic`` of the bundle metrics in :data:`~bids_app.core.tables.STATS_COLUMNS` tables.
BUNDLE_STATISTIC = "bundle"


@dataclass(frozen=True)
class RecognitionParams:
    """RecoBundles settings (distances in mm; see :data:`RECOGNITION_DEFAULTS`)."""

    clust_thr: float
    """QuickBundles threshold for the whole-brain tractogram (MDF, 20 points)."""
    model_clust_thr: float
    """QuickBundles threshold for the model bundle."""
    reduction_thr: float
    """Whole-brain clusters within this MDF of a model centroid are candidates."""
    pruning_thr: float
    """Candidates (after the local SLR) farther than this from every model centroid go."""
    min_length_mm: float
    """Streamlines shorter than this are not considered (RecoBundles ``greater_than``)."""
    min_streamlines: int
    """Fewer recognised streamlines than this is a recognition failure."""
    pruning_distance: str = "mdf"
    """Distance of the pruning step: ``mdf`` (node-to-node after resampling) or ``mam`` (mean
    of the two average minimum point distances, tolerant of a tracked streamline that follows
    only part of the model)."""
    partial_regions: tuple[str, ...] = ()
    """Regions pruned by ``mam`` whatever ``pruning_distance`` says: bundles that tracking
    follows only in part (see :data:`RECOGNITION_DEFAULTS`)."""
    clean_distance: float | None = None
    """After recognition, streamlines with a node farther than this (Mahalanobis, in standard
    deviations) from the bundle core are dropped (:func:`clean_bundle`); ``None``: no
    cleaning."""
    clean_length: float = 4.0
    """... and streamlines whose length is more than this many standard deviations from the
    bundle's mean length."""


#: pyAFQ's RecoBundles settings (``model_clust_thr`` 1.25, ``reduction_thr`` 25) with the
#: whole-brain clustering of dipy's tutorial (15 mm), except: pruning at 6 mm (dipy's tutorial
#: 7 mm, pyAFQ 12 mm): without the local SLR, 8 mm took 1,700-3,200 streamlines of 49,000
#: into each corticostriatal / corticothalamic bundle on ds-xa30 (a fifth of the tractogram),
#: 6 mm 500-1,300 with the anatomy of the QC image; a 20 mm minimum length (the tracking
#: minimum) instead of RecoBundles' 50 mm, which drops most corticostriatal streamlines (the
#: model's median length is 55 mm); fewer than 20 streamlines is a failure. Pruning by MDF
#: (node-to-node) except for the corticospinal tract (``partial_regions``), pruned by MAM:
#: tensor tracking on few directions rarely follows the CST through the centrum semiovale
#: (where it crosses other bundles and the tensor points along them), so the tracked CST is a
#: brainstem-to-corona-radiata part of the full-length model, whose MDF sits near 6 mm, the
#: more so where lower FA (patients) lets streamlines veer earlier. On a simulated 8 ALS + 8
#: control cohort (21 volumes at b = 2500, ``benchmarks/tract_validation.py``, seed 7) MDF
#: missed 10 of 32 CSTs, MAM none; the share of the planted CST effect under the bundles'
#: density (``placement_coverage``) rose from 0.58 to 0.77 on the left (1.08 -> 1.01 right)
#: and the recovered share of the true CST FA difference was 0.62 / 0.80 (r 0.91 / 0.96;
#: with MDF 0.59 / 1.08 over the recognised CSTs only, r 0.84 / 0.92). MAM for every bundle
#: made the corticostriatal/corticothalamic bundles 3-4x larger on ds-xa30 (contamination)
#: and lowered their recovery of the true FA difference, so they keep MDF. AFQ's bundle
#: cleaning (``clean_distance`` 3, ``clean_length`` 4) is off: on the same cohort it moved the
#: placement coverage by +0.01-0.03 and the CST ratios to 0.65 / 0.85 but the left
#: corticostriatal ratio from 0.48 to 0.38 (r 0.82 -> 0.73): no demonstrated gain.
RECOGNITION_DEFAULTS = RecognitionParams(clust_thr=15.0, model_clust_thr=1.25, reduction_thr=25.0,
                                         pruning_thr=6.0, min_length_mm=20.0, min_streamlines=20,
                                         pruning_distance="mdf", partial_regions=("cst",),
                                         clean_distance=None)


@dataclass(frozen=True)
class Bundle:
    """One recognised bundle in native world (RAS mm).

    ``recognised`` is False when fewer than ``min_streamlines`` were found: the caller then
    uses the atlas-based metric and reports it. ``reference`` is the model bundle's mean
    streamline carried into native space, first point at the inferior end (orientation of
    the along-tract profiles).
    """

    region: str
    hemisphere: str
    streamlines: Streamlines
    indices: np.ndarray
    reference: np.ndarray
    recognised: bool

    @property
    def count(self) -> int:
        """Number of recognised streamlines."""
        return len(self.streamlines)


def load_streamlines(path: Path | str) -> Streamlines:
    """Streamlines of a ``.trk``/``.tck`` file in world (RAS) mm (nibabel)."""
    import nibabel as nib

    return Streamlines(nib.streamlines.load(str(path)).streamlines)


def transform_points(points: np.ndarray, transforms: Sequence[Path | str]) -> np.ndarray:
    """Map (N, 3) RAS mm points through an ANTs transform list (ITK point convention).

    ``transforms`` is the list that resamples a *moving* image onto a *fixed* grid (e.g. the
    registration's ``forward``); it takes points from the fixed space to the moving space
    (template -> native for the FA-to-template registration).
    """
    import ants

    pts = np.asarray(points, dtype=float)
    lps = pd.DataFrame({"x": -pts[:, 0], "y": -pts[:, 1], "z": pts[:, 2]})
    out = ants.apply_transforms_to_points(3, lps, [str(t) for t in transforms])
    return np.column_stack([-out["x"].to_numpy(), -out["y"].to_numpy(), out["z"].to_numpy()])


def transform_streamlines(streamlines: Sequence[np.ndarray],
                          transforms: Sequence[Path | str]) -> Streamlines:
    """Every point of every streamline through :func:`transform_points` (one ANTs call)."""
    lines = Streamlines(streamlines)
    if len(lines) == 0:
        return Streamlines()
    moved = transform_points(lines.get_data(), transforms).astype(np.float32)
    out = Streamlines()
    out._data = moved
    out._offsets = lines._offsets.copy()
    out._lengths = lines._lengths.copy()
    return out


def crop_to_mask(
    streamlines: Sequence[np.ndarray], mask: np.ndarray, affine: np.ndarray, *,
    min_length_mm: float,
) -> Streamlines:
    """The longest run of each streamline's points inside ``mask`` (nearest voxel).

    Used on model bundles carried into native space: the DWI field of view often stops
    above the lower brainstem, where the tracked streamlines stop too, and a full-length
    model streamline is then far (MDF) from every tracked one. Runs shorter than
    ``min_length_mm`` are dropped.
    """
    mask = np.asarray(mask, dtype=bool)
    inv = np.linalg.inv(np.asarray(affine, dtype=float))
    out = Streamlines()
    for line in streamlines:
        line = np.asarray(line)
        ijk = np.rint(line @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        inside = np.all((ijk >= 0) & (ijk < mask.shape), axis=1)
        inside[inside] = mask[tuple(ijk[inside].T)]
        if not inside.any():
            continue
        edges = np.diff(np.r_[0, inside.astype(np.int8), 0])
        starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        longest = int(np.argmax(stops - starts))
        run = line[starts[longest]:stops[longest]]
        if len(run) > 1 and np.linalg.norm(np.diff(run, axis=0), axis=1).sum() >= min_length_mm:
            out.append(run)
    return out


def mean_streamline(streamlines: Sequence[np.ndarray]) -> np.ndarray:
    """Node-wise mean of streamlines that share their point count and direction.

    Applied to a model bundle carried into native space, the result runs from the model's
    inferior end (the data manager stores node 0 there, decided in template space) whatever
    the head's position in the scanner: the orientation reference of the profiles.
    """
    lines = np.asarray(list(streamlines), dtype=float)
    if lines.ndim != 3:
        raise ValueError("model streamlines must all have the same number of points")
    return lines.mean(axis=0)


def clean_bundle(streamlines: Sequence[np.ndarray], *, distance: float, length: float,
                 min_streamlines: int, n_nodes: int = 100, rounds: int = 5) -> np.ndarray:
    """Indices of the streamlines kept by pyAFQ-style bundle cleaning.

    Each round drops the streamlines with any node farther than ``distance`` (Mahalanobis,
    :func:`bids_app.core.dwi.profiles.node_distances`) from the bundle core, or whose length
    lies more than ``length`` standard deviations from the mean; rounds repeat on what is
    left until nothing is dropped, ``rounds`` are done, or a round would leave fewer than
    ``min_streamlines`` (that round is then not applied). The streamlines must run the same
    way (orient them first) for the node-wise distances to mean anything.

    Returns
    -------
    ndarray
        Sorted indices into ``streamlines``.
    """
    lines = Streamlines(streamlines)
    kept = np.arange(len(lines))
    for _ in range(rounds):
        if len(kept) < max(min_streamlines, MIN_PROFILE_STREAMLINES):
            break
        subset = lines[kept]
        far = node_distances(subset, n_nodes=n_nodes).max(axis=1) > distance
        lengths = np.asarray(dipy_length(subset), dtype=float)
        spread = lengths.std()
        odd = (np.abs(lengths - lengths.mean()) > length * spread if spread > 0
               else np.zeros_like(far))
        drop = far | odd
        if not drop.any() or (~drop).sum() < min_streamlines:
            break
        kept = kept[~drop]
    return kept


def recognise_bundles(
    streamlines: Sequence[np.ndarray],
    models: Mapping[tuple[str, str], Sequence[np.ndarray]],
    *,
    field_of_view: np.ndarray,
    affine: np.ndarray,
    params: RecognitionParams,
    seed: int,
    nthreads: int,
) -> dict[tuple[str, str], Bundle]:
    """Find each model bundle in a whole-brain tractogram (dipy RecoBundles).

    Each model is first cropped to ``field_of_view`` (:func:`crop_to_mask`); RecoBundles then
    keeps the whole-brain clusters within ``reduction_thr`` of the model and, of their
    streamlines, those within ``pruning_thr`` (``pruning_distance``, MDF by default) of a model
    centroid. RecoBundles' local
    streamline registration (SLR) is off: the models arrive through the subject's non-linear
    FA registration, which the SLR (an affine refinement for whole-brain affine alignment)
    cannot improve much, and it cost 7-15 s of CPU per bundle on ds-xa30 against 0.6-3 s for
    the whole recognition without it (``benchmarks/bundles.py``).

    Parameters
    ----------
    streamlines
        Whole-brain tractogram, native world (RAS) mm.
    models
        ``{(region, hemisphere): model streamlines}`` already in the same native frame (see
        :func:`transform_streamlines`), all with one point count and node 0 at the inferior
        end (as the data manager writes them).
    field_of_view, affine
        Boolean mask of the voxels where tracking was possible (the DWI brain mask) and its
        voxel-to-world affine.
    params
        RecoBundles thresholds and the failure rule.
    seed
        Seed of RecoBundles' random streamline selections (clustering order, SLR samples).
    nthreads
        Threads of the local streamline registration.

    Returns
    -------
    dict
        ``{(region, hemisphere): Bundle}`` in the order of ``models``.
    """
    whole = Streamlines(streamlines)
    if len(whole) == 0:
        raise ValueError("the whole-brain tractogram is empty")
    reco = RecoBundles(whole, greater_than=params.min_length_mm, clust_thr=params.clust_thr,
                       nb_pts=20, rng=np.random.default_rng(int(seed)))
    out = {}
    for (region, hemi), model in models.items():
        model = Streamlines(model)
        reference = mean_streamline(model)
        cropped = crop_to_mask(model, field_of_view, affine, min_length_mm=params.min_length_mm)
        labels: Sequence[int] = []
        pruning = "mam" if region in params.partial_regions else params.pruning_distance
        if len(cropped):
            _, labels = reco.recognize(
                model_bundle=cropped, model_clust_thr=params.model_clust_thr,
                reduction_thr=params.reduction_thr, pruning_thr=params.pruning_thr,
                reduction_distance="mdf", pruning_distance=pruning, slr=False,
                num_threads=max(1, int(nthreads)))
        indices = np.sort(np.asarray(labels, dtype=int))
        if params.clean_distance is not None and indices.size >= params.min_streamlines:
            oriented = orient_bundle(whole[indices], reference)
            indices = indices[clean_bundle(oriented, distance=params.clean_distance,
                                           length=params.clean_length,
                                           min_streamlines=params.min_streamlines)]
        found = whole[indices] if indices.size else Streamlines()
        out[(region, hemi)] = Bundle(
            region=region, hemisphere=hemi, streamlines=Streamlines(found), indices=indices,
            reference=reference, recognised=bool(indices.size >= params.min_streamlines))
    return out


def bundle_weighted_means(
    metrics: Mapping[str, np.ndarray],
    bundles: Mapping[tuple[str, str], Bundle],
    affine: np.ndarray,
    *,
    mask: np.ndarray,
    atlas: str,
) -> pd.DataFrame:
    """Streamline-density-weighted mean of each metric in each recognised bundle.

    The weight of a voxel is the number of the bundle's streamlines that pass through it
    (dipy ``density_map``; streamlines with points <= half a voxel apart, as the tracker's
    0.5 mm step gives); voxels outside ``mask`` or with a non-finite metric are left out.

    Returns
    -------
    DataFrame
        Columns :data:`STATS_COLUMNS`, statistic :data:`BUNDLE_STATISTIC`, ``n_voxels`` = voxels
        with a non-zero weight. Value NaN (0 voxels) for a bundle that was not recognised.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = []
    for (region, hemi), bundle in bundles.items():
        weights = np.zeros(mask.shape)
        if bundle.recognised:
            weights = density_map(bundle.streamlines, np.asarray(affine, dtype=float),
                                  mask.shape).astype(float)
            weights[~mask] = 0.0
        for name, values in metrics.items():
            values = np.asarray(values, dtype=float)
            w = np.where(np.isfinite(values), weights, 0.0)
            total = w.sum()
            value = float((w * np.nan_to_num(values)).sum() / total) if total > 0 else np.nan
            rows.append((atlas, region, hemi, name, BUNDLE_STATISTIC, value, int((w > 0).sum())))
    return pd.DataFrame(rows, columns=list(STATS_COLUMNS))


def bundle_counts(bundles: Mapping[tuple[str, str], Bundle]) -> pd.DataFrame:
    """One row per bundle: region, hemisphere, n_streamlines, recognised."""
    return pd.DataFrame(
        [(b.region, b.hemisphere, b.count, b.recognised) for b in bundles.values()],
        columns=["region", "hemisphere", "n_streamlines", "recognised"])

