"""Table 1 and the per-participant z-score tables of the grouped participants (the
analysis-level wrappers: what is skipped and why)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_app.group.design import CONTROL, covariate_frame
from bids_app.group.notes import Notes
from bids_app.group.spec import AnalysisSpec
from bids_app.group.table1 import demographics
from bids_app.group.zscores import control_zscores, refusal, summarise


def table1(cross: pd.DataFrame, labels: pd.Series, spec: AnalysisSpec,
           dictionary: dict) -> tuple[pd.DataFrame | None, str | None]:
    """Table 1 of the grouped participants, or the reason it is skipped.

    Variables: ``table1.variables``, the duration column, then the scores (present ones).
    """
    if not spec.table1.enabled:
        return None, "switched off (table1.enabled: false)"
    if cross.empty:
        return None, "no participant could be assigned to a group"
    variables = [*spec.table1.variables,
                 *((spec.duration_column,) if spec.duration_column else ()), *spec.scores]
    return demographics(cross, labels, variables, dictionary=dictionary,
                        normality_alpha=spec.normality_alpha,
                        fisher_min_expected=spec.table1.fisher_min_expected,
                        seed=spec.table1.seed, min_n=max(spec.min_n, 2)), None


def zscore_tables(cross: pd.DataFrame, labels: pd.Series, feats: pd.DataFrame,
                  spec: AnalysisSpec, dictionary: dict, *,
                  notes: Notes) -> tuple[tuple[pd.DataFrame, pd.DataFrame] | None, str | None]:
    """Per-participant z-scores against the controls (:mod:`bids_app.group.zscores`).

    Returns
    -------
    tables : (DataFrame, DataFrame) or None
        One row per grouped participant (``participant_id, session_id, group_label``, the
        :func:`~bids_app.group.zscores.summarise` columns, one z column per feature) and
        one model row per feature; ``None`` when skipped.
    reason : str or None
        Why the analysis is skipped (also a warning when there are controls, but too few).
    """
    zspec = spec.zscores
    if not zspec.enabled:
        return None, "switched off (zscores.enabled: false)"
    if feats.empty:
        return None, "no imaging features"
    is_control = (labels == CONTROL).to_numpy()
    if not is_control.any():
        return None, "no controls"
    cov = covariate_frame(cross, zspec.covariates, dictionary=dictionary, notes=notes)
    complete = np.isfinite(cov.to_numpy(dtype=float)).all(axis=1) if cov.shape[1] else \
        np.ones(len(cross), bool)
    message = refusal(int((complete & is_control).sum()), zspec.min_controls,
                      zspec.covariates)
    if message is not None:
        notes.warn(message)
        return None, message
    z, models = control_zscores(cross[feats["feature"]], cov, is_control,
                                min_controls=zspec.min_controls)
    head = cross[["participant_id", "session_id"]].assign(group_label=labels.to_numpy())
    return (pd.concat([head, summarise(z), z], axis=1).reset_index(drop=True), models), None
