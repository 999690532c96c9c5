"""Gray-matter volumes per atlas region and hemisphere, TIV and normalised volumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bids_app.core.tables import STATS_COLUMNS


def tissue_volumes(probseg: Mapping[str, np.ndarray], *, voxel_volume: float
                   ) -> dict[str, float]:
    """Volume (mm^3) of each tissue = sum of its probability x voxel volume; ``TIV`` = sum."""
    vols = {t: float(np.sum(p, dtype=np.float64) * voxel_volume) for t, p in probseg.items()}
    vols["TIV"] = float(sum(vols[t] for t in ("GM", "WM", "CSF")))
    return vols


def gm_volumes(gm: np.ndarray, labels: np.ndarray, *, label_table: pd.DataFrame,
               voxel_volume: float, tiv: float, atlas: str,
               groups: Mapping[str, Sequence[str]] | None = None,
               brain_mask: np.ndarray | None = None) -> pd.DataFrame:
    """Long-format table of GM volumes per region and hemisphere.

    GM volume of a region = sum over its voxels of the GM probability x voxel volume (mm^3);
    the normalised volume is that divided by TIV, in percent.

    Parameters
    ----------
    gm
        GM probability map (T1w grid).
    labels
        Integer atlas label image on the same grid.
    label_table
        Atlas labels with columns ``index``, ``hemisphere`` (``L``/``R``/``bilateral``) and
        ``region`` (canonical name; rows with an empty region are ignored). Several indices
        may share a region/hemisphere; their voxels are pooled.
    voxel_volume
        mm^3 per voxel.
    tiv
        Total intracranial volume (mm^3).
    atlas
        Atlas name written in the ``atlas`` column.
    groups
        Region groups, e.g. ``{"striatum": ["caudate", "putamen"]}``, summed per hemisphere
        when every member is present.
    brain_mask
        Brain mask; its voxel count is the ``n_voxels`` of the ``total_gm``/``tiv`` rows.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`bids_app.core.tables.STATS_COLUMNS`; metrics ``gmv`` (statistic
        ``sum``, mm^3) and ``gmv_pct_tiv`` (statistic ``ratio``, percent); rows ``total_gm``
        (metrics ``gmv``/``gmv_pct_tiv``) and ``tiv`` (metric ``tiv``, ``sum``) with
        hemisphere ``bilateral``.
    """
    if gm.shape != labels.shape:
        raise ValueError(f"GM map {gm.shape} and label image {labels.shape} differ in shape")
    if tiv <= 0:
        raise ValueError(f"TIV must be positive, got {tiv}")
    labels = np.rint(labels).astype(np.int64)
    gm = np.asarray(gm, dtype=np.float64)
    table = label_table.copy()
    table = table[table["region"].notna() & (table["region"].astype(str) != "")]
    n_labels = int(max(labels.max(), table["index"].max())) + 1
    gm_sum = np.bincount(labels.ravel(), weights=gm.ravel(), minlength=n_labels)
    count = np.bincount(labels.ravel(), minlength=n_labels)
    acc: dict[tuple[str, str], list[float]] = {}
    for row in table.itertuples(index=False):
        key = (str(row.region), str(row.hemisphere))
        vals = acc.setdefault(key, [0.0, 0])
        vals[0] += gm_sum[int(row.index)] * voxel_volume
        vals[1] += int(count[int(row.index)])
    for group, members in (groups or {}).items():
        for hemi in sorted({h for _, h in acc}):
            keys = [(m, hemi) for m in members]
            if all(k in acc for k in keys) and (group, hemi) not in acc:
                acc[(group, hemi)] = [sum(acc[k][0] for k in keys),
                                      sum(int(acc[k][1]) for k in keys)]
    rows = []
    for (region, hemi), (vol, nvox) in acc.items():
        rows.append((atlas, region, hemi, "gmv", "sum", vol, nvox))
        rows.append((atlas, region, hemi, "gmv_pct_tiv", "ratio", 100.0 * vol / tiv, nvox))
    nmask = int(np.count_nonzero(brain_mask)) if brain_mask is not None else int(
        np.count_nonzero(gm))
    total_gm = float(gm.sum() * voxel_volume)
    rows += [(atlas, "total_gm", "bilateral", "gmv", "sum", total_gm, nmask),
             (atlas, "total_gm", "bilateral", "gmv_pct_tiv", "ratio", 100 * total_gm / tiv,
              nmask),
             (atlas, "tiv", "bilateral", "tiv", "sum", float(tiv), nmask)]
    df = pd.DataFrame(rows, columns=list(STATS_COLUMNS))
    return df.astype({"value": float, "n_voxels": int})

