"""The nested sections of the analysis spec: one frozen dataclass and one field schema each.

A section is a mapping merged key by key (packaged defaults < user spec < command line). Its
schema (:data:`SECTIONS`) names the parser of every key; :func:`parse_section` validates a
mapping against it. No default is written here: the packaged ``analysis_spec.yaml`` sets every
key (see :mod:`bids_app.group.spec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bids_app.bids.outputs import DWI_MODELS, summarised_maps
from bids_app.errors import UsageError

HEMISPHERES = ("L", "R")


# --------------------------------------------------------------------------- value parsers
def names(value: Any, key: str, src: str) -> tuple[str, ...]:
    """A name or a list of names (``None`` -> empty)."""
    value = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{src}: '{key}' must be a name or a list of names")
    return tuple(value)


def metric_names(value: Any, key: str, src: str) -> tuple[str, ...]:
    """Metric names; a diffusion model's name (``tensor``, ``dki``, ``fwdti``: the
    declarations of :data:`~bids_app.bids.models.DWI_MODELS`) stands for every map of it
    that enters the tract/ROI tables, in declaration order (duplicates dropped)."""
    out: list[str] = []
    for item in names(value, key, src):
        out.extend(summarised_maps(item) if item in DWI_MODELS else (item,))
    return tuple(dict.fromkeys(out))


def absent_models(missing: set[str]) -> tuple[list[str], list[str]]:
    """Split metric names absent from the data into the diffusion models none of whose
    summarised maps is present (the acquisition did not allow the model: the participant
    level logged why) and the remaining names."""
    models = [m for m in DWI_MODELS if summarised_maps(m) and set(summarised_maps(m)) <= missing]
    covered = {metric for m in models for metric in summarised_maps(m)}
    return models, sorted(missing - covered)


def number(value: Any, key: str, src: str, *, lo: float, hi: float, integer: bool = False):
    """A number (an integer with ``integer``) within ``[lo, hi]``; booleans refused."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise UsageError(f"{src}: '{key}' must be {kind} in [{lo}, {hi}], got {value!r}")
    return value


def flag(value: Any, key: str, src: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise UsageError(f"{src}: '{key}' must be true or false, got {value!r}")
    return value


def name(value: Any, key: str, src: str) -> str:
    """One name."""
    if not isinstance(value, str):
        raise UsageError(f"{src}: '{key}' must be a name, got {value!r}")
    return value


def _integer(lo: float, hi: float) -> Callable[[Any, str, str], int]:
    return lambda v, k, s: int(number(v, k, s, lo=lo, hi=hi, integer=True))


def _real(lo: float, hi: float) -> Callable[[Any, str, str], float]:
    return lambda v, k, s: float(number(v, k, s, lo=lo, hi=hi))


def _records(keys: tuple[str, ...], shape: str) -> Callable[[Any, str, str], tuple]:
    """A list of mappings with exactly ``keys`` (names) -> tuple of value tuples."""
    def parse(value: Any, key: str, src: str) -> tuple[tuple[str, ...], ...]:
        out = []
        for item in value or []:
            if not (isinstance(item, Mapping) and set(item) == set(keys)
                    and all(isinstance(v, str) for v in item.values())):
                raise UsageError(f"{src}: each {key} entry must be {shape}")
            out.append(tuple(item[k] for k in keys))
        return tuple(out)
    return parse


def levels(value: Any, key: str, src: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Mapping ``subgroup: [value spellings]`` -> ordered tuple of pairs."""
    if not isinstance(value, Mapping) or not value:
        raise UsageError(f"{src}: '{key}' must map each subgroup name to its value spellings")
    return tuple((name(k, key, src), names(v, f"{key}.{k}", src)) for k, v in value.items())


# --------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class GmTractSpec:
    """Gray-matter vs tract pairs (``gm ~ tract + covariates`` per hemisphere)."""

    gm_metric: str
    tract_metric: str
    covariates: tuple[str, ...]
    gm_regions: tuple[str, ...]
    """With ``tracts``: the full matrix, every region with every tract."""
    tracts: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    """Further (gm, tract) pairs beyond the matrix."""

    @property
    def all_pairs(self) -> tuple[tuple[str, str], ...]:
        """The matrix (gm-major order) then the further pairs, without repeats."""
        matrix = [(g, t) for g in self.gm_regions for t in self.tracts]
        return tuple(dict.fromkeys([*matrix, *self.pairs]))


@dataclass(frozen=True)
class ProfileSpec:
    """Along-tract profile analyses (pointwise models, permutation FWE along each profile)."""

    metrics: tuple[str, ...]
    n_permutations: int
    seed: int
    fwe_alpha: float


@dataclass(frozen=True)
class Table1Spec:
    """Demographic and clinical characteristics per group (Table 1)."""

    enabled: bool
    variables: tuple[str, ...]
    """Phenotype columns summarised, in this order; the spec's ``scores`` follow."""
    fisher_min_expected: float
    """Fisher's exact test instead of chi-square when any expected count is below this."""
    seed: int
    """Seed of the Monte Carlo p of Fisher's test on tables larger than 2 x 2."""


@dataclass(frozen=True)
class ZScoreSpec:
    """Covariate-adjusted z-scores of every participant against the controls."""

    enabled: bool
    covariates: tuple[str, ...]
    min_controls: int
    """Fewer controls with complete covariates: the analysis is refused (skipped)."""


@dataclass(frozen=True)
class PrimarySpec:
    """The seeds' hypotheses: the features of the primary family (its own BH-FDR)."""

    tracts: tuple[str, ...]
    tract_metrics: tuple[str, ...]
    gm_regions: tuple[str, ...]
    gm_metrics: tuple[str, ...]

    def is_primary(self, region: str, metric: str) -> bool:
        """Whether a feature (region, metric) belongs to the primary family."""
        return (region in self.tracts and metric in self.tract_metrics) or \
            (region in self.gm_regions and metric in self.gm_metrics)


@dataclass(frozen=True)
class SideScoreSpec:
    """Per-side scores against the contralateral and ipsilateral hemisphere's tracts."""

    enabled: bool
    scores: tuple[str, ...]
    """Canonical scores whose per-side columns are discovered (``<alias><side word>``)."""
    left_words: tuple[str, ...]
    right_words: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...]
    """Declared (score, left column, right column); they win over discovered ones."""
    tracts: tuple[str, ...]
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class OnsetSpec:
    """Onset-site subgroups of the patients, each against the controls."""

    enabled: bool
    column: str
    subgroups: tuple[tuple[str, tuple[str, ...]], ...]
    """(subgroup, value spellings), case-insensitive."""


@dataclass(frozen=True)
class TractCorrelationSpec:
    """Correlations between tracts (tract x tract matrix of one metric)."""

    enabled: bool
    metric: str
    regions: tuple[str, ...]


@dataclass(frozen=True)
class DurationScatterSpec:
    """Disease duration vs DTI scatter plots, drawn whatever their significance."""

    enabled: bool
    metrics: tuple[str, ...]
    regions: tuple[str, ...]


@dataclass(frozen=True)
class HarmonizeSpec:
    """Site harmonisation of the imaging features (ComBat, fitted on the controls)."""

    enabled: bool
    column: str
    """Site/scanner column (participants.tsv or sessions.tsv, through the alias table)."""
    covariates: tuple[str, ...]
    """Biological covariates whose effects the harmonisation preserves."""
    empirical_bayes: bool
    min_controls_per_site: int
    """A site with fewer controls: harmonisation is refused (skipped, one line)."""


@dataclass(frozen=True)
class LongitudinalSpec:
    """Change over sessions: annualised change, mixed models, imaging vs score change."""

    enabled: bool
    time_columns: tuple[str, ...]
    """Per-session time sources in order of preference (acquisition time, age)."""
    covariates: tuple[str, ...]
    """Covariates of the mixed models, taken from each participant's first session."""
    metrics: tuple[str, ...]
    progression_score: str
    random_slope_min_sessions: int


#: Section name -> (dataclass, {key: parser(value, key, src)}).
SECTIONS: dict[str, tuple[type, dict[str, Callable[[Any, str, str], Any]]]] = {
    "gm_tract": (GmTractSpec, {
        "gm_metric": name, "tract_metric": name, "covariates": names, "gm_regions": names,
        "tracts": names,
        "pairs": _records(("gm", "tract"), "{gm: REGION, tract: REGION} (gm_tract pair)")}),
    "profiles": (ProfileSpec, {
        "metrics": metric_names, "n_permutations": _integer(1, 10**7),
        "seed": _integer(0, 2**63 - 1), "fwe_alpha": _real(1e-12, 1.0)}),
    "table1": (Table1Spec, {
        "enabled": flag, "variables": names, "fisher_min_expected": _real(0, 1e6),
        "seed": _integer(0, 2**63 - 1)}),
    "zscores": (ZScoreSpec, {
        "enabled": flag, "covariates": names, "min_controls": _integer(3, 10**6)}),
    "primary": (PrimarySpec, {
        "tracts": names, "tract_metrics": metric_names, "gm_regions": names, "gm_metrics": names}),
    "side_scores": (SideScoreSpec, {
        "enabled": flag, "scores": names, "left_words": names, "right_words": names,
        "columns": _records(("score", "left", "right"), "{score: NAME, left: COLUMN, "
                                                        "right: COLUMN}"),
        "tracts": names, "metrics": metric_names}),
    "onset_subgroups": (OnsetSpec, {"enabled": flag, "column": name, "subgroups": levels}),
    "tract_correlations": (TractCorrelationSpec, {
        "enabled": flag, "metric": name, "regions": names}),
    "duration_scatter": (DurationScatterSpec, {
        "enabled": flag, "metrics": metric_names, "regions": names}),
    "harmonize": (HarmonizeSpec, {
        "enabled": flag, "column": name, "covariates": names, "empirical_bayes": flag,
        "min_controls_per_site": _integer(2, 10**6)}),
    "longitudinal": (LongitudinalSpec, {
        "enabled": flag, "time_columns": names, "covariates": names, "metrics": metric_names,
        "progression_score": name, "random_slope_min_sessions": _integer(3, 10**6)}),
}
SECTION_CLASSES = tuple(klass for klass, _ in SECTIONS.values())


def section_keys(section: str) -> frozenset[str]:
    """The keys of one section (its dataclass fields)."""
    return frozenset(f.name for f in fields(SECTIONS[section][0]))


def parse_section(value: Any, section: str, src: str) -> dict[str, Any]:
    """Validate one section mapping; return only the keys it sets (merged by the caller)."""
    if not isinstance(value, Mapping):
        raise UsageError(f"{src}: '{section}' must be a mapping")
    unknown = set(value) - section_keys(section)
    if unknown:
        raise UsageError(f"{src}: unknown key(s) in '{section}': {sorted(unknown)}")
    parsers = SECTIONS[section][1]
    return {key: parsers[key](item, f"{section}.{key}", src) for key, item in value.items()}


def section_dict(value: Any) -> dict[str, Any]:
    """Plain dictionary of a section (for the resolved-spec record)."""
    out: dict[str, Any] = {}
    for f in fields(value):
        item = getattr(value, f.name)
        if f.name == "pairs":
            item = [{"gm": g, "tract": t} for g, t in item]
        elif f.name == "columns":
            item = [{"score": s, "left": left, "right": right} for s, left, right in item]
        elif f.name == "subgroups":
            item = {k: list(v) for k, v in item}
        elif isinstance(item, tuple):
            item = list(item)
        out[f.name] = item
    return out
