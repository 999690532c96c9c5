"""Top-level participant workflow: one sub-workflow per participant/session."""

from __future__ import annotations

from collections.abc import Sequence

from nipype.pipeline import engine as pe

from bids_app.bids.records import SubjectSession
from bids_app.settings import Settings


def init_alsmri_wf(*, records: Sequence[SubjectSession], settings: Settings,
                   name: str = "alsmri_wf") -> pe.Workflow:
    """Build the participant-level graph for every record.

    Parameters
    ----------
    records
        Units of work from :func:`bids_app.bids.queries.collect_subject_sessions`.
    settings
        The run settings.
    name
        Workflow name.
    """
    workflow = pe.Workflow(name=name)
    for record in records:
        single = init_single_subject_wf(record=record, settings=settings,
                                        name=f"{record.label.replace('-', '_')}_wf")
        workflow.add_nodes([single])
    return workflow


def init_single_subject_wf(*, record: SubjectSession, settings: Settings,
                           name: str) -> pe.Workflow:
    """Anatomical and diffusion branches of one participant/session, plus the report.

    The branches are independent: a missing T1w skips the anatomical branch and missing DWI
    skips the diffusion branch.
    """
    ex, ny = settings.execution, settings.nipype
    workflow = pe.Workflow(name=name)
    branches = []
    if record.t1w_selected is not None:
        from bids_app.workflows.anat import init_anat_wf

        anat_wf = init_anat_wf(t1w=record.t1w_selected, settings=settings.anat,
                               output_dir=ex.output_dir, data_dir=ex.data_dir,
                               omp_nthreads=ny.omp_nthreads)
        branches.append(anat_wf)
    if record.dwi_runs:
        from bids_app.workflows.dwi import init_dwi_wf

        dwi_wf = init_dwi_wf(runs=record.dwi_runs, settings=settings.dwi,
                             output_dir=ex.output_dir, data_dir=ex.data_dir,
                             omp_nthreads=ny.omp_nthreads)
        branches.append(dwi_wf)
    workflow.add_nodes(branches)
    return workflow
