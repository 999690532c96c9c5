"""Longitudinal validation against the simulator's independent truth: the planted decline.

The truth (``truth.json`` of ``alsmri simulate`` with ``sessions.n >= 2``) holds, per
participant and session, the noise-free tract values under the simulator's own tract weights
(placed by a route the measurement does not share: :mod:`bids_app.simulate.placement`) and
the session's time in years. For each tract and hemisphere:

* ``true_slope``: the mean over patients of each patient's true per-year change (OLS slope of
  the true value on the session years) minus the same mean over controls: the coefficient
  the group level's ``time x group`` term estimates;
* ``estimate``, ``ci_low``, ``ci_high``, ``q``: the group level's linear mixed model
  ``time_x_group`` row of the measured feature (``group_desc-longitudinal_stats.tsv``);
* ``ratio`` = estimate / true slope (the share of the true decline the measured feature
  recovers), ``true_in_ci``, ``same_sign`` and ``significant`` (q < alpha).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.bids.outputs import GROUP_DIR, GROUP_OUTPUTS
from bids_app.errors import MissingInputError
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL
from bids_app.simulate.recovery import load_truth, write_table

COLUMNS = ("atlas", "region", "hemisphere", "metric", "statistic", "n_patients", "n_controls",
           "true_slope_patients", "true_slope_controls", "true_slope", "estimate", "ci_low",
           "ci_high", "q", "ratio", "true_in_ci", "same_sign", "significant")
DESCRIPTIONS = {
    "atlas": "Atlas of the measured feature", "region": "Tract",
    "hemisphere": "L or R", "metric": "Diffusion metric",
    "statistic": "Statistic of the measured feature (wmean: the atlas-weighted mean)",
    "n_patients": "Patients with >= 2 sessions in the truth",
    "n_controls": "Controls with >= 2 sessions in the truth",
    "true_slope_patients": "Mean over patients of the true per-year change (noise-free value "
                           "under the simulator's tract weights; OLS slope on session years)",
    "true_slope_controls": "The same over controls",
    "true_slope": "true_slope_patients - true_slope_controls (per year)",
    "estimate": "Group level's mixed-model time x group estimate of the measured feature",
    "ci_low": "Lower 95 % bound of the estimate", "ci_high": "Upper 95 % bound",
    "q": "Benjamini-Hochberg q of the estimate (the group level's family)",
    "ratio": "estimate / true_slope: share of the true decline recovered",
    "true_in_ci": "true_slope inside [ci_low, ci_high]",
    "same_sign": "estimate has the sign of true_slope",
    "significant": "q < alpha",
}


def _slope(years: list[float], values: list[float]) -> float:
    return float(np.polyfit(np.asarray(years, float), np.asarray(values, float), 1)[0])


def true_slopes(truth: dict, *, metric: str = "fa") -> pd.DataFrame:
    """Per participant and tract row of the truth: the true per-year change of ``metric``.

    Returns
    -------
    DataFrame
        ``participant_id, group, atlas, region, hemisphere, slope`` for every participant
        with at least two sessions in the truth.
    """
    rows = []
    for pid, record in truth["participants"].items():
        sessions = record.get("sessions", {})
        if len(sessions) < 2:
            continue
        series: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}
        for ses in sessions.values():
            for tract in ses["tracts"]:
                key = (tract["atlas"], tract["region"], tract["hemisphere"])
                years, values = series.setdefault(key, ([], []))
                years.append(float(ses["years"]))
                values.append(float(tract[metric]))
        for (atlas, region, hemi), (years, values) in series.items():
            rows.append({"participant_id": pid, "group": record["group"], "atlas": atlas,
                         "region": region, "hemisphere": hemi,
                         "slope": _slope(years, values)})
    return pd.DataFrame(rows, columns=["participant_id", "group", "atlas", "region",
                                       "hemisphere", "slope"])


def longitudinal_validation(truth: dict, stats: pd.DataFrame, *, metric: str = "fa",
                            statistic: str = "wmean", alpha: float = 0.05) -> pd.DataFrame:
    """The validation table (module docstring) of one metric and statistic.

    Parameters
    ----------
    truth
        ``truth.json`` of a multi-session simulated cohort.
    stats
        The group level's ``group_desc-longitudinal_stats.tsv``.
    """
    patient = truth.get("patient_label", PATIENT_LABEL)
    control = truth.get("control_label", CONTROL_LABEL)
    slopes = true_slopes(truth, metric=metric)
    if slopes.empty:
        raise MissingInputError("truth.json has no participant with two or more sessions")
    terms = stats[(stats["term"] == "time_x_group") & (stats["metric"] == metric)
                  & (stats["statistic"] == statistic)]
    rows = []
    for (atlas, region, hemi), part in slopes.groupby(["atlas", "region", "hemisphere"],
                                                      sort=False):
        pat = part.loc[part["group"] == patient, "slope"]
        con = part.loc[part["group"] == control, "slope"]
        true = pat.mean() - (con.mean() if len(con) else 0.0)
        hit = terms[(terms["atlas"] == atlas) & (terms["region"] == region)
                    & (terms["hemisphere"] == hemi)]
        est, lo, hi, q = (hit.iloc[0][["estimate", "ci_low", "ci_high", "q"]].astype(float)
                          if len(hit) else (np.nan,) * 4)
        rows.append({"atlas": atlas, "region": region, "hemisphere": hemi, "metric": metric,
                     "statistic": statistic, "n_patients": len(pat), "n_controls": len(con),
                     "true_slope_patients": pat.mean(),
                     "true_slope_controls": con.mean() if len(con) else np.nan,
                     "true_slope": true, "estimate": est, "ci_low": lo, "ci_high": hi, "q": q,
                     "ratio": est / true if true != 0 else np.nan,
                     "true_in_ci": bool(lo <= true <= hi),
                     "same_sign": bool(np.sign(est) == np.sign(true) and true != 0),
                     "significant": bool(q < alpha)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def longitudinal_validation_from_outputs(bids_dir: Path, output_dir: Path, **kwargs
                                         ) -> pd.DataFrame:
    """Read ``BIDS_DIR/truth.json`` and the group level's longitudinal table."""
    path = Path(output_dir) / GROUP_DIR / GROUP_OUTPUTS["longitudinal"]
    if not path.is_file():
        raise MissingInputError(f"{path}: longitudinal table not found; run the group level "
                                "on a multi-session dataset first")
    stats = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    return longitudinal_validation(load_truth(bids_dir), stats, **kwargs)


def write_longitudinal_validation(table: pd.DataFrame, path: Path, *,
                                  meta: dict | None = None) -> Path:
    """Write the table and its JSON sidecar (column descriptions, ``meta`` merged)."""
    return write_table(table, path, {**{k: {"Description": v}
                                        for k, v in DESCRIPTIONS.items()}, **(meta or {})})
