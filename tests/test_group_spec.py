"""Analysis spec loading (safe YAML, validation, overrides) and the alias table."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from bids_app.errors import EXIT_USAGE, UsageError
from bids_app.group import spec as spec_module
from bids_app.group.spec import (
    AnalysisSpec,
    GmTractSpec,
    canonical_spec,
    load_aliases,
    load_spec,
    normalise,
)
from bids_app.settings import GroupSettings


def test_default_spec_has_als_defaults():
    spec = load_spec()
    assert spec.group_column == "group" and spec.fdr_alpha == 0.05
    assert {"alsfrs_r", "mrc_sum", "fvc", "cmap_z_sum", "penn_score", "munix", "musix",
            "dynamometry"} == set(spec.scores)
    assert spec.statistics["fa"] == ("wmean", "bundle")
    assert spec.statistics["gmv_pct_tiv"] == ("ratio",)
    assert ("precentral", "cst") in spec.gm_tract.all_pairs   # the GM x tract matrix
    assert len(spec.gm_tract.gm_regions) == 6 and len(spec.gm_tract.tracts) == 3
    assert spec.user_keys == frozenset()


def test_cli_overrides_win_and_are_user_keys(tmp_path):
    user = tmp_path / "spec.yaml"
    user.write_text("scores: [fvc]\nfdr_alpha: 0.1\n")
    spec = load_spec(user, overrides=GroupSettings(
        group_column="diagnosis", patient_label="pALS", covariates=("age",), fdr_alpha=0.01))
    assert spec.scores == ("fvc",) and spec.fdr_alpha == 0.01
    assert spec.group_column == "diagnosis" and spec.patient_label == ("pALS",)
    assert spec.covariates == spec.gm_tract.covariates == ("age",)
    assert spec.clinical_covariates == load_spec().clinical_covariates   # not overridden
    assert {"scores", "fdr_alpha", "group_column", "covariates",
            "gm_tract.covariates"} <= spec.user_keys
    assert "clinical_covariates" not in spec.user_keys
    assert str(user) in spec.source


def test_clinical_covariates_override_sets_only_clinical_models():
    default = load_spec()
    assert "disease_duration" in default.clinical_covariates
    spec = load_spec(overrides=GroupSettings(clinical_covariates=("age",)))
    assert spec.clinical_covariates == ("age",)
    assert spec.covariates == default.covariates
    assert spec.gm_tract == default.gm_tract
    assert spec.user_keys == frozenset({"clinical_covariates"})
    unadjusted = load_spec(overrides=GroupSettings(covariates=(), clinical_covariates=()))
    assert unadjusted.covariates == unadjusted.clinical_covariates == ()
    assert unadjusted.gm_tract.covariates == ()


def test_spec_dataclasses_have_no_defaults():
    """The packaged YAML is the only place a group default is written."""
    for klass in (AnalysisSpec, GmTractSpec):
        for f in fields(klass):
            assert f.default is MISSING and f.default_factory is MISSING, (klass, f.name)


def _packaged_copy(tmp_path: Path, monkeypatch, old: str, new: str) -> Path:
    text = spec_module.packaged_spec_path().read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "analysis_spec.yaml"
    path.write_text(text.replace(old, new))
    monkeypatch.setattr(spec_module, "packaged_spec_path", lambda: path)
    return path


def test_changed_packaged_default_is_loaded(tmp_path, monkeypatch):
    _packaged_copy(tmp_path, monkeypatch, "  gm_metric: gmv_pct_tiv\n", "  gm_metric: gmv\n")
    user = tmp_path / "user.yaml"
    user.write_text("gm_tract: {pairs: [{gm: precentral, tract: cst}]}\n")
    spec = load_spec(user)
    assert spec.gm_tract.gm_metric == "gmv"                    # packaged key kept
    assert spec.gm_tract.pairs == (("precentral", "cst"),)     # user key merged over it
    assert spec.gm_tract.covariates == ("age", "sex")
    assert spec.user_keys == frozenset({"gm_tract.pairs"})


def test_packaged_spec_missing_a_key_is_an_error(tmp_path, monkeypatch):
    path = _packaged_copy(tmp_path, monkeypatch, "\nmin_n: 3\n", "\n")
    with pytest.raises(UsageError, match=r"lacks key\(s\) \['min_n'\]") as err:
        load_spec()
    assert str(path) in str(err.value)
    _packaged_copy(tmp_path, monkeypatch, "  tract_metric: fa\n", "")
    with pytest.raises(UsageError, match="gm_tract.tract_metric"):
        load_spec()


@pytest.mark.parametrize("text, message", [
    ("scores: [fvc\n", "malformed YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("scorez: [fvc]\n", "unknown key"),
    ("fdr_alpha: 2\n", "fdr_alpha"),
    ("scores: {a: 1}\n", "scores"),
    ("session: middle\n", "session"),
    ("gm_tract: {pairs: [{gm: precentral}]}\n", "gm_tract pair"),
    ("covariates: !!python/object/apply:os.system ['echo pwned']\n", "malformed YAML"),
])
def test_malformed_specs_raise_usage_error_naming_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value) and err.value.exit_code == EXIT_USAGE == 64


def test_aliases_normalise_spellings():
    aliases = load_aliases()
    for spelling in ("ALSFRS-R", "alsfrs_r", "alsfrsr", "ALSFRS R", "ALSFRS-R total"):
        assert aliases.canonical(spelling) == "alsfrs_r", spelling
    assert aliases.canonical("CMAP Z sum score") == "cmap_z_sum"
    assert aliases.canonical("Diagnosis") == "group"
    assert aliases.canonical("FVC%") == "fvc"
    assert aliases.canonical("not_a_known_column") == "not_a_known_column"
    assert normalise("MRC sum-score") == "mrcsumscore"


def test_spec_names_are_canonicalised(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("scores: [ALSFRS-R, 'MRC sum score']\nduration_column: Disease Duration\n")
    spec = canonical_spec(load_spec(path), load_aliases())
    assert spec.scores == ("alsfrs_r", "mrc_sum") and spec.duration_column == "disease_duration"


def test_alias_conflict_is_rejected(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text("a: [x]\nb: [X]\n")
    with pytest.raises(UsageError, match="maps to both"):
        load_aliases(path)


def test_packaged_files_exist():
    data = Path(__file__).resolve().parents[1] / "bids_app" / "data"
    assert (data / "analysis_spec.yaml").is_file() and (data / "column_aliases.yaml").is_file()


def test_model_names_expand_to_the_declared_maps(tmp_path):
    """A diffusion model's name stands for its declared tract/ROI maps wherever metrics are
    listed; a map named itself wins over its model's statistics."""
    from bids_app.bids.models import DWI_MODELS

    declared = {m: [k for k, v in DWI_MODELS[m].items() if v.level is not None]
                for m in DWI_MODELS}
    spec = load_spec()
    every = [k for m in DWI_MODELS for k in declared[m]]
    assert list(spec.metrics) == [*every, "gmv_pct_tiv"]
    assert list(spec.profiles.metrics) == every
    assert list(spec.longitudinal.metrics) == list(spec.interhemispheric_metrics) == \
        [*every, "gmv_pct_tiv"]
    assert all(spec.statistics[k] == ("wmean", "bundle") for k in every)
    assert spec.primary.tract_metrics == ("fa", "md", "ad", "rd")   # the seeds' hypotheses
    user = tmp_path / "spec.yaml"
    user.write_text("metrics: [dki, fa, mk]\nstatistics: {fa: bundle, tensor: mean}\n")
    spec = load_spec(user)
    assert list(spec.metrics) == [*declared["dki"], "fa"]
    assert spec.statistics["fa"] == ("bundle",) and spec.statistics["md"] == ("mean",)
    assert "mk" not in spec.statistics   # the user's mapping replaces the packaged one
