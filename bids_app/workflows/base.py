"""Top-level participant workflow: one sub-workflow per participant/session plan."""

from __future__ import annotations

from collections.abc import Sequence

from nipype.pipeline import engine as pe

from bids_app.bids.plan import ParticipantPlan
from bids_app.settings import Settings
from bids_app.workflows.anat import init_anat_wf
from bids_app.workflows.dwi import init_dwi_wf


def init_alsmri_wf(*, plans: Sequence[ParticipantPlan], settings: Settings,
                   name: str = "alsmri_wf") -> pe.Workflow:
    """Build the participant-level graph for every plan.

    Parameters
    ----------
    plans
        One :class:`~bids_app.bids.plan.ParticipantPlan` per participant/session.
    settings
        The run settings.
    name
        Workflow name.
    """
    workflow = pe.Workflow(name=name)
    for plan in plans:
        single = init_single_subject_wf(plan=plan, settings=settings,
                                        name=f"{plan.label.replace('-', '_')}_wf")
        workflow.add_nodes([single])
    return workflow


def init_single_subject_wf(*, plan: ParticipantPlan, settings: Settings,
                           name: str) -> pe.Workflow:
    """Anatomical and diffusion branches of one participant/session.

    The branches are independent: a plan without a T1w skips the anatomical branch and one
    without DWI units skips the diffusion branch.
    """
    ex, ny = settings.execution, settings.nipype
    workflow = pe.Workflow(name=name)
    branches = []
    if plan.t1w is not None:
        branches.append(init_anat_wf(t1w=plan.t1w, settings=settings.anat,
                                     output_dir=ex.output_dir, data_dir=ex.data_dir,
                                     omp_nthreads=ny.omp_nthreads))
    if plan.dwi_units:
        branches.append(init_dwi_wf(units=plan.dwi_units, settings=settings.dwi,
                                    output_dir=ex.output_dir, data_dir=ex.data_dir,
                                    omp_nthreads=ny.omp_nthreads))
    workflow.add_nodes(branches)
    return workflow
