"""Benchmark and independent check of the multi-shell models (DKI, free-water DTI).

A multi-shell phantom brain is synthesised on a 2 mm grid from the ds-xa30 tensor field (its
b = 2500 fit, resampled): per voxel a free-water compartment (fraction from MD), an
intra-axonal stick along the fitted principal direction and an extra-axonal tensor
(non-Gaussian in sum), b = 0 (6) / 1000 / 2000 / 3000 (30 directions each), Rician noise at
b0 SNR 30. On these data it prints

- the low-shell DTI agreement: alsmri's tensor FA on b0 + 1000 vs MRtrix3 ``dwi2tensor`` on
  the same volumes (Pearson r in the brain mask);
- the DKI agreement: alsmri's kurtosis tensor elements and MK vs MRtrix3
  ``dwi2tensor -dkt`` on the same volumes, MRtrix's MK computed here from its D and W by the
  standard formula (mean of the directional kurtosis over 2,000 directions);
- fit times, each end to end (read NIfTI, fit, write the maps): alsmri DKI vs
  ``dwi2tensor -dkt`` (same thread count), alsmri free-water DTI, and the peak RSS.

Usage::

    python benchmarks/dwi_models.py [--threads 1] [--res 2] [--repeats 2] [--keep DIR]
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
RAW = SHARED / "data" / "bids" / "ds-xa30" / "sub-01" / "dwi" / "sub-01_dir-AP_dwi"
SHELLS = (1000.0, 2000.0, 3000.0)
#: MRtrix3 ``-dkt`` volume order (W1111 ... W1233) as indices of dipy's 15 kurtosis elements
#: (xxxx, yyyy, zzzz, xxxy, xxxz, xyyy, yyyz, xzzz, yzzz, xxyy, xxzz, yyzz, xxyz, xyyz, xyzz).
MRTRIX_TO_DIPY = (0, 1, 2, 3, 4, 5, 7, 6, 8, 9, 10, 11, 12, 13, 14)
#: Multiplicity of each MRtrix element in W(n) = sum W_ijkl n_i n_j n_k n_l, and its indices.
W_TERMS = ((1, (0, 0, 0, 0)), (1, (1, 1, 1, 1)), (1, (2, 2, 2, 2)),
           (4, (0, 0, 0, 1)), (4, (0, 0, 0, 2)), (4, (0, 1, 1, 1)), (4, (0, 2, 2, 2)),
           (4, (1, 1, 1, 2)), (4, (1, 2, 2, 2)), (6, (0, 0, 1, 1)), (6, (0, 0, 2, 2)),
           (6, (1, 1, 2, 2)), (12, (0, 0, 1, 2)), (12, (0, 1, 1, 2)), (12, (0, 1, 2, 2)))


def _peak_rss_mb() -> float:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0


def _directions(n: int, seed: int):
    import numpy as np
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(seed)
    hemi = HemiSphere(theta=np.arccos(rng.uniform(-1, 1, n)), phi=rng.uniform(0, 2 * np.pi, n))
    return disperse_charges(hemi, 1000)[0].vertices


def make_phantom(out: Path, *, res: float, snr: float = 30.0, seed: int = 1):
    """Write ``dwi.nii.gz``/``.bval``/``.bvec`` and ``mask.nii.gz``; return the mask."""
    import nibabel as nb
    import numpy as np
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel, decompose_tensor, from_lower_triangular
    from scipy.ndimage import zoom

    from bids_app.core.dwi.preproc import dwi_brain_mask

    img = nb.load(f"{RAW}.nii.gz")
    data = img.get_fdata(dtype=np.float32)
    bvals = np.loadtxt(f"{RAW}.bval")
    bvecs = np.loadtxt(f"{RAW}.bvec").T
    zooms = img.header.get_zooms()[:3]
    mask, _ = dwi_brain_mask(data, bvals, b0_threshold=50.0, zooms=zooms, source=str(RAW))
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(data, mask=mask)
    factor = np.asarray(zooms) / res
    lower = np.stack([zoom(fit.lower_triangular()[..., i], factor, order=1)
                      for i in range(6)], axis=-1)
    big = zoom(mask.astype(np.uint8), factor, order=0) > 0
    evals, evecs = decompose_tensor(from_lower_triangular(lower[big]), min_diffusivity=1e-5)
    # the b = 2500 fit underestimates diffusivities: scale to MD ~ 0.75e-3 in white matter
    evals = evals * 1.25
    md = evals.mean(axis=1)
    fa = np.sqrt(1.5 * ((evals - md[:, None]) ** 2).sum(1) / (evals ** 2).sum(1))
    fw = np.clip((md - 0.8e-3) / (3.0e-3 - 0.8e-3), 0.0, 1.0)
    awf = np.clip(0.1 + 0.6 * fa, 0.0, 0.6)
    e1 = evecs[:, :, 0]
    de_par, de_perp = evals[:, 0] * 1.2, evals[:, 1:].mean(axis=1) * 1.1

    g_bvals, g_bvecs = [0.0] * 6, [np.zeros(3)] * 6
    for i, b in enumerate(SHELLS):
        g_bvals += [b] * 30
        g_bvecs += list(_directions(30, seed=10 + i))
    g_bvals, g_bvecs = np.array(g_bvals), np.array(g_bvecs)
    cos2 = (e1 @ g_bvecs.T) ** 2  # (n, g)
    b = g_bvals[None]
    tissue = (awf[:, None] * np.exp(-b * 1.0e-3 * cos2)
              + (1 - awf[:, None]) * np.exp(-b * (de_perp[:, None]
                                                  + (de_par - de_perp)[:, None] * cos2)))
    signal = 1000.0 * (fw[:, None] * np.exp(-b * 3.0e-3) + (1 - fw[:, None]) * tissue)
    rng = np.random.default_rng(seed)
    sigma = 1000.0 / snr
    noisy = np.hypot(signal + rng.normal(0, sigma, signal.shape),
                     rng.normal(0, sigma, signal.shape)).astype(np.float32)
    vol = np.zeros(big.shape + (len(g_bvals),), np.float32)
    vol[big] = noisy
    affine = np.diag([res, res, res, 1.0])
    nb.save(nb.Nifti1Image(vol, affine), out / "dwi.nii.gz")
    nb.save(nb.Nifti1Image(big.astype(np.uint8), affine), out / "mask.nii.gz")
    np.savetxt(out / "dwi.bval", g_bvals[None], fmt="%g")
    np.savetxt(out / "dwi.bvec", g_bvecs.T, fmt="%.6f")
    return big


def _subset(out: Path, name: str, keep):
    import nibabel as nb
    import numpy as np

    img = nb.load(out / "dwi.nii.gz")
    nb.save(nb.Nifti1Image(img.get_fdata(dtype=np.float32)[..., keep], img.affine),
            out / f"{name}.nii.gz")
    np.savetxt(out / f"{name}.bval", np.loadtxt(out / "dwi.bval")[keep][None], fmt="%g")
    np.savetxt(out / f"{name}.bvec", np.loadtxt(out / "dwi.bvec")[:, keep], fmt="%.6f")


def _timed(fn, repeats: int = 1):
    """Best wall time of ``repeats`` runs, and the result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def _mrtrix_mk(dt, w, n_dirs: int = 2000, chunk: int = 5000):
    """MK = mean over directions of K(n) = MD^2 W(n) / D(n)^2 (MRtrix D and W)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = rng.normal(size=(n_dirs, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    # D(n) and W(n) are linear in the tensor elements: one matrix of direction terms each
    d_terms = np.stack([n[:, 0] ** 2, n[:, 1] ** 2, n[:, 2] ** 2, 2 * n[:, 0] * n[:, 1],
                        2 * n[:, 0] * n[:, 2], 2 * n[:, 1] * n[:, 2]])  # (6, n_dirs)
    w_terms = np.stack([mult * np.prod(n[:, list(idx)], axis=1) for mult, idx in W_TERMS])
    out = np.empty(len(dt))
    for start in range(0, len(dt), chunk):
        d, ww = dt[start:start + chunk], w[start:start + chunk]
        dn = d @ d_terms
        md = d[:, :3].mean(axis=1)
        kn = np.clip(md[:, None] ** 2 * (ww @ w_terms) / np.maximum(dn, 1e-9) ** 2, 0.0, 3.0)
        out[start:start + chunk] = kn.mean(axis=1)
    return out


def run(out: Path, *, res: float, threads: int, repeats: int) -> None:
    import nibabel as nb
    import numpy as np
    from dipy.core.gradients import gradient_table
    from dipy.reconst import dki

    from bids_app.bids.model_plan import plan_models
    from bids_app.bids.models import DWI_MODELS
    from bids_app.core.dwi.kurtosis import dki_wls
    from bids_app.core.dwi.shells import detect_shells, select_volumes
    from bids_app.settings import DwiSettings

    t_make, mask = _timed(lambda: make_phantom(out, res=res))
    bvals, bvecs = np.loadtxt(out / "dwi.bval"), np.loadtxt(out / "dwi.bvec").T
    plans = {p.model: p for p in plan_models(detect_shells(bvals, bvecs, b0_threshold=50.0),
                                             DwiSettings())}
    print(f"phantom: {mask.shape} at {res:g} mm, {int(mask.sum())} brain voxels, "
          f"{len(bvals)} volumes (made in {t_make:.0f} s)")
    for name, plan in plans.items():
        print(f"  plan {name}: {plan.note}")
    keep = {name: select_volumes(bvals, p.shells, b0_threshold=50.0)
            for name, p in plans.items() if p.runs}
    _subset(out, "low", keep["tensor"])
    nt = ["-nthreads", str(threads)]

    def ours(model: str, src: str = "dwi"):
        def go():
            img = nb.load(out / f"{src}.nii.gz")
            b, v = np.loadtxt(out / f"{src}.bval"), np.loadtxt(out / f"{src}.bvec").T
            sel = keep[model] if src == "dwi" else slice(None)
            opts = DWI_MODELS[model].fit_options(DwiSettings())
            if DWI_MODELS[model].threaded:
                opts["nthreads"] = threads
            maps = DWI_MODELS[model].fit(img.get_fdata(dtype=np.float32)[..., sel], b[sel],
                                         v[sel], mask=nb.load(out / "mask.nii.gz").get_fdata()
                                         > 0, b0_threshold=50.0, **opts)
            for key, arr in maps.items():
                nb.save(nb.Nifti1Image(arr, img.affine), out / f"ours_{model}_{key}.nii.gz")
            return maps
        return go

    def mrtrix(src: str, dkt: bool):
        def go():
            cmd = ["dwi2tensor", "-quiet", "-force", *nt, "-fslgrad", str(out / f"{src}.bvec"),
                   str(out / f"{src}.bval"), "-mask", str(out / "mask.nii.gz")]
            if dkt:
                cmd += ["-dkt", str(out / f"mrtrix_{src}_dkt.nii.gz")]
            subprocess.run([*cmd, str(out / f"{src}.nii.gz"),
                            str(out / f"mrtrix_{src}_dt.nii.gz")], check=True)
            if not dkt:
                subprocess.run(["tensor2metric", "-quiet", "-force", *nt, "-fa",
                                str(out / "mrtrix_fa.nii.gz"), "-mask",
                                str(out / "mask.nii.gz"), str(out / f"mrtrix_{src}_dt.nii.gz")],
                               check=True)
        return go

    t_tensor, tensor = _timed(ours("tensor"))
    t_mr_tensor, _ = _timed(mrtrix("low", dkt=False))
    # interleaved repeats: the machine's load changes over minutes
    t_dki, t_mr_dki = float("inf"), float("inf")
    for _ in range(repeats):
        t, dki_maps = _timed(ours("dki"))
        t_dki = min(t_dki, t)
        t_mr_dki = min(t_mr_dki, _timed(mrtrix("dwi", dkt=True))[0])
    t_fw, fw_maps = _timed(ours("fwdti"))

    fa_mr = nb.load(out / "mrtrix_fa.nii.gz").get_fdata()[mask]
    r_fa = np.corrcoef(tensor["fa"][mask], fa_mr)[0, 1]
    dt_mr = nb.load(out / "mrtrix_dwi_dt.nii.gz").get_fdata()[mask]
    w_mr = nb.load(out / "mrtrix_dwi_dkt.nii.gz").get_fdata()[mask]
    mk_mr = _mrtrix_mk(dt_mr, w_mr)
    mk = dki_maps["mk"][mask]
    r_mk = np.corrcoef(mk, mk_mr)[0, 1]
    # alsmri's kurtosis tensor elements, same fit as the maps
    data = nb.load(out / "dwi.nii.gz").get_fdata(dtype=np.float32)[mask]
    gtab = gradient_table(bvals, bvecs=bvecs)
    x = dki.design_matrix(gtab)
    params, _ = dki_wls(x, np.maximum(data, 1e-4), min_diffusivity=1e-6 / -x.min())
    kt = params[:, 12:27]
    # FSL b-vectors vs MRtrix scanner space: one axis may be reflected (elements odd in it
    # change sign); the sign is read from the diffusion tensor's off-diagonal elements
    d_ours = np.stack([
        (params[:, 3:12].reshape(-1, 3, 3) * params[:, None, :3]
         @ params[:, 3:12].reshape(-1, 3, 3).transpose(0, 2, 1))[:, i, j]
        for i, j in ((0, 1), (0, 2), (1, 2))], axis=1)
    sign = np.sign([np.corrcoef(d_ours[:, k], dt_mr[:, 3 + k])[0, 1] for k in range(3)])
    print(f"  axis signs of MRtrix's tensor vs alsmri's (xy, xz, yz): {sign.tolist()}")
    r_kt = []
    for k, dk in enumerate(MRTRIX_TO_DIPY):
        r_kt.append(abs(np.corrcoef(kt[:, dk], w_mr[:, k])[0, 1]))
    scale = np.median(w_mr[:, 0] / np.where(kt[:, 0] != 0, kt[:, 0], np.nan))
    good = (fw_maps["fw"][mask] < 0.5)  # tissue (not CSF) voxels
    print("agreement with MRtrix3 3.0 dwi2tensor (Pearson r in the brain mask):")
    print(f"  DTI FA, b0 + {'/'.join(f'{b:g}' for b in plans['tensor'].shells)}: r = "
          f"{r_fa:.4f} (mean |diff| {np.abs(tensor['fa'][mask] - fa_mr).mean():.4f})")
    print(f"  MK (MRtrix by the standard formula): r = {r_mk:.4f} (tissue, FW < 0.5: "
          f"{np.corrcoef(mk[good], mk_mr[good])[0, 1]:.4f}); median MK alsmri "
          f"{np.median(mk):.3f}, MRtrix {np.median(mk_mr):.3f}")
    print(f"  kurtosis tensor elements: |r| min {min(r_kt):.3f}, median "
          f"{np.median(r_kt):.3f}; median W1111 ratio MRtrix/alsmri {scale:.3f}")
    print(f"timings ({threads} thread(s), end to end: read, fit, write; DKI best of "
          f"{repeats}, interleaved; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    print(f"  tensor (b0 + low shell): alsmri {t_tensor:.1f} s, MRtrix3 {t_mr_tensor:.1f} s")
    print(f"  DKI: alsmri {t_dki:.1f} s, dwi2tensor -dkt {t_mr_dki:.1f} s, ratio "
          f"{t_dki / t_mr_dki:.2f}")
    print(f"  free-water DTI (b0 + {'/'.join(f'{b:g}' for b in plans['fwdti'].shells)}): "
          f"alsmri {t_fw:.1f} s for {int(mask.sum())} voxels")
    print(f"  peak RSS {_peak_rss_mb():.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--res", type=float, default=2.0)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="alsmri-bench-models-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        run(out, res=args.res, threads=args.threads, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
