"""Covariate-adjusted z-scores of every participant against the study's controls.

For each imaging feature, ``feature ~ 1 + covariates`` (age, sex by default) is fitted by
ordinary least squares on the controls with a value and complete covariates; a patient's
z-score is ``(observed - predicted) / s``, ``s`` the residual standard deviation of that fit
(``sqrt(SSR / (n - p))``). A control's z-score comes from the same model fitted without that
control (leave-one-out, computed exactly from the full fit through the hat matrix). Covariate
columns constant among the controls are dropped from the model of that feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Leverage above ``1 - LEVERAGE_EPS``: the control's leave-one-out model is singular (n/a).
LEVERAGE_EPS = 1e-10
#: ``|z|`` counted as deviating in the per-participant summary (and shown in the report).
Z_FLAG = 2.0


def refusal(n_controls: int, min_controls: int, covariates: list[str] | tuple[str, ...]) -> \
        str | None:
    """The message refusing the analysis, or ``None`` when there are enough controls."""
    if n_controls >= min_controls:
        return None
    adjusted = f" with complete covariates ({', '.join(covariates)})" if covariates else ""
    return (f"patient z-scores need at least zscores.min_controls = {min_controls} controls"
            f"{adjusted}; {n_controls} available, analysis skipped")


def _fit_block(y: np.ndarray, design: np.ndarray, control: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """z of every row for the features (columns of ``y``) sharing one sample.

    Returns z (rows x features), the residual SD and residual df of the control fit.
    """
    xc, yc = design[control], y[control]
    n, p = xc.shape
    beta, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    resid = yc - xc @ beta
    ssr = (resid ** 2).sum(axis=0)
    s = np.sqrt(ssr / (n - p))
    z = (y - design @ beta) / s
    h = np.einsum("ij,ji->i", xc, np.linalg.pinv(xc))   # leverages of the controls
    ok = h < 1 - LEVERAGE_EPS
    one_minus = np.where(ok, 1 - h, np.nan)[:, None]
    loo_resid = resid / one_minus
    loo_s = np.sqrt((ssr - resid ** 2 / one_minus) / (n - 1 - p))
    z[control] = loo_resid / loo_s
    return z, s, np.full(y.shape[1], n - p, dtype=float)


def control_zscores(values: pd.DataFrame, covariates: pd.DataFrame, is_control: np.ndarray, *,
                    min_controls: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """z-score of every row and feature against the controls (method in the module doc).

    Parameters
    ----------
    values
        One row per participant (patients and controls), one float column per feature.
    covariates
        Numeric design columns aligned with ``values`` (categorical ones dummy-coded, see
        :func:`bids_app.group.design.covariate_frame`); may be empty.
    is_control
        Boolean per row.
    min_controls
        Fewest controls with a value and complete covariates a feature needs (else its
        z-scores are n/a and the model row gives the reason).

    Returns
    -------
    z : DataFrame
        Same index and columns as ``values``; NaN where the value or a covariate is missing.
    models : DataFrame
        One row per feature: ``feature, n_controls, covariates, residual_sd, df_resid,
        reason``.
    """
    is_control = np.asarray(is_control, dtype=bool)
    cov = covariates.to_numpy(dtype=float).reshape(len(values), -1)
    cov_ok = np.isfinite(cov).all(axis=1)
    y_all = values.to_numpy(dtype=float)
    z = np.full(y_all.shape, np.nan)
    models: list[dict[str, Any]] = []
    blocks: dict[bytes, list[int]] = {}
    for j, feature in enumerate(values.columns):
        ok = np.isfinite(y_all[:, j]) & cov_ok
        blocks.setdefault(np.packbits(ok).tobytes(), []).append(j)
    for cols in blocks.values():
        ok = np.isfinite(y_all[:, cols[0]]) & cov_ok
        control = is_control[ok]
        n_c = int(control.sum())
        keep = np.ptp(cov[ok][control], axis=0) > 0 if n_c else np.zeros(cov.shape[1], bool)
        names = [c for c, k in zip(covariates.columns, keep) if k]
        design = np.column_stack([np.ones(int(ok.sum())), cov[ok][:, keep]])
        info: dict[str, Any] = {"n_controls": n_c, "covariates": ",".join(names)}
        if n_c < min_controls or n_c - design.shape[1] < 2:
            reason = (f"{n_c} control(s) with a value, fewer than min_controls = "
                      f"{min_controls}" if n_c < min_controls else
                      f"{n_c} controls leave no degrees of freedom for {design.shape[1]} "
                      "parameters")
            models += [{"feature": values.columns[j], **info, "reason": reason} for j in cols]
            continue
        zb, s, df = _fit_block(y_all[ok][:, cols], design, control)
        rows = np.flatnonzero(ok)
        z[np.ix_(rows, cols)] = zb
        models += [{"feature": values.columns[j], **info, "residual_sd": s[k],
                    "df_resid": df[k]} for k, j in enumerate(cols)]
    order = {f: i for i, f in enumerate(values.columns)}
    table = pd.DataFrame(models, columns=["feature", "n_controls", "covariates", "residual_sd",
                                          "df_resid", "reason"])
    table = table.sort_values("feature", key=lambda s: s.map(order)).reset_index(drop=True)
    return pd.DataFrame(z, index=values.index, columns=values.columns), table


def summarise(z: pd.DataFrame) -> pd.DataFrame:
    """Per row: features with a z, ``|z| >=`` :data:`Z_FLAG` count, largest ``|z|``, its feature.

    Examples
    --------
    >>> summarise(pd.DataFrame({"a": [0.5, -3.0], "b": [2.5, np.nan]}))
       n_zscores  n_abs_z_ge_2  max_abs_z max_abs_z_feature
    0          2             1        2.5                 b
    1          1             1        3.0                 a
    """
    a = z.abs()
    has = a.notna().any(axis=1)
    feature = a.fillna(-1.0).idxmax(axis=1).where(has) if a.shape[1] else pd.Series(
        np.nan, index=z.index)
    return pd.DataFrame({"n_zscores": a.notna().sum(axis=1),
                         "n_abs_z_ge_2": (a >= Z_FLAG).sum(axis=1),
                         "max_abs_z": a.max(axis=1), "max_abs_z_feature": feature},
                        index=z.index)
