"""The primary (hypothesis) family and the analysis units of the imaging metrics.

The seeds' hypotheses (spec section ``primary``) form one declared family per analysis and
outcome, with its own Benjamini-Hochberg FDR; every other row is exploratory. Diffusivities
are analysed and reported in 10^-3 mm^2/s (participant tables and the joined table keep the
participant level's mm^2/s).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bids_app.bids.outputs import DWI_MODELS
from bids_app.group.spec_sections import PrimarySpec
from bids_app.group.stats import fdr

#: Unit of the participant maps -> (factor to the analysis unit, analysis unit).
UNIT_CHANGES = {"mm^2/s": (1e3, "10^-3 mm^2/s")}
#: Metric -> (factor, unit) for the metrics whose analysis unit differs from the maps'.
ANALYSIS_SCALE: Mapping[str, tuple[float, str]] = {
    param: UNIT_CHANGES[spec.units] for maps in DWI_MODELS.values()
    for param, spec in maps.items() if spec.units in UNIT_CHANGES}

#: Analysis table key -> columns naming the primary family (after ``primary:``).
PRIMARY_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "comparisons": (), "clinical": ("score",), "duration": ("score",),
    "onset": ("subgroup",), "sidescores": ("score", "relation"), "gmtract": ("subset",),
    "longitudinal": ("term",), "progression": ("score",)}


def to_analysis_units(values: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """``values`` with every feature column of a rescaled metric in its analysis unit."""
    out = values.copy()
    for metric, (factor, _) in ANALYSIS_SCALE.items():
        cols = [f for f in catalogue.loc[catalogue["metric"] == metric, "feature"]
                if f in out.columns]
        if cols:
            out[cols] = out[cols].astype(float) * factor
    return out


def metric_unit(metric: str, units: Mapping[str, str]) -> str:
    """Analysis unit of ``metric`` (``units``: the participant maps' units by metric)."""
    return ANALYSIS_SCALE[metric][1] if metric in ANALYSIS_SCALE else units.get(metric, "n/a")


def primary_rows(table: pd.DataFrame, primary: PrimarySpec) -> np.ndarray:
    """Boolean per row: a feature of the primary family (GM x tract: both of them are)."""
    if {"gm_region", "tract_region"} <= set(table.columns):
        return np.array([primary.is_primary(g, gm) and primary.is_primary(t, tm)
                         for g, gm, t, tm in zip(table["gm_region"], table["gm_metric"],
                                                 table["tract_region"],
                                                 table["tract_metric"])], dtype=bool)
    return np.array([primary.is_primary(r, m)
                     for r, m in zip(table["region"], table["metric"])], dtype=bool)


def mark_primary(table: pd.DataFrame, key: str, primary: PrimarySpec, *,
                 alpha: float) -> pd.DataFrame:
    """Add ``primary``, ``primary_family``, ``primary_q`` and ``primary_significant``.

    Parameters
    ----------
    table
        An analysis table of :data:`PRIMARY_FAMILIES` (with ``p``).
    key
        Its key: which columns split the primary family (e.g. one family per score).
    primary
        The spec's ``primary`` section.
    alpha
        FDR level (``fdr_alpha``).

    Returns
    -------
    DataFrame
        ``table`` with the four columns; ``primary_q`` is Benjamini-Hochberg over the primary
        rows of one family (NaN for exploratory rows).
    """
    out = table.copy()
    is_primary = primary_rows(out, primary)
    family = pd.Series("primary", index=out.index, dtype=object)
    for col in PRIMARY_FAMILIES[key]:
        family = family + ":" + out[col].astype(str)
    out["primary"] = is_primary
    out["primary_family"] = family.where(is_primary)
    p = out["p"].where(is_primary)
    out["primary_q"] = fdr(p, out["primary_family"].fillna(""))
    out["primary_significant"] = out["primary_q"] < alpha
    return out
