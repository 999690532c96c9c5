"""Longitudinal validation: the true time x group slope from the simulator's per-session truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_app.errors import MissingInputError
from bids_app.simulate.longitudinal_validation import longitudinal_validation, true_slopes


def _truth(changes: dict[str, tuple[str, list[float]]], years=(0.0, 0.5, 1.5)) -> dict:
    """Participants with one CST-L FA value per session (``changes``: per-year slopes)."""
    participants = {}
    for pid, (group, (slope,)) in changes.items():
        sessions = {f"ses-{k + 1}": {"years": t, "tracts": [
            {"atlas": "hcp842", "region": "cst", "hemisphere": "L",
             "fa": 0.5 + slope * t + (0.001 if k == 1 else 0.0)}]}
            for k, t in enumerate(years)}
        participants[pid] = {"group": group, "sessions": sessions}
    return {"participants": participants, "patient_label": "ALS", "control_label": "control"}


def test_true_slope_and_grading_against_numpy_fits():
    truth = _truth({"sub-1": ("ALS", [-0.02]), "sub-2": ("ALS", [-0.04]),
                    "sub-3": ("control", [0.0]), "sub-4": ("control", [0.002])})
    years = np.array([0.0, 0.5, 1.5])
    bump = np.array([0.0, 0.001, 0.0])  # a non-linear wiggle the OLS slope must absorb
    expect = {pid: np.polyfit(years, 0.5 + s * years + bump, 1)[0]
              for pid, s in (("sub-1", -0.02), ("sub-2", -0.04), ("sub-3", 0.0),
                             ("sub-4", 0.002))}
    got = true_slopes(truth).set_index("participant_id")["slope"]
    for pid, value in expect.items():
        assert got[pid] == pytest.approx(value, abs=1e-12)
    true = (expect["sub-1"] + expect["sub-2"]) / 2 - (expect["sub-3"] + expect["sub-4"]) / 2
    stats = pd.DataFrame([
        {"term": "time_x_group", "atlas": "hcp842", "region": "cst", "hemisphere": "L",
         "metric": "fa", "statistic": "wmean", "estimate": 0.8 * true, "ci_low": 1.5 * true,
         "ci_high": 0.1 * true, "q": 0.01},
        {"term": "time", "atlas": "hcp842", "region": "cst", "hemisphere": "L",
         "metric": "fa", "statistic": "wmean", "estimate": 9.0, "ci_low": 8.0,
         "ci_high": 10.0, "q": 0.5}])
    row = longitudinal_validation(truth, stats).iloc[0]
    assert row.true_slope == pytest.approx(true) and row.ratio == pytest.approx(0.8)
    assert row.true_in_ci and row.same_sign and row.significant
    assert (row.n_patients, row.n_controls) == (2, 2)
    stats.loc[0, ["estimate", "q"]] = [-0.2 * true, 0.3]
    row = longitudinal_validation(truth, stats).iloc[0]
    assert not row.same_sign and not row.significant and row.ratio == pytest.approx(-0.2)


def test_single_session_truth_is_refused():
    truth = {"participants": {"sub-1": {"group": "ALS", "tracts": []}}}
    with pytest.raises(MissingInputError, match="two or more sessions"):
        longitudinal_validation(truth, pd.DataFrame(columns=["term", "metric", "statistic"]))
