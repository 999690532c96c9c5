"""Private scratch directory for antspyx's unnamed temporary files."""

from __future__ import annotations

import tempfile

import ants
import numpy as np
import pytest

from bids_app.core.scratch import ants_scratch


@pytest.fixture
def system_tmp(tmp_path, monkeypatch):
    """A fresh directory standing in for the system temporary directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_scratch_redirects_mktemp_and_cleans_up(system_tmp):
    with ants_scratch() as scratch:
        name = tempfile.mktemp(suffix=".nii.gz")
        assert scratch.parent == system_tmp and name.startswith(str(scratch))
        open(name, "w").close()
    assert not scratch.exists() and list(system_tmp.iterdir()) == []
    assert tempfile.tempdir == str(system_tmp)


def test_scratch_restores_on_error(system_tmp):
    with pytest.raises(RuntimeError), ants_scratch():
        raise RuntimeError("boom")
    assert tempfile.tempdir == str(system_tmp) and list(system_tmp.iterdir()) == []


def test_unwrapped_antspyx_would_leak(system_tmp):
    """The reason for the helper: ants.registration without outprefix leaves its transform."""
    image = ants.from_numpy(np.pad(np.ones((8, 8, 8), np.float32), 6))
    ants.registration(image, image, type_of_transform="Translation", aff_iterations=(2,),
                      aff_shrink_factors=(1,), aff_smoothing_sigmas=(0,))
    assert any(p.name.endswith("GenericAffine.mat") for p in system_tmp.iterdir())
