"""CLI parsing, exit codes (BEP027) and the boilerplate-only run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

from bids_app import __version__
from bids_app.cli.run import main


def run_cli(*args, capsys=None):
    rc = main([str(a) for a in args])
    return rc


def test_version_console_script():
    exe = shutil.which("alsmri") or os.path.join(os.path.dirname(sys.executable), "alsmri")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"alsmri {__version__}"


def test_boilerplate_only_writes_description_and_citation(ds114, tmp_path):
    out = tmp_path / "o"
    rc = run_cli(ds114, out, "participant", "--participant-label", "sub-01",
                 "--boilerplate-only", "-w", tmp_path / "w")
    assert rc == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "alsmri"
    assert desc["GeneratedBy"][0]["Version"] == __version__
    assert desc["GeneratedBy"][0]["CodeURL"].startswith("https://")
    assert desc["BIDSVersion"]
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "sub-01_ses-retest" in citation and "sub-01_ses-test" in citation
    assert "## References" in citation and "doi:10.3389/fninf.2011.00013" in citation
    run_dirs = list((out / "logs").glob("run-*"))
    assert len(run_dirs) == 1
    assert {p.name for p in run_dirs[0].iterdir()} >= {"command.txt", "versions.json",
                                                       "config.toml"}
    assert (out / ".bidsignore").read_text().count("logs/") == 1
    # nothing else is written for a boilerplate-only run
    assert not list(out.glob("sub-*"))


def test_missing_bids_dir_66(tmp_path, capsys):
    assert run_cli(tmp_path / "nope", tmp_path / "o", "participant") == 66
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "does not exist" in err[0]


def test_no_dataset_description_16_unless_skipped(ds114, tmp_path, capsys):
    bids = tmp_path / "ds"
    shutil.copytree(ds114, bids)
    (bids / "dataset_description.json").unlink()
    assert run_cli(bids, tmp_path / "o", "participant", "-w", tmp_path / "w",
                   "--boilerplate-only") == 16
    err = capsys.readouterr().err
    assert "dataset_description.json" in err
    assert run_cli(bids, tmp_path / "o2", "participant", "-w", tmp_path / "w",
                   "--skip-bids-validation", "--boilerplate-only",
                   "--participant-label", "02") == 0


def test_unknown_analysis_level_17(ds114, tmp_path, capsys):
    assert run_cli(ds114, tmp_path / "o", "subject") == 17
    assert "subject" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--participant-label", "99"),
                                        ("--session-label", "ses-nope")])
def test_unknown_label_18(ds114, tmp_path, capsys, flag, value):
    rc = run_cli(ds114, tmp_path / "o", "participant", flag, value, "-w", tmp_path / "w",
                 "--boilerplate-only")
    assert rc == 18
    err = capsys.readouterr().err
    assert value.replace("ses-", "") in err


def test_malformed_filter_file_64(ds114, tmp_path, capsys):
    bad = tmp_path / "filters.json"
    bad.write_text('{"dwi": {"acquisition": }')
    assert run_cli(ds114, tmp_path / "o", "participant", "--bids-filter-file", bad) == 64
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "invalid JSON" in err and "line 1" in err


def test_usage_error_64(ds114, tmp_path):
    assert run_cli(ds114, tmp_path / "o", "participant", "--nprocs", "zero") == 64
    assert run_cli(ds114, tmp_path / "o", "participant", "--no-such-flag") == 64
    # ANTs reads --random-seed 0 as "seed from the clock": refused before anything runs
    assert run_cli(ds114, tmp_path / "o", "participant", "--random-seed", "0") == 64


def test_output_not_writable_73(ds114, tmp_path, capsys):
    # A regular file where a directory must be created cannot be written, even by root.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = run_cli(ds114, blocker / "o", "participant", "--participant-label", "01",
                 "--boilerplate-only", "-w", tmp_path / "w")
    assert rc == 73
    assert "cannot create" in capsys.readouterr().err


def test_output_inside_bids_dir_73(ds114, tmp_path):
    bids = tmp_path / "ds"
    shutil.copytree(ds114, bids)
    assert run_cli(bids, bids / "out", "participant", "--boilerplate-only") == 73
    assert run_cli(bids, bids, "participant", "--boilerplate-only") == 73
    assert run_cli(bids, bids / "derivatives" / "alsmri", "participant", "--boilerplate-only",
                   "--participant-label", "01", "-w", tmp_path / "w") == 0


def test_participant_label_file_and_prefix(ds114, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("sub-02\n03\n")
    out = tmp_path / "o"
    assert run_cli(ds114, out, "participant", "--participant-label", labels,
                   "--session-label", "ses-test", "--boilerplate-only",
                   "-w", tmp_path / "w") == 0
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "sub-02_ses-test, sub-03_ses-test" in citation
    assert "retest" not in citation


def test_bids_exec_spec_is_boutiques(capsys):
    assert main(["--bids-exec-spec"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["schema-version"] == "0.5" and desc["tool-version"] == __version__
    ids = {i["id"]: i for i in desc["inputs"]}
    for key in ("bids_dir", "output_dir", "analysis_level", "participant_label",
                "bids_filter_file", "nprocs", "omp_nthreads", "mem_mb", "work_dir"):
        assert key in ids
        assert ids[key]["value-key"] in desc["command-line"]
    assert ids["analysis_level"]["value-choices"] == ["participant", "group"]
    assert ids["participant_label"]["list"] is True
    assert ids["skip_bids_validation"]["type"] == "Flag"
    assert ids["nprocs"]["type"] == "Number" and ids["nprocs"]["integer"] is True
    assert ids["tract_threshold"]["type"] == "Number" and "integer" not in ids["tract_threshold"]


def test_default_omp_nthreads():
    from bids_app.settings import default_omp_nthreads

    assert [default_omp_nthreads(n) for n in (1, 2, 4, 16)] == [1, 1, 3, 8]


def test_settings_round_trip(ds114, tmp_path):
    from bids_app.cli.parser import build_parser
    from bids_app.cli.run import settings_from_args
    from bids_app.settings import Settings

    opts = build_parser().parse_args([str(ds114), str(tmp_path / "o"), "participant",
                                      "--participant-label", "01", "--nprocs", "2",
                                      "--denoise", "none", "--no-unringing"])
    settings = settings_from_args(opts)
    assert settings.nipype.omp_nthreads == 1  # fMRIPrep's nprocs - 1
    assert settings.dwi.denoise == "none" and settings.dwi.unringing is False
    assert Settings.from_toml(settings.to_toml()) == settings
    seeded = settings_from_args(build_parser().parse_args(
        [str(ds114), str(tmp_path / "o"), "participant", "--random-seed", "7"]))
    assert seeded.dwi.seed == seeded.anat.seed == 7
    assert settings.dwi.seed == settings.anat.seed != 7  # the documented default


def test_unknown_session_among_known_18(ds114, tmp_path, capsys):
    rc = run_cli(ds114, tmp_path / "o", "participant", "--session-label", "test", "nope",
                 "-w", tmp_path / "w", "--boilerplate-only")
    assert rc == 18
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "session label(s) nope not found" in err[0]
    assert str(ds114) in err[0]


def _drop_top_level_bval(bids):
    (bids / "dwi.bval").unlink()
    return "sub-01_ses-retest_dwi.nii.gz: no bval file"


def _corrupt_dwi_sidecar(bids):
    sidecar = bids / "sub-01" / "ses-test" / "dwi" / "sub-01_ses-test_dwi.json"
    sidecar.write_text('{"PhaseEncodingDirection": ')
    return str(sidecar)


@pytest.mark.parametrize("damage", [_drop_top_level_bval, _corrupt_dwi_sidecar])
def test_bad_data_65_one_line(ds114, tmp_path, capsys, damage):
    bids = tmp_path / "ds"
    shutil.copytree(ds114, bids)
    expected = damage(bids)
    rc = run_cli(bids, tmp_path / "o", "participant", "--participant-label", "01",
                 "--boilerplate-only", "-w", tmp_path / "w")
    assert rc == 65
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alsmri: error: ") and expected in err[0]


def test_work_dir_help_matches_default(ds114, tmp_path):
    import tempfile
    from pathlib import Path

    from bids_app.cli.parser import build_parser
    from bids_app.cli.run import settings_from_args

    parser = build_parser()
    (work,) = [a for a in parser._actions if "--work-dir" in a.option_strings]
    assert "default: $TMPDIR/alsmri-work)" in work.help
    assert "default: None" not in parser.format_help()
    settings = settings_from_args(parser.parse_args([str(ds114), str(tmp_path / "o"),
                                                     "participant"]))
    assert settings.execution.work_dir == Path(tempfile.gettempdir()) / "alsmri-work"


def _tiny_workflow():
    from nipype.interfaces.utility import IdentityInterface
    from nipype.pipeline import engine as pe

    inner = pe.Workflow(name="sub_01_wf")
    inputnode = pe.Node(IdentityInterface(fields=["x"]), name="inputnode")
    inputnode.inputs.x = 1
    step = pe.Node(IdentityInterface(fields=["x"]), name="step")
    inner.connect(inputnode, "x", step, "x")
    outer = pe.Workflow(name="alsmri_wf")
    outer.add_nodes([inner])
    return outer


def test_write_graph_writes_dot_without_graphviz(ds114, tmp_path):
    import pydot

    from bids_app.cli.execute import execute_workflow
    from bids_app.cli.parser import build_parser
    from bids_app.cli.run import settings_from_args

    opts = build_parser().parse_args([str(ds114), str(tmp_path / "o"), "participant",
                                      "--write-graph", "--nprocs", "1",
                                      "-w", str(tmp_path / "w")])
    settings = settings_from_args(opts)
    assert settings.execution.write_graph
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    execute_workflow(_tiny_workflow(), settings=settings, log_dir=log_dir)
    text = (log_dir / "graph.dot").read_text()
    (graph,) = pydot.graph_from_dot_data(text)
    assert graph.get_name() == "alsmri_wf"
    assert "sub_01_wf" in text and "step" in text


def test_write_graph_failure_only_warns(tmp_path, monkeypatch, caplog):
    from bids_app.cli.execute import write_workflow_graph

    workflow = _tiny_workflow()

    def broken(**kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(workflow, "write_hierarchical_dotfile", broken)
    # earlier CLI runs detach "alsmri" from the root logger that caplog listens on
    monkeypatch.setattr(logging.getLogger("alsmri"), "propagate", True)
    with caplog.at_level("WARNING", logger="alsmri"):
        assert write_workflow_graph(workflow, tmp_path) is None
    assert "disk full" in caplog.text and not (tmp_path / "graph.dot").exists()


def _raise_bad_data(x):
    from bids_app.errors import BadDataError

    raise BadDataError(f"/data/sub-{x}_dwi.nii.gz: empty image (all voxels zero)")


def test_bad_data_inside_a_node_exits_65(ds114, tmp_path):
    """A BadDataError raised while a node runs maps to exit 65 with its message, not 1."""
    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    from bids_app.cli.execute import execute_workflow
    from bids_app.cli.parser import build_parser
    from bids_app.cli.run import settings_from_args
    from bids_app.errors import BadDataError

    workflow = pe.Workflow(name="alsmri_wf")
    node = pe.Node(Function(input_names=["x"], output_names=["y"], function=_raise_bad_data),
                   name="check")
    node.inputs.x = "01"
    workflow.add_nodes([node])
    opts = build_parser().parse_args([str(ds114), str(tmp_path / "o"), "participant",
                                      "--nprocs", "1", "-w", str(tmp_path / "w")])
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with pytest.raises(BadDataError) as caught:
        execute_workflow(workflow, settings=settings_from_args(opts), log_dir=log_dir)
    message = str(caught.value)
    assert caught.value.exit_code == 65 and "\n" not in message
    assert message.startswith("/data/sub-01_dwi.nii.gz: empty image") and "crash-" in message


def test_demo_participant_batches_cover_every_label_once_in_order():
    from bids_app.cli.demo import participant_batches
    from bids_app.errors import UsageError

    labels = [f"{i:03d}" for i in range(1, 72)]
    batches = participant_batches(labels, 8)
    assert [label for batch in batches for label in batch] == labels
    assert [len(b) for b in batches] == [8] * 8 + [7]
    assert participant_batches(["01"], 8) == [["01"]]
    with pytest.raises(UsageError, match="--batch-size must be >= 1"):
        participant_batches(labels, 0)
    # refused by the parser, before anything is simulated
    from bids_app.cli.run import main as cli_main
    assert cli_main(["demo", "/nonexistent/demo-out", "--batch-size", "0"]) == 64


@pytest.mark.parametrize("level", ["participant", "group"])
def test_demo_settings_are_those_of_its_logged_command_line(tmp_path, built_data_dir, level,
                                                          monkeypatch):
    """The demo builds its settings directly; the command line it logs gives the same ones."""
    from bids_app.cli import demo
    from bids_app.cli.parser import build_parser
    from bids_app.cli.run import settings_from_args

    bids = tmp_path / "bids"
    bids.mkdir()
    monkeypatch.chdir(tmp_path)
    settings = demo._settings(level, bids, tmp_path / "derivatives", work_dir=tmp_path / "work",
                              data_dir=demo.ensure_data(built_data_dir), nprocs=2,
                              labels=("p01", "c01") if level == "participant" else ())
    argv = demo.equivalent_argv(settings)
    assert settings_from_args(build_parser().parse_args(argv)) == settings
    assert settings.dwi.unringing is (level != "participant")
