"""Tract- and ROI-wise summaries of tensor metrics as a long-format table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bids_app.core.tables import STATS_COLUMNS


def tract_stats(
    metrics: Mapping[str, np.ndarray],
    probmaps: Mapping[tuple[str, str], np.ndarray],
    *,
    mask: np.ndarray,
    threshold: float,
    atlas: str,
) -> pd.DataFrame:
    """Probability-weighted mean and thresholded mean of each metric in each tract.

    Parameters
    ----------
    metrics
        ``{"fa": array, "md": ...}`` native maps.
    probmaps
        ``{(region, hemisphere): probability map in [0, 1]}`` on the same grid.
    mask
        Brain mask; voxels outside (or with a non-finite metric) are ignored.
    threshold
        ``mean`` uses voxels with p > threshold.
    atlas
        Value of the ``atlas`` column.

    Returns
    -------
    DataFrame
        Columns :data:`STATS_COLUMNS`; statistic ``wmean`` (``n_voxels``: voxels with p > 0)
        and ``mean`` (``n_voxels``: voxels with p > threshold). Values are NaN when a tract
        has no voxel inside the mask (e.g. outside the DWI field of view).
    """
    rows = []
    mask = np.asarray(mask, dtype=bool)
    for (region, hemi), prob in probmaps.items():
        prob = np.where(mask, np.nan_to_num(np.asarray(prob, dtype=float)), 0.0)
        for name, values in metrics.items():
            values = np.asarray(values, dtype=float)
            ok = np.isfinite(values)
            weights = np.where(ok, prob, 0.0)
            total = weights.sum()
            wmean = float((weights * np.nan_to_num(values)).sum() / total) if total > 0 else np.nan
            rows.append((atlas, region, hemi, name, "wmean", wmean, int((weights > 0).sum())))
            inside = ok & (prob > threshold)
            mean = float(values[inside].mean()) if inside.any() else np.nan
            rows.append((atlas, region, hemi, name, "mean", mean, int(inside.sum())))
    return pd.DataFrame(rows, columns=list(STATS_COLUMNS))


def label_stats(
    metrics: Mapping[str, np.ndarray],
    labels_img: np.ndarray,
    labels: pd.DataFrame,
    *,
    mask: np.ndarray,
    atlas: str,
) -> pd.DataFrame:
    """Mean of each metric in each labelled ROI, grouped by (region, hemisphere).

    Parameters
    ----------
    metrics
        ``{"fa": array, ...}`` native maps.
    labels_img
        Integer label image on the same grid (nearest-neighbour warped).
    labels
        Table with columns ``index``, ``region``, ``hemisphere``; rows whose region is empty
        are skipped; several indices with the same (region, hemisphere) are pooled.
    mask
        Brain mask.
    atlas
        Value of the ``atlas`` column.

    Returns
    -------
    DataFrame
        Columns :data:`STATS_COLUMNS`, statistic ``mean`` (hard labels: a weighted mean
        would be identical).
    """
    rows = []
    mask = np.asarray(mask, dtype=bool)
    table = labels.dropna(subset=["region"])
    table = table[table["region"].astype(str) != ""]
    for (region, hemi), group in table.groupby(["region", "hemisphere"], sort=True):
        roi = mask & np.isin(labels_img, group["index"].astype(int).to_numpy())
        for name, values in metrics.items():
            values = np.asarray(values, dtype=float)
            inside = roi & np.isfinite(values)
            mean = float(values[inside].mean()) if inside.any() else np.nan
            rows.append((atlas, str(region), str(hemi), name, "mean", mean, int(inside.sum())))
    return pd.DataFrame(rows, columns=list(STATS_COLUMNS))
