"""Where the simulator puts its tracts: other atlases, carried by the subject's own T1w.

The participant level measures tract metrics under the HCP842 maps, brought to each DWI by
its FA -> FA-template registration (:mod:`bids_app.core.dwi.registration`).  A simulation
that placed its lesions the same way would grade itself: atlas misplacement and registration
bias would cancel.  Here the tracts come from other atlas sources (XTRACT, HCP1065; chosen per
tract in the effects' ``placement``) and reach the source subject's DWI grid by a route the
measurement does not share:

1. MNI152NLin6Asym T1w template -> the subject's N4-corrected T1w: antspyx affine + SyN
   (Mattes mutual information, T1w contrast on both sides);
2. the subject's T1w -> its own mean b0: a rigid registration (Mattes; same head, same
   session), composed with (1) into one resampling of each template-space map.

The same transform carries the template's world z coordinate, so a focal lesion declared at a
template height (:func:`focal_weights`) lands at that anatomical level of the subject.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from scipy.spatial.transform import Rotation

from bids_app.core.seeding import ants_seed

#: added to the template z coordinate before warping, so that the warp's zero fill (outside
#: the template) cannot be mistaken for z = 0 mm
Z_OFFSET = 1000.0
#: tract probability of the "core" used for a tract's centre line and length
CORE_PROBABILITY = 0.5


@dataclass(frozen=True)
class RegionSource:
    """A template-space region: a probability map, or label values of a label image.

    ``union``: further probability maps of the same region (e.g. an atlas's subdivisions),
    combined with ``path`` by the voxel-wise maximum.  ``name``: the source as
    ``"atlas/region/hemisphere"`` (provenance).
    """

    path: Path
    labels: tuple[int, ...] = ()
    union: tuple[Path, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class Placement:
    """Result of :func:`place_regions`.

    Attributes
    ----------
    weights : dict
        Key -> map on the DWI grid in [0, 1] (probability maps linear, labels as the linear
        interpolation of their binary mask).
    gm : dict
        Key -> map on the T1w grid in [0, 1].
    template_z : ndarray
        World z (mm) in the template of each DWI voxel; NaN outside the template.
    qc : dict
        ``t1w_to_dwi`` (rigid rotation, degrees, and translation, mm) and
        ``template_to_t1w_r`` (Pearson r of the warped template with the N4 T1w over the
        warped template's brighter half: head, not background).
    """

    weights: dict[str, np.ndarray]
    gm: dict[str, np.ndarray]
    template_z: np.ndarray
    qc: dict = field(default_factory=dict)


def _to_ants(data: np.ndarray, affine: np.ndarray, tmp: Path, name: str) -> ants.ANTsImage:
    """nibabel array -> ANTs image by a file round trip (keeps nibabel's voxel order)."""
    path = tmp / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
    return ants.image_read(str(path))


def load_template_map(region: RegionSource) -> tuple[np.ndarray, np.ndarray]:
    """A region's template-space map (float, [0, 1]) and its affine, as warped by
    :func:`place_regions` (labels binary, ``union`` members by the voxel-wise maximum)."""
    img = nib.load(str(region.path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if region.labels:
        return np.isin(np.rint(data), region.labels).astype(np.float32), img.affine
    for extra in region.union:
        data = np.maximum(data, np.asarray(nib.load(str(extra)).dataobj, dtype=np.float32))
    return np.clip(data, 0, 1), img.affine


def _rigid_qc(transform_file: str) -> dict:
    params = np.asarray(ants.read_transform(transform_file).parameters, float)
    rotation = Rotation.from_matrix(params[:9].reshape(3, 3)).magnitude()
    return {"rotation_deg": round(float(np.degrees(rotation)), 3),
            "translation_mm": [round(float(t), 3) for t in params[9:12]]}


def place_regions(*, t1: np.ndarray, t1_affine: np.ndarray, b0: np.ndarray,
                  dwi_affine: np.ndarray, template_t1: Path, tracts: dict[str, RegionSource],
                  gm: dict[str, RegionSource], seed: int) -> Placement:
    """Register the template to the subject through its T1w; warp every region.

    Parameters
    ----------
    t1, t1_affine
        The subject's T1w.
    b0, dwi_affine
        The subject's mean b0 (the rigid target) on the DWI grid.
    template_t1
        MNI152NLin6Asym T1w (the space of every region).
    tracts
        Regions resampled onto the DWI grid.
    gm
        Regions resampled onto the T1w grid.
    seed
        ANTs sampling seed (non-zero).

    Returns
    -------
    Placement
    """
    with tempfile.TemporaryDirectory(prefix="alsmri-place-") as tmp_dir:
        tmp = Path(tmp_dir)
        t1_image = _to_ants(t1, t1_affine, tmp, "t1")
        t1_n4 = ants.n4_bias_field_correction(t1_image)
        b0_image = _to_ants(b0, dwi_affine, tmp, "b0")
        template = ants.image_read(str(template_t1))
        with ants_seed(seed):
            to_t1 = ants.registration(t1_n4, template, type_of_transform="SyN",
                                      aff_metric="mattes", syn_metric="mattes",
                                      reg_iterations=(60, 30, 10),
                                      outprefix=str(tmp / "tpl2t1_"))
            to_dwi = ants.registration(b0_image, t1_n4, type_of_transform="Rigid",
                                       aff_metric="mattes", outprefix=str(tmp / "t12dwi_"))
        chain = [*to_dwi["fwdtransforms"], *to_t1["fwdtransforms"]]  # DWI -> T1w -> template

        def to_dwi_grid(image: ants.ANTsImage) -> np.ndarray:
            return ants.apply_transforms(b0_image, image, chain, interpolator="linear").numpy()

        def region_image(region: RegionSource) -> ants.ANTsImage:
            return _to_ants(*load_template_map(region), tmp, "region")

        weights = {key: np.clip(to_dwi_grid(region_image(region)), 0, 1).astype(np.float32)
                   for key, region in tracts.items()}
        gm_maps = {key: np.clip(ants.apply_transforms(t1_n4, region_image(region),
                                                      to_t1["fwdtransforms"],
                                                      interpolator="linear").numpy(), 0, 1)
                   .astype(np.float32) for key, region in gm.items()}
        tpl_img = nib.load(str(template_t1))
        template_z = to_dwi_grid(_to_ants(world_z(tpl_img.shape, tpl_img.affine) + Z_OFFSET,
                                          tpl_img.affine, tmp, "z"))
        template_z = np.where(template_z > Z_OFFSET / 2, template_z - Z_OFFSET, np.nan)
        warped = to_t1["warpedmovout"].numpy()
        inside = warped > np.percentile(warped, 50)
        qc = {"t1w_to_dwi": _rigid_qc(to_dwi["fwdtransforms"][0]),
              "template_to_t1w_r": round(float(np.corrcoef(
                  warped[inside], t1_n4.numpy()[inside])[0, 1]), 4)}
    return Placement(weights=weights, gm=gm_maps, template_z=template_z.astype(np.float32),
                     qc=qc)


def world_z(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World z coordinate (mm) of every voxel centre of a 3D grid."""
    ijk = np.indices(shape[:3], dtype=np.float64)
    return (affine[2, 0] * ijk[0] + affine[2, 1] * ijk[1] + affine[2, 2] * ijk[2]
            + affine[2, 3]).astype(np.float32)


def focal_weights(tract: np.ndarray, template_z: np.ndarray, *, z_mm: float,
                  sigma_mm: float) -> np.ndarray:
    """A tract's weights times a Gaussian of template height centred at ``z_mm``.

    >>> focal_weights(np.ones(3), np.array([0.0, 10.0, np.nan]), z_mm=10.0, sigma_mm=5.0)
    array([0.13533528, 1.        , 0.        ])
    """
    z = np.asarray(template_z, float)
    profile = np.exp(-0.5 * ((z - z_mm) / sigma_mm) ** 2)
    return np.asarray(tract, float) * np.where(np.isfinite(z), profile, 0.0)


def centre_line(prob: np.ndarray, affine: np.ndarray, *, core: float = CORE_PROBABILITY
                ) -> np.ndarray:
    """The tract's centre line: (n, 3) world points, one per axial slice holding its core.

    Each point is the probability-weighted centroid of the slice's core voxels (p >= core),
    ordered from the inferior end up; the grid's third axis must be (close to) world z.
    """
    prob = np.asarray(prob, float)
    points = []
    for k in range(prob.shape[2]):
        plane = prob[:, :, k]
        ij = np.argwhere(plane >= core)
        if len(ij) == 0:
            continue
        w = plane[ij[:, 0], ij[:, 1]]
        ijk = np.column_stack([ij, np.full(len(ij), k)]).astype(float)
        xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
        points.append((w[:, None] * xyz).sum(axis=0) / w.sum())
    if not points:
        raise ValueError(f"no voxel with probability >= {core}: no centre line")
    line = np.array(points)
    return line[np.argsort(line[:, 2])]


def length_fraction(line: np.ndarray, z_mm: float, *, floor_mm: float | None = None) -> float:
    """Arc-length fraction of height ``z_mm`` along a centre line, from its inferior end.

    ``floor_mm``: start the line there instead (e.g. the lowest height inside a field of
    view), so the fraction is along the part of the tract above it.

    >>> line = np.array([[0, 0, z] for z in range(0, 101)], float)
    >>> length_fraction(line, 25.0), length_fraction(line, 50.0, floor_mm=40.0)
    (0.25, 0.16666666666666666)
    """
    line = np.asarray(line, float)
    if floor_mm is not None:
        line = line[line[:, 2] >= floor_mm]
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    if arc[-1] <= 0:
        raise ValueError("centre line of zero length")
    return float(np.interp(z_mm, line[:, 2], arc) / arc[-1])
