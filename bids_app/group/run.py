"""``alsmri BIDS_DIR OUTPUT_DIR group``: load, join, analyse (returns the results).

Writing the tables, figures and report is :mod:`bids_app.reports.group`'s job; the command line
(:func:`bids_app.cli.workflow.run`) calls :func:`run_group` then
:func:`bids_app.reports.group.write_outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bids_app.errors import UsageError
from bids_app.group.cohort_tables import table1, zscore_tables
from bids_app.group.design import (
    CONTROL,
    PATIENT,
    covariate_frame,
    cross_sectional,
    group_labels,
    numeric_column,
)
from bids_app.group.harmonise import Harmonisation, harmonise_profiles, harmonised_joined
from bids_app.group.load import (
    KEYS,
    find_participant_outputs,
    load_metrics,
    select_outputs,
    warn_unmatched_imaging_names,
)
from bids_app.group.longitudinal import analyse_longitudinal
from bids_app.group.notes import LOGGER, Notes
from bids_app.group.phenotype import Phenotype, inclusion, join, load_phenotype
from bids_app.group.primary import (
    ANALYSIS_SCALE,
    PRIMARY_FAMILIES,
    mark_primary,
    to_analysis_units,
)
from bids_app.group.profiles import (
    ProfileData,
    ProfileResults,
    analyse_profiles,
    load_profiles,
    with_profile_inclusion,
    with_profile_values,
)
from bids_app.group.relations import gm_tract, interhemispheric
from bids_app.group.seeds import SEED_ANALYSES, Cohort, discover_side_columns
from bids_app.group.spec import AnalysisSpec, canonical_spec, load_aliases, load_spec
from bids_app.group.stats import associations, compare_groups
from bids_app.settings import Settings

__all__ = ["GroupInputs", "GroupResults", "analyse", "check_names", "cross_sectional",
           "load_inputs", "run_group", "select_outputs", "warn_unmatched_imaging_names"]


@dataclass(frozen=True)
class GroupInputs:
    """What one run reads: resolved spec, joined table, feature catalogue, phenotype."""

    spec: AnalysisSpec
    joined: pd.DataFrame
    """One row per participant/session (session ``""`` when none): imaging + phenotype."""
    catalogue: pd.DataFrame
    """One row per imaging feature: ``feature, atlas, region, hemisphere, metric, statistic``."""
    inclusion: pd.DataFrame
    """Who has DWI/anat/phenotype (:func:`bids_app.group.phenotype.inclusion`)."""
    phenotype: Phenotype
    profiles: ProfileData
    """Along-tract profiles of the selected participants (none yet: an empty table)."""


@dataclass(frozen=True)
class GroupResults:
    """Everything one run computed (what the writers, figures and report read)."""

    spec: AnalysisSpec
    joined: pd.DataFrame
    catalogue: pd.DataFrame
    inclusion: pd.DataFrame
    """:attr:`GroupInputs.inclusion` plus ``in_cross_sectional``, ``group_label``,
    ``in_comparisons`` and ``in_clinical``."""
    phenotype: Phenotype
    cross: pd.DataFrame
    """The cross-sectional rows of ``joined`` (one session per participant)."""
    labels: pd.Series
    """``patient``/``control``/NA per row of ``cross``."""
    clinical_rows: np.ndarray
    """Rows of ``cross`` entering the clinical and duration analyses."""
    tables: dict[str, pd.DataFrame]
    """Result tables by key (``demographics``, ``zscores``, ``zscore_models``,
    ``comparisons``, ``clinical``, ``duration``, ``gmtract``, ``interhemispheric`` and the
    :data:`~bids_app.group.seeds.SEED_ANALYSES`); a skipped analysis has no entry. Imaging
    values are in analysis units (:mod:`bids_app.group.primary`)."""
    skipped: dict[str, str]
    """Skipped analysis -> reason."""
    notes: Notes
    profiles: ProfileResults
    """Along-tract profile analyses (``profiles.skipped``: one line when there are none)."""
    sessions: pd.DataFrame
    """Timed participant/session rows of the longitudinal analyses (analysis units; empty
    when there are none): :attr:`bids_app.group.longitudinal.LongitudinalResults.timed`."""
    harmonisation: Harmonisation
    """Site harmonisation (:mod:`bids_app.group.harmonise`); ``values`` feed every analysis
    (``joined`` keeps the values as measured)."""


def _phenotype_files(pheno: Phenotype) -> str:
    return ", ".join(str(p) for p, _ in pheno.tables) or "participants.tsv (missing)"


def check_names(spec: AnalysisSpec, available: set[str], pheno: Phenotype, *,
                notes: Notes) -> AnalysisSpec:
    """Keep the spec's column names that exist; unknown user-given names raise UsageError.

    Names coming from the packaged defaults are dropped with a warning instead (silently for
    ``table1.variables``: Table 1 shows the variables a study has). Without any phenotype file
    nothing can be checked: every analysis needing one is skipped (warning).
    """
    def keep(key: str, names: tuple[str, ...], *, quiet: bool = False) -> tuple[str, ...]:
        missing = [n for n in names if n not in available]
        if missing and key in spec.user_keys and pheno.tables:
            raise UsageError(f"{spec.source}: {key} names unknown column(s) {missing} "
                             f"(not in {_phenotype_files(pheno)})")
        if missing and pheno.tables and not quiet:
            notes.warn(f"{key}: column(s) {missing} not in the phenotype data; not used")
        return tuple(n for n in names if n in available)

    group = keep("group_column", (spec.group_column,))
    duration = keep("duration_column", (spec.duration_column,) if spec.duration_column else ())
    table1 = replace(spec.table1, variables=keep("table1.variables", spec.table1.variables,
                                                 quiet=True))
    zscores = replace(spec.zscores, covariates=keep("zscores.covariates", spec.zscores.covariates))
    onset = keep("onset_subgroups.column", (spec.onset_subgroups.column,), quiet=True)
    if not onset:  # the analysis is skipped with this reason
        onset = (spec.onset_subgroups.column,)
    return replace(
        spec, group_column=group[0] if group else "",
        covariates=keep("covariates", spec.covariates),
        clinical_covariates=keep("clinical_covariates", spec.clinical_covariates),
        scores=keep("scores", spec.scores),
        duration_column=duration[0] if duration else None,
        gm_tract=replace(spec.gm_tract, covariates=keep("gm_tract.covariates",
                                                        spec.gm_tract.covariates)),
        table1=table1, zscores=zscores,
        onset_subgroups=replace(spec.onset_subgroups, column=onset[0]))


def analyse(inputs: GroupInputs, *, notes: Notes) -> GroupResults:
    """Run every analysis the data allow; skipped ones are recorded with a reason."""
    spec, joined, catalogue = inputs.spec, inputs.joined, inputs.catalogue
    pheno = inputs.phenotype
    tables: dict[str, pd.DataFrame] = {}
    skipped: dict[str, str] = {}
    analysed, harmonisation = harmonised_joined(joined, catalogue, spec, pheno.dictionary,
                                                notes=notes)
    if harmonisation.skipped:
        skipped["harmonisation"] = harmonisation.skipped
    if harmonisation.effects is not None:
        tables["harmonisation"] = harmonisation.effects
    longitudinal = analyse_longitudinal(to_analysis_units(analysed, catalogue), catalogue,
                                        spec, pheno, notes=notes)
    tables.update(longitudinal.tables)
    skipped.update(longitudinal.skipped)
    cross = to_analysis_units(cross_sectional(analysed, spec.session).reset_index(drop=True),
                              catalogue)
    feats = catalogue[catalogue["metric"].isin(spec.metrics)].reset_index(drop=True)
    # metrics absent altogether were named by warn_unmatched_imaging_names (whole models
    # silently); here: metrics present only with other statistics than the spec's
    for metric, stat in spec.statistics.items():
        if metric in spec.metrics and (catalogue["metric"] == metric).any() \
                and not (feats["metric"] == metric).any():
            notes.warn(f"no participant rows for metric {metric!r} with statistic(s) "
                       f"{', '.join(stat)}")
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
    n_pat, n_con = int((labels == PATIENT).sum()), int((labels == CONTROL).sum())
    grouped = labels.isin([PATIENT, CONTROL]).to_numpy()
    demo, reason = table1(cross[grouped], labels[grouped], spec, dictionary)
    if demo is None:
        skipped["demographics"] = reason
    else:
        tables["demographics"] = demo
    ztables, reason = zscore_tables(cross[grouped], labels[grouped], feats, spec, dictionary,
                                    notes=notes)
    if ztables is None:
        skipped["zscores"] = reason
    else:
        tables["zscores"], tables["zscore_models"] = ztables

    # -- patients vs controls
    if n_pat and n_con:
        rows = labels.isin([PATIENT, CONTROL]).to_numpy()
        sub = cross.loc[rows]
        cov = covariate_frame(sub, spec.covariates, dictionary=dictionary, notes=notes)
        tables["comparisons"] = compare_groups(
            sub[feats["feature"]], feats, (labels[rows] == PATIENT).to_numpy(), cov,
            fdr_alpha=spec.fdr_alpha, normality_alpha=spec.normality_alpha,
            equal_variance_alpha=spec.equal_variance_alpha, min_n=spec.min_n)
    else:
        reason = ("only one group level present" if (n_pat or n_con) else
                  "no participant could be assigned to a group")
        skipped["comparisons"] = reason
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
            skipped[key] = "no usable score column" if not ys else "no imaging features"
            continue
        pairs = pd.DataFrame([{"score": s, **f, "family": f"{s}:{f['metric']}",
                               "y": s, "x": f["feature"]}
                              for s in ys for f in feats.to_dict("records")])
        covs = {s: covariate_frame(clin, [c for c in cov_names if c != s],
                                   dictionary=dictionary, notes=notes) for s in ys}
        table = associations(pd.DataFrame(ys), clin, pairs, covs, fdr_alpha=spec.fdr_alpha,
                             min_n=spec.min_n)
        tables[key] = table.drop(columns=["y", "x", "feature"])

    # -- gray matter vs tract, left vs right
    subsets = {"all": np.ones(len(cross), dtype=bool)}
    if n_pat and n_con:
        subsets.update(patient=(labels == PATIENT).to_numpy(),
                       control=(labels == CONTROL).to_numpy())
    cov = covariate_frame(cross, spec.gm_tract.covariates, dictionary=dictionary, notes=notes)
    table = gm_tract(cross, catalogue, spec.gm_tract, cov, subsets, fdr_alpha=spec.fdr_alpha,
                     min_n=spec.min_n)
    if table.empty:
        skipped["gmtract"] = "no gray-matter/tract feature pair in the data"
    else:
        tables["gmtract"] = table.drop(columns=["y", "x"])
    table = interhemispheric(cross, catalogue, spec.interhemispheric_metrics, subsets,
                             fdr_alpha=spec.fdr_alpha, min_n=spec.min_n)
    if table.empty:
        skipped["interhemispheric"] = "no region with both a left and a right value"
    else:
        tables["interhemispheric"] = table
    cohort = Cohort(spec=spec, cross=cross, labels=labels, catalogue=catalogue, feats=feats,
                    clinical_rows=clin_rows, dictionary=dictionary, notes=notes)
    for key, analysis in SEED_ANALYSES.items():
        result = analysis(cohort)
        if isinstance(result, str):
            skipped[key] = result
        else:
            tables[key] = result
    for key in PRIMARY_FAMILIES:
        if key in tables:
            tables[key] = mark_primary(tables[key], key, spec.primary, alpha=spec.fdr_alpha)
    profile_data = inputs.profiles
    harmonised = harmonise_profiles(profile_data.values, profile_data.files[KEYS], joined,
                                    harmonisation, notes=notes)
    if harmonised is not None:
        profile_data = with_profile_values(profile_data, harmonised)
    profiles = analyse_profiles(profile_units(profile_data), cross, labels, clin_rows,
                                spec, dictionary=dictionary, notes=notes)
    return GroupResults(
        spec=spec, joined=joined, catalogue=catalogue, phenotype=pheno, cross=cross,
        labels=labels, clinical_rows=clin_rows, tables=tables, skipped=skipped, notes=notes,
        inclusion=with_profile_inclusion(
            included(inputs.inclusion, cross, labels, clin_rows, tables), profiles),
        profiles=profiles, harmonisation=harmonisation, sessions=longitudinal.timed)


def profile_units(data: ProfileData) -> ProfileData:
    """The profiles in analysis units (:data:`bids_app.group.primary.ANALYSIS_SCALE`)."""
    if not len(data.catalogue):
        return data
    factor = data.catalogue["metric"].map(
        lambda m: ANALYSIS_SCALE[m][0] if m in ANALYSIS_SCALE else 1.0).to_numpy(dtype=float)
    return replace(data, values=data.values * factor[None, :, None])


def included(incl: pd.DataFrame, cross: pd.DataFrame, labels: pd.Series,
             clinical_rows: np.ndarray, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Add to the inclusion table who entered the cross-sectional, group and clinical analyses.

    Parameters
    ----------
    incl
        :func:`bids_app.group.phenotype.inclusion` (``participant_id``, ``session_id``, ...).
    cross, labels, clinical_rows
        Cross-sectional rows, their group labels and the rows of the clinical analyses.
    tables
        Result tables (an analysis without a table entered nobody).
    """
    incl = incl.copy()
    by_id = pd.Series(labels.to_numpy(), index=cross["participant_id"].to_numpy())
    key = incl["participant_id"] + "|" + incl["session_id"]
    cross_key = set(cross["participant_id"] + "|" + cross["session_id"])
    incl["in_cross_sectional"] = key.isin(cross_key)
    incl["group_label"] = incl["participant_id"].map(by_id).where(incl["in_cross_sectional"])
    incl["in_comparisons"] = ("comparisons" in tables) & incl["group_label"].isin(
        [PATIENT, CONTROL])
    clinical_ids = set(cross.loc[clinical_rows, "participant_id"])
    incl["in_clinical"] = ("clinical" in tables) & incl["in_cross_sectional"] & \
        incl["participant_id"].isin(clinical_ids)
    z_ids = set(tables["zscores"].loc[tables["zscores"]["n_zscores"] > 0, "participant_id"]) \
        if "zscores" in tables else set()
    incl["in_zscores"] = incl["in_cross_sectional"] & incl["participant_id"].isin(z_ids)
    return incl


def load_inputs(settings: Settings, *, notes: Notes) -> GroupInputs:
    """Resolve the spec, read and join the participant tables and the phenotype files."""
    ex = settings.execution
    aliases = load_aliases()
    spec = canonical_spec(load_spec(settings.group.analysis_spec, overrides=settings.group),
                          aliases)
    files = select_outputs(find_participant_outputs(ex.output_dir), ex.output_dir,
                           participants=ex.participant_label, sessions=ex.session_label)
    wide, catalogue, missing = load_metrics(files, spec.statistics, notes=notes)
    LOGGER.info("group: %d participant(s), %d session row(s), %d feature(s)",
                wide["participant_id"].nunique(), len(wide), len(catalogue))
    pheno = load_phenotype(ex.bids_dir, aliases, notes=notes)
    if ex.participant_label:  # the others' phenotype rows are not part of this analysis
        ids = set(files["participant_id"])
        pheno = replace(pheno, tables=[(path, table[table["participant_id"].isin(ids)])
                                       for path, table in pheno.tables],
                        issues=pheno.issues[pheno.issues["participant_id"].isin(ids)])
    joined = join(wide, pheno, notes=notes)
    spec = check_names(spec, set(joined.columns), pheno, notes=notes)
    spec = replace(spec, side_scores=replace(spec.side_scores, columns=discover_side_columns(
        list(joined.columns), spec, aliases, notes=notes)))
    warn_unmatched_imaging_names(spec, catalogue, notes=notes)
    profiles = load_profiles(ex.output_dir, files, spec.profiles, notes=notes)
    return GroupInputs(spec=spec, joined=joined, catalogue=catalogue,
                       inclusion=inclusion(wide, pheno, missing, notes=notes), phenotype=pheno,
                       profiles=profiles)


def run_group(settings: Settings) -> GroupResults:
    """Run the group-level analyses (nothing is written).

    Parameters
    ----------
    settings
        :class:`bids_app.settings.Settings` (``execution.bids_dir``, ``execution.output_dir``
        and ``group`` are used).

    Returns
    -------
    GroupResults
        Input of :func:`bids_app.reports.group.write_outputs`.

    Raises
    ------
    NoDataError
        No participant outputs under the output directory.
    UsageError
        Malformed analysis spec, or a user-given column name not in the phenotype data.
    """
    notes = Notes()
    return analyse(load_inputs(settings, notes=notes), notes=notes)
