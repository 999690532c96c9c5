"""Write the group-level TSV/JSON outputs, figures and ``report.html``."""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.bids.derivatives import write_atomic, write_json
from bids_app.group import columns as C
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.figures import association_scatter, group_boxplots, pvalue_heatmap
from bids_app.group.load import Phenotype

DESCRIPTIONS = {"comparisons": C.COMPARISONS, "clinical": C.CLINICAL, "duration": C.CLINICAL,
                "gmtract": C.GMTRACT, "interhemispheric": C.INTERHEMISPHERIC}
FIGURES = {
    "boxplots": "figures/group_desc-comparisons_boxplot.png",
    "heatmap": "figures/group_desc-comparisons_heatmap.png",
    "scatter": "figures/group_desc-clinical_scatter.png",
    "clinical_heatmap": "figures/group_desc-clinical_heatmap.png",
}


def write_tsv(table: pd.DataFrame, path: Path, described: dict[str, Any]) -> Path:
    """Write ``table`` (``n/a`` for missing) and a sidecar describing every column."""
    write_atomic(path, table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n"))
    write_json(path.with_suffix(".json"), C.sidecar(table.columns, described))
    return path


def _ordered(table: pd.DataFrame, described: dict[str, Any]) -> pd.DataFrame:
    if table.empty and not len(table.columns):
        return pd.DataFrame(columns=list(described))
    first = [c for c in described if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def _joined(results: Any, pheno: Phenotype) -> tuple[pd.DataFrame, dict[str, Any]]:
    joined = results.joined.copy()
    joined["session_id"] = joined["session_id"].replace("", np.nan)
    described: dict[str, Any] = {
        "participant_id": C.INCLUSION["participant_id"],
        "session_id": C.INCLUSION["session_id"],
        "has_dwi": C.INCLUSION["has_dwi"], "has_anat": C.INCLUSION["has_anat"]}
    for col, meta in pheno.dictionary.items():
        if col in joined.columns and col not in described:
            described[col] = {"Description": "Phenotype column", **meta}
    for row in results.catalogue.itertuples(index=False):
        described[row.feature] = C.feature_description(row.atlas, row.region, row.hemisphere,
                                                       row.metric, row.statistic)
    return joined, described


def _inclusion(results: Any) -> pd.DataFrame:
    incl = results.inclusion.copy()
    cross = results.cross
    labels = pd.Series(results.labels.to_numpy(), index=cross["participant_id"].to_numpy())
    key = incl["participant_id"] + "|" + incl["session_id"]
    cross_key = set(cross["participant_id"] + "|" + cross["session_id"])
    incl["in_cross_sectional"] = key.isin(cross_key)
    incl["group_label"] = incl["participant_id"].map(labels).where(incl["in_cross_sectional"])
    incl["in_comparisons"] = ("comparisons" in results.tables) & incl["group_label"].isin(
        [PATIENT, CONTROL])
    any_patient = (results.labels == PATIENT).any()
    in_clin = incl["in_cross_sectional"] & (incl["group_label"] == PATIENT if any_patient
                                            else True)
    incl["in_clinical"] = ("clinical" in results.tables) & in_clin
    incl["session_id"] = incl["session_id"].replace("", np.nan)
    return incl


def write_outputs(results: Any, out_dir: Path, *, pheno: Phenotype) -> dict[str, Path]:
    """Write every group output; return their paths by key (see ``run.OUTPUTS``)."""
    from bids_app.group.run import OUTPUTS

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    joined, described = _joined(results, pheno)
    written["joined"] = write_tsv(joined, out_dir / OUTPUTS["joined"], described)
    incl = _ordered(_inclusion(results), C.INCLUSION)
    written["inclusion"] = write_tsv(incl, out_dir / OUTPUTS["inclusion"], C.INCLUSION)
    for key, described in DESCRIPTIONS.items():
        table = _ordered(results.tables.get(key, pd.DataFrame()), described)
        written[key] = write_tsv(table, out_dir / OUTPUTS[key], described)
    spec = results.spec.to_dict()
    spec["skipped"] = results.skipped
    written["spec"] = write_json(out_dir / OUTPUTS["spec"], spec)
    figures = _figures(results, out_dir)
    written.update(figures)
    written["report"] = write_atomic(out_dir / OUTPUTS["report"],
                                     render_report(results, figures, out_dir))
    return written


def _figures(results: Any, out_dir: Path) -> dict[str, Path]:
    spec = results.spec
    made: dict[str, Path | None] = {}
    comp = results.tables.get("comparisons")
    if comp is not None:
        made["boxplots"] = group_boxplots(results.cross, results.labels, comp,
                                          out_dir / FIGURES["boxplots"],
                                          max_panels=spec.max_figure_panels)
        made["heatmap"] = pvalue_heatmap(comp, out_dir / FIGURES["heatmap"], rows="metric",
                                         title="Patients vs controls: -log10 p (* q < alpha)",
                                         alpha=spec.fdr_alpha)
    clin = results.tables.get("clinical")
    if clin is not None:
        patients = results.cross.loc[(results.labels == PATIENT).to_numpy()] \
            if (results.labels == PATIENT).any() else results.cross
        made["scatter"] = association_scatter(patients, clin, out_dir / FIGURES["scatter"],
                                              max_panels=spec.max_figure_panels)
        rows = clin.assign(score_metric=clin["score"] + " / " + clin["metric"])
        made["clinical_heatmap"] = pvalue_heatmap(
            rows, out_dir / FIGURES["clinical_heatmap"], rows="score_metric",
            title="Clinical associations (adjusted beta): -log10 p", alpha=spec.fdr_alpha)
    return {k: v for k, v in made.items() if v is not None}


def _table_html(table: pd.DataFrame | None, cols: list[str], *, top: int = 20) -> str:
    if table is None or table.empty:
        return "<p>No rows.</p>"
    sig = table[table["significant"].fillna(False).astype(bool)] \
        if "significant" in table else table
    if sig.empty:
        return "<p>No result below the FDR threshold.</p>"
    sort = "q" if "q" in sig else "p"
    shown = sig.sort_values(sort).head(top)[[c for c in cols if c in sig.columns]]
    return shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a",
                         border=0, classes="results")


def render_report(results: Any, figures: dict[str, Path], out_dir: Path) -> str:
    """HTML summary: cohort, warnings, significant results, figures, output files."""
    from bids_app.group.run import OUTPUTS

    esc = html.escape
    cross, labels = results.cross, results.labels
    n_pat, n_con = int((labels == PATIENT).sum()), int((labels == CONTROL).sum())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>alsmri group report</title>",
        ("<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
         "table.results{border-collapse:collapse;font-size:12px}"
         "table.results td,table.results th{padding:2px 6px;border-bottom:1px solid #ddd}"
         ".warn{color:#a04000}</style></head><body>"),
        (f"<h1>alsmri group report</h1><p>alsmri {esc(__version__)}, "
         f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; spec: "
         f"{esc(results.spec.source)}; FDR alpha {results.spec.fdr_alpha}.</p>"),
        "<h2>Cohort</h2>",
        (f"<p>{results.joined['participant_id'].nunique()} participant(s) with outputs, "
         f"{len(results.joined)} participant/session row(s); {len(cross)} in the "
         f"cross-sectional analyses (session policy '{esc(results.spec.session)}'): "
         f"{n_pat} patient(s), {n_con} control(s); {len(results.catalogue)} imaging "
         "feature(s).</p>"),
    ]
    if results.notes.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(
            f"<li class='warn'>{esc(w)}</li>" for w in results.notes.warnings) + "</ul>")
    if results.skipped:
        parts.append("<h2>Skipped analyses</h2><ul>" + "".join(
            f"<li>{esc(k)}: {esc(v)}</li>" for k, v in results.skipped.items()) + "</ul>")
    sections = [
        ("Patients vs controls", "comparisons",
         ["atlas", "region", "hemisphere", "metric", "n_patient", "n_control", "mean_patient",
          "mean_control", "test", "p", "q", "effect_size_type", "effect_size", "adj_beta",
          "adj_p"], ["heatmap", "boxplots"]),
        ("Clinical associations (patients)", "clinical",
         ["score", "atlas", "region", "hemisphere", "metric", "n", "pearson_r", "spearman_rho",
          "beta", "ci_low", "ci_high", "std_beta", "p", "q", "r2"],
         ["clinical_heatmap", "scatter"]),
        ("Disease duration", "duration",
         ["score", "atlas", "region", "hemisphere", "metric", "n", "pearson_r", "beta", "p",
          "q"], []),
        ("Gray matter vs tract", "gmtract",
         ["subset", "gm_region", "hemisphere", "tract_atlas", "tract_region", "n", "pearson_r",
          "beta", "t", "p", "q", "r2"], []),
        ("Left vs right", "interhemispheric",
         ["subset", "atlas", "region", "metric", "n", "r", "ai_mean", "ai_sd", "paired_t",
          "paired_p", "paired_q"], []),
    ]
    for title, key, cols, figs in sections:
        parts.append(f"<h2>{esc(title)}</h2>")
        parts.append(f"<p>Table: <a href='{OUTPUTS[key]}'>{OUTPUTS[key]}</a></p>")
        parts.append(_table_html(results.tables.get(key), cols))
        for fig in figs:
            if fig in figures:
                rel = figures[fig].relative_to(out_dir).as_posix()
                parts.append(f"<p><img src='{esc(rel)}' style='max-width:100%'></p>")
    parts.append("<h2>Files</h2><ul>" + "".join(
        f"<li><a href='{v}'>{v}</a></li>" for v in OUTPUTS.values()) + "</ul>")
    parts.append("<h2>Resolved analysis spec</h2><pre>"
                 + esc(json.dumps(results.spec.to_dict(), indent=1, default=str)) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
