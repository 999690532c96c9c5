"""The run's methods text (``logs/CITATION.md``) says what ran and cites what was used."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from bids_app.atlases import api
from bids_app.bids.plan import DwiUnit, ParticipantPlan, plan_sdc
from bids_app.bids.records import SubjectSession
from bids_app.reports import citation
from bids_app.settings import (
    ANAT_TEMPLATE_RES,
    BUNDLE_ATLAS,
    TISSUE_PRIORS,
    DwiSettings,
    ExecutionSettings,
    Settings,
)

VERSIONS = {name: "0.0" for name in ("alsmri", "nipype", "pybids", "dipy", "antspyx",
                                     "nibabel")}
MOTION_SENTENCE = "Between-volume head motion was corrected by affine (12 degrees"
SDC_SENTENCE = "a susceptibility distortion correction was estimated"
HCP_ACK = "Data were provided in part by the Human Connectome Project"


def _settings(*, level: str = "participant", **options) -> Settings:
    execution = ExecutionSettings(bids_dir=Path("/bids"), output_dir=Path("/out"),
                                  analysis_level=level, work_dir=Path("/work"))
    settings = Settings(execution=execution)
    dwi = {k: v for k, v in options.items() if k in DwiSettings.__dataclass_fields__}
    anat = {k: v for k, v in options.items() if k not in dwi}
    return dataclasses.replace(settings, dwi=dataclasses.replace(settings.dwi, **dwi),
                               anat=dataclasses.replace(settings.anat, **anat))


def _plan(settings: Settings, *, has_dwi: bool = True, has_anat: bool = True,
          pe_dirs: tuple[str | None, ...] = ("j-", "j")) -> ParticipantPlan:
    """A plan as :func:`bids_app.bids.plan.plan_participant` makes it (without the files)."""
    separate = settings.dwi.dwi_runs == "separate"
    groups = [(d,) for d in pe_dirs] if separate else [pe_dirs]
    units = tuple(DwiUnit(runs=(), sdc=plan_sdc(dirs, sdc=settings.dwi.sdc, separate=separate),
                          shells=(1000.0,)) for dirs in groups) if has_dwi else ()
    return ParticipantPlan(record=SubjectSession(subject="01", session=None), dwi_units=units,
                           t1w=Path("/bids/sub-01/anat/sub-01_T1w.nii.gz") if has_anat else None)


def _render(settings: Settings | None = None, *, has_dwi: bool = True, has_anat: bool = True,
            pe_dirs: tuple[str | None, ...] = ("j-", "j")) -> str:
    settings = settings or _settings()
    plan = _plan(settings, has_dwi=has_dwi, has_anat=has_anat, pe_dirs=pe_dirs)
    return citation.render_citation(settings, [plan], versions=VERSIONS)


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _methods(text: str) -> str:
    return text[:text.index("## References\n")]


def test_default_run_describes_every_step():
    text = _render()
    methods = _methods(text)
    for sentence in ("Marchenko-Pastur PCA", "No Gibbs-ringing removal", MOTION_SENTENCE,
                     "b-vectors were rotated by the rotation part", SDC_SENTENCE,
                     "weighted least squares", "three-class Atropos", "N4"):
        assert sentence in methods, sentence
    assert "rigid-body" not in methods.split("Between-volume")[1].split(":")[0]
    assert "RESTORE" not in methods and "Chang" not in text


def test_motion_transform_is_the_one_the_code_uses():
    from bids_app.core.dwi.motion import MOTION_TRANSFORM, motion_correct
    from bids_app.interfaces.dwi_preproc import MotionCorrect

    default = inspect.signature(motion_correct).parameters["transform"].default
    assert default is MOTION_TRANSFORM and citation.MOTION_TRANSFORM is MOTION_TRANSFORM
    assert "transform=" not in inspect.getsource(MotionCorrect._run_interface)


def test_anat_template_resolution_is_the_settings_one():
    assert f"] at {ANAT_TEMPLATE_RES} mm with an affine" in _methods(_render(has_dwi=False))


def test_gm_volume_wording_follows_the_segmentation_setting():
    """The methods say partial-volume fractions exactly when the segmentation reports them."""
    from bids_app.core.anat import segmentation

    text = _methods(_render(has_dwi=False))
    assert segmentation.PARTIAL_VOLUME and citation.PARTIAL_VOLUME is segmentation.PARTIAL_VOLUME
    assert "partial-volume fraction times the voxel volume" in text
    assert "probability times the voxel volume" not in text


def test_disabled_steps_are_not_claimed():
    text = _render(_settings(denoise="none", unringing=False, motion_correction=False,
                             sdc="none"))
    methods = _methods(text)
    assert "No denoising was applied." in methods
    assert "No Gibbs-ringing removal was applied." in methods
    assert "No between-volume motion correction was applied" in methods
    assert ("No susceptibility distortion correction was applied (disabled by the user)."
            in methods)
    for absent in ("Marchenko", "Patch2Self", "Gibbs ringing was removed", MOTION_SENTENCE,
                   "rotated by the rotation part", SDC_SENTENCE, "midway"):
        assert absent not in methods, absent
    refs = _section(text, "References")
    for absent in ("random matrix theory", "Kellner", "B-matrix must be rotated", "Andersson",
                   "Power, J. D."):
        assert absent not in refs, absent


def test_patch2self_and_restore_are_cited():
    text = _render(_settings(denoise="patch2self", tensor_fit="restore"))
    assert "Patch2Self" in _methods(text) and "RESTORE" in _methods(text)
    refs = _section(text, "References")
    assert "Fadnavis" in refs and "Chang, L.-C." in refs and "random matrix" not in refs


@pytest.mark.parametrize("pe_dirs", [("j-", "j"), ("j", "j"), ("j",)])
def test_separate_runs_never_claim_sdc(pe_dirs):
    methods = _methods(_render(_settings(dwi_runs="separate"), pe_dirs=pe_dirs))
    assert ("No susceptibility distortion correction was applied because runs were processed "
            "separately." in methods)
    assert "processed separately" in methods and SDC_SENTENCE not in methods
    assert "concatenated" not in methods


@pytest.mark.parametrize(("pe_dirs", "reason"), [
    (("j", "j"), "runs do not have opposite phase-encoding directions"),
    (("j", "j-", "i"), "runs do not share one phase-encoding axis (j, j-, i)"),
    (("j-", None), "run(s) 2 of 2 have no valid PhaseEncodingDirection"),
    (("j-",), "single run, one phase-encoding direction"),
])
def test_sdc_wording_follows_the_plan(pe_dirs, reason):
    methods = _methods(_render(pe_dirs=pe_dirs))
    assert "No susceptibility distortion correction was applied (" + reason in methods
    assert SDC_SENTENCE not in methods


def test_sdc_sentence_when_the_plan_applies_it():
    text = _render(pe_dirs=("j-", "j"))
    assert SDC_SENTENCE in text and "Andersson" in _section(text, "References")
    text = _render(_settings(sdc="none"), pe_dirs=("j-", "j"))
    assert "disabled by the user" in text and SDC_SENTENCE not in text


@pytest.mark.parametrize(("gm_atlas", "present", "absent"), [
    ("aal", ["Tzourio-Mazoyer N", "NeuroImage 2002", "Rolls ET", "NeuroImage 2015"],
     ["Desikan", "Neuromorphometrics, Inc."]),
    ("harvard-oxford", ["Desikan RS", "Makris N", "Frazier JA", "Goldstein JM"],
     ["Tzourio-Mazoyer", "Neuromorphometrics, Inc."]),
    ("neuromorphometrics", ["Neuromorphometrics, Inc."], ["Tzourio-Mazoyer", "Desikan"]),
])
def test_gm_atlas_references(gm_atlas, present, absent):
    text = _render(_settings(gm_atlas=gm_atlas))
    refs = _section(text, "References")
    for needle in present:
        assert needle in refs, needle
    for needle in absent:
        assert needle not in text, needle
    assert f"**{gm_atlas}** (dseg)" in _section(text, "Templates and atlases")


@pytest.mark.parametrize(("tract_atlas", "present", "absent", "ack"), [
    ("hcp842", "Yeh FC, Panesar S", ["Nat Commun 2022", "Warrington"], True),
    ("hcp1065", "Nat Commun 2022", ["Panesar", "Warrington"], True),
    ("xtract", "Warrington S", ["Yeh FC"], False),
])
def test_tract_atlas_references_and_hcp_acknowledgement(tract_atlas, present, absent, ack):
    """Without --bundles only the tract atlas is cited (the bundles add HCP842, below)."""
    text = _render(_settings(tract_atlas=tract_atlas, bundles=False))
    assert present in _section(text, "References")
    for needle in absent:
        assert needle not in text, needle
    assert (HCP_ACK in text) is ack
    if ack:
        assert HCP_ACK in _section(text, "Acknowledgements")
        assert HCP_ACK not in _section(text, "References")


def test_bundles_text_cites_recobundles_profiles_and_the_model_atlas():
    """With --bundles (default) the methods name the tracking, RecoBundles and the profiles,
    and HCP842 (the model bundles) is cited whatever the tract atlas; without, none of it."""
    on = _render(_settings(tract_atlas="xtract"))
    assert "RecoBundles [" in on and "Yeh FC, Panesar S" in _section(on, "References")
    assert "Tract profiles of white matter properties" in _section(on, "References")
    assert "0.15 seeds/mm³" in on and "node 0 at the inferior end" in on
    off = _render(_settings(tract_atlas="xtract", bundles=False))
    assert "RecoBundles" not in off and "Yeh FC" not in off


def test_dwi_resources_jhu_fa_template_and_mni_are_cited():
    refs = _section(_render(has_anat=False), "References")
    for needle in ("Mori S", "Wakana S", "Hua K", "Lawrence RM", "Wasserthal J",
                   "NeuroImage 2018;183", "Evans AC", "Ciric R"):
        assert needle in refs, needle
    assert "Tzourio-Mazoyer" not in refs


def test_anat_only_cites_no_diffusion_atlas():
    text = _render(has_dwi=False)
    assert "### Diffusion MRI" not in text
    refs = _section(text, "References")
    assert "Evans AC" in refs and "Tzourio-Mazoyer N" in refs
    for needle in ("Yeh FC", "Mori S", "Wasserthal", HCP_ACK):
        assert needle not in text, needle


@pytest.mark.parametrize("options", [{}, {"gm_atlas": "harvard-oxford", "tract_atlas": "xtract"},
                                     {"gm_atlas": "neuromorphometrics",
                                      "tract_atlas": "hcp1065"}])
def test_every_used_resource_has_its_references_and_licence(options):
    settings = _settings(**options)
    text = _render(settings)
    refs, resources = _section(text, "References"), _section(text, "Templates and atlases")
    names = citation.used_resources(settings, has_dwi=True, has_anat=True)
    assert {"MNI152NLin6Asym", "fa-template", "jhu", settings.dwi.tract_atlas,
            settings.anat.gm_atlas, BUNDLE_ATLAS, TISSUE_PRIORS} == set(names)
    for credit in api.credits(names):
        for ref in credit.references:
            assert refs.count(ref) == 1, ref  # Lawrence 2021 is shared by jhu/harvard-oxford
        assert f"**{credit.name}**" in resources
        assert f"Licence: {credit.license}; commercial use: {credit.commercial_use}." in resources


@pytest.mark.parametrize("options", [{}, {"denoise": "none", "unringing": False,
                                          "motion_correction": False, "sdc": "none"}])
def test_numbering_is_complete_and_placeholders_are_gone(options):
    text = _render(_settings(level="group", **options))
    methods = _methods(text)
    assert "$" not in methods and "[@" not in text and "[]" not in text
    assert "  " not in methods
    n_refs = len(re.findall(r"^\d+\. ", _section(text, "References"), flags=re.MULTILINE))
    cited = {int(n) for group in re.findall(r"\[([\d, ]+)\]", text) for n in group.split(",")}
    assert cited == set(range(1, n_refs + 1))
    assert "### Statistics" in methods


def test_bundles_text_states_the_pruning_and_cleaning_that_ship():
    """The recognition settings in the methods follow RECOGNITION_DEFAULTS: the CST's MAM
    pruning is named while it is the default; AFQ cleaning only when it is switched on."""
    from dataclasses import replace

    from bids_app.core.dwi import bundles as bun
    from bids_app.reports import citation

    text = citation._bundles_text(True, "HCP842", "[@yeh2018]")
    assert "corticospinal bundle, which tracking follows only in part" in text
    assert ("Mahalanobis" in text) == (bun.RECOGNITION_DEFAULTS.clean_distance is not None)
    cleaned = replace(bun.RECOGNITION_DEFAULTS, clean_distance=3.0)
    assert "3 standard deviations (Mahalanobis)" in citation._cleaning_text(cleaned)
    plain = replace(bun.RECOGNITION_DEFAULTS, partial_regions=(), clean_distance=None)
    assert "corticospinal bundle, which" not in citation._pruning_text(plain)
    assert citation._cleaning_text(plain) == ""
