"""Simulate a whole cohort into a BIDS directory (entry point behind ``alsmri simulate``)."""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.atlases.api import get_atlas, get_template
from bids_app.core.seeding import single_threaded
from bids_app.errors import CannotCreateOutput, UsageError
from bids_app.settings import TEMPLATE
from bids_app.simulate import acquisition, cohort, tensors, writer
from bids_app.simulate import scores as scores_module
from bids_app.simulate.base import (
    AtlasInputs,
    BaseAnatomy,
    RegionSource,
    SourceSubject,
    load_or_build_base,
)
from bids_app.simulate.placement import (
    CORE_PROBABILITY,
    centre_line,
    length_fraction,
    load_template_map,
)
from bids_app.simulate.recovery import build_recovery_table, planted_table

LOGGER = logging.getLogger("alsmri.simulate")
TRUTH_SCHEMA_VERSION = 2  # 2: independent placement, focal lesions, truth maps
#: ANTs seed of the base anatomy's registrations and GM segmentation (independent of the cohort
#: seed; non-zero: ANTs reads 0 as "seed from the clock")
BASE_SEED = 1


def default_cache_dir() -> Path:
    """``$ALSMRI_CACHE/simulate``, else ``$XDG_CACHE_HOME/alsmri/simulate``."""
    if os.environ.get("ALSMRI_CACHE"):
        return Path(os.environ["ALSMRI_CACHE"]).expanduser() / "simulate"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "alsmri" / "simulate"


def default_source_dir() -> Path:
    """``$ALSMRI_SHARED/data/bids/ds-xa30``.

    Without ``ALSMRI_SHARED``: ``../shared`` beside a source checkout, else ``../shared``
    relative to the working directory (an installed package run from the repository root).
    """
    tail = Path("data") / "bids" / "ds-xa30"
    if os.environ.get("ALSMRI_SHARED"):
        return Path(os.environ["ALSMRI_SHARED"]).expanduser() / tail
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / tail
    return beside_checkout if beside_checkout.is_dir() else Path.cwd().parent / "shared" / tail


def atlas_inputs(effects: dict, *, data_dir: Path | None = None) -> AtlasInputs:
    """MNI-space inputs of the base from the built data directory (``alsmri fetch-data``)."""
    atlases = {}

    def atlas(name: str):
        if name not in atlases:
            atlases[name] = get_atlas(name, res=2, data_dir=data_dir)
        return atlases[name]

    def region(name: str, region_name: str, hemi: str) -> RegionSource:
        a = atlas(name)
        source = f"{name}/{region_name}/{hemi}"
        if a.kind == "probseg":
            members = a.groups.get(region_name, [region_name])
            missing = [m for m in members if (m, hemi) not in a.images]
            if missing:
                raise UsageError(f"atlas {name} has no map for {missing[0]}/{hemi}")
            paths = [Path(a.images[(m, hemi)]) for m in members]
            return RegionSource(paths[0], union=tuple(paths[1:]), name=source)
        labels = a.labels
        members = a.groups.get(region_name, [region_name])
        rows = labels[labels["region"].isin(members) & (labels["hemisphere"] == hemi)]
        if rows.empty:
            raise UsageError(f"atlas {name} has no label for {region_name}/{hemi}")
        return RegionSource(Path(a.images[("all", "bilateral")]),
                            tuple(int(i) for i in rows["index"]), name=source)

    # each measured tract is placed from its own source (effects["placement"])
    tracts = {f"{key}/{h}": region(*effects["placement"][key].split("/"), h)
              for key in effects["tracts"] for h in cohort.HEMISPHERES}
    controls = {key: region(*key.split("/")) for key in effects["control_regions"]}
    gm = {f"{key}/{h}": region(*key.split("/"), h) for key in effects["gm"]
          for h in cohort.HEMISPHERES}
    return AtlasInputs(t1_template=get_template(suffix="T1w", res=2),
                       tracts=tracts, controls=controls, gm=gm)


def focal_positions(base: BaseAnatomy, atlases: AtlasInputs, effects: dict) -> dict:
    """Where each focal lesion sits: template height and fraction of the tract's length.

    Fractions are arc-length fractions along the centre line of the placement source's
    template-space map (:func:`bids_app.simulate.placement.centre_line`), from its inferior
    end; ``*_in_fov`` start the line at the lowest template height of the tract's core inside
    the source subject's DWI brain mask (the part a participant's bundle can show).
    """
    out = {}
    for key, spec in effects["focal"].items():
        z0, sigma = float(spec["z_mm"]), float(spec["sigma_mm"])
        half = sigma * math.sqrt(2 * math.log(2))
        hemispheres = {}
        for hemi in cohort.HEMISPHERES:
            line = centre_line(*load_template_map(atlases.tracts[f"{key}/{hemi}"]))
            core = ((base.weights[f"{key}/{hemi}"] >= CORE_PROBABILITY) & base.mask
                    & np.isfinite(base.template_z))
            floor = float(base.template_z[core].min()) if core.any() else float(line[0, 2])
            hemispheres[hemi] = {
                "placement": atlases.tracts[f"{key}/{hemi}"].name,
                "centre_line_z_mm": [round(float(line[0, 2]), 1), round(float(line[-1, 2]), 1)],
                "fraction_of_length": _fractions(line, z0, half, floor_mm=None),
                "fov_floor_z_mm": round(floor, 1),
                "fraction_of_length_in_fov": _fractions(line, z0, half, floor_mm=floor)}
        out[key] = {"z_mm": z0, "sigma_mm": sigma, "fwhm_mm": round(2 * half, 2),
                    "fa_change": float(spec["fa_change"]), "space": TEMPLATE,
                    "hemispheres": hemispheres}
    return out


def _fractions(line: np.ndarray, z0: float, half: float, *, floor_mm: float | None) -> dict:
    return {"centre": round(length_fraction(line, z0, floor_mm=floor_mm), 4),
            "fwhm": [round(length_fraction(line, z, floor_mm=floor_mm), 4)
                     for z in (z0 - half, z0 + half)]}


def simulate_dataset(out_dir: Path, base: BaseAnatomy, effects: dict, *, n_patients: int,
                     n_controls: int, seed: int, nprocs: int = 1,
                     atlases: AtlasInputs | None = None) -> dict:
    """Write the cohort to ``out_dir``; return the truth dictionary (also in truth.json).

    Participants are simulated in ``nprocs`` worker processes; the result does not depend on
    ``nprocs`` (every participant's randomness comes from its own seeded generators).
    """
    if n_patients < 0 or n_controls < 0 or n_patients + n_controls == 0:
        raise UsageError("need at least one participant (--n-patients/--n-controls)")
    multishell = effects["multishell"]
    if multishell["shells"]:
        bvals, bvecs = tensors.multishell_scheme(multishell["shells"],
                                                 directions=int(multishell["directions"]),
                                                 b0_volumes=int(multishell["b0_volumes"]))
        base = dataclasses.replace(base, bvals=bvals, bvecs=bvecs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutput(f"{out_dir}: cannot create ({exc.strerror})") from None
    if any(out_dir.glob("sub-*")):
        raise CannotCreateOutput(f"{out_dir}: already holds participants; use an empty "
                                 "directory")
    plans = acquisition.with_sites(cohort.plan_cohort(
        effects, n_patients=n_patients, n_controls=n_controls, seed=seed), effects["sites"])
    atlases = atlases or atlas_inputs(effects)
    gm_regions = atlases.gm
    # one ITK thread (child process): the same base gives the same GM map, hence the same cohort
    tissue = single_threaded(cohort.gm_tissue, base, seed=BASE_SEED, regions=gm_regions)
    participants: dict[str, dict] = {}
    timings = []
    runs = acquisition.session_plans(plans, effects)  # the plans themselves with one session
    jobs = [(plan, out_dir) for plan in runs]
    if nprocs > 1 and len(plans) > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        with ProcessPoolExecutor(max_workers=min(nprocs, len(plans)), mp_context=context,
                                 initializer=_init_worker,
                                 initargs=(base, effects, tissue, seed)) as pool:
            results = list(pool.map(_simulate_one, jobs))
    else:
        _init_worker(base, effects, tissue, seed)
        results = [_simulate_one(job) for job in jobs]
        _WORKER.clear()
    later: dict[str, dict] = {}
    for plan, (record, seconds) in zip(runs, results):
        if plan.session in ("", "ses-1"):  # the first session is the cross-sectional truth
            participants[plan.participant_id] = record
        if plan.session:
            later.setdefault(plan.participant_id, {})[plan.session] = {
                "years": plan.years, **{k: record[k] for k in ("tracts", "gm", "focal", "maps")}}
        timings.append(seconds)
        LOGGER.info("%s%s (%s) simulated in %.1f s", plan.participant_id,
                    f" {plan.session}" if plan.session else "", plan.group, seconds)
    scores = scores_module.generate_scores(participants, effects, seed=seed)
    for pid, values in scores.items():
        participants[pid]["scores"] = values
    sessions = _session_rows(runs, participants, effects)
    for pid, per_session in later.items():
        participants[pid]["sessions"] = per_session
    truth = {
        "schema_version": TRUTH_SCHEMA_VERSION,
        "generated_by": f"alsmri simulate {__version__}",
        "seed": seed, "n_patients": n_patients, "n_controls": n_controls,
        "patient_label": cohort.PATIENT_LABEL, "control_label": cohort.CONTROL_LABEL,
        "effects": effects,
        "base": base.provenance,
        "focal": focal_positions(base, atlases, effects),
        "measurement": {
            "tract_weight": "the simulator's own tract: a probability map of another atlas "
                            "than the measured one (row 'placement', effects 'placement') on "
                            "the source DWI grid, placed by MNI152NLin6Asym T1w -> source T1w "
                            "(SyN) -> source b0 (rigid), never by the participant level's FA "
                            "registration; rows keep the measured feature's atlas/region",
            "tract_value": "fa, md, ad, rd: weighted mean over the participant's "
                           "noise-free planted tensors (the planted source field resampled "
                           "through the head position and deformation, weights carried "
                           "along, inside the carried brain mask; the participant's weights "
                           "are the 'maps' files); source_*: the same over the source "
                           "anatomy; fa_change: relative FA change planted in the source "
                           "anatomy (tract + focal), tract_fa_change: the tract change "
                           "alone (target target_fa_change)",
            "focal": "participants' 'focal' rows: the same values with the focal weights "
                     "(tract weights x Gaussian of template z); fa_change: relative to the "
                     "FA with the tract change alone (target target_fa_change = fa_change "
                     "of effects x severity); top-level 'focal': the declared position",
            "effect_saturation": cohort.EFFECT_SATURATION,
            "volume_ratio": "region GM volume / intracranial volume in the participant's "
                            "T1w over the same in the source T1w (Atropos GM posterior of the "
                            "source in the registered label): the planted atrophy "
                            "(volume_change) times the participant deformation's volume "
                            "factor (deformation_volume_factor; compare with gmv_pct_tiv)",
            "gm_atrophy": "smooth local deformation contracting (or expanding) the region's "
                          "GM-dominant voxels, other tissue of the region taking up the "
                          "difference (bids_app.core.anat.atrophy.plant_atrophy); the "
                          "realised change comes from the field's exact Jacobian"},
        "participants": participants,
        "simulate_seconds_per_participant": round(sum(timings) / max(len(timings), 1), 2),
    }
    truth["sample"] = _sample_statistics(truth)
    writer.write_dataset_files(out_dir, participants=[
        {"participant_id": p.participant_id, "age": p.age, "sex": p.sex, "group": p.group,
         "onset_site": p.onset_site, "site": p.site} for p in plans], scores=scores,
        effects=effects, truth=truth, source_name="ds-xa30 sub-01", sessions=sessions)
    return truth


#: Acquisition date of every participant's first simulated session (sessions.tsv acq_time).
FIRST_SESSION_DATE = "2025-01-06"


def _session_rows(runs: list[cohort.ParticipantPlan], participants: dict,
                  effects: dict) -> dict[str, list[dict]]:
    """sessions.tsv rows per participant (several sessions only): acq_time, age and the
    sessions' score (the first session's score + the change tied to the FA decline, within
    the score's range), also kept in each participant's truth (``session_scores``)."""
    spec = effects["sessions"]
    if spec["n"] == 1:
        return {}
    name = spec["score"]
    limits = effects["scores"][name]
    rows: dict[str, list[dict]] = {}
    for plan in runs:
        base = participants[plan.participant_id].get("scores", {}).get(name)
        value = None
        if base is not None and not (isinstance(base, float) and math.isnan(base)):
            value = float(np.clip(base + acquisition.session_score_change(plan, effects),
                                  limits.get("min", -np.inf), limits.get("max", np.inf)))
            value = round(value, int(limits.get("decimals", 3)))
        when = pd.Timestamp(FIRST_SESSION_DATE) + pd.Timedelta(days=round(plan.years * 365.25))
        rows.setdefault(plan.participant_id, []).append({
            "session_id": plan.session, "acq_time": when.strftime("%Y-%m-%dT%H:%M:%S"),
            "age": round(plan.age + plan.years, 2), name: value})
        participants[plan.participant_id].setdefault("session_scores", {})[plan.session] = value
    return rows


#: per-process simulation inputs (set once per worker by :func:`_init_worker`)
_WORKER: dict = {}


def _init_worker(base: BaseAnatomy, effects: dict, tissue: cohort.GmTissue, seed: int) -> None:
    _WORKER.update(base=base, effects=effects, tissue=tissue, seed=seed)


def _simulate_one(job: tuple[cohort.ParticipantPlan, Path]) -> tuple[dict, float]:
    """Simulate and write one participant (in a worker); return its truth record and time."""
    plan, out_dir = job
    base, effects = _WORKER["base"], _WORKER["effects"]
    start = time.perf_counter()
    sim = cohort.simulate_participant(base, plan, effects, seed=_WORKER["seed"],
                                      tissue=_WORKER["tissue"])
    writer.write_participant_images(
        out_dir, plan.participant_id, dwi=sim.dwi, dwi_affine=base.dwi_affine,
        bvals=base.bvals, bvecs=base.bvecs, dwi_sidecar=base.dwi_sidecar, t1w=sim.t1w,
        t1_affine=base.t1_affine, t1_sidecar=base.t1_sidecar, session=plan.session)
    maps = writer.write_truth_maps(out_dir, plan.participant_id, sim.maps,
                                   affine=base.dwi_affine, session=plan.session)
    record = {"group": plan.group, "age": plan.age, "sex": plan.sex,
              "severity": plan.severity, "onset_site": plan.onset_site, "head": sim.head,
              "tracts": sim.tracts, "gm": sim.gm, "focal": sim.focal, "maps": maps,
              **({"site": plan.site} if plan.site else {})}
    return record, time.perf_counter() - start


def _sample_statistics(truth: dict) -> list[dict]:
    """Planted (sample-level) statistics: the recovery table run on the planted values."""
    table = build_recovery_table(truth, planted_table(truth))
    keep = ["check", "atlas", "region", "hemisphere", "metric", "score", "planted", "p",
            "q", "planted_slope"]
    table = table[keep].rename(columns={"planted": "value", "planted_slope": "slope"})
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in table.to_dict(orient="records")]


def simulate(out_dir: Path, *, n_patients: int, n_controls: int, seed: int, effects: dict,
             source_dir: Path | None = None, data_dir: Path | None = None,
             cache_dir: Path | None = None, nprocs: int = 1) -> dict:
    """Build (or load) the base anatomy, then simulate the cohort into ``out_dir``."""
    source = SourceSubject.from_bids(source_dir or default_source_dir())
    atlases = atlas_inputs(effects, data_dir=data_dir)
    base = load_or_build_base(source, atlases,
                              cache_dir=cache_dir or default_cache_dir(), seed=BASE_SEED)
    return simulate_dataset(out_dir, base, effects, n_patients=n_patients,
                            n_controls=n_controls, seed=seed, nprocs=nprocs, atlases=atlases)
