"""Group-level figures drawn from the result tables (matplotlib object API, Agg canvas).

Panel grids (box plots, scatter plots, profiles) live here; annotated matrices (heat maps of
the primary family, GM x tract, tract x tract, side scores) in
:mod:`bids_app.reports.group_matrices`. Diffusivities are in the analysis units of
:mod:`bids_app.group.primary` (10^-3 mm^2/s). Figures are saved at :data:`DPI`: a figure of
width w inches is w * DPI pixels wide, shown unscaled up to the report's page width.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from bids_app.bids.derivatives import write_atomic
from bids_app.bids.outputs import feature_name
from bids_app.group import profiles as PR
from bids_app.group.columns import METRIC_UNITS
from bids_app.group.design import CONTROL, PATIENT
from bids_app.group.primary import metric_unit

COLOURS = {PATIENT: "#c0392b", CONTROL: "#2e86c1"}
#: Points drawn per group/panel at most (display only; statistics use every value).
MAX_POINTS = 1000
#: Seed of the display-only jitter and point subsampling of the figures.
FIGURE_SEED = 0
#: Resolution of the saved figures (pixels per inch).
DPI = 90
#: Colours of the onset-site subgroups (in spec order; controls keep their colour).
SUBGROUP_COLOURS = ("#c0392b", "#8e44ad", "#d35400", "#16a085")


def unit_of(metric: str) -> str:
    """Analysis unit of a metric as shown in figures and tables ("" when unitless)."""
    unit = metric_unit(metric, METRIC_UNITS)
    return "" if unit in ("arbitrary", "unitless", "n/a") else unit


def save_figure(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
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
    unit = unit_of(row["metric"])
    return (f"{row['atlas']} {row['region']} {row['hemisphere']} {row['metric']}"
            + (f" ({unit})" if unit else ""))


def _boxes(ax, data: list[tuple[str, np.ndarray, str]], rng: np.random.Generator) -> None:
    """Box plot plus jittered points of each (name, values, colour)."""
    ax.boxplot([values for _, values, _ in data], showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(data) + 1), [name for name, _, _ in data], fontsize=8)
    for i, (_, values, colour) in enumerate(data, start=1):
        if len(values) > MAX_POINTS:
            values = rng.choice(values, MAX_POINTS, replace=False)
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=6, alpha=0.5,
                   color=colour, linewidths=0, rasterized=True)


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
        _boxes(ax, [(g, cross.loc[(labels == g).to_numpy(), feature].dropna().to_numpy(),
                     COLOURS[g]) for g in (CONTROL, PATIENT)], rng)
        ax.set_title(f"{_label(row)}\nq={row['q']:.2g} ({row['test']})", fontsize=8)
    return save_figure(fig, path)


def onset_boxplots(cross: pd.DataFrame, labels: pd.Series, subgroup: pd.Series,
                   onset: pd.DataFrame, path: Path, *, max_panels: int,
                   seed: int) -> Path | None:
    """Controls and each onset-site subgroup for the primary features with the smallest p in
    any subgroup, drawn whatever their significance (title: p and primary q per subgroup)."""
    rows = onset[onset["primary"].astype(bool) & onset["p"].notna()]
    if rows.empty:
        return None
    best = rows.groupby(["atlas", "region", "hemisphere", "metric", "statistic"],
                        sort=False)["p"].min().sort_values(kind="stable").head(max_panels)
    names = list(dict.fromkeys(onset["subgroup"]))
    fig, axes = _grid(len(best))
    rng = np.random.default_rng(seed)
    for ax, key in zip(axes, best.index):
        feature = feature_name(*key)
        data = [(CONTROL, cross.loc[(labels == CONTROL).to_numpy(), feature].dropna()
                 .to_numpy(), COLOURS[CONTROL])]
        data += [(name, cross.loc[((labels == PATIENT) & (subgroup == name)).to_numpy(),
                                  feature].dropna().to_numpy(),
                  SUBGROUP_COLOURS[i % len(SUBGROUP_COLOURS)]) for i, name in enumerate(names)]
        _boxes(ax, data, rng)
        part = rows[(rows[["atlas", "region", "hemisphere", "metric", "statistic"]]
                     == list(key)).all(axis=1)]
        lines = [f"{r.subgroup}: p={r.p:.2g}, primary q={r.primary_q:.2g}"
                 for r in part.itertuples(index=False)]
        ax.set_title("\n".join([_label(part.iloc[0]), *lines]), fontsize=7)
    return save_figure(fig, path)


def duration_scatter(patients: pd.DataFrame, duration: pd.DataFrame, path: Path, *,
                     column: str, metrics: tuple[str, ...],
                     regions: tuple[str, ...]) -> Path | None:
    """Disease duration against each listed tract feature in patients, least-squares line,
    drawn whatever the significance (title: Pearson r, p, q of the duration table)."""
    order = {r: i for i, r in enumerate(regions)}
    if "pearson_r" not in duration:
        return None
    rows = duration[duration["metric"].isin(metrics) & duration["region"].isin(regions)]
    if rows.empty:
        return None
    rows = rows.assign(_o=rows["region"].map(order)).sort_values(
        ["metric", "statistic", "_o", "atlas", "hemisphere"], kind="stable")
    fig, axes = _grid(len(rows))
    y = pd.to_numeric(patients[column], errors="coerce").to_numpy(dtype=float)
    for ax, (_, row) in zip(axes, rows.iterrows()):
        x = pd.to_numeric(patients[_feature(row)], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(y[ok], x[ok], s=10, alpha=0.7, color=COLOURS[PATIENT], linewidths=0)
        if ok.sum() >= 3 and np.ptp(y[ok]) > 0:
            line = stats.linregress(y[ok], x[ok])
            grid = np.linspace(y[ok].min(), y[ok].max(), 50)
            ax.plot(grid, line.intercept + line.slope * grid, color="black", lw=1)
        ax.set_xlabel(f"{column} (months)", fontsize=8)
        ax.set_ylabel(_label(row), fontsize=8)
        ax.set_title(f"{row['statistic']}: r={row['pearson_r']:.2f}, p={row['p']:.2g}, "
                     f"q={row['q']:.2g}", fontsize=8)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)
