"""Per-value missingness in participants.tsv, sessions.tsv and phenotype/*.tsv."""

from __future__ import annotations

from dataclasses import MISSING, fields

import numpy as np
import pandas as pd
import pytest
from synthetic_group import simulate_table, write_cohort

from bids_app.errors import BadDataError, UsageError
from bids_app.group import spec as spec_module
from bids_app.group.columns import OUTPUTS
from bids_app.group.notes import Notes
from bids_app.group.phenotype import load_phenotype
from bids_app.group.run import run_group
from bids_app.group.spec import Table1Spec, ZScoreSpec, load_aliases, load_spec
from bids_app.group.values import column_kind, read_number, type_column
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

FAST = "metrics: [fa]\nscores: [alsfrs_r, cmap_z_sum, fvc]\ninterhemispheric_metrics: [fa]\n"


@pytest.mark.parametrize("text, value, reason", [
    ("12.5", 12.5, None), (" 7 ", 7.0, None), ("-3e-2", -0.03, None),
    ("12,5", 12.5, "decimal comma read as 12.5"), ("0,123", 0.123, "decimal comma read as 0.123"),
    ("1234,5", 1234.5, "decimal comma read as 1234.5"),
    ("1,234", np.nan, "ambiguous: decimal comma or thousands separator"),
    ("unknown", np.nan, "missing marker"), ("N/a", np.nan, "missing marker"),
    ("n.a.", np.nan, "missing marker"), ("89+", np.nan, "not a number"),
    ("12.5 mm", np.nan, "not a number"), ("inf", np.nan, "not a number")])
def test_read_number(text, value, reason):
    got, why = read_number(text)
    assert (np.isnan(got) and np.isnan(value)) or got == value
    assert why == reason


def test_column_kind_and_typing():
    numbers = pd.Series(["1", "2", "unknown", "12,5", "x", np.nan])
    assert column_kind(numbers, levels=False) == "numeric"
    typed, issues = type_column(numbers, "score", levels=False)
    np.testing.assert_array_equal(typed.to_numpy(), [1, 2, np.nan, 12.5, np.nan, np.nan])
    assert [(i.row, i.value, i.action) for i in issues] == [
        (2, "unknown", "missing"), (3, "12,5", "decimal comma"), (4, "x", "missing")]
    sex = pd.Series(["M", "F", "Unknown", np.nan])
    assert column_kind(sex, levels=False) == "categorical"
    typed, issues = type_column(sex, "sex", levels=False)
    assert typed.tolist()[:2] == ["M", "F"] and typed.isna().tolist()[2:] == [True, True]
    assert [(i.row, i.value) for i in issues] == [(2, "Unknown")]
    codes = pd.Series(["1", "2", "1"])
    assert column_kind(codes, levels=True) == "categorical"   # data dictionary Levels


def test_unreadable_values_missing_per_participant(tmp_path, warnings_log):
    bids, out = tmp_path / "bids", tmp_path / "out"
    table = simulate_table(10, 6, seed=4)
    write_cohort(table, bids, out)
    clin = pd.read_csv(bids / "phenotype" / "clinical.tsv", sep="\t", dtype=str,
                       keep_default_na=False)
    clin.loc[0, "ALSFRS-R"] = "36,5"
    clin.loc[1, "cmap_z_sum"] = "unknown"
    clin.loc[2, "fvc"] = "1,234"
    clin.loc[3, "fvc"] = "N/a"
    clin.to_csv(bids / "phenotype" / "clinical.tsv", sep="\t", index=False)
    parts = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    parts.loc[4, "age"] = "sixty"
    parts.loc[5, "sex"] = "unknown"
    parts.to_csv(bids / "participants.tsv", sep="\t", index=False)
    # a sessions file (read since this change): its values are typed the same way
    for i, pid in enumerate(table.participant_id):
        (bids / pid).mkdir(exist_ok=True)
        (bids / pid / f"{pid}_sessions.tsv").write_text(
            f"session_id\tweight\nses-1\t{'7O' if i == 6 else 70 + i}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(FAST)
    settings = Settings(execution=ExecutionSettings(
        bids_dir=bids, output_dir=out, analysis_level="group", work_dir=tmp_path / "w"),
        group=GroupSettings(analysis_spec=spec))
    results = run_group(settings)
    write_outputs(results, out)
    joined = results.joined.set_index("participant_id")
    raw = table.set_index("participant_id")
    assert joined.loc["sub-00001", "alsfrs_r"] == 36.5                # decimal comma read
    assert np.isnan(joined.loc["sub-00002", "cmap_z_sum"])          # only that value
    np.testing.assert_allclose(joined["cmap_z_sum"].drop("sub-00002").dropna(),
                               raw["cmap_z_sum"].drop("sub-00002").dropna())
    assert np.isnan(joined.loc["sub-00003", "fvc"]) and np.isnan(joined.loc["sub-00004", "fvc"])
    assert np.isnan(joined.loc["sub-00005", "age"]) and joined["age"].notna().sum() == 15
    assert pd.isna(joined.loc["sub-00006", "sex"]) and set(joined["sex"].dropna()) == {"M", "F"}
    assert np.isnan(joined.loc["sub-00007", "weight"]) and joined.loc["sub-00008", "weight"] == 77
    # the columns stay in every analysis
    assert {"alsfrs_r", "cmap_z_sum", "fvc"} == set(results.tables["clinical"]["score"])
    assert (results.tables["comparisons"]["adj_covariates"] == "age,sex=M").all()
    assert (results.tables["comparisons"]["adj_n"] == 14).all()      # two incomplete rows
    incl = pd.read_csv(out / "group" / OUTPUTS["inclusion"], sep="\t",
                       na_values=["n/a"]).set_index("participant_id")
    assert incl.loc["sub-00001", "converted_phenotype"] == "alsfrs_r='36,5'->36.5"
    assert incl.loc["sub-00001", "n_unreadable_phenotype"] == 0
    expected = {"sub-00002": "cmap_z_sum='unknown'", "sub-00003": "fvc='1,234'",
                "sub-00004": "fvc='N/a'", "sub-00005": "age='sixty'",
                "sub-00006": "sex='unknown'", "sub-00007": "weight='7O'"}
    for pid, text in expected.items():
        assert incl.loc[pid, "unreadable_phenotype"] == text
        assert incl.loc[pid, "n_unreadable_phenotype"] == 1
    assert incl["n_unreadable_phenotype"].sum() == 6
    log = warnings_log.text
    assert "clinical.tsv: column 'alsfrs_r': decimal comma read as a decimal point: " \
           "sub-00001 '36,5' (decimal comma read as 36.5)" in log
    assert "column 'fvc': value(s) not readable, missing for those participants only: " \
           "sub-00003 '1,234', sub-00004 'N/a'" in log
    assert "sessions.tsv: column 'weight': value(s) not readable, missing for those " \
           "participants only: sub-00007/ses-1 '7O'" in log
    assert results.phenotype.dictionary["weight"]["Source"] == "sub-*/sub-*_sessions.tsv"


def test_new_spec_sections_defaults_once_and_validated(tmp_path, monkeypatch):
    for klass in (Table1Spec, ZScoreSpec):
        for f in fields(klass):
            assert f.default is MISSING and f.default_factory is MISSING, (klass, f.name)
    spec = load_spec()
    assert spec.zscores.min_controls == 10 and spec.table1.fisher_min_expected == 5
    assert spec.to_dict()["zscores"]["covariates"] == ["age", "sex"]
    # the packaged YAML sets them, once
    packaged = spec_module.packaged_spec_path().read_text()
    assert packaged.count("\ntable1:") == 1 and packaged.count("\nzscores:") == 1
    user = tmp_path / "user.yaml"
    user.write_text("zscores: {min_controls: 20}\ntable1: {enabled: false}\n")
    spec = load_spec(user)
    assert spec.zscores.min_controls == 20 and spec.zscores.covariates == ("age", "sex")
    assert not spec.table1.enabled and spec.table1.seed == load_spec().table1.seed
    assert {"zscores.min_controls", "table1.enabled"} <= spec.user_keys
    for bad in ("zscores: {min_controls: 2}\n", "table1: {enabled: 1}\n",
                "zscores: {minimum: 3}\n", "table1: [age]\n"):
        user.write_text(bad)
        with pytest.raises(UsageError, match=str(user)):
            load_spec(user)


def _sessions_files(bids, files: dict[str, str]) -> None:
    for pid, text in files.items():
        (bids / pid).mkdir(parents=True, exist_ok=True)
        (bids / pid / f"{pid}_sessions.tsv").write_text(text)


def test_sessions_files_read_together_equal_each_file_read_alone(tmp_path):
    """One read_csv per header: the same rows as pandas reading every file alone."""
    files = {"sub-01": "session_id\tacq_time\tscanner\nses-1\t2020-01-01\tA\nses-2\tn/a\tA\n",
             "sub-02": "\ufeffsession_id\tacq_time\tscanner\r\n1\t2020-03-01\tB\r\n",
             "sub-03": "acq_time\tsession_id\n2021-01-01\tses-1\n\n",
             "sub-04": "session_id\tacq_time\tscanner\n"}
    _sessions_files(tmp_path, files)
    pheno = load_phenotype(tmp_path, load_aliases(), notes=Notes())
    (_, got), = [(p, t) for p, t in pheno.tables if p.name == "sessions.tsv"]
    expected = pd.concat([pd.read_csv(tmp_path / pid / f"{pid}_sessions.tsv", sep="\t",
                                      dtype=str, keep_default_na=False, na_values=["n/a"],
                                      encoding="utf-8-sig").assign(participant_id=pid)
                          for pid in files])
    expected["session_id"] = expected["session_id"].map(
        lambda s: s if s.startswith("ses-") else f"ses-{s}")
    key = ["participant_id", "session_id"]
    got = got.sort_values(key).reset_index(drop=True)
    expected = expected.sort_values(key).reset_index(drop=True)
    assert list(zip(got["participant_id"], got["session_id"])) == \
        [("sub-01", "ses-1"), ("sub-01", "ses-2"), ("sub-02", "ses-1"), ("sub-03", "ses-1")]
    assert got["acq_time"].astype(str).tolist() == expected["acq_time"].astype(str).tolist()
    assert got["site"].astype(str).tolist() == expected["scanner"].astype(str).tolist()


@pytest.mark.parametrize("bad, message", [
    ("session_id\tacq_time\nses-1\t2020-01-01\nses-1\t2020-02-01\n", "duplicated"),
    ("session_id\tacq_time\nses-1\t2020-01-01\nses-2\t2020-02-01\t3\t4\n", "unreadable TSV")])
def test_faulty_sessions_file_is_named(tmp_path, bad, message):
    _sessions_files(tmp_path, {"sub-01": "session_id\tacq_time\nses-1\t2020-01-01\n",
                               "sub-02": bad,
                               "sub-03": "session_id\tacq_time\nses-1\t2020-01-01\n"})
    with pytest.raises(BadDataError) as err:
        load_phenotype(tmp_path, load_aliases(), notes=Notes())
    assert str(err.value).startswith(str(tmp_path / "sub-02" / "sub-02_sessions.tsv"))
    assert message in str(err.value)
