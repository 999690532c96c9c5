"""The typed plan of one participant/session, built once from the BIDS records.

Everything decided from BIDS metadata alone is decided here, before any nipype graph exists:
how DWI runs are grouped into processing units, their shells, and whether (and why not)
reverse phase-encoding distortion correction runs. The workflow, the methods text
(``logs/CITATION.md``), the participant notes and the QC tables all read the plan; nothing
re-derives it (the SDC node even checks that what it executed is what the plan said).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bids_app.bids.records import DwiRun, SubjectSession
from bids_app.core.dwi.gradients import preflight_dwi
from bids_app.settings import DwiSettings

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


@dataclass(frozen=True)
class DwiUnit:
    """One unit of diffusion processing: the runs combined into one preprocessed series."""

    runs: tuple[DwiRun, ...]
    sdc: SdcPlan
    shells: tuple[float, ...]
    """Distinct non-zero b-values of the unit's runs (from the gradient pre-flight check)."""
    entities: Mapping[str, str] = field(default_factory=dict)
    """Extra output entities (acquisition/direction/run of a separately processed run)."""

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
        if self.t1w is None:
            notes.append("No T1w found: anatomical branch skipped.")
        return notes


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
        images (e.g. a DataLad dataset whose images are not downloaded): shells are empty.

    Raises
    ------
    BadDataError
        A DWI run fails the file/header/gradient check.
    """
    shells = {run.dwi: preflight_dwi(run.dwi, run.bval, run.bvec,
                                     b0_threshold=dwi.b0_threshold).shells
              if check_images else () for run in record.dwi_runs}
    separate = dwi.dwi_runs == "separate"
    groups = [(run,) for run in record.dwi_runs] if separate else (
        [tuple(record.dwi_runs)] if record.dwi_runs else [])
    units = tuple(
        DwiUnit(runs=runs,
                sdc=plan_sdc([r.phase_encoding_direction for r in runs], sdc=dwi.sdc,
                             separate=separate),
                shells=tuple(sorted({b for r in runs for b in shells[r.dwi]})),
                entities=_unit_entities(runs[0]) if separate else {})
        for runs in groups)
    return ParticipantPlan(record=record, dwi_units=units, t1w=record.t1w_selected)
