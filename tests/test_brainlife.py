"""brainlife.io wrapper: config.json -> BIDS -> participant run -> brainlife datatypes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_brainlife_main_on_xa30(ds_xa30, built_data_dir, tmp_path):
    sample = json.loads((REPO / "brainlife" / "config.json.sample").read_text())
    config = {k: (str(ds_xa30 / v.split("ds-xa30/")[1]) if isinstance(v, str) and "ds-xa30/" in v
                  else v) for k, v in sample.items()}
    # options a brainlife App exposes; the fast settings keep CI within budget
    config.update(nprocs=2, denoise="none", unringing=False)
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, ALSMRI_DATA=str(built_data_dir),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run([str(REPO / "brainlife" / "main")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tm = pd.read_csv(tmp_path / "tractmeasures.csv")
    assert list(tm.columns[:3]) == ["subjectID", "structureID", "nodeID"]
    assert {"fa", "md", "ad", "rd"} <= set(tm.columns)
    assert "hcp842_cst_L" in set(tm["structureID"])
    assert tm["fa"].between(0.1, 0.9).all()
    parc = pd.read_csv(tmp_path / "parc-stats" / "gm_volumes.csv")
    assert {"precentral_L", "precentral_R", "tiv_bilateral"} <= set(parc["structureID"])
    product = json.loads((tmp_path / "product.json").read_text())
    assert product["brainlife"] and all(m["type"] == "success" for m in product["brainlife"])
    assert (tmp_path / "product.json").stat().st_size < 20_000
    assert "alsmri report" in (tmp_path / "output_report" / "index.html").read_text()
