"""Analysis spec (YAML, safe-loaded) and the column alias table.

The spec is data only: names of columns, labels, thresholds. Nothing in it is evaluated; models
are built from explicit design matrices in :mod:`bids_app.group.stats`. Every default is written
once, in the packaged ``bids_app/data/analysis_spec.yaml``: the dataclasses below have no
default values and the packaged file must set every key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bids_app.errors import UsageError
from bids_app.settings import GroupSettings

DEFAULT_SPEC = "analysis_spec.yaml"
ALIAS_TABLE = "column_aliases.yaml"
SESSION_POLICIES = ("first", "last")
#: Spec versions this module reads.
SPEC_VERSION = 1


def packaged_spec_path() -> Path:
    """The packaged analysis spec: the one place where group defaults are written."""
    return Path(str(resources.files("bids_app.data") / DEFAULT_SPEC))


@dataclass(frozen=True)
class GmTractSpec:
    """Gray-matter vs tract pairs (``gm ~ tract + covariates`` per hemisphere)."""

    gm_metric: str
    tract_metric: str
    covariates: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]


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
            if isinstance(value, GmTractSpec):
                value = {"gm_metric": value.gm_metric, "tract_metric": value.tract_metric,
                         "covariates": list(value.covariates),
                         "pairs": [{"gm": g, "tract": t} for g, t in value.pairs]}
            elif isinstance(value, (ProfileSpec, Table1Spec, ZScoreSpec)):
                value = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in asdict(value).items()}
            elif isinstance(value, (tuple, frozenset)):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


def _names(value: Any, key: str, src: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{src}: '{key}' must be a name or a list of names")
    return tuple(value)


def _number(value: Any, key: str, src: str, *, lo: float, hi: float, integer: bool = False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise UsageError(f"{src}: '{key}' must be {kind} in [{lo}, {hi}], got {value!r}")
    return value


#: Keys of a spec file (every one must be set by the packaged spec).
SPEC_KEYS = frozenset(f.name for f in fields(AnalysisSpec)) - {"source", "user_keys"}
GM_TRACT_KEYS = frozenset(f.name for f in fields(GmTractSpec))
PROFILE_KEYS = frozenset(f.name for f in fields(ProfileSpec))
#: Keys holding a mapping merged key by key (packaged < user < command line) -> its dataclass.
NESTED = {"gm_tract": GmTractSpec, "profiles": ProfileSpec, "table1": Table1Spec,
          "zscores": ZScoreSpec}
NESTED_KEYS = tuple(NESTED)



def _nested_keys(name: str) -> frozenset[str]:
    return frozenset(f.name for f in fields(NESTED[name]))


def _flag(value: Any, key: str, src: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{src}: '{key}' must be true or false, got {value!r}")
    return value


def _section(value: Any, name: str, src: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UsageError(f"{src}: '{name}' must be a mapping")
    unknown = set(value) - _nested_keys(name)
    if unknown:
        raise UsageError(f"{src}: unknown key(s) in '{name}': {sorted(unknown)}")
    return value


def _parse_table1(value: Any, src: str) -> dict[str, Any]:
    """Validate a ``table1`` mapping; return only the keys it sets (merged by the caller)."""
    value = _section(value, "table1", src)
    out: dict[str, Any] = {}
    if "enabled" in value:
        out["enabled"] = _flag(value["enabled"], "table1.enabled", src)
    if "variables" in value:
        out["variables"] = _names(value["variables"] or [], "table1.variables", src)
    if "fisher_min_expected" in value:
        out["fisher_min_expected"] = float(_number(
            value["fisher_min_expected"], "table1.fisher_min_expected", src, lo=0, hi=1e6))
    if "seed" in value:
        out["seed"] = int(_number(value["seed"], "table1.seed", src, lo=0, hi=2**63 - 1,
                                  integer=True))
    return out


def _parse_zscores(value: Any, src: str) -> dict[str, Any]:
    """Validate a ``zscores`` mapping; return only the keys it sets (merged by the caller)."""
    value = _section(value, "zscores", src)
    out: dict[str, Any] = {}
    if "enabled" in value:
        out["enabled"] = _flag(value["enabled"], "zscores.enabled", src)
    if "covariates" in value:
        out["covariates"] = _names(value["covariates"] or [], "zscores.covariates", src)
    if "min_controls" in value:
        out["min_controls"] = int(_number(value["min_controls"], "zscores.min_controls", src,
                                          lo=3, hi=10**6, integer=True))
    return out


def _parse_gm_tract(value: Any, src: str) -> dict[str, Any]:
    """Validate a ``gm_tract`` mapping; return only the keys it sets (merged by the caller)."""
    if not isinstance(value, Mapping):
        raise UsageError(f"{src}: 'gm_tract' must be a mapping")
    unknown = set(value) - GM_TRACT_KEYS
    if unknown:
        raise UsageError(f"{src}: unknown key(s) in 'gm_tract': {sorted(unknown)}")
    out: dict[str, Any] = {}
    for key in ("gm_metric", "tract_metric"):
        if key in value:
            if not isinstance(value[key], str):
                raise UsageError(f"{src}: 'gm_tract.{key}' must be a metric name")
            out[key] = value[key]
    if "covariates" in value:
        out["covariates"] = _names(value["covariates"] or [], "gm_tract.covariates", src)
    if "pairs" in value:
        pairs = []
        for item in value["pairs"] or []:
            if not (isinstance(item, Mapping) and set(item) == {"gm", "tract"}
                    and all(isinstance(v, str) for v in item.values())):
                raise UsageError(
                    f"{src}: each gm_tract pair must be {{gm: REGION, tract: REGION}}")
            pairs.append((item["gm"], item["tract"]))
        out["pairs"] = tuple(pairs)
    return out


def _parse_profiles(value: Any, src: str) -> dict[str, Any]:
    """Validate a ``profiles`` mapping; return only the keys it sets (merged by the caller)."""
    if not isinstance(value, Mapping):
        raise UsageError(f"{src}: 'profiles' must be a mapping")
    unknown = set(value) - PROFILE_KEYS
    if unknown:
        raise UsageError(f"{src}: unknown key(s) in 'profiles': {sorted(unknown)}")
    out: dict[str, Any] = {}
    if "metrics" in value:
        out["metrics"] = _names(value["metrics"] or [], "profiles.metrics", src)
    if "n_permutations" in value:
        out["n_permutations"] = int(_number(value["n_permutations"], "profiles.n_permutations",
                                            src, lo=1, hi=10**7, integer=True))
    if "seed" in value:
        out["seed"] = int(_number(value["seed"], "profiles.seed", src, lo=0, hi=2**63 - 1,
                                  integer=True))
    if "fwe_alpha" in value:
        out["fwe_alpha"] = float(_number(value["fwe_alpha"], "profiles.fwe_alpha", src,
                                         lo=1e-12, hi=1.0))
    return out


def _parse(raw: Mapping[str, Any], src: str) -> dict[str, Any]:
    """Validate one YAML mapping; return AnalysisSpec keyword arguments.

    The nested sections (:data:`NESTED_KEYS`) stay dictionaries of the keys given (see
    :func:`_parse_gm_tract`, :func:`_parse_profiles`, :func:`_parse_table1`,
    :func:`_parse_zscores`).
    """
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise UsageError(f"{src}: unknown key(s) {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("patient_label", "control_label", "covariates", "clinical_covariates",
                   "scores", "metrics", "interhemispheric_metrics"):
            out[key] = _names([] if value is None else value, key, src)
        elif key in ("group_column", "duration_column"):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{src}: '{key}' must be a column name")
            out[key] = value
        elif key in ("fdr_alpha", "normality_alpha", "equal_variance_alpha"):
            out[key] = float(_number(value, key, src, lo=1e-12, hi=1.0))
        elif key in ("min_n", "max_figure_panels", "version"):
            out[key] = int(_number(value, key, src, lo=1, hi=10**6, integer=True))
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
        elif key == "gm_tract":
            out[key] = _parse_gm_tract(value, src)
        elif key == "profiles":
            out[key] = _parse_profiles(value, src)
        elif key == "table1":
            out[key] = _parse_table1(value, src)
        elif key == "zscores":
            out[key] = _parse_zscores(value, src)
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
        cli["fdr_alpha"] = float(_number(overrides.fdr_alpha, "fdr_alpha", "--fdr-alpha",
                                         lo=1e-12, hi=1.0))
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
        the clinical and duration regressions.

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
        for alias in (canonical, *_names(aliases or [], canonical, str(path))):
            key = normalise(alias)
            if lookup.get(key, canonical) != canonical:
                raise UsageError(f"{path}: alias {alias!r} maps to both {lookup[key]!r} "
                                 f"and {canonical!r}")
            lookup[key] = canonical
    return AliasTable(lookup=lookup)


def canonical_spec(spec: AnalysisSpec, aliases: AliasTable) -> AnalysisSpec:
    """Rewrite every column name of ``spec`` to its canonical spelling."""
    def many(names: Iterable[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(aliases.canonical(n) for n in names))

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
    )
