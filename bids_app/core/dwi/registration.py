"""FA -> MNI FA template registration (antspyx affine + SyN) and atlas warping to native."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import ants
import numpy as np

from bids_app.core.dwi._ants import correlation, to_ants
from bids_app.core.seeding import ants_seed

#: antspyx interpolators for atlas kinds (probability maps linear, label images nearest).
INTERPOLATORS = {"probseg": "linear", "dseg": "nearestNeighbor"}


@dataclass(frozen=True)
class TemplateRegistration:
    """Result of :func:`register_fa_to_template`."""

    forward: Path
    """Composite transform (HDF5) moving native FA into template space (ANTs
    ``antsApplyTransforms -t`` order: template points -> native points)."""
    inverse: Path
    """Composite transform for template -> native resampling (atlases to native)."""
    warped_fa: np.ndarray
    """Native FA resampled on the template grid."""
    template_affine: np.ndarray
    correlation: float
    """Pearson r of warped FA vs template FA where both are > 0 (DWI coverage x template)."""


def register_fa_to_template(
    fa: np.ndarray,
    *,
    affine: np.ndarray,
    template: Path | str,
    out_dir: Path | str,
    seed: int | None,
    aff_iterations: tuple[int, ...] = (100, 50, 25),
    syn_iterations: tuple[int, ...] = (40, 20, 0),
    syn_radius: int = 1,
) -> TemplateRegistration:
    """Register a native FA map to an FA template (Mattes affine + cross-correlation SyN).

    The SyN metric is neighbourhood cross-correlation (radius ``syn_radius``), ANTs' choice for
    images of the same contrast. With Mattes mutual information the deformation followed
    pathology: in the 5 + 5 demo cohort (patients' FA lowered by ~22 % in the corticospinal,
    corticostriatal and corticothalamic tracts) the JHU splenium, which those tracts do not
    touch, measured 0.034 FA below its known value in patients on average (controls +0.003),
    and the cerebellar peduncles lost up to a third of their FA in patients. Re-registering
    two patients and two controls with CC: splenium error -0.013/-0.003 (patients) and
    +0.005/+0.022 (controls); template correlation 0.64 -> 0.72 in a patient, 0.82 -> 0.84
    on ds-xa30; ~20 s more CPU per run. Radius 1 (the default) measures the same as radius 2
    (12 benchmark participants: splenium error -0.008/+0.008 in patients/controls vs
    -0.007/+0.011; right CST +0.016/+0.005 vs +0.016/+0.001; template r 0.84 on ds-xa30) in
    about 30 % less time. A residual group dependence remains with the demo's large planted
    effect (see ``benchmarks/recovery.py``): over the 39 + 32 cohort the splenium error was
    -0.004 (patients) vs +0.009 (controls); re-registering one patient without its planted
    effect moved its splenium value by 0.02-0.03 FA.

    Parameters
    ----------
    fa
        Native FA (3D).
    affine
        Its voxel-to-world affine.
    template
        FA template in MNI152NLin6Asym (e.g. 2 mm grid).
    out_dir
        Where ``fwd.h5``/``inv.h5`` are written.
    seed
        ANTs sampling seed.
    aff_iterations
        Affine iterations at shrink factors 4, 2, 1.
    syn_iterations
        SyN iterations at shrink factors 4, 2, 1 (0 skips the full-resolution level).
    syn_radius
        Neighbourhood radius (voxels) of the SyN cross-correlation metric.

    Returns
    -------
    TemplateRegistration
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fixed = ants.image_read(str(template))
    moving = to_ants(fa, affine)
    levels = len(aff_iterations)
    with ants_seed(seed):
        reg = ants.registration(
            fixed, moving, type_of_transform="SyN", aff_metric="mattes", syn_metric="CC",
            syn_sampling=syn_radius,
            aff_iterations=tuple(aff_iterations),
            aff_shrink_factors=tuple(2 ** i for i in range(levels - 1, -1, -1)),
            aff_smoothing_sigmas=tuple(range(levels - 1, -1, -1)),
            aff_random_sampling_rate=0.25, reg_iterations=tuple(syn_iterations),
            write_composite_transform=True, outprefix=str(out_dir / "fa2tpl_"))
    fwd = out_dir / "fwd.h5"
    inv = out_dir / "inv.h5"
    shutil.move(reg["fwdtransforms"], fwd)
    shutil.move(reg["invtransforms"], inv)
    warped = reg["warpedmovout"].numpy()
    tpl = fixed.numpy()
    both = (warped > 0) & (tpl > 0)
    tpl_affine = _ants_affine(fixed)
    return TemplateRegistration(forward=fwd, inverse=inv, warped_fa=warped.astype(np.float32),
                                template_affine=tpl_affine,
                                correlation=correlation(warped, tpl, both))


def _ants_affine(img: ants.ANTsImage) -> np.ndarray:
    """RAS voxel-to-world affine of an ANTs image."""
    direction = np.asarray(img.direction, dtype=float)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(img.spacing, dtype=float)
    lps[:3, 3] = img.origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def warp_to_native(
    image: Path | str,
    *,
    reference: np.ndarray,
    reference_affine: np.ndarray,
    inverse: Path | str,
    kind: str,
) -> np.ndarray:
    """Resample a template-space image (atlas map or labels) onto the native DWI grid.

    Parameters
    ----------
    image
        NIfTI in template space (any orientation; resampled through the affines).
    reference, reference_affine
        A native 3D image and its affine (defines the output grid).
    inverse
        Template -> native composite transform from :func:`register_fa_to_template`.
    kind
        ``probseg`` (linear) or ``dseg`` (nearest neighbour).

    Returns
    -------
    ndarray
        float32 for ``probseg`` (clipped to [0, 1]), int32 for ``dseg``.
    """
    moving = ants.image_read(str(image))
    out = ants.apply_transforms(to_ants(reference, reference_affine), moving, [str(inverse)],
                                interpolator=INTERPOLATORS[kind]).numpy()
    if kind == "dseg":
        return np.rint(out).astype(np.int32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
