"""Analysis spec (YAML, safe-loaded) and the column alias table.

The spec is data only: names of columns, labels, thresholds. Nothing in it is evaluated; models
are built from explicit design matrices in :mod:`bids_app.group.stats`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bids_app.errors import UsageError

DEFAULT_SPEC = "analysis_spec.yaml"
ALIAS_TABLE = "column_aliases.yaml"
SESSION_POLICIES = ("first", "last")


@dataclass(frozen=True)
class GmTractSpec:
    """Gray-matter vs tract pairs (``gm ~ tract + covariates`` per hemisphere)."""

    gm_metric: str = "gmv_pct_tiv"
    tract_metric: str = "fa"
    covariates: tuple[str, ...] = ("age", "sex")
    pairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AnalysisSpec:
    """Resolved group-level analysis spec (defaults < user YAML < command line)."""

    group_column: str = "group"
    patient_label: tuple[str, ...] = ("ALS",)
    control_label: tuple[str, ...] = ("control",)
    covariates: tuple[str, ...] = ()
    clinical_covariates: tuple[str, ...] = ()
    scores: tuple[str, ...] = ()
    duration_column: str | None = None
    fdr_alpha: float = 0.05
    normality_alpha: float = 0.05
    equal_variance_alpha: float = 0.05
    min_n: int = 3
    statistics: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    gm_tract: GmTractSpec = field(default_factory=GmTractSpec)
    interhemispheric_metrics: tuple[str, ...] = ()
    session: str = "first"
    max_figure_panels: int = 8
    version: int = 1
    source: str = "defaults"
    """Files the spec came from (for messages)."""
    user_keys: frozenset[str] = frozenset()
    """Keys set by the user (spec file or command line): their column names must exist."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (for the resolved-spec record)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, GmTractSpec):
                value = {"gm_metric": value.gm_metric, "tract_metric": value.tract_metric,
                         "covariates": list(value.covariates),
                         "pairs": [{"gm": g, "tract": t} for g, t in value.pairs]}
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


def _parse_gm_tract(value: Any, src: str) -> GmTractSpec:
    if not isinstance(value, Mapping):
        raise UsageError(f"{src}: 'gm_tract' must be a mapping")
    unknown = set(value) - {"gm_metric", "tract_metric", "covariates", "pairs"}
    if unknown:
        raise UsageError(f"{src}: unknown key(s) in 'gm_tract': {sorted(unknown)}")
    pairs = []
    for item in value.get("pairs", []) or []:
        if not (isinstance(item, Mapping) and set(item) == {"gm", "tract"}
                and all(isinstance(v, str) for v in item.values())):
            raise UsageError(f"{src}: each gm_tract pair must be {{gm: REGION, tract: REGION}}")
        pairs.append((item["gm"], item["tract"]))
    return GmTractSpec(
        gm_metric=str(value.get("gm_metric", "gmv_pct_tiv")),
        tract_metric=str(value.get("tract_metric", "fa")),
        covariates=_names(value.get("covariates", []) or [], "gm_tract.covariates", src),
        pairs=tuple(pairs),
    )


def _parse(raw: Mapping[str, Any], src: str) -> dict[str, Any]:
    """Validate one YAML mapping; return AnalysisSpec keyword arguments."""
    known = {f.name for f in fields(AnalysisSpec)} - {"source", "user_keys"}
    unknown = set(raw) - known
    if unknown:
        raise UsageError(f"{src}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
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
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise UsageError(f"{src}: 'statistics' must map metric -> statistic")
            out[key] = dict(value)
        elif key == "gm_tract":
            out[key] = _parse_gm_tract(value, src)
        elif key == "session":
            if value not in SESSION_POLICIES:
                raise UsageError(f"{src}: 'session' must be one of {SESSION_POLICIES}")
            out[key] = value
    if out.get("version", 1) != 1:
        raise UsageError(f"{src}: unsupported spec version {out['version']} (expected 1)")
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


def load_spec(path: str | Path | None = None, *, overrides: Any = None) -> AnalysisSpec:
    """Load the default spec, merge a user spec and command-line overrides.

    Parameters
    ----------
    path
        User YAML (``--analysis-spec``) or ``None`` for the packaged defaults only.
    overrides
        A :class:`bids_app.settings.GroupSettings` (or anything with the same attributes);
        ``None`` attributes leave the spec unchanged. ``covariates`` replaces the covariates of
        every model (comparison, clinical, gray-matter vs tract).

    Returns
    -------
    AnalysisSpec

    Raises
    ------
    UsageError
        Malformed YAML, unknown keys or wrongly typed values (message names the file).
    """
    default_path = resources.files("bids_app.data") / DEFAULT_SPEC
    kwargs = _parse(_read_yaml(Path(str(default_path))), str(default_path))
    source = "defaults"
    user_keys: set[str] = set()
    if path is not None:
        path = Path(path)
        user = _parse(_read_yaml(path), str(path))
        kwargs.update(user)
        user_keys |= set(user)
        source = str(path)
    spec = AnalysisSpec(**kwargs, source=source)
    if overrides is not None:
        cli: dict[str, Any] = {}
        if getattr(overrides, "group_column", None) is not None:
            cli["group_column"] = overrides.group_column
        for key in ("patient_label", "control_label"):
            if getattr(overrides, key, None) is not None:
                cli[key] = (getattr(overrides, key),)
        if getattr(overrides, "covariates", None) is not None:
            cov = tuple(overrides.covariates)
            cli["covariates"] = cov
            cli["clinical_covariates"] = cov
            cli["gm_tract"] = replace(spec.gm_tract, covariates=cov)
        if getattr(overrides, "scores", None) is not None:
            cli["scores"] = tuple(overrides.scores)
        if getattr(overrides, "fdr_alpha", None) is not None:
            cli["fdr_alpha"] = float(_number(overrides.fdr_alpha, "fdr_alpha", "--fdr-alpha",
                                             lo=1e-12, hi=1.0))
        user_keys |= set(cli)
        if cli:
            source += " + command line"
        spec = replace(spec, **cli)
    return replace(spec, source=source, user_keys=frozenset(user_keys))


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
    )
