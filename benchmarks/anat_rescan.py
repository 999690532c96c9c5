"""Scan-rescan benchmark of the anatomical GM volumes (issue #27).

Simulated re-acquisitions of the real ds-xa30 T1w: each copy gets a new head position (rigid,
up to ``--max-deg`` degrees / ``--max-mm`` mm per axis, resampled once with a 5th-order
B-spline), a smooth multiplicative bias field (+-15 % over the head) and Rician noise (sigma =
2 % of the 99.5th intensity percentile). The anatomical core chain (the same core calls as
:func:`bids_app.workflows.anat.init_anat_wf`: N4, SyN to MNI152NLin6Asym, brain mask,
segmentation, atlas labels pulled back, GM volumes) runs on every copy; the figure of merit is
the coefficient of variation (SD/mean, ddof=1) across copies of GM %TIV per reported region and
of TIV. The same brain is scanned each time, so any variation is measurement error.

Usage::

    python benchmarks/anat_rescan.py [--copies 4] [--atlas aal] [--keep DIR] [--seed 27]

Figures are printed (CV %, per region and hemisphere; min/max WM volume; seconds per copy).

Measured with the default chain (AAL, 4 copies, seed 27; CV % L/R): precentral 8.1/5.1,
superior frontal 12.6/11.3, middle frontal 11.6/8.3, medial superior frontal 2.1/10.0,
striatum 32/24, thalamus 42/36, TIV 4.4, WM 379-447 cm^3 (the issue's own run: 9.0/6.5,
27/21, 36/20, TIV 3.5). One copy's brain mask lost 127 cm^3: the head-mask Otsu threshold of
``preproc.head_mask`` falls between GM and WM on this T1w (see issue #27 notes).
With the tissue-foreground brain mask and the tissue priors initialising Atropos (2026-12-07,
same copies): precentral 3.7/3.6, superior frontal 7.2/4.9, middle frontal 6.6/3.9, medial
superior frontal 1.7/4.7, striatum 15/9.3, thalamus 17/12, TIV 0.57, WM 511-525 cm^3. With
the posteriors weighted towards the priors (Atropos prior weight 0.25): 1.6/3.6, 4.6/3.0,
4.0/2.0, 1.1/3.0, 3.7/2.4, 3.7/3.7 — but that weight fills planted atrophy back in
(``benchmarks/gm_validation.py``). Then GM read as partial-volume fractions: 2.5/4.0,
7.5/5.7, 5.9/3.8, 1.9/5.5, 16/11, 18/13; and with the second N4 pass inside the brain mask
(2026-12-07): 4.2/2.0, 2.6/2.8, 2.7/3.3, 2.4/3.0, 6.1/3.5, 6.4/7.6, TIV 0.57; the
Jacobian-modulated read-out (``cv_pct_modulated``) 4.4/1.6, 0.9/3.4, 3.3/2.6, 1.3/4.3,
5.3/3.7, 6.7/7.6.
Needs ``$ALSMRI_SHARED`` and a built data dir (``$ALSMRI_DATA``). Run with one thread:
``OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
T1W = SHARED / "data" / "bids" / "ds-xa30" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
REGIONS = ("precentral", "superior_frontal", "middle_frontal", "medial_superior_frontal",
           "striatum", "thalamus")


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_bias(shape: tuple[int, ...], head: np.ndarray, rng: np.random.Generator, *,
                amplitude: float = 0.15) -> np.ndarray:
    """Multiplicative field ``1 + b``, ``b`` a random sum of low-frequency cosines scaled so
    that ``max |b| = amplitude`` over the head."""
    grid = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    field = np.zeros(shape)
    for _ in range(6):
        k = rng.uniform(0.3, 1.2, size=3) * rng.choice([-1, 1], size=3)
        phase = rng.uniform(0, 2 * np.pi)
        field += rng.normal() * np.cos(np.pi * sum(ki * g for ki, g in zip(k, grid)) + phase)
    field -= field[head].mean()
    field *= amplitude / np.abs(field[head]).max()
    return 1.0 + field


def rescan_copy(img: nib.Nifti1Image, rng: np.random.Generator, *, max_deg: float = 6.0,
                max_mm: float = 6.0, bias: float = 0.15, noise: float = 0.02
                ) -> tuple[nib.Nifti1Image, dict[str, float]]:
    """One simulated re-acquisition of ``img`` on its own grid (see module docstring)."""
    data = img.get_fdata(dtype=np.float32).astype(np.float64)
    angles = rng.uniform(-max_deg, max_deg, size=3)
    shift = rng.uniform(-max_mm, max_mm, size=3)
    rot = rotation_matrix(angles)
    aff = img.affine
    centre = aff[:3, :3] @ ((np.array(data.shape) - 1) / 2) + aff[:3, 3]
    # new scan voxel -> world -> head moved by (rot, shift) about the centre: sample the old
    # image at the pre-image of each world point.
    world_to_old = np.linalg.inv(aff)
    moved = np.eye(4)
    moved[:3, :3] = rot
    moved[:3, 3] = centre + shift - rot @ centre
    vox = world_to_old @ np.linalg.inv(moved) @ aff
    out = ndimage.affine_transform(data, vox[:3, :3], offset=vox[:3, 3], order=5,
                                   mode="constant", cval=0.0)
    out = np.clip(out, 0, None)
    head = out > np.percentile(out, 60)
    out *= smooth_bias(out.shape, head, rng, amplitude=bias)
    sigma = noise * np.percentile(out, 99.5)
    out = np.sqrt((out + rng.normal(0, sigma, out.shape)) ** 2
                  + rng.normal(0, sigma, out.shape) ** 2)
    info = {"rx": angles[0], "ry": angles[1], "rz": angles[2],
            "tx": shift[0], "ty": shift[1], "tz": shift[2]}
    return nib.Nifti1Image(out.astype(np.float32), aff), info


def run_chain(t1w: Path, work: Path, *, atlas: str, seed: int, data_dir: Path | None = None,
              variant: str = "default") -> tuple[pd.DataFrame, dict[str, float]]:
    """The anatomical core chain on one T1w; returns the GM volume table and tissue volumes."""
    import ants

    from bids_app.atlases.api import get_atlas, get_template
    from bids_app.core.anat import io, preproc, registration, segmentation, volumes
    from bids_app.settings import ANAT_TEMPLATE_RES, GM_ATLAS_RES, TEMPLATE

    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    ras = io.reorient_ras(io.load_t1w(t1w))
    ras = nib.Nifti1Image(np.asarray(ras.dataobj, dtype=np.float32), ras.affine)
    nib.save(ras, work / "t1w_ras.nii.gz")
    image = ants.image_read(str(work / "t1w_ras.nii.gz"))
    corrected = preproc.n4_correct(image, mask=preproc.head_mask(image))
    timings["n4"] = time.perf_counter() - t0
    tpl = ants.image_read(str(get_template(TEMPLATE, res=ANAT_TEMPLATE_RES, suffix="T1w",
                                           data_dir=data_dir)))
    tpl_mask = ants.image_read(str(get_template(TEMPLATE, res=ANAT_TEMPLATE_RES,
                                                suffix="mask", desc="brain",
                                                data_dir=data_dir)))
    t0 = time.perf_counter()
    inverse = work / "t1w2tpl_InverseComposite.h5"
    if not inverse.is_file():
        registration.register_to_template(corrected, tpl, outprefix=work / "t1w2tpl_",
                                          seed=seed)
    timings["registration"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prior = registration.warp_image(tpl_mask, corrected, inverse)
    mask = preproc.refine_brain_mask(corrected, prior)
    timings["mask"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    refined = preproc.n4_correct(corrected, mask=mask)  # the workflow's brain_n4 node
    seg = SEGMENTERS[variant](refined, mask, inverse=inverse, data_dir=data_dir)
    timings["segmentation"] = time.perf_counter() - t0
    at = get_atlas(atlas, res=GM_ATLAS_RES, data_dir=data_dir)
    labels = registration.warp_image(ants.image_read(str(at.images[("all", "bilateral")])),
                                     corrected, inverse, interpolator="nearestNeighbor")
    vox = float(np.prod(corrected.spacing))
    probs = {t: seg.probseg[t].numpy() for t in segmentation.TISSUES}
    tissue = volumes.tissue_volumes(probs, voxel_volume=vox)
    table = volumes.gm_volumes(probs["GM"], labels.numpy(), label_table=at.labels,
                               voxel_volume=vox, tiv=tissue["TIV"], atlas=atlas,
                               groups=dict(at.groups), brain_mask=mask.numpy() > 0)
    # the alternative read-out: Jacobian-modulated GM summed in the template-space labels
    atlas_img = ants.image_read(str(at.images[("all", "bilateral")]))
    modulated = registration.modulate(seg.probseg["GM"], atlas_img,
                                      work / "t1w2tpl_Composite.h5")
    table_mod = volumes.gm_volumes(modulated.numpy(), atlas_img.numpy(), label_table=at.labels,
                                   voxel_volume=float(np.prod(atlas_img.spacing)),
                                   tiv=tissue["TIV"], atlas=atlas, groups=dict(at.groups))
    table["modulated"] = False
    table_mod["modulated"] = True
    return (pd.concat([table, table_mod], ignore_index=True),
            {**tissue, **{f"t_{k}": v for k, v in timings.items()}})


def _segment_default(image, mask, *, inverse, data_dir, partial_volume=None, **_):
    """The workflow's segmentation: Atropos with the template tissue priors in T1w space."""
    import ants

    from bids_app.atlases.api import get_tissue_priors
    from bids_app.core.anat import registration, segmentation
    from bids_app.settings import TEMPLATE, TISSUE_PRIOR_RES

    paths = get_tissue_priors(TEMPLATE, res=TISSUE_PRIOR_RES, data_dir=data_dir)
    priors = {t: registration.warp_image(ants.image_read(str(paths[t])), image, inverse)
              for t in segmentation.TISSUES}
    kwargs = {} if partial_volume is None else {"partial_volume": partial_volume}
    return segmentation.segment_tissues(image, mask, priors=priors, **kwargs)


def _segment_posteriors(image, mask, **ctx):
    """As the workflow, but GM read from Atropos's posteriors instead of partial volumes."""
    return _segment_default(image, mask, partial_volume=False, **ctx)


#: Segmentation variants compared by the benchmark (name -> function(image, mask, **ctx)).
SEGMENTERS = {"default": _segment_default, "posteriors": _segment_posteriors}


def summarise(tables: list[pd.DataFrame], tissues: list[dict[str, float]]) -> pd.DataFrame:
    """CV (%) across copies of GM %TIV per reported region/hemisphere, and of TIV."""
    rows = []
    for region in REGIONS:
        for hemi in ("L", "R"):
            cvs = []
            for modulated in (False, True):
                vals = np.array([t.loc[(t.region == region) & (t.hemisphere == hemi)
                                       & (t.metric == "gmv_pct_tiv")
                                       & (t.modulated == modulated), "value"].iloc[0]
                                 for t in tables])
                cvs.append(100 * vals.std(ddof=1) / vals.mean())
                if not modulated:
                    stats = (vals.mean(), vals.min(), vals.max())
            rows.append((region, hemi, stats[0], cvs[0], stats[1], stats[2], cvs[1]))
    for key in ("TIV", "GM", "WM"):
        vals = np.array([t[key] / 1000 for t in tissues])
        rows.append((key + "_cm3", "", vals.mean(), 100 * vals.std(ddof=1) / vals.mean(),
                     vals.min(), vals.max(), np.nan))
    return pd.DataFrame(rows, columns=["region", "hemi", "mean", "cv_pct", "min", "max",
                                       "cv_pct_modulated"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--atlas", default="aal")
    parser.add_argument("--seed", type=int, default=27, help="seed of the simulated copies")
    parser.add_argument("--variant", default="default", choices=sorted(SEGMENTERS))
    parser.add_argument("--keep", type=Path,
                        help="work dir kept between runs (registrations are reused)")
    args = parser.parse_args(argv)
    from bids_app.settings import DEFAULT_SEED

    with tempfile.TemporaryDirectory(prefix="alsmri-rescan-") as tmp:
        root = args.keep or Path(tmp)
        src = nib.load(T1W)
        rng = np.random.default_rng(args.seed)
        tables, tissues = [], []
        for k in range(args.copies):
            path = root / f"copy{k}" / "sub-01_T1w.nii.gz"
            img, info = rescan_copy(src, rng)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(img, path)
            t0 = time.perf_counter()
            table, tissue = run_chain(path, root / f"copy{k}" / "work", atlas=args.atlas,
                                      seed=DEFAULT_SEED, variant=args.variant)
            tables.append(table)
            tissues.append(tissue)
            pos = " ".join(f"{k}={v:+.1f}" for k, v in info.items())
            times = " ".join(f"{k[2:]}={v:.0f}s" for k, v in tissue.items()
                             if k.startswith("t_"))
            print(f"copy {k}: {pos}; {time.perf_counter() - t0:.0f} s ({times})", flush=True)
        summary = summarise(tables, tissues)
        print(f"\nvariant {args.variant}, atlas {args.atlas}, {args.copies} copies")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
