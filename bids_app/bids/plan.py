"""The typed plan of one participant/session, built once from the BIDS records.

Everything decided before any nipype graph exists is decided here: how DWI runs are grouped
into processing units, their shells, which diffusion models run on which shells
(:func:`~bids_app.bids.model_plan.plan_models`, from each model's declaration), whether (and
why not) reverse phase-encoding distortion correction runs, and which denoiser
``--denoise auto`` resolves to (from each run's measured diffusion-weighted SNR, the one
decision that reads voxel data). The workflow, the methods text
(``logs/CITATION.md``), the participant notes and the QC tables all read the plan; nothing
re-derives it (the SDC node even checks that what it executed is what the plan said).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.bids.model_plan import ModelPlan, plan_models
from bids_app.bids.records import DwiRun, SubjectSession
from bids_app.core.dwi.gradients import Gradients, preflight_dwi
from bids_app.core.dwi.preproc import DENOISERS, diffusion_snr
from bids_app.core.dwi.shells import Shell, detect_shells
from bids_app.errors import BadDataError
from bids_app.settings import DENOISE_AUTO, DWI_MODEL, DwiSettings

#: Voxel axis of each ``PhaseEncodingDirection`` letter.
PE_AXES = {"i": 0, "j": 1, "k": 2}

#: Values of :attr:`SdcPlan.method`.
SDC_NONE, SDC_RIGID, SDC_REVERSE_PE = "none", "rigid", "reverse-pe-syn"


def parse_pe(direction: str | None) -> tuple[int, int] | None:
    """``"j-"`` -> ``(1, -1)`` (voxel axis, polarity); ``None``/unknown -> ``None``.

    >>> parse_pe("j-"), parse_pe("i"), parse_pe("x")
    ((1, -1), (0, 1), None)
    """
    if not direction or direction[0] not in PE_AXES or direction not in (
            direction[0], direction[0] + "-"):
        return None
    return PE_AXES[direction[0]], (-1 if direction.endswith("-") else 1)


@dataclass(frozen=True)
class SdcPlan:
    """How the runs of one DWI unit are brought into a common, undistorted space."""

    method: str
    """``none`` (one run), ``rigid`` (runs aligned, no SDC) or ``reverse-pe-syn``."""
    note: str
    """One line saying what is done and, when no SDC runs, why (QC table, report, methods)."""
    pe_dirs: tuple[str, ...]
    """``PhaseEncodingDirection`` per run (``""`` when the sidecar has none)."""
    polarities: tuple[int, ...]
    """+1/-1 per run (runs of one polarity are averaged together; unknown counts as +1)."""
    pe_axis: int | None = None
    """Voxel axis the SyN is restricted to (``reverse-pe-syn`` only)."""

    @property
    def applied(self) -> bool:
        """True when a susceptibility distortion correction is estimated."""
        return self.method == SDC_REVERSE_PE


NO_SDC = "no susceptibility distortion correction: "


def plan_sdc(pe_dirs: Sequence[str | None], *, sdc: str, separate: bool = False) -> SdcPlan:
    """Decide the distortion correction of one unit of runs (the only place it is decided).

    Parameters
    ----------
    pe_dirs
        ``PhaseEncodingDirection`` of each run of the unit (``None`` when not given).
    sdc
        The ``--sdc`` option (``auto`` or ``none``).
    separate
        The unit is one run of ``--dwi-runs separate``.

    Returns
    -------
    SdcPlan
        ``reverse-pe-syn`` only when there are two or more runs, every run has a
        ``PhaseEncodingDirection``, all share one axis and both polarities are present.
    """
    parsed = [parse_pe(d) for d in pe_dirs]
    dirs = tuple(d or "" for d in pe_dirs)
    polarities = tuple(p[1] if p else 1 for p in parsed)

    def plan(method: str, note: str, axis: int | None = None) -> SdcPlan:
        return SdcPlan(method=method, note=note, pe_dirs=dirs, polarities=polarities,
                       pe_axis=axis)

    if len(parsed) == 1:
        if separate and sdc != "none":
            return plan(SDC_NONE, NO_SDC + "runs processed separately (--dwi-runs separate)")
        return plan(SDC_NONE, NO_SDC + "single run, one phase-encoding direction")
    if sdc == "none":
        return plan(SDC_RIGID, NO_SDC + "disabled (--sdc none)")
    missing = [i + 1 for i, p in enumerate(parsed) if p is None]
    if missing:
        return plan(SDC_RIGID, NO_SDC + "run(s) " + ", ".join(map(str, missing))
                    + " of " + str(len(parsed)) + " have no valid PhaseEncodingDirection")
    if len({p[0] for p in parsed}) != 1:
        return plan(SDC_RIGID, NO_SDC + "runs do not share one phase-encoding axis ("
                    + ", ".join(dirs) + ")")
    if len(set(polarities)) != 2:
        return plan(SDC_RIGID, NO_SDC + "runs do not have opposite phase-encoding directions")
    return plan(SDC_REVERSE_PE, "reverse phase-encoding SyN (PE axis only) to the midway space",
                axis=parsed[0][0])


#: ``--denoise auto`` runs MP-PCA only on units whose runs all reach this diffusion-weighted
#: SNR (:func:`bids_app.core.dwi.preproc.diffusion_snr`). Below it MP-PCA lowers FA: on
#: simulated data (``benchmarks/fidelity.py``: the ds-xa30 tensor field, FA > 0.4 / FA
#: 0.25-0.4, change against a fit of the raw data) by -0.029/-0.046 at SNR 5.0 (ds-xa30's
#: 21 volumes at b = 2500, b0 SNR 25), -0.020/-0.019 at 5.1 (64 directions at b = 2500) and
#: -0.006/-0.011 at 9.7 (b0 SNR 50), but only -0.002/-0.003 at 15.3 (b0 SNR 80) and
#: -0.006/-0.007 at 12.9 (64 directions at b = 1000, b0 SNR 25; FA within 0.002 of the
#: truth); MRtrix3 ``dwidenoise`` by the same amounts. The real ds-xa30 runs measure 20.
MPPCA_MIN_SNR = 12.0
#: Central slices of a run read to measure its SNR (bounds the planning cost of large series).
SNR_SLAB = 12


@dataclass(frozen=True)
class DenoisePlan:
    """How the runs of one DWI unit are denoised, and why."""

    method: str | None
    """A key of :data:`bids_app.core.dwi.preproc.DENOISERS`; ``None`` only for ``auto``
    planned without reading images (``--boilerplate-only``)."""
    note: str
    """What is done and why (methods text, participant notes)."""
    snr: tuple[float, ...] = ()
    """Measured diffusion-weighted SNR per run (empty when not measured)."""
    warn: bool = False
    """The note is a warning (a requested denoiser the data do not support)."""


def plan_denoise(snrs: Sequence[float] | None, *, denoise: str, shell: float | None = None
                 ) -> DenoisePlan:
    """Decide the denoising of one unit (the only place ``--denoise auto`` is resolved).

    Parameters
    ----------
    snrs
        Diffusion-weighted SNR of each run (:func:`~bids_app.core.dwi.preproc.diffusion_snr`),
        ``None`` when not measured (images not read) and ``nan`` for a run where it could
        not be measured.
    denoise
        The ``--denoise`` option.
    shell
        The b-value the SNR was measured on (for the note).

    Returns
    -------
    DenoisePlan
        For ``auto``: ``mppca`` when every run reaches :data:`MPPCA_MIN_SNR`, else ``none``.
    """
    if denoise != DENOISE_AUTO and denoise not in DENOISERS:
        raise ValueError(f"unknown denoising method {denoise!r}; choose from "
                         f"{[DENOISE_AUTO, *DENOISERS]}")
    measured = tuple(float(v) for v in snrs) if snrs is not None else ()
    lowest = min(measured) if measured else float("nan")
    where = f" at b = {shell:g} s/mm²" if shell else ""
    what = (f"diffusion-weighted SNR {lowest:.1f}{where}" if np.isfinite(lowest)
            else "diffusion-weighted SNR not measurable")
    if denoise != DENOISE_AUTO:
        low = denoise == "mppca" and not lowest >= MPPCA_MIN_SNR and bool(measured)
        note = f"{denoise} (--denoise {denoise})"
        if low:
            note += (f"; {what} is below {MPPCA_MIN_SNR:g}, where MP-PCA lowers FA "
                     "(--denoise auto would not denoise)")
        return DenoisePlan(method=denoise, note=note, snr=measured, warn=low)
    if snrs is None:
        return DenoisePlan(method=None, note=(
            f"MP-PCA if the diffusion-weighted SNR of every run is >= {MPPCA_MIN_SNR:g}, "
            "else none (decided when the images are read)"))
    if lowest >= MPPCA_MIN_SNR:
        return DenoisePlan(method="mppca", note=f"mppca ({what} >= {MPPCA_MIN_SNR:g})",
                           snr=measured)
    return DenoisePlan(method="none", note=(
        f"none ({what} < {MPPCA_MIN_SNR:g}: MP-PCA would lower FA)"), snr=measured)


def measure_snr(run: DwiRun, *, b0_threshold: float) -> tuple[float, float]:
    """(diffusion-weighted SNR, b-value) of a run from its central :data:`SNR_SLAB` slices.

    ``(nan, nan)`` when the series is too small or has no brain to measure on.

    Raises
    ------
    BadDataError
        The image or its b-values cannot be read.
    """
    try:
        img = nib.load(str(run.dwi))
        bvals = np.loadtxt(run.bval, ndmin=1)
        n_slices = img.shape[2]
        z0 = max(0, (n_slices - SNR_SLAB) // 2)
        data = np.asarray(img.dataobj[:, :, z0:z0 + SNR_SLAB, :], dtype=np.float32)
    except (OSError, ValueError, IndexError) as exc:
        raise BadDataError(f"{run.dwi}: cannot read the series to measure its SNR ({exc})"
                           ) from exc
    try:
        result = diffusion_snr(data, bvals, b0_threshold=b0_threshold)
    except ValueError:
        return float("nan"), float("nan")
    return result.snr, result.shell


@dataclass(frozen=True)
class DwiUnit:
    """One unit of diffusion processing: the runs combined into one preprocessed series."""

    runs: tuple[DwiRun, ...]
    sdc: SdcPlan
    shells: tuple[float, ...]
    """Distinct non-zero b-values of the unit's runs (from the gradient pre-flight check)."""
    entities: Mapping[str, str] = field(default_factory=dict)
    """Extra output entities (acquisition/direction/run of a separately processed run)."""
    denoise: DenoisePlan | None = None
    """The unit's denoising (:func:`plan_denoise`); ``None``: not planned (units built by
    hand; the workflow then needs an explicit ``--denoise`` method)."""
    models: tuple[ModelPlan, ...] = ()
    """The diffusion models (:func:`plan_models`); empty: not planned (units built by hand:
    the tensor on every volume)."""
    shell_info: tuple[Shell, ...] = ()
    """The unit's shells with their volumes and directions (empty when not read)."""

    @property
    def fitted_models(self) -> tuple[ModelPlan, ...]:
        """The models the workflow fits (the tensor on every volume when not planned)."""
        if not self.models:
            return (ModelPlan(DWI_MODEL, (), "every volume (not planned)"),)
        return tuple(p for p in self.models if p.runs)

    @property
    def denoise_method(self) -> str:
        """The denoiser the workflow runs (:attr:`denoise` resolved).

        Raises
        ------
        ValueError
            The unit has no resolved denoising plan (not built by :func:`plan_participant`
            from the images).
        """
        if self.denoise is None or self.denoise.method is None:
            raise ValueError("DWI unit without a resolved denoising plan: build it with "
                             "plan_participant(..., check_images=True)")
        return self.denoise.method

    @property
    def has_sdc_figure(self) -> bool:
        """Two or more runs are aligned: the before/after figure of the alignment exists."""
        return len(self.runs) > 1

    @property
    def sources(self) -> list[str]:
        """The raw DWI files (the ``Sources`` of every output of the unit)."""
        return [str(run.dwi) for run in self.runs]


@dataclass(frozen=True)
class ParticipantPlan:
    """Everything the participant level does for one participant (and session)."""

    record: SubjectSession
    dwi_units: tuple[DwiUnit, ...]
    t1w: Path | None

    @property
    def label(self) -> str:
        """``sub-X`` or ``sub-X_ses-Y``."""
        return self.record.label

    def notes(self, dwi: DwiSettings) -> list[str]:
        """Lines for the log and the participant report about what will not run, and why."""
        notes = []
        if not self.dwi_units:
            notes.append("No DWI found: diffusion branch skipped.")
        for unit in self.dwi_units:
            if not unit.sdc.applied and dwi.sdc != "none":
                where = (" (" + ", ".join(Path(s).name for s in unit.sources) + ")"
                         if len(self.dwi_units) > 1 else "")
                notes.append(f"DWI{where}: {unit.sdc.note}.")
            if unit.denoise is not None and unit.denoise.warn:
                notes.append(f"DWI denoising: {unit.denoise.note}.")
            notes += [f"DWI model {p.model}: {p.note}." for p in unit.models if p.warn]
            if dwi.unringing:
                partial = sorted({pf for r in unit.runs
                                  if (pf := _partial_fourier(r)) is not None and pf < 1})
                if partial:
                    notes.append("Gibbs unringing requested on partial-Fourier data "
                                 f"(PartialFourier {', '.join(f'{v:g}' for v in partial)}): "
                                 "the local sub-voxel "
                                 "shift method assumes full k-space coverage and on such data "
                                 "mainly smooths, lowering FA.")
        if self.t1w is None:
            notes.append("No T1w found: anatomical branch skipped.")
        return notes


def _partial_fourier(run: DwiRun) -> float | None:
    try:
        return float(run.metadata["PartialFourier"])
    except (KeyError, TypeError, ValueError):
        return None


def _unit_denoise(runs: Sequence[DwiRun], dwi: DwiSettings, *, measure: bool) -> DenoisePlan:
    if not measure or dwi.denoise not in (DENOISE_AUTO, "mppca"):
        return plan_denoise(None, denoise=dwi.denoise)
    measured = [measure_snr(run, b0_threshold=dwi.b0_threshold) for run in runs]
    shells = {b for _, b in measured if np.isfinite(b)}
    return plan_denoise([v for v, _ in measured], denoise=dwi.denoise,
                        shell=min(shells) if len(shells) == 1 else None)


def _unit_entities(run: DwiRun) -> dict[str, str]:
    ent = run.entities
    return {key: str(ent[key]) for key in ("acquisition", "direction", "run") if ent.get(key)}


def plan_participant(record: SubjectSession, dwi: DwiSettings, *,
                     check_images: bool = True) -> ParticipantPlan:
    """Build the plan of one participant/session.

    Parameters
    ----------
    record
        The participant/session's BIDS records.
    dwi
        Diffusion options.
    check_images
        Check every DWI run from its file (read once to its end: truncated or corrupt
        files), header and gradient files first
        (:func:`~bids_app.core.dwi.gradients.preflight_dwi`), so a bad run fails with its
        file named before any graph is built; this also reads the shells. ``False``
        (``--boilerplate-only``) plans from the sidecar metadata alone, without reading
        images (e.g. a DataLad dataset whose images are not downloaded): shells are empty
        and ``--denoise auto`` stays unresolved (the methods text states the rule).

    Raises
    ------
    BadDataError
        A DWI run fails the file/header/gradient check.
    """
    grads = {run.dwi: preflight_dwi(run.dwi, run.bval, run.bvec,
                                    b0_threshold=dwi.b0_threshold)
             for run in record.dwi_runs} if check_images else {}
    separate = dwi.dwi_runs == "separate"
    groups = [(run,) for run in record.dwi_runs] if separate else (
        [tuple(record.dwi_runs)] if record.dwi_runs else [])
    units = []
    for runs in groups:
        shells = _unit_shells([grads[r.dwi] for r in runs], dwi) if check_images else None
        units.append(DwiUnit(
            runs=runs,
            sdc=plan_sdc([r.phase_encoding_direction for r in runs], sdc=dwi.sdc,
                         separate=separate),
            shells=tuple(s.bval for s in shells or ()),
            entities=_unit_entities(runs[0]) if separate else {},
            denoise=_unit_denoise(runs, dwi, measure=check_images),
            models=plan_models(shells, dwi), shell_info=shells or ()))
    return ParticipantPlan(record=record, dwi_units=tuple(units), t1w=record.t1w_selected)


def _unit_shells(grads: Sequence[Gradients], dwi: DwiSettings) -> tuple[Shell, ...]:
    """Shells of the runs of a unit taken together (the combined series)."""
    return detect_shells(np.concatenate([g.bvals for g in grads]),
                         np.concatenate([g.bvecs for g in grads]),
                         b0_threshold=dwi.b0_threshold)
