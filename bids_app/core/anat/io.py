"""Loading and checking the T1w image; reorientation to RAS+."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.core.imagefile import check_image_file
from bids_app.errors import BadDataError

#: Largest/smallest voxel size ratio above which the T1w is flagged as strongly anisotropic.
MAX_ANISOTROPY = 2.0


def load_t1w(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    """Load a T1w image and check it is a readable 3D volume.

    A 4D image with a single volume is squeezed to 3D; any other 4D image is rejected.

    Parameters
    ----------
    path
        NIfTI file.

    Returns
    -------
    nibabel.Nifti1Image
        The 3D image (data not yet read into memory).

    Raises
    ------
    BadDataError
        The file cannot be read as NIfTI, is truncated or corrupt (the whole file is streamed
        once by :func:`bids_app.core.imagefile.check_image_file`: gzip CRC and length, data
        size against the header; ~20 ms for the ds-xa30 T1w), or it is not 3D.
    """
    path = Path(path)
    img = check_image_file(path, what="T1w image")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine, img.header)
    elif len(shape) != 3:
        raise BadDataError(f"{path}: T1w must be a 3D image, got shape {tuple(shape)}")
    if min(shape[:3]) < 8:
        raise BadDataError(f"{path}: T1w too small to process, shape {tuple(shape)}")
    return img


def voxel_anisotropy(img: nib.Nifti1Image) -> float:
    """Ratio of the largest to the smallest voxel dimension."""
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    return float(zooms.max() / zooms.min())


def anisotropy_warning(img: nib.Nifti1Image, *, name: str = "T1w",
                       max_ratio: float = MAX_ANISOTROPY) -> str | None:
    """A warning message when the voxels are strongly anisotropic, else ``None``."""
    ratio = voxel_anisotropy(img)
    if ratio > max_ratio:
        zooms = "x".join(f"{z:.2f}" for z in img.header.get_zooms()[:3])
        return (f"{name}: strongly anisotropic voxels ({zooms} mm, ratio {ratio:.1f} > "
                f"{max_ratio}); segmentation and GM volumes may be biased")
    return None


def reorient_ras(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Reorient to the closest canonical (RAS+) voxel order; a no-op when already RAS+."""
    if nib.aff2axcodes(img.affine) == ("R", "A", "S"):
        return img
    return nib.as_closest_canonical(img)
