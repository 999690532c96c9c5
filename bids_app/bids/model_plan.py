"""Which diffusion models run on a DWI unit, and on which shells (decided once, here).

:func:`plan_models` reads each model's :class:`~bids_app.bids.models.ShellRule` against the
unit's shells; :func:`bids_app.bids.plan.plan_participant` stores the result in the unit
(:attr:`bids_app.bids.plan.DwiUnit.models`) and everyone else reads it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bids_app.bids.models import DWI_MODELS
from bids_app.core.dwi.shells import Shell
from bids_app.settings import DWI_MODEL, DwiSettings


@dataclass(frozen=True)
class ModelPlan:
    """Whether a diffusion model runs on a unit, on which shells, and why."""

    model: str
    """A key of :data:`bids_app.bids.models.DWI_MODELS`."""
    shells: tuple[float, ...] | None
    """Non-zero shells fitted besides the b0 volumes; ``()``: every volume; ``None``: the
    model is skipped."""
    note: str
    """One line: the volumes fitted, or why the model is skipped (log, report, methods)."""
    warn: bool = False
    """The note is a warning (skipped, or fitted to unsuitable shells)."""
    decided: bool = True
    """``False``: planned without reading the images (``--boilerplate-only``, completeness
    checks): the shells are not known; such a plan cannot build a fit."""

    @property
    def runs(self) -> bool:
        """The model is fitted."""
        return self.shells is not None


def selected_models(dwi: DwiSettings) -> tuple[str, ...]:
    """The models a run fits where the data allow, in declaration order (tensor always)."""
    wanted = set(dwi.models if dwi.models is not None else DWI_MODELS) | {DWI_MODEL}
    unknown = sorted(wanted - set(DWI_MODELS))
    if unknown:
        raise ValueError(f"unknown diffusion model(s) {unknown}; choose from "
                         f"{list(DWI_MODELS)}")
    return tuple(m for m in DWI_MODELS if m in wanted)


def plan_models(shells: Sequence[Shell] | None, dwi: DwiSettings) -> tuple[ModelPlan, ...]:
    """Decide which models run on a unit and on which shells (the only place it is decided).

    Parameters
    ----------
    shells
        The unit's shells (:func:`bids_app.core.dwi.shells.detect_shells`); ``None`` when the
        images were not read (``--boilerplate-only``): nothing is decided.
    dwi
        Diffusion options (``dti_max_b``, ``models``).

    Returns
    -------
    tuple of ModelPlan
        One per selected model (:func:`selected_models`), from its
        :class:`~bids_app.bids.models.ShellRule`.
    """
    plans = []
    for name in selected_models(dwi):
        rule = DWI_MODELS[name].shells
        if shells is None:  # a model that falls back to every volume surely runs
            plans.append(ModelPlan(name, () if rule.fallback_all else None,
                                   "decided when the images are read", decided=False))
            continue
        max_b = getattr(dwi, rule.max_b_option) if rule.max_b_option else None
        used, note, warn = rule.resolve(shells, max_b=max_b)
        plans.append(ModelPlan(name, used, note, warn))
    return tuple(plans)
