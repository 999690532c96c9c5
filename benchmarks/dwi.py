"""Benchmark of the diffusion branch on ds-xa30.

Prints the wall time, CPU time and peak RSS of one DWI-branch run (nipype MultiProc, 2
processes by default), and the tensor-fit time ratio alsmri (dipy WLS) / MRtrix3
(``dwi2tensor`` + ``tensor2metric``) on the same preprocessed DWI and mask, each timed
end to end (read NIfTI, fit, write FA/MD).

Usage::

    python benchmarks/dwi.py [--nprocs 2] [--denoise patch2self] [--no-unringing]
                             [--data-dir $ALSMRI_DATA] [--keep DIR]
    python benchmarks/dwi.py --models   # DKI / free-water DTI (benchmarks/dwi_models.py)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHARED / "data" / "templateflow"))


def _peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024.0


def _cpu_s() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_branch(out: Path, *, nprocs: int, denoise: str, unringing: bool,
               data_dir: Path | None) -> float:
    from bids_app.bids.plan import plan_participant
    from bids_app.bids.records import DwiRun, SubjectSession
    from bids_app.settings import DwiSettings
    from bids_app.workflows.dwi import init_dwi_wf

    dwi = SHARED / "data" / "bids" / "ds-xa30" / "sub-01" / "dwi"
    runs = tuple(
        DwiRun(dwi=dwi / f"sub-01_dir-{d}_dwi.nii.gz", bval=dwi / f"sub-01_dir-{d}_dwi.bval",
               bvec=dwi / f"sub-01_dir-{d}_dwi.bvec",
               metadata=json.loads((dwi / f"sub-01_dir-{d}_dwi.json").read_text()),
               entities={"subject": "01", "direction": d})
        for d in ("AP", "PA"))
    settings = DwiSettings(denoise=denoise, unringing=unringing)
    plan = plan_participant(SubjectSession(subject="01", session=None, dwi_runs=runs), settings)
    wf = init_dwi_wf(units=plan.dwi_units, settings=settings,
                     output_dir=out / "derivatives", data_dir=data_dir)
    from bids_app.cli.execute import execution_config

    wf.base_dir = str(out / "work")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    wf.config["execution"].update(execution_config(out / "logs"))
    start = time.perf_counter()
    wf.run(plugin="MultiProc", plugin_args={"n_procs": nprocs})
    return time.perf_counter() - start


def tensor_ratio(deriv: Path, tmp: Path, *, repeats: int = 3) -> tuple[float, float | None]:
    """Best-of-``repeats`` end-to-end tensor-fit times (alsmri, MRtrix3)."""
    import nibabel as nb
    import numpy as np

    from bids_app.bids.derivatives import build_path
    from bids_app.bids.outputs import DWI_OUTPUTS
    from bids_app.core.dwi.tensor import fit_tensor
    from bids_app.settings import DwiSettings

    settings = DwiSettings()  # the participant defaults, as in the branch run

    def path(key: str, extension: str) -> Path:
        out = DWI_OUTPUTS[key]
        return deriv / build_path({"subject": "01", **out.entities}, datatype=out.datatype,
                                  suffix=out.suffix, extension=extension)

    pre = str(path("dwi_preproc", ".nii.gz"))[:-len(".nii.gz")]
    mask = path("mask", ".nii.gz")

    def ours():
        img = nb.load(f"{pre}.nii.gz")
        maps = fit_tensor(img.get_fdata(dtype=np.float32), np.loadtxt(f"{pre}.bval"),
                          np.loadtxt(f"{pre}.bvec").T,
                          mask=np.asarray(nb.load(mask).dataobj) > 0,
                          fit_method=settings.tensor_fit, b0_threshold=settings.b0_threshold)
        for name in ("fa", "md"):
            nb.save(nb.Nifti1Image(maps[name], img.affine), tmp / f"ours_{name}.nii.gz")

    def mrtrix():
        dt = tmp / "dt.nii.gz"
        subprocess.run(["dwi2tensor", "-quiet", "-force", "-fslgrad", f"{pre}.bvec",
                        f"{pre}.bval", "-mask", str(mask), f"{pre}.nii.gz", str(dt)],
                       check=True)
        subprocess.run(["tensor2metric", "-quiet", "-force", "-fa", str(tmp / "fa.nii.gz"),
                        "-adc", str(tmp / "md.nii.gz"), "-mask", str(mask), str(dt)],
                       check=True)

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_ours = best(ours)
    t_mrtrix = best(mrtrix) if shutil.which("dwi2tensor") else None
    return t_ours, t_mrtrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--denoise", default="mppca", choices=["mppca", "patch2self", "none"])
    parser.add_argument("--no-unringing", dest="unringing", action="store_false")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ["ALSMRI_DATA"]) if os.environ.get(
                            "ALSMRI_DATA") else None)
    parser.add_argument("--keep", type=Path, help="keep outputs here (default: temp dir)")
    parser.add_argument("--models", action="store_true",
                        help="only the multi-shell models (DKI, free-water DTI): MRtrix3 "
                             "agreement and fit times on a phantom (benchmarks/dwi_models.py)")
    args = parser.parse_args(argv)
    if args.models:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import dwi_models

        return dwi_models.main(["--threads", str(max(1, args.nprocs - 1))])
    # threads as `alsmri participant` sets them (bids_app/cli/execute.py), before numpy loads
    from bids_app.settings import default_omp_nthreads

    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, str(default_omp_nthreads(args.nprocs)))
    tmp_ctx = tempfile.TemporaryDirectory(prefix="alsmri-bench-dwi-")
    out = args.keep or Path(tmp_ctx.name)
    out.mkdir(parents=True, exist_ok=True)
    cpu0 = _cpu_s()
    wall = run_branch(out, nprocs=args.nprocs, denoise=args.denoise, unringing=args.unringing,
                      data_dir=args.data_dir)
    cpu = _cpu_s() - cpu0
    rss = _peak_rss_mb()
    t_ours, t_mrtrix = tensor_ratio(out / "derivatives", out)
    print(f"settings: denoise={args.denoise} unringing={args.unringing} nprocs={args.nprocs}")
    print(f"DWI branch wall time: {wall:.1f} s (target <= 60 s on 2 cores)")
    print(f"DWI branch CPU time (all processes): {cpu:.1f} s")
    print(f"peak RSS (largest process): {rss:.0f} MB")
    print(f"machine load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"tensor fit alsmri (dipy WLS): {t_ours:.2f} s")
    if t_mrtrix is None:
        print("tensor fit MRtrix3: not installed (apt-get install mrtrix3); ratio n/a")
    else:
        print(f"tensor fit MRtrix3 (dwi2tensor + tensor2metric): {t_mrtrix:.2f} s")
        print(f"tensor-fit time ratio alsmri/MRtrix3: {t_ours / t_mrtrix:.2f} (target <= 1.2)")
    tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
