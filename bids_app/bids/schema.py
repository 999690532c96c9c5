"""Names shared by the participant outputs and the group-level loader.

Both participant branches write *long-format* TSV tables with exactly these columns, so the
group level can read every participant's metrics with one reader.
"""

from __future__ import annotations

#: Columns of every participant metrics TSV (``*_dwistats.tsv``, ``*_morph.tsv``).
STATS_COLUMNS: tuple[str, ...] = (
    "atlas",  # e.g. hcp842, jhu, aal
    "region",  # canonical lowercase region name, see REGION names below
    "hemisphere",  # L, R or bilateral
    "metric",  # fa, md, ad, rd | gmv, gmv_pct_tiv, tiv, ...
    "statistic",  # wmean (probability-weighted), mean (within threshold/label), sum, ratio
    "value",
    "n_voxels",
)

#: File-name suffix/desc pairs of the participant metrics tables (``sub-X[_ses-Y]_...``).
DWI_STATS = {"datatype": "dwi", "desc": "tracts", "suffix": "dwistats", "extension": ".tsv"}
ANAT_STATS = {"datatype": "anat", "desc": "gmvolume", "suffix": "morph", "extension": ".tsv"}

HEMISPHERES: tuple[str, ...] = ("L", "R", "bilateral")
DTI_METRICS: tuple[str, ...] = ("fa", "md", "ad", "rd")
