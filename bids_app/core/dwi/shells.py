"""Shells of a diffusion acquisition and the volumes a model is fitted to.

A shell is a cluster of b-values within :data:`SHELL_TOLERANCE` of each other (scanners write
b = 995, 1000, 1005 for one nominal shell); its b-value is the cluster's median rounded to
the nearest 5 s/mm^2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: b-values closer than this (s/mm^2) belong to one shell (MRtrix3's ``BValueEpsilon`` is 80).
SHELL_TOLERANCE = 100.0
#: Two directions closer than this angle (up to sign) count as one direction.
COLLINEAR_DEGREES = 2.0


@dataclass(frozen=True)
class Shell:
    """One non-zero shell of an acquisition."""

    bval: float
    """Nominal b-value (s/mm^2): median of the shell's b-values rounded to 5."""
    n_volumes: int
    n_directions: int
    """Non-collinear directions (v and -v are one)."""


def count_directions(bvecs: np.ndarray, *, degrees: float = COLLINEAR_DEGREES) -> int:
    """Number of distinct directions among unit vectors, identifying v and -v.

    Parameters
    ----------
    bvecs
        (M, 3) unit vectors.
    degrees
        Vectors within this angle (up to sign) are one direction.

    Returns
    -------
    int
    """
    cos_tol = np.cos(np.deg2rad(degrees))
    kept: list[np.ndarray] = []
    for vec in np.asarray(bvecs, dtype=float):
        if all(abs(float(vec @ k)) < cos_tol for k in kept):
            kept.append(vec)
    return len(kept)


def shell_labels(bvals: np.ndarray, *, b0_threshold: float,
                 tolerance: float = SHELL_TOLERANCE) -> tuple[np.ndarray, tuple[float, ...]]:
    """Shell index of every volume (-1 for b0) and the shells' nominal b-values.

    Sorted b-values are split wherever two neighbours differ by more than ``tolerance``.

    >>> labels, shells = shell_labels(np.array([0, 995, 2000, 1005, 5, 2010]), b0_threshold=50)
    >>> labels.tolist(), shells
    ([-1, 0, 1, 0, -1, 1], (1000.0, 2005.0))
    """
    bvals = np.asarray(bvals, dtype=float)
    labels = np.full(len(bvals), -1, dtype=int)
    dw = np.flatnonzero(bvals >= b0_threshold)
    if not len(dw):
        return labels, ()
    order = dw[np.argsort(bvals[dw], kind="stable")]
    cuts = np.flatnonzero(np.diff(bvals[order]) > tolerance) + 1
    shells = []
    for i, members in enumerate(np.split(order, cuts)):
        labels[members] = i
        shells.append(float(5.0 * np.round(np.median(bvals[members]) / 5.0)))
    return labels, tuple(shells)


def detect_shells(bvals: np.ndarray, bvecs: np.ndarray, *, b0_threshold: float,
                  tolerance: float = SHELL_TOLERANCE) -> tuple[Shell, ...]:
    """The non-zero shells of an acquisition, lowest first.

    Parameters
    ----------
    bvals, bvecs
        (N,) b-values (s/mm^2) and (N, 3) unit b-vectors.
    b0_threshold
        b-values below are b0.
    tolerance
        b-values closer than this belong to one shell.

    Returns
    -------
    tuple of Shell
    """
    bvecs = np.asarray(bvecs, dtype=float)
    labels, values = shell_labels(bvals, b0_threshold=b0_threshold, tolerance=tolerance)
    return tuple(Shell(bval=b, n_volumes=int((labels == i).sum()),
                       n_directions=count_directions(bvecs[labels == i]))
                 for i, b in enumerate(values))


def select_volumes(bvals: np.ndarray, shells: Sequence[float], *, b0_threshold: float,
                   tolerance: float = SHELL_TOLERANCE) -> np.ndarray:
    """Indices of the b0 volumes and of the volumes of the given shells.

    Parameters
    ----------
    bvals
        (N,) b-values.
    shells
        Nominal b-values of the shells to keep (from :func:`detect_shells`); empty: every
        volume.
    b0_threshold, tolerance
        As in :func:`detect_shells`.

    Returns
    -------
    ndarray
        Sorted volume indices.

    Raises
    ------
    ValueError
        A requested shell is not in the acquisition.
    """
    bvals = np.asarray(bvals, dtype=float)
    if not len(shells):
        return np.arange(len(bvals))
    labels, values = shell_labels(bvals, b0_threshold=b0_threshold, tolerance=tolerance)
    missing = [b for b in shells if not any(abs(b - v) <= tolerance for v in values)]
    if missing:
        raise ValueError(f"shell(s) {missing} not in the acquisition (shells {values})")
    keep = [i for i, v in enumerate(values) if any(abs(b - v) <= tolerance for b in shells)]
    return np.flatnonzero((labels == -1) | np.isin(labels, keep))
