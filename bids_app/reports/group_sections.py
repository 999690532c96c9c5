"""HTML sections of the group report (``report.html``), one function per section.

The primary family (the seeds' hypotheses, spec section ``primary``) leads each analysis;
exploratory rows follow. Imaging values are in analysis units (diffusivities in
10^-3 mm^2/s, a ``unit`` column says so).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.group import columns as C
from bids_app.group import profiles as PR
from bids_app.group import table1 as T1
from bids_app.group import zscores as Z
from bids_app.group.columns import OUTPUTS as GROUP_OUTPUTS
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.run import GroupResults
from bids_app.reports.group_figures import unit_of

#: Features listed per participant in the report's z-score section (largest |z| first).
ZSCORE_TOP = 10
#: Rows shown per result table in the report (the TSV has them all).
TABLE_ROWS = 20
#: Profile tables: GROUP_OUTPUTS key -> (ProfileResults attribute, column descriptions).
PROFILE_TABLES = {"profiles": ("stats", PR.STATS), "profile_segments": ("segments", PR.SEGMENTS),
                  "profile_means": ("means", PR.MEANS)}


_KEY = ["atlas", "region", "hemisphere", "metric", "unit", "statistic"]
#: Report tables: key -> (title, columns shown, primary-family figures, exploratory figures).
RESULT_TABLES = {
    "comparisons": ("Patients vs controls", [
        *_KEY, "n_patient", "n_control", "mean_patient", "mean_control", "test",
        "effect_size", "adj_beta", "p", "q", "primary_q"],
        ["heatmap"], ["boxplots", "model_heatmap"]),
    "clinical": ("Clinical scores (patients)", [
        "score", *_KEY, "n", "pearson_r", "spearman_rho", "beta", "ci_low", "ci_high",
        "std_beta", "p", "q", "primary_q"], ["clinical_heatmap"], ["scatter"]),
    "duration": ("Disease duration (patients)", [
        *_KEY, "n", "pearson_r", "beta", "ci_low", "ci_high", "p", "q", "primary_q"],
        ["duration_scatter"], []),
    "gmtract": ("Gray matter vs tract", [
        "subset", "gm_region", "hemisphere", "tract_atlas", "tract_region", "tract_statistic",
        "n", "pearson_r", "beta", "p", "q", "primary_q"], ["gmtract_matrix"], []),
    "sidescores": ("Side-matched scores (patients)", [
        "score", "side", "relation", *_KEY, "n", "pearson_r", "beta", "p", "q", "primary_q"],
        ["sidescores"], []),
    "onset": ("Onset-site subgroups vs controls", [
        "subgroup", *_KEY, "n_patient", "n_control", "mean_patient", "mean_control", "test",
        "effect_size", "adj_beta", "p", "q", "primary_q"], ["onset_boxplots"], []),
    "tractcorr": ("Correlations between tracts", [
        "subset", "metric", "statistic", "region_a", "hemisphere_a", "region_b",
        "hemisphere_b", "n", "r", "p", "q"], [], ["tractcorr"]),
    "interhemispheric": ("Left vs right", [
        "subset", "atlas", "region", "metric", "unit", "n", "mean_left", "mean_right", "r",
        "ai_mean", "ai_sd", "paired_t", "paired_p", "paired_q"], [], []),
}


def image(figures: dict[str, Path], key: str, out_dir: Path) -> str:
    """``<img>`` of a drawn figure (shown at its pixel size, never wider than the page)."""
    if key not in figures:
        return ""
    rel = html.escape(figures[key].relative_to(out_dir).as_posix())
    return f"<p><img src='{rel}' alt='{html.escape(key)}'></p>"


def result_table(table: pd.DataFrame, cols: list[str]) -> str:
    """HTML of ``table`` (already chosen and ordered) with a unit per metric."""
    if table.empty:
        return "<p>No rows.</p>"
    if "metric" in table:
        table = table.assign(unit=table["metric"].map(lambda m: unit_of(m) or "-"))
    return table[[c for c in cols if c in table.columns]].to_html(
        index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0,
        classes="results")


def _link(key: str) -> str:
    return f"Table: <a href='{GROUP_OUTPUTS[key]}'>{GROUP_OUTPUTS[key]}</a>."


def primary_section(results: GroupResults, figures: dict[str, Path], out_dir: Path) -> str:
    """The seeds' hypotheses: per analysis the primary rows (smallest p first) with their own
    BH q (``primary_q``), and the primary-family figures."""
    esc, prim, alpha = html.escape, results.spec.primary, results.spec.fdr_alpha
    parts = ["<h2>Primary hypotheses</h2>", (
        f"<p>The seeds' hypotheses form the primary family: tracts "
        f"{esc(', '.join(prim.tracts))} ({esc(', '.join(prim.tract_metrics))}) and "
        f"gray-matter regions {esc(', '.join(prim.gm_regions))} "
        f"({esc(', '.join(prim.gm_metrics))}). Within each analysis (and outcome) their "
        f"p values get their own Benjamini-Hochberg FDR: <b>primary_q</b>, significant below "
        f"{alpha:g}. Every other row is exploratory (next section). Diffusivities (MD, AD, RD) "
        f"in 10<sup>-3</sup> mm<sup>2</sup>/s. Up to {TABLE_ROWS} rows per table, smallest "
        f"p first; the TSV files hold every row.</p>")]
    for key, (title, cols, figs, _) in RESULT_TABLES.items():
        if not figs and key != "comparisons":
            continue
        parts.append(f"<h3>{esc(title)}</h3>")
        table = results.tables.get(key)
        if table is None:
            parts.append(f"<p>Not computed: {esc(results.skipped.get(key, 'no data'))}.</p>")
            continue
        rows = table[table["primary"].astype(bool)] if "primary" in table else table
        n_sig = int(rows.get("primary_significant", pd.Series(dtype=bool)).fillna(False).sum())
        parts.append(f"<p>{_link(key)} {len(rows)} primary row(s), {n_sig} with primary q "
                     f"&lt; {alpha:g}.</p>")
        parts.append(result_table(rows.sort_values("p", na_position="last").head(TABLE_ROWS),
                                  cols))
        parts += [image(figures, f, out_dir) for f in figs]
    return "\n".join(parts)


def exploratory_section(results: GroupResults, figures: dict[str, Path],
                        out_dir: Path) -> str:
    """Everything outside the primary family: rows with q < alpha (q within the metric
    families), smallest q first, and the exploratory figures."""
    esc, alpha = html.escape, results.spec.fdr_alpha
    parts = ["<h2>Exploratory analyses</h2>", (
        f"<p>Rows outside the primary family; q: Benjamini-Hochberg within each family "
        f"(column <i>family</i>, e.g. one per metric); rows with q &lt; {alpha:g} shown.</p>")]
    for key, (title, cols, _, figs) in RESULT_TABLES.items():
        parts.append(f"<h3>{esc(title)}</h3>")
        table = results.tables.get(key)
        if table is None:
            parts.append(f"<p>Not computed: {esc(results.skipped.get(key, 'no data'))}.</p>")
            continue
        rows = table[~table["primary"].astype(bool)] if "primary" in table else table
        sig = rows[rows["significant"].fillna(False).astype(bool)]
        parts.append(f"<p>{_link(key)} {len(sig)} of {len(rows)} row(s) with q &lt; "
                     f"{alpha:g}.</p>")
        if len(sig):
            parts.append(result_table(sig.sort_values("q").head(TABLE_ROWS), cols))
        parts += [image(figures, f, out_dir) for f in figs]
    return "\n".join(parts)


def zscore_section(results: GroupResults) -> str:
    esc = html.escape
    head = "<h2>Patient z-scores against controls</h2>"
    if "zscores" not in results.tables:
        reason = results.skipped.get("zscores", "not computed")
        return f"{head}<p>Not computed: {esc(reason)}.</p>"
    table, zspec = results.tables["zscores"], results.spec.zscores
    features = list(table.columns[len(C.ZSCORE_HEAD):])
    n_con = int((table["group_label"] == CONTROL).sum())
    parts = [head, (
        f"<p>Per feature, OLS on the {n_con} controls adjusted for "
        f"{esc(', '.join(zspec.covariates) or 'nothing')}; z = (observed - predicted) / "
        f"residual SD; controls leave-one-out. Minimum {zspec.min_controls} controls. "
        f"Table: <a href='{GROUP_OUTPUTS['zscores']}'>{GROUP_OUTPUTS['zscores']}</a>. "
        f"Per patient: the {ZSCORE_TOP} features with the largest |z| "
        f"(|z| &ge; {Z.Z_FLAG:g} in bold).</p>")]
    catalogue = results.catalogue.set_index("feature").reindex(features)
    labels = [[esc(str(v)) for v in catalogue[c]]
              for c in ("atlas", "region", "hemisphere", "metric", "statistic")]
    patients = table[table["group_label"] == PATIENT]
    z = patients[features].to_numpy(dtype=float)
    # per patient, the ZSCORE_TOP largest |z| (stable: ties keep the feature order)
    order = np.argsort(-np.nan_to_num(np.abs(z), nan=-1.0), axis=1, kind="stable")
    for i, row in enumerate(patients[["participant_id", "session_id", "n_abs_z_ge_2",
                                      "n_zscores"]].itertuples(index=False)):
        cells = []
        for j in order[i, :ZSCORE_TOP]:
            if not np.isfinite(z[i, j]):
                break
            value = f"{z[i, j]:+.2f}"
            if abs(z[i, j]) >= Z.Z_FLAG:
                value = f"<b>{value}</b>"
            cells.append("<tr>" + "".join(f"<td>{col[j]}</td>" for col in labels)
                         + f"<td>{value}</td></tr>")
        label = row.participant_id + (f" {row.session_id}" if row.session_id else "")
        parts.append(
            f"<details><summary>{esc(label)}: {int(row.n_abs_z_ge_2)} of "
            f"{int(row.n_zscores)}"
            f" feature(s) with |z| &ge; {Z.Z_FLAG:g}</summary>"
            "<table class='results'><tr><th>atlas</th><th>region</th><th>hemisphere</th>"
            "<th>metric</th><th>statistic</th><th>z</th></tr>" + "".join(cells)
            + "</table></details>")
    return "\n".join(parts)


def demographics_section(results: GroupResults) -> str:
    esc = html.escape
    head = "<h2>Table 1: demographic and clinical characteristics</h2>"
    table = results.tables.get("demographics")
    if table is None:
        reason = results.skipped.get("demographics", "not computed")
        return f"{head}<p>Not computed: {esc(reason)}.</p>"
    rows = []
    for variable, part in table.groupby("variable", sort=False):
        first = part.iloc[0]
        test = first["test"] if isinstance(first["test"], str) else ""
        p = f"{first['p']:.3g}" if pd.notna(first["p"]) else esc(str(first["reason"])
                                                                  if pd.notna(first["reason"])
                                                                  else "")
        summary = {"mean_sd": "mean (SD)", "median_iqr": "median [IQR]",
                   "count_percent": "n (%)", "count": ""}[first["summary_type"]]
        name = f"{variable}, {summary}" if summary else variable
        if first["kind"] == T1.CATEGORICAL:
            rows.append(f"<tr><td>{esc(name)}</td><td></td><td></td><td>{esc(test)}</td>"
                        f"<td>{p}</td></tr>")
            rows += [f"<tr><td>&nbsp;&nbsp;{esc(str(r['level']))}</td><td>{esc(r['patient'])}"
                     f"</td><td>{esc(r['control'])}</td><td></td><td></td></tr>"
                     for _, r in part.iterrows()]
        else:
            rows.append(f"<tr><td>{esc(name)}</td><td>{esc(first['patient'])}</td>"
                        f"<td>{esc(first['control'])}</td><td>{esc(test)}</td><td>{p}</td></tr>")
    fisher = results.spec.table1.fisher_min_expected
    return "\n".join([
        head,
        (f"<p>Table: <a href='{GROUP_OUTPUTS['demographics']}'>"
         f"{GROUP_OUTPUTS['demographics']}</a>. Continuous: mean (SD) and Welch t when "
         f"Shapiro-Wilk p &gt; {results.spec.normality_alpha} in both groups, else median "
         f"[IQR] and Mann-Whitney U; categorical: chi-square, Fisher's exact test when an "
         f"expected "
         f"count is below {fisher:g}.</p>"),
        ("<table class='results'><tr><th>characteristic</th><th>patients</th>"
         "<th>controls</th><th>test</th><th>p</th></tr>" + "".join(rows) + "</table>")])


def profile_section(results: GroupResults, figures: dict[str, Path], out_dir: Path) -> str:
    esc, prof = html.escape, results.profiles
    head = "<h2>Along-tract profiles</h2>"
    if prof.skipped is not None:
        return f"{head}<p>{esc(prof.skipped)}.</p>"
    spec = prof.spec
    parts = [head, (
        f"<p>OLS at every node with the covariates of the tract-mean analyses; family-wise "
        f"error along each profile by the permutation max-|t| (Freedman-Lane), "
        f"{spec.n_permutations} permutations, seed {spec.seed}; segments: contiguous nodes "
        f"with p_FWE &lt; {spec.fwe_alpha}. Tables: " + ", ".join(
            f"<a href='{GROUP_OUTPUTS[k]}'>{GROUP_OUTPUTS[k]}</a>" for k in PROFILE_TABLES)
        + ".</p>")]
    if prof.segments.empty:
        parts.append(f"<p>No segment with p_FWE &lt; {spec.fwe_alpha}.</p>")
    else:
        parts.append(prof.segments.sort_values("min_p_fwe").head(40).to_html(
            index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0,
            classes="results"))
    parts += [image(figures, fig, out_dir) for fig in ("profiles", "profile_clinical")]
    return "\n".join(parts)
