"""Column typing and explicit design matrices (no formula strings, nothing evaluated)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_app.group.notes import Notes

PATIENT = "patient"
CONTROL = "control"


def _offending(values: pd.Series) -> list[str]:
    text = values.dropna().astype(str)
    bad = text[pd.to_numeric(text, errors="coerce").isna()]
    return sorted(bad.unique().tolist())


def numeric_column(table: pd.DataFrame, column: str, *, role: str,
                   notes: Notes) -> pd.Series | None:
    """``table[column]`` as float, or ``None`` (with a warning) if it is not numeric.

    ``n/a`` is already NaN (see :mod:`bids_app.group.values`); any other non-numeric value makes
    the whole column unusable as a number: the warning names the column and the values.
    """
    values = table[column]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    bad = _offending(values)
    shown = ", ".join(repr(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
    notes.warn(f"{role} column {column!r} has non-numeric values ({shown}); column skipped")
    return None


def is_categorical(table: pd.DataFrame, column: str,
                   dictionary: Mapping[str, Mapping[str, Any]]) -> bool:
    """Categorical if the data dictionary gives ``Levels`` or no value parses as a number."""
    if "Levels" in dictionary.get(column, {}):
        return True
    values = table[column].dropna()
    if pd.api.types.is_numeric_dtype(values):
        return False
    return bool(len(values)) and pd.to_numeric(values.astype(str), errors="coerce").isna().all()


def covariate_frame(table: pd.DataFrame, names: Iterable[str], *,
                    dictionary: Mapping[str, Mapping[str, Any]], notes: Notes) -> pd.DataFrame:
    """Numeric design columns for ``names`` (categorical ones dummy-coded, first level dropped).

    Missing values stay NaN in every dummy so complete-case selection sees them. Columns absent
    from ``table`` or with mixed numeric/non-numeric values are skipped with a warning.
    """
    parts = []
    for name in names:
        if name not in table.columns:
            continue
        if is_categorical(table, name, dictionary):
            values = table[name].astype("string")
            dummies = pd.get_dummies(values, prefix=name, prefix_sep="=", drop_first=True,
                                     dtype=float)
            dummies.loc[values.isna(), :] = np.nan
            parts.append(dummies)
        else:
            numeric = numeric_column(table, name, role="covariate", notes=notes)
            if numeric is not None:
                parts.append(numeric.rename(name).to_frame())
    if not parts:
        return pd.DataFrame(index=table.index)
    return pd.concat(parts, axis=1)


def group_labels(values: pd.Series, *, patient: Sequence[str],
                 control: Sequence[str]) -> pd.Series:
    """Map raw group values to ``patient``/``control`` (case-insensitive); others -> NaN."""
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="object")
    out[text.isin([p.lower() for p in patient]).fillna(False).astype(bool)] = PATIENT
    out[text.isin([c.lower() for c in control]).fillna(False).astype(bool)] = CONTROL
    return out


def drop_constant(cov: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Remove covariate columns that are constant in this sample (they alias the intercept)."""
    if cov.shape[1] == 0:
        return cov, []
    keep = np.ptp(cov, axis=0) > 0
    return cov[:, keep], [n for n, k in zip(names, keep) if k]


def cross_sectional(joined: pd.DataFrame, policy: str) -> pd.DataFrame:
    """One row per participant (first or last session by label)."""
    ordered = joined.sort_values(["participant_id", "session_id"], kind="stable")
    return ordered.drop_duplicates("participant_id", keep=policy)
