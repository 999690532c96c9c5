"""Frozen run settings, grouped by concern.

Built once by :mod:`bids_app.cli` and passed down explicitly; nothing reads a global config.
Imports nothing from the rest of the package.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SDC_METHODS = ("auto", "none")
#: ``--denoise auto``: the denoiser is decided per DWI unit by the plan
#: (:func:`bids_app.bids.plan.plan_denoise`, from each run's diffusion-weighted SNR).
DENOISE_AUTO = "auto"
DWI_RUN_MODES = ("combine", "separate")
#: Seed of the randomised steps unless --random-seed is given.
DEFAULT_SEED = 20261122
#: The standard space of every template-space output and registration (TemplateFlow name).
TEMPLATE = "MNI152NLin6Asym"
#: Template resolution (mm) of the T1w registration and of the FA template.
ANAT_TEMPLATE_RES = 2
DWI_TEMPLATE_RES = 2
#: Resolution (mm) the GM label atlases are warped from (finer boundaries in T1w space).
GM_ATLAS_RES = 1
#: Data-manager resource of the GM/WM/CSF tissue priors of the T1w segmentation, and the
#: resolution (mm) they are warped from.
TISSUE_PRIORS = "tissue-priors"
TISSUE_PRIOR_RES = 1
#: Resolution (mm) of the tract/ROI atlases warped to DWI space.
DWI_ATLAS_RES = 2
#: Diffusion model fitted to every DWI unit, whose FA drives registration, tracking and QC
#: (a key of ``bids_app.bids.models.DWI_MODELS``; the other models run where the data allow).
DWI_MODEL = "tensor"
#: Atlas whose model bundles are recognised in every participant (``--bundles``).
BUNDLE_ATLAS = "hcp842"


@dataclass(frozen=True)
class ExecutionSettings:
    """Where data comes from and goes to, and what subset to process."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    skip_bids_validation: bool = False
    boilerplate_only: bool = False
    write_graph: bool = False
    verbosity: int = 0
    data_dir: Path | None = None
    """Built templates/atlases (``alsmri fetch-data``); ``None`` = default location."""
    bids_database_dir: Path | None = None
    """``--bids-database-dir``: a pybids index reused read-only (built there when absent);
    ``None`` = an index kept in ``work_dir/bids_db``."""


def default_omp_nthreads(nprocs: int) -> int:
    """Threads per process when ``--omp-nthreads`` is not given (fMRIPrep's rule).

    ``min(8, nprocs - 1)``, at least 1: with 2 cores, two single-threaded nodes run side by
    side (the DWI runs, the DWI and T1w branches); ITK threads on these small images cost
    more than they gain (ds-xa30 DWI branch 77 s with 1 thread, 84-92 s with 2).
    """
    return max(1, min(8, nprocs - 1))


@dataclass(frozen=True)
class NipypeSettings:
    """Execution resources for the nipype graph."""

    nprocs: int = 1
    omp_nthreads: int = 1
    mem_mb: int | None = None
    stop_on_first_crash: bool = False


@dataclass(frozen=True)
class DwiSettings:
    """Diffusion branch options."""

    denoise: str = DENOISE_AUTO
    """``auto`` (MP-PCA where the diffusion-weighted SNR keeps the anisotropy, else none;
    decided per DWI unit in the plan), ``mppca``, ``patch2self`` or ``none``."""
    unringing: bool = False
    """Gibbs unringing (Kellner's local sub-voxel shifts). Off unless requested: on data
    without ringing (simulated, partial-Fourier or scanner-filtered acquisitions) it acts as
    a smoothing filter and lowers white-matter FA (ds-xa30, PartialFourier 0.75: -0.055;
    MRtrix3 ``mrdegibbs`` -0.044); for full-Fourier, unfiltered data with visible ringing."""
    motion_correction: bool = True
    tensor_fit: str = "wls"
    dti_max_b: float = 1500.0
    """The tensor is fitted to the b0 volumes and the shells at or below this b-value
    (s/mm^2), where diffusion is close to Gaussian and FA/MD compare with the literature
    (b ~ 1000); every volume, with a warning, when no shell is that low."""
    models: tuple[str, ...] | None = None
    """Diffusion models to fit where the data meet their requirements (keys of
    ``bids_app.bids.models.DWI_MODELS``; the tensor always); ``None``: every declared model."""
    b0_threshold: float = 50.0
    sdc: str = "auto"
    dwi_runs: str = "combine"
    tract_threshold: float = 0.25
    tract_atlas: str = "hcp842"
    roi_atlas: str = "jhu"
    bundles: bool = True
    """Tractography, bundle recognition, bundle metrics and along-tract profiles."""
    seed: int = DEFAULT_SEED


@dataclass(frozen=True)
class AnatSettings:
    """Anatomical branch options."""

    gm_atlas: str = "aal"
    seed: int = DEFAULT_SEED


@dataclass(frozen=True)
class GroupSettings:
    """Group-level analysis options (CLI overrides of the analysis spec).

    ``None`` keeps the spec's value (the defaults live in ``bids_app/data/analysis_spec.yaml``).
    ``covariates`` sets the patient-control and GM-vs-tract models, ``clinical_covariates``
    the clinical and duration regressions; ``harmonize=False`` switches site harmonisation off
    (``harmonize.enabled``).
    """

    analysis_spec: Path | None = None
    group_column: str | None = None
    patient_label: str | None = None
    control_label: str | None = None
    covariates: tuple[str, ...] | None = None
    clinical_covariates: tuple[str, ...] | None = None
    scores: tuple[str, ...] | None = None
    fdr_alpha: float | None = None
    harmonize: bool | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs."""

    execution: ExecutionSettings
    nipype: NipypeSettings = field(default_factory=NipypeSettings)
    dwi: DwiSettings = field(default_factory=DwiSettings)
    anat: AnatSettings = field(default_factory=AnatSettings)
    group: GroupSettings = field(default_factory=GroupSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain, TOML-serialisable dictionary (paths as strings, ``None`` dropped)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Inverse of :meth:`to_dict`."""
        sections = {
            "execution": ExecutionSettings,
            "nipype": NipypeSettings,
            "dwi": DwiSettings,
            "anat": AnatSettings,
            "group": GroupSettings,
        }
        kwargs = {}
        for name, klass in sections.items():
            values = dict(data.get(name, {}))
            for f in dataclasses.fields(klass):
                if f.name not in values:
                    continue
                values[f.name] = _coerce(f.type, values[f.name])
            kwargs[name] = klass(**values)
        return cls(**kwargs)

    def to_toml(self) -> str:
        """Serialise as TOML (the run log's resolved configuration)."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> Settings:
        """Parse what :meth:`to_toml` wrote."""
        return cls.from_dict(tomllib.loads(text))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _coerce(annotation: str, value: Any) -> Any:
    if "Path" in annotation and isinstance(value, str):
        return Path(value)
    if "tuple" in annotation and isinstance(value, list):
        return tuple(value)
    return value
