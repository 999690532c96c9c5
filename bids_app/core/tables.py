"""The plain long-format table every summary function of :mod:`bids_app.core` returns.

One row per (atlas, region, hemisphere, metric, statistic). The participant derivatives store
these tables unchanged (:mod:`bids_app.bids.outputs` declares their names and sidecars).
"""

from __future__ import annotations

#: Columns of every summary table (tract/ROI statistics, GM volumes).
STATS_COLUMNS: tuple[str, ...] = (
    "atlas",  # e.g. hcp842, jhu, aal
    "region",  # canonical lowercase region name
    "hemisphere",  # L, R or bilateral
    "metric",  # fa, md, ad, rd | gmv, gmv_pct_tiv, tiv, ...
    "statistic",  # wmean (probability-weighted), mean (within threshold/label), sum, ratio
    "value",
    "n_voxels",
)

#: Columns of the along-tract profile tables (one row per atlas/region/hemisphere/metric/node;
#: node 0 at the bundle's inferior end).
PROFILE_COLUMNS: tuple[str, ...] = (
    "atlas",  # the model-bundle atlas, e.g. hcp842
    "region",
    "hemisphere",
    "metric",
    "node",  # 0 .. n_nodes - 1
    "value",
    "n_streamlines",  # streamlines of the recognised bundle (profile n/a below the minimum)
)
