"""The participant plan: one decision, read by the workflow, the methods text and the notes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from bids_app.bids.layout import build_layout
from bids_app.bids.plan import (
    SDC_NONE,
    SDC_REVERSE_PE,
    SDC_RIGID,
    parse_pe,
    plan_participant,
    plan_sdc,
)
from bids_app.bids.queries import collect_subject_sessions
from bids_app.errors import BadDataError
from bids_app.reports.citation import render_citation
from bids_app.settings import DwiSettings, ExecutionSettings, Settings
from bids_app.workflows.dwi import init_dwi_wf


@pytest.mark.parametrize(("dirs", "method", "axis"), [
    (("j-", "j"), SDC_REVERSE_PE, 1),
    (("i", "i-", "i"), SDC_REVERSE_PE, 0),
    (("j", "j"), SDC_RIGID, None),
    (("j", "j-", "i"), SDC_RIGID, None),
    (("j-", None), SDC_RIGID, None),
    (("j-", "y"), SDC_RIGID, None),
    (("j",), SDC_NONE, None),
    ((None,), SDC_NONE, None),
])
def test_plan_sdc_decides_from_the_directions(dirs, method, axis):
    plan = plan_sdc(dirs, sdc="auto")
    assert (plan.method, plan.pe_axis) == (method, axis)
    assert plan.applied == (method == SDC_REVERSE_PE)
    assert plan.polarities == tuple(p[1] if p else 1 for p in map(parse_pe, dirs))
    assert plan.pe_dirs == tuple(d or "" for d in dirs)


def test_plan_sdc_options():
    assert plan_sdc(("j-", "j"), sdc="none").method == SDC_RIGID
    assert "disabled (--sdc none)" in plan_sdc(("j-", "j"), sdc="none").note
    assert "processed separately" in plan_sdc(("j-",), sdc="auto", separate=True).note


# --------------------------------------------------------------------- a tiny real dataset
SHAPE = (28, 30, 16)


def _phantom(rng: np.random.Generator, shift: tuple[int, int, int]) -> np.ndarray:
    """An ellipsoidal 'head' with some inner structure, 7 volumes (b0 + 6 directions)."""
    x, y, z = np.meshgrid(*[np.arange(n) - n / 2 for n in SHAPE], indexing="ij")
    x, y, z = x - shift[0], y - shift[1], z - shift[2]
    head = ((x / 11) ** 2 + (y / 12) ** 2 + (z / 6.5) ** 2) < 1
    inner = ((x / 5) ** 2 + ((y - 3) / 4) ** 2 + (z / 3) ** 2) < 1
    b0 = 800.0 * head + 400.0 * inner
    vols = [b0] + [b0 * (0.35 + 0.05 * k) for k in range(6)]
    data = np.stack(vols, axis=-1) + rng.normal(0, 8, SHAPE + (7,))
    return np.clip(data, 0, None).astype(np.float32)


BVECS = np.array([[0, 1, 0, 0, 0.7071, 0.7071, 0],
                  [0, 0, 1, 0, 0.7071, 0, 0.7071],
                  [0, 0, 0, 1, 0, 0.7071, 0.7071]])


def _dataset(root: Path, directions: dict[str, str | None]) -> Path:
    """BIDS dataset with one subject and one DWI run per ``acq label -> PE direction``."""
    rng = np.random.default_rng(7)
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "plan test", "BIDSVersion": "1.9.0"}))
    dwi = root / "sub-01" / "dwi"
    dwi.mkdir(parents=True)
    for k, (acq, pe) in enumerate(directions.items()):
        stem = dwi / f"sub-01_acq-{acq}_dwi"
        affine = np.diag([6.0, 6.0, 6.0, 1.0])  # a ~0.8 L "brain" (mask sanity range)
        nb.save(nb.Nifti1Image(_phantom(rng, (k % 2, 0, 0)), affine), f"{stem}.nii.gz")
        np.savetxt(f"{stem}.bval", [[0, 1000, 1000, 1000, 1000, 1000, 1000]], fmt="%d")
        np.savetxt(f"{stem}.bvec", BVECS, fmt="%.4f")
        meta = {"RepetitionTime": 3.0, "TotalReadoutTime": 0.05}
        if pe is not None:
            meta["PhaseEncodingDirection"] = pe
        (dwi / f"sub-01_acq-{acq}_dwi.json").write_text(json.dumps(meta))
    return root


def _settings(bids: Path, tmp: Path) -> Settings:
    return Settings(execution=ExecutionSettings(bids_dir=bids, output_dir=tmp / "out",
                                                analysis_level="participant",
                                                work_dir=tmp / "work"))


@pytest.mark.parametrize(("directions", "reason"), [
    ({"a": "j", "b": "j-", "c": "i"}, "runs do not share one phase-encoding axis (j, j-, i)"),
    ({"a": "j-", "b": None}, "run(s) 2 of 2 have no valid PhaseEncodingDirection"),
])
def test_methods_notes_and_executed_node_agree(tmp_path, built_data_dir, directions, reason):
    """Runs without a usable reverse-PE pair: the methods text, the participant notes and the
    distortion-correction node that actually runs all say the same thing."""
    bids = _dataset(tmp_path / "bids", directions)
    settings = _settings(bids, tmp_path)
    layout = build_layout(bids, work_dir=tmp_path / "work", validate=False)
    (record,) = collect_subject_sessions(layout)
    plan = plan_participant(record, settings.dwi)
    (unit,) = plan.dwi_units
    assert unit.sdc.method == SDC_RIGID and reason in unit.sdc.note
    assert unit.shells == (1000.0,)

    methods = render_citation(settings, [plan])
    assert f"No susceptibility distortion correction was applied ({reason})" in methods
    assert "a susceptibility distortion correction was estimated" not in methods
    assert any(reason in note for note in plan.notes(settings.dwi))

    wf = init_dwi_wf(units=plan.dwi_units, settings=settings.dwi,
                     output_dir=tmp_path / "out", data_dir=built_data_dir)
    combine = wf.get_node("dwi_preproc_wf.combine")
    assert combine.inputs.sdc_method == SDC_RIGID and combine.inputs.pe_axis is None
    # execute the node on the raw runs (identity motion) and read what it did
    runs = record.dwi_runs
    b0s = []
    for i, run in enumerate(runs):
        img = nb.load(run.dwi)
        b0 = tmp_path / f"b0_{i}.nii.gz"
        nb.save(nb.Nifti1Image(img.get_fdata(dtype=np.float32)[..., 0], img.affine), b0)
        b0s.append(str(b0))
        np.save(tmp_path / f"mats_{i}.npy", np.tile(np.eye(4), (7, 1, 1)))
        (tmp_path / f"motion_{i}.tsv").write_text("trans_x\n" + "0\n" * 7)
    combine.inputs.in_files = [str(r.dwi) for r in runs]
    combine.inputs.in_bvals = [str(r.bval) for r in runs]
    combine.inputs.in_bvecs = [str(r.bvec) for r in runs]
    combine.inputs.in_b0s = b0s
    combine.inputs.in_matrices = [str(tmp_path / f"mats_{i}.npy") for i in range(len(runs))]
    combine.inputs.in_motion = [str(tmp_path / f"motion_{i}.tsv") for i in range(len(runs))]
    combine.base_dir = str(tmp_path / "node")
    result = combine.run()
    report = json.loads(Path(result.outputs.out_report).read_text())
    assert report["method"] == SDC_RIGID and report["note"] == unit.sdc.note
    assert nb.load(result.outputs.out_file).shape == SHAPE + (7 * len(runs),)


def test_applied_plan_reaches_the_node(tmp_path, built_data_dir):
    bids = _dataset(tmp_path / "bids", {"a": "j-", "b": "j"})
    layout = build_layout(bids, work_dir=tmp_path / "work", validate=False)
    (record,) = collect_subject_sessions(layout)
    plan = plan_participant(record, DwiSettings())
    (unit,) = plan.dwi_units
    assert unit.sdc.applied and unit.sdc.pe_axis == 1
    # one shell (b = 1000, 6 directions): the tensor on every volume, DKI and free-water DTI
    # skipped
    assert [(p.model, p.shells) for p in unit.models] == [("tensor", ()), ("dki", None),
                                                          ("fwdti", None)]
    assert plan.notes(DwiSettings()) == [
        ("DWI model dki: skipped: needs 2 non-zero shell(s) at b <= 3000 s/mm² with >= 15 "
         "directions each (data: shells 1000 s/mm²)."),
        ("DWI model fwdti: skipped: needs 2 non-zero shell(s) at b <= 2000 s/mm² with >= 6 "
         "directions each (data: shells 1000 s/mm²)."),
        "No T1w found: anatomical branch skipped."]
    wf = init_dwi_wf(units=plan.dwi_units, settings=DwiSettings(), output_dir=tmp_path,
                     data_dir=built_data_dir)
    combine = wf.get_node("dwi_preproc_wf.combine")
    assert (combine.inputs.sdc_method, combine.inputs.pe_axis) == (SDC_REVERSE_PE, 1)
    assert list(combine.inputs.polarities) == [-1, 1]


def test_bad_gradients_fail_when_planning(tmp_path):
    bids = _dataset(tmp_path / "bids", {"a": "j-"})
    bval = bids / "sub-01" / "dwi" / "sub-01_acq-a_dwi.bval"
    bval.write_text("0 1000 1000\n")
    layout = build_layout(bids, work_dir=tmp_path / "work", validate=False)
    (record,) = collect_subject_sessions(layout)
    with pytest.raises(BadDataError, match="sub-01_acq-a_dwi"):
        plan_participant(record, DwiSettings())
