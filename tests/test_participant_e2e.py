"""End to end on the real ds-xa30 subject through the CLI: participant then group level.

The default-settings run happens in the container test (scripts/docker-test.sh); here the slow
denoising/unringing steps are switched off to keep CI within budget, which does not change the
set of outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_validation import assert_valid
from test_cli_faults import assert_nothing_half_written, session_processes, small_fs

from bids_app.bids.derivatives import build_path
from bids_app.bids.outputs import DWI_OUTPUTS, Output, dwi_map_output
from bids_app.cli.run import main
from bids_app.core.tables import STATS_COLUMNS

REPO = Path(__file__).resolve().parents[1]
ALSMRI = str(Path(sys.executable).parent / "alsmri")
EXPECTED = REPO / "tests" / "data" / "expected_outputs_ds-xa30.txt"

pytestmark = pytest.mark.slow


def _name(out: Output, extension: str) -> Path:
    """Path of a declared output for sub-01, relative to the derivatives root."""
    return build_path({"subject": "01", **out.entities}, datatype=out.datatype,
                      suffix=out.suffix, extension=extension)


def _listing(out: Path) -> list[str]:
    names = set()
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(out).as_posix()
        if rel.startswith("logs/run-"):
            rest = rel.split("/", 2)[2]
            if rest.startswith("crash") or rest == "nipype.log":
                continue
            rel = f"logs/run-ID/{rest}"
        names.add(rel)
    return sorted(names)


@pytest.fixture(scope="module")
def xa30_run(ds_xa30, built_data_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    out = base / "out"
    before = {p: p.stat().st_mtime_ns for p in ds_xa30.rglob("*") if p.is_file()}
    scratch = base / "tmp"  # the run's system temp dir: must be left empty
    scratch.mkdir()
    # a separate process, as a user would run it (the rerun test reuses its work dir)
    proc = subprocess.run([ALSMRI, str(ds_xa30), str(out), "participant", "--participant-label",
                           "01", "--nprocs", "2", "-w", str(base / "work"), "--denoise", "none",
                           "--no-unringing"], check=False, capture_output=True, text=True,
                          timeout=1200,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "participant level finished for sub-01" in proc.stdout
    # antspyx leaves Atropos images and unnamed transforms in the temp dir unless redirected
    assert sorted(p.name for p in scratch.iterdir()) == []
    rc = main([str(ds_xa30), str(out), "group"])
    assert rc == 0
    after = {p: p.stat().st_mtime_ns for p in ds_xa30.rglob("*") if p.is_file()}
    assert before == after, "the input dataset was modified"
    return out


def test_output_list_matches_expected(xa30_run):
    expected = EXPECTED.read_text().split()
    assert _listing(xa30_run) == expected


def test_sidecars_and_units(xa30_run):
    md_map = dwi_map_output("tensor", "md", model_description="")
    md = json.loads((xa30_run / _name(md_map, ".json")).read_text())
    assert md["Units"] == "mm^2/s" and "Sources" in md
    assert any(s.startswith("bids:raw:sub-01/dwi/") for s in md["Sources"])
    img = nib.load(xa30_run / _name(md_map, ".nii.gz"))
    mask = nib.load(xa30_run / _name(DWI_OUTPUTS["mask"], ".nii.gz")).get_fdata() > 0
    median_md = float(np.median(img.get_fdata()[mask]))
    assert 2e-4 < median_md < 2e-3  # brain tissue, in mm^2/s


def test_derivatives_pass_the_bids_validator(xa30_run):
    """Participant and group outputs together: 0 errors (warnings allowed)."""
    assert_valid(xa30_run)


def test_metrics_tables(xa30_run):
    dwi = pd.read_csv(xa30_run / "sub-01/dwi/sub-01_desc-tracts_dwistats.tsv", sep="\t")
    anat = pd.read_csv(xa30_run / "sub-01/anat/sub-01_desc-gmvolume_morph.tsv", sep="\t")
    for table in (dwi, anat):
        assert tuple(table.columns) == STATS_COLUMNS
    fa = dwi[(dwi.atlas == "hcp842") & (dwi.metric == "fa") & (dwi.statistic == "mean")]
    assert set(fa.region) == {"cst", "corticostriatal", "corticothalamic"}
    assert set(fa.hemisphere) == {"L", "R"}
    assert fa.value.between(0.15, 0.8).all()
    tiv = anat[(anat.region == "tiv")].value.iloc[0]
    assert 1.1e6 < tiv < 2.0e6  # mm^3
    pct = anat[(anat.metric == "gmv_pct_tiv") & (anat.region == "precentral")]
    assert set(pct.hemisphere) == {"L", "R"} and pct.value.between(0.05, 2).all()


def test_bundles_profiles_and_bundle_metrics(xa30_run):
    """Every HCP842 bundle is recognised in the real subject: its streamlines run inside the
    brain mask, on the side it is named for, its FA is higher than the atlas-weighted mean (a
    bundle follows the subject's own high-FA core) and its profiles have 100 nodes."""
    dwi_dir = xa30_run / "sub-01" / "dwi"
    mask_img = nib.load(dwi_dir / "sub-01_desc-brain_mask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0
    inverse = np.linalg.inv(mask_img.affine)
    table = pd.read_csv(dwi_dir / "sub-01_desc-tracts_dwistats.tsv", sep="\t")
    fa = table[(table.atlas == "hcp842") & (table.metric == "fa")].pivot_table(
        index=["region", "hemisphere"], columns="statistic", values="value")
    assert len(fa) == 6 and fa["bundle"].notna().all()
    assert (fa["bundle"] > fa["wmean"]).all(), fa
    qc = pd.read_csv(dwi_dir / "sub-01_desc-bundles_qc.tsv", sep="\t")
    assert qc.recognised.all() and (qc.n_streamlines >= 100).all(), qc
    for row in qc.itertuples():
        trk = dwi_dir / (f"sub-01_hemi-{row.hemisphere}_label-{row.region}"
                         "_desc-bundle_tractography.trk")
        lines = nib.streamlines.load(trk).streamlines
        assert len(lines) == row.n_streamlines
        ijk = np.rint(nib.affines.apply_affine(inverse, lines.get_data())).astype(int)
        ijk = np.clip(ijk, 0, np.array(mask.shape) - 1)
        assert mask[tuple(ijk.T)].mean() > 0.98
        other = "R" if row.hemisphere == "L" else "L"  # left bundles lie left of right ones
        mid = np.mean(lines.get_data()[:, 0])
        twin = nib.streamlines.load(trk.with_name(trk.name.replace(
            f"hemi-{row.hemisphere}", f"hemi-{other}"))).streamlines.get_data()[:, 0].mean()
        assert (mid < twin) if row.hemisphere == "L" else (mid > twin)
    profiles = pd.read_csv(dwi_dir / "sub-01_desc-profiles_dwistats.tsv", sep="\t")
    assert len(profiles) == 6 * 4 * 100 and profiles.value.notna().all()
    cst = profiles[(profiles.region == "cst") & (profiles.metric == "fa")]
    for _, prof in cst.groupby("hemisphere"):
        assert prof.sort_values("node").node.tolist() == list(range(100))
    assert (dwi_dir.parent / "figures" / "sub-01_desc-profiles_dwi.png").is_file()


def test_reports_and_group(xa30_run):
    html = (xa30_run / "sub-01.html").read_text()
    assert "alsmri report: sub-01" in html and "<svg" in html and "Methods" in html
    citation = (xa30_run / "logs" / "CITATION.md").read_text()
    assert "No denoising was applied" in citation and "distortion correction" in citation
    joined = pd.read_csv(xa30_run / "group" / "group_desc-joined_participants.tsv", sep="\t")
    assert list(joined.participant_id) == ["sub-01"]
    assert "hcp842_cst_L_fa_wmean" in joined.columns
    assert "hcp842_cst_L_fa_bundle" in joined.columns
    assert "aal_precentral_L_gmv_pct_tiv_ratio" in joined.columns
    assert (xa30_run / "group" / "report.html").is_file()


def test_rerun_reuses_work_dir(ds_xa30, xa30_run, tmp_path):
    """A second invocation with the same work dir re-executes only the sinks (cached nodes)."""
    work = xa30_run.parent / "work"
    out = tmp_path / "o2"
    proc = subprocess.run(
        [ALSMRI, str(ds_xa30), str(out), "participant", "--participant-label", "01",
         "--nprocs", "2", "-w", str(work), "--denoise", "none", "--no-unringing"],
        check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (log,) = out.glob("logs/run-*/nipype.log")
    executed = {line.split('Executing "')[1].split('"')[0] for line in log.read_text().splitlines()
                if 'Executing "' in line}
    assert executed, "the sinks must run for the new output directory"
    assert all(name.startswith("ds_") for name in executed), sorted(executed)
    assert _listing(out) == [n for n in _listing(xa30_run) if not n.startswith("group/")]


def _participant(ds_xa30: Path, out: Path, work: Path) -> subprocess.CompletedProcess:
    """The fixture's participant command on ``out`` with the work directory ``work``, in a
    session of its own (whose id, ``args`` here, is the process id of alsmri)."""
    proc = subprocess.Popen(
        [ALSMRI, str(ds_xa30), str(out), "participant", "--participant-label", "01",
         "--nprocs", "2", "-w", str(work), "--denoise", "none", "--no-unringing"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.pid, proc.returncode, stdout, stderr)


def test_full_output_disk_exits_73(ds_xa30, xa30_run, tmp_path):
    """The output directory's file system fills up while the sinks copy the cached results:
    exit 73 with one line naming the file, nothing half-written, no process left."""
    with small_fs(tmp_path / "small") as fs:
        out = fs / "out"
        proc = _participant(ds_xa30, out, xa30_run.parent / "work")
        assert proc.returncode == 73, proc.stderr[-3000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr[-3000:]
        assert lines[0].startswith(f"alsmri: error: {out}/"), lines[0]
        assert lines[0].endswith(": no space left on device"), lines[0]
        assert "participant level finished" not in proc.stdout
        assert session_processes(proc.args) == []
        assert_nothing_half_written(out)
        crashes = list(out.glob("logs/run-*/crash-*"))
        assert all(c.stat().st_size > 0 for c in crashes), crashes


def _digests(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (out / "sub-01").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first_outputs(xa30_run) -> dict[str, str]:
    """SHA-256 of every ``sub-01/`` file as the first run wrote it."""
    return _digests(xa30_run)


# Kept last in the module: these delete outputs of the shared run (and restore them).
@pytest.mark.parametrize("delete", ["sub-01/dwi", "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz",
                                    "."], ids=["dwi-dir", "one-file", "output-dir"])
def test_resume_restores_deleted_outputs(ds_xa30, xa30_run, first_outputs, delete):
    """Deleted outputs come back when the run is resumed with the same -w, byte for byte,
    from the cached results: only the sinks run (they are never taken from the cache)."""
    target = xa30_run / delete
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    started = time.monotonic()
    proc = _participant(ds_xa30, xa30_run, xa30_run.parent / "work")
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "participant level finished for sub-01" in proc.stdout
    log = max(xa30_run.glob("logs/run-*/nipype.log"), key=lambda p: p.stat().st_mtime)
    executed = {line.split('Executing "')[1].split('"')[0] for line in log.read_text().splitlines()
                if 'Executing "' in line}
    assert executed and all(name.startswith("ds_") for name in executed), sorted(executed)
    print(f"resumed in {took:.1f} s")
    expected = EXPECTED.read_text().split()
    if delete == ".":  # the group level is not part of a participant run: redo it
        assert _listing(xa30_run) == [n for n in expected if not n.startswith("group/")]
        assert main([str(ds_xa30), str(xa30_run), "group"]) == 0
    assert _listing(xa30_run) == expected
    assert _digests(xa30_run) == first_outputs
