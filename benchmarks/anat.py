"""Benchmark the anatomical workflow: wall time and peak RSS.

Runs ``init_anat_wf`` on the ds-xa30 T1w (2 mm, 96x128x128) and on a 1 mm copy upsampled to
176x256x256, each in a fresh subprocess (peak RSS = the child's ``ru_maxrss``).

Usage::

    python benchmarks/anat.py [--nthreads 2] [--only 2mm|1mm] [--keep DIR]

Needs ``$ALSMRI_SHARED`` (default ``../shared``) and a built data directory (``$ALSMRI_DATA``
or ``alsmri fetch-data``). Targets: <= 60 s (2 mm) and <= 4 min (1 mm) on two cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
T1W = SHARED / "data" / "bids" / "ds-xa30" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
TARGETS = {"2mm": 60.0, "1mm": 240.0}

_CHILD = """
import sys
from pathlib import Path
from bids_app.settings import AnatSettings
from bids_app.workflows.anat import init_anat_wf
t1w, out, work, nthreads = sys.argv[1:5]
wf = init_anat_wf(t1w=Path(t1w), settings=AnatSettings(), output_dir=Path(out),
                  data_dir=None, omp_nthreads=int(nthreads))
wf.base_dir = work
wf.config["execution"]["remove_unnecessary_outputs"] = False
wf.run(plugin="Linear")
"""


def make_1mm_copy(src: Path, dest: Path) -> Path:
    """Upsample ``src`` to 1 mm (linear) and centre-crop/pad to 176x256x256."""
    import nibabel as nib
    import numpy as np
    from nibabel.processing import resample_from_to

    img = nib.load(src)
    shape = (176, 256, 256)
    centre = img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2, 1]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = centre[:3] - (np.array(shape) - 1) / 2
    out = resample_from_to(img, (shape, affine), order=1)
    out = nib.Nifti1Image(np.asarray(out.dataobj, dtype=np.float32), affine)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, dest)
    return dest


def run_one(t1w: Path, root: Path, nthreads: int) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one workflow run in a subprocess."""
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(nthreads),
               OMP_NUM_THREADS=str(nthreads), MPLBACKEND="Agg")
    env.setdefault("TEMPLATEFLOW_HOME", str(SHARED / "data" / "templateflow"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _CHILD, str(t1w), str(root / "out"),
                    str(root / "work"), str(nthreads)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nthreads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(TARGETS))
    parser.add_argument("--keep", type=Path, help="keep outputs here (default: temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alsmri-bench-anat-") as tmp:
        root = args.keep or Path(tmp)
        cases = {"2mm": T1W}
        if args.only in (None, "1mm"):
            cases["1mm"] = make_1mm_copy(T1W, root / "bids1mm" / "sub-01" / "anat"
                                         / "sub-01_T1w.nii.gz")
        print(f"{'case':<6}{'shape':>14}{'wall_s':>9}{'target_s':>10}{'peak_rss_MiB':>14}")
        for name, path in cases.items():
            if args.only and name != args.only:
                continue
            import nibabel as nib

            shape = "x".join(map(str, nib.load(path).shape))
            wall, rss = run_one(path, root / name, args.nthreads)
            flag = "" if wall <= TARGETS[name] else "  (over target)"
            print(f"{name:<6}{shape:>14}{wall:>9.1f}{TARGETS[name]:>10.0f}{rss:>14.0f}{flag}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
