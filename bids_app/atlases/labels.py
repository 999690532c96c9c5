"""Label names -> (region, hemisphere), label CSV reading, and label-table checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from bids_app.errors import BadDataError

LABEL_COLUMNS = ["index", "name", "hemisphere", "region"]
_PREFIXES = {"L_": "L", "R_": "R", "Left_": "L", "Right_": "R", "Left-": "L", "Right-": "R"}
_SUFFIXES = {"_L": "L", "_R": "R"}
_ABBREV = re.compile(r"^[A-Z][A-Za-z]*_([a-z].*)$")
_SWAP = {"L": "R", "R": "L"}


def split_hemisphere(name: str) -> tuple[str, str]:
    """Split a source label name into (base name, hemisphere).

    >>> split_hemisphere("Precentral_L")
    ('Precentral', 'L')
    >>> split_hemisphere("Right_Thalamus_Proper")
    ('Thalamus_Proper', 'R')
    >>> split_hemisphere("Middle_Cerebellar_Peduncle")
    ('Middle_Cerebellar_Peduncle', 'bilateral')
    """
    for prefix, hemi in _PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):], hemi
    for suffix, hemi in _SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], hemi
    return name, "bilateral"


def canonical_region(base: str, *, renames: dict[str, str],
                     drop_abbreviation: bool = False) -> str:
    """Canonical lower-case region name for a base label name.

    ``renames`` wins; otherwise ``drop_abbreviation`` removes a leading code such as ``PrG_`` in
    ``PrG_precentral_gyrus`` (Neuromorphometrics), then the name is lower-cased with every run of
    non-alphanumerics replaced by ``_``.

    >>> canonical_region("Frontal_Sup_2", renames={"Frontal_Sup_2": "superior_frontal"})
    'superior_frontal'
    >>> canonical_region("Cingulum_(Hippocampus)", renames={})
    'cingulum_hippocampus'
    """
    if base in renames:
        return renames[base]
    if drop_abbreviation and (match := _ABBREV.match(base)):
        base = match.group(1)
        if base in renames:
            return renames[base]
    return re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_")


def read_label_csv(path: Path) -> dict[int, str]:
    """Read an ``index,name`` CSV (header optional, extra empty columns ignored, 0 dropped)."""
    try:
        table = pd.read_csv(path, header=None, usecols=[0, 1], dtype=str,
                            keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise BadDataError(f"{path}: cannot read label table: {exc}") from exc
    labels: dict[int, str] = {}
    for raw_index, name in table.itertuples(index=False):
        if not raw_index.strip().isdigit():
            continue  # header row
        index = int(raw_index)
        if index != 0:
            labels[index] = name.strip()
    if not labels:
        raise BadDataError(f"{path}: no labels found")
    return labels


def component_table(
    labels: dict[int, str],
    *,
    renames: dict[str, str],
    overrides: dict[int, str] | None = None,
    exclude: list[str] | tuple[str, ...] = (),
    swap_hemispheres: bool = False,
    drop_abbreviation: bool = False,
) -> pd.DataFrame:
    """Label table (source index, name, hemisphere, region) of one label image.

    ``overrides`` replace names by index (fixing known errors of a label file);
    ``exclude`` drops labels by base name; ``swap_hemispheres`` flips L/R (label files that name
    the hemispheres the wrong way round; always checked against the image afterwards).
    """
    rows = []
    for index, name in sorted(labels.items()):
        name = (overrides or {}).get(index, name)
        base, hemi = split_hemisphere(name)
        if base in exclude:
            continue
        if swap_hemispheres and hemi in _SWAP:
            hemi = _SWAP[hemi]
            name = f"{base}_{hemi}"
        region = canonical_region(base, renames=renames, drop_abbreviation=drop_abbreviation)
        rows.append((index, name, hemi, region))
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def check_table(table: pd.DataFrame, data: np.ndarray, affine: np.ndarray, *, where: str) -> None:
    """Fail loudly if the table and the label image disagree.

    Checks: (region, hemisphere) pairs are unique, and every L (R) label's centroid lies at
    world x < 0 (x > 0) in the image.
    """
    dupes = table[table.duplicated(["region", "hemisphere"], keep=False)]
    if not dupes.empty:
        pairs = sorted(set(zip(dupes["region"], dupes["hemisphere"])))
        raise BadDataError(f"{where}: duplicate (region, hemisphere) labels {pairs}")
    lateral = table[table["hemisphere"].isin(["L", "R"])]
    present = lateral[lateral["index"].isin(np.unique(data))]
    if present.empty:
        return
    centroids = ndimage.center_of_mass(data > 0, data, present["index"].tolist())
    for (index, name, hemi), ijk in zip(
        present[["index", "name", "hemisphere"]].itertuples(index=False), centroids
    ):
        x = (affine[:3, :3] @ np.asarray(ijk) + affine[:3, 3])[0]
        if (hemi == "L") != (x < 0):
            raise BadDataError(
                f"{where}: label {index} {name!r} is called {hemi} but its centroid is at "
                f"MNI x = {x:.1f} mm"
            )
