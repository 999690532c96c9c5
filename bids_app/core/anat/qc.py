"""Quality-control numbers and figures of the anatomical branch (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage


def qc_metrics(*, brain_mask: np.ndarray, tissue: Mapping[str, float], voxel_volume: float,
               registration_similarity: float) -> dict[str, float]:
    """QC numbers of one T1w.

    Parameters
    ----------
    brain_mask
        Binary brain mask.
    tissue
        Output of :func:`bids_app.core.anat.volumes.tissue_volumes` (mm^3; GM, WM, CSF, TIV).
    voxel_volume
        mm^3 per voxel.
    registration_similarity
        Correlation of the warped T1w with the template inside the template brain mask.

    Returns
    -------
    dict
        ``brain_volume_cm3`` (mask volume), ``tiv_cm3``, ``gm_cm3``, ``wm_cm3``, ``csf_cm3``,
        ``gm_fraction`` (GM/TIV), ``wm_fraction``, ``csf_fraction``,
        ``registration_similarity``.
    """
    tiv = tissue["TIV"]
    return {
        "brain_volume_cm3": float(np.count_nonzero(brain_mask) * voxel_volume / 1000),
        "tiv_cm3": tiv / 1000,
        "gm_cm3": tissue["GM"] / 1000,
        "wm_cm3": tissue["WM"] / 1000,
        "csf_cm3": tissue["CSF"] / 1000,
        "gm_fraction": tissue["GM"] / tiv if tiv > 0 else float("nan"),
        "wm_fraction": tissue["WM"] / tiv if tiv > 0 else float("nan"),
        "csf_fraction": tissue["CSF"] / tiv if tiv > 0 else float("nan"),
        "registration_similarity": float(registration_similarity),
    }


def _slices(shape: tuple[int, ...], n: int = 5) -> list[int]:
    return [round(f * (shape[2] - 1)) for f in np.linspace(0.3, 0.75, n)]


def _edges(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def _norm(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img[img > 0], (1, 99.5)) if np.any(img > 0) else (0.0, 1.0)
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def plot_segmentation(t1w: np.ndarray, dseg: np.ndarray, out_file: str | os.PathLike[str], *,
                      title: str = "Tissue segmentation") -> Path:
    """Axial slices of the T1w with GM (green), WM (blue) and CSF (red) contours (SVG/PNG).

    Arrays are in RAS+ voxel order (x right, y anterior, z superior).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = _norm(t1w)
    zs = _slices(t1w.shape)
    fig, axes = plt.subplots(1, len(zs), figsize=(2.4 * len(zs), 3), facecolor="black")
    for ax, z in zip(axes, zs):
        ax.imshow(base[:, :, z].T, cmap="gray", origin="lower", interpolation="nearest")
        for label, color in ((1, "lime"), (2, "deepskyblue"), (3, "red")):
            sl = dseg[:, :, z] == label
            if sl.any():
                ax.contour(sl.T.astype(float), levels=[0.5], colors=color, linewidths=0.6,
                           origin="lower")
        ax.set_axis_off()
    fig.suptitle(f"{title} (GM green, WM blue, CSF red)", color="white", fontsize=9)
    out = Path(out_file)
    fig.savefig(out, facecolor="black", bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out


def plot_registration(warped: np.ndarray, template: np.ndarray, template_mask: np.ndarray,
                      out_file: str | os.PathLike[str], *,
                      title: str = "T1w in MNI152NLin6Asym") -> Path:
    """Axial slices of the warped T1w with template brain-mask and tissue edges overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = _norm(warped)
    tpl = _norm(template)
    # Template edges: brain outline + edges of the template's bright (WM) tissue.
    wm_edges = _edges(ndimage.gaussian_filter(tpl, 0.7) > 0.7) & (template_mask > 0)
    brain_edges = _edges(template_mask > 0)
    zs = _slices(warped.shape)
    fig, axes = plt.subplots(1, len(zs), figsize=(2.4 * len(zs), 3), facecolor="black")
    for ax, z in zip(axes, zs):
        ax.imshow(base[:, :, z].T, cmap="gray", origin="lower", interpolation="nearest")
        overlay = np.zeros(base.shape[:2] + (4,))
        overlay[wm_edges[:, :, z]] = (1.0, 0.2, 0.2, 0.9)
        overlay[brain_edges[:, :, z]] = (1.0, 0.9, 0.0, 0.9)
        ax.imshow(overlay.transpose(1, 0, 2), origin="lower", interpolation="nearest")
        ax.set_axis_off()
    fig.suptitle(f"{title} (template edges: brain yellow, WM red)", color="white", fontsize=9)
    out = Path(out_file)
    fig.savefig(out, facecolor="black", bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out
