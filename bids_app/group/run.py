"""``alsmri BIDS_DIR OUTPUT_DIR group``: load, join, analyse, write (entry point for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.errors import UsageError
from bids_app.group.design import CONTROL, PATIENT, covariate_frame, group_labels, numeric_column
from bids_app.group.load import (
    Phenotype,
    find_participant_outputs,
    inclusion,
    join,
    load_metrics,
    load_phenotype,
)
from bids_app.group.notes import LOGGER, Notes
from bids_app.group.relations import gm_tract, interhemispheric
from bids_app.group.spec import AnalysisSpec, canonical_spec, load_aliases, load_spec
from bids_app.group.stats import associations, compare_groups
from bids_app.settings import Settings

#: File names under OUTPUT_DIR/group/ (each TSV has a .json sidecar next to it).
OUTPUTS = {
    "joined": "group_desc-joined_participants.tsv",
    "inclusion": "group_desc-inclusion_participants.tsv",
    "comparisons": "group_desc-comparisons_stats.tsv",
    "clinical": "group_desc-clinical_correlations.tsv",
    "duration": "group_desc-duration_correlations.tsv",
    "gmtract": "group_desc-gmtract_stats.tsv",
    "interhemispheric": "group_desc-interhemispheric_stats.tsv",
    "spec": "group_desc-analysis_spec.json",
    "report": "report.html",
}


@dataclass
class GroupResults:
    """Everything one run computed (inputs of the writers, figures and report)."""

    spec: AnalysisSpec
    joined: pd.DataFrame
    catalogue: pd.DataFrame
    inclusion: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    cross: pd.DataFrame | None = None
    labels: pd.Series | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    notes: Notes = field(default_factory=Notes)


def _phenotype_files(pheno: Phenotype) -> str:
    return ", ".join(str(p) for p, _ in pheno.tables) or "participants.tsv (missing)"


def check_names(spec: AnalysisSpec, available: set[str], pheno: Phenotype, *,
                notes: Notes) -> AnalysisSpec:
    """Keep the spec's column names that exist; unknown user-given names raise UsageError.

    Names coming from the packaged defaults are dropped with a warning instead. Without any
    phenotype file nothing can be checked: every analysis needing one is skipped (warning).
    """
    def keep(key: str, names: tuple[str, ...]) -> tuple[str, ...]:
        missing = [n for n in names if n not in available]
        if missing and key.split(".")[0] in spec.user_keys and pheno.tables:
            raise UsageError(f"{spec.source}: {key} names unknown column(s) {missing} "
                             f"(not in {_phenotype_files(pheno)})")
        if missing and pheno.tables:
            notes.warn(f"{key}: column(s) {missing} not in the phenotype data; not used")
        return tuple(n for n in names if n in available)

    group = keep("group_column", (spec.group_column,))
    duration = keep("duration_column", (spec.duration_column,) if spec.duration_column else ())
    return replace(
        spec, group_column=group[0] if group else "",
        covariates=keep("covariates", spec.covariates),
        clinical_covariates=keep("clinical_covariates", spec.clinical_covariates),
        scores=keep("scores", spec.scores),
        duration_column=duration[0] if duration else None,
        gm_tract=replace(spec.gm_tract, covariates=keep("gm_tract.covariates",
                                                        spec.gm_tract.covariates)))


def cross_sectional(joined: pd.DataFrame, policy: str) -> pd.DataFrame:
    """One row per participant (first or last session by label)."""
    ordered = joined.sort_values(["participant_id", "session_id"], kind="stable")
    return ordered.drop_duplicates("participant_id", keep=policy)


def analyse(spec: AnalysisSpec, joined: pd.DataFrame, catalogue: pd.DataFrame,
            pheno: Phenotype, *, notes: Notes) -> GroupResults:
    """Run every analysis the data allow; skipped ones are recorded with a reason."""
    res = GroupResults(spec=spec, joined=joined, catalogue=catalogue,
                       inclusion=pd.DataFrame(), notes=notes)
    cross = cross_sectional(joined, spec.session).reset_index(drop=True)
    res.cross = cross
    feats = catalogue[catalogue["metric"].isin(spec.metrics)].reset_index(drop=True)
    for metric, stat in spec.statistics.items():
        if metric in spec.metrics and not (feats["metric"] == metric).any():
            notes.warn(f"no participant rows for metric {metric!r} with statistic {stat!r}")
    dictionary = pheno.dictionary

    labels = pd.Series(pd.NA, index=cross.index, dtype="object")
    if spec.group_column:
        labels = group_labels(cross[spec.group_column], patient=spec.patient_label,
                              control=spec.control_label)
        other = sorted(cross.loc[labels.isna(), spec.group_column].dropna().astype(str).unique())
        if other:
            notes.warn(f"group column {spec.group_column!r}: value(s) {other} are neither "
                       f"patient {list(spec.patient_label)} nor control "
                       f"{list(spec.control_label)}; those participants are not grouped")
    elif pheno.tables:
        notes.warn("no group column in the phenotype data; group comparisons skipped")
    res.labels = labels
    n_pat, n_con = int((labels == PATIENT).sum()), int((labels == CONTROL).sum())

    # -- patients vs controls
    if n_pat and n_con:
        rows = labels.isin([PATIENT, CONTROL]).to_numpy()
        sub = cross.loc[rows]
        cov = covariate_frame(sub, spec.covariates, dictionary=dictionary, notes=notes)
        res.tables["comparisons"] = compare_groups(
            sub[feats["feature"]], feats, (labels[rows] == PATIENT).to_numpy(), cov,
            fdr_alpha=spec.fdr_alpha, normality_alpha=spec.normality_alpha,
            equal_variance_alpha=spec.equal_variance_alpha, min_n=spec.min_n)
    else:
        reason = ("only one group level present" if (n_pat or n_con) else
                  "no participant could be assigned to a group")
        res.skipped["comparisons"] = reason
        if spec.group_column or not pheno.tables:
            notes.warn(f"group comparisons skipped: {reason} "
                       f"(patients={n_pat}, controls={n_con})")

    # -- clinical associations (patients; everyone when no group is known)
    if n_pat:
        clin_rows = (labels == PATIENT).to_numpy()
    else:
        clin_rows = np.ones(len(cross), dtype=bool)
        if spec.scores and spec.group_column:
            notes.warn("no patients identified; clinical associations use all participants")
    clin = cross.loc[clin_rows].reset_index(drop=True)
    for key, names, cov_names in (
            ("clinical", spec.scores, spec.clinical_covariates),
            ("duration", (spec.duration_column,) if spec.duration_column else (),
             spec.clinical_covariates)):
        ys = {}
        for name in names:
            values = numeric_column(clin, name, role="score", notes=notes)
            if values is not None:
                ys[name] = values
        if not ys or feats.empty:
            res.skipped[key] = "no usable score column" if not ys else "no imaging features"
            continue
        pairs = pd.DataFrame([{"score": s, **f, "family": f"{s}:{f['metric']}",
                               "y": s, "x": f["feature"]}
                              for s in ys for f in feats.to_dict("records")])
        covs = {s: covariate_frame(clin, [c for c in cov_names if c != s],
                                   dictionary=dictionary, notes=notes) for s in ys}
        table = associations(pd.DataFrame(ys), clin, pairs, covs, fdr_alpha=spec.fdr_alpha,
                             min_n=spec.min_n)
        res.tables[key] = table.drop(columns=["y", "x", "feature"])

    # -- gray matter vs tract, left vs right
    subsets = {"all": np.ones(len(cross), dtype=bool)}
    if n_pat and n_con:
        subsets.update(patient=(labels == PATIENT).to_numpy(),
                       control=(labels == CONTROL).to_numpy())
    cov = covariate_frame(cross, spec.gm_tract.covariates, dictionary=dictionary, notes=notes)
    table = gm_tract(cross, catalogue, spec.gm_tract, cov, subsets, fdr_alpha=spec.fdr_alpha,
                     min_n=spec.min_n)
    if table.empty:
        res.skipped["gmtract"] = "no gray-matter/tract feature pair in the data"
    else:
        res.tables["gmtract"] = table.drop(columns=["y", "x"])
    table = interhemispheric(cross, catalogue, spec.interhemispheric_metrics, subsets,
                             fdr_alpha=spec.fdr_alpha, min_n=spec.min_n)
    if table.empty:
        res.skipped["interhemispheric"] = "no region with both a left and a right value"
    else:
        res.tables["interhemispheric"] = table
    return res


def load_inputs(settings: Settings, *, notes: Notes) -> tuple[AnalysisSpec, pd.DataFrame,
                                                          pd.DataFrame, pd.DataFrame,
                                                          Phenotype]:
    """Spec, joined table, feature catalogue, inclusion table and phenotype of a run."""
    ex = settings.execution
    aliases = load_aliases()
    spec = canonical_spec(load_spec(settings.group.analysis_spec, overrides=settings.group),
                          aliases)
    files = find_participant_outputs(ex.output_dir)
    wide, catalogue = load_metrics(files, spec.statistics, notes=notes)
    LOGGER.info("group: %d participant(s), %d session row(s), %d feature(s)",
                wide["participant_id"].nunique(), len(wide), len(catalogue))
    pheno = load_phenotype(ex.bids_dir, aliases, notes=notes)
    joined = join(wide, pheno, notes=notes)
    spec = check_names(spec, set(joined.columns), pheno, notes=notes)
    warn_unmatched_imaging_names(spec, catalogue, notes=notes)
    return spec, joined, catalogue, inclusion(wide, pheno, notes=notes), pheno


def warn_unmatched_imaging_names(spec: AnalysisSpec, catalogue: pd.DataFrame, *,
                                 notes: Notes) -> list[str]:
    """Warn about spec metrics/regions that no participant output has (their tables are empty).

    Returns the warning messages (also added to ``notes``).
    """
    metrics, regions = set(catalogue["metric"]), set(catalogue["region"])
    messages = []
    for key, names in (("metrics", spec.metrics),
                       ("interhemispheric_metrics", spec.interhemispheric_metrics),
                       ("gm_tract.gm_metric", (spec.gm_tract.gm_metric,)),
                       ("gm_tract.tract_metric", (spec.gm_tract.tract_metric,))):
        missing = sorted(set(names) - metrics)
        if missing:
            messages.append(f"analysis spec '{key}': {missing} not in any participant metrics "
                            f"table (metrics present: {sorted(metrics)}); not analysed")
    pair_regions = {name for pair in spec.gm_tract.pairs for name in pair}
    missing = sorted(pair_regions - regions)
    if missing:
        messages.append(f"analysis spec 'gm_tract.pairs': region(s) {missing} not in any "
                        "participant metrics table; those pairs are skipped")
    for message in messages:
        notes.warn(message)
    return messages


def run_group(settings: Settings) -> Path:
    """Run the group level; return ``OUTPUT_DIR/group``.

    Parameters
    ----------
    settings
        :class:`bids_app.settings.Settings` (``execution.bids_dir``, ``execution.output_dir``
        and ``group`` are used).

    Raises
    ------
    NoDataError
        No participant outputs under the output directory.
    UsageError
        Malformed analysis spec, or a user-given column name not in the phenotype data.
    """
    from bids_app.group.report import write_outputs

    notes = Notes()
    spec, joined, catalogue, incl, pheno = load_inputs(settings, notes=notes)
    results = analyse(spec, joined, catalogue, pheno, notes=notes)
    results.inclusion = incl
    out_dir = Path(settings.execution.output_dir) / "group"
    write_outputs(results, out_dir, pheno=pheno)
    return out_dir
