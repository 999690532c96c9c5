"""Group-level figures (matplotlib object API on the Agg canvas; no pyplot state)."""

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
from bids_app.group.design import CONTROL, PATIENT

COLOURS = {PATIENT: "#c0392b", CONTROL: "#2e86c1"}
#: Points drawn per group/panel at most (display only; statistics use every value).
MAX_POINTS = 1000


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


def _label(row: pd.Series) -> str:
    return f"{row['atlas']} {row['region']} {row['hemisphere']} {row['metric']}"


def group_boxplots(cross: pd.DataFrame, labels: pd.Series, comparisons: pd.DataFrame,
                   path: Path, *, max_panels: int = 12, seed: int = 0) -> Path | None:
    """Box + strip plots of the significant patient-control differences (smallest q first)."""
    sig = comparisons[comparisons["significant"].fillna(False).astype(bool)]
    if sig.empty:
        return None
    sig = sig.sort_values("q").head(max_panels)
    fig, axes = _grid(len(sig))
    rng = np.random.default_rng(seed)
    for ax, (_, row) in zip(axes, sig.iterrows()):
        feature = f"{row['atlas']}_{row['region']}_{row['hemisphere']}_{row['metric']}_" \
                  f"{row['statistic']}"
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
                        max_panels: int = 12, seed: int = 0) -> Path | None:
    """Scatter plots with least-squares lines for the significant score-metric associations."""
    sig = table[table["significant"].fillna(False).astype(bool)]
    if sig.empty:
        return None
    sig = sig.sort_values("q").head(max_panels)
    fig, axes = _grid(len(sig))
    rng = np.random.default_rng(seed)
    for ax, (_, row) in zip(axes, sig.iterrows()):
        feature = f"{row['atlas']}_{row['region']}_{row['hemisphere']}_{row['metric']}_" \
                  f"{row['statistic']}"
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
                   alpha: float = 0.05) -> Path | None:
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
