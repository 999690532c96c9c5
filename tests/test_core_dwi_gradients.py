"""Gradient and image checks of the diffusion branch on small synthetic inputs."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from bids_app.core.dwi.gradients import DwiWarning, check_dwi_array, check_gradients
from bids_app.errors import EXIT_BAD_DATA, BadDataError


def _dirs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(tmp_path, bvals, bvecs, name="sub-01_dwi"):
    bval = tmp_path / f"{name}.bval"
    bvec = tmp_path / f"{name}.bvec"
    np.savetxt(bval, np.asarray(bvals, float)[None], fmt="%g")
    np.savetxt(bvec, np.asarray(bvecs, float).T, fmt="%.6f")
    return bval, bvec


def _good(n_dw=12):
    bvals = np.r_[0, np.full(n_dw, 1000.0)]
    bvecs = np.vstack([np.zeros(3), _dirs(n_dw)])
    return bvals, bvecs


def test_good_table_reports_shells(tmp_path):
    bvals = np.r_[0, 5, np.full(6, 1000.0), np.full(6, 2010.0)]
    bvecs = np.vstack([np.zeros((2, 3)), _dirs(6, 1), _dirs(6, 2)])
    bval, bvec = _write(tmp_path, bvals, bvecs)
    g = check_gradients(bval, bvec, n_volumes=14, dwi_file="dwi.nii.gz", b0_threshold=50)
    assert g.shells == (1000.0, 2010.0)
    assert g.b0_mask.sum() == 2
    assert g.n_directions == 12
    assert np.allclose(np.linalg.norm(g.bvecs[2:], axis=1), 1)


def test_count_mismatch_names_both_files_and_counts(tmp_path):
    bvals, bvecs = _good()
    bval, bvec = _write(tmp_path, bvals[:-1], bvecs)
    with pytest.raises(BadDataError) as err:
        check_gradients(bval, bvec, n_volumes=13, dwi_file=tmp_path / "sub-01_dwi.nii.gz",
                        b0_threshold=50.0)
    msg = str(err.value)
    assert "sub-01_dwi.bval has 12 b-values" in msg
    assert "sub-01_dwi.bvec has 13 b-vectors" in msg
    assert "13 volumes" in msg
    assert err.value.exit_code == EXIT_BAD_DATA == 65


@pytest.mark.parametrize("missing", ["bval", "bvec"])
def test_missing_gradient_file(tmp_path, missing):
    bval, bvec = _write(tmp_path, *_good())
    (bval if missing == "bval" else bvec).unlink()
    with pytest.raises(BadDataError, match=f"missing .*{missing}"):
        check_gradients(bval, bvec, n_volumes=13, dwi_file="dwi.nii.gz", b0_threshold=50.0)


def test_no_b0(tmp_path):
    bvals, bvecs = _good()
    bvals[0] = 1000.0
    bvecs[0] = [1, 0, 0]
    bval, bvec = _write(tmp_path, bvals, bvecs)
    with pytest.raises(BadDataError, match="no b0 volume"):
        check_gradients(bval, bvec, n_volumes=13, dwi_file="dwi.nii.gz", b0_threshold=50)


def test_fewer_than_six_directions(tmp_path):
    dirs = _dirs(5)
    bvals = np.r_[0, np.full(10, 1000.0)]
    bvecs = np.vstack([np.zeros(3), dirs, -dirs])  # 10 vectors, 5 axes
    bval, bvec = _write(tmp_path, bvals, bvecs)
    with pytest.raises(BadDataError, match="only 5 non-collinear"):
        check_gradients(bval, bvec, n_volumes=11, dwi_file="dwi.nii.gz", b0_threshold=50.0)


def test_coplanar_directions_rank_deficient(tmp_path):
    ang = np.linspace(0, np.pi, 8, endpoint=False)
    dirs = np.column_stack([np.cos(ang), np.sin(ang), np.zeros(8)])
    bval, bvec = _write(tmp_path, np.r_[0, np.full(8, 1000.0)], np.vstack([np.zeros(3), dirs]))
    with pytest.raises(BadDataError, match="rank 3"):
        check_gradients(bval, bvec, n_volumes=9, dwi_file="dwi.nii.gz", b0_threshold=50.0)


def test_zero_length_bvec_with_b(tmp_path):
    bvals, bvecs = _good()
    bvecs[4] = 0.0
    bval, bvec = _write(tmp_path, bvals, bvecs)
    with pytest.raises(BadDataError, match=r"zero-length b-vector for volume\(s\) 4"):
        check_gradients(bval, bvec, n_volumes=13, dwi_file="dwi.nii.gz", b0_threshold=50.0)


def test_unnormalised_bvecs_are_normalised_with_warning(tmp_path):
    bvals, bvecs = _good()
    bvecs[1:] *= 0.8
    bval, bvec = _write(tmp_path, bvals, bvecs)
    with pytest.warns(DwiWarning, match="not unit length"):
        g = check_gradients(bval, bvec, n_volumes=13, dwi_file="dwi.nii.gz", b0_threshold=50.0)
    assert np.allclose(np.linalg.norm(g.bvecs[1:], axis=1), 1.0)


def test_3d_dwi_rejected():
    with pytest.raises(BadDataError, match="4D series, got a 3D"):
        check_dwi_array(np.ones((4, 4, 4)), dwi_file="sub-01_dwi.nii.gz")


def test_empty_image_rejected():
    with pytest.raises(BadDataError, match="empty image"):
        check_dwi_array(np.zeros((4, 4, 4, 7)), dwi_file="sub-01_dwi.nii.gz")
    with pytest.raises(BadDataError, match="empty image"):
        check_dwi_array(np.full((4, 4, 4, 7), np.nan), dwi_file="sub-01_dwi.nii.gz")


def test_nan_voxels_masked_with_warning():
    data = np.ones((4, 4, 4, 7), np.float32)
    data[1, 1, 1, 3] = np.nan
    data[2, 2, 2, 0] = np.inf
    with pytest.warns(DwiWarning, match="2 voxel"):
        out, n_bad = check_dwi_array(data, dwi_file="sub-01_dwi.nii.gz")
    assert n_bad == 2
    assert np.isfinite(out).all()
    assert out[1, 1, 1].max() == 0 and out[2, 2, 2].max() == 0  # whole series zeroed
    assert out[0, 0, 0].min() == 1


def test_check_interface_raises_on_3d_file(tmp_path):
    """The nipype interface surfaces the same error for a 3D file on disk."""
    from bids_app.interfaces.dwi_preproc import CheckDwi

    dwi = tmp_path / "sub-01_dwi.nii.gz"
    nb.save(nb.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), dwi)
    bval, bvec = _write(tmp_path, *_good())
    node = CheckDwi(in_file=str(dwi), in_bval=str(bval), in_bvec=str(bvec), b0_threshold=50.0)
    with pytest.raises(BadDataError, match="3D"):
        node.run(cwd=str(tmp_path))


def test_preflight_streams_the_whole_dwi_file(ds_xa30, tmp_path):
    """A real DWI cut short in transfer keeps a valid header: the pre-flight still rejects it.

    Before the stream check the pre-flight read only the header, so the run went on and
    failed inside a nipype node minutes later.
    """
    from bids_app.core.dwi.gradients import preflight_dwi

    src = ds_xa30 / "sub-01" / "dwi" / "sub-01_dir-AP_dwi.nii.gz"
    bval, bvec = src.with_name("sub-01_dir-AP_dwi.bval"), src.with_name("sub-01_dir-AP_dwi.bvec")
    assert preflight_dwi(src, bval, bvec, b0_threshold=50.0).shells
    blob = src.read_bytes()
    for name, cut in (("middle", len(blob) // 2), ("trailer", 8)):
        bad = tmp_path / f"sub-01_acq-{name}_dwi.nii.gz"
        bad.write_bytes(blob[:-cut])
        assert nb.load(bad).shape == (72, 72, 39, 21)  # the header alone looks fine
        with pytest.raises(BadDataError, match=rf"{bad.name}: truncated DWI image") as err:
            preflight_dwi(bad, bval, bvec, b0_threshold=50.0)
        assert err.value.exit_code == 65 and "\n" not in str(err.value)
