"""Annotated matrices of the group report: every cell labelled, sized to be read as printed.

Each figure is a stack of panels (one per atlas, metric or subset) whose cells have a fixed
size in inches (:data:`CELL_W` x :data:`CELL_H`) and carry their value as text; row and column
labels are full region names. Figures wider than :data:`MAX_WIDTH` get narrower cells, so a
figure is never shrunk by the report page (its pixel width is at most the page width).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bids_app.bids.outputs import DWI_MODELS, summarised_maps
from bids_app.reports.group_figures import save_figure

#: Cell size (inches) and the widest figure (inches; report page width / DPI).
CELL_W, CELL_H, MAX_WIDTH = 0.55, 0.30, 12.8
#: Font sizes (points) of labels, cell text and titles.
LABEL_PT, CELL_PT, TITLE_PT = 9, 8, 10
#: Inches per character of a label (at LABEL_PT).
CHAR_IN = 0.075


@dataclass(frozen=True)
class Panel:
    """One matrix: ``values`` colour the cells, ``text`` is written in them, ``star`` adds *."""

    title: str
    values: pd.DataFrame
    text: pd.DataFrame
    star: pd.DataFrame


def _longest(labels) -> int:
    return max((len(str(v)) for v in labels), default=1)


def matrix_figure(panels: list[Panel], path: Path, *, title: str, colour_label: str,
                  limit: float, cmap: str = "RdBu_r", ncol: int = 1) -> Path | None:
    """Draw ``panels`` (``ncol`` per row) with one shared colour scale ``[-limit, limit]``."""
    panels = [p for p in panels if p.values.size]
    if not panels:
        return None
    ncol = min(ncol, len(panels))
    cols_max = max(p.values.shape[1] for p in panels)
    left = CHAR_IN * max(_longest(p.values.index) for p in panels) + 0.3
    bottom = CHAR_IN * max(_longest(p.values.columns) for p in panels) * 0.8 + 0.3
    cell_w = min(CELL_W, (MAX_WIDTH - 1.5 - ncol * (left + 0.2)) / (ncol * cols_max))
    slot_w = left + cols_max * cell_w + 0.2
    # each row of panels is as tall as its tallest panel
    heights = [max(p.values.shape[0] for p in panels[i:i + ncol]) * CELL_H + bottom + 0.45
               for i in range(0, len(panels), ncol)]
    width = max(ncol * slot_w + 1.5, CHAR_IN * 1.1 * len(title) + 0.6)
    height = sum(heights) + 0.7
    fig = Figure(figsize=(width, height))
    fig.suptitle(title, fontsize=TITLE_PT, y=1 - 0.12 / height, va="top")
    image = None
    for k, panel in enumerate(panels):
        r, c = divmod(k, ncol)
        n_rows, n_cols = panel.values.shape
        x0 = c * slot_w + left
        y0 = height - 0.7 - sum(heights[:r]) - 0.35 - n_rows * CELL_H
        ax = fig.add_axes((x0 / width, y0 / height, n_cols * cell_w / width,
                           n_rows * CELL_H / height))
        values = panel.values.to_numpy(dtype=float)
        image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=-limit, vmax=limit)
        ax.set_xticks(range(n_cols), [str(v) for v in panel.values.columns], rotation=60,
                      ha="right", rotation_mode="anchor", fontsize=LABEL_PT)
        ax.set_yticks(range(n_rows), [str(v) for v in panel.values.index], fontsize=LABEL_PT)
        ax.set_title(panel.title, fontsize=LABEL_PT + 1, loc="left")
        text = panel.text.reindex_like(panel.values)
        star = panel.star.reindex_like(panel.values).fillna(False).astype(bool)
        for i in range(n_rows):
            for j in range(n_cols):
                label = text.iat[i, j]
                if not isinstance(label, str):
                    continue
                strong = np.isfinite(values[i, j]) and abs(values[i, j]) > 0.6 * limit
                ax.text(j, i, label + ("*" if star.iat[i, j] else ""), ha="center",
                        va="center", fontsize=CELL_PT, color="white" if strong else "black")
    cax = fig.add_axes(((width - 1.1) / width, 0.3 / height, 0.18 / width,
                        min(3.0, height - 1.2) / height))
    fig.colorbar(image, cax=cax).set_label(colour_label, fontsize=LABEL_PT)
    return save_figure(fig, path)


def _grid(rows: pd.DataFrame, index: str, columns: str, value: str, text: str,
          star: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = rows.assign(_star=star.to_numpy(), _text=text)
    kw = {"index": index, "columns": columns, "aggfunc": "first", "sort": False}
    values = rows.pivot_table(values=value, **kw, dropna=False)
    values = values.reindex(index=list(dict.fromkeys(rows[index])),
                            columns=list(dict.fromkeys(rows[columns])))
    labels = rows.pivot_table(values="_text", **kw).reindex_like(values)
    stars = rows.pivot_table(values="_star", **kw).reindex_like(values)
    return values, labels, stars


def _signed_logp(p: pd.Series, sign: pd.Series) -> pd.Series:
    return -np.log10(p.clip(lower=1e-300)) * np.sign(sign.fillna(0)).replace(0, 1)


def _limit(values: pd.Series, floor: float) -> float:
    finite = values.abs()[np.isfinite(values)]
    return float(max(floor, finite.max() if len(finite) else floor))


def _fmt(fmt: str) -> Callable[[float], str | None]:
    return lambda v: format(v, fmt) if np.isfinite(v) else None


def _panels(rows: pd.DataFrame, by: str, index: str, columns: str, value: str,
            text: pd.Series, star: pd.Series) -> list[Panel]:
    out = []
    for name, part in rows.groupby(by, sort=False):
        values, labels, stars = _grid(part, index, columns, value, text.loc[part.index],
                                      star.loc[part.index])
        out.append(Panel(str(name), values, labels, stars))
    return out


def _comparison_heatmap(rows: pd.DataFrame, star: pd.Series, path: Path, *,
                        title: str) -> Path | None:
    """Patient-control rows as panels per atlas: colour = signed -log10 p (red: patients
    higher), text = effect size (Hedges g or rank-biserial), * where ``star``."""
    rows = rows.assign(row=rows["region"] + " " + rows["hemisphere"],
                       col=rows["metric"] + " " + rows["statistic"],
                       v=_signed_logp(rows["p"], rows["effect_size"]))
    panels = _panels(rows, "atlas", "row", "col", "v", rows["effect_size"].map(_fmt("+.2f")),
                     star.loc[rows.index])
    return matrix_figure(panels, path, limit=_limit(rows["v"], 3.0),
                         colour_label="signed -log10 p (+: patients higher)", title=title)


def primary_comparison_heatmap(comp: pd.DataFrame, path: Path, *,
                               alpha: float) -> Path | None:
    """Patients vs controls in the primary family (:func:`_comparison_heatmap`);
    * = primary q < alpha."""
    if "effect_size" not in comp:
        return None
    rows = comp[comp["primary"].astype(bool) & comp["p"].notna()]
    if rows.empty:
        return None
    return _comparison_heatmap(rows, rows["primary_q"] < alpha, path,
                               title=f"Patients vs controls, primary family: effect size in "
                                     f"cells, * primary q < {alpha:g}")


def model_maps() -> tuple[str, ...]:
    """The summarised maps of every declared diffusion model other than the tensor."""
    return tuple(m for model in DWI_MODELS if model != "tensor" for m in summarised_maps(model))


def model_comparison_heatmap(comp: pd.DataFrame, path: Path, *,
                             alpha: float) -> Path | None:
    """Patients vs controls in the kurtosis / free-water maps, one column per map in
    declaration order (:func:`_comparison_heatmap`); * = q < alpha within the map's own
    family. None when no participant has a map of these models (single-shell data)."""
    if "effect_size" not in comp:
        return None
    maps = model_maps()
    rows = comp[comp["metric"].isin(maps) & comp["p"].notna()]
    if rows.empty:
        return None
    order = {m: k for k, m in enumerate(maps)}
    rows = rows.sort_values("metric", key=lambda m: m.map(order), kind="stable")
    return _comparison_heatmap(rows, rows["q"] < alpha, path,
                               title=f"Patients vs controls, kurtosis and free-water maps: "
                                     f"effect size in cells, * q < {alpha:g} (each map's "
                                     "family)")


def primary_clinical_heatmap(clin: pd.DataFrame, path: Path, *, alpha: float) -> Path | None:
    """Clinical associations in the primary family, one panel per metric: colour = signed
    -log10 p of the adjusted beta, text = Pearson r, * = primary q < alpha."""
    if not {"pearson_r", "beta"} <= set(clin.columns):
        return None
    rows = clin[clin["primary"].astype(bool) & clin["p"].notna()]
    if rows.empty:
        return None
    rows = rows.assign(col=rows["atlas"] + " " + rows["region"] + " " + rows["hemisphere"]
                       + " " + rows["statistic"], v=_signed_logp(rows["p"], rows["beta"]))
    panels = _panels(rows, "metric", "score", "col", "v", rows["pearson_r"].map(_fmt("+.2f")),
                     rows["primary_q"] < alpha)
    return matrix_figure(panels, path, limit=_limit(rows["v"], 3.0),
                         colour_label="signed -log10 p of the adjusted beta",
                         title=f"Clinical scores vs imaging (patients), primary family: Pearson "
                               f"r in cells, * primary q < {alpha:g}")


def gmtract_heatmap(gm: pd.DataFrame, path: Path, *, alpha: float) -> Path | None:
    """GM x tract matrix per subset: colour and text = Pearson r, * = q < alpha (BH over the
    matrix of that subset)."""
    if "pearson_r" not in gm:
        return None
    rows = gm[gm["pearson_r"].notna()]
    if rows.empty:
        return None
    rows = rows.assign(row=rows["gm_region"] + " " + rows["hemisphere"],
                       col=rows["tract_atlas"] + " " + rows["tract_region"] + " "
                       + rows["tract_statistic"])
    rows = rows.sort_values(["hemisphere"], kind="stable")
    panels = _panels(rows, "subset", "row", "col", "pearson_r",
                     rows["pearson_r"].map(_fmt(".2f")), rows["q"] < alpha)
    panels = [Panel(f"{p.title} participants", p.values, p.text, p.star) for p in panels]
    return matrix_figure(panels, path, limit=1.0, colour_label="Pearson r", ncol=3,
                         title=f"Gray-matter volume vs tract {rows['tract_metric'].iloc[0]} "
                               f"(same hemisphere): r in cells, * q < {alpha:g}")


def tractcorr_heatmap(tc: pd.DataFrame, path: Path, *, alpha: float,
                      max_panels: int) -> Path | None:
    """Tract x tract Pearson r, one symmetric panel per statistic and subset."""
    rows = tc[tc["r"].notna()]
    if rows.empty:
        return None
    panels = []
    for (stat, subset), part in rows.groupby(["statistic", "subset"], sort=False):
        a = part["atlas_a"] + " " + part["region_a"] + " " + part["hemisphere_a"]
        b = part["atlas_b"] + " " + part["region_b"] + " " + part["hemisphere_b"]
        names = list(dict.fromkeys([*a, *b]))
        values = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
        text = pd.DataFrame(None, index=names, columns=names, dtype=object)
        star = pd.DataFrame(False, index=names, columns=names)
        for x, y, r, q in zip(a, b, part["r"], part["q"]):
            for i, j in ((x, y), (y, x)):
                values.loc[i, j], text.loc[i, j], star.loc[i, j] = r, f"{r:.2f}", q < alpha
        panels.append(Panel(f"{subset}, {stat}", values, text, star))
    return matrix_figure(panels[:max_panels], path, limit=1.0, colour_label="Pearson r",
                         ncol=2, title=f"Correlations between tracts "
                                       f"({rows['metric'].iloc[0]}): r, * q < {alpha:g}")


def sidescore_heatmap(side: pd.DataFrame, path: Path, *, alpha: float) -> Path | None:
    """Per-side scores vs contralateral/ipsilateral tract metric: Pearson r, * = q < alpha."""
    if "pearson_r" not in side:
        return None
    rows = side[side["pearson_r"].notna()]
    if rows.empty:
        return None
    rows = rows.sort_values(["relation", "region", "hemisphere"], kind="stable")
    rows = rows.assign(row=rows["score"] + " " + rows["side"],
                       col=rows["relation"] + " " + rows["atlas"] + " " + rows["region"],
                       panel=rows["metric"] + " " + rows["statistic"])
    panels = _panels(rows, "panel", "row", "col", "pearson_r",
                     rows["pearson_r"].map(_fmt(".2f")), rows["q"] < alpha)
    return matrix_figure(panels, path, limit=1.0, colour_label="Pearson r",
                         title=f"Side-matched scores (patients): score of one body side vs "
                               f"contralateral / ipsilateral tract, r in cells, "
                               f"* q < {alpha:g}")
