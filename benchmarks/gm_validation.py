"""Regional GM volume against atrophy planted by an independent route (cortical thinning and
smooth deformation) on the real ds-xa30 T1w.

The truth is placed without the pipeline's registration: the region is the atlas label carried
onto the T1w by a *reference* registration (ANTs' standard ``antsRegistrationSyNQuick`` preset:
rigid + affine + SyN with Mattes mutual information at every level down to full resolution,
to the 1 mm template; alsmri registers to the 2 mm template with cross-correlation SyN whose
finest level is skipped), and the tissue maps that define where the cortex is
come from a three-class Atropos K-means of the N4-corrected T1w inside that registration's
brain mask (no MRF, no partial-volume step). Two kinds of loss are planted in the raw T1w:

- ``thinning``: :func:`bids_app.core.anat.atrophy.plant_thinning`, GM turned into CSF from the
  outer surface inward (the brain outline stays, sulci widen; how cortical atrophy looks);
- ``deformation``: :func:`bids_app.core.anat.atrophy.plant_atrophy`, a smooth contraction of
  the region's GM with the CSF/WM around it taking up the volume.

Each planted image goes through the anatomical workflow exactly as ``alsmri participant`` runs
it (``init_anat_wf``, default options). Reported per planted loss: the true GM volume removed
(mm^3), the measured change of the pipeline's region (same atlas, same hemisphere), their ratio,
the slope of measured on true change across the losses (least squares through the origin), and
the leakage: changes measured in the neighbouring regions and in the other hemisphere, as a
fraction of the true change.

Usage::

    python benchmarks/gm_validation.py [--region precentral] [--hemisphere L]
        [--losses 0.05 0.1 0.2] [--truth-atlas aal] [--keep DIR]

Measured (2026-12-07, left precentral, AAL, losses 5/10/20 %; truth region vs alsmri's region
Dice 0.86), priors as Atropos initialisation only: deformation ratio 0.85/0.88/0.94, slope
0.92; thinning -0.37/-0.31/-0.21, slope -0.24 (the GM/WM mixed voxels of a one-voxel-thick
cortex look like more GM when darkened; see README). With Atropos prior weight 0.25:
deformation 0.60/0.56/0.63 (slope 0.61); without priors 0.98/1.01/1.10. With GM read as
partial-volume fractions: deformation 0.92/0.92/1.03 (slope 1.00), thinning -0.22/-0.16/-0.04
(slope -0.07); and with the second N4 pass inside the brain mask (the shipped chain):
deformation 0.60/0.83/0.89 (slope 0.87; Jacobian-modulated in template labels 0.68/0.87/0.90,
slope 0.89), thinning -0.16/-0.05/+0.06 (slope 0.03; modulated 0.06); leakage at most 0.12.

Needs ``$ALSMRI_SHARED`` and a built data dir (``$ALSMRI_DATA``). ITK runs with one thread so
that repeated runs differ only by the planted change.
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
T1W = SHARED / "data" / "bids" / "ds-xa30" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
NEIGHBOURS = ("postcentral", "superior_frontal", "middle_frontal", "medial_superior_frontal",
              "supplementary_motor_area", "paracentral_lobule")
MORPH = Path("sub-01/anat/sub-01_desc-gmvolume_morph.tsv")


def run_workflow(t1w: Path, root: Path, *, gm_atlas: str) -> pd.DataFrame:
    """The anatomical workflow (default options) on one T1w; returns its GM volume table."""
    from bids_app.settings import AnatSettings
    from bids_app.workflows.anat import init_anat_wf

    out = root / "out"
    if not (out / MORPH).is_file():
        wf = init_anat_wf(t1w=t1w, settings=AnatSettings(gm_atlas=gm_atlas), output_dir=out,
                          data_dir=None, omp_nthreads=1)
        wf.base_dir = str(root / "work")
        wf.run(plugin="MultiProc", plugin_args={"n_procs": 2, "mp_context": "spawn"})
    return pd.read_csv(out / MORPH, sep="\t")


def reference_truth(t1w: Path, work: Path, *, atlas: str) -> dict:
    """Reference registration, truth tissue maps and atlas labels on the raw T1w grid."""
    import ants

    from bids_app.atlases.api import get_atlas, get_template
    from bids_app.core.anat import preproc
    from bids_app.settings import TEMPLATE

    work.mkdir(parents=True, exist_ok=True)
    image = ants.image_read(str(t1w))
    corrected = preproc.n4_correct(image, mask=preproc.head_mask(image))
    tpl = ants.image_read(str(get_template(TEMPLATE, res=1, suffix="T1w")))
    tpl_mask = ants.image_read(str(get_template(TEMPLATE, res=1, suffix="mask", desc="brain")))
    inverse = work / "ref_InverseComposite.h5"
    t0 = time.perf_counter()
    if not inverse.is_file():
        reg = ants.registration(fixed=tpl, moving=corrected,
                                type_of_transform="antsRegistrationSyNQuick[s]",
                                outprefix=str(work / "ref_"), write_composite_transform=True)
        assert Path(reg["invtransforms"]) == inverse, reg["invtransforms"]
    seconds = time.perf_counter() - t0
    mask = ants.apply_transforms(corrected, tpl_mask, [str(inverse)],
                                 interpolator="nearestNeighbor")
    seg = ants.atropos(a=corrected, x=mask, i="kmeans[3]", m="[0,1x1x1]", c="[5,0]", r=0)
    post = {name: seg["probabilityimages"][k].numpy() for k, name in
            enumerate(("CSF", "GM", "WM"))}
    outside = mask.numpy() == 0
    post["CSF"] = np.where(outside, 1.0, post["CSF"])  # the brain's outer surface is CSF too
    post["GM"] = np.where(outside, 0.0, post["GM"])
    at = get_atlas(atlas, res=1)
    labels = ants.apply_transforms(corrected, ants.image_read(str(at.images[("all",
                                                                           "bilateral")])),
                                   [str(inverse)], interpolator="nearestNeighbor").numpy()
    return {"gm": post["GM"], "csf": post["CSF"], "brain": ~outside, "labels": labels.astype(int),
            "label_table": at.labels, "seconds": seconds}


def region_mask(labels: np.ndarray, table: pd.DataFrame, region: str, hemi: str) -> np.ndarray:
    """Voxels of ``region``/``hemi`` in a label image."""
    idx = table[(table.region == region) & (table.hemisphere == hemi)]["index"].astype(int)
    if idx.empty:
        raise SystemExit(f"region {region}/{hemi} not in the atlas")
    return np.isin(labels, idx.to_numpy())


def plant(kind: str, raw: nib.Nifti1Image, truth: dict, region: np.ndarray, loss: float
          ) -> tuple[np.ndarray, float]:
    """The planted image and the true GM volume removed (mm^3)."""
    from bids_app.core.anat.atrophy import plant_atrophy, plant_thinning

    data = raw.get_fdata(dtype=np.float32)
    zooms = raw.header.get_zooms()[:3]
    gm_region = float((truth["gm"] * region).sum()) * float(np.prod(zooms))
    if kind == "thinning":
        out = plant_thinning(data, region=region, gm=truth["gm"], csf=truth["csf"],
                             brain=truth["brain"], voxel_size=zooms, loss=loss)
        return out.image, float(out.removed.sum()) * float(np.prod(zooms))
    else:
        out = plant_atrophy(data, region=region, gm=truth["gm"], loss=loss)
    return out.image, out.planted_loss * gm_region


def modulated_volumes(root: Path, *, atlas: str) -> pd.DataFrame:
    """The alternative read-out of the same run: GM fractions carried to the template with
    Jacobian modulation (:func:`bids_app.core.anat.registration.modulate`) and summed in the
    atlas' own template-space labels (same table layout as the workflow's)."""
    import ants

    from bids_app.atlases.api import get_atlas
    from bids_app.core.anat import registration, volumes
    from bids_app.settings import GM_ATLAS_RES

    anat = root / "out" / "sub-01" / "anat"
    at = get_atlas(atlas, res=GM_ATLAS_RES)
    labels = ants.image_read(str(at.images[("all", "bilateral")]))
    gm = registration.modulate(ants.image_read(str(anat / "sub-01_label-GM_probseg.nii.gz")),
                               labels,
                               anat / "sub-01_from-T1w_to-MNI152NLin6Asym_mode-image_xfm.h5")
    return volumes.gm_volumes(gm.numpy(), labels.numpy(), label_table=at.labels,
                              voxel_volume=float(np.prod(labels.spacing)), tiv=1.0,
                              atlas=atlas, groups=dict(at.groups))


def _gmv(table: pd.DataFrame, region: str, hemi: str) -> float:
    sel = (table.region == region) & (table.hemisphere == hemi) & (table.metric == "gmv")
    return float(table.loc[sel, "value"].iloc[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", default="precentral")
    parser.add_argument("--hemisphere", default="L", choices=("L", "R"))
    parser.add_argument("--losses", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    parser.add_argument("--kinds", nargs="+", default=["thinning", "deformation"],
                        choices=("thinning", "deformation"))
    parser.add_argument("--atlas", default="aal", help="GM atlas of the pipeline and the truth")
    parser.add_argument("--keep", type=Path, help="work dir kept between runs (resumes)")
    args = parser.parse_args(argv)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"

    with tempfile.TemporaryDirectory(prefix="alsmri-gmval-") as tmp:
        root = args.keep or Path(tmp)
        raw = nib.load(T1W)
        if nib.aff2axcodes(raw.affine) != ("R", "A", "S"):
            raise SystemExit(f"{T1W}: the truth is planted on the raw grid, expected RAS")
        t0 = time.perf_counter()
        truth = reference_truth(T1W, root / "reference", atlas=args.atlas)
        region = region_mask(truth["labels"], truth["label_table"], args.region,
                             args.hemisphere)
        print(f"reference registration {truth['seconds']:.0f} s; truth region "
              f"{region.sum()} voxels", flush=True)
        t0 = time.perf_counter()
        base = run_workflow(T1W, root / "baseline", gm_atlas=args.atlas)
        base_mod = modulated_volumes(root / "baseline", atlas=args.atlas)
        print(f"baseline workflow {time.perf_counter() - t0:.0f} s", flush=True)
        pipeline_labels = np.asarray(nib.load(
            root / "baseline" / "out" / "sub-01" / "anat"
            / f"sub-01_atlas-{args.atlas.replace('-', '')}_dseg.nii.gz").dataobj).astype(int)
        measured_region = region_mask(pipeline_labels, truth["label_table"], args.region,
                                      args.hemisphere)
        dice = 2 * (region & measured_region).sum() / (region.sum() + measured_region.sum())
        print(f"Dice of the truth region with the pipeline's region: {dice:.2f}", flush=True)
        other = "R" if args.hemisphere == "L" else "L"
        watch = [(args.region, other)] + [(r, args.hemisphere) for r in NEIGHBOURS]
        rows = []
        for kind in args.kinds:
            for loss in args.losses:
                tag = f"{kind}-{loss:g}"
                path = root / tag / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
                if not path.is_file():
                    image, true = plant(kind, raw, truth, region, loss)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    nib.save(nib.Nifti1Image(image, raw.affine, raw.header), path)
                    (root / tag / "true_mm3.txt").write_text(f"{true}\n")
                true = float((root / tag / "true_mm3.txt").read_text())
                t0 = time.perf_counter()
                table = run_workflow(path, root / tag, gm_atlas=args.atlas)
                measured = _gmv(base, args.region, args.hemisphere) - _gmv(
                    table, args.region, args.hemisphere)
                leak = {f"{r}_{h}": (_gmv(base, r, h) - _gmv(table, r, h)) / true
                        for r, h in watch}
                mod = modulated_volumes(root / tag, atlas=args.atlas)
                measured_mod = _gmv(base_mod, args.region, args.hemisphere) - _gmv(
                    mod, args.region, args.hemisphere)
                rows.append({"kind": kind, "loss": loss, "true_mm3": true,
                             "measured_mm3": measured, "ratio": measured / true,
                             "ratio_modulated": measured_mod / true, **leak})
                print(f"{tag}: true {true:.0f} mm3, measured {measured:.0f} mm3, ratio "
                      f"{measured / true:.2f} (modulated {measured_mod / true:.2f}; "
                      f"{time.perf_counter() - t0:.0f} s)", flush=True)
        df = pd.DataFrame(rows)
        print(f"\nregion {args.region} {args.hemisphere}, atlas {args.atlas}; leakage columns: "
              "measured change / true change")
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for kind, sub in df.groupby("kind"):
            slope = float((sub.true_mm3 * sub.measured_mm3).sum() / (sub.true_mm3 ** 2).sum())
            mod = sub.ratio_modulated * sub.true_mm3
            slope_mod = float((sub.true_mm3 * mod).sum() / (sub.true_mm3 ** 2).sum())
            print(f"{kind}: slope of measured on true change {slope:.2f} "
                  f"(Jacobian-modulated, template labels: {slope_mod:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
