"""brainlife.io wrapper for alsmri (see README, "brainlife.io").

Reads ``config.json`` (``t1``, ``dwi``, ``bvals``, ``bvecs``; optional ``subject``, ``_inputs``
meta), builds a one-subject BIDS tree, runs ``alsmri ... participant`` (the ``alsmri`` on PATH,
or the command in ``$ALSMRI_CMD``, e.g. ``singularity exec docker://alsmri/alsmri alsmri``) and
converts the derivatives to brainlife datatypes in the working directory.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd


def _subject(config: dict) -> str:
    label = config.get("subject")
    for item in config.get("_inputs", []):
        label = label or item.get("meta", {}).get("subject")
    label = "".join(ch for ch in str(label or "01") if ch.isalnum())
    return label or "01"


def build_bids(config: dict, root: Path) -> str:
    """Write a one-subject BIDS dataset from the brainlife inputs; return the label."""
    label = _subject(config)
    sub = root / f"sub-{label}"
    (sub / "anat").mkdir(parents=True, exist_ok=True)
    (sub / "dwi").mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "brainlife input", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    (root / "participants.tsv").write_text(f"participant_id\nsub-{label}\n")
    if config.get("t1"):
        shutil.copyfile(config["t1"], sub / "anat" / f"sub-{label}_T1w.nii.gz")
    if config.get("dwi"):
        stem = sub / "dwi" / f"sub-{label}_dwi"
        shutil.copyfile(config["dwi"], f"{stem}.nii.gz")
        shutil.copyfile(config["bvals"], f"{stem}.bval")
        shutil.copyfile(config["bvecs"], f"{stem}.bvec")
        meta = {k: v for k, v in config.items() if k in ("PhaseEncodingDirection",
                                                          "TotalReadoutTime")}
        Path(f"{stem}.json").write_text(json.dumps(meta))
    return label


def tractmeasures(dwistats: Path, label: str) -> pd.DataFrame:
    """neuro/tractmeasures table: one row per tract (structureID), one node, one column per
    metric (probability-weighted means)."""
    stats = pd.read_csv(dwistats, sep="\t")
    stats = stats[stats["statistic"] == "wmean"]
    stats = stats.assign(structureID=stats["atlas"] + "_" + stats["region"] + "_"
                         + stats["hemisphere"])
    wide = stats.pivot_table(index="structureID", columns="metric", values="value")
    wide = wide.reset_index()
    wide.insert(0, "subjectID", label)
    wide.insert(2, "nodeID", 1)
    return wide


def parc_stats(morph: Path) -> pd.DataFrame:
    """GM volumes per region/hemisphere (mm^3 and % TIV), one row per structure."""
    stats = pd.read_csv(morph, sep="\t")
    wide = stats.pivot_table(index=["region", "hemisphere"], columns="metric",
                             values="value").reset_index()
    wide.insert(0, "structureID", wide["region"] + "_" + wide["hemisphere"])
    return wide


def app_options(config: dict) -> list[str]:
    """alsmri options from the brainlife App's configuration fields."""
    opts = ["--nprocs", str(config.get("nprocs", os.cpu_count() or 1))]
    if config.get("denoise"):
        opts += ["--denoise", str(config["denoise"])]
    if "unringing" in config:
        opts.append("--unringing" if config["unringing"] else "--no-unringing")
    if config.get("sdc"):
        opts += ["--sdc", str(config["sdc"])]
    if config.get("tensor_fit"):
        opts += ["--tensor-fit", str(config["tensor_fit"])]
    return opts


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    work = Path.cwd()
    bids, out = work / "bids", work / "alsmri_out"
    label = build_bids(config, bids)
    cmd = shlex.split(os.environ.get("ALSMRI_CMD", "alsmri"))
    rc = subprocess.call([*cmd, str(bids), str(out), "participant", "--participant-label",
                          label, "-w", str(work / "alsmri_work"), *app_options(config)])
    if rc != 0:
        Path("product.json").write_text(json.dumps({"brainlife": [
            {"type": "error", "msg": f"alsmri participant level failed with exit code {rc}"}]}))
        return rc
    messages, product = [], {}
    dwistats = out / f"sub-{label}" / "dwi" / f"sub-{label}_desc-tracts_dwistats.tsv"
    if dwistats.is_file():
        tractmeasures(dwistats, label).to_csv("tractmeasures.csv", index=False)
        messages.append({"type": "success", "msg": "tract measures written"})
    morph = out / f"sub-{label}" / "anat" / f"sub-{label}_desc-gmvolume_morph.tsv"
    if morph.is_file():
        Path("parc-stats").mkdir(exist_ok=True)
        parc = parc_stats(morph)
        parc.to_csv("parc-stats/gm_volumes.csv", index=False)
        whole = parc[parc["hemisphere"] == "bilateral"]
        product.update({f"{r}_mm3": float(v) for r, v in zip(whole["region"], whole["gmv"])})
        messages.append({"type": "success", "msg": "GM volumes written"})
    for qc in sorted((out / f"sub-{label}").rglob("*_qc.tsv")):
        row = pd.read_csv(qc, sep="\t").iloc[0].to_dict()
        product.update({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    report_dir = Path("output_report")
    report_dir.mkdir(exist_ok=True)
    shutil.copyfile(out / f"sub-{label}.html", report_dir / "index.html")
    product["brainlife"] = messages
    Path("product.json").write_text(json.dumps(product, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "config.json"))
