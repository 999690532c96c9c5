"""Report sections and figures of site harmonisation and of the longitudinal analyses."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from bids_app.group.columns import OUTPUTS as GROUP_OUTPUTS
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.harmonise import SWITCHED_OFF, methods_text
from bids_app.group.run import GroupResults
from bids_app.reports.group_figures import COLOURS, save_figure, unit_of

#: Participants drawn per group in the longitudinal line plot (display only).
MAX_LINES = 60
#: Rows shown per table in the report.
TABLE_ROWS = 20
#: Lowest p drawn on the -log10 axis (p values below are drawn at this value).
P_FLOOR = 1e-300


def _table(table: pd.DataFrame, cols: list[str]) -> str:
    if table.empty:
        return "<p>No rows.</p>"
    if "metric" in table:
        table = table.assign(unit=table["metric"].map(lambda m: unit_of(m) or "-"))
    return table[[c for c in cols if c in table.columns]].to_html(
        index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0,
        classes="results")


def _link(key: str) -> str:
    return f"<a href='{GROUP_OUTPUTS[key]}'>{GROUP_OUTPUTS[key]}</a>"


def _image(figures: dict[str, Path], key: str, out_dir: Path) -> str:
    if key not in figures:
        return ""
    rel = html.escape(figures[key].relative_to(out_dir).as_posix())
    return f"<p><img src='{rel}' alt='{html.escape(key)}'></p>"


# --------------------------------------------------------------------------- figures
def harmonisation_figure(results: GroupResults, path: Path) -> Path | None:
    """Left: -log10 p of site in the controls per feature, before vs after harmonisation.
    Right: the controls' values of the feature with the largest site F, by site, before and
    after."""
    harm, effects = results.harmonisation, results.tables.get("harmonisation")
    if effects is None or harm.site is None or harm.values is None:
        return None
    fig = Figure(figsize=(10.0, 4.0))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.88, wspace=0.3)
    ax = fig.add_subplot(1, 2, 1)
    before = -np.log10(np.clip(effects["p_before"].to_numpy(dtype=float), P_FLOOR, 1))
    after = -np.log10(np.clip(effects["p_after"].to_numpy(dtype=float), P_FLOOR, 1))
    ax.scatter(before, after, s=12, color="#2e86c1")
    line = -np.log10(0.05)
    ax.axhline(line, color="grey", lw=0.8, ls="--")
    ax.axvline(line, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("-log10 p of site, as measured", fontsize=8)
    ax.set_ylabel("-log10 p of site, harmonised", fontsize=8)
    ax.set_title(f"site F-test in the controls ({len(effects)} features)", fontsize=9)
    top = effects.sort_values("f_before", ascending=False, na_position="last").iloc[0]
    fit = harm.fit_rows
    site = harm.site[fit].to_numpy(dtype=str)
    raw = results.joined.loc[fit, top["feature"]].to_numpy(dtype=float)
    new = harm.values.loc[fit, top["feature"]].to_numpy(dtype=float)
    ax = fig.add_subplot(1, 2, 2)
    data, names = [], []
    for s in harm.sites:
        data += [raw[site == s], new[site == s]]
        names += [f"{s}\nraw", f"{s}\nharm."]
    ax.boxplot([d[np.isfinite(d)] for d in data], showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=7)
    ax.set_title(f"controls: {top['region']} {top['hemisphere']} {top['metric']} "
                 f"({top['atlas']}, {top['statistic']})\np before {top['p_before']:.2g}, "
                 f"after {top['p_after']:.2g}", fontsize=8)
    return save_figure(fig, path)


def longitudinal_figure(results: GroupResults, path: Path, *, max_panels: int,
                        seed: int) -> Path | None:
    """Per feature with the smallest time x group p: participants' trajectories (thin) and the
    mixed model's mean change per year per group (thick, from each group's mean at time 0)."""
    table, timed = results.tables.get("longitudinal"), results.sessions
    if table is None or timed.empty:
        return None
    inter = table[(table["term"] == "time_x_group") & table["p"].notna()]
    if inter.empty:
        return None
    best = inter.sort_values("p").head(max_panels)
    estimates = table.set_index(["feature", "term"])["estimate"]
    ncol = min(4, len(best))
    nrow = int(np.ceil(len(best) / ncol))
    fig = Figure(figsize=(3.2 * ncol, 3.0 * nrow))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.1, top=0.9, wspace=0.35, hspace=0.6)
    rng = np.random.default_rng(seed)
    for i, row in enumerate(best.itertuples(index=False)):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        for group, term in ((CONTROL, "time"), (PATIENT, "patient_time")):
            part = timed[timed["group_label"] == group]
            ids = part["participant_id"].unique()
            shown = rng.choice(ids, min(MAX_LINES, len(ids)), replace=False) if len(ids) else ids
            lines = part[part["participant_id"].isin(shown)].sort_values(
                ["participant_id", "time"])
            cuts = np.flatnonzero(lines["participant_id"].to_numpy()[1:]
                                  != lines["participant_id"].to_numpy()[:-1]) + 1
            points = lines[["time", row.feature]].to_numpy(dtype=float)
            ax.add_collection(LineCollection(np.split(points, cuts), colors=COLOURS[group],
                                             linewidths=0.4, alpha=0.4))
            start = part.loc[part["time"] == 0, row.feature].mean()
            span = np.array([0.0, part["time"].max() if len(part) else 0.0])
            slope = estimates.get((row.feature, term), np.nan)
            ax.plot(span, start + slope * span, color=COLOURS[group], lw=2.5,
                    label=f"{group}: {slope:+.3g}/year")
        unit = unit_of(row.metric)
        ax.set_xlabel("years since first session", fontsize=8)
        ax.set_title(f"{row.atlas} {row.region} {row.hemisphere} {row.metric}"
                     + (f" ({unit})" if unit else "") + f"\ntime x group p={row.p:.2g}",
                     fontsize=8)
        ax.legend(fontsize=6)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- sections
def harmonisation_section(results: GroupResults, figures: dict[str, Path],
                          out_dir: Path) -> str:
    """Site harmonisation: what was done (or why not) and the site effects before/after."""
    effects, esc = results.tables.get("harmonisation"), html.escape
    if effects is None:
        return ""
    harm = results.harmonisation
    parts = ["<h2>Site harmonisation</h2>"]
    warn = " class='warn'" if harm.skipped and harm.skipped != SWITCHED_OFF else ""
    parts.append(f"<p{warn}>{esc(methods_text(harm, results.spec.harmonize))}")
    if harm.values is not None:
        parts.append(f" Harmonised values: {_link('harmonised')} (the joined table keeps them "
                     "as measured).")
    parts.append("</p>")
    n_before = int((effects["p_before"] < 0.05).sum())
    n_after = int((effects["p_after"] < 0.05).sum())
    parts.append(f"<p>Table: {_link('harmonisation')}. Features with a site effect in the "
                 f"controls (F-test p &lt; 0.05): {n_before} of {len(effects)} as measured, "
                 f"{n_after} harmonised.</p>")
    shown = effects.sort_values("f_before", ascending=False).head(TABLE_ROWS)
    parts.append(_table(shown, ["atlas", "region", "hemisphere", "metric", "unit", "statistic",
                                "n_controls", "f_before", "p_before", "harmonised", "f_after",
                                "p_after"]))
    parts.append(_image(figures, "harmonisation_scatter", out_dir))
    return "\n".join(parts)


def longitudinal_section(results: GroupResults, figures: dict[str, Path],
                         out_dir: Path) -> str:
    """Change over sessions: the mixed models' patient-control difference in change per
    year, and imaging change vs the progression rate."""
    esc = html.escape
    keys = ("change", "longitudinal", "progression")
    if not any(k in results.tables or k in results.skipped for k in keys):
        return ""
    parts = ["<h2>Change over time</h2>"]
    for key in keys:
        if key in results.skipped:
            parts.append(f"<p>{esc(key)}: not computed: {esc(results.skipped[key])}.</p>")
    if "change" in results.tables:
        change = results.tables["change"]
        parts.append(f"<p>{len(change)} participant(s) with two or more timed sessions "
                     f"(median span {change['span_years'].median():.2f} years); annualised "
                     f"change per participant: {_link('change')}.</p>")
    if "longitudinal" in results.tables:
        table = results.tables["longitudinal"]
        inter = table[table["term"] == "time_x_group"].sort_values("p", na_position="last")
        parts.append(f"<h3>Linear mixed models</h3><p>Table: {_link('longitudinal')}. "
                     "Patient - control difference in change per year (time x group), "
                     "smallest p first.</p>")
        parts.append(_table(inter.head(TABLE_ROWS), [
            "atlas", "region", "hemisphere", "metric", "unit", "statistic", "n_participants",
            "n_observations", "estimate", "ci_low", "ci_high", "p", "q", "primary_q",
            "random_slope"]))
        parts.append(_image(figures, "longitudinal_lineplot", out_dir))
    if "progression" in results.tables:
        table = results.tables["progression"].sort_values("p", na_position="last")
        parts.append(f"<h3>Imaging change vs progression rate (patients)</h3><p>Table: "
                     f"{_link('progression')}.</p>")
        parts.append(_table(table.head(TABLE_ROWS), [
            "score", "atlas", "region", "hemisphere", "metric", "unit", "statistic", "n",
            "pearson_r", "beta", "ci_low", "ci_high", "p", "q", "primary_q"]))
    return "\n".join(parts)
