"""``--denoise auto`` and the unringing default: decided once in the plan, read everywhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bids_app.bids.plan import (
    MPPCA_MIN_SNR,
    DenoisePlan,
    DwiUnit,
    ParticipantPlan,
    measure_snr,
    plan_denoise,
    plan_participant,
    plan_sdc,
)
from bids_app.bids.records import DwiRun, SubjectSession
from bids_app.reports.citation import render_citation
from bids_app.settings import DwiSettings, ExecutionSettings, Settings


def test_auto_resolves_by_the_measured_snr():
    high = plan_denoise([MPPCA_MIN_SNR + 5, MPPCA_MIN_SNR + 1], denoise="auto", shell=1000.0)
    assert high.method == "mppca" and not high.warn and "b = 1000" in high.note
    low = plan_denoise([MPPCA_MIN_SNR + 5, MPPCA_MIN_SNR - 1], denoise="auto")
    assert low.method == "none" and "lower FA" in low.note  # one run too noisy: the unit is
    assert plan_denoise([math.nan], denoise="auto").method == "none"  # not measurable
    unresolved = plan_denoise(None, denoise="auto")  # --boilerplate-only: images not read
    assert unresolved.method is None and str(MPPCA_MIN_SNR)[:2] in unresolved.note


def test_explicit_choices_are_kept_and_a_noisy_mppca_is_flagged():
    assert plan_denoise(None, denoise="patch2self").method == "patch2self"
    assert plan_denoise([3.0], denoise="none").method == "none"
    flagged = plan_denoise([3.0], denoise="mppca")
    assert flagged.method == "mppca" and flagged.warn and "lowers FA" in flagged.note
    assert not plan_denoise([30.0], denoise="mppca").warn
    with pytest.raises(ValueError, match="unknown denoising method 'bogus'"):
        plan_denoise(None, denoise="bogus")


def test_unit_without_a_resolved_plan_cannot_reach_the_workflow():
    unit = DwiUnit(runs=(), sdc=plan_sdc(["j"], sdc="auto"), shells=(1000.0,),
                   denoise=plan_denoise(None, denoise="auto"))
    with pytest.raises(ValueError, match="resolved denoising plan"):
        unit.denoise_method  # noqa: B018
    done = DwiUnit(runs=(), sdc=unit.sdc, shells=(1000.0,),
                   denoise=DenoisePlan(method="none", note="none"))
    assert done.denoise_method == "none"


def _xa30_record(ds_xa30: Path) -> SubjectSession:
    dwi = ds_xa30 / "sub-01" / "dwi"
    runs = tuple(DwiRun(dwi=dwi / f"sub-01_dir-{d}_dwi.nii.gz",
                        bval=dwi / f"sub-01_dir-{d}_dwi.bval",
                        bvec=dwi / f"sub-01_dir-{d}_dwi.bvec",
                        metadata=json.loads((dwi / f"sub-01_dir-{d}_dwi.json").read_text()),
                        entities={"subject": "01", "direction": d}) for d in ("AP", "PA"))
    return SubjectSession(subject="01", session=None, dwi_runs=runs)


def test_real_ds_xa30_is_denoised_and_its_unringing_request_flagged(ds_xa30):
    """The real runs' diffusion-weighted SNR (~20 at b = 2500; a simulation of the same
    acquisition at a b0 SNR of 25 measures ~5) supports MP-PCA; unringing is off by default
    and, when requested on these partial-Fourier (6/8) runs, the plan says why it harms."""
    record = _xa30_record(ds_xa30)
    snr, shell = measure_snr(record.dwi_runs[0], b0_threshold=50.0)
    assert shell == 2500.0 and MPPCA_MIN_SNR < snr < 40.0
    plan = plan_participant(record, DwiSettings())
    (unit,) = plan.dwi_units
    assert unit.denoise_method == "mppca" and len(unit.denoise.snr) == 2
    assert not DwiSettings().unringing
    assert not any("unringing" in note for note in plan.notes(DwiSettings()))
    notes = plan.notes(DwiSettings(unringing=True))
    assert any("partial-Fourier" in n and "PartialFourier 0.75" in n for n in notes)


def _settings(**dwi) -> Settings:
    return Settings(execution=ExecutionSettings(bids_dir=Path("/bids"), output_dir=Path("/out"),
                                                analysis_level="participant",
                                                work_dir=Path("/work")),
                    dwi=DwiSettings(**dwi))


def _methods(planned: DenoisePlan | None, **dwi) -> str:
    unit = DwiUnit(runs=(), sdc=plan_sdc(["j"], sdc="auto"), shells=(2500.0,), denoise=planned)
    plan = ParticipantPlan(record=SubjectSession(subject="01", session=None),
                           dwi_units=(unit,), t1w=None)
    text = render_citation(_settings(**dwi), [plan], versions={
        k: "0" for k in ("alsmri", "nipype", "pybids", "dipy", "antspyx", "nibabel")})
    return text[:text.index("## References")]


def test_methods_text_states_the_resolved_choice_and_why():
    none = _methods(DenoisePlan(method="none", note="", snr=(5.1, 4.9)))
    assert f"at least {MPPCA_MIN_SNR:g}" in none and "No series reached it (measured: 4.9-5.1)" \
        in none and "lowers FA" in none
    mppca = _methods(DenoisePlan(method="mppca", note="", snr=(20.3,)))
    assert "All series reached it (measured: 20.3): noise was removed with MP-PCA." in mppca
    rule_only = _methods(DenoisePlan(method=None, note=""))
    assert "decided from its diffusion-weighted SNR" in rule_only and "reached" not in rule_only
    explicit = _methods(None, denoise="none")
    assert "No denoising was applied." in explicit and "diffusion-weighted SNR" not in explicit
    assert "No Gibbs-ringing removal was applied." in none and "smoothing filter" in none
    assert "Gibbs ringing was removed" in _methods(None, denoise="none", unringing=True)


def test_cli_accepts_auto_and_defaults_to_it():
    from bids_app.cli.parser import build_parser

    parser = build_parser()
    base = ["/bids", "/out", "participant"]
    assert parser.parse_args(base).denoise == "auto"
    assert parser.parse_args([*base, "--denoise", "mppca"]).denoise == "mppca"
    assert parser.parse_args(base).unringing is False
    assert parser.parse_args([*base, "--unringing"]).unringing is True
