"""Tractometry of one participant: whole-brain tracking, bundle recognition, bundle metrics
and along-tract profiles, in native DWI space.

The composition of :mod:`~bids_app.core.dwi.tractography` (directions, deterministic tracking),
:mod:`~bids_app.core.dwi.bundles` (model bundles carried in by the FA-to-template registration,
RecoBundles, density-weighted means) and :mod:`~bids_app.core.dwi.profiles` (orientation,
Gaussian-weighted profiles). Pure: arrays, streamlines and transform paths in, tables out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.core.dwi import bundles as bun
from bids_app.core.dwi import profiles as prof
from bids_app.core.dwi import tractography as trk

#: Nodes of every along-tract profile (pyAFQ and TractSeg's Tractometry use 100).
PROFILE_NODES = 100


@dataclass(frozen=True)
class TractometryResult:
    """What :func:`tractometry` found."""

    directions: str
    """Direction model used (``tensor`` or ``csd``)."""
    n_unique_directions: int
    n_streamlines: int
    """Streamlines of the whole-brain tractogram."""
    bundles: dict[tuple[str, str], bun.Bundle]
    stats: pd.DataFrame
    """Columns STATS_COLUMNS, statistic :data:`~bids_app.core.dwi.bundles.BUNDLE_STATISTIC`
    (NaN for a bundle that was not recognised)."""
    profiles: pd.DataFrame
    """Columns PROFILE_COLUMNS (NaN values for a bundle that was not recognised)."""
    counts: pd.DataFrame
    """``region, hemisphere, n_streamlines, recognised``."""

    def failed(self) -> list[str]:
        """``"cst L"``-style names of the bundles that were not recognised."""
        return [f"{r} {h}" for (r, h), b in self.bundles.items() if not b.recognised]


def tractometry(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    mask: np.ndarray,
    maps: Mapping[str, np.ndarray],
    affine: np.ndarray,
    models: Mapping[tuple[str, str], Sequence[np.ndarray]],
    to_template: Sequence[Path | str],
    atlas: str,
    b0_threshold: float,
    seed: int,
    nthreads: int,
) -> TractometryResult:
    """Track, recognise the model bundles and measure them.

    Parameters
    ----------
    data, bvals, bvecs
        Preprocessed 4D DWI series, b-values (N,) and unit b-vectors (N, 3).
    mask
        DWI brain mask (the tracking field of view).
    maps
        ``{metric: 3D map}`` on the DWI grid (FA required: stopping and seeding).
    affine
        Voxel-to-world affine of the DWI grid.
    models
        ``{(region, hemisphere): streamlines}`` in template world mm, node 0 inferior.
    to_template
        The DWI -> template transform(s) of the FA registration (the ones that resample a DWI
        image onto the template; they carry template *points* into DWI space).
    atlas
        Name of the model-bundle atlas (``atlas`` column of the tables).
    b0_threshold
        b-values below are b0.
    seed
        Seed of the random seed placement and of RecoBundles.
    nthreads
        Threads of the tracker and of RecoBundles.
    """
    mask = np.asarray(mask, dtype=bool)
    model = trk.choose_directions(bvals, bvecs, b0_threshold=b0_threshold)
    directions = trk.fit_directions(data, bvals, bvecs, mask=mask, model=model,
                                    b0_threshold=b0_threshold)
    streamlines = trk.track(directions, maps["fa"], affine, params=trk.TRACKING_DEFAULTS,
                            seed=seed, nthreads=nthreads)
    native = {key: bun.transform_streamlines(lines, list(to_template))
              for key, lines in models.items()}
    found = bun.recognise_bundles(streamlines, native, field_of_view=mask, affine=affine,
                                  params=bun.RECOGNITION_DEFAULTS, seed=seed,
                                  nthreads=nthreads)
    stats = bun.bundle_weighted_means(maps, found, affine, mask=mask, atlas=atlas)
    profiles = prof.tract_profiles(
        {k: (b.streamlines if b.recognised else []) for k, b in found.items()}, maps, affine,
        references={k: b.reference for k, b in found.items()}, n_nodes=PROFILE_NODES,
        atlas=atlas)
    # the real count also for a bundle below the recognition minimum (its profile is n/a)
    counts = {(r, h): b.count for (r, h), b in found.items()}
    profiles["n_streamlines"] = [counts[(r, h)] for r, h in
                                 zip(profiles["region"], profiles["hemisphere"], strict=True)]
    return TractometryResult(
        directions=model,
        n_unique_directions=trk.unique_directions(bvals, bvecs, b0_threshold=b0_threshold),
        n_streamlines=len(streamlines), bundles=found, stats=stats, profiles=profiles,
        counts=bun.bundle_counts(found))
