"""The source anatomy every simulated participant is derived from (built once, cached).

From the real ds-xa30 subject: a tensor field fitted with dipy on one DWI run (light Gaussian
smoothing first, so the baked-in anatomy is not dominated by that run's noise), the mean b0 as
S0, a brain mask (the participant level's DWI mask), the real T1w; tract maps, the control
region and the GM labels placed on the subject by :mod:`bids_app.simulate.placement` (other
atlas sources than the measurement's, carried by a T1w-driven registration, never the
participant level's FA registration), with the template's z coordinate on the DWI grid.  The
registrations run once; the result is stored as one ``.npz`` + ``.json`` under a cache
directory keyed by the inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from dipy.core.gradients import gradient_table
from dipy.io.gradients import read_bvals_bvecs
from dipy.reconst.dti import TensorModel
from scipy.ndimage import gaussian_filter

from bids_app.core.dwi.preproc import brain_mask
from bids_app.core.seeding import single_threaded
from bids_app.errors import BadDataError, MissingInputError
from bids_app.simulate.placement import RegionSource, place_regions
from bids_app.simulate.tensors import regularise

LOGGER = logging.getLogger("alsmri.simulate")
CACHE_VERSION = "6"  # 6: independent placement (other atlases, T1w-driven registration)
DWI_SMOOTHING_VOXELS = 0.5


__all__ = ["AtlasInputs", "BaseAnatomy", "RegionSource", "SourceSubject", "build_base",
           "load_or_build_base"]


@dataclass(frozen=True)
class AtlasInputs:
    """Everything in MNI space the base needs, keyed ``"atlas/region/hemisphere"``.

    ``tracts`` are keyed by the *measured* tract (e.g. ``"hcp842/cst/L"``, the feature the
    participant level reports) and hold the simulator's own source for it
    (:attr:`RegionSource.name`, e.g. ``"xtract/cst/L"``).
    """

    t1_template: Path
    tracts: dict[str, RegionSource] = field(default_factory=dict)
    controls: dict[str, RegionSource] = field(default_factory=dict)
    gm: dict[str, RegionSource] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSubject:
    """The real subject's files."""

    dwi: Path
    bval: Path
    bvec: Path
    dwi_sidecar: Path
    t1w: Path
    t1w_sidecar: Path

    @classmethod
    def from_bids(cls, root: Path, *, subject: str = "01", direction: str = "AP"
                  ) -> SourceSubject:
        """Locate ``sub-<subject>`` DWI (``dir-<direction>``) and T1w files in a BIDS root."""
        dwi = Path(root) / f"sub-{subject}" / "dwi" / f"sub-{subject}_dir-{direction}_dwi"
        anat = Path(root) / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w"
        files = cls(dwi=dwi.with_suffix(".nii.gz"), bval=dwi.with_suffix(".bval"),
                    bvec=dwi.with_suffix(".bvec"), dwi_sidecar=dwi.with_suffix(".json"),
                    t1w=anat.with_suffix(".nii.gz"), t1w_sidecar=anat.with_suffix(".json"))
        for path in vars(files).values():
            if not Path(path).is_file():
                raise MissingInputError(f"{path}: source subject file not found")
        return files


@dataclass(frozen=True)
class BaseAnatomy:
    """Arrays of the source anatomy (see module docstring)."""

    dwi_affine: np.ndarray
    tensors: np.ndarray  # (X, Y, Z, 6) lower-triangular, b-vector frame, mm^2/s
    s0: np.ndarray  # (X, Y, Z)
    mask: np.ndarray  # (X, Y, Z) bool
    bvals: np.ndarray
    bvecs: np.ndarray  # (n, 3), FSL convention
    t1_affine: np.ndarray
    t1: np.ndarray  # (X, Y, Z) float32
    weights: dict[str, np.ndarray]  # "atlas/region/hemi" -> DWI-grid weights in [0, 1]
    template_z: np.ndarray  # (X, Y, Z) template world z (mm) of each DWI voxel; NaN outside
    gm_masks: dict[str, np.ndarray]  # "atlas/region/hemi" -> T1w-grid bool masks
    dwi_sidecar: dict
    t1_sidecar: dict
    provenance: dict

    @property
    def bvec_frame(self) -> np.ndarray:
        """World direction (columns) of the b-vector axes (FSL: voxel axes, x flipped if det>0)."""
        zooms = np.sqrt((self.dwi_affine[:3, :3] ** 2).sum(axis=0))
        frame = self.dwi_affine[:3, :3] / zooms
        if np.linalg.det(frame) > 0:
            frame = frame @ np.diag([-1.0, 1.0, 1.0])
        return frame


def _fingerprint(paths: list[Path], regions: list[str]) -> str:
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for path in sorted(str(p) for p in paths):
        stat = Path(path).stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for region in sorted(regions):  # which regions (and labels) the base holds
        digest.update(region.encode())
    return digest.hexdigest()[:16]


def load_or_build_base(source: SourceSubject, atlases: AtlasInputs, *, cache_dir: Path,
                       seed: int = 1) -> BaseAnatomy:
    """Return the cached base anatomy for these inputs, building it on first use."""
    inputs = [*vars(source).values(), atlases.t1_template,
              *(p for group in (atlases.tracts, atlases.controls, atlases.gm)
                for r in group.values() for p in (r.path, *r.union))]
    regions = [f"{key}:{region.name}:{region.labels}"
               for group in (atlases.tracts, atlases.controls, atlases.gm)
               for key, region in group.items()]
    key = _fingerprint(inputs, regions)
    npz = Path(cache_dir) / f"base-{key}.npz"
    meta = npz.with_suffix(".json")
    if npz.is_file() and meta.is_file():
        return _load(npz, meta)
    LOGGER.info("building the simulation base anatomy (once) in %s", cache_dir)
    # one ITK thread (in a child process): the same inputs then give the same base
    base = single_threaded(build_base, source, atlases, seed=seed)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    _save(base, npz, meta)
    return base


def build_base(source: SourceSubject, atlases: AtlasInputs, *, seed: int = 1) -> BaseAnatomy:
    """Fit the tensor field and bring atlas regions to the real subject (slow: ~2-3 min)."""
    img = nib.load(source.dwi)
    if img.ndim != 4:
        raise BadDataError(f"{source.dwi}: DWI must be 4D, got shape {img.shape}")
    data = img.get_fdata(dtype=np.float32)
    bvals, bvecs = read_bvals_bvecs(str(source.bval), str(source.bvec))
    if len(bvals) != data.shape[-1]:
        raise BadDataError(f"{source.bval}: {len(bvals)} b-values for {data.shape[-1]} volumes")
    gtab = gradient_table(bvals, bvecs=bvecs)
    smooth = np.stack([gaussian_filter(data[..., v], DWI_SMOOTHING_VOXELS)
                       for v in range(data.shape[-1])], axis=-1)
    b0_index = np.flatnonzero(gtab.b0s_mask)
    # the participant level's own mask (b0 + mean DWI, hole-free): Otsu on the b0 alone
    # leaves out this subject's brainstem, which would become free water in every participant
    mask = brain_mask(smooth[..., b0_index].mean(axis=-1), zooms=img.header.get_zooms()[:3],
                      dwi_mean=smooth[..., ~gtab.b0s_mask].mean(axis=-1), source=str(source.dwi))
    fit = TensorModel(gtab, fit_method="WLS", return_S0_hat=True).fit(smooth, mask=mask)
    tensors = np.zeros(mask.shape + (6,), np.float32)
    tensors[mask] = regularise(fit.lower_triangular()[mask])
    tensors[~mask] = np.array([3e-3, 0, 3e-3, 0, 0, 3e-3], np.float32)  # free water outside
    s0 = np.clip(smooth[..., b0_index].mean(axis=-1), 0, None).astype(np.float32)
    t1_img = nib.load(source.t1w)
    if t1_img.ndim != 3:
        raise BadDataError(f"{source.t1w}: T1w must be 3D, got shape {t1_img.shape}")
    t1 = t1_img.get_fdata(dtype=np.float32)
    placed = place_regions(t1=t1, t1_affine=t1_img.affine, b0=s0, dwi_affine=img.affine,
                           template_t1=atlases.t1_template,
                           tracts={**atlases.tracts, **atlases.controls}, gm=atlases.gm,
                           seed=seed)
    return BaseAnatomy(
        dwi_affine=img.affine, tensors=tensors, s0=s0, mask=mask, bvals=np.asarray(bvals),
        bvecs=np.asarray(bvecs), t1_affine=t1_img.affine, t1=t1, weights=placed.weights,
        template_z=placed.template_z, gm_masks={k: v >= 0.5 for k, v in placed.gm.items()},
        dwi_sidecar=json.loads(Path(source.dwi_sidecar).read_text()),
        t1_sidecar=json.loads(Path(source.t1w_sidecar).read_text()),
        provenance={"dwi": str(source.dwi), "t1w": str(source.t1w),
                    "t1_template": str(atlases.t1_template),
                    "placement": "MNI152NLin6Asym T1w -> source T1w (N4; antspyx affine + "
                                 "SyN, Mattes) -> source mean b0 (rigid, Mattes); not the "
                                 "participant level's FA registration",
                    "placement_qc": placed.qc,
                    "regions": {k: r.name or str(r.path) for group in
                                (atlases.tracts, atlases.controls, atlases.gm)
                                for k, r in group.items()}})


def _save(base: BaseAnatomy, npz: Path, meta: Path) -> None:
    arrays = {"dwi_affine": base.dwi_affine, "tensors": base.tensors, "s0": base.s0,
              "mask": base.mask, "bvals": base.bvals, "bvecs": base.bvecs,
              "t1_affine": base.t1_affine, "t1": base.t1, "template_z": base.template_z}
    arrays.update({f"w:{k}": v for k, v in base.weights.items()})
    arrays.update({f"gm:{k}": v for k, v in base.gm_masks.items()})
    tmp = npz.with_name(npz.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    meta.write_text(json.dumps({"dwi_sidecar": base.dwi_sidecar, "t1_sidecar": base.t1_sidecar,
                                "provenance": base.provenance}, indent=1))
    tmp.replace(npz)


def _load(npz: Path, meta: Path) -> BaseAnatomy:
    info = json.loads(meta.read_text())
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    return BaseAnatomy(
        dwi_affine=arrays["dwi_affine"], tensors=arrays["tensors"], s0=arrays["s0"],
        mask=arrays["mask"].astype(bool), bvals=arrays["bvals"], bvecs=arrays["bvecs"],
        t1_affine=arrays["t1_affine"], t1=arrays["t1"],
        weights={k[2:]: v for k, v in arrays.items() if k.startswith("w:")},
        template_z=arrays["template_z"],
        gm_masks={k[3:]: v.astype(bool) for k, v in arrays.items() if k.startswith("gm:")},
        dwi_sidecar=info["dwi_sidecar"], t1_sidecar=info["t1_sidecar"],
        provenance=info["provenance"])
