"""Clinical scores of simulated patients, generated from their planted values."""

from __future__ import annotations

import numpy as np

from bids_app.simulate.effects import PATIENT_LABEL


def driver_values(participant_truth: dict, driver: str) -> float:
    """A participant's planted driver value: mean over L/R of a tract FA or GM volume ratio."""
    atlas, region, metric = driver.split("/")
    if metric == "fa":
        rows = [t["fa"] for t in participant_truth["tracts"]
                if t["atlas"] == atlas and t["region"] == region and t["hemisphere"] in "LR"]
    else:
        rows = [g["volume_ratio"] for g in participant_truth["gm"]
                if g["atlas"] == atlas and g["region"] == region]
    return float(np.mean(rows))


def generate_scores(truth_participants: dict[str, dict], effects: dict, *, seed: int
                    ) -> dict[str, dict[str, float]]:
    """Clinical scores for patients from their planted driver values, age, sex and noise.

    ``score = mean + sd * (r z_driver + sqrt(1 - r^2) e)`` with ``e`` a unit-variance mix of
    standardised age, sex and Gaussian noise, so the population correlation with the driver is
    ``r``; values are rounded and clipped to the score's range.
    """
    patients = [pid for pid, p in truth_participants.items() if p["group"] == PATIENT_LABEL]
    scores: dict[str, dict[str, float]] = {pid: {} for pid in patients}
    if not patients:
        return scores

    def standardise(values: np.ndarray) -> np.ndarray:
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)

    age = standardise(np.array([truth_participants[p]["age"] for p in patients]))
    sex = standardise(np.array([truth_participants[p]["sex"] == "M" for p in patients], float))
    for offset, (name, spec) in enumerate(sorted(effects["scores"].items())):
        rng = np.random.default_rng([seed, 2 * 10**6, offset])
        targets = {spec["driver"]: float(spec["r"]), **{
            k: float(v) for k, v in spec.get("extra_drivers", {}).items()}}
        z = np.column_stack([standardise(np.array([
            driver_values(truth_participants[p], driver) for p in patients]))
            for driver in targets])
        wa, ws = float(spec.get("age_weight", 0)), float(spec.get("sex_weight", 0))
        noise = rng.standard_normal(len(patients))
        resid = wa * age + ws * sex + np.sqrt(1 - wa**2 - ws**2) * noise
        weights, explained = driver_weights(z, np.array(list(targets.values())))
        value = spec["mean"] + spec["sd"] * (z @ weights + np.sqrt(1 - explained) * resid)
        value = np.clip(np.round(value, int(spec.get("decimals", 0))),
                        spec.get("min", -np.inf), spec.get("max", np.inf))
        for pid, v in zip(patients, value):
            scores[pid][name] = float(v)
    return scores


#: largest share of a score's variance its drivers may explain (the rest is residual)
MAX_EXPLAINED = 0.95


def driver_weights(z: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights of standardised drivers ``z`` (n, k) giving population correlations ``r``.

    ``w = C^-1 r`` with ``C`` the drivers' correlation matrix, so that
    ``corr(z w + sqrt(1 - w'Cw) e, z_j) = r_j`` for unit-variance noise ``e``; with one
    driver ``w = r``.  Correlations that the drivers cannot jointly have (``w'Cw`` above
    :data:`MAX_EXPLAINED`, e.g. opposite correlations with two nearly collinear drivers)
    are shrunk together until they can.

    Returns
    -------
    weights : ndarray
        (k,) weights.
    explained : float
        ``w'Cw``, the variance the drivers explain.
    """
    if z.shape[1] == 1:
        return r.astype(float), float(r[0] ** 2)
    corr = np.corrcoef(z, rowvar=False) if len(z) > 2 else np.eye(z.shape[1])
    corr = np.nan_to_num(corr) + 1e-9 * np.eye(len(r))
    weights = np.linalg.solve(corr, r)
    explained = float(weights @ corr @ weights)
    if explained > MAX_EXPLAINED:
        weights *= np.sqrt(MAX_EXPLAINED / explained)
        explained = MAX_EXPLAINED
    return weights, explained
