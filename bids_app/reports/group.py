"""Group-level outputs: TSV tables with JSON sidecars, figures and ``report.html``.

Everything :func:`bids_app.group.run.run_group` computed is written here, under
``OUTPUT_DIR/group/`` (names declared in :mod:`bids_app.bids.outputs`).
Figures use the matplotlib object API on the Agg canvas (no pyplot state).
"""

from __future__ import annotations

import html
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from bids_app import __version__
from bids_app.bids.derivatives import write_atomic, write_json
from bids_app.bids.outputs import GROUP_DIR, GROUP_FIGURES, feature_name
from bids_app.group import columns as C
from bids_app.group import profiles as PR
from bids_app.group import table1 as T1
from bids_app.group import zscores as Z
from bids_app.group.columns import OUTPUTS as GROUP_OUTPUTS
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.run import GroupResults

DESCRIPTIONS = {"comparisons": C.COMPARISONS, "clinical": C.CLINICAL, "duration": C.CLINICAL,
                "gmtract": C.GMTRACT, "interhemispheric": C.INTERHEMISPHERIC}
#: Outputs written only when their analysis ran (Table 1, z-scores; the profile tables too).
OPTIONAL_OUTPUTS = ("demographics", "zscores")
#: Features listed per participant in the report's z-score section (largest |z| first).
ZSCORE_TOP = 10
COLOURS = {PATIENT: "#c0392b", CONTROL: "#2e86c1"}
#: Points drawn per group/panel at most (display only; statistics use every value).
MAX_POINTS = 1000
#: Seed of the display-only jitter and point subsampling of the figures.
FIGURE_SEED = 0


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


def write_outputs(results: GroupResults, output_dir: Path) -> dict[str, Path]:
    """Write every group output under ``output_dir/group``; return their paths by key.

    Keys are those of ``GROUP_OUTPUTS`` and of the figures drawn (``GROUP_FIGURES``).
    """
    out_dir = Path(output_dir) / GROUP_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
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
    written["spec"] = write_json(out_dir / GROUP_OUTPUTS["spec"], spec)
    written.update(write_profile_tables(results, out_dir))
    if "demographics" in results.tables:
        written["demographics"] = write_tsv(
            _ordered(results.tables["demographics"], C.DEMOGRAPHICS),
            out_dir / GROUP_OUTPUTS["demographics"], C.DEMOGRAPHICS)
    if "zscores" in results.tables:
        written["zscores"] = write_zscores(results, out_dir / GROUP_OUTPUTS["zscores"])
    figures = _figures(results, out_dir)
    written.update(figures)
    written["report"] = write_atomic(out_dir / GROUP_OUTPUTS["report"],
                                     render_report(results, figures, out_dir))
    return written


def _figures(results: GroupResults, out_dir: Path) -> dict[str, Path]:
    spec = results.spec
    made: dict[str, Path | None] = {}
    comp = results.tables.get("comparisons")
    if comp is not None:
        made["boxplots"] = group_boxplots(results.cross, results.labels, comp,
                                          out_dir / GROUP_FIGURES["boxplots"],
                                          max_panels=spec.max_figure_panels, seed=FIGURE_SEED)
        made["heatmap"] = pvalue_heatmap(comp, out_dir / GROUP_FIGURES["heatmap"], rows="metric",
                                         title="Patients vs controls: -log10 p (* q < alpha)",
                                         alpha=spec.fdr_alpha)
    clin = results.tables.get("clinical")
    if clin is not None:
        patients = results.cross.loc[results.clinical_rows]
        made["scatter"] = association_scatter(patients, clin, out_dir / GROUP_FIGURES["scatter"],
                                              max_panels=spec.max_figure_panels,
                                              seed=FIGURE_SEED)
        rows = clin.assign(score_metric=clin["score"] + " / " + clin["metric"])
        made["clinical_heatmap"] = pvalue_heatmap(
            rows, out_dir / GROUP_FIGURES["clinical_heatmap"], rows="score_metric",
            title="Clinical associations (adjusted beta): -log10 p", alpha=spec.fdr_alpha)
    prof = results.profiles
    if prof.skipped is None:
        made["profiles"] = profile_means_plot(
            prof.means, prof.stats, prof.segments, out_dir / GROUP_FIGURES["profiles"],
            max_panels=spec.max_figure_panels)
        made["profile_clinical"] = profile_t_plot(
            prof.stats, prof.segments, out_dir / GROUP_FIGURES["profile_clinical"],
            max_panels=spec.max_figure_panels)
    return {k: v for k, v in made.items() if v is not None}


# --------------------------------------------------------------------------- z-scores
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


def _zscore_section(results: GroupResults) -> str:
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
    catalogue = results.catalogue.set_index("feature")
    patients = table[table["group_label"] == PATIENT]
    for _, row in patients.iterrows():
        z = row[features].astype(float)
        top = z.dropna().abs().sort_values(ascending=False, kind="stable").head(ZSCORE_TOP)
        cells = []
        for feature in top.index:
            info = catalogue.loc[feature]
            value = f"{z[feature]:+.2f}"
            if abs(z[feature]) >= Z.Z_FLAG:
                value = f"<b>{value}</b>"
            cells.append(f"<tr><td>{esc(info['atlas'])}</td><td>{esc(info['region'])}</td>"
                         f"<td>{esc(info['hemisphere'])}</td><td>{esc(info['metric'])}</td>"
                         f"<td>{esc(info['statistic'])}</td><td>{value}</td></tr>")
        label = row["participant_id"] + (f" {row['session_id']}" if row["session_id"] else "")
        parts.append(
            f"<details><summary>{esc(label)}: {int(row['n_abs_z_ge_2'])} of "
            f"{int(row['n_zscores'])}"
            f" feature(s) with |z| &ge; {Z.Z_FLAG:g}</summary>"
            "<table class='results'><tr><th>atlas</th><th>region</th><th>hemisphere</th>"
            "<th>metric</th><th>statistic</th><th>z</th></tr>" + "".join(cells)
            + "</table></details>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- Table 1
def _demographics_section(results: GroupResults) -> str:
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


# --------------------------------------------------------------------------- profiles
#: Profile tables: GROUP_OUTPUTS key -> (ProfileResults attribute, column descriptions).
PROFILE_TABLES = {"profiles": ("stats", PR.STATS), "profile_segments": ("segments", PR.SEGMENTS),
                  "profile_means": ("means", PR.MEANS)}


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


def _profile_order(stats_table: pd.DataFrame, max_panels: int) -> list[tuple]:
    """(analysis, score, atlas, region, hemisphere, metric) keys, smallest p_fwe first."""
    keys = ["analysis", "score", *PR.PROFILE]
    best = stats_table.groupby(keys, dropna=False, sort=False)["p_fwe"].min()
    return list(best.sort_values(na_position="last", kind="stable").head(max_panels).index)


def _rows_of(table: pd.DataFrame, profile: tuple) -> pd.DataFrame:
    return table[(table[PR.PROFILE] == list(profile)).all(axis=1)]


def _profile_grid(n: int) -> tuple[Figure, list]:
    """:func:`_grid` with margins in inches: room for two-line titles and the node axis."""
    fig, axes = _grid(n)
    height = fig.get_figheight()
    fig.subplots_adjust(top=1 - 0.45 / height, bottom=0.45 / height)
    return fig, axes


def _shade(ax, segments: pd.DataFrame) -> None:
    for seg in segments.itertuples(index=False):
        ax.axvspan(seg.start_node - 0.5, seg.end_node + 0.5, color="0.85", lw=0, zorder=0)


def profile_means_plot(means: pd.DataFrame, stats_table: pd.DataFrame, segments: pd.DataFrame,
                       path: Path, *, max_panels: int) -> Path | None:
    """Mean and confidence band per group along each profile, FWE-significant comparison
    segments shaded; profiles with the smallest comparison p_FWE first."""
    if means.empty:
        return None
    comp = stats_table[stats_table["analysis"] == "comparison"]
    order = ([key[2:] for key in _profile_order(comp, max_panels)] if not comp.empty else
             list(means[PR.PROFILE].drop_duplicates().itertuples(index=False,
                                                                 name=None))[:max_panels])
    fig, axes = _profile_grid(len(order))
    comp_segments = segments[segments["analysis"] == "comparison"]
    for ax, profile in zip(axes, order):
        for group, part in _rows_of(means, profile).groupby("group", sort=False):
            colour = COLOURS.get(group, "0.3")
            ax.plot(part["node"], part["mean"], color=colour, lw=1.2,
                    label=f"{group} (n={int(part['n'].max())})")
            ax.fill_between(part["node"], part["ci_low"], part["ci_high"], color=colour,
                            alpha=0.25, lw=0)
        _shade(ax, _rows_of(comp_segments, profile))
        rows = _rows_of(comp, profile)
        best = f"\nmin p_FWE={rows['p_fwe'].min():.2g}" if rows["p_fwe"].notna().any() else ""
        ax.set_title(" ".join(profile) + best, fontsize=8)
        ax.set_xlabel("node (0 = inferior)", fontsize=7)
        ax.legend(fontsize=6)
    return _save(fig, path)


def profile_t_plot(stats_table: pd.DataFrame, segments: pd.DataFrame, path: Path, *,
                   max_panels: int) -> Path | None:
    """t along the profiles with an FWE-significant clinical/duration association: the
    +-t_crit_fwe lines dashed, significant segments shaded (smallest p_FWE first)."""
    clin = stats_table[stats_table["analysis"] != "comparison"]
    hits = clin[clin["significant"].fillna(False).astype(bool)]
    if hits.empty:
        return None
    order = _profile_order(hits, max_panels)
    fig, axes = _profile_grid(len(order))
    keys = ["analysis", "score", *PR.PROFILE]
    for ax, key in zip(axes, order):
        rows = clin[(clin[keys] == list(key)).all(axis=1)]
        ax.plot(rows["node"], rows["t"], color=COLOURS[PATIENT], lw=1.2)
        for sign in (1, -1):
            ax.plot(rows["node"], sign * rows["t_crit_fwe"], color="0.4", lw=0.8, ls="--")
        _shade(ax, segments[(segments[keys] == list(key)).all(axis=1)])
        ax.set_title(f"{key[1]} ~ {' '.join(key[2:])}\nmin p_FWE={rows['p_fwe'].min():.2g}",
                     fontsize=8)
        ax.set_xlabel("node (0 = inferior)", fontsize=7)
        ax.set_ylabel("t", fontsize=7)
    return _save(fig, path)


def _profile_section(results: GroupResults, figures: dict[str, Path], out_dir: Path) -> str:
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
    for fig in ("profiles", "profile_clinical"):
        if fig in figures:
            rel = figures[fig].relative_to(out_dir).as_posix()
            parts.append(f"<p><img src='{esc(rel)}' style='max-width:100%'></p>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- figures
def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return write_atomic(path, buf.getvalue())


def _grid(n: int, *, width: float = 3.2, height: float = 3.0) -> tuple[Figure, list]:
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(width * ncol, height * nrow))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92, wspace=0.35,
                        hspace=0.6)
    axes = [fig.add_subplot(nrow, ncol, i + 1) for i in range(n)]
    return fig, axes


def _feature(row: pd.Series) -> str:
    return feature_name(row["atlas"], row["region"], row["hemisphere"], row["metric"],
                        row["statistic"])


def _label(row: pd.Series) -> str:
    return f"{row['atlas']} {row['region']} {row['hemisphere']} {row['metric']}"


def _most_significant(table: pd.DataFrame, max_panels: int) -> pd.DataFrame:
    """The significant rows of a statistics table, smallest q first, at most ``max_panels``."""
    sig = table[table["significant"].fillna(False).astype(bool)]
    return sig.sort_values("q").head(max_panels)


def group_boxplots(cross: pd.DataFrame, labels: pd.Series, comparisons: pd.DataFrame,
                   path: Path, *, max_panels: int, seed: int) -> Path | None:
    """Box + strip plots of the significant patient-control differences (smallest q first)."""
    sig = _most_significant(comparisons, max_panels)
    if sig.empty:
        return None
    fig, axes = _grid(len(sig))
    rng = np.random.default_rng(seed)
    for ax, (_, row) in zip(axes, sig.iterrows()):
        feature = _feature(row)
        data = [cross.loc[(labels == g).to_numpy(), feature].dropna().to_numpy()
                for g in (CONTROL, PATIENT)]
        ax.boxplot(data, showfliers=False, widths=0.5)
        ax.set_xticks([1, 2], ["control", "patient"])
        for i, (g, values) in enumerate(zip((CONTROL, PATIENT), data), start=1):
            if len(values) > MAX_POINTS:
                values = rng.choice(values, MAX_POINTS, replace=False)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=6, alpha=0.5,
                       color=COLOURS[g], linewidths=0, rasterized=True)
        ax.set_title(f"{_label(row)}\nq={row['q']:.2g} ({row['test']})", fontsize=8)
    return _save(fig, path)


def association_scatter(clin: pd.DataFrame, table: pd.DataFrame, path: Path, *,
                        max_panels: int, seed: int) -> Path | None:
    """Scatter plots with least-squares lines for the significant score-metric associations."""
    sig = _most_significant(table, max_panels)
    if sig.empty:
        return None
    fig, axes = _grid(len(sig))
    rng = np.random.default_rng(seed)
    for ax, (_, row) in zip(axes, sig.iterrows()):
        feature = _feature(row)
        x = pd.to_numeric(clin[feature], errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(clin[row["score"]], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        shown = np.flatnonzero(ok)
        if len(shown) > MAX_POINTS:
            shown = rng.choice(shown, MAX_POINTS, replace=False)
        ax.scatter(x[shown], y[shown], s=8, alpha=0.6, color=COLOURS[PATIENT], linewidths=0,
                   rasterized=True)
        line = stats.linregress(x[ok], y[ok])
        grid = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(grid, line.intercept + line.slope * grid, color="black", lw=1)
        ax.set_xlabel(_label(row), fontsize=8)
        ax.set_ylabel(row["score"], fontsize=8)
        ax.set_title(f"r={row['pearson_r']:.2f}, adj. beta q={row['q']:.2g}", fontsize=8)
    return _save(fig, path)


def pvalue_heatmap(table: pd.DataFrame, path: Path, *, rows: str, title: str,
                   alpha: float) -> Path | None:
    """-log10 p heat map (``rows`` x atlas/region/hemisphere); a star marks q < alpha."""
    data = table.dropna(subset=["p"])
    if data.empty:
        return None
    cols = data["atlas"] + " " + data["region"] + " " + data["hemisphere"]
    data = data.assign(column=cols, logp=-np.log10(data["p"].clip(lower=1e-300)))
    grid = data.pivot_table(index=rows, columns="column", values="logp", aggfunc="first")
    star = data.pivot_table(index=rows, columns="column", values="q", aggfunc="first")
    star = star.reindex_like(grid)
    width, height = max(6.0, 0.3 * grid.shape[1] + 3), max(3.0, 0.3 * grid.shape[0] + 2.5)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=2.2 / width, right=0.95, bottom=1.8 / height, top=1 - 0.5 / height)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    rows_sig, cols_sig = np.nonzero(star.to_numpy(dtype=float) < alpha)
    ax.scatter(cols_sig, rows_sig, marker="*", s=18, color="white", linewidths=0)
    fig.colorbar(image, ax=ax, label="-log10 p")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------------------- report
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


def render_report(results: GroupResults, figures: dict[str, Path], out_dir: Path) -> str:
    """HTML summary: cohort, warnings, significant results, figures, output files."""
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
         f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; spec: "
         f"{esc(results.spec.source)}; FDR alpha {results.spec.fdr_alpha}.</p>"),
        "<h2>Cohort</h2>",
        (f"<p>{results.joined['participant_id'].nunique()} participant(s) with outputs, "
         f"{len(results.joined)} participant/session row(s); {len(cross)} in the "
         f"cross-sectional analyses (session policy '{esc(results.spec.session)}'): "
         f"{n_pat} patient(s), {n_con} control(s); {len(results.catalogue)} imaging "
         "feature(s).</p>"),
        _demographics_section(results),
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
        parts.append(f"<p>Table: <a href='{GROUP_OUTPUTS[key]}'>{GROUP_OUTPUTS[key]}</a></p>")
        parts.append(_table_html(results.tables.get(key), cols))
        for fig in figs:
            if fig in figures:
                rel = figures[fig].relative_to(out_dir).as_posix()
                parts.append(f"<p><img src='{esc(rel)}' style='max-width:100%'></p>")
    parts.append(_profile_section(results, figures, out_dir))
    parts.append(_zscore_section(results))
    files = [v for k, v in GROUP_OUTPUTS.items()
             if (k not in PROFILE_TABLES or results.profiles.skipped is None)
             and (k not in OPTIONAL_OUTPUTS or k in results.tables)]
    parts.append("<h2>Files</h2><ul>" + "".join(
        f"<li><a href='{v}'>{v}</a></li>" for v in files) + "</ul>")
    parts.append("<h2>Resolved analysis spec</h2><pre>"
                 + esc(json.dumps(results.spec.to_dict(), indent=1, default=str)) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
