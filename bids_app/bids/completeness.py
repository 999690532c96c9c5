"""Is a participant's participant-level output complete? Decided once, from the declarations.

A participant/session is complete when every output that :mod:`bids_app.bids.outputs`
declares for the branches its plan runs is on disk: per DWI unit every
:data:`~bids_app.bids.outputs.DWI_OUTPUTS` entry (the SDC figure only when the unit aligns
two or more runs) and every parameter map of the fitted model; with a T1w every
:data:`~bids_app.bids.outputs.ANAT_OUTPUTS` entry. The metrics tables
(:data:`~bids_app.bids.outputs.DWI_STATS`, :data:`~bids_app.bids.outputs.ANAT_STATS`)
must also hold at least one metric row: a header-only table counts as absent, as at the
group level. Outputs are written atomically (file and sidecar together), so a file that
exists is whole; a run cut short leaves some declared files absent.

``alsmri slurm`` re-submits exactly the participants this rule calls incomplete.
"""

from __future__ import annotations

from pathlib import Path

from bids_app.bids.derivatives import build_path
from bids_app.bids.outputs import (
    ANAT_OUTPUTS,
    ANAT_STATS,
    DWI_MODELS,
    DWI_OUTPUTS,
    DWI_STATS,
    Output,
    dwi_map_output,
)
from bids_app.bids.plan import ParticipantPlan

#: Outputs whose file must hold more than its header line (by name: the anatomical
#: workflow's declaration of the same table adds its sidecar fields).
METRICS_TABLES: tuple[Output, ...] = (DWI_STATS, ANAT_STATS)
TABLE_NAMES = frozenset(table.glob() for table in METRICS_TABLES)


def planned_outputs(plan: ParticipantPlan) -> list[tuple[Path, Output]]:
    """Every output the plan's branches write: its path relative to the output directory
    and its declaration.

    An output declared without an extension (images, transforms, figures) is given as its
    name without extension: any extension but ``.json`` (the sidecar) satisfies it.

    Parameters
    ----------
    plan
        The participant/session's plan (:func:`bids_app.bids.plan.plan_participant`); the
        parameter maps are those of the models it fits on each unit.
    """
    base = plan.record.entities
    declared: list[tuple[dict[str, str], Output]] = []
    for unit in plan.dwi_units:
        outputs = [out for key, out in DWI_OUTPUTS.items()
                   if key != "fig_sdc" or unit.has_sdc_figure]
        outputs += [dwi_map_output(p.model, metric, model_description="")
                    for p in unit.fitted_models for metric in DWI_MODELS[p.model]]
        declared += [({**base, **unit.entities}, out) for out in outputs]
    if plan.t1w is not None:
        declared += [(dict(base), out) for out in ANAT_OUTPUTS.values()]
    planned: dict[Path, Output] = {}
    for entities, out in declared:
        planned.setdefault(build_path({**entities, **out.entities}, datatype=out.datatype,
                                      suffix=out.suffix, extension=out.extension or ""), out)
    return list(planned.items())


def missing_outputs(plan: ParticipantPlan, output_dir: str | Path) -> list[str]:
    """The planned outputs of one participant/session that are absent or incomplete.

    This is the one definition of "complete" (see the module docstring).

    Parameters
    ----------
    plan
        The participant/session's plan.
    output_dir
        The derivatives directory (``OUTPUT_DIR``).

    Returns
    -------
    list of str
        Relative paths, each followed by ``(missing)`` or ``(header only)``; empty when the
        participant/session is complete.
    """
    output_dir = Path(output_dir)
    problems = []
    for rel, out in planned_outputs(plan):
        path = output_dir / rel
        if out.extension:
            if not path.is_file():
                problems.append(f"{rel} (missing)")
            elif out.glob() in TABLE_NAMES and not _has_rows(path):
                problems.append(f"{rel} (header only)")
        elif not any(p.is_file() and p.suffix != ".json"
                     for p in path.parent.glob(f"{path.name}.*")):
            problems.append(f"{rel}.* (missing)")
    return problems


def is_complete(plan: ParticipantPlan, output_dir: str | Path) -> bool:
    """``True`` when :func:`missing_outputs` finds nothing."""
    return not missing_outputs(plan, output_dir)


def _has_rows(path: Path) -> bool:
    """A table with at least one non-empty line after its header."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            next(fh, None)
            return any(line.strip() for line in fh)
    except OSError:
        return False
