"""Acquisition structure of a simulated cohort: sites (scanner effects) and sessions.

Both are declared in the effects (``sites``, ``sessions``; :mod:`bids_app.simulate.effects`)
and act on the participants' plans before any image is made, so they reach the DWI through
the same tensor changes as the disease: a site adds ``fa_shift`` to every tract's relative FA
change and multiplies the participant's own relative FA deviations by ``fa_scale``; a later
session adds the patients' per-year decline. Defaults (no sites, one session) leave the plans
as they are.
"""

from __future__ import annotations

from dataclasses import replace

from bids_app.simulate.cohort import ParticipantPlan


def with_sites(plans: list[ParticipantPlan], sites: dict) -> list[ParticipantPlan]:
    """Plant the site effects (effects ``sites``): within each group, the ``k``-th
    participant (plan order) goes to site ``k mod n_sites``, so every site holds as many
    patients and as many controls as the others (to one), as in a balanced multi-centre
    design and as ComBat's per-site fit needs; its relative FA deviations are multiplied by
    the site's ``fa_scale`` and the site's ``fa_shift`` is added to every tract change. No
    sites: the plans unchanged."""
    if not sites:
        return plans
    names = list(sites)
    seen: dict[str, int] = {}
    out = []
    for plan in plans:
        k = seen[plan.group] = seen.get(plan.group, -1) + 1
        name = names[k % len(names)]
        shift = float(sites[name].get("fa_shift", 0.0))
        scale = float(sites[name].get("fa_scale", 1.0))
        out.append(replace(
            plan, site=name,
            tract_changes={k: round(shift + scale * v, 6) for k, v in plan.tract_changes.items()},
            disease_changes={k: round(scale * v, 6) for k, v in plan.disease_changes.items()},
            focal_changes={k: round(scale * v, 6) for k, v in plan.focal_changes.items()}))
    return out


def session_plans(plans: list[ParticipantPlan], effects: dict) -> list[ParticipantPlan]:
    """One plan per participant and session (effects ``sessions``; a single session: the
    plans unchanged). Session ``k`` (``ses-<k+1>``) is at ``k * interval_years``; patients'
    planted tracts lose a further ``fa_decline_per_year x severity x years``."""
    ses = effects["sessions"]
    if ses["n"] == 1:
        return plans
    out = []
    for plan in plans:
        for k in range(ses["n"]):
            years = k * float(ses["interval_years"])
            decline = float(ses["fa_decline_per_year"]) * plan.severity * years
            out.append(replace(plan, session=f"ses-{k + 1}", years=years, disease_changes={
                key: round(v + decline, 6) for key, v in plan.disease_changes.items()}))
    return out


def session_score_change(plan: ParticipantPlan, effects: dict) -> float:
    """Change of the sessions' score since the first session: ``score_per_fa_change`` x the
    relative FA decline planted by then (0 for controls and the first session)."""
    ses = effects["sessions"]
    return float(ses["score_per_fa_change"]) * float(ses["fa_decline_per_year"]) \
        * plan.severity * plan.years
