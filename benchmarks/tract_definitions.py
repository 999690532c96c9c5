"""How far the measured tract definitions agree with the simulator's, before any registration.

Usage::

    python benchmarks/tract_definitions.py [--effects YAML] [--data-dir DIR]

The tract validation (``benchmarks/tract_validation.py``) plants its lesions in other atlases'
tracts (XTRACT, HCP1065: ``placement`` of the effects) than the ones alsmri measures (HCP842
maps and model bundles), carried by another registration. A recovered/true ratio below 1 then
mixes three things: the atlases' different definitions of a tract, the two registrations'
disagreement, and the measurement itself. This benchmark isolates the first, in template space
(MNI152NLin6Asym, no registration at all): for each tract, the share of the simulator's planted
effect strength (its tract weight over ``effect_saturation``, at most 1) that lies under

* ``model``: the HCP842 model bundle's streamline density (what RecoBundles starts from), and
* ``atlas``: the HCP842 probability map (the atlas-based ``wmean``),

relative to the same under the simulator's own weights (1 = the definitions agree), plus the
fraction of the model's density where the simulator's weight is > 0.05 (``inside``). Compare
with the native-space ``placement_coverage`` of the validation table: the difference is what
the registrations cost. Prints a table; exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALSMRI_SHARED", REPO.parent / "shared")).resolve()
os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHARED / "data" / "templateflow"))


def main(argv: list[str] | None = None) -> int:
    import nibabel as nib
    import numpy as np
    import pandas as pd
    from dipy.tracking.utils import density_map

    from bids_app.atlases.api import get_atlas, get_model_bundles
    from bids_app.core.dwi.bundles import load_streamlines
    from bids_app.simulate.cohort import EFFECT_SATURATION
    from bids_app.simulate.dataset import atlas_inputs
    from bids_app.simulate.effects import load_effects
    from bids_app.simulate.placement import load_template_map
    from bids_app.simulate.validation import planted_share

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--effects", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    opts = parser.parse_args(argv)
    inputs = atlas_inputs(load_effects(opts.effects), data_dir=opts.data_dir)
    models = get_model_bundles("hcp842", data_dir=opts.data_dir).bundles
    rows = []
    for key, source in inputs.tracts.items():
        atlas, region, hemi = key.split("/")
        if (region, hemi) not in models:
            continue
        weight, affine = load_template_map(source)
        density = density_map(load_streamlines(models[(region, hemi)]), affine,
                              weight.shape).astype(float)
        measured = get_atlas(atlas, res=round(abs(float(affine[0, 0]))),
                             data_dir=opts.data_dir)
        atlas_map = np.asarray(nib.load(str(measured.images[(region, hemi)])).dataobj, float)
        if atlas_map.shape != weight.shape:
            raise SystemExit(f"{key}: the {atlas} map and {source.name} are on different grids")
        rows.append({
            "tract": f"{region} {hemi}", "simulator": source.name,
            "model": planted_share(density, weight, saturation=EFFECT_SATURATION),
            "atlas": planted_share(atlas_map, weight, saturation=EFFECT_SATURATION),
            "inside": float(density[weight > 0.05].sum() / density.sum())})
    table = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 160):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
