"""Command-line parser (BIDS-Apps conventions, fMRIPrep/QSIPrep flag names)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bids_app import __version__
from bids_app.atlases.manifest import atlas_choices
from bids_app.bids.models import DWI_MODELS
from bids_app.core.dwi.preproc import DENOISERS
from bids_app.core.dwi.tensor import FIT_METHODS
from bids_app.errors import UsageError
from bids_app.settings import (
    DEFAULT_SEED,
    DENOISE_AUTO,
    DWI_RUN_MODES,
    SDC_METHODS,
    AnatSettings,
    DwiSettings,
)

ANALYSIS_LEVELS = ("participant", "group")


class BidsAppArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become :class:`UsageError` (exit 64, one line)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: ...)`` except for ``None``, whose real default the help text states."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (else a usage error naming the value)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return number


def probability(value: str) -> float:
    """argparse type: a number in [0, 1) (else a usage error naming the value)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"{value!r} must be in [0, 1)")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The ``alsmri BIDS_DIR OUTPUT_DIR {participant,group}`` parser."""
    parser = BidsAppArgumentParser(
        prog="alsmri",
        description=(
            "alsmri: DTI tract metrics (FA/MD/AD/RD) and motor-region gray-matter volumes from "
            "BIDS diffusion and T1w MRI, joined with clinical scores for ALS studies. "
            "Other commands: 'alsmri fetch-data', 'alsmri simulate', 'alsmri demo', "
            "'alsmri slurm'."),
        formatter_class=_DefaultsHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="root of the BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where derivatives are written")
    parser.add_argument("analysis_level", help=f"one of: {', '.join(ANALYSIS_LEVELS)}")
    parser.add_argument("--version", action="version", version=f"alsmri {__version__}")
    parser.add_argument("--bids-exec-spec", action="store_true",
                        help="print a Boutiques descriptor of this command line and exit")

    g = parser.add_argument_group("selecting data")
    g.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="participants to process (with or without 'sub-'), at the participant "
                        "and the group level; or the path of one text file of labels "
                        "(whitespace-separated). A value that is a valid label (letters and "
                        "digits, e.g. 01) is always a label, even if a file of that name "
                        "exists: give a label file named like a label as ./NAME")
    g.add_argument("--session-label", nargs="+", metavar="LABEL",
                   help="sessions to process (with or without 'ses-'), at both levels; or a "
                        "file of labels, as for --participant-label")
    g.add_argument("--bids-filter-file", type=Path, metavar="FILE",
                   help="JSON of pybids filters per data type, e.g. {\"dwi\": {\"acquisition\": "
                        "\"multiband\"}, \"t1w\": {\"run\": 1}}")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                   help="do not check the input dataset for BIDS validity")

    g = parser.add_argument_group("execution")
    g.add_argument("-w", "--work-dir", type=Path, metavar="DIR",
                   help="nipype working directory (default: $TMPDIR/alsmri-work); reuse it "
                        "to resume a run. Runs of different participants may share it; a "
                        "second run of a participant already running in it is refused "
                        "(exit 73). Not inside the input dataset")
    g.add_argument("--bids-database-dir", type=Path, metavar="DIR",
                   help="pybids index (DIR/layout_index.sqlite) of the input dataset, built "
                        "beforehand, e.g. for a large dataset shared by many runs; reused "
                        "read-only (never modified), built there when DIR holds none "
                        "(default: an index kept in WORK_DIR/bids_db)")
    g.add_argument("--nprocs", "--n-cpus", "--n_cpus", type=positive_int,
                   default=os.cpu_count() or 1, help="maximum parallel processes")
    g.add_argument("--omp-nthreads", type=positive_int, default=None,
                   help="threads per process (default: min(8, nprocs - 1), at least 1)")
    g.add_argument("--random-seed", type=positive_int, default=DEFAULT_SEED, metavar="N",
                   help="seed (>= 1; ANTs reads 0 as 'seed from the clock') of every "
                        "randomised step (ANTs metric sampling in the registrations); with "
                        "--omp-nthreads 1, repeated runs give identical outputs (ANTs' "
                        "multithreaded metrics are not bit-reproducible)")
    g.add_argument("--mem-mb", "--mem_mb", type=positive_int, default=None,
                   help="memory limit for the nipype scheduler, in MB")
    g.add_argument("--stop-on-first-crash", action="store_true",
                   help="abort at the first failing node")
    g.add_argument("--write-graph", action="store_true",
                   help="write the workflow graph to the log directory")
    g.add_argument("--boilerplate-only", "--boilerplate_only", action="store_true",
                   help="write logs/CITATION.md (the methods text) and exit")
    g.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="templates/atlases built by 'alsmri fetch-data' "
                        "(default: $ALSMRI_DATA, else the user cache)")
    g.add_argument("-v", "--verbose", dest="verbose", action="count", default=0,
                   help="more output (repeatable)")

    # Defaults come from the settings dataclasses (the one place each is defined).
    dwi, anat = DwiSettings, AnatSettings
    g = parser.add_argument_group("diffusion options")
    g.add_argument("--denoise", choices=(DENOISE_AUTO, *DENOISERS), default=dwi.denoise,
                   help="auto: MP-PCA where the diffusion-weighted SNR supports it, else none")
    g.add_argument("--unringing", action=argparse.BooleanOptionalAction, default=dwi.unringing,
                   help="Gibbs-ringing removal")
    g.add_argument("--motion-correction", action=argparse.BooleanOptionalAction,
                   default=dwi.motion_correction,
                   help="between-volume motion correction with b-vector rotation")
    g.add_argument("--tensor-fit", choices=tuple(FIT_METHODS), default=dwi.tensor_fit)
    g.add_argument("--dti-max-b", type=float, default=dwi.dti_max_b, metavar="B",
                   help="the tensor is fitted to the b=0 volumes and the shells at b <= B "
                        "(s/mm^2); to every volume, with a warning, when no shell is that low")
    g.add_argument("--dwi-models", nargs="+", choices=tuple(DWI_MODELS), metavar="MODEL",
                   help="diffusion models fitted where the acquisition meets their "
                        "requirements (others are skipped with a note); the tensor always "
                        f"(choices: {', '.join(DWI_MODELS)}; default: all)")
    g.add_argument("--b0-threshold", type=float, default=dwi.b0_threshold,
                   help="b-values below this are b=0 volumes (s/mm^2)")
    g.add_argument("--sdc", choices=SDC_METHODS, default=dwi.sdc,
                   help="susceptibility distortion correction from reverse phase-encoded runs")
    g.add_argument("--dwi-runs", choices=DWI_RUN_MODES, default=dwi.dwi_runs)
    g.add_argument("--tract-threshold", type=probability, default=dwi.tract_threshold,
                   help="tract probability threshold for the thresholded means")
    g.add_argument("--tract-atlas", choices=atlas_choices("tract"), default=dwi.tract_atlas,
                   help="tract probability atlas warped to DWI space (choices from the atlas "
                        "manifest)")
    g.add_argument("--roi-atlas", choices=atlas_choices("roi"), default=dwi.roi_atlas,
                   help="white-matter label atlas warped to DWI space")
    g.add_argument("--bundles", action=argparse.BooleanOptionalAction, default=dwi.bundles,
                   help="whole-brain tractography, recognition of the HCP842 corticospinal, "
                        "corticostriatal and corticothalamic bundles (RecoBundles), "
                        "bundle-weighted metrics and along-tract profiles")

    g = parser.add_argument_group("anatomical options")
    g.add_argument("--gm-atlas", choices=atlas_choices("gm"), default=anat.gm_atlas,
                   help="gray-matter label atlas warped to T1w space")

    g = parser.add_argument_group("group-level options (override the analysis spec)")
    g.add_argument("--analysis-spec", type=Path, metavar="YAML",
                   help="YAML analysis spec merged over the packaged defaults "
                        "(bids_app/data/analysis_spec.yaml)")
    g.add_argument("--group-column", metavar="COLUMN",
                   help="override the spec's 'group_column' (diagnosis column)")
    g.add_argument("--patient-label", metavar="VALUE",
                   help="override the spec's 'patient_label' (value of the group column)")
    g.add_argument("--control-label", metavar="VALUE",
                   help="override the spec's 'control_label' (value of the group column)")
    g.add_argument("--covariates", nargs="*", metavar="COLUMN",
                   help="override the spec's 'covariates' and 'gm_tract.covariates' "
                        "(patient-control and GM-vs-tract models); none: unadjusted")
    g.add_argument("--clinical-covariates", nargs="*", metavar="COLUMN",
                   help="override the spec's 'clinical_covariates' (clinical and "
                        "disease-duration regressions); none: unadjusted")
    g.add_argument("--scores", nargs="+", metavar="COLUMN",
                   help="override the spec's 'scores' (clinical scores correlated with the "
                        "imaging metrics)")
    g.add_argument("--fdr-alpha", type=probability,
                   help="override the spec's 'fdr_alpha' (Benjamini-Hochberg FDR level)")
    g.add_argument("--no-harmonize", dest="harmonize", action="store_false", default=None,
                   help="do not harmonise the imaging features across sites (spec "
                        "'harmonize.enabled: false'); site effects are still reported")
    return parser
