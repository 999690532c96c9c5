"""Analysis spec (YAML, safe-loaded) and the column alias table.

The spec is data only: names of columns, labels, thresholds. Nothing in it is evaluated; models
are built from explicit design matrices in :mod:`bids_app.group.stats`. Every default is written
once, in the packaged ``bids_app/data/analysis_spec.yaml``: the dataclasses below have no
default values and the packaged file must set every key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bids_app.bids.outputs import DWI_MODELS, summarised_maps
from bids_app.errors import UsageError
from bids_app.group.spec_sections import (
    SECTION_CLASSES,
    SECTIONS,
    DurationScatterSpec,
    GmTractSpec,
    HarmonizeSpec,
    LongitudinalSpec,
    OnsetSpec,
    PrimarySpec,
    ProfileSpec,
    SideScoreSpec,
    Table1Spec,
    TractCorrelationSpec,
    ZScoreSpec,
    metric_names,
    names,
    number,
    parse_section,
    section_dict,
    section_keys,
)
from bids_app.settings import GroupSettings

__all__ = ["AliasTable", "AnalysisSpec", "DurationScatterSpec", "GmTractSpec", "HarmonizeSpec",
           "LongitudinalSpec", "OnsetSpec",
           "PrimarySpec", "ProfileSpec", "SideScoreSpec", "Table1Spec", "TractCorrelationSpec",
           "ZScoreSpec", "canonical_spec", "load_aliases", "load_spec", "normalise",
           "packaged_spec_path"]

DEFAULT_SPEC = "analysis_spec.yaml"
ALIAS_TABLE = "column_aliases.yaml"
SESSION_POLICIES = ("first", "last")
#: Spec versions this module reads.
SPEC_VERSION = 1


def packaged_spec_path() -> Path:
    """The packaged analysis spec: the one place where group defaults are written."""
    return Path(str(resources.files("bids_app.data") / DEFAULT_SPEC))


@dataclass(frozen=True)
class AnalysisSpec:
    """Resolved group-level analysis spec (packaged YAML < user YAML < command line).

    Build it with :func:`load_spec`; the meaning of each key is documented in the packaged
    ``analysis_spec.yaml``.
    """

    group_column: str
    patient_label: tuple[str, ...]
    control_label: tuple[str, ...]
    covariates: tuple[str, ...]
    clinical_covariates: tuple[str, ...]
    scores: tuple[str, ...]
    duration_column: str | None
    fdr_alpha: float
    normality_alpha: float
    equal_variance_alpha: float
    min_n: int
    statistics: Mapping[str, tuple[str, ...]]
    metrics: tuple[str, ...]
    gm_tract: GmTractSpec
    interhemispheric_metrics: tuple[str, ...]
    profiles: ProfileSpec
    table1: Table1Spec
    zscores: ZScoreSpec
    primary: PrimarySpec
    side_scores: SideScoreSpec
    onset_subgroups: OnsetSpec
    tract_correlations: TractCorrelationSpec
    duration_scatter: DurationScatterSpec
    harmonize: HarmonizeSpec
    longitudinal: LongitudinalSpec
    session: str
    max_figure_panels: int
    version: int
    source: str
    """Files the spec came from (for messages)."""
    user_keys: frozenset[str]
    """Keys set by the user (spec file or command line): their column names must exist.
    Keys of the nested sections (:data:`NESTED_KEYS`) are recorded as ``<section>.<key>``
    (``gm_tract.covariates``, ``zscores.min_controls``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (for the resolved-spec record)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SECTION_CLASSES):
                value = section_dict(value)
            elif isinstance(value, (tuple, frozenset)):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


#: Keys of a spec file (every one must be set by the packaged spec).
SPEC_KEYS = frozenset(f.name for f in fields(AnalysisSpec)) - {"source", "user_keys"}
#: Keys holding a mapping merged key by key (packaged < user < command line) -> its dataclass.
NESTED = {section: klass for section, (klass, _) in SECTIONS.items()}
NESTED_KEYS = tuple(NESTED)


def _nested_keys(name: str) -> frozenset[str]:
    return section_keys(name)


def _parse(raw: Mapping[str, Any], src: str) -> dict[str, Any]:
    """Validate one YAML mapping; return AnalysisSpec keyword arguments.

    The nested sections (:data:`NESTED_KEYS`) stay dictionaries of the keys given (see
    :func:`bids_app.group.spec_sections.parse_section`).
    """
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise UsageError(f"{src}: unknown key(s) {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("metrics", "interhemispheric_metrics"):
            out[key] = metric_names(value, key, src)
        elif key in ("patient_label", "control_label", "covariates", "clinical_covariates",
                     "scores"):
            out[key] = names([] if value is None else value, key, src)
        elif key in ("group_column", "duration_column"):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{src}: '{key}' must be a column name")
            out[key] = value
        elif key in ("fdr_alpha", "normality_alpha", "equal_variance_alpha"):
            out[key] = float(number(value, key, src, lo=1e-12, hi=1.0))
        elif key in ("min_n", "max_figure_panels", "version"):
            out[key] = int(number(value, key, src, lo=1, hi=10**6, integer=True))
        elif key == "statistics":
            if not isinstance(value, Mapping):
                raise UsageError(f"{src}: 'statistics' must map metric -> statistic(s)")
            out[key] = {}
            for metric, stats in value.items():
                stats = [stats] if isinstance(stats, str) else stats
                if not (isinstance(metric, str) and isinstance(stats, list) and stats
                        and all(isinstance(v, str) for v in stats)):
                    raise UsageError(f"{src}: 'statistics' must map metric -> statistic or "
                                     f"a list of statistics (got {metric!r}: {value[metric]!r})")
                out[key][metric] = tuple(stats)
            # a model's name sets its maps' statistics; a map named itself wins
            out[key] = {**{m: out[key][model] for model in out[key] if model in DWI_MODELS
                           for m in summarised_maps(model)},
                        **{m: v for m, v in out[key].items() if m not in DWI_MODELS}}
        elif key in NESTED:
            out[key] = parse_section(value, key, src)
        elif key == "session":
            if value not in SESSION_POLICIES:
                raise UsageError(f"{src}: 'session' must be one of {SESSION_POLICIES}")
            out[key] = value
    if "version" in out and out["version"] != SPEC_VERSION:
        raise UsageError(f"{src}: unsupported spec version {out['version']} "
                         f"(expected {SPEC_VERSION})")
    return out


def _read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read analysis spec ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise UsageError(f"{path}: an analysis spec must be a YAML mapping")
    return raw


def _complete(kwargs: dict[str, Any], src: str) -> None:
    """The packaged spec is the only source of defaults: it must set every key."""
    missing = sorted(SPEC_KEYS - set(kwargs))
    for name in NESTED_KEYS:
        missing += sorted(f"{name}.{k}" for k in _nested_keys(name) - set(kwargs.get(name, {})))
    if missing:
        raise UsageError(f"{src}: packaged analysis spec lacks key(s) {missing}")


def _keys(layer: Mapping[str, Any]) -> set[str]:
    """Keys a layer sets (``<section>.<key>`` inside the nested sections)."""
    return (set(layer) - set(NESTED_KEYS)) | {f"{nested}.{k}" for nested in NESTED_KEYS
                                              for k in layer.get(nested, {})}


def _merge(kwargs: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``layer`` over ``kwargs``: key by key, and inside the nested sections key by key."""
    return {**kwargs, **layer, **{nested: {**kwargs[nested], **layer.get(nested, {})}
                                  for nested in NESTED_KEYS}}


def _cli_overrides(overrides: GroupSettings) -> dict[str, Any]:
    """Spec keys set on the command line (``None`` settings leave the spec unchanged)."""
    cli: dict[str, Any] = {}
    if overrides.group_column is not None:
        cli["group_column"] = overrides.group_column
    for key in ("patient_label", "control_label"):
        if getattr(overrides, key) is not None:
            cli[key] = (getattr(overrides, key),)
    if overrides.covariates is not None:
        cli["covariates"] = tuple(overrides.covariates)
        cli["gm_tract"] = {"covariates": tuple(overrides.covariates)}
    if overrides.clinical_covariates is not None:
        cli["clinical_covariates"] = tuple(overrides.clinical_covariates)
    if overrides.scores is not None:
        cli["scores"] = tuple(overrides.scores)
    if overrides.fdr_alpha is not None:
        cli["fdr_alpha"] = float(number(overrides.fdr_alpha, "fdr_alpha", "--fdr-alpha",
                                         lo=1e-12, hi=1.0))
    if overrides.harmonize is not None:
        cli["harmonize"] = {"enabled": bool(overrides.harmonize)}
    return cli


def load_spec(path: str | Path | None = None, *,
              overrides: GroupSettings | None = None) -> AnalysisSpec:
    """Load the packaged spec, merge a user spec and command-line overrides.

    Parameters
    ----------
    path
        User YAML (``--analysis-spec``) or ``None`` for the packaged defaults only. Its keys
        replace the packaged ones; inside ``gm_tract`` and ``profiles`` key by key.
    overrides
        Command-line options; ``None`` attributes leave the spec unchanged. ``covariates``
        sets the covariates of the patient-control comparison and of the gray-matter vs tract
        models (``covariates`` and ``gm_tract.covariates``); ``clinical_covariates`` those of
        the clinical and duration regressions; ``harmonize`` sets ``harmonize.enabled``.

    Returns
    -------
    AnalysisSpec

    Raises
    ------
    UsageError
        Malformed YAML, unknown or missing keys, wrongly typed values (message names the file).
    """
    default_path = packaged_spec_path()
    kwargs = _parse(_read_yaml(default_path), str(default_path))
    _complete(kwargs, str(default_path))
    source = "defaults"
    user_keys: set[str] = set()
    if path is not None:
        path = Path(path)
        user = _parse(_read_yaml(path), str(path))
        kwargs, user_keys, source = _merge(kwargs, user), user_keys | _keys(user), str(path)
    cli = _cli_overrides(overrides) if overrides is not None else {}
    if cli:
        kwargs, user_keys = _merge(kwargs, cli), user_keys | _keys(cli)
        source += " + command line"
    return AnalysisSpec(**{**kwargs, **{name: klass(**kwargs[name])
                                        for name, klass in NESTED.items()}},
                        source=source, user_keys=frozenset(user_keys))


# --------------------------------------------------------------------------- aliases
def normalise(name: str) -> str:
    """Key used to compare column names: lowercase letters and digits only.

    >>> normalise("ALSFRS-R")
    'alsfrsr'
    """
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


@dataclass(frozen=True)
class AliasTable:
    """Map any known spelling of a column to its canonical name."""

    lookup: Mapping[str, str]

    def canonical(self, name: str) -> str:
        """Canonical name for ``name`` (``name`` itself when no alias matches)."""
        return self.lookup.get(normalise(name), name)


def load_aliases(path: str | Path | None = None) -> AliasTable:
    """Read the alias table (``bids_app/data/column_aliases.yaml`` by default)."""
    path = Path(str(resources.files("bids_app.data") / ALIAS_TABLE)) if path is None else path
    raw = _read_yaml(Path(path))
    lookup: dict[str, str] = {}
    for canonical, aliases in raw.items():
        for alias in (canonical, *names(aliases or [], canonical, str(path))):
            key = normalise(alias)
            if lookup.get(key, canonical) != canonical:
                raise UsageError(f"{path}: alias {alias!r} maps to both {lookup[key]!r} "
                                 f"and {canonical!r}")
            lookup[key] = canonical
    return AliasTable(lookup=lookup)


def canonical_spec(spec: AnalysisSpec, aliases: AliasTable) -> AnalysisSpec:
    """Rewrite every column name of ``spec`` to its canonical spelling."""
    def many(items: Iterable[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(aliases.canonical(n) for n in items))

    return replace(
        spec,
        group_column=aliases.canonical(spec.group_column),
        covariates=many(spec.covariates),
        clinical_covariates=many(spec.clinical_covariates),
        scores=many(spec.scores),
        duration_column=(aliases.canonical(spec.duration_column)
                         if spec.duration_column else None),
        gm_tract=replace(spec.gm_tract, covariates=many(spec.gm_tract.covariates)),
        table1=replace(spec.table1, variables=many(spec.table1.variables)),
        zscores=replace(spec.zscores, covariates=many(spec.zscores.covariates)),
        side_scores=replace(spec.side_scores, scores=many(spec.side_scores.scores)),
        onset_subgroups=replace(spec.onset_subgroups,
                                column=aliases.canonical(spec.onset_subgroups.column)),
        harmonize=replace(spec.harmonize, column=aliases.canonical(spec.harmonize.column),
                          covariates=many(spec.harmonize.covariates)),
        longitudinal=replace(spec.longitudinal,
                             time_columns=many(spec.longitudinal.time_columns),
                             covariates=many(spec.longitudinal.covariates),
                             progression_score=aliases.canonical(
                                 spec.longitudinal.progression_score)),
    )
