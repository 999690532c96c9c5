"""Loading and writing shared by the nipype interfaces (files in, arrays out, and back)."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

LOGGER = logging.getLogger("nipype.interface")


def out_path(runtime, name: str) -> str:
    """``name`` in the node's working directory."""
    return str(Path(runtime.cwd) / name)


def load_nifti(path: str) -> tuple[np.ndarray, nb.Nifti1Image]:
    """float32 data and the image (for its affine and header)."""
    img = nb.load(path)
    return np.asarray(img.get_fdata(dtype=np.float32)), img


def load_mask(path: str) -> np.ndarray:
    """Boolean mask (voxels > 0) of a mask image."""
    return np.asarray(nb.load(path).dataobj) > 0


def save_nifti(data: np.ndarray, ref: nb.Nifti1Image, name: str, runtime,
               dtype=np.float32) -> str:
    """Write ``data`` as ``dtype`` with the affine and header of ``ref`` (units mm, s)."""
    hdr = ref.header.copy()
    hdr.set_data_dtype(dtype)
    hdr.set_xyzt_units("mm", "sec")
    out = out_path(runtime, name)
    nb.save(nb.Nifti1Image(np.asarray(data, dtype=dtype), ref.affine, hdr), out)
    return out


def save_gradients(bvals, bvecs, runtime, stem: str) -> tuple[str, str]:
    """FSL-format ``<stem>.bval`` (one row) and ``<stem>.bvec`` (three rows)."""
    bval = out_path(runtime, f"{stem}.bval")
    bvec = out_path(runtime, f"{stem}.bvec")
    np.savetxt(bval, np.asarray(bvals)[None], fmt="%g")
    np.savetxt(bvec, np.asarray(bvecs).T, fmt="%.6f")
    return bval, bvec


def read_probseg(stack: str, index: str) -> dict[tuple[str, str], np.ndarray]:
    """``{(region, hemisphere): probability map}`` of a warped probseg stack and its index."""
    data = np.asarray(nb.load(stack).get_fdata(dtype=np.float32))
    table = pd.read_csv(index, sep="\t", keep_default_na=False)
    return {(r.region, r.hemisphere): data[..., int(r.volume)] for r in table.itertuples()}


def log_warnings(caught) -> list[str]:
    """Log caught warnings on the interface logger and return their messages."""
    msgs = [str(w.message) for w in caught]
    for msg in msgs:
        LOGGER.warning(msg)
    return msgs
