"""Private scratch space for antspyx's unnamed temporary files.

Several antspyx functions write their outputs to ``tempfile.mktemp()`` names in the system
temporary directory and never delete them: :func:`ants.atropos` (three probability images,
~1.8 MB per T1w) and :func:`ants.registration` without ``outprefix`` (a transform per call:
two per DWI volume in motion correction).  Left alone they accumulate in ``/tmp`` (a RAM-backed
tmpfs in the read-only container) with every participant.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def ants_scratch() -> Iterator[Path]:
    """Send temporary files created inside the block to a directory removed on exit.

    ``tempfile.mktemp`` (what antspyx uses) names files in ``tempfile.gettempdir()``, which
    returns the module-level ``tempfile.tempdir`` when set; it is pointed at a fresh private
    directory for the block and restored afterwards (also on error).  Files produced inside
    must be read into memory before the block ends.  ``tempfile.tempdir`` is process-wide:
    use from one thread at a time (nipype runs nodes in separate processes).

    Yields
    ------
    pathlib.Path
        The private directory.
    """
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="alsmri-ants-") as tmp:
        tempfile.tempdir = tmp
        try:
            yield Path(tmp)
        finally:
            tempfile.tempdir = saved
