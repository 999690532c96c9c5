"""pybids layout construction with a persistent index inside the work directory."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from bids_app.errors import BadDataError, MissingInputError, ValidationFailed

LOGGER = logging.getLogger("alsmri.bids")


def check_dataset_description(bids_dir: Path) -> dict:
    """Read and check ``dataset_description.json`` (raises :class:`ValidationFailed`)."""
    desc = bids_dir / "dataset_description.json"
    if not desc.is_file():
        raise ValidationFailed(
            f"{desc}: missing; not a BIDS dataset (use --skip-bids-validation to index anyway)")
    try:
        data = json.loads(desc.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationFailed(f"{desc}: not valid JSON ({exc})") from exc
    missing = [k for k in ("Name", "BIDSVersion") if not data.get(k)]
    if missing:
        raise ValidationFailed(f"{desc}: required field(s) {', '.join(missing)} missing")
    return data


def build_layout(bids_dir: str | Path, *, work_dir: str | Path | None = None,
                 validate: bool = True):
    """Index ``bids_dir`` with pybids.

    Parameters
    ----------
    bids_dir
        Root of the raw dataset (never written to).
    work_dir
        When given, the SQLite index is kept in ``work_dir/bids_db/<hash>`` and reused by
        later runs, so large datasets are indexed once.
    validate
        Check ``dataset_description.json`` and let pybids ignore non-BIDS files.

    Returns
    -------
    bids.BIDSLayout
    """
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    bids_dir = Path(bids_dir).resolve()
    if not bids_dir.is_dir():
        raise MissingInputError(f"{bids_dir}: BIDS directory does not exist")
    if validate:
        check_dataset_description(bids_dir)
    db_path = None
    if work_dir is not None:
        key = hashlib.sha1(f"{bids_dir}|{validate}".encode()).hexdigest()[:12]
        db_path = Path(work_dir) / "bids_db" / key
        db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return BIDSLayout(str(bids_dir), validate=validate, database_path=db_path,
                          derivatives=False)
    except BIDSValidationError as exc:
        raise ValidationFailed(f"{bids_dir}: {str(exc).splitlines()[0]}") from exc
    except (ValueError, OSError) as exc:
        raise BadDataError(f"{bids_dir}: cannot index dataset ({exc})") from exc
