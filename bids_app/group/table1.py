"""Table 1: demographic and clinical characteristics per group, with tests.

Which summary and which test a variable gets is decided by :func:`choose_test` only:

* continuous, Shapiro-Wilk p > ``normality_alpha`` in every group with at least 3 values ->
  mean (SD) and Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``);
* continuous otherwise -> median [Q1, Q3] and the Mann-Whitney U test
  (``scipy.stats.mannwhitneyu``, two-sided);
* categorical, every expected count >= ``fisher_min_expected`` -> counts (%) and Pearson's
  chi-square (``scipy.stats.chi2_contingency(correction=False)``);
* categorical otherwise -> Fisher's exact test (``scipy.stats.fisher_exact``: exact for 2 x 2,
  Monte Carlo p with :data:`FISHER_RESAMPLES` tables and the spec's seed for larger tables).

A variable is categorical when the data dictionary gives ``Levels`` or its values are text
(:func:`bids_app.group.design.is_categorical`). No test when a group has fewer than ``min_n``
values (a variable recorded in patients only, such as ALSFRS-R, is summarised for patients).
Percentages are of the participants of the group with a value.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bids_app.group.design import CONTROL, PATIENT, is_categorical

GROUPS = (PATIENT, CONTROL)
#: Monte Carlo tables of Fisher's exact test on tables larger than 2 x 2.
FISHER_RESAMPLES = 100_000
CONTINUOUS, CATEGORICAL = "continuous", "categorical"


def choose_test(kind: str, *, normal: bool = False, min_expected: float = np.inf,
                fisher_min_expected: float = 5.0) -> tuple[str, str]:
    """The rule: summary and test for one variable (see the module docstring).

    Parameters
    ----------
    kind
        ``continuous`` or ``categorical``.
    normal
        Continuous: Shapiro-Wilk p > normality_alpha in every group with values.
    min_expected
        Categorical: smallest expected count of the group x level table.
    fisher_min_expected
        The spec's ``table1.fisher_min_expected``.

    Returns
    -------
    summary, test : str
        ``mean_sd``/``median_iqr``/``count_percent`` and
        ``welch``/``mann-whitney``/``chi-square``/``fisher``.

    Examples
    --------
    >>> choose_test("continuous", normal=True)
    ('mean_sd', 'welch')
    >>> choose_test("categorical", min_expected=4.2, fisher_min_expected=5)
    ('count_percent', 'fisher')
    """
    if kind == CONTINUOUS:
        return ("mean_sd", "welch") if normal else ("median_iqr", "mann-whitney")
    return "count_percent", "fisher" if min_expected < fisher_min_expected else "chi-square"


def fmt(value: float, like: float | None = None) -> str:
    """A summary number, decimals by the magnitude of ``like`` (default ``value``): 2 below
    10, 1 below 100, else 0.

    >>> fmt(54.31), fmt(7.512, like=54.31), fmt(541.2)
    ('54.3', '7.5', '541')
    """
    if not np.isfinite(value):
        return "n/a"
    ref = abs(value if like is None or not np.isfinite(like) else like)
    digits = 2 if ref < 10 else 1 if ref < 100 else 0
    return f"{value:.{digits}f}"


def _too_few(counts: Mapping[str, int], min_n: int) -> str:
    empty = [f"{g}s" for g, n in counts.items() if n == 0]
    return (f"no test: no values in {' and '.join(empty)}" if empty else
            f"no test: n < {min_n} in a group")


def _shapiro(x: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.shapiro(x).pvalue)


def _continuous(name: str, samples: dict[str, np.ndarray], *, normality_alpha: float,
                min_n: int) -> list[dict[str, Any]]:
    shapiro = {g: _shapiro(x) for g, x in samples.items()}
    present = [g for g in GROUPS if len(samples[g])]
    normal = bool(present) and all(shapiro[g] > normality_alpha for g in present)
    summary, test = choose_test(CONTINUOUS, normal=normal)
    row: dict[str, Any] = {"variable": name, "kind": CONTINUOUS, "summary_type": summary}
    for g, x in samples.items():
        q1, med, q3 = np.percentile(x, [25, 50, 75]) if len(x) else (np.nan,) * 3
        mean = x.mean() if len(x) else np.nan
        sd = x.std(ddof=1) if len(x) > 1 else np.nan
        row.update({f"n_{g}": len(x), f"mean_{g}": mean, f"sd_{g}": sd, f"median_{g}": med,
                    f"q1_{g}": q1, f"q3_{g}": q3, f"shapiro_p_{g}": shapiro[g]})
        row[g] = ("n/a" if not len(x) else f"{fmt(mean)} ({fmt(sd, mean)})"
                  if summary == "mean_sd" else
                  f"{fmt(med)} [{fmt(q1, med)}, {fmt(q3, med)}]")
    xp, xc = samples[PATIENT], samples[CONTROL]
    if min(len(xp), len(xc)) < min_n:
        row["reason"] = _too_few({g: len(x) for g, x in samples.items()}, min_n)
    elif np.ptp(np.r_[xp, xc]) == 0:
        row["reason"] = "no test: constant values"
    elif test == "welch":
        res = stats.ttest_ind(xp, xc, equal_var=False)
        row.update(test=test, test_statistic=res.statistic, df=res.df, p=res.pvalue)
    else:
        res = stats.mannwhitneyu(xp, xc, alternative="two-sided")
        row.update(test=test, test_statistic=res.statistic, p=res.pvalue)
    return [row]


def _levels(values: pd.Series, declared: Mapping[str, Any] | None) -> list[str]:
    present = sorted(values.dropna().astype(str).unique())
    order = [str(k) for k in declared] if isinstance(declared, Mapping) else []
    return [v for v in order if v in present] + [v for v in present if v not in order]


def _categorical(name: str, values: dict[str, pd.Series], declared: Mapping[str, Any] | None,
                 *, fisher_min_expected: float, seed: int, min_n: int) -> list[dict[str, Any]]:
    levels = _levels(pd.concat(list(values.values())), declared)
    counts = np.array([[int((values[g].astype(str) == lv).sum()) if len(values[g]) else 0
                        for g in GROUPS] for lv in levels], dtype=int).reshape(len(levels), 2)
    totals = counts.sum(axis=0)
    out: dict[str, Any] = {}
    if min(values[PATIENT].notna().sum(), values[CONTROL].notna().sum()) < min_n:
        out["reason"] = _too_few({g: int(v.notna().sum()) for g, v in values.items()}, min_n)
    elif len(levels) < 2:
        out["reason"] = "no test: a single level"
    else:
        expected = stats.contingency.expected_freq(counts)
        min_expected = float(expected.min())
        _, test = choose_test(CATEGORICAL, min_expected=min_expected,
                              fisher_min_expected=fisher_min_expected)
        out.update(min_expected=min_expected, test=test)
        if test == "chi-square":
            res = stats.chi2_contingency(counts, correction=False)
            out.update(test_statistic=res.statistic, df=res.dof, p=res.pvalue)
        elif counts.shape == (2, 2):
            res = stats.fisher_exact(counts)
            out.update(test_statistic=res.statistic, p=res.pvalue)
        else:
            method = stats.MonteCarloMethod(n_resamples=FISHER_RESAMPLES,
                                            rng=np.random.default_rng(seed))
            res = stats.fisher_exact(counts, method=method)
            out.update(test_statistic=res.statistic, p=res.pvalue)
    rows = []
    for i, level in enumerate(levels):
        row: dict[str, Any] = {"variable": name, "level": level, "kind": CATEGORICAL,
                               "summary_type": "count_percent", **out}
        for j, g in enumerate(GROUPS):
            pct = 100.0 * counts[i, j] / totals[j] if totals[j] else np.nan
            row.update({f"n_{g}": int(totals[j]), f"count_{g}": int(counts[i, j]),
                        f"percent_{g}": pct,
                        g: f"{counts[i, j]} ({pct:.1f}%)" if totals[j] else "n/a"})
        rows.append(row)
    return rows


def demographics(table: pd.DataFrame, labels: pd.Series, variables: Sequence[str], *,
                 dictionary: Mapping[str, Mapping[str, Any]], normality_alpha: float,
                 fisher_min_expected: float, seed: int, min_n: int) -> pd.DataFrame:
    """Table 1: n and every variable per group, with the test :func:`choose_test` picks.

    Parameters
    ----------
    table
        One row per participant (cross-sectional), phenotype columns typed by
        :mod:`bids_app.group.values`.
    labels
        ``patient``/``control``/NA per row of ``table``; other rows are ignored.
    variables
        Columns to summarise, in order (absent ones are skipped).
    dictionary
        Data dictionary (``Levels`` makes a column categorical and orders its levels).
    normality_alpha, min_n
        The spec's keys of the same names.
    fisher_min_expected, seed
        The spec's ``table1`` keys.

    Returns
    -------
    DataFrame
        One row for ``n``, one per continuous variable, one per level of a categorical one
        (columns: :data:`bids_app.group.columns.DEMOGRAPHICS`).
    """
    groups = {g: (labels == g).fillna(False).to_numpy(dtype=bool) for g in GROUPS}
    rows: list[dict[str, Any]] = [{
        "variable": "n", "kind": "count", "summary_type": "count",
        **{f"n_{g}": int(m.sum()) for g, m in groups.items()},
        **{g: str(int(m.sum())) for g, m in groups.items()}}]
    for name in dict.fromkeys(variables):
        if name not in table.columns:
            continue
        column = table[name]
        missing = {f"missing_{g}": int(column[m].isna().sum()) for g, m in groups.items()}
        if is_categorical(table, name, dictionary):
            found = _categorical(name, {g: column[m].dropna() for g, m in groups.items()},
                                 dictionary.get(name, {}).get("Levels"),
                                 fisher_min_expected=fisher_min_expected, seed=seed,
                                 min_n=min_n)
        else:
            x = pd.to_numeric(column, errors="coerce")
            found = _continuous(name, {g: x[m].dropna().to_numpy(dtype=float)
                                       for g, m in groups.items()},
                                normality_alpha=normality_alpha, min_n=min_n)
        rows += [{**r, **missing} for r in found]
    out = pd.DataFrame(rows)
    for col in ("level", "test", "test_statistic", "df", "p", "min_expected", "reason"):
        if col not in out.columns:
            out[col] = np.nan
    return out
