"""Participant HTML report: figures, QC tables and the methods text of one participant."""

from __future__ import annotations

import base64
import fnmatch
import html
from pathlib import Path

import pandas as pd

from bids_app.bids.derivatives import write_atomic
from bids_app.bids.outputs import ANAT_OUTPUTS, ANAT_STATS, DWI_OUTPUTS, DWI_STATS, Output

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{border-bottom:2px solid #345}h2{color:#345;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eef}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}
.warn{color:#a40}pre{white-space:pre-wrap;background:#f7f7f7;padding:1em}
"""


def _matching(files: list[Path], *outputs: Output) -> list[Path]:
    """The files that are one of the declared ``outputs``."""
    return [p for p in files if any(fnmatch.fnmatch(p.name, o.glob()) for o in outputs)]


def _figure(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".svg":
        body = data.decode("utf-8", "replace")
        body = body[body.find("<svg"):] if "<svg" in body else body
        return f"<figure>{body}<figcaption>{html.escape(path.name)}</figcaption></figure>"
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    b64 = base64.b64encode(data).decode()
    return (f'<figure><img src="data:{mime};base64,{b64}" alt="{html.escape(path.name)}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def _table(path: Path) -> str:
    try:
        frame = pd.read_csv(path, sep="\t")
    except (OSError, ValueError, pd.errors.EmptyDataError) as exc:
        return (f'<p class="warn">{html.escape(path.name)}: unreadable '
                f'({html.escape(str(exc))})</p>')
    return (f"<h3>{html.escape(path.name)}</h3>"
            + frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))


def build_participant_report(output_dir: str | Path, label: str, *, methods: str,
                             notes: list[str] | tuple[str, ...] = ()) -> Path:
    """Write ``OUTPUT_DIR/<label>.html`` from the participant's figures and QC tables.

    Parameters
    ----------
    output_dir
        Derivatives root.
    label
        ``sub-X`` or ``sub-X_ses-Y``.
    methods
        Methods text (``logs/CITATION.md``) shown at the end of the report.
    notes
        Warnings to show at the top (e.g. a skipped branch, no distortion correction).
    """
    output_dir = Path(output_dir)
    subject = label.split("_")[0]
    root = output_dir / subject
    files = sorted(p for p in root.rglob(f"{label}_*") if p.is_file())
    figures = [p for p in files if p.suffix in (".svg", ".png") and p.parent.name == "figures"]
    qc = _matching(files, DWI_OUTPUTS["qc"], ANAT_OUTPUTS["qc_tsv"])
    stats = _matching(files, DWI_STATS, ANAT_STATS)
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{label}</title>"
             f"<style>{_STYLE}</style></head><body><h1>alsmri report: {label}</h1>")]
    if notes:
        parts.append("<ul>" + "".join(f'<li class="warn">{html.escape(n)}</li>' for n in notes)
                     + "</ul>")
    for title, datatype in (("Anatomical", "anat"), ("Diffusion", "dwi")):
        tables = [p for p in qc if p.parent.name == datatype]
        if tables:
            parts.append(f"<h2>{title} quality control</h2>")
            parts += [_table(p) for p in tables]
    parts.append("<h2>Figures</h2>")
    parts += [_figure(p) for p in figures] or ["<p>No figures were produced.</p>"]
    if stats:
        parts.append("<h2>Metrics</h2>")
        for path in stats:
            frame = pd.read_csv(path, sep="\t")
            if {"metric", "statistic", "value"} <= set(frame.columns):
                keep = frame[frame["statistic"].isin(["wmean", "sum", "ratio"])]
                frame = keep if len(keep) else frame
            parts.append(f"<h3>{html.escape(path.name)}</h3>"
                         + frame.to_html(index=False, float_format=lambda v: f"{v:.4g}",
                                         border=0))
    parts.append(f"<h2>Methods</h2><pre>{html.escape(methods)}</pre></body></html>")
    return write_atomic(output_dir / f"{label}.html", "\n".join(parts))
