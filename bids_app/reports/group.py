"""Group-level outputs: TSV tables with JSON sidecars, figures and ``report.html``.

Everything :func:`bids_app.group.run.run_group` computed is written here, under
``OUTPUT_DIR/group/`` (names declared in :mod:`bids_app.bids.outputs`).
Figures use the matplotlib object API on the Agg canvas (no pyplot state).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.bids.derivatives import write_atomic, write_json
from bids_app.bids.outputs import GROUP_DIR, GROUP_FIGURES
from bids_app.group import columns as C
from bids_app.group import profiles as PR
from bids_app.group.columns import OUTPUTS as GROUP_OUTPUTS
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.harmonise import methods_text
from bids_app.group.primary import ANALYSIS_SCALE, metric_unit
from bids_app.group.run import GroupResults
from bids_app.group.seeds import onset_labels
from bids_app.reports import group_change as GC
from bids_app.reports import group_matrices as M
from bids_app.reports import group_sections as S
from bids_app.reports.drawing import Job, drawing
from bids_app.reports.group_figures import (
    FIGURE_SEED,
    association_scatter,
    duration_scatter,
    group_boxplots,
    onset_boxplots,
    profile_means_plot,
    profile_t_plot,
)
from bids_app.reports.group_sections import PROFILE_TABLES

__all__ = ["association_scatter", "group_boxplots", "render_report", "write_outputs",
           "write_tsv"]

DESCRIPTIONS = {"comparisons": C.COMPARISONS, "clinical": C.CLINICAL, "duration": C.CLINICAL,
                "gmtract": C.GMTRACT, "interhemispheric": C.INTERHEMISPHERIC}
#: Tables written only when their analysis ran -> column descriptions.
OPTIONAL_TABLES = {"sidescores": C.SIDESCORES, "onset": C.ONSET, "tractcorr": C.TRACTCORR,
                   "harmonisation": C.HARMONISATION, "longitudinal": C.LONGITUDINAL,
                   "progression": C.PROGRESSION}
#: Outputs written only when their analysis ran (Table 1, z-scores, the seeds' further
#: analyses, harmonisation and longitudinal ones; the profile tables too).
OPTIONAL_OUTPUTS = ("demographics", "zscores", "change", "harmonised", *OPTIONAL_TABLES)


def write_tsv(table: pd.DataFrame, path: Path, described: dict[str, Any], *,
              extra: dict[str, Any] | None = None) -> Path:
    """Write ``table`` (``n/a`` for missing) and a sidecar describing every column.

    A table with a ``metric`` column also records the units of its values per metric
    (``MetricUnits``: diffusivities in 10^-3 mm^2/s); ``extra`` keys (e.g. ``Method``) are
    added to the sidecar.
    """
    write_atomic(path, table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n"))
    sidecar = C.sidecar(table.columns, described)
    metric_cols = [c for c in ("metric", "tract_metric", "gm_metric") if c in table.columns]
    if metric_cols:
        metrics = sorted({m for c in metric_cols for m in table[c].dropna().astype(str)})
        sidecar["MetricUnits"] = {m: metric_unit(m, C.METRIC_UNITS) for m in metrics}
    write_json(path.with_suffix(".json"), {**sidecar, **(extra or {})})
    return path


def _ordered(table: pd.DataFrame, described: dict[str, Any]) -> pd.DataFrame:
    if table.empty and not len(table.columns):
        return pd.DataFrame(columns=list(described))
    first = [c for c in described if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def _joined(results: GroupResults) -> tuple[pd.DataFrame, dict[str, Any]]:
    joined = results.joined.copy()
    joined["session_id"] = joined["session_id"].replace("", np.nan)
    described: dict[str, Any] = {
        "participant_id": C.INCLUSION["participant_id"],
        "session_id": C.INCLUSION["session_id"],
        "has_dwi": C.INCLUSION["has_dwi"], "has_anat": C.INCLUSION["has_anat"]}
    for col, meta in results.phenotype.dictionary.items():
        if col in joined.columns and col not in described:
            described[col] = {"Description": "Phenotype column", **meta}
    for row in results.catalogue.itertuples(index=False):
        described[row.feature] = C.feature_description(row.atlas, row.region, row.hemisphere,
                                                       row.metric, row.statistic)
    return joined, described


def _inclusion(results: GroupResults) -> pd.DataFrame:
    incl = results.inclusion.copy()
    incl["session_id"] = incl["session_id"].replace("", np.nan)
    return incl


def write_outputs(results: GroupResults, output_dir: Path, *,
                  processes: int = 1) -> dict[str, Path]:
    """Write every group output under ``output_dir/group``; return their paths by key.

    Keys are those of ``GROUP_OUTPUTS`` and of the figures drawn (``GROUP_FIGURES``).
    ``processes`` > 1 draws the figures in that many worker processes while the tables are
    written (:func:`bids_app.reports.drawing.drawing`; the command line passes ``--nprocs``,
    ``settings.nipype.nprocs``).
    """
    out_dir = Path(output_dir) / GROUP_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    with drawing(_figure_jobs(results, out_dir), processes=processes) as drawn:
        written = write_tables(results, out_dir)
        figures = {k: v for k, v in drawn().items() if v is not None}
    written.update(figures)
    written["report"] = write_atomic(out_dir / GROUP_OUTPUTS["report"],
                                     render_report(results, figures, out_dir))
    return written


def write_tables(results: GroupResults, out_dir: Path) -> dict[str, Path]:
    """Every table (TSV + JSON sidecar) and the spec record; their paths by key."""
    written: dict[str, Path] = {}
    joined, described = _joined(results)
    written["joined"] = write_tsv(joined, out_dir / GROUP_OUTPUTS["joined"], described)
    inclusion_columns = {**C.INCLUSION, **PR.INCLUSION}
    incl = _ordered(_inclusion(results), inclusion_columns)
    written["inclusion"] = write_tsv(incl, out_dir / GROUP_OUTPUTS["inclusion"],
                                     inclusion_columns)
    for key, described in DESCRIPTIONS.items():
        table = _ordered(results.tables.get(key, pd.DataFrame()), described)
        written[key] = write_tsv(table, out_dir / GROUP_OUTPUTS[key], described)
    spec = results.spec.to_dict()
    spec["skipped"] = results.skipped
    spec["methods"] = {"harmonisation": methods_text(results.harmonisation,
                                                     results.spec.harmonize)}
    written["spec"] = write_json(out_dir / GROUP_OUTPUTS["spec"], spec)
    written.update(write_profile_tables(results, out_dir))
    if "demographics" in results.tables:
        written["demographics"] = write_tsv(
            _ordered(results.tables["demographics"], C.DEMOGRAPHICS),
            out_dir / GROUP_OUTPUTS["demographics"], C.DEMOGRAPHICS)
    if "zscores" in results.tables:
        written["zscores"] = write_zscores(results, out_dir / GROUP_OUTPUTS["zscores"])
    methods = {"harmonisation": {"Method": spec["methods"]["harmonisation"]}}
    for key, described in OPTIONAL_TABLES.items():
        if key in results.tables:
            written[key] = write_tsv(_ordered(results.tables[key], described),
                                     out_dir / GROUP_OUTPUTS[key], described,
                                     extra=methods.get(key))
    written.update(write_change_tables(results, out_dir))
    return written


def _figure_jobs(results: GroupResults, out_dir: Path) -> dict[str, Job]:
    """A job per figure the results allow, by ``GROUP_FIGURES`` key, costliest first."""
    spec, tables, alpha = results.spec, results.tables, results.spec.fdr_alpha
    fig = {key: out_dir / name for key, name in GROUP_FIGURES.items()}
    panels = spec.max_figure_panels
    jobs: dict[str, Job] = {}  # costliest first: handed out in this order
    patients = results.cross.loc[results.clinical_rows]
    if "clinical" in tables:
        jobs["clinical_heatmap"] = partial(M.primary_clinical_heatmap, tables["clinical"],
                                           fig["clinical_heatmap"], alpha=alpha)
    jobs["longitudinal_lineplot"] = partial(GC.longitudinal_figure, results,
                                            fig["longitudinal_lineplot"], max_panels=panels,
                                            seed=FIGURE_SEED)
    if "gmtract" in tables:
        jobs["gmtract_matrix"] = partial(M.gmtract_heatmap, tables["gmtract"],
                                         fig["gmtract_matrix"], alpha=alpha)
    if "tractcorr" in tables:
        jobs["tractcorr"] = partial(M.tractcorr_heatmap, tables["tractcorr"], fig["tractcorr"],
                                    alpha=alpha, max_panels=panels)
    if "onset" in tables:
        onset = spec.onset_subgroups
        jobs["onset_boxplots"] = partial(
            onset_boxplots, results.cross, results.labels,
            onset_labels(results.cross[onset.column], onset.subgroups), tables["onset"],
            fig["onset_boxplots"], max_panels=panels, seed=FIGURE_SEED)
    ds = spec.duration_scatter
    if "duration" in tables and ds.enabled:
        jobs["duration_scatter"] = partial(
            duration_scatter, patients, tables["duration"], fig["duration_scatter"],
            column=spec.duration_column, metrics=ds.metrics, regions=ds.regions)
    if "clinical" in tables:
        jobs["scatter"] = partial(association_scatter, patients, tables["clinical"],
                                  fig["scatter"], max_panels=panels, seed=FIGURE_SEED)
    if "comparisons" in tables:
        jobs["boxplots"] = partial(group_boxplots, results.cross, results.labels,
                                   tables["comparisons"], fig["boxplots"], max_panels=panels,
                                   seed=FIGURE_SEED)
        jobs["heatmap"] = partial(M.primary_comparison_heatmap, tables["comparisons"],
                                  fig["heatmap"], alpha=alpha)
        jobs["model_heatmap"] = partial(M.model_comparison_heatmap, tables["comparisons"],
                                        fig["model_heatmap"], alpha=alpha)
    if "sidescores" in tables:
        jobs["sidescores"] = partial(M.sidescore_heatmap, tables["sidescores"],
                                     fig["sidescores"], alpha=alpha)
    jobs["harmonisation_scatter"] = partial(GC.harmonisation_figure, results,
                                            fig["harmonisation_scatter"])
    prof = results.profiles
    if prof.skipped is None:
        jobs["profiles"] = partial(profile_means_plot, prof.means, prof.stats, prof.segments,
                                   fig["profiles"], max_panels=panels)
        jobs["profile_clinical"] = partial(profile_t_plot, prof.stats, prof.segments,
                                           fig["profile_clinical"], max_panels=panels)
    return jobs


# --------------------------------------------------------------------------- tables
def write_zscores(results: GroupResults, path: Path) -> Path:
    """The per-participant z-score table; its sidecar gives the method and, per feature
    column, the controls and residual SD of its model."""
    table = results.tables["zscores"].copy()
    table["session_id"] = table["session_id"].replace("", np.nan)
    models = results.tables["zscore_models"].set_index("feature")
    catalogue = results.catalogue.set_index("feature")
    described: dict[str, Any] = dict(C.ZSCORE_HEAD)
    for feature in table.columns[len(C.ZSCORE_HEAD):]:
        described[feature] = C.zscore_description(
            {"feature": feature, **catalogue.loc[feature].to_dict()},
            models.loc[feature].to_dict())
    write_tsv(table, path, described)
    zspec = results.spec.zscores
    write_json(path.with_suffix(".json"), {
        **C.sidecar(table.columns, described),
        "Method": "Per feature, OLS feature ~ 1 + covariates on the controls with a value and "
                  "complete covariates; z = (observed - predicted) / residual SD of that fit; "
                  "controls: the same model fitted without them (leave-one-out)",
        "Covariates": list(zspec.covariates), "MinimumControls": zspec.min_controls})
    return path


def write_change_tables(results: GroupResults, out_dir: Path) -> dict[str, Path]:
    """The harmonised values (as the joined table's features) and the per-participant
    annualised change, when computed."""
    written = {}
    catalogue = results.catalogue.drop_duplicates("feature").set_index("feature")
    values = results.harmonisation.values
    if values is not None:
        table = pd.concat([results.joined[["participant_id", "session_id"]], values], axis=1)
        table["session_id"] = table["session_id"].replace("", np.nan)
        described: dict[str, Any] = dict(C.HARMONISED_HEAD)
        for feature in values.columns:
            row = catalogue.loc[feature]
            described[feature] = C.feature_description(row.atlas, row.region, row.hemisphere,
                                                       row.metric, row.statistic)
        written["harmonised"] = write_tsv(
            table, out_dir / GROUP_OUTPUTS["harmonised"], described,
            extra={"Method": methods_text(results.harmonisation, results.spec.harmonize)})
    if "change" in results.tables:
        change = results.tables["change"]
        described = dict(C.CHANGE)
        for col in change.columns[len(C.CHANGE):]:
            described[col] = f"{C.CHANGE_SUFFIX}: {col.removesuffix('_per_year')}"
        written["change"] = write_tsv(change, out_dir / GROUP_OUTPUTS["change"], described)
    return written


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dictionaries (NaN -> null)."""
    return json.loads(table.to_json(orient="records"))


def write_profile_tables(results: GroupResults, out_dir: Path) -> dict[str, Path]:
    """The along-tract profile tables with sidecars; nothing when those analyses were skipped.

    The pointwise table's sidecar also records the method and lists the significant segments.
    """
    prof = results.profiles
    if prof.skipped is not None:
        return {}
    written = {key: write_tsv(_ordered(getattr(prof, attr), described),
                              out_dir / GROUP_OUTPUTS[key], described)
               for key, (attr, described) in PROFILE_TABLES.items()}
    method = {
        "Method": "OLS at every node with the covariates of the tract-mean analyses; "
                  "family-wise error along each profile by the permutation distribution of "
                  "the maximum |t| over its nodes (Nichols & Holmes 2002), nuisance "
                  "covariates by Freedman-Lane residual permutation",
        "NumberOfPermutations": prof.spec.n_permutations, "RandomSeed": prof.spec.seed,
        "FWEAlpha": prof.spec.fwe_alpha, "ConfidenceLevel": PR.CI_LEVEL,
        "SignificantSegments": _records(prof.segments)}
    write_json(written["profiles"].with_suffix(".json"),
               {**C.sidecar(prof.stats.columns, PR.STATS), **method})
    return written


# ---------------------------------------------------------------------------- report
#: Page style: figures are shown at their pixel size (at most the page width).
STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 8px}"
         "img{max-width:100%}"
         "table.results{border-collapse:collapse;font-size:13px;margin-bottom:8px;"
         "display:block;overflow-x:auto}"
         "table.results td,table.results th{padding:2px 6px;border-bottom:1px solid #ddd;"
         "text-align:right;white-space:nowrap}"
         "table.results td:first-child,table.results th:first-child{text-align:left}"
         ".warn{color:#a04000}")


def render_report(results: GroupResults, figures: dict[str, Path], out_dir: Path) -> str:
    """HTML report: cohort and Table 1, warnings, the primary family, exploratory analyses,
    profiles, patient z-scores, output files and the resolved spec."""
    esc = html.escape
    cross, labels = results.cross, results.labels
    n_pat, n_con = int((labels == PATIENT).sum()), int((labels == CONTROL).sum())
    units = ", ".join(f"{m.upper()} in {u}" for m, (_, u) in ANALYSIS_SCALE.items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>alsmri group report</title>",
        f"<style>{STYLE}</style></head><body>",
        (f"<h1>alsmri group report</h1><p>alsmri {esc(__version__)}, "
         f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; spec: "
         f"{esc(results.spec.source)}; FDR alpha {results.spec.fdr_alpha}; {esc(units)} "
         f"(participant tables and the joined table keep mm^2/s).</p>"),
        "<h2>Cohort</h2>",
        (f"<p>{results.joined['participant_id'].nunique()} participant(s) with outputs, "
         f"{len(results.joined)} participant/session row(s); {len(cross)} in the "
         f"cross-sectional analyses (session policy '{esc(results.spec.session)}'): "
         f"{n_pat} patient(s), {n_con} control(s); {len(results.catalogue)} imaging "
         "feature(s).</p>"),
        S.demographics_section(results),
    ]
    if results.notes.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(
            f"<li class='warn'>{esc(w)}</li>" for w in results.notes.warnings) + "</ul>")
    if results.skipped:
        parts.append("<h2>Skipped analyses</h2><ul>" + "".join(
            f"<li>{esc(k)}: {esc(v)}</li>" for k, v in results.skipped.items()) + "</ul>")
    parts.append(S.primary_section(results, figures, out_dir))
    parts.append(S.exploratory_section(results, figures, out_dir))
    parts.append(S.profile_section(results, figures, out_dir))
    parts.append(S.zscore_section(results))
    parts.append(GC.harmonisation_section(results, figures, out_dir))
    parts.append(GC.longitudinal_section(results, figures, out_dir))
    present = {*results.tables, *(("harmonised",) if results.harmonisation.values is not None
                                  else ())}
    files = [v for k, v in GROUP_OUTPUTS.items()
             if (k not in PROFILE_TABLES or results.profiles.skipped is None)
             and (k not in OPTIONAL_OUTPUTS or k in present)]
    parts.append("<h2>Files</h2><ul>" + "".join(
        f"<li><a href='{v}'>{v}</a></li>" for v in files) + "</ul>")
    parts.append("<h2>Resolved analysis spec</h2><pre>"
                 + esc(json.dumps(results.spec.to_dict(), indent=1, default=str)) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
