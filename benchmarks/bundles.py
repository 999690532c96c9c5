"""Benchmark of subject-specific bundles on ds-xa30: tracking + recognition + profiles.

Reads a participant's alsmri derivatives (preprocessed DWI + gradients, brain mask, tensor maps,
the template -> DWI point transform ``from-dwi_to-MNI152NLin6Asym`` = the registration's
``forward``) and the HCP842 model bundles of the data manager, then times each step
(wall and CPU), prints the peak RSS and the per-bundle streamline counts, and renders a QC
image of the recognised bundles over FA. Target (issue #28 E): <= 90 s on 2 cores and <= 3 GB.

Make the derivatives once::

    alsmri $ALSMRI_SHARED/data/bids/ds-xa30 /tmp/xa30-out participant --nprocs 2 \\
        --omp-nthreads 1 -w /tmp/xa30-work

Usage::

    python benchmarks/bundles.py [--derivatives /tmp/xa30-out] [--directions auto]
                                 [--nthreads 2] [--qc bundles.png] [--data-dir $ALSMRI_DATA]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHARED / "data" / "templateflow"))
sys.path.insert(0, str(REPO))

COLOURS = {"cst": "tab:red", "corticostriatal": "tab:green", "corticothalamic": "tab:blue"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    return s.ru_utime + s.ru_stime


class Clock:
    """Wall and CPU seconds per named step."""

    def __init__(self):
        self.steps: list[tuple[str, float, float]] = []
        self._wall, self._cpu = time.perf_counter(), _cpu_s()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), _cpu_s()
        self.steps.append((name, wall - self._wall, cpu - self._cpu))
        print(f"  {name:<28} wall {wall - self._wall:6.1f} s   cpu {cpu - self._cpu:6.1f} s",
              flush=True)
        self._wall, self._cpu = wall, cpu


def load_inputs(deriv: Path, subject: str):
    import nibabel as nib
    import numpy as np

    dwi = deriv / f"sub-{subject}" / "dwi"
    stem = f"sub-{subject}"
    img = nib.load(dwi / f"{stem}_desc-preproc_dwi.nii.gz")
    maps = {m: nib.load(dwi / f"{stem}_space-dwi_model-tensor_param-{m}_dwimap.nii.gz")
            .get_fdata(dtype=np.float32) for m in ("fa", "md", "ad", "rd")}
    return {
        "data": img.get_fdata(dtype=np.float32), "affine": img.affine,
        "bvals": np.loadtxt(dwi / f"{stem}_desc-preproc_dwi.bval"),
        "bvecs": np.loadtxt(dwi / f"{stem}_desc-preproc_dwi.bvec").T,
        "mask": nib.load(dwi / f"{stem}_desc-brain_mask.nii.gz").get_fdata() > 0,
        "maps": maps,
        "forward": dwi / f"{stem}_from-dwi_to-MNI152NLin6Asym_mode-image_xfm.h5",
    }


def run(args) -> dict:
    from bids_app.atlases.api import get_model_bundles
    from bids_app.core.dwi import bundles as bun
    from bids_app.core.dwi import profiles as prof
    from bids_app.core.dwi import tractography as trk

    clock = Clock()
    inp = load_inputs(args.derivatives, args.subject)
    models_info = get_model_bundles("hcp842", data_dir=args.data_dir)
    clock.lap("load inputs")
    model = args.directions
    if model == "auto":
        model = trk.choose_directions(inp["bvals"], inp["bvecs"], b0_threshold=args.b0_threshold)
    n_dirs = trk.unique_directions(inp["bvals"], inp["bvecs"], b0_threshold=args.b0_threshold)
    print(f"  directions: {model} ({n_dirs} unique gradient directions)")
    directions = trk.fit_directions(inp["data"], inp["bvals"], inp["bvecs"], mask=inp["mask"],
                                    model=model, b0_threshold=args.b0_threshold)
    clock.lap(f"fit directions ({model})")
    params = trk.TRACKING_DEFAULTS
    if args.seeds_per_mm3:
        from dataclasses import replace
        params = replace(params, seeds_per_mm3=args.seeds_per_mm3)
    streamlines = trk.track(directions, inp["maps"]["fa"], inp["affine"], params=params,
                            seed=args.seed, nthreads=args.nthreads)
    clock.lap(f"track ({len(streamlines)} streamlines)")
    models = {key: bun.transform_streamlines(bun.load_streamlines(path), [inp["forward"]])
              for key, path in models_info.bundles.items()}
    clock.lap("models -> native")
    rparams = bun.RECOGNITION_DEFAULTS
    if args.pruning_thr:
        from dataclasses import replace
        rparams = replace(rparams, pruning_thr=args.pruning_thr)
    found = bun.recognise_bundles(streamlines, models, field_of_view=inp["mask"],
                                  affine=inp["affine"], params=rparams, seed=args.seed,
                                  nthreads=args.nthreads)
    clock.lap("recognise (RecoBundles)")
    means = bun.bundle_weighted_means(inp["maps"], found, inp["affine"], mask=inp["mask"],
                                      atlas="hcp842")
    profiles = prof.tract_profiles(
        {k: b.streamlines for k, b in found.items() if b.recognised}, inp["maps"],
        inp["affine"], references={k: b.reference for k, b in found.items()}, n_nodes=100,
        atlas="hcp842")
    clock.lap("bundle means + profiles")
    total_wall = sum(s[1] for s in clock.steps[1:])
    total_cpu = sum(s[2] for s in clock.steps[1:])
    print(f"  {'TOTAL (without loading)':<28} wall {total_wall:6.1f} s   cpu {total_cpu:6.1f} s")
    print(f"  peak RSS {_peak_rss_mb():.0f} MB")
    print(bun.bundle_counts(found).to_string(index=False))
    fa = means[means.metric == "fa"][["region", "hemisphere", "value", "n_voxels"]]
    print("bundle FA (density-weighted):\n" + fa.to_string(index=False))
    fa_prof = profiles[profiles.metric == "fa"]
    if not fa_prof.empty:
        summary = fa_prof.groupby(["region", "hemisphere"])["value"].agg(
            node0=lambda v: v.iloc[:10].mean(), middle=lambda v: v.iloc[45:55].mean(),
            node99=lambda v: v.iloc[-10:].mean())
        print("FA profile (mean of nodes 0-9, 45-54, 90-99):\n" + summary.round(3).to_string())
    if args.qc:
        render_qc(args.qc, inp["maps"]["fa"], inp["affine"], found)
        print(f"  QC image: {args.qc}")
    return {"found": found, "profiles": profiles, "means": means}


def render_qc(path: Path, fa, affine, found) -> None:
    """One row per tract: recognised streamlines (L red, R blue) over the mid FA slices.

    Coronal, sagittal and axial views, streamlines projected onto each plane (native world
    mm); white dots mark node 0 of each bundle's orientation reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    regions = list(dict.fromkeys(r for r, _ in found))
    views = [("coronal", (0, 2), 1), ("sagittal", (1, 2), 0), ("axial", (0, 1), 2)]
    fig, axes = plt.subplots(len(regions), 3, figsize=(12, 4 * len(regions)),
                             facecolor="black", squeeze=False)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in fa.shape], indexing="ij"), -1)
    centre = np.asarray(fa.shape) // 2
    for row, region in enumerate(regions):
        for col, (view, (a, b), axis) in enumerate(views):
            ax = axes[row, col]
            sl = [slice(None)] * 3
            sl[axis] = centre[axis]
            xyz = ijk[tuple(sl)] @ affine[:3, :3].T + affine[:3, 3]
            ax.pcolormesh(xyz[..., a], xyz[..., b], fa[tuple(sl)], cmap="gray", vmin=0,
                          vmax=0.8, shading="nearest")
            for hemi, colour in (("L", "tab:red"), ("R", "tab:cyan")):
                bundle = found.get((region, hemi))
                if bundle is None or not bundle.count:
                    continue
                step = max(1, bundle.count // 200)
                for line in list(bundle.streamlines)[::step]:
                    ax.plot(line[:, a], line[:, b], color=colour, lw=0.3, alpha=0.5)
                ax.plot(*bundle.reference[0, [a, b]], "o", color="w", ms=4)
            counts = ", ".join(f"{h} {found[(region, h)].count}" for h in "LR"
                               if (region, h) in found)
            ax.set_title(f"{region} ({counts}) {view}", color="w", fontsize=9)
            ax.set_aspect("equal")
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90, facecolor="black")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--derivatives", type=Path, default=Path("/tmp/xa30-out"))
    parser.add_argument("--subject", default="01")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--directions", default="auto", choices=["auto", "tensor", "csd"])
    parser.add_argument("--nthreads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--b0-threshold", type=float, default=50.0)
    parser.add_argument("--seeds-per-mm3", type=float, default=None)
    parser.add_argument("--pruning-thr", type=float, default=None)
    parser.add_argument("--qc", type=Path, default=None)
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
