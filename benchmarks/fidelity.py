"""Preprocessing fidelity: what denoising and unringing do to tensor FA against a known truth.

A noise-free tensor field (the truth) is turned into DWI signals on a given gradient scheme,
Rician noise is added (``SNR`` = median brain b0 / sigma), and each preprocessing variant is
run on the same noisy series, followed by the same dipy WLS tensor fit. FA is compared,
inside white-matter-like regions defined from the truth only (FA > 0.4 and 0.25-0.4, and
optionally corticospinal tract weights), with

- the truth (the noise-free signal's own tensor fit: FA bias = mean error, spread = SD of
  the voxel-wise error), and
- a WLS fit of the raw noisy data (what preprocessing adds or removes on top of the noise).

Variants: ``raw``, ``default`` (what the participant level runs by default: ``--denoise auto``
resolved by the plan's rule from the measured diffusion-weighted SNR, unringing off),
``mppca``, ``patch2self``, ``unring``, ``mppca+unring``, and the independent references
MRtrix3 ``dwidenoise`` (MP-PCA, Cordero-Grande estimator, 5x5x5 window), ``mrdegibbs``
(Kellner's reference unringing) and both, when MRtrix3 is installed.

Phantoms
--------
``anatomy``
    The real ds-xa30 subject's tensor field (WLS fit of its AP run after a 0.5-voxel Gaussian
    smoothing, eigenvalues clipped to a physical range) on its own 3 mm grid, its mean b0 as
    S0, free water outside the brain; cropped to a slab through the internal capsule.
``geometric``
    A synthetic 3 mm phantom with no relation to any subject or atlas: grey-matter-like
    background, CSF "ventricles", a curved bundle (FA ~0.65) and a straight one crossing it
    (two-tensor signal in the crossing), built 3x finer and averaged down (partial volume);
    ``--kspace PF`` acquires it through the central k-space instead (Gibbs ringing, with
    partial Fourier ``PF`` < 1).

Usage::

    python benchmarks/fidelity.py [--phantom anatomy geometric] [--scheme xa30 64x1000 ...]
                                  [--snr 25] [--variants raw default mppca ...] [--kspace 1]
                                  [--tract-weights .cache/simulate/base-*.npz] [--markdown]

Schemes: ``xa30`` (ds-xa30's own: 1 b0 + 20 directions at b = 2500) or ``<n>x<b>[+<n>x<b>]``
(6 b0 + n directions per shell). Prints one table per phantom and scheme, headed by the
series' measured diffusion-weighted SNR (:func:`bids_app.core.dwi.preproc.diffusion_snr`).
The anatomy phantom at 70 volumes takes tens of minutes on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from dipy.core.gradients import GradientTable, gradient_table
from dipy.core.sphere import HemiSphere, disperse_charges
from dipy.reconst.dti import (
    TensorModel,
    decompose_tensor,
    design_matrix,
    from_lower_triangular,
    lower_triangular,
)
from scipy.ndimage import gaussian_filter

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
XA30 = SHARED / "data" / "bids" / "ds-xa30" / "sub-01" / "dwi" / "sub-01_dir-AP_dwi"
B0_THRESHOLD = 50.0
FREE_WATER = np.array([3e-3, 0, 3e-3, 0, 0, 3e-3])


@dataclass(frozen=True)
class Phantom:
    """A known-truth tensor field, possibly on a finer grid than the acquisition."""

    name: str
    affine: np.ndarray
    """Voxel-to-world affine of the acquired (coarse) grid."""
    s0: np.ndarray
    """Noise-free b0 on the fine grid."""
    tensors: tuple[tuple[np.ndarray, np.ndarray], ...]
    """Compartments on the fine grid: (lower-triangular (..., 6) tensors, signal fractions)."""
    brain: np.ndarray
    """Coarse-grid bool: where tensors are fitted."""
    up: int = 1
    """Fine voxels per acquired voxel along each axis."""


# ----------------------------------------------------------------------------- schemes
def scheme(name: str) -> GradientTable:
    """``xa30`` (ds-xa30's own 1 b0 + 20 x b=2500) or ``<n>x<b>[+<n>x<b>...]`` (6 b0 + n
    directions per shell)."""
    if name == "xa30":
        bvals = np.loadtxt(XA30.with_suffix(".bval"))
        bvecs = np.loadtxt(XA30.with_suffix(".bvec")).T
        return gradient_table(bvals, bvecs=bvecs)
    bvals, bvecs = [np.zeros(6)], [np.zeros((6, 3))]
    for shell in name.split("+"):
        n, b = (int(v) for v in shell.split("x"))
        rng = np.random.default_rng([n, b])
        hemi = HemiSphere(theta=np.pi * rng.random(n), phi=2 * np.pi * rng.random(n))
        hemi, _ = disperse_charges(hemi, 2000)
        bvals.append(np.full(n, float(b)))
        bvecs.append(hemi.vertices)
    return gradient_table(np.concatenate(bvals), bvecs=np.concatenate(bvecs))


# ---------------------------------------------------------------------------- phantoms
def _regularise(lt: np.ndarray) -> np.ndarray:
    evals, evecs = decompose_tensor(from_lower_triangular(lt))
    evals = np.clip(evals, 1e-5, 3.5e-3)
    return lower_triangular(np.einsum("...ij,...j,...kj->...ik", evecs, evals, evecs))


def anatomy_phantom(*, slab: tuple[int, int] = (8, 22)) -> Phantom:
    """The ds-xa30 tensor field (see module docstring), slices ``slab`` of its AP run."""
    from bids_app.core.dwi.preproc import dwi_brain_mask

    img = nib.load(str(XA30.with_suffix(".nii.gz")))
    data = img.get_fdata(dtype=np.float32)
    gtab = scheme("xa30")
    smooth = np.stack([gaussian_filter(data[..., v], 0.5) for v in range(data.shape[-1])], -1)
    mask, _ = dwi_brain_mask(smooth, gtab.bvals, b0_threshold=B0_THRESHOLD,
                             zooms=img.header.get_zooms()[:3], source=str(XA30))
    fit = TensorModel(gtab, fit_method="WLS").fit(smooth, mask=mask)
    lt = np.tile(FREE_WATER, mask.shape + (1,))
    lt[mask] = _regularise(fit.lower_triangular()[mask])
    s0 = np.clip(smooth[..., gtab.b0s_mask].mean(-1), 0, None)
    z = slice(*slab)
    affine = img.affine.copy()
    affine[:3, 3] += affine[:3, 2] * slab[0]
    return Phantom("anatomy", affine, s0[:, :, z], ((lt[:, :, z], np.ones(s0[:, :, z].shape)),),
                   mask[:, :, z])


def _stick(direction, shape: tuple[int, ...], *, ad: float = 1.7e-3,
           rd: float = 0.5e-3) -> np.ndarray:
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    full = rd * np.eye(3) + (ad - rd) * d[..., :, None] * d[..., None, :]
    return np.broadcast_to(lower_triangular(full), shape + (6,)).astype(np.float32)


def geometric_phantom(*, size: int = 48, n_slices: int = 10, up: int = 3) -> Phantom:
    """Curved + straight crossing bundles in GM-like tissue with CSF (3 mm voxels).

    Defined on a grid ``up`` times finer than the acquired one, so each acquired voxel
    averages the signals of its fine voxels (partial volume at every edge), or, with
    :func:`acquire` ``kspace``, so the image can be acquired through k-space (ringing).
    """
    n, nz = size * up, n_slices * up
    x, y = np.meshgrid(*(np.arange(k) + 0.5 for k in (n, n)), indexing="ij")
    x, y = x / up, y / up  # in acquired voxels
    cx = cy = size / 2
    r = np.hypot(x - cx, y - cy)
    head = r < size * 0.45
    csf = head & ((np.hypot(x - cx, (y - cy) / 2.2) < 3.5) | (r > size * 0.42))
    arc = head & ~csf & (np.abs(r - 13.0) < 2.5) & (y > cy - 6)   # curved bundle
    straight = head & ~csf & (np.abs(x - (cx + 9.0)) < 2.0)       # crosses the arc twice
    gm = head & ~csf & ~arc & ~straight
    f_arc, f_str = arc.astype(np.float32), straight.astype(np.float32)
    f_arc[arc & straight] = f_str[arc & straight] = 0.5
    tangent = np.stack([-(y - cy), x - cx, np.zeros_like(x)], -1) + 1e-9
    plane = (n, n)
    comps = ((_stick(tangent, plane), f_arc), (_stick([0.0, 1.0, 0.15], plane), f_str),
             (_stick([1.0, 0.3, 0.2], plane, ad=0.95e-3, rd=0.75e-3), gm.astype(np.float32)),
             (np.tile(FREE_WATER, plane + (1,)).astype(np.float32), csf.astype(np.float32)))
    s0 = 1000.0 * ((arc | straight) + 1.25 * gm + 2.0 * csf)

    def slab(a):  # the same in-plane pattern in every slice
        return np.repeat(a[:, :, None], nz, axis=2)

    brain = slab(head).reshape(size, up, size, up, n_slices, up).mean(axis=(1, 3, 5)) > 0.5
    return Phantom("geometric", np.diag([3.0, 3.0, 3.0, 1.0]), slab(s0).astype(np.float32),
                   tuple((slab(lt), slab(f)) for lt, f in comps), brain, up=up)


PHANTOMS: dict[str, Callable[[], Phantom]] = {"anatomy": anatomy_phantom,
                                              "geometric": geometric_phantom}


# ------------------------------------------------------------------------------ signal
def _fine_volume(phantom: Phantom, dm_row: np.ndarray) -> np.ndarray:
    signal = np.zeros(phantom.s0.shape, np.float64)
    for lt, frac in phantom.tensors:
        signal += frac * np.exp(lt @ dm_row)
    return phantom.s0 * signal


def _box(vol: np.ndarray, up: int) -> np.ndarray:
    if up == 1:
        return vol
    x, y, z = (s // up for s in vol.shape)
    return vol.reshape(x, up, y, up, z, up).mean(axis=(1, 3, 5))


def _kspace(vol: np.ndarray, up: int, partial_fourier: float) -> np.ndarray:
    """Complex image acquired through the central k-space of each (box-averaged) slab.

    In-plane: the central (n/up)^2 k-space of the fine image (a truncated Fourier series:
    Gibbs ringing); along the slice axis a box average (2D slice profile). With
    ``partial_fourier`` < 1 the first lines along the phase-encoding axis (axis 1) are not
    acquired and the image is reconstructed by zero filling.
    """
    x, y, z = (s // up for s in vol.shape)
    slabs = vol.reshape(vol.shape[0], vol.shape[1], z, up).mean(axis=3)
    k = np.fft.fftshift(np.fft.fft2(slabs, axes=(0, 1)), axes=(0, 1))
    cx, cy = (vol.shape[0] - x) // 2, (vol.shape[1] - y) // 2
    k = k[cx:cx + x, cy:cy + y] / up ** 2
    if partial_fourier < 1:
        k[:, :round((1 - partial_fourier) * y)] = 0
    return np.fft.ifft2(np.fft.ifftshift(k, axes=(0, 1)), axes=(0, 1))


def acquire(phantom: Phantom, gtab: GradientTable, *, snr: float | None, seed: int = 1,
            kspace: float | None = None) -> tuple[np.ndarray, float]:
    """The acquired (coarse) series and the noise sigma.

    ``kspace=None``: each acquired voxel is the mean signal of its fine voxels (the truth's
    own partial volume, no ringing). ``kspace=f``: acquired through the central k-space
    with partial-Fourier fraction ``f`` (1 = full; ringing). Noise: complex Gaussian with
    sigma = median brain b0 / ``snr``, magnitude taken (Rician); ``snr=None``: noise-free.
    """
    dm = design_matrix(gtab)[:, :6]
    rng = np.random.default_rng(seed)
    ref = float(np.median(_box(phantom.s0, phantom.up)[phantom.brain]))
    sigma = ref / snr if snr else 0.0
    out = []
    for row in dm:
        fine = _fine_volume(phantom, row)
        vol = _kspace(fine, phantom.up, kspace) if kspace else _box(fine, phantom.up)
        if sigma:
            vol = vol + sigma * (rng.standard_normal(vol.shape)
                                 + 1j * rng.standard_normal(vol.shape))
        out.append(np.abs(vol))
    return np.stack(out, -1).astype(np.float32), sigma


def fit_fa(data: np.ndarray, gtab: GradientTable, mask: np.ndarray) -> np.ndarray:
    """dipy WLS tensor FA (0 outside ``mask``)."""
    fit = TensorModel(gtab, fit_method="WLS").fit(data, mask=mask)
    return np.nan_to_num(fit.fa).astype(np.float64)


def regions(fa_true: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """White-matter-like regions from the truth alone."""
    return {"FA>0.4": brain & (fa_true > 0.4), "FA 0.25-0.4": brain & (fa_true > 0.25)
            & (fa_true <= 0.4)}


# ---------------------------------------------------------------------------- variants
def _mrtrix(cmd: str, data: np.ndarray, affine: np.ndarray, *extra: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.nii", Path(tmp) / "out.nii"
        nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), src)
        subprocess.run([cmd, str(src), str(dst), "-quiet", "-nthreads", "1", *extra],
                       check=True)
        return nib.load(dst).get_fdata(dtype=np.float32)


def variants(gtab: GradientTable, affine: np.ndarray) -> dict[str, Callable]:
    """Preprocessing variants (each maps a noisy series to a preprocessed one)."""
    from bids_app.core.dwi import preproc

    bvals = gtab.bvals

    def den(method, **kw):
        return lambda d: preproc.denoise(d, method=method, bvals=bvals,
                                         b0_threshold=B0_THRESHOLD, **kw)[0]

    def default(d):
        # what the participant level runs by default: --denoise auto (resolved from the
        # measured diffusion-weighted SNR by the plan's rule) and the unringing default
        from bids_app.bids.plan import plan_denoise
        from bids_app.settings import DwiSettings

        settings = DwiSettings()
        snr = preproc.diffusion_snr(d, bvals, b0_threshold=B0_THRESHOLD).snr
        out = den(plan_denoise([snr], denoise=settings.denoise).method)(d)
        return preproc.unring(out) if settings.unringing else out

    out = {
        "raw": lambda d: d,
        "default": default,
        "mppca": den("mppca"),
        "patch2self": den("patch2self"),
        "unring": lambda d: preproc.unring(d),
        "mppca+unring": lambda d: preproc.unring(den("mppca")(d)),
    }
    if shutil.which("dwidenoise"):
        out["dwidenoise"] = lambda d: _mrtrix("dwidenoise", d, affine)
        out["mrdegibbs"] = lambda d: _mrtrix("mrdegibbs", d, affine)
        out["dwidenoise+mrdegibbs"] = lambda d: _mrtrix(
            "mrdegibbs", _mrtrix("dwidenoise", d, affine), affine)
    return out


def measure(phantom: Phantom, scheme_name: str, *, snr: float, seed: int,
            names: list[str] | None = None, kspace: float | None = None,
            weights: dict[str, np.ndarray] | None = None) -> list[dict]:
    """One row per variant: FA bias and spread vs truth, mean difference vs the raw fit.

    The truth is the WLS fit of the noise-free series acquired without k-space effects
    (each voxel the mean signal of its fine voxels). ``weights``: extra (tract) regions as
    voxel weights on the acquired grid (weighted means).
    """
    from bids_app.core.dwi.preproc import diffusion_snr

    gtab = scheme(scheme_name)
    clean, _ = acquire(phantom, gtab, snr=None)
    fa_true = fit_fa(clean, gtab, phantom.brain)
    data, _ = acquire(phantom, gtab, snr=snr, seed=seed, kspace=kspace)
    rois = {k: v.astype(float) for k, v in regions(fa_true, phantom.brain).items()}
    rois.update({k: np.clip(w, 0, 1) * phantom.brain for k, w in (weights or {}).items()})
    table = variants(gtab, phantom.affine)
    fa_raw = fit_fa(data, gtab, phantom.brain)
    snr_dw = diffusion_snr(data, gtab.bvals, b0_threshold=B0_THRESHOLD).snr
    rows = []
    for name in names or list(table):
        if name not in table:
            continue
        start = time.perf_counter()
        fa = fit_fa(table[name](data), gtab, phantom.brain)
        row = {"phantom": phantom.name, "scheme": scheme_name, "volumes": len(gtab.bvals),
               "variant": name, "seconds": time.perf_counter() - start, "DW SNR": snr_dw}
        for roi, w in rois.items():
            err = fa - fa_true
            bias = float((w * err).sum() / w.sum())
            row[f"{roi} truth"] = float((w * fa_true).sum() / w.sum())
            row[f"{roi} bias"] = bias
            row[f"{roi} sd"] = float(np.sqrt((w * (err - bias) ** 2).sum() / w.sum()))
            row[f"{roi} vs raw"] = float((w * (fa - fa_raw)).sum() / w.sum())
        rows.append(row)
    return rows


def tract_weights(path: Path, slab: tuple[int, int] = (8, 22)) -> dict[str, np.ndarray]:
    """Corticospinal tract weights on the ds-xa30 grid from a simulation base-anatomy cache
    (``base-*.npz`` of :mod:`bids_app.simulate.base`), cropped like :func:`anatomy_phantom`."""
    npz = np.load(path)
    return {key.split("/", 1)[1].replace("/", " "): npz[key][:, :, slice(*slab)]
            for key in npz.files if key.startswith("w:hcp842/cst/")}


def format_rows(rows: list[dict], *, markdown: bool = False) -> str:
    """A fixed-width (or Markdown) table of :func:`measure` rows."""
    keys = [k for k in rows[0] if k not in ("phantom", "scheme", "seconds", "DW SNR")]
    head = ["variant" if k == "variant" else k for k in keys]

    def cell(k, v):
        if isinstance(v, float):
            return f"{v:+.3f}" if ("bias" in k or "raw" in k) else f"{v:.3f}"
        return str(v)

    lines = []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(cell(k, r[k]) for k in keys) + " |" for r in rows]
    else:
        lines.append("  ".join(f"{h:>14s}" for h in head))
        lines += ["  ".join(f"{cell(k, r[k]):>14s}" for k in keys) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phantom", nargs="+", default=["anatomy", "geometric"],
                        choices=list(PHANTOMS))
    parser.add_argument("--scheme", nargs="+", default=["xa30", "64x1000", "64x2500"])
    parser.add_argument("--snr", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument("--kspace", type=float, default=None, metavar="PF",
                        help="acquire the geometric phantom through k-space with this "
                             "partial-Fourier fraction (1 = full; Gibbs ringing)")
    parser.add_argument("--tract-weights", type=Path, default=None, metavar="NPZ",
                        help="simulation base-anatomy cache whose corticospinal tract weights "
                             "become extra regions (anatomy phantom)")
    parser.add_argument("--markdown", action="store_true")
    opts = parser.parse_args(argv)
    for pname in opts.phantom:
        phantom = PHANTOMS[pname]()
        weights = (tract_weights(opts.tract_weights)
                   if opts.tract_weights and pname == "anatomy" else None)
        for sname in opts.scheme:
            rows = measure(phantom, sname, snr=opts.snr, seed=opts.seed, names=opts.variants,
                           kspace=opts.kspace, weights=weights)
            how = "" if opts.kspace is None else f", k-space partial Fourier {opts.kspace:g}"
            print(f"\n{pname} phantom, scheme {sname} ({rows[0]['volumes']} volumes), "
                  f"SNR {opts.snr:g}{how}; measured diffusion-weighted SNR "
                  f"{rows[0]['DW SNR']:.1f}")
            print(format_rows(rows, markdown=opts.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
