"""Write the simulated cohort as a BIDS dataset (+ ``truth.json``, listed in .bidsignore)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.simulate.effects import CONTROL_LABEL, PATIENT_LABEL

#: acquisition fields copied from the source subject's sidecars
DWI_FIELDS = ("Modality", "MagneticFieldStrength", "Manufacturer", "ManufacturersModelName",
              "EchoTime", "RepetitionTime", "FlipAngle", "MultibandAccelerationFactor",
              "EffectiveEchoSpacing", "TotalReadoutTime", "PhaseEncodingDirection",
              "SliceThickness", "PulseSequenceType")
T1W_FIELDS = ("Modality", "MagneticFieldStrength", "Manufacturer", "ManufacturersModelName",
              "EchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "MRAcquisitionType")
TRUTH_FILE = "truth.json"
#: derivative dataset (inside the simulated one) holding each participant's truth maps
TRUTH_MAPS_DIR = Path("derivatives") / "simulate-truth"


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray, *, dtype=np.int16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_data_dtype(dtype)  # int16: nibabel picks scl_slope/inter to keep the range
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def _session_dir(root: Path, participant_id: str, session: str) -> tuple[Path, str]:
    """``root/sub-X[/ses-Y]`` and the file-name stem ``sub-X[_ses-Y]``."""
    if not session:
        return Path(root) / participant_id, participant_id
    return Path(root) / participant_id / session, f"{participant_id}_{session}"


def write_participant_images(root: Path, participant_id: str, *, dwi: np.ndarray,
                             dwi_affine: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray,
                             dwi_sidecar: dict, t1w: np.ndarray, t1_affine: np.ndarray,
                             t1_sidecar: dict, session: str = "") -> list[Path]:
    """Write ``[ses-Y/]anat/<sub>[_ses-Y]_T1w`` and ``.../dwi/..._dwi`` (+ bval/bvec/json);
    return the paths."""
    base, stem = _session_dir(root, participant_id, session)
    anat = base / "anat" / f"{stem}_T1w"
    dwi_base = base / "dwi" / f"{stem}_dwi"
    _nifti(anat.with_suffix(".nii.gz"), t1w, t1_affine)
    _json(anat.with_suffix(".json"), {k: t1_sidecar[k] for k in T1W_FIELDS if k in t1_sidecar})
    _nifti(dwi_base.with_suffix(".nii.gz"), dwi, dwi_affine)
    meta = {k: dwi_sidecar[k] for k in DWI_FIELDS if k in dwi_sidecar}
    if "PhaseEncodingDirection" not in meta:
        meta["PhaseEncodingDirection"] = "j-"
    _json(dwi_base.with_suffix(".json"), meta)
    dwi_base.with_suffix(".bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    dwi_base.with_suffix(".bvec").write_text(
        "\n".join(" ".join(f"{v:.6f}" for v in row) for row in np.asarray(bvecs).T) + "\n")
    return [anat.with_suffix(".nii.gz"), dwi_base.with_suffix(".nii.gz")]


def truth_map_name(participant_id: str, key: str, session: str = "") -> Path:
    """Path (relative to the dataset root) of a truth map: ``key`` is ``"tract/<atlas>/
    <region>/<hemi>"`` (``desc-truth``) or ``"focal/..."`` (``desc-focal``)."""
    kind, _atlas, region, hemi = key.split("/")
    label = "".join(ch for ch in region if ch.isalnum())
    hemi_entity = f"_hemi-{hemi}" if hemi in ("L", "R") else ""
    desc = {"tract": "truth", "focal": "focal"}[kind]
    base, stem = _session_dir(TRUTH_MAPS_DIR, participant_id, session)
    return base / "dwi" / f"{stem}{hemi_entity}_label-{label}_desc-{desc}_probseg.nii.gz"


def write_truth_maps(root: Path, participant_id: str, maps: dict[str, np.ndarray], *,
                     affine: np.ndarray, session: str = "") -> dict[str, str]:
    """Write a participant's truth weight maps (float32, its DWI grid); return ``key`` ->
    path relative to ``root`` (for truth.json)."""
    root = Path(root)
    description = root / TRUTH_MAPS_DIR / "dataset_description.json"
    if not description.is_file():
        _json(description, {
            "Name": "alsmri simulate truth maps", "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "alsmri simulate", "Version": __version__,
                             "Description": "the simulator's own tract (desc-truth) and "
                                            "focal-lesion (desc-focal) weights on each "
                                            "participant's DWI grid"}]})
    out = {}
    for key, data in maps.items():
        name = truth_map_name(participant_id, key, session)
        _nifti(root / name, data, affine, dtype=np.float32)
        out[key] = name.as_posix()
    return out


def write_dataset_files(root: Path, *, participants: list[dict],
                        scores: dict[str, dict[str, float]], effects: dict, truth: dict,
                        source_name: str, sessions: dict[str, list[dict]] | None = None
                        ) -> None:
    """dataset_description, README, .bidsignore, participants, phenotype, truth.json, and
    with several sessions ``sub-*/sub-*_sessions.tsv`` (``sessions``: participant -> rows)."""
    root = Path(root)
    _json(root / "dataset_description.json", {
        "Name": "alsmri simulated ALS/control cohort (known truth)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "BSD-2-Clause",
        "Authors": ["alsmri simulate"],
        "HowToAcknowledge": "Anatomy derived from dcm_qa_xa30 (Chris Rorden, BSD-2-Clause).",
        "GeneratedBy": [{"Name": "alsmri simulate", "Version": __version__,
                         "Description": "tensors and T1w of a real subject, deformed per "
                                        "participant, planted effects, Rician noise"}],
        "SourceDatasets": [{"URL": "https://github.com/neurolabusc/dcm_qa_xa30",
                            "Version": source_name}],
    })
    (root / "README").write_text(
        "Simulated cohort written by `alsmri simulate`.\n\n"
        "Every participant's DWI and T1w derive from one real subject (ds-xa30): a tensor field\n"
        "fitted on its DWI and its T1w, given a random smooth deformation and head position.\n"
        "Patients have planted lower FA (higher radial diffusivity) in the tracts of\n"
        "truth.json's effects (placed from other atlases than the measured ones, through the\n"
        "T1w), with a focal component along the corticospinal tract, and precentral\n"
        "gray-matter atrophy;\n"
        "clinical scores derive from the planted values. `truth.json` (ignored by BIDS\n"
        "validation) holds every planted value per participant and the population parameters;\n"
        "derivatives/simulate-truth/ holds each participant's tract and focal weights.\n")
    (root / ".bidsignore").write_text(f"{TRUTH_FILE}\n")
    onset = any(p.get("onset_site") for p in participants)
    table = pd.DataFrame([{"participant_id": p["participant_id"], "age": p["age"],
                           "sex": p["sex"], "group": p["group"],
                           **({"onset_site": p.get("onset_site") or None} if onset else {}),
                           **({"site": p["site"]} if p.get("site") else {})}
                          for p in participants])
    table.to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    write_sessions_files(root, sessions or {})
    _json(root / "participants.json", {
        **({"site": {"Description": "acquisition site (simulated scanner effects: "
                                    "truth.json effects.sites)"}}
           if "site" in table.columns else {}),
        "age": {"Description": "age at the first session" if sessions else "age at scan",
                "Units": "years"},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "group": {"Description": "diagnostic group",
                  "Levels": {PATIENT_LABEL: "amyotrophic lateral sclerosis",
                             CONTROL_LABEL: "healthy control"}},
        **({"onset_site": {"Description": "site of symptom onset (patients)",
                           "Levels": {"spinal": "limb (spinal) onset",
                                      "bulbar": "bulbar onset"}}} if onset else {}),
    })
    names = list(effects["scores"])
    rows = [{"participant_id": p["participant_id"],
             **{n: scores.get(p["participant_id"], {}).get(n, np.nan) for n in names}}
            for p in participants]
    (root / "phenotype").mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=["participant_id", *names]).to_csv(
        root / "phenotype" / "clinical.tsv", sep="\t", index=False, na_rep="n/a")
    _json(root / "phenotype" / "clinical.json", {
        "MeasurementToolMetadata": {"Description": "clinical scores (simulated; patients only)"},
        **{n: {"LongName": s.get("long_name", n), "Description": s.get("long_name", n),
               "Units": s.get("units", "")} for n, s in effects["scores"].items()},
    })
    _json(root / TRUTH_FILE, truth)


def write_sessions_files(root: Path, sessions: dict[str, list[dict]]) -> None:
    """``sub-X/sub-X_sessions.tsv`` per participant: ``session_id, acq_time, age`` and the
    sessions' score (rows from :func:`bids_app.simulate.dataset.simulate_dataset`), with
    ``sessions.json`` describing them."""
    if not sessions:
        return
    columns = []
    for pid, rows in sessions.items():
        table = pd.DataFrame(rows)
        columns = list(table.columns)
        (Path(root) / pid).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(root) / pid / f"{pid}_sessions.tsv", sep="\t", index=False,
                     na_rep="n/a")
    _json(Path(root) / "sessions.json", {
        "acq_time": {"Description": "acquisition time (simulated: sessions interval_years "
                                    "apart)"},
        "age": {"Description": "age at the session", "Units": "years"},
        **{c: {"Description": "clinical score at the session (simulated: the first "
                              "session's score plus sessions.score_per_fa_change x the "
                              "planted relative FA decline)"}
           for c in columns if c not in ("session_id", "acq_time", "age")}})
