"""Along-tract profiles at the group level: read them, fit every node, control FWE along each.

Participant tables ``sub-<l>[_ses-<s>]_desc-profiles_dwistats.tsv`` (declared by
:data:`~bids_app.bids.outputs.DWI_PROFILES`, columns
:data:`~bids_app.bids.outputs.PROFILE_COLUMNS`) are read for the participants/sessions the run
selected. Each profile (atlas, region, hemisphere, metric) enters the models of the tract
means, at every node ``v``:

* ``comparison``: ``value_v ~ patient + covariates`` (patients and controls);
* ``clinical`` (every score) and ``duration``: ``score ~ value_v + clinical_covariates`` in the
  participants of the clinical analyses (the score itself dropped from its covariates);

fitted by :func:`~bids_app.group.permutation.fit_pointwise`, with the family-wise error along
each profile controlled by the Freedman-Lane permutation max-|t|
(:func:`~bids_app.group.permutation.max_t_null`, spec key ``profiles``). A participant enters
a profile's models only when every node of that profile is finite; absent or partial profiles
are named in a warning and in the inclusion table.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bids_app.bids.outputs import DWI_PROFILES, PROFILE_COLUMNS
from bids_app.errors import BadDataError
from bids_app.group.design import CONTROL, PATIENT, covariate_frame, drop_constant, numeric_column
from bids_app.group.load import KEYS, NA_VALUES, glob_files
from bids_app.group.notes import LOGGER, Notes
from bids_app.group.permutation import fit_pointwise, fwe_p, fwe_threshold, max_t_null, segments
from bids_app.group.spec import AnalysisSpec, ProfileSpec
from bids_app.group.spec_sections import absent_models

PROFILE = ["atlas", "region", "hemisphere", "metric"]
#: Level of the pointwise confidence intervals and of the group-mean bands.
CI_LEVEL = 0.95
_COV = ("Design columns besides the intercept and predictor (dummy-coded categorical levels "
        "as column=level; constant columns dropped)")
_PROFILE_COLS = {
    "atlas": "Atlas whose bundles the profile follows (e.g. hcp842)",
    "region": "Canonical bundle name (cst, corticostriatal, corticothalamic, ...)",
    "hemisphere": "L or R",
    "metric": "Scalar map sampled along the bundle (fa, md, ad, rd, ...)",
}
_NODE = "Node along the profile; node 0 at the inferior (brainstem) end"
#: Columns of the pointwise table (``group_desc-profiles_stats.tsv``).
STATS = {
    "analysis": "comparison (value ~ patient + covariates, patients and controls), clinical "
                "(score ~ value + clinical_covariates, clinical-analysis participants) or "
                "duration (the same with the disease-duration column)",
    "score": "Outcome of the clinical/duration model; n/a for comparison",
    **_PROFILE_COLS, "node": _NODE,
    "n": "Participants in the model (complete profile, outcome and covariates)",
    "n_patient": "Patients in the comparison", "n_control": "Controls in the comparison",
    "covariates": _COV,
    "estimate": "OLS coefficient of the predictor at this node: comparison, the "
                "covariate-adjusted patient-minus-control difference (metric units); "
                "clinical/duration, the change in score per unit of the profile value",
    "se": "Standard error of estimate", "t": "t statistic of estimate",
    "df": "Residual degrees of freedom",
    "p": "Two-sided parametric p at this node, uncorrected",
    "ci_low": f"Lower bound of the pointwise {CI_LEVEL:.0%} confidence interval of estimate",
    "ci_high": f"Upper bound of the pointwise {CI_LEVEL:.0%} confidence interval of estimate",
    "p_fwe": "Family-wise-error-corrected p along this profile: share of the permutations "
             "(the identity included) whose maximum |t| over the profile's nodes reaches |t| "
             "(Freedman-Lane permutation of the reduced-model residuals)",
    "significant": "p_fwe < profiles.fwe_alpha of the analysis spec",
    "t_crit_fwe": "1 - fwe_alpha quantile of the permutation distribution of the maximum |t| "
                  "along this profile",
    "n_permutations": "Permutations of the max-|t| distribution, the identity included "
                      "(every permutation when n! is smaller than profiles.n_permutations)",
    "reason": "Why statistics are missing (too few observations, constant outcome); empty "
              "when the row is complete",
}
#: Columns of the significant-segment table (``group_desc-profilesegments_stats.tsv``).
SEGMENTS = {
    "analysis": STATS["analysis"], "score": STATS["score"], **_PROFILE_COLS,
    "start_node": "First node of a run of contiguous nodes with p_fwe < fwe_alpha and one "
                  "sign of t",
    "end_node": "Last node of the run (inclusive)", "n_nodes": "Nodes in the run",
    "direction": "positive or negative (sign of t: patients higher / lower, or score rising / "
                 "falling with the value)",
    "peak_node": "Node of the largest |t| in the run", "peak_t": "t at peak_node",
    "peak_estimate": "estimate at peak_node", "min_p_fwe": "Smallest p_fwe in the run",
}
#: Columns of the group-mean table (``group_desc-profilemeans_stats.tsv``).
MEANS = {
    "group": "patient or control (the comparison sample), or all when there is no comparison",
    **_PROFILE_COLS, "node": _NODE, "n": "Participants with this profile complete",
    "mean": "Mean of the value", "sd": "Standard deviation of the value",
    "ci_low": f"Lower bound of the {CI_LEVEL:.0%} confidence interval of the mean (Student t)",
    "ci_high": f"Upper bound of the {CI_LEVEL:.0%} confidence interval of the mean",
}
#: Columns added to the inclusion table when profile tables exist.
INCLUSION = {
    "has_profiles": f"A {DWI_PROFILES.glob()} was found",
    "n_missing_profiles": "Profiles other participants have that this participant's table "
                          "lacks or holds with n/a nodes (left out of those analyses)",
    "missing_profiles": "Those profiles (;-separated atlas_region_hemisphere_metric)",
    "in_profile_analyses": "Entered at least one along-tract profile model",
}
_NAME = re.compile(r"^sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?"
                   + re.escape(DWI_PROFILES.glob().removeprefix("*")) + "$")


def profile_name(atlas: str, region: str, hemisphere: str, metric: str) -> str:
    """Name of one profile in messages and the inclusion table (``hcp842_cst_L_fa``)."""
    return f"{atlas}_{region}_{hemisphere}_{metric}"


def find_profiles(output_dir: str | Path) -> pd.DataFrame:
    """Every participant profile table under ``output_dir``: ``participant_id, session_id,
    path`` (session ``""`` when none), sorted; empty when there is none."""
    rows = []
    for pattern in (f"sub-*/{DWI_PROFILES.datatype}/{DWI_PROFILES.glob()}",
                    f"sub-*/ses-*/{DWI_PROFILES.datatype}/{DWI_PROFILES.glob()}"):
        for path in glob_files(output_dir, pattern):
            match = _NAME.match(path.name)
            if match:
                ses = f"ses-{match.group(2)}" if match.group(2) else ""
                rows.append((f"sub-{match.group(1)}", ses, path))
    return pd.DataFrame(rows, columns=[*KEYS, "path"]).sort_values(KEYS, ignore_index=True)


@dataclass(frozen=True)
class ProfileData:
    """The profiles of the selected participants/sessions, as arrays."""

    files: pd.DataFrame
    """``participant_id, session_id, path, missing`` (``missing``: names of the profiles this
    file lacks or holds with n/a nodes), one row per file = per row of ``values``."""
    catalogue: pd.DataFrame
    """``atlas, region, hemisphere, metric, profile, n_nodes`` (sorted)."""
    values: np.ndarray
    """``(files, profiles, max n_nodes)``; NaN where absent."""
    complete: np.ndarray
    """``(files, profiles)``: every node of the profile finite."""


def _read(paths: list[Path]) -> tuple[pd.DataFrame, np.ndarray]:
    """All rows of the tables (one parser call) and the index of the file of each row."""
    header, ncol = "\t".join(PROFILE_COLUMNS), len(PROFILE_COLUMNS)
    lines: list[str] = []
    counts = []
    for path in paths:
        try:
            rows = [line for line in Path(path).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise BadDataError(f"{path}: cannot read along-tract profiles ({exc})") from exc
        if not rows or rows[0] != header:
            raise BadDataError(f"{path}: header must be exactly {list(PROFILE_COLUMNS)}")
        for i, line in enumerate(rows[1:], start=2):
            if line.count("\t") != ncol - 1:
                raise BadDataError(f"{path}: line {i} has {line.count(chr(9)) + 1} fields, "
                                   f"expected {ncol}")
        lines.extend(rows[1:])
        counts.append(len(rows) - 1)
    owner = np.repeat(np.arange(len(paths)), counts)
    table = pd.read_csv(io.StringIO("\n".join(lines)), sep="\t", header=None,
                        names=list(PROFILE_COLUMNS), dtype={c: str for c in PROFILE},
                        na_values=NA_VALUES, keep_default_na=False) if lines else \
        pd.DataFrame(columns=list(PROFILE_COLUMNS))
    node = pd.to_numeric(table["node"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(node) & (node >= 0) & (node == np.round(node)))
    bad |= table[PROFILE].isna().any(axis=1).to_numpy()
    if bad.any():
        raise BadDataError(f"{paths[owner[np.argmax(bad)]]}: a row without atlas/region/"
                           "hemisphere/metric or with a node that is not an integer >= 0")
    table["node"] = node.astype(int)
    table["value"] = pd.to_numeric(table["value"], errors="coerce")
    return table, owner


def _complete(values: np.ndarray, n_nodes: np.ndarray) -> np.ndarray:
    """``(rows, profiles)``: every node of the profile (up to its length) finite."""
    in_range = np.arange(values.shape[2])[None, None, :] < n_nodes[None, :, None]
    return (np.isfinite(values) | ~in_range).all(axis=2)


def with_profile_values(data: ProfileData, values: np.ndarray) -> ProfileData:
    """``data`` with other values of the same shape (e.g. harmonised); ``complete`` follows
    them (a profile with a node made missing is left out, as an incomplete one is)."""
    if values.shape != data.values.shape:
        raise ValueError(f"profile values of shape {values.shape}, expected "
                         f"{data.values.shape}")
    return replace(data, values=values,
                   complete=_complete(values, data.catalogue["n_nodes"].to_numpy()))


def load_profiles(output_dir: str | Path, selected: pd.DataFrame, spec: ProfileSpec, *,
                  notes: Notes) -> ProfileData:
    """Read the profile tables of the ``selected`` participants/sessions.

    Parameters
    ----------
    output_dir
        The run's output directory.
    selected
        ``participant_id, session_id`` of the participant outputs the run selected
        (``--participant-label``/``--session-label`` applied).
    spec
        ``profiles`` of the analysis spec (its ``metrics`` are kept).

    Raises
    ------
    BadDataError
        A table with a wrong header, a short/long line, a bad node or a duplicated node.
    """
    files = find_profiles(output_dir).merge(selected[KEYS].drop_duplicates(), on=KEYS)
    table, owner = _read(list(files["path"]))
    present = sorted(set(table["metric"]))
    _, absent = absent_models(set(spec.metrics) - set(present))
    if len(files) and absent:
        notes.warn(f"analysis spec 'profiles.metrics': {absent} not in any along-tract profile "
                   f"table (metrics present: {present}); not analysed")
    keep = table["metric"].isin(spec.metrics).to_numpy()
    table, owner = table[keep].reset_index(drop=True), owner[keep]
    code = table.groupby(PROFILE, sort=True).ngroup().to_numpy()
    catalogue = table[PROFILE].drop_duplicates().sort_values(PROFILE, ignore_index=True)
    catalogue["profile"] = [profile_name(*row) for row in catalogue[PROFILE].itertuples(False)]
    node = table["node"].to_numpy()
    n_nodes = np.zeros(len(catalogue), dtype=int)
    np.maximum.at(n_nodes, code, node + 1)
    catalogue["n_nodes"] = n_nodes
    width = int(catalogue["n_nodes"].max()) if len(catalogue) else 0
    shape = (len(files), len(catalogue), width)
    flat = np.ravel_multi_index((owner, code, node), shape) if len(table) else np.array([], int)
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    if (counts > 1).any():
        where = np.unravel_index(int(np.argmax(counts > 1)), shape)
        raise BadDataError(f"{files['path'][where[0]]}: node {where[2]} of profile "
                           f"{catalogue['profile'][where[1]]} appears more than once")
    values = np.full(shape, np.nan)
    values[owner, code, node] = table["value"].to_numpy(dtype=float)
    complete = _complete(values, catalogue["n_nodes"].to_numpy())
    missing = []
    for i, path in enumerate(files["path"]):
        lacking = [(name, int((~np.isfinite(values[i, j, :n])).sum()), n) for j, (name, n)
                   in enumerate(zip(catalogue["profile"], catalogue["n_nodes"]))
                   if not complete[i, j]]
        missing.append([name for name, _, _ in lacking])
        if lacking:
            shown = ", ".join(f"{name} ({k} of {n} nodes n/a)" for name, k, n in lacking[:6])
            notes.warn(f"{path}: along-tract profile(s) absent or incomplete: {shown}"
                       f"{' ...' if len(lacking) > 6 else ''}; left out of those profile "
                       "analyses")
    return ProfileData(files=files.assign(missing=missing), catalogue=catalogue, values=values,
                       complete=complete)


# --------------------------------------------------------------------------- analyses
@dataclass(frozen=True)
class ProfileResults:
    """What the profile analyses computed (written by :mod:`bids_app.reports.group`)."""

    skipped: str | None
    """One line saying why nothing was analysed (no profile table), else ``None``."""
    stats: pd.DataFrame
    """One row per analysis/score/profile/node (columns :data:`STATS`)."""
    segments: pd.DataFrame
    """Runs of contiguous nodes with ``p_fwe < fwe_alpha`` (columns :data:`SEGMENTS`)."""
    means: pd.DataFrame
    """Mean and confidence band per group/profile/node (columns :data:`MEANS`)."""
    inclusion: pd.DataFrame
    """``participant_id, session_id`` + the columns of :data:`INCLUSION`, per profile file."""
    spec: ProfileSpec


class _Silent(Notes):
    """Design columns are rebuilt from the columns the tract-mean analyses have already
    checked and warned about: their warnings are not repeated."""

    def warn(self, message: str) -> None:
        return None


@dataclass(frozen=True)
class _Model:
    analysis: str
    score: str | None
    rows: np.ndarray
    """Rows of the cross-sectional table the model may use."""
    shared: np.ndarray
    """The column shared by every node: patient indicator (the predictor) or the score."""
    covariates: pd.DataFrame
    outcome_is_profile: bool


def _models(cross: pd.DataFrame, labels: pd.Series, clinical_rows: np.ndarray,
            spec: AnalysisSpec, dictionary: Mapping[str, Any]) -> list[_Model]:
    """The tract-mean models, with the same samples and covariate columns."""
    quiet = _Silent()
    models = []
    grouped = labels.isin([PATIENT, CONTROL]).to_numpy()
    patient = (labels == PATIENT).to_numpy()
    if patient.any() and (labels == CONTROL).any():
        cov = covariate_frame(cross.loc[grouped], spec.covariates, dictionary=dictionary,
                              notes=quiet).reindex(cross.index)
        models.append(_Model("comparison", None, grouped, patient.astype(float), cov, True))
    clin = cross.loc[clinical_rows]
    for analysis, names in (("clinical", spec.scores), ("duration", (spec.duration_column,)
                                                        if spec.duration_column else ())):
        for name in names:
            values = numeric_column(cross, name, role="score", notes=quiet)
            if values is None:
                continue
            cov = covariate_frame(clin, [c for c in spec.clinical_covariates if c != name],
                                  dictionary=dictionary, notes=quiet).reindex(cross.index)
            models.append(_Model(analysis, name, clinical_rows, values.to_numpy(dtype=float),
                                 cov, False))
    return models


def _fit(model: _Model, mask: np.ndarray, cols: list[int], n_nodes: int, data: ProfileData,
         idx: np.ndarray, spec: AnalysisSpec) -> pd.DataFrame:
    """Pointwise fits and FWE p of the profiles ``cols`` sharing one sample ``mask``."""
    n, cat = int(mask.sum()), data.catalogue
    cov, used = drop_constant(model.covariates.to_numpy(dtype=float)[mask],
                              list(model.covariates.columns))
    z = np.column_stack([np.ones(n), cov])
    shared = model.shared[mask]
    frame = pd.DataFrame({"analysis": model.analysis, "score": model.score,
                          **{c: np.repeat(cat[c].to_numpy()[cols], n_nodes) for c in PROFILE},
                          "node": np.tile(np.arange(n_nodes), len(cols)), "n": n})
    if model.analysis == "comparison":
        frame["n_patient"], frame["n_control"] = int(shared.sum()), n - int(shared.sum())
    frame["covariates"] = ",".join(used) or np.nan
    least = max(spec.min_n, 3)
    if model.analysis == "comparison" and min(shared.sum(), n - shared.sum()) < least:
        return frame.assign(reason=f"n < {least} in a group")
    if model.analysis != "comparison" and n < least:
        return frame.assign(reason=f"n < {least}")
    if np.ptp(shared) == 0:
        return frame.assign(reason="constant outcome")
    if n <= z.shape[1] + 1:
        return frame.assign(reason=f"n={n} too small for {z.shape[1] + 1} model parameters")
    values = data.values[idx[mask]][:, cols, :n_nodes].reshape(n, len(cols) * n_nodes)
    y, x = (values, shared) if model.outcome_is_profile else (shared, values)
    fit = fit_pointwise(y, x, z, ci_level=CI_LEVEL)
    null = max_t_null(y, x, z, block=n_nodes, n_permutations=spec.profiles.n_permutations,
                      seed=spec.profiles.seed)
    p_fwe = fwe_p(fit.t, null, block=n_nodes)
    return frame.assign(
        estimate=fit.estimate, se=fit.se, t=fit.t, df=fit.df, p=fit.p, ci_low=fit.ci_low,
        ci_high=fit.ci_high, p_fwe=p_fwe, significant=p_fwe < spec.profiles.fwe_alpha,
        t_crit_fwe=np.repeat(fwe_threshold(null, alpha=spec.profiles.fwe_alpha), n_nodes),
        n_permutations=null.n_permutations, reason=np.nan)


def _segments(stats_table: pd.DataFrame) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    keys = ["analysis", "score", *PROFILE]
    if stats_table.empty:
        return pd.DataFrame(rows, columns=list(SEGMENTS))
    sig_any = stats_table.groupby(keys, dropna=False, sort=False)["significant"].transform(
        lambda s: s.fillna(False).astype(bool).any())
    for key, part in stats_table[sig_any].groupby(keys, dropna=False, sort=False):
        t = part["t"].to_numpy(dtype=float)
        for first, last in segments(part["significant"].fillna(False).to_numpy(bool), t):
            seg = part.iloc[first:last + 1]
            peak = seg.iloc[int(np.nanargmax(np.abs(seg["t"].to_numpy(dtype=float))))]
            rows.append({**dict(zip(keys, key)), "start_node": int(seg["node"].iloc[0]),
                         "end_node": int(seg["node"].iloc[-1]), "n_nodes": len(seg),
                         "direction": "positive" if peak["t"] > 0 else "negative",
                         "peak_node": int(peak["node"]), "peak_t": peak["t"],
                         "peak_estimate": peak["estimate"], "min_p_fwe": seg["p_fwe"].min()})
    return pd.DataFrame(rows, columns=list(SEGMENTS))


def _means(data: ProfileData, idx: np.ndarray, groups: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean, SD and t-based confidence band of every profile per group (complete profiles)."""
    parts = []
    for group, rows in groups.items():
        for j, prof in enumerate(data.catalogue.itertuples(index=False)):
            mask = rows & (idx >= 0) & data.complete[np.maximum(idx, 0), j]
            v = data.values[idx[mask], j, :prof.n_nodes]
            n = len(v)
            mean = v.mean(axis=0) if n else np.full(prof.n_nodes, np.nan)
            sd = v.std(axis=0, ddof=1) if n > 1 else np.full(prof.n_nodes, np.nan)
            half = (stats.t.isf((1 - CI_LEVEL) / 2, n - 1) * sd / np.sqrt(n) if n > 1
                    else np.full(prof.n_nodes, np.nan))
            parts.append(pd.DataFrame({
                "group": group, **{c: getattr(prof, c) for c in PROFILE},
                "node": np.arange(prof.n_nodes), "n": n, "mean": mean, "sd": sd,
                "ci_low": mean - half, "ci_high": mean + half}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(MEANS))


def _empty(skipped: str | None, spec: ProfileSpec) -> ProfileResults:
    return ProfileResults(skipped=skipped, stats=pd.DataFrame(columns=list(STATS)),
                          segments=pd.DataFrame(columns=list(SEGMENTS)),
                          means=pd.DataFrame(columns=list(MEANS)),
                          inclusion=pd.DataFrame(columns=[*KEYS, *INCLUSION]), spec=spec)


def analyse_profiles(data: ProfileData, cross: pd.DataFrame, labels: pd.Series,
                     clinical_rows: np.ndarray, spec: AnalysisSpec, *,
                     dictionary: Mapping[str, Any], notes: Notes) -> ProfileResults:
    """Pointwise comparison and clinical models on every profile, FWE along each profile.

    Parameters
    ----------
    data
        :func:`load_profiles`.
    cross, labels, clinical_rows
        The cross-sectional rows, their group labels and the rows of the clinical analyses,
        as the tract-mean analyses use them (:func:`bids_app.group.run.analyse`).
    spec
        Resolved analysis spec (``covariates``, ``clinical_covariates``, ``scores``,
        ``duration_column``, ``min_n`` and ``profiles``).
    dictionary
        Phenotype data dictionary (categorical covariates).

    Returns
    -------
    ProfileResults
        ``skipped`` is one line when no profile table exists (nothing else is reported).
    """
    if data.files.empty or data.catalogue.empty:
        why = ("no participant along-tract profiles" if data.files.empty else
               f"no profile of the metrics {list(spec.profiles.metrics)}")
        line = f"along-tract profile analyses skipped: {why} ({DWI_PROFILES.glob()})"
        LOGGER.info(line)
        return _empty(line, spec.profiles)
    row = {k: i for i, k in enumerate(data.files[KEYS].itertuples(index=False, name=None))}
    idx = np.array([row.get(k, -1) for k in cross[KEYS].itertuples(index=False, name=None)],
                   dtype=int)
    lacking = sorted(cross.loc[idx < 0, "participant_id"])
    if lacking:
        notes.warn(f"{len(lacking)} participant(s) without an along-tract profile table "
                   f"({DWI_PROFILES.glob()}): {', '.join(lacking[:20])}"
                   f"{' ...' if len(lacking) > 20 else ''}; left out of the profile analyses")
    complete = data.complete[np.maximum(idx, 0)] & (idx >= 0)[:, None]   # (cross, profiles)
    used = np.zeros(len(cross), dtype=bool)
    parts = []
    models = _models(cross, labels, clinical_rows, spec, dictionary)
    for model in models:
        cov_ok = np.isfinite(model.covariates.to_numpy(dtype=float)).all(axis=1)
        base = model.rows & np.isfinite(model.shared) & cov_ok
        batches: dict[tuple[bytes, int], list[int]] = {}
        for j, n_nodes in enumerate(data.catalogue["n_nodes"]):
            batches.setdefault((np.packbits(base & complete[:, j]).tobytes(), int(n_nodes)),
                               []).append(j)
        for (_, n_nodes), cols in batches.items():
            mask = base & complete[:, cols[0]]
            used |= mask
            parts.append(_fit(model, mask, cols, n_nodes, data, idx, spec))
        LOGGER.info("profiles: %s%s: %d profile(s), %d permutation(s) each", model.analysis,
                    f" ({model.score})" if model.score else "", len(data.catalogue),
                    spec.profiles.n_permutations)
    stats_table = (pd.concat(parts, ignore_index=True) if parts else
                   pd.DataFrame(columns=list(STATS)))
    stats_table = stats_table.reindex(columns=list(STATS))
    counts = ["n", "n_patient", "n_control", "df", "n_permutations"]
    stats_table[counts] = stats_table[counts].astype("Int64")
    groups = ({PATIENT: (labels == PATIENT).to_numpy(), CONTROL: (labels == CONTROL).to_numpy()}
              if any(m.analysis == "comparison" for m in models)
              else {"all": np.ones(len(cross), dtype=bool)})
    used_keys = set(cross.loc[used, KEYS].itertuples(index=False, name=None))
    incl = data.files[KEYS].assign(
        has_profiles=True, n_missing_profiles=[len(m) for m in data.files["missing"]],
        missing_profiles=[";".join(m) or np.nan for m in data.files["missing"]],
        in_profile_analyses=[k in used_keys for k in
                             data.files[KEYS].itertuples(index=False, name=None)])
    return ProfileResults(skipped=None, stats=stats_table, segments=_segments(stats_table),
                          means=_means(data, idx, groups), inclusion=incl, spec=spec.profiles)


def with_profile_inclusion(inclusion: pd.DataFrame, results: ProfileResults) -> pd.DataFrame:
    """The inclusion table plus the columns of :data:`INCLUSION` (unchanged when skipped)."""
    if results.skipped is not None:
        return inclusion
    out = inclusion.merge(results.inclusion, on=KEYS, how="left")
    out["has_profiles"] = out["has_profiles"].astype("boolean").fillna(False).astype(bool)
    out["in_profile_analyses"] = out["in_profile_analyses"].astype("boolean").fillna(
        False).astype(bool)
    out["n_missing_profiles"] = out["n_missing_profiles"].fillna(0).astype(int)
    return out
