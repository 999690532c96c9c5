"""Thin nipype interface of the DWI quality control: the QC table and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_app.core.dwi import qc
from bids_app.interfaces._io import load_mask, load_nifti, read_probseg


class _QCInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed DWI")
    in_bval = File(exists=True, mandatory=True)
    in_mask = File(exists=True, mandatory=True)
    mask_ml = traits.Float(mandatory=True, desc="brain-mask volume (mL) of the mask node")
    in_b0 = File(exists=True, mandatory=True)
    in_motion = File(exists=True, mandatory=True)
    in_sigma = traits.Either(None, File(exists=True), mandatory=True,
                             desc="MP-PCA noise map; None: noise estimated from the b0")
    in_fa = File(exists=True, mandatory=True)
    tract_file = File(exists=True, mandatory=True)
    tract_index = File(exists=True, mandatory=True)
    warped_fa = File(exists=True, mandatory=True)
    template = File(exists=True, mandatory=True)
    reg_corr = traits.Float(mandatory=True)
    sdc_report = File(exists=True, mandatory=True)
    shells = traits.List(traits.Float, mandatory=True)
    model_notes = traits.Dict(traits.Str, traits.Str, mandatory=True,
                              desc="model -> volumes fitted or why skipped (the plan's notes)")
    threshold = traits.Float(mandatory=True, desc="tract probability contour of the figure")
    b0_threshold = traits.Float(mandatory=True, desc="b-values below are b0")


class _QCOutputSpec(TraitedSpec):
    out_tsv = File(exists=True)
    out_tracts = File(exists=True)
    out_reg = File(exists=True)
    out_motion = File(exists=True)


class DwiQC(SimpleInterface):
    """QC numbers and figures (:mod:`bids_app.core.dwi.qc`)."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        cwd = Path(runtime.cwd)
        data = load_nifti(self.inputs.in_file)[0]
        bvals = np.loadtxt(self.inputs.in_bval, ndmin=1)
        mask = load_mask(self.inputs.in_mask)
        b0 = load_nifti(self.inputs.in_b0)[0]
        sigma = load_nifti(self.inputs.in_sigma)[0] if self.inputs.in_sigma else None
        motion = pd.read_csv(self.inputs.in_motion, sep="\t")
        fd = motion["framewise_displacement"].to_numpy()
        outliers = qc.outlier_volumes(data, bvals, mask, fd,
                                      b0_threshold=self.inputs.b0_threshold)
        sdc_report = json.loads(Path(self.inputs.sdc_report).read_text())
        table = qc.qc_table(snr=qc.b0_snr(b0, mask, sigma), motion=motion, outliers=outliers,
                            shells=self.inputs.shells, n_volumes=data.shape[3],
                            sdc=sdc_report, reg_corr=self.inputs.reg_corr,
                            mask_ml=self.inputs.mask_ml)
        table["sdc_note"] = sdc_report.get("note", "")
        for model, note in self.inputs.model_notes.items():
            table[f"model_{model}"] = note
        out_tsv = cwd / "qc.tsv"
        table.to_csv(out_tsv, sep="\t", index=False, na_rep="n/a")
        fa = load_nifti(self.inputs.in_fa)[0]
        probs = read_probseg(self.inputs.tract_file, self.inputs.tract_index)
        self._results["out_tsv"] = str(out_tsv)
        self._results["out_tracts"] = str(qc.plot_tracts(
            fa, probs, cwd / "tracts.png", threshold=self.inputs.threshold))
        self._results["out_reg"] = str(qc.plot_registration(
            load_nifti(self.inputs.warped_fa)[0], load_nifti(self.inputs.template)[0],
            cwd / "reg.png"))
        self._results["out_motion"] = str(qc.plot_motion(motion, cwd / "motion.svg"))
        return runtime
