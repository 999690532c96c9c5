"""Per-value typing of phenotype columns (participants.tsv, sessions.tsv, phenotype/*.tsv).

The one place that decides what a phenotype cell means. One unreadable cell makes that cell
missing, never the whole column:

* **Missing markers.** The BIDS ``n/a``, an empty cell and the common exports
  :data:`SILENT_MISSING` (``NA``, ``N/A``, ``nan``, ``NaN``) are missing without comment. Other
  spellings of "missing" (:data:`MISSING_WORDS`, case-insensitive: ``na``, ``n.a.``,
  ``unknown``, ``not done``, ``-``, ``?`` ...) are missing too, and reported.
* **Column kind** (:func:`column_kind`). Categorical when the data dictionary gives ``Levels``;
  otherwise numeric when more than half of the non-missing values read as numbers (a decimal
  comma counts), else categorical (values kept as text).
* **Numeric columns.** A value that does not read as a number is missing for that participant
  only, and reported (``89+``, ``12.5 mm``, ``unknown``).
* **Decimal commas.** ``12,5`` is read as 12.5 and reported: one comma followed by digits is a
  decimal comma unless it could also be a thousands separator (``1,234``, ``12,345``: one to
  three digits not starting with 0, then groups of exactly three), which is ambiguous, so
  missing and reported.

Reports are :class:`ValueIssue` records; the loader lists them per participant and column in
the inclusion table and in the log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Missing without a report (the BIDS ``n/a`` and the spellings pandas/R exports write).
SILENT_MISSING = ("n/a", "N/A", "NA", "nan", "NaN", "")
#: Other spellings of "missing" (compared lowercase, surrounding spaces removed): missing, and
#: reported, in numeric and categorical columns alike.
MISSING_WORDS = frozenset({
    "n/a", "na", "n.a.", "n.a", "nan", "none", "null", "missing", "unknown", "not known",
    "not available", "not done", "not assessed", "not applicable", "-", "--", ".", "?",
    "#n/a"})
DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(,\d{3})+$")
NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: ``ValueIssue.action`` values.
MADE_MISSING = "missing"
DECIMAL_READ = "decimal comma"


@dataclass(frozen=True)
class ValueIssue:
    """One phenotype cell that was not read as written."""

    column: str
    row: int
    """Position of the row in its table."""
    value: str
    """The cell as written."""
    action: str
    """:data:`MADE_MISSING` or :data:`DECIMAL_READ`."""
    reason: str
    """Why (``not a number``, ``missing marker``, ``ambiguous ...``, ``read as 12.5``)."""


def read_number(text: str) -> tuple[float, str | None]:
    """Read one cell of a numeric column.

    Parameters
    ----------
    text
        The cell as written (already known not to be a silent missing marker).

    Returns
    -------
    value : float
        The number, or NaN.
    reason : str or None
        ``None`` when read as written; otherwise why the value is missing or how it was read.

    Examples
    --------
    >>> read_number("12.5")
    (12.5, None)
    >>> read_number("12,5")
    (12.5, 'decimal comma read as 12.5')
    >>> read_number("1,234")
    (nan, 'ambiguous: decimal comma or thousands separator')
    >>> read_number("unknown")
    (nan, 'missing marker')
    """
    stripped = text.strip()
    if stripped.lower() in MISSING_WORDS:
        return np.nan, "missing marker"
    try:
        value = float(stripped)
    except ValueError:
        value = None
    if value is not None and np.isfinite(value):
        return value, None
    if DECIMAL_COMMA.match(stripped):
        if THOUSANDS.match(stripped):
            return np.nan, "ambiguous: decimal comma or thousands separator"
        value = float(stripped.replace(",", "."))
        return value, f"decimal comma read as {value:g}"
    return np.nan, "not a number"


def _looks_numeric(text: str) -> bool:
    return not np.isnan(read_number(text)[0]) or bool(DECIMAL_COMMA.match(text.strip()))


def column_kind(values: pd.Series, levels: bool) -> str:
    """:data:`NUMERIC` or :data:`CATEGORICAL` for a text column (rule in the module doc).

    Parameters
    ----------
    values
        The column as text, silent missing markers already NaN.
    levels
        The data dictionary gives ``Levels`` for this column.
    """
    if levels:
        return CATEGORICAL
    text = values.dropna().astype(str)
    text = text[~text.str.strip().str.lower().isin(MISSING_WORDS)]
    if text.empty:
        return CATEGORICAL
    numeric = sum(_looks_numeric(v) for v in text)
    return NUMERIC if numeric > len(text) / 2 else CATEGORICAL


def type_column(values: pd.Series, column: str, *,
                levels: bool) -> tuple[pd.Series, list[ValueIssue]]:
    """Type one phenotype column value by value.

    Parameters
    ----------
    values
        The column as read (text; silent missing markers NaN).
    column
        Its (canonical) name, for the issues.
    levels
        The data dictionary gives ``Levels`` (always categorical).

    Returns
    -------
    typed : Series
        Float for a numeric column; text with missing markers set to NaN for a categorical one.
    issues : list of ValueIssue
        Every cell not read as written, in row order.
    """
    issues: list[ValueIssue] = []
    kind = column_kind(values, levels)
    out: list[Any] = []
    for row, cell in enumerate(values.tolist()):
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            out.append(np.nan)
            continue
        text = str(cell)
        if kind == CATEGORICAL:
            if text.strip().lower() in MISSING_WORDS:
                issues.append(ValueIssue(column, row, text, MADE_MISSING, "missing marker"))
                out.append(np.nan)
            else:
                out.append(text)
            continue
        value, reason = read_number(text)
        if reason is not None:
            action = MADE_MISSING if np.isnan(value) else DECIMAL_READ
            issues.append(ValueIssue(column, row, text, action, reason))
        out.append(value)
    if kind == NUMERIC:
        return pd.Series(out, index=values.index, dtype=float, name=values.name), issues
    return pd.Series(out, index=values.index, dtype=object, name=values.name), issues


def type_table(table: pd.DataFrame, skip: tuple[str, ...] | list[str],
               dictionary: Mapping[str, Mapping[str, Any]]) -> tuple[pd.DataFrame,
                                                                     list[ValueIssue]]:
    """:func:`type_column` on every column of ``table`` except ``skip``.

    ``dictionary`` maps a column to its data-dictionary entry (``Levels`` makes it categorical).
    """
    table = table.copy()
    issues: list[ValueIssue] = []
    for col in table.columns:
        if col in skip:
            continue
        table[col], found = type_column(table[col], col,
                                        levels="Levels" in dictionary.get(col, {}))
        issues += found
    return table, issues
