"""End to end on the real ds-xa30 subject through the CLI: participant then group level.

The default-settings run happens in the container test (scripts/docker-test.sh); here the slow
denoising/unringing steps are switched off to keep CI within budget, which does not change the
set of outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_validation import assert_valid

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


def test_reports_and_group(xa30_run):
    html = (xa30_run / "sub-01.html").read_text()
    assert "alsmri report: sub-01" in html and "<svg" in html and "Methods" in html
    citation = (xa30_run / "logs" / "CITATION.md").read_text()
    assert "No denoising was applied" in citation and "distortion correction" in citation
    joined = pd.read_csv(xa30_run / "group" / "group_desc-joined_participants.tsv", sep="\t")
    assert list(joined.participant_id) == ["sub-01"]
    assert "hcp842_cst_L_fa_wmean" in joined.columns
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
