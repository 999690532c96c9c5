"""DWI quality control: numbers (SNR, framewise displacement, outliers) and figures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

#: Volumes moving more than this (mm FD) are outliers.
FD_OUTLIER_MM = 2.0
#: Volumes whose mean in-mask signal is this many robust SDs from their shell's median.
SIGNAL_OUTLIER_Z = 3.5


def b0_snr(b0: np.ndarray, mask: np.ndarray, sigma: np.ndarray | float | None) -> float:
    """Mean b0 signal in the mask divided by the noise SD (median in mask of ``sigma``).

    ``sigma`` is the MP-PCA noise map when available; otherwise the noise is estimated from
    the b0 with dipy's ``estimate_sigma`` (local-variance estimator).
    """
    mask = np.asarray(mask, dtype=bool)
    if sigma is None:
        from dipy.denoise.noise_estimate import estimate_sigma

        sigma = float(estimate_sigma(np.asarray(b0, dtype=np.float32), N=0)[0])
    noise = float(np.median(np.asarray(sigma)[mask])) if np.ndim(sigma) == 3 else float(sigma)
    return float(np.mean(b0[mask]) / noise) if noise > 0 else float("nan")


def outlier_volumes(data: np.ndarray, bvals: np.ndarray, mask: np.ndarray,
                    fd: np.ndarray, *, b0_threshold: float) -> np.ndarray:
    """Boolean (N,) flag: FD > :data:`FD_OUTLIER_MM` or a shell-wise signal outlier.

    The signal criterion flags volumes whose mean in-mask intensity is more than
    :data:`SIGNAL_OUTLIER_Z` robust z (median/MAD within volumes of the same shell) away,
    e.g. signal dropout.
    """
    means = np.asarray(data, dtype=float)[np.asarray(mask, bool)].mean(axis=0)
    shell = np.where(np.asarray(bvals) < b0_threshold, 0, np.round(np.asarray(bvals), -2))
    flag = np.asarray(fd, dtype=float) > FD_OUTLIER_MM
    for b in np.unique(shell):
        sel = shell == b
        if sel.sum() < 3:
            continue
        med = np.median(means[sel])
        mad = 1.4826 * np.median(np.abs(means[sel] - med))
        if mad > 0:
            flag[sel] |= np.abs(means[sel] - med) / mad > SIGNAL_OUTLIER_Z
    return flag


def qc_table(*, snr: float, motion: pd.DataFrame, outliers: np.ndarray, shells,
             n_volumes: int, sdc: Mapping[str, float | str], reg_corr: float,
             mask_ml: float) -> pd.DataFrame:
    """One-row QC table (the ``*_desc-dwi_qc.tsv``)."""
    fd = motion["framewise_displacement"].to_numpy(dtype=float)
    return pd.DataFrame([{
        "n_volumes": int(n_volumes),
        "shells": " ".join(f"{b:g}" for b in shells),
        "b0_snr": round(float(snr), 3),
        "mean_fd": round(float(np.mean(fd)), 4),
        "max_fd": round(float(np.max(fd)), 4),
        "n_outlier_volumes": int(np.sum(outliers)),
        "sdc_method": str(sdc.get("method", "none")),
        "sdc_corr_before": sdc.get("corr_raw", float("nan")),
        "sdc_corr_rigid": sdc.get("corr_rigid", float("nan")),
        "sdc_corr_after": sdc.get("corr_sdc", float("nan")),
        "fa_template_corr": round(float(reg_corr), 4),
        "mask_volume_ml": round(float(mask_ml), 1),
    }])


def _mosaic_slices(shape: tuple[int, ...], n: int = 6) -> np.ndarray:
    return np.linspace(shape[2] * 0.2, shape[2] * 0.85, n).astype(int)


def plot_tracts(fa: np.ndarray, probmaps: Mapping[tuple[str, str], np.ndarray],
                out_file: Path | str, *, threshold: float) -> Path:
    """Axial mosaic of FA with the warped tract probability maps (p > threshold) outlined."""
    slices = _mosaic_slices(fa.shape)
    fig, axes = plt.subplots(1, len(slices), figsize=(2.2 * len(slices), 2.6))
    colours = plt.cm.tab10(np.linspace(0, 1, max(len(probmaps), 1)))
    for ax, z in zip(axes, slices, strict=True):
        ax.imshow(np.rot90(fa[:, :, z]), cmap="gray", vmin=0, vmax=0.8)
        for colour, ((region, hemi), prob) in zip(colours, probmaps.items(), strict=False):
            sl = np.rot90(prob[:, :, z])
            if sl.max() > threshold:
                ax.contour(sl, levels=[threshold], colors=[colour], linewidths=0.8)
        ax.set_axis_off()
    handles = [plt.Line2D([], [], color=c, label=f"{r} {h}")
               for c, (r, h) in zip(colours, probmaps, strict=False)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7)
    fig.suptitle("FA with warped tracts", fontsize=9)
    return _save(fig, out_file)


def plot_registration(warped_fa: np.ndarray, template: np.ndarray, out_file: Path | str,
                      *, level: float = 0.25) -> Path:
    """Warped FA (template grid) with the template FA iso-contour (edges) on top."""
    slices = _mosaic_slices(template.shape)
    fig, axes = plt.subplots(1, len(slices), figsize=(2.2 * len(slices), 2.6))
    for ax, z in zip(axes, slices, strict=True):
        ax.imshow(np.rot90(warped_fa[:, :, z]), cmap="gray", vmin=0, vmax=0.8)
        ax.contour(np.rot90(template[:, :, z]), levels=[level], colors="r", linewidths=0.6)
        ax.set_axis_off()
    fig.suptitle("FA in MNI152NLin6Asym; red: template FA edges", fontsize=9)
    return _save(fig, out_file)


def plot_motion(motion: pd.DataFrame, out_file: Path | str) -> Path:
    """Translations, rotations and framewise displacement per volume."""
    fig, axes = plt.subplots(3, 1, figsize=(7, 5), sharex=True)
    motion[["trans_x", "trans_y", "trans_z"]].plot(ax=axes[0])
    axes[0].set_ylabel("mm")
    np.degrees(motion[["rot_x", "rot_y", "rot_z"]]).plot(ax=axes[1])
    axes[1].set_ylabel("degrees")
    motion["framewise_displacement"].plot(ax=axes[2], color="k")
    axes[2].axhline(FD_OUTLIER_MM, color="r", lw=0.8, ls="--")
    axes[2].set_ylabel("FD (mm)")
    axes[2].set_xlabel("volume")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper right") if ax.get_legend() else None
    fig.tight_layout()
    return _save(fig, out_file)


def plot_sdc(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray],
             out_file: Path | str, *, title: str = "") -> Path:
    """Mid-sagittal/axial views of the two PE-polarity mean b0s before and after SDC."""
    fig, axes = plt.subplots(2, 3, figsize=(8, 5.5))
    for row, (pair, label) in enumerate(((before, "before"), (after, "after"))):
        a, b = (np.asarray(x, dtype=float) for x in pair)
        x = a.shape[0] // 2
        vmax = np.percentile(a, 99.5)
        for col, (img, name) in enumerate(((a, "PE +/1st"), (b, "PE -/2nd"),
                                            (a - b, "difference"))):
            cmap, lim = ("gray", (0, vmax)) if col < 2 else ("RdBu_r", (-vmax / 2, vmax / 2))
            axes[row, col].imshow(np.rot90(img[x]), cmap=cmap, vmin=lim[0], vmax=lim[1])
            axes[row, col].set_title(f"{name} {label}", fontsize=8)
            axes[row, col].set_axis_off()
    fig.suptitle(title or "Susceptibility distortion correction (mean b0)", fontsize=9)
    return _save(fig, out_file)


def plot_bundles(fa: np.ndarray, affine: np.ndarray, bundles: Mapping[tuple[str, str], Any],
                 out_file: Path | str, *, max_lines: int = 200) -> Path:
    """One row per tract: recognised streamlines (L red, R cyan) over the mid FA slices.

    Coronal, sagittal and axial views in native world mm (streamlines projected onto each
    plane; at most ``max_lines`` per bundle drawn); a white dot marks node 0 (the inferior
    end) of each bundle's orientation reference. ``bundles`` values need ``count``,
    ``streamlines`` and ``reference`` (:class:`bids_app.core.dwi.bundles.Bundle`).
    """
    fa = np.asarray(fa, dtype=float)
    affine = np.asarray(affine, dtype=float)
    regions = list(dict.fromkeys(r for r, _ in bundles))
    views = [("coronal", (0, 2), 1), ("sagittal", (1, 2), 0), ("axial", (0, 1), 2)]
    fig, axes = plt.subplots(max(len(regions), 1), 3, figsize=(9, 3 * max(len(regions), 1)),
                             facecolor="black", squeeze=False)
    centre = np.asarray(fa.shape) // 2
    for row, region in enumerate(regions):
        for col, (view, (a, b), axis) in enumerate(views):
            ax = axes[row, col]
            sl = [slice(None)] * 3
            sl[axis] = slice(centre[axis], centre[axis] + 1)
            ijk = np.stack(np.meshgrid(*[np.arange(n)[s] for n, s in zip(fa.shape, sl,
                                                                         strict=True)],
                                       indexing="ij"), -1).squeeze(axis)
            xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
            ax.pcolormesh(xyz[..., a], xyz[..., b], fa[tuple(sl)].squeeze(axis), cmap="gray",
                          vmin=0, vmax=0.8, shading="nearest")
            for hemi, colour in (("L", "tab:red"), ("R", "tab:cyan")):
                bundle = bundles.get((region, hemi))
                if bundle is None or not bundle.count:
                    continue
                step = max(1, bundle.count // max_lines)
                for line in list(bundle.streamlines)[::step]:
                    ax.plot(line[:, a], line[:, b], color=colour, lw=0.3, alpha=0.5)
                ax.plot(*bundle.reference[0, [a, b]], "o", color="w", ms=4)
            counts = ", ".join(f"{h} {bundles[(region, h)].count}" for h in "LR"
                               if (region, h) in bundles)
            ax.set_title(f"{region} ({counts}) {view}", color="w", fontsize=8)
            ax.set_aspect("equal")
            ax.axis("off")
    fig.tight_layout()
    out_file = Path(out_file)
    fig.savefig(out_file, dpi=80, facecolor="black")
    plt.close(fig)
    return out_file


def plot_profiles(profiles: pd.DataFrame, out_file: Path | str, *,
                  metrics: tuple[str, ...] = ("fa", "md")) -> Path:
    """Along-tract profiles: one panel per tract and metric, left and right hemispheres."""
    regions = list(dict.fromkeys(profiles["region"])) or ["(none)"]
    fig, axes = plt.subplots(len(metrics), len(regions), figsize=(3.2 * len(regions),
                                                                  2.4 * len(metrics)),
                             squeeze=False)
    for col, region in enumerate(regions):
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for hemi, colour in (("L", "tab:red"), ("R", "tab:blue")):
                rows = profiles[(profiles["region"] == region)
                                & (profiles["hemisphere"] == hemi)
                                & (profiles["metric"] == metric)]
                if len(rows):
                    ax.plot(rows["node"], rows["value"], color=colour, label=hemi)
            ax.set_title(f"{region} {metric.upper()}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(metrics) - 1:
                ax.set_xlabel("node (0 = inferior end)", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_file)


def _save(fig, out_file: Path | str) -> Path:
    out_file = Path(out_file)
    fig.savefig(out_file, dpi=90)
    plt.close(fig)
    return out_file
