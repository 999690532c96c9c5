"""HTML section of the reference-study comparison (``paper_comparison.html``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from bids_app.reports.group import STYLE
from bids_app.simulate.paper_comparison import MIN_POWER

SECTIONS = {"table1": "Table 1: cohort", "group_differences": "Patients vs controls",
            "table2": "Table 2: GM volume vs tract FA (all participants)",
            "gm_clinical": "GM volume vs clinical scores (patients)",
            "table3": "Table 3: clinical scores vs tract metrics (patients)"}
SHOWN = ("figure", "hemisphere", "measure", "paper_value", "paper_p", "planted_value", "power",
         "recovered_value", "ci_low", "ci_high", "recovered_p", "agrees", "required")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.3g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(str(value))


def render_paper_comparison(table: pd.DataFrame, summary: dict[str, Any], *,
                            title: str) -> str:
    """One HTML page: the summary, then one table per section of the paper.

    Rows the run must pass (``required``) that disagree are marked in the warning colour.
    """
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"),
             (f"<p>{summary['n_compared']} figures compared, agreement rate "
             f"{summary['agreement_rate']:.2f}; {summary['required_agree']} of "
             f"{summary['n_required']} required figures (paper significant, power >= "
             f"{MIN_POWER} for the planted effect) agree: "
             f"<b>{'PASSED' if summary['passed'] else 'NOT PASSED'}</b>.</p>"),
             ("<p>Agreement: same direction, the paper's value inside alsmri's 95 % CI, and "
             "significant exactly where the paper was. Power is that of the planted effect at "
             "this sample size: a miss below 0.8 may be chance, above it is a measurement "
             "problem.</p>")]
    for section, heading in SECTIONS.items():
        rows = table[table["section"] == section]
        if rows.empty:
            continue
        rate = rows["agrees"].astype(float).mean()
        parts.append(f"<h2>{html.escape(heading)}</h2><p>agreement {rate:.2f} "
                     f"({int(rows['agrees'].astype(float).sum())} of "
                     f"{int(rows['agrees'].notna().sum())})</p><table class='results'><tr>"
                     + "".join(f"<th>{c}</th>" for c in SHOWN) + "</tr>")
        for _, row in rows.iterrows():
            miss = row["required"] is True and row["agrees"] != 1.0
            cls = " class='warn'" if miss else ""
            agrees = row["agrees"]
            cells = {**{c: row[c] for c in SHOWN},
                     "agrees": "" if pd.isna(agrees) else ("yes" if agrees == 1.0 else "no")}
            parts.append(f"<tr{cls}>" + "".join(f"<td>{_cell(cells[c])}</td>" for c in SHOWN)
                         + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_paper_comparison_html(table: pd.DataFrame, summary: dict[str, Any], path: Path, *,
                                title: str) -> Path:
    """Write :func:`render_paper_comparison` to ``path`` (temporary name first)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_paper_comparison(table, summary, title=title))
    tmp.replace(path)
    return path
