"""Seeded antspyx registrations are reproducible (one ITK thread, fresh processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ants

from bids_app.core.seeding import ants_seed

#: Affine registration with 20 % random metric sampling of two smooth synthetic volumes.
SCRIPT = """
import json, sys
import ants, numpy as np
from scipy import ndimage
from bids_app.core.scratch import ants_scratch
from bids_app.core.seeding import ants_seed
rng = np.random.default_rng(0)
base = ndimage.gaussian_filter(rng.random((40, 40, 40)), 3).astype("float32")
fixed = ants.from_numpy(base)
moving = ants.from_numpy(ndimage.shift(base, (1.3, -0.7, 0.4)).astype("float32"))
out = []
for seed in map(int, sys.argv[1:]):
    with ants_seed(seed), ants_scratch():
        reg = ants.registration(fixed, moving, type_of_transform="Affine",
                                aff_random_sampling_rate=0.2)
        out.append(ants.read_transform(reg["fwdtransforms"][0]).parameters.tolist())
print(json.dumps(out))
"""


def _params(*seeds: int) -> list[list[float]]:
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, seeds)], env=env,
                          capture_output=True, text=True, check=True, timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_same_seed_same_result_different_seed_differs():
    first, second, other = _params(11, 11, 12)
    assert first == second  # bit-identical
    assert first != other  # the seed reaches antsRegistration


def test_seed_zero_is_refused_because_ants_reads_it_as_the_clock():
    import pytest

    before = ants.config._random_seed
    with pytest.raises(ValueError, match="non-zero"), ants_seed(0):
        pass
    assert ants.config._random_seed == before


def test_seed_restored():
    before = ants.config._random_seed
    with ants_seed(5):
        assert ants.config._random_seed == 5
    assert ants.config._random_seed == before
    with ants_seed(None):
        assert ants.config._random_seed == before


def _itk_threads() -> str | None:
    return os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def test_single_threaded_runs_in_a_one_thread_child_and_restores_the_environment(monkeypatch):
    from bids_app.core.seeding import single_threaded

    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)
    assert single_threaded(_itk_threads) == "1"
    assert _itk_threads() is None  # the parent's environment is unchanged
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "4")
    assert single_threaded(_itk_threads) == "1"
    assert _itk_threads() == "4"
    assert single_threaded(divmod, 7, 2) == (3, 1)
