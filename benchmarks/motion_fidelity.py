"""Motion correction on motion-free simulated data: spurious motion, FA fidelity, wall time.

Usage::

    python benchmarks/motion_fidelity.py BIDS [--participant sub-001 ...] [--denoise mppca]
        [--plant-mm 1.0] [--min-displacement 0]

``BIDS`` is a dataset made by ``alsmri simulate`` (or ``benchmarks/tract_validation.py``):
no between-volume motion is simulated (:mod:`bids_app.simulate`), so every motion estimate is
an error. For each participant the DWI series is denoised as asked, then preprocessed twice
as the participant level does (:func:`~bids_app.core.dwi.sdc.combine_runs`, brain mask,
WLS tensor): without motion correction and with
:func:`~bids_app.core.dwi.motion.motion_correct`. Printed per participant: motion-correction
wall time, largest spurious displacement (mm, over the head) and number of volumes moved, and
the FA under the simulator's own tract weights (``simweights``, alsmri's brain mask) with and
without motion correction next to the noise-free truth. With ``--plant-mm``, volumes 5 and 10
are also shifted by that many mm along the first voxel axis and the recovered shift printed.
``--min-displacement 0`` applies every estimate (what the floor of
:data:`~bids_app.core.dwi.motion.MOTION_MIN_DISPLACEMENT` avoids).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bids_app.core.dwi.motion import MOTION_MIN_DISPLACEMENT, motion_correct
from bids_app.core.dwi.preproc import denoise, dwi_brain_mask
from bids_app.core.dwi.roistats import tract_stats
from bids_app.core.dwi.sdc import combine_runs, estimate_run_alignment
from bids_app.core.dwi.tensor import fit_tensor
from bids_app.settings import DEFAULT_SEED, DwiSettings

B0 = DwiSettings().b0_threshold


def _simweights_fa(bids: Path, part: dict, data, bvals, bvecs, affine, zooms, matrices, tmp):
    align = estimate_run_alignment([data[..., bvals < B0].mean(axis=3)], affine=affine,
                                   polarities=[1], pe_axis=None, out_dir=tmp, seed=DEFAULT_SEED,
                                   zooms=zooms)
    out, bval, bvec = combine_runs([data], [bvals], [bvecs], affine=affine, alignment=align,
                                   volume_matrices=None if matrices is None else [matrices],
                                   b0_threshold=B0)
    mask, _ = dwi_brain_mask(out, bval, b0_threshold=B0, zooms=zooms, source="benchmark")
    fa = fit_tensor(out, bval, bvec, mask=mask, fit_method="wls", b0_threshold=B0)["fa"]
    probmaps = {}
    for key, rel in part["maps"].items():
        kind, _atlas, region, hemi = key.split("/")
        if kind == "tract" and hemi in ("L", "R"):
            probmaps[(region, hemi)] = nib.load(bids / rel).get_fdata(dtype=np.float32)
    table = tract_stats({"fa": fa}, probmaps, mask=mask, threshold=0.5, atlas="simweights")
    table = table[table.statistic == "wmean"]
    return {(r.region, r.hemisphere): r.value for r in table.itertuples()}


def _participant(opts: argparse.Namespace, truth: dict, pid: str, tmp: Path) -> None:
    part = truth["participants"][pid]
    dwi = opts.bids / pid / "dwi"
    img = nib.load(next(dwi.glob("*_dwi.nii.gz")))
    bvals = np.loadtxt(next(dwi.glob("*_dwi.bval")), ndmin=1)
    bvecs = np.loadtxt(next(dwi.glob("*_dwi.bvec")), ndmin=2).T
    zooms = img.header.get_zooms()[:3]
    data, _ = denoise(img.get_fdata(dtype=np.float32), method=opts.denoise, bvals=bvals,
                      b0_threshold=B0)
    if opts.plant_mm:
        for k in (5, 10):
            data[..., k] = ndimage.shift(data[..., k], (opts.plant_mm / zooms[0], 0, 0),
                                         order=3)
    start = time.perf_counter()
    res = motion_correct(data, affine=img.affine, bvals=bvals, bvecs=bvecs,
                         b0_threshold=B0, seed=DEFAULT_SEED,
                         min_displacement=opts.min_displacement)
    wall = time.perf_counter() - start
    moved = [k for k, m in enumerate(res.matrices) if not np.array_equal(m, np.eye(4))]
    print(f"{pid} ({part['group']}): motion correction {wall:.1f} s; largest spurious "
          f"displacement {res.displacement.max():.2f} mm; volumes moved {moved}", flush=True)
    if opts.plant_mm:
        print("  recovered shift (mm) of volumes 5, 10: "
              f"{np.round(res.displacement[[5, 10]], 2).tolist()}")
        return
    without = _simweights_fa(opts.bids, part, data, bvals, bvecs, img.affine, zooms,
                             None, tmp)
    with_mc = _simweights_fa(opts.bids, part, data, bvals, bvecs, img.affine, zooms,
                             np.stack(res.matrices), tmp)
    for t in part["tracts"]:
        key = (t["region"], t["hemisphere"])
        if key in without:
            print(f"  {key[0]:>16s} {key[1]}: truth {t['fa']:.4f}  no MC "
                  f"{without[key]:.4f}  MC {with_mc[key]:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bids", type=Path)
    parser.add_argument("--participant", action="append", default=None)
    parser.add_argument("--denoise", default="mppca")
    parser.add_argument("--plant-mm", type=float, default=0.0)
    parser.add_argument("--min-displacement", type=float, default=MOTION_MIN_DISPLACEMENT,
                        help="smallest applied motion (voxels; 0: apply every estimate)")
    opts = parser.parse_args(argv)
    truth = json.loads((opts.bids / "truth.json").read_text())
    pids = opts.participant or sorted(truth["participants"])
    with tempfile.TemporaryDirectory() as scratch:
        for pid in pids:
            _participant(opts, truth, pid, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
