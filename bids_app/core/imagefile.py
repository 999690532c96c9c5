"""Is an image file complete? A streamed check run before any processing.

A NIfTI cut short in transfer keeps a valid header, so opening it (or reading its first
slices) succeeds and the failure surfaces only when a processing step reads the missing part,
possibly minutes into a run. :func:`check_image_file` reads the whole file once, in chunks
(constant memory): a ``.nii.gz`` is decompressed to its end, so gzip's CRC-32 and length
trailer are verified, and the data size is compared with what the header declares.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.errors import BadDataError

#: Bytes decompressed per read (memory use of the check).
CHUNK = 1 << 20


def check_image_file(path: str | os.PathLike[str], *, what: str = "image") -> nib.Nifti1Image:
    """Check that a NIfTI file is complete and readable, without keeping its data.

    Parameters
    ----------
    path
        ``.nii`` or ``.nii.gz`` file.
    what
        What the image is (``"DWI image"``, ``"T1w image"``), used in messages.

    Returns
    -------
    nibabel.Nifti1Image
        The image as :func:`nibabel.load` returns it (header read, data not loaded).

    Raises
    ------
    BadDataError
        The header cannot be read; the gzip stream is truncated, corrupt (CRC or length
        mismatch) or followed by garbage; or the file holds fewer data bytes than the header's
        shape and data type need.
    """
    path = Path(path)
    try:
        img = nib.load(path)
        proxy = img.dataobj
        needed = int(proxy.offset) + int(np.prod(proxy.shape)) * np.dtype(proxy.dtype).itemsize
    except Exception as exc:  # nibabel raises many types for a corrupt header
        raise BadDataError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from exc
    if path.name.endswith(".gz"):
        size = _gzip_length(path, what=what)
    else:
        size = path.stat().st_size
    if size < needed:
        raise BadDataError(
            f"{path}: truncated {what}: {size} bytes of header and data, the header's shape "
            f"{tuple(int(s) for s in proxy.shape)} ({np.dtype(proxy.dtype)}) needs {needed}")
    return img


def _gzip_length(path: Path, *, what: str) -> int:
    """Decompressed length of a gzip file, read to its end (CRC and length are checked)."""
    size = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
    except EOFError as exc:
        raise BadDataError(f"{path}: truncated {what} (the compressed stream ends early after "
                           f"{size} bytes: file cut short?)") from exc
    except (OSError, zlib.error) as exc:  # BadGzipFile (CRC/length mismatch) is an OSError
        raise BadDataError(f"{path}: corrupt {what} (gzip: {exc})") from exc
    return size
