"""Thin nipype interface of the tractometry step: load, one call to
:func:`bids_app.core.dwi.tractometry.tractometry`, write bundles, tables and the QC figure."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nb
import numpy as np
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.io.streamline import save_trk
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_app.core.dwi.bundles import load_streamlines
from bids_app.core.dwi.qc import plot_bundles, plot_profiles
from bids_app.core.dwi.tractometry import tractometry
from bids_app.interfaces._io import load_mask, load_nifti

LOGGER = logging.getLogger("nipype.interface")


class _TractometryInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed 4D DWI")
    in_bval = File(exists=True, mandatory=True)
    in_bvec = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True, desc="DWI brain mask")
    in_maps = traits.Dict(traits.Str, File(exists=True), mandatory=True,
                          desc="{metric: native map}; fa required")
    to_template = File(exists=True, mandatory=True, desc="dwi -> template transform (.h5)")
    models = traits.List(traits.Tuple(traits.Str, traits.Str, File(exists=True)),
                         mandatory=True, desc="(region, hemisphere, model bundle .trk)")
    atlas = traits.Str(mandatory=True, desc="model-bundle atlas name")
    b0_threshold = traits.Float(mandatory=True)
    seed = traits.Int(mandatory=True)
    nthreads = traits.Int(mandatory=True)


class _TractometryOutputSpec(TraitedSpec):
    out_bundles = traits.List(File(exists=True), desc="one .trk per model, in model order")
    out_stats = File(exists=True, desc="bundle-weighted means (STATS_COLUMNS)")
    out_profiles = File(exists=True, desc="along-tract profiles (PROFILE_COLUMNS)")
    out_qc = File(exists=True, desc="streamline counts per bundle")
    out_figure = File(exists=True, desc="recognised bundles over FA")
    out_profile_figure = File(exists=True, desc="FA and MD profiles")
    failed = traits.List(traits.Str, desc="bundles not recognised ('cst L')")
    directions = traits.Str(desc="direction model used for tracking")


class Tractometry(SimpleInterface):
    """Whole-brain tracking, RecoBundles recognition, bundle means and profiles."""

    input_spec = _TractometryInputSpec
    output_spec = _TractometryOutputSpec

    def _run_interface(self, runtime):
        data, img = load_nifti(self.inputs.in_file)
        bvals = np.loadtxt(self.inputs.in_bval, ndmin=1)
        bvecs = np.loadtxt(self.inputs.in_bvec, ndmin=2).T
        maps = {m: load_nifti(p)[0] for m, p in self.inputs.in_maps.items()}
        models = {(region, hemi): load_streamlines(path)
                  for region, hemi, path in self.inputs.models}
        res = tractometry(data, bvals, bvecs, mask=load_mask(self.inputs.in_mask), maps=maps,
                          affine=img.affine, models=models,
                          to_template=[self.inputs.to_template], atlas=self.inputs.atlas,
                          b0_threshold=self.inputs.b0_threshold, seed=self.inputs.seed,
                          nthreads=self.inputs.nthreads)
        cwd = Path(runtime.cwd)
        bundles = []
        reference = _reference(img)
        for (region, hemi), bundle in res.bundles.items():
            path = cwd / f"bundle_{region}_{hemi}.trk"
            sft = StatefulTractogram(bundle.streamlines, reference, Space.RASMM)
            save_trk(sft, str(path), bbox_valid_check=False)
            bundles.append(str(path))
        stats, profiles, qc = (cwd / f"{n}.tsv" for n in ("bundlestats", "profiles", "qc"))
        res.stats.to_csv(stats, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        res.profiles.to_csv(profiles, sep="\t", index=False, na_rep="n/a",
                            float_format="%.6g")
        counts = res.counts.assign(atlas=self.inputs.atlas, directions=res.directions,
                                   n_unique_directions=res.n_unique_directions,
                                   tractogram_streamlines=res.n_streamlines)
        counts[["atlas", "region", "hemisphere", "n_streamlines", "recognised", "directions",
                "n_unique_directions", "tractogram_streamlines"]].to_csv(
            qc, sep="\t", index=False)
        failed = res.failed()
        if failed:
            LOGGER.warning("bundle recognition failed for %s (too few streamlines): their "
                           "bundle metrics and profiles are n/a; the atlas-based metrics "
                           "remain", ", ".join(failed))
        figure = plot_bundles(maps["fa"], img.affine, res.bundles, cwd / "bundles.png")
        profile_figure = plot_profiles(res.profiles, cwd / "profiles.png")
        self._results.update(out_bundles=bundles, out_stats=str(stats),
                             out_profiles=str(profiles), out_qc=str(qc),
                             out_figure=str(figure), out_profile_figure=str(profile_figure),
                             failed=failed,
                             directions=res.directions)
        return runtime


def _reference(img: nb.Nifti1Image) -> nb.Nifti1Image:
    """A 3D image of the DWI grid: the ``.trk`` header's reference space."""
    return nb.Nifti1Image(np.zeros(img.shape[:3], np.uint8), img.affine)
