"""CLI parsing, exit codes (BEP027) and the boilerplate-only run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

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
    assert ids["harmonize"]["type"] == "Flag"
    assert ids["harmonize"]["command-line-flag"] == "--no-harmonize"
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


def _double(x):
    return 2 * x


def _tiny_workflow():
    from nipype.interfaces.utility import Function, IdentityInterface
    from nipype.pipeline import engine as pe

    inner = pe.Workflow(name="sub_01_wf")
    inputnode = pe.Node(IdentityInterface(fields=["x"]), name="inputnode")
    inputnode.inputs.x = 1
    # a node that computes (nipype drops identity-only graphs before running them)
    step = pe.Node(Function(input_names=["x"], output_names=["y"], function=_double),
                   name="step")
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
    assert settings.dwi.unringing is False  # the default; the demo restates it


# -- runs that survive faults: shared work directories, truncated images, label rules --------

ALSMRI = os.path.join(os.path.dirname(sys.executable), "alsmri")


def _spawn(*args, **kwargs):
    return subprocess.Popen([ALSMRI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_two_runs_started_together_share_one_index(ds114, tmp_path):
    """Two real runs on one -w index the dataset once (the second waits), no traceback.

    Before the per-index lock both built ``bids_db/<hash>/layout_index.sqlite`` at once: a
    raw sqlite IntegrityError/ObjectDeletedError traceback, or exit 18 "available: none".
    """
    work = tmp_path / "w"
    procs = [_spawn(ds114, tmp_path / f"o{i}", "participant", "--participant-label", "01", "10",
                    "--boilerplate-only", "-w", work) for i in (1, 2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for rc, stdout, stderr in results:
        assert rc == 0 and stderr == "", stderr
    built = [line for _, stdout, _ in results for line in stdout.splitlines()
             if line.split(" ", 1)[-1].startswith("indexing ")]
    assert len(built) == 1  # one run built the index, the other waited for it
    for i in (1, 2):
        citation = (tmp_path / f"o{i}" / "logs" / "CITATION.md").read_text()
        assert "sub-10_ses-retest" in citation and "sub-01_ses-test" in citation
    assert len(list((work / "bids_db").rglob("layout_index.sqlite"))) == 1


def _hold_lock(path):
    """A real process holding the participant lock ``path`` until killed; returns it."""
    code = ("import sys, time\nfrom bids_app.core.locking import file_lock\n"
            "with file_lock(sys.argv[1], wait=False):\n    print('held', flush=True)\n"
            "    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_participant_lock_refuses_same_participant_only(ds114, tmp_path):
    """A participant running in a work dir blocks only itself there (exit 73, one line)."""
    work = tmp_path / "w"
    holder = _hold_lock(work / "locks" / "sub-01_ses-test.lock")
    try:
        out = tmp_path / "o"
        busy = _spawn(ds114, out, "participant", "--participant-label", "01", "-w", work)
        rc, (_, err) = busy.wait(timeout=120), busy.communicate()
        lines = err.strip().splitlines()
        assert rc == 73 and len(lines) == 1, err
        assert str(work) in lines[0] and f"process {holder.pid}" in lines[0]
        assert "sub-01_ses-test is already being processed" in lines[0]
        assert not out.exists()  # refused before anything is written
        # another participant in the same work dir passes the lock (and then fails on the
        # empty placeholder images of ds114, with exit 65: the pre-flight reads them)
        other = _spawn(ds114, out, "participant", "--participant-label", "02", "-w", work)
        rc, (_, err) = other.wait(timeout=120), other.communicate()
        assert rc == 65 and "/sub-02/" in err and "_dwi.nii.gz" in err, err
    finally:
        holder.kill()
        holder.wait()


def test_same_participant_race_second_run_refused(ds_xa30, built_data_dir, tmp_path):
    """Real ds-xa30 runs: the second run of sub-01 on the same -w exits 73 naming the first."""
    work = tmp_path / "w"
    opts = ["participant", "--participant-label", "01", "-w", work, "--data-dir",
            built_data_dir, "--denoise", "none", "--no-unringing", "--nprocs", "1"]
    first = _spawn(ds_xa30, tmp_path / "o1", *opts, start_new_session=True)
    try:
        lock = work / "locks" / "sub-01.lock"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and first.poll() is None and not (
                lock.exists() and lock.read_text().strip() == str(first.pid)):
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        second = _spawn(ds_xa30, tmp_path / "o2", *opts)
        try:
            rc = second.wait(timeout=90)
        except subprocess.TimeoutExpired:
            second.kill()
            raise AssertionError("the second run of sub-01 was not refused") from None
        lines = second.communicate()[1].strip().splitlines()
        assert rc == 73 and len(lines) == 1, lines
        assert str(work) in lines[0] and f"process {first.pid}" in lines[0]
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_truncated_dwi_refused_in_preflight_65(ds_xa30, built_data_dir, tmp_path):
    """A DWI cut short in transfer: exit 65 naming it, before any node runs.

    Before, the header-only pre-flight let the run start and a node failed later (exit 1
    with a traceback in a crash file, after the anatomical branch had run ~80 s).
    """
    bids = tmp_path / "ds"
    shutil.copytree(ds_xa30, bids)
    shutil.rmtree(bids / "sub-01" / "anat")  # DWI only: the old failure came in seconds
    dwi = bids / "sub-01" / "dwi" / "sub-01_dir-PA_dwi.nii.gz"
    blob = dwi.read_bytes()
    dwi.chmod(0o644)
    dwi.write_bytes(blob[: len(blob) * 9 // 10])
    work = tmp_path / "w"
    proc = subprocess.run([ALSMRI, str(bids), str(tmp_path / "o"), "participant", "-w",
                           str(work), "--data-dir", str(built_data_dir), "--nprocs", "1"],
                          check=False, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 65 and len(lines) == 1, proc.stderr
    assert f"{dwi}: truncated DWI image" in lines[0]
    assert not (work / "alsmri_wf").exists()  # nothing ran


def test_label_is_a_label_even_when_a_file_has_its_name(ds114, tmp_path, monkeypatch):
    """``--participant-label 01`` with a file ``01`` in the current directory means sub-01."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "01").write_text("02\n")
    out = tmp_path / "o"
    assert run_cli(ds114, out, "participant", "--participant-label", "01",
                   "--session-label", "test", "--boilerplate-only", "-w", tmp_path / "w") == 0
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "sub-01_ses-test" in citation and "sub-02" not in citation
    # ./01 names the file
    out2 = tmp_path / "o2"
    assert run_cli(ds114, out2, "participant", "--participant-label", "./01",
                   "--session-label", "test", "--boilerplate-only", "-w", tmp_path / "w") == 0
    citation = (out2 / "logs" / "CITATION.md").read_text()
    assert "sub-02_ses-test" in citation and "sub-01" not in citation


def test_group_level_honours_participant_label(tmp_path, capsys):
    """The group level analyses only the given participants (before: silently everyone)."""
    import pandas as pd
    from synthetic_group import simulate_table, write_cohort

    from bids_app.bids.outputs import GROUP_DIR, GROUP_OUTPUTS

    bids, out = tmp_path / "bids", tmp_path / "out"
    write_cohort(simulate_table(8, 6, seed=3), bids, out)
    spec = tmp_path / "fast.yaml"
    spec.write_text("metrics: [fa]\nscores: [alsfrs_r]\ninterhemispheric_metrics: [fa]\n")
    chosen = ["00001", "00002", "00003", "00004", "00010", "00011", "00012", "00013"]
    assert run_cli(bids, out, "group", "--skip-bids-validation", "--analysis-spec", spec,
                   "--participant-label", *chosen) == 0

    def read(key):
        return pd.read_csv(out / GROUP_DIR / GROUP_OUTPUTS[key], sep="\t", na_values=["n/a"],
                           dtype={"participant_id": str})

    expected = {f"sub-{label}" for label in chosen}
    assert set(read("joined")["participant_id"]) == expected
    assert set(read("inclusion")["participant_id"]) == expected  # phenotype rows too
    capsys.readouterr()
    assert run_cli(bids, out, "group", "--skip-bids-validation", "--analysis-spec", spec,
                   "--participant-label", "00001", "99999") == 18
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sub-99999" in err[0] and str(out) in err[0]


def test_work_dir_inside_input_dataset_73(ds114, tmp_path, capsys):
    """A work dir inside the dataset would get the SQLite index written there: refused."""
    bids = tmp_path / "ds"
    shutil.copytree(ds114, bids)
    before = sorted(p.relative_to(bids) for p in bids.rglob("*"))
    for work in (bids / "work", bids / "derivatives" / "work", bids):
        assert run_cli(bids, tmp_path / "o", "participant", "--participant-label", "01",
                       "--boilerplate-only", "-w", work) == 73
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(work) in err[0] and "work directory" in err[0]
    # a --bids-database-dir there that would have to be built: refused the same way
    assert run_cli(bids, tmp_path / "o", "participant", "--participant-label", "01",
                   "--boilerplate-only", "-w", tmp_path / "w",
                   "--bids-database-dir", bids / "code" / "db") == 73
    assert sorted(p.relative_to(bids) for p in bids.rglob("*")) == before
    assert not (tmp_path / "o").exists()


def test_bids_database_dir_option_reuses_index_read_only(ds114, tmp_path):
    """``--bids-database-dir``: built once, then reused by runs with other work dirs."""
    db = tmp_path / "db"
    assert run_cli(ds114, tmp_path / "o1", "participant", "--participant-label", "01",
                   "--boilerplate-only", "-w", tmp_path / "w1", "--bids-database-dir", db) == 0
    index = db / "layout_index.sqlite"
    stamp = (index.read_bytes(), index.stat().st_mtime_ns)
    assert run_cli(ds114, tmp_path / "o2", "participant", "--participant-label", "02",
                   "--boilerplate-only", "-w", tmp_path / "w2", "--bids-database-dir", db) == 0
    assert (index.read_bytes(), index.stat().st_mtime_ns) == stamp
    assert not list(tmp_path.glob("w*/bids_db"))  # no index in the work dirs
    assert "sub-02_ses-test" in (tmp_path / "o2" / "logs" / "CITATION.md").read_text()


@pytest.mark.slow
def test_different_participants_run_side_by_side_in_one_work_dir(ds_xa30, built_data_dir,
                                                                 tmp_path):
    """Two real runs of different participants, one -w and one output dir, both complete.

    sub-01 is ds-xa30's DWI only and sub-02 its T1w only (the two branches in ~80 s on two
    cores). nipype's shared graph report in WORK_DIR/alsmri_wf is not written.
    """
    from bids_app.bids.outputs import ANAT_STATS, DWI_STATS

    bids = tmp_path / "ds"
    shutil.copytree(ds_xa30, bids)
    shutil.copytree(bids / "sub-01" / "anat", bids / "sub-02" / "anat")
    for f in (bids / "sub-02" / "anat").iterdir():
        f.rename(f.with_name(f.name.replace("sub-01", "sub-02")))
    shutil.rmtree(bids / "sub-01" / "anat")
    work, out = tmp_path / "w", tmp_path / "o"
    opts = ["-w", work, "--data-dir", built_data_dir, "--denoise", "none", "--no-unringing",
            "--no-bundles", "--nprocs", "1"]
    procs = {label: _spawn(bids, out, "participant", "--participant-label", label, *opts)
             for label in ("01", "02")}
    for label, proc in procs.items():
        rc, (_, err) = proc.wait(timeout=900), proc.communicate()
        assert rc == 0 and "Traceback" not in err, (label, err)
    assert list(out.glob(f"sub-01/dwi/{DWI_STATS.glob()}"))
    assert list(out.glob(f"sub-02/anat/{ANAT_STATS.glob()}"))
    assert {p.name for p in (work / "alsmri_wf").iterdir()} == {"sub_01_wf", "sub_02_wf"}
    assert sorted(p.name for p in (work / "locks").iterdir()) == ["sub-01.lock", "sub-02.lock"]
