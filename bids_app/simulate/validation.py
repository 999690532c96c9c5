"""Tract validation against an independent truth: recovered/true ratios, slope, r, leakage.

The truth (``truth.json`` of ``alsmri simulate``) is each participant's noise-free tract value
as the *simulator* defines the tract (its own weights, placed by a route the measurement does
not share: :mod:`bids_app.simulate.placement`).  A measure is any per-participant feature of the
participant tract tables, chosen by a feature-name template (``{atlas}``, ``{region}``,
``{hemisphere}``, ``{metric}`` are filled from the truth row), so today's atlas-based
``hcp842_cst_L_fa_wmean`` and a bundle-based ``hcp842bundle_cst_L_fa_wmean`` go through the same
function and sit side by side (:func:`side_by_side`).

For each tract and hemisphere (patients minus controls, means over participants):

* ``true_difference``, ``measured_difference`` and ``ratio`` = measured / true;
* ``slope`` (OLS, 95 % CI) of measured on true values over all participants, ``r`` (Pearson)
  and ``bias`` (mean measured - true);
* for the neighbour tract (no planted effect of its own, default corticothalamic):
  ``leakage`` = its measured difference / the true difference of the reference tract (CST) in
  the same hemisphere, and ``excess_leakage`` = (its measured - its true difference) / the
  same (the part not explained by the truth's own overlap with the lesioned tracts).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import stats

from bids_app.bids.outputs import (
    DWI_OUTPUTS,
    DWI_STATS,
    Output,
    dwi_map_output,
    feature_name,
)
from bids_app.core.dwi.roistats import tract_stats
from bids_app.errors import MissingInputError
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL
from bids_app.simulate.recovery import load_truth, write_table

#: today's atlas-based measure: the tract-probability-weighted mean of the tract table
ATLAS_FEATURE = "{atlas}_{region}_{hemisphere}_{metric}_wmean"
#: alsmri's own maps under the simulator's tract weights (:func:`simulator_weight_features`)
SIMWEIGHTS = "simweights_{region}_{hemisphere}_{metric}_wmean"
#: the subject-specific bundle measure (``statistic`` = ``bundle``, issue 28 A)
BUNDLE_FEATURE = "{atlas}_{region}_{hemisphere}_{metric}_bundle"
METRICS = ("fa", "md", "ad", "rd")
COLUMNS = ("measure", "feature", "region", "hemisphere", "placement", "planted_fa_change",
           "n_patients", "n_controls", "true_patients", "true_controls", "true_difference",
           "measured_patients", "measured_controls", "measured_difference", "p", "ratio",
           "slope", "slope_ci_low", "slope_ci_high", "r", "bias", "leakage_reference",
           "leakage", "excess_leakage", "placement_coverage")
DESCRIPTIONS = {
    "measure": "Name of the measured feature (e.g. hcp842 = atlas-based wmean; simweights = "
               "alsmri's own map under the simulator's tract weights)",
    "feature": "Feature-name template of the measure",
    "region": "Tract (measured feature's region)",
    "hemisphere": "L or R",
    "placement": "The simulator's own source of the tract (atlas/region), placed through "
                 "the source T1w",
    "planted_fa_change": "Relative FA change planted in patients' tract (x severity; "
                         "effects.tracts), 0 for a tract without an effect of its own",
    "n_patients": "Patients with a measured and a true value",
    "n_controls": "Controls with a measured and a true value",
    "true_patients": "Mean true value in patients (noise-free, simulator's tract weights)",
    "true_controls": "Mean true value in controls",
    "true_difference": "true_patients - true_controls",
    "measured_patients": "Mean measured value in patients",
    "measured_controls": "Mean measured value in controls",
    "measured_difference": "measured_patients - measured_controls",
    "p": "Welch t-test p of the measured difference",
    "ratio": "measured_difference / true_difference (recovered fraction of the true "
             "difference)",
    "slope": "OLS slope of measured on true values over all participants",
    "slope_ci_low": "95% CI of the slope (lower)",
    "slope_ci_high": "95% CI of the slope (upper)",
    "r": "Pearson r over participants between measured and true values",
    "bias": "Mean over participants of measured - true",
    "leakage_reference": "Lesioned tract the leakage is relative to (same hemisphere)",
    "leakage": "measured_difference of this tract / true_difference of the reference "
               "(neighbour rows only)",
    "excess_leakage": "(measured_difference - true_difference) of this tract / "
                      "true_difference of the reference (neighbour rows only)",
    "placement_coverage": "Bundle measure only: mean over participants of the bundle's "
                          "density-weighted planted effect strength over the same under the "
                          "simulator's weights (the ratio its placement alone allows; "
                          "bundle_coverage)",
}


def truth_table(truth: dict, *, metric: str = "fa") -> pd.DataFrame:
    """Long table of the truth: participant_id, group, atlas, region, hemisphere, placement,
    planted_fa_change, truth (the tract rows of ``truth.json``; hemispheres L/R only)."""
    planted = {key: float(spec.get("fa_change", 0.0))
               for key, spec in truth["effects"]["tracts"].items()}
    rows = []
    for pid, part in truth["participants"].items():
        for t in part["tracts"]:
            key = f"{t['atlas']}/{t['region']}"
            if key not in planted or t["hemisphere"] not in ("L", "R"):
                continue
            rows.append({"participant_id": pid, "group": part["group"], "atlas": t["atlas"],
                         "region": t["region"], "hemisphere": t["hemisphere"],
                         "placement": t.get("placement", key),
                         "planted_fa_change": planted[key], "truth": float(t[metric])})
    return pd.DataFrame(rows)


def participant_features(output_dir: Path) -> pd.DataFrame:
    """Wide table (``participant_id`` + one column per feature name) from every participant
    tract table under ``output_dir`` (first session when there are several)."""
    paths = sorted(Path(output_dir).glob(f"sub-*/**/{DWI_STATS.glob()}"))
    if not paths:
        raise MissingInputError(f"{output_dir}: no participant tract table "
                                f"({DWI_STATS.glob()}); run the participant level first")
    rows = {}
    for path in paths:
        pid = path.relative_to(output_dir).parts[0]
        if pid in rows:
            continue
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
        rows[pid] = {feature_name(r.atlas, r.region, r.hemisphere, r.metric, r.statistic):
                     r.value for r in table.itertuples()}
    return pd.DataFrame([{"participant_id": pid, **values} for pid, values in rows.items()])


def simulator_weight_features(bids_dir: Path, output_dir: Path, truth: dict) -> pd.DataFrame:
    """alsmri's FA/MD/AD/RD maps weighted by the simulator's own tract maps, within alsmri's
    DWI brain mask (the participant level's ``wmean`` rule,
    :func:`bids_app.core.dwi.roistats.tract_stats`); features ``simweights_<region>_<hemi>_
    <metric>_wmean``.  The maps of ``derivatives/simulate-truth`` are on the participant's
    input DWI grid, which alsmri's native maps keep."""
    rows = []
    for pid, part in truth["participants"].items():
        dwi_dir = Path(output_dir) / pid / "dwi"
        maps = {m: _one(dwi_dir, dwi_map_output("tensor", m, model_description=""))
                for m in METRICS}
        mask_path = _one(dwi_dir, DWI_OUTPUTS["mask"])
        if mask_path is None or any(p is None for p in maps.values()):
            continue  # no participant outputs: NaN rows in the validation table
        metrics = {m: nib.load(p).get_fdata(dtype=np.float32) for m, p in maps.items()}
        mask = nib.load(mask_path).get_fdata(dtype=np.float32) > 0.5
        probmaps = {}
        for key, rel in part.get("maps", {}).items():
            kind, _atlas, region, hemi = key.split("/")
            if kind == "tract" and hemi in ("L", "R"):
                probmaps[(region, hemi)] = nib.load(Path(bids_dir) / rel).get_fdata(
                    dtype=np.float32)
        table = tract_stats(metrics, probmaps, mask=mask, threshold=0.5, atlas="simweights")
        table = table[table["statistic"] == "wmean"]
        rows.append({"participant_id": pid, **{
            feature_name(r.atlas, r.region, r.hemisphere, r.metric, r.statistic): r.value
            for r in table.itertuples()}})
    return pd.DataFrame(rows, columns=None if rows else ["participant_id"])


def planted_share(weights: np.ndarray, truth: np.ndarray, *, saturation: float) -> float:
    """Mean planted effect strength under ``weights`` over the same under the simulator's own
    ``truth`` weights (one grid); the strength of a voxel is ``truth / saturation``, at most
    1 (:data:`bids_app.simulate.cohort.EFFECT_SATURATION`). 1: the weights sit where the
    truth's do."""
    strength = np.clip(truth / saturation, 0.0, 1.0)
    seen = float((weights * strength).sum() / weights.sum())
    return seen / float((truth * strength).sum() / truth.sum())


def bundle_coverage(bids_dir: Path, output_dir: Path, truth: dict) -> pd.DataFrame:
    """Where each recognised bundle lies relative to the simulator's planted effect.

    For participant and tract: the bundle's streamline-density-weighted mean of the planted
    effect strength (the simulator's tract weight over its ``effect_saturation``, at most 1)
    divided by the same under the simulator's own weights.  If every voxel's FA change were
    proportional to that strength, this is the fraction of the true difference the bundle's
    placement lets it recover (1: it sits where the truth's weight does, < 1: partly beside
    the lesioned tract, e.g. from disagreement of atlas definitions or registrations);
    together with the ``simweights`` ratio (preprocessing and fit alone) it splits a bundle
    ratio into placement and measurement.

    Returns
    -------
    DataFrame
        ``participant_id, region, hemisphere, coverage, inside``: ``inside`` = the fraction
        of the bundle's density where the simulator's weight is > 0.05. Tracts without a
        recognised bundle are left out.
    """
    from dipy.tracking.utils import density_map

    from bids_app.bids.outputs import bundle_output
    from bids_app.core.dwi.bundles import load_streamlines

    saturation = float(truth["measurement"]["effect_saturation"])
    rows = []
    for pid, part in truth["participants"].items():
        dwi_dir = Path(output_dir) / pid / "dwi"
        mask_path = _one(dwi_dir, DWI_OUTPUTS["mask"])
        if mask_path is None:
            continue
        mask_img = nib.load(mask_path)
        mask = mask_img.get_fdata(dtype=np.float32) > 0.5
        for key, rel in part.get("maps", {}).items():
            kind, _atlas, region, hemi = key.split("/")
            trk = _one(dwi_dir, bundle_output(region, hemi))
            if kind != "tract" or hemi not in ("L", "R") or trk is None:
                continue
            lines = load_streamlines(trk)
            if len(lines) == 0:
                continue
            weight = nib.load(Path(bids_dir) / rel).get_fdata(dtype=np.float32)
            density = density_map(lines, mask_img.affine, mask.shape).astype(float) * mask
            if density.sum() <= 0 or weight.sum() <= 0:
                continue
            rows.append({"participant_id": pid, "region": region, "hemisphere": hemi,
                         "coverage": planted_share(density, weight, saturation=saturation),
                         "inside": float(density[weight > 0.05].sum() / density.sum())})
    return pd.DataFrame(rows, columns=["participant_id", "region", "hemisphere", "coverage",
                                       "inside"])


def _one(directory: Path, output: Output) -> Path | None:
    """The NIfTI file of an image output (declared without extension) in ``directory``."""
    found = sorted(directory.glob(output.glob() + ("" if output.extension else ".nii*")))
    return found[0] if found else None


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """OLS slope of y on x with its 95 % CI, and Pearson r."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (np.nan,) * 4
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half), float(fit.rvalue)


def tract_validation(truth: dict, measured: pd.DataFrame, *, feature: str = ATLAS_FEATURE,
                     measure: str = "hcp842", metric: str = "fa", reference: str = "cst",
                     neighbour: str = "corticothalamic") -> pd.DataFrame:
    """The validation table of one measure (columns :data:`COLUMNS`, one row per tract and
    hemisphere).

    Parameters
    ----------
    truth
        Content of ``truth.json``.
    measured
        ``participant_id`` (with or without ``sub-``) + feature columns, e.g.
        :func:`participant_features`; a missing feature gives NaN rows, not an error.
    feature
        Feature-name template (``{atlas}``, ``{region}``, ``{hemisphere}``, ``{metric}``).
    measure
        Name of the measure in the table.
    metric
        fa, md, ad or rd (truth and feature).
    reference, neighbour
        Leakage: ``neighbour``'s difference relative to ``reference``'s true difference.
    """
    long = truth_table(truth, metric=metric)
    table = measured.copy()
    table["participant_id"] = [p if str(p).startswith("sub-") else f"sub-{p}"
                               for p in table["participant_id"]]
    table = table.drop_duplicates("participant_id").set_index("participant_id")
    rows = []
    for (atlas, region, hemi), part in long.groupby(["atlas", "region", "hemisphere"],
                                                    sort=False):
        column = feature.format(atlas=atlas, region=region, hemisphere=hemi, metric=metric)
        values = (pd.to_numeric(table[column], errors="coerce") if column in table.columns
                  else pd.Series(np.nan, index=table.index))
        part = part.assign(measured=values.reindex(part["participant_id"]).to_numpy(float))
        part = part[np.isfinite(part["measured"]) & np.isfinite(part["truth"])]
        patients = part[part["group"] == PATIENT_LABEL]
        controls = part[part["group"] == CONTROL_LABEL]
        true_diff = patients["truth"].mean() - controls["truth"].mean()
        meas_diff = patients["measured"].mean() - controls["measured"].mean()
        slope, low, high, r = _slope(part["truth"].to_numpy(), part["measured"].to_numpy())
        p = (float(stats.ttest_ind(patients["measured"], controls["measured"],
                                   equal_var=False).pvalue)
             if len(patients) > 1 and len(controls) > 1 else np.nan)
        rows.append({"measure": measure, "feature": feature, "region": region,
                     "hemisphere": hemi, "placement": part["placement"].iloc[0]
                     if len(part) else "", "planted_fa_change":
                     float(long.loc[long["region"] == region, "planted_fa_change"].iloc[0]),
                     "n_patients": len(patients), "n_controls": len(controls),
                     "true_patients": patients["truth"].mean(),
                     "true_controls": controls["truth"].mean(), "true_difference": true_diff,
                     "measured_patients": patients["measured"].mean(),
                     "measured_controls": controls["measured"].mean(),
                     "measured_difference": meas_diff, "p": p,
                     "ratio": meas_diff / true_diff if true_diff else np.nan,
                     "slope": slope, "slope_ci_low": low, "slope_ci_high": high, "r": r,
                     "bias": float((part["measured"] - part["truth"]).mean())
                     if len(part) else np.nan})
    out = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    out["leakage_reference"] = out["leakage_reference"].astype(object)
    for row in out.index[out["region"] == neighbour]:
        ref = out[(out["region"] == reference) & (out["hemisphere"] == out.at[row, "hemisphere"])]
        if ref.empty:
            continue
        ref_true = float(ref["true_difference"].iloc[0])
        out.at[row, "leakage_reference"] = reference
        out.at[row, "leakage"] = out.at[row, "measured_difference"] / ref_true
        out.at[row, "excess_leakage"] = (out.at[row, "measured_difference"]
                                         - out.at[row, "true_difference"]) / ref_true
    return out


def side_by_side(table: pd.DataFrame, *,
                 values: tuple[str, ...] = ("ratio", "leakage", "excess_leakage", "r", "slope",
                                            "bias")) -> pd.DataFrame:
    """One row per tract and hemisphere, ``<measure>:<value>`` columns next to the truth."""
    keys = ["region", "hemisphere"]
    truth = table.drop_duplicates(keys)[[*keys, "placement", "planted_fa_change",
                                         "true_difference"]]
    wide = table.pivot_table(index=keys, columns="measure", values=list(values),
                             aggfunc="first", dropna=False, sort=False)
    order = list(dict.fromkeys(table["measure"]))
    wide = wide.reindex(columns=[(v, m) for m in order for v in values])
    wide.columns = [f"{m}:{v}" for v, m in wide.columns]
    return truth.merge(wide.reset_index(), on=keys, how="left")


def format_side_by_side(table: pd.DataFrame) -> str:
    """Plain-text side-by-side table (ratio, leakage, r per measure; the bundle measure's
    placement coverage)."""
    values = ("ratio", "leakage", "excess_leakage", "r")
    if "placement_coverage" in table and table["placement_coverage"].notna().any():
        values += ("placement_coverage",)
    wide = side_by_side(table, values=values).dropna(axis=1, how="all")
    with pd.option_context("display.width", 200, "display.max_columns", 50,
                           "display.float_format", "{:.3f}".format):
        return wide.to_string(index=False)


def validation_from_outputs(bids_dir: Path, output_dir: Path,
                            measures: dict[str, str] | None = None) -> pd.DataFrame:
    """The validation table of a simulated dataset's participant outputs.

    Parameters
    ----------
    bids_dir
        The simulated dataset (``truth.json`` and ``derivatives/simulate-truth``).
    output_dir
        The participant level's output directory.
    measures
        Measure name -> feature template (default: ``hcp842`` = :data:`ATLAS_FEATURE`);
        ``simweights`` (alsmri's maps under the simulator's own tract weights) is always
        added last.

    Returns
    -------
    DataFrame
        :func:`tract_validation` tables of every measure, stacked.
    """
    truth = load_truth(bids_dir)
    measured = participant_features(output_dir)
    tables = [tract_validation(truth, measured, feature=feature, measure=name)
              for name, feature in (measures or {"hcp842": ATLAS_FEATURE}).items()]
    oracle = simulator_weight_features(bids_dir, output_dir, truth)
    tables.append(tract_validation(truth, oracle, feature=SIMWEIGHTS, measure="simweights"))
    table = pd.concat(tables, ignore_index=True)
    coverage = bundle_coverage(bids_dir, output_dir, truth)
    table["placement_coverage"] = np.nan
    if not coverage.empty:
        mean = coverage.groupby(["region", "hemisphere"])["coverage"].mean()
        rows = table["feature"] == BUNDLE_FEATURE
        table.loc[rows, "placement_coverage"] = [
            mean.get((r, h), np.nan) for r, h in zip(table.loc[rows, "region"],
                                                      table.loc[rows, "hemisphere"], strict=True)]
    return table


def write_validation(table: pd.DataFrame, path: Path, *, meta: dict | None = None) -> Path:
    """Write the table as TSV with a JSON sidecar (column descriptions + ``meta``)."""
    return write_table(table, path, {**DESCRIPTIONS, **(meta or {})})
