"""Every output declared in :mod:`bids_app.bids.outputs` passes the BIDS validator.

A fake participant's derivatives are written from the declarations alone (names through
:func:`~bids_app.bids.derivatives.build_path`, sidecars as the DerivativesDataSink writes
them: ``Sources`` plus the declared fields) next to the ``.bidsignore`` of
:func:`~bids_app.bids.derivatives.init_derivatives`, then validated offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids_validation import assert_valid, errors

from bids_app.bids import outputs
from bids_app.bids.derivatives import build_path, init_derivatives, write_atomic, write_json

#: Entities the workflows add at run time (the atlas of the warped label image).
RUN_ENTITIES = {"anat.atlas_t1w": {"atlas": "aal"}}
#: DWI entities of a run processed separately (``--dwi-runs separate``).
DWI_RUN_ENTITIES = {"acquisition": "b1000", "direction": "AP", "run": "2"}
TABLES = ("qc", "motion", "dwistats", "morph")
SIDECAR_EXTENSIONS = (".nii.gz", ".nii", ".tsv")
N_VOLUMES = 3


def declared() -> dict[str, outputs.Output]:
    """All participant outputs: DWI, anatomical and every parameter map of every model."""
    decl = {f"dwi.{key}": out for key, out in outputs.DWI_OUTPUTS.items()}
    decl |= {f"anat.{key}": out for key, out in outputs.ANAT_OUTPUTS.items()}
    for model, maps in outputs.DWI_MODELS.items():
        for param in maps:
            decl[f"dwi.{model}.{param}"] = outputs.dwi_map_output(
                model, param, model_description=f"{model} (test)")
    return decl


def produced_extension(key: str, out: outputs.Output) -> str:
    """Extension of the file the workflow produces when the declaration keeps it."""
    if out.extension:
        return out.extension
    last = key.rsplit(".", 1)[1]
    if last in ("bval", "bvec"):
        return f".{last}"
    if out.datatype == "figures":
        return ".svg"
    if out.suffix in TABLES:
        return ".tsv"
    if out.suffix == "xfm":
        return ".h5"
    return ".nii.gz"


def _nifti(path: Path, out: outputs.Output) -> None:
    shape: tuple[int, ...] = (4, 4, 4)
    if out.suffix == "dwi":
        shape = (4, 4, 4, N_VOLUMES)
    elif out.entities.get("param") == "colfa":
        shape = (4, 4, 4, 3)
    dtype = np.uint8 if out.suffix in ("mask", "dseg") else np.float32
    img = nib.Nifti1Image(np.ones(shape, dtype=dtype), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def _content(ext: str) -> str | bytes:
    return {".bval": "0 1000 1000\n",
            ".bvec": "0 1 0\n0 0 1\n0 0 0\n",
            ".tsv": "region\tvalue\nx\t1\n",
            ".svg": '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
            ".h5": b"\x89HDF\r\n\x1a\n" + bytes(8)}[ext]


def write_fake_participant(out_dir: Path, raw: Path, *, session: str | None,
                           dwi_entities: dict[str, str]) -> list[Path]:
    """Write one file (plus sidecar) per declared output; return the data files."""
    init_derivatives(out_dir, raw)
    sub = {"subject": "01", "session": session}
    written: dict[Path, str] = {}
    for key, out in declared().items():
        run_ent = dwi_entities if out.datatype in ("dwi", "figures") and key.startswith(
            "dwi.") else {}
        entities = {**sub, **run_ent, **out.entities, **RUN_ENTITIES.get(key, {})}
        ext = produced_extension(key, out)
        rel = build_path(entities, datatype=out.datatype, suffix=out.suffix, extension=ext)
        assert rel not in written, f"{key} and {written.get(rel)} are both written to {rel}"
        written[rel] = key
        dest = out_dir / rel
        if ext in (".nii.gz", ".nii"):
            _nifti(dest, out)
        else:
            write_atomic(dest, _content(ext))
        if ext in SIDECAR_EXTENSIONS:
            meta = {"Sources": [f"bids:raw:sub-01/{out.datatype}/sub-01_T1w.nii.gz"],
                    **out.sink_inputs().get("meta_dict", {})}
            write_json(dest.with_name(dest.name[: -len(ext)] + ".json"), meta)
    return [out_dir / rel for rel in written]


@pytest.fixture()
def raw(tmp_path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "raw", "BIDSVersion": "1.9.0"}))
    return root


@pytest.mark.parametrize(("session", "dwi_entities"), [(None, {}), ("1", DWI_RUN_ENTITIES)],
                         ids=["plain", "session-and-run"])
def test_every_declared_output_validates(tmp_path, raw, session, dwi_entities):
    out_dir = tmp_path / "derivatives"
    files = write_fake_participant(out_dir, raw, session=session, dwi_entities=dwi_entities)
    # the group level and the report write here too
    write_atomic(out_dir / "group" / "group_desc-joined_participants.tsv", "a\n1\n")
    write_atomic(out_dir / "sub-01.html", "<html></html>\n")
    assert len(files) >= len(outputs.DWI_OUTPUTS) + len(outputs.ANAT_OUTPUTS)
    assert_valid(out_dir)


def test_validator_reports_what_the_bidsignore_hid(tmp_path, raw):
    """Guard against a vacuous pass: without the .bidsignore the extra files are errors."""
    out_dir = tmp_path / "derivatives"
    write_fake_participant(out_dir, raw, session=None, dwi_entities={})
    (out_dir / ".bidsignore").unlink()
    codes = {(e["code"], e.get("location")) for e in errors(out_dir)}
    assert ("NOT_INCLUDED", "/sub-01/figures/") in codes
