"""Typed records describing one unit of participant-level work (computed from BIDS alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DwiRun:
    """One DWI series with its gradient files and sidecar metadata."""

    dwi: Path
    bval: Path
    bvec: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    entities: dict[str, str] = field(default_factory=dict)
    """BIDS entities of the DWI file (``subject``, ``session``, ``acquisition``, ``direction``,
    ``run`` ...), as pybids names them."""

    @property
    def phase_encoding_direction(self) -> str | None:
        """``PhaseEncodingDirection`` from the sidecar (e.g. ``j`` or ``j-``), if given."""
        value = self.metadata.get("PhaseEncodingDirection")
        return str(value) if value else None


@dataclass(frozen=True)
class SubjectSession:
    """Everything the participant workflow needs for one participant (and session)."""

    subject: str
    session: str | None
    dwi_runs: tuple[DwiRun, ...] = ()
    t1w: tuple[Path, ...] = ()
    """All candidate T1w images (session level if present, else subject level)."""
    t1w_selected: Path | None = None
    """The T1w used (see :func:`bids_app.bids.queries.select_t1w` for the rule)."""

    @property
    def label(self) -> str:
        """``sub-X`` or ``sub-X_ses-Y``, the prefix of every output file name."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def entities(self) -> dict[str, str]:
        """``{"subject": ..., "session": ...}`` (session only when present)."""
        ent = {"subject": self.subject}
        if self.session:
            ent["session"] = self.session
        return ent
