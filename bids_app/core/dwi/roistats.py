"""Tract- and ROI-wise summaries of tensor metrics as a long-format table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bids_app.bids.schema import STATS_COLUMNS


def tract_stats(
    metrics: Mapping[str, np.ndarray],
    probmaps: Mapping[tuple[str, str], np.ndarray],
    *,
    mask: np.ndarray,
    threshold: float = 0.25,
    atlas: str = "hcp842",
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
    atlas: str = "jhu",
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


#: JSON data dictionary of the ``*_dwistats.tsv`` columns.
STATS_DICTIONARY = {
    "atlas": {"Description": "Atlas the region comes from (hcp842 tracts, jhu labels)."},
    "region": {"Description": "Canonical region name (cst, corticostriatal, corticothalamic, "
                              "cerebral_peduncle, mcp, scp, icp, plic, alic, ...)."},
    "hemisphere": {"Description": "L, R or bilateral.", "Levels": {
        "L": "left", "R": "right", "bilateral": "midline or both hemispheres"}},
    "metric": {"Description": "Diffusion tensor metric.", "Levels": {
        "fa": "fractional anisotropy (unitless)", "md": "mean diffusivity (mm^2/s)",
        "ad": "axial diffusivity (mm^2/s)", "rd": "radial diffusivity (mm^2/s)"}},
    "statistic": {"Description": "Summary statistic.", "Levels": {
        "wmean": "tract-probability-weighted mean over the brain mask",
        "mean": "mean over voxels with tract probability > threshold, or inside the label"}},
    "value": {"Description": "Value of the statistic; n/a when no voxel is available.",
              "Units": "FA unitless; MD/AD/RD mm^2/s"},
    "n_voxels": {"Description": "Native DWI voxels contributing (p > 0 for wmean, "
                                "p > threshold or in label for mean)."},
}
