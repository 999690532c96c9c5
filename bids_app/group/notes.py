"""Warnings of one group-level run: logged at once and kept for the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

LOGGER = logging.getLogger("alsmri.group")


@dataclass
class Notes:
    """Collects the warnings of one run (one instance per run, passed explicitly)."""

    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Log ``message`` on ``alsmri.group`` and keep it for the report."""
        LOGGER.warning(message)
        self.warnings.append(message)
