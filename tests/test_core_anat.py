"""Core anatomical functions on synthetic data (fast)."""

from __future__ import annotations

import gzip
import tempfile

import ants
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_app.core.anat import io, preproc, qc, segmentation, volumes
from bids_app.core.tables import STATS_COLUMNS
from bids_app.errors import EXIT_BAD_DATA, BadDataError


def _save(tmp_path, data, affine=None, name="sub-01_T1w.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32),
                             np.eye(4) if affine is None else affine), path)
    return path


def test_load_t1w_rejects_4d(tmp_path):
    path = _save(tmp_path, np.zeros((10, 10, 10, 3)))
    with pytest.raises(BadDataError, match="sub-01_T1w.nii.gz.*3D") as err:
        io.load_t1w(path)
    assert err.value.exit_code == EXIT_BAD_DATA == 65


def test_load_t1w_squeezes_single_volume(tmp_path):
    data = np.random.default_rng(0).random((10, 11, 12, 1))
    img = io.load_t1w(_save(tmp_path, data))
    assert img.shape == (10, 11, 12)
    np.testing.assert_allclose(np.asarray(img.dataobj), data[..., 0], rtol=1e-6)


@pytest.mark.parametrize("payload", [b"not a nifti at all", None])
def test_load_t1w_rejects_unreadable(tmp_path, payload):
    path = tmp_path / "sub-01_T1w.nii.gz"
    if payload is None:  # truncated gzip of a valid image
        good = _save(tmp_path, np.ones((20, 20, 20)), name="good.nii.gz")
        path.write_bytes(good.read_bytes()[:200])
    else:
        path.write_bytes(gzip.compress(payload))
    with pytest.raises(BadDataError, match="sub-01_T1w.nii.gz: (unreadable|truncated) T1w"):
        io.load_t1w(path)


def _cut(path, n_bytes, name):
    """A copy of ``path`` without its last ``n_bytes`` (a transfer cut short)."""
    out = path.with_name(name)
    out.write_bytes(path.read_bytes()[:-n_bytes])
    return out


def test_load_t1w_rejects_truncated_file_before_processing(tmp_path):
    # Random data compresses poorly, so the cuts below land in the middle of the data.
    data = np.random.default_rng(1).integers(0, 1000, (30, 30, 30)).astype(np.int16)
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), good)
    assert io.load_t1w(good).shape == (30, 30, 30)
    # Only the 8-byte gzip trailer (CRC-32, length) missing: every voxel still decompresses,
    # so reading the image (or its last slab) succeeds; only the stream check sees it.
    trailer = _cut(good, 8, "sub-01_T1w.nii.gz")
    np.asarray(nib.load(trailer).dataobj[..., -1:])
    with pytest.raises(BadDataError, match=r"sub-01_T1w.nii.gz: truncated T1w image") as err:
        io.load_t1w(trailer)
    assert err.value.exit_code == 65 and "\n" not in str(err.value)
    # Cut in the middle of the data.
    with pytest.raises(BadDataError, match=r"sub-02_T1w.nii.gz: truncated T1w image"):
        io.load_t1w(_cut(good, good.stat().st_size // 2, "sub-02_T1w.nii.gz"))
    # An uncompressed NIfTI shorter than its header says.
    raw = tmp_path / "raw.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), raw)
    with pytest.raises(BadDataError, match=r"sub-03_T1w.nii: truncated T1w image.*needs"):
        io.load_t1w(_cut(raw, 100, "sub-03_T1w.nii"))
    # A flipped byte in the compressed data: CRC (or deflate) error, not a silent bad image.
    corrupt = bytearray(good.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / "sub-04_T1w.nii.gz").write_bytes(bytes(corrupt))
    with pytest.raises(BadDataError, match=r"sub-04_T1w.nii.gz: (corrupt|truncated) T1w"):
        io.load_t1w(tmp_path / "sub-04_T1w.nii.gz")


def test_anisotropy_warning(tmp_path):
    iso = io.load_t1w(_save(tmp_path, np.zeros((10, 10, 10))))
    assert io.anisotropy_warning(iso) is None
    aff = np.diag([1.0, 1.0, 4.0, 1.0])
    thick = io.load_t1w(_save(tmp_path, np.zeros((10, 10, 10)), aff, name="thick.nii.gz"))
    msg = io.anisotropy_warning(thick, name="thick.nii.gz")
    assert msg is not None and "thick.nii.gz" in msg and "1.00x1.00x4.00" in msg


def test_reorient_ras_preserves_world_coordinates(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.random((6, 7, 8))
    las = np.diag([-2.0, 2.0, 2.0, 1.0])
    las[:3, 3] = (10, -20, -30)
    img = nib.Nifti1Image(data, las)
    ras = io.reorient_ras(img)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    # The voxel at world point p has the same value before and after.
    ijk = np.array([2, 3, 4, 1])
    world = las @ ijk
    ijk_ras = np.rint(np.linalg.inv(ras.affine) @ world).astype(int)
    assert np.asarray(ras.dataobj)[tuple(ijk_ras[:3])] == data[2, 3, 4]
    assert io.reorient_ras(ras) is ras


def test_gm_volumes_against_manual_sums():
    rng = np.random.default_rng(2)
    shape = (12, 12, 12)
    labels = np.zeros(shape, int)
    labels[:6, :6] = 1   # precentral L
    labels[6:, :6] = 2   # precentral R
    labels[:6, 6:] = 3   # caudate L
    labels[6:, 6:9] = 4  # putamen L (a second label of the same hemisphere)
    gm = rng.random(shape)
    table = pd.DataFrame({"index": [1, 2, 3, 4], "name": list("abcd"),
                          "hemisphere": ["L", "R", "L", "L"],
                          "region": ["precentral", "precentral", "caudate", "putamen"]})
    vox, tiv = 8.0, 1.5e6
    df = volumes.gm_volumes(gm, labels, label_table=table, voxel_volume=vox, tiv=tiv,
                            atlas="aal", groups={"striatum": ["caudate", "putamen"]},
                            brain_mask=np.ones(shape, bool))
    assert tuple(df.columns) == STATS_COLUMNS

    def get(region, hemi, metric):
        row = df[(df.region == region) & (df.hemisphere == hemi) & (df.metric == metric)]
        assert len(row) == 1
        return row.iloc[0]

    pre_l = gm[labels == 1].sum() * vox
    assert get("precentral", "L", "gmv").value == pytest.approx(pre_l)
    assert get("precentral", "L", "gmv").statistic == "sum"
    assert get("precentral", "L", "gmv").n_voxels == (labels == 1).sum()
    assert get("precentral", "L", "gmv_pct_tiv").value == pytest.approx(100 * pre_l / tiv)
    assert get("precentral", "L", "gmv_pct_tiv").statistic == "ratio"
    striatum = gm[(labels == 3) | (labels == 4)].sum() * vox
    assert get("striatum", "L", "gmv").value == pytest.approx(striatum)
    # R has no caudate/putamen: no striatum row
    assert df[(df.region == "striatum") & (df.hemisphere == "R")].empty
    assert get("total_gm", "bilateral", "gmv").value == pytest.approx(gm.sum() * vox)
    assert get("tiv", "bilateral", "tiv").value == tiv


def test_gm_volumes_rejects_shape_mismatch():
    table = pd.DataFrame({"index": [1], "hemisphere": ["L"], "region": ["x"]})
    with pytest.raises(ValueError, match="differ in shape"):
        volumes.gm_volumes(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), label_table=table,
                           voxel_volume=1, tiv=1, atlas="aal")


def test_tissue_volumes_tiv_is_sum():
    probs = {"GM": np.full((4, 4, 4), 0.5), "WM": np.full((4, 4, 4), 0.3),
             "CSF": np.full((4, 4, 4), 0.2)}
    vols = volumes.tissue_volumes(probs, voxel_volume=2.0)
    assert vols["GM"] == pytest.approx(64 * 0.5 * 2)
    assert vols["TIV"] == pytest.approx(64 * 2.0)


def _phantom(shape=(40, 40, 40), seed=3):
    """Concentric spheres: WM core, GM shell, CSF shell, scalp (label 4), then air."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2
    r = np.sqrt((grid**2).sum(0))
    truth = np.zeros(shape, int)
    truth[r < 19] = 4  # scalp
    truth[r < 16] = 3  # CSF
    truth[r < 13] = 1  # GM
    truth[r < 8] = 2   # WM
    means = {0: 5.0, 1: 60.0, 2: 100.0, 3: 20.0, 4: 80.0}
    img = np.vectorize(means.get)(truth) + rng.normal(0, 4, shape)
    return img.astype(np.float32), truth


def test_segment_tissues_recovers_phantom():
    img, truth = _phantom()
    image = ants.from_numpy(img)
    inside = (truth > 0) & (truth < 4)
    mask = ants.from_numpy(inside.astype(np.float32))
    seg = segmentation.segment_tissues(image, mask)
    dseg = seg.dseg.numpy().astype(int)
    assert np.mean(dseg[inside] == truth[inside]) > 0.97
    assert np.all(dseg[~inside] == 0)
    total = sum(seg.probseg[t].numpy() for t in segmentation.TISSUES)
    np.testing.assert_allclose(total[inside], 1.0, atol=1e-5)
    assert np.all(total[~inside] == 0)
    assert segmentation.DSEG_LABELS == {1: "GM", 2: "WM", 3: "CSF"}
    again = segmentation.segment_tissues(image, mask)  # constant Atropos seed: reproducible
    assert np.array_equal(again.probseg["GM"].numpy(), seg.probseg["GM"].numpy())


def test_segment_tissues_leaves_no_temporary_files(tmp_path, monkeypatch):
    # ants.atropos writes its probability images to mktemp() names and never deletes them
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    img, truth = _phantom(shape=(24, 24, 24))
    inside = (truth > 0) & (truth < 4)
    segmentation.segment_tissues(ants.from_numpy(img),
                                 ants.from_numpy(inside.astype(np.float32)))
    assert list(tmp_path.iterdir()) == []


def test_refine_brain_mask_drops_air_and_fills_holes():
    img, truth = _phantom()
    image = ants.from_numpy(img)
    prior = np.zeros(img.shape, np.float32)
    prior[2:38, 2:38, 2:38] = 1.0  # overshoots the head into air
    prior[20, 20, 20] = 0.0        # a hole
    mask = preproc.refine_brain_mask(image, ants.from_numpy(prior)).numpy() > 0
    head = truth > 0
    assert mask[20, 20, 20]
    assert not mask[~head].any()  # air removed
    assert mask[head & (prior > 0)].all()


def test_n4_removes_smooth_bias():
    img, truth = _phantom(seed=4)
    x = np.linspace(0.7, 1.3, img.shape[0])[:, None, None]
    biased = ants.from_numpy((img * x).astype(np.float32))
    corrected = preproc.n4_correct(biased).numpy()
    wm = truth == 2
    left, right = wm & (np.arange(40)[:, None, None] < 20), wm & (np.arange(40)[:, None, None]
                                                                    >= 20)
    before = (img * x)[right].mean() / (img * x)[left].mean()
    after = corrected[right].mean() / corrected[left].mean()
    assert abs(after - 1) < abs(before - 1) / 2


def test_qc_metrics_and_figures(tmp_path):
    img, truth = _phantom()
    tissue = {"GM": 500.0, "WM": 300.0, "CSF": 200.0, "TIV": 1000.0}
    m = qc.qc_metrics(brain_mask=truth > 0, tissue=tissue, voxel_volume=8.0,
                      registration_similarity=0.8)
    assert m["gm_fraction"] == pytest.approx(0.5)
    assert m["tiv_cm3"] == pytest.approx(1.0)
    assert m["brain_volume_cm3"] == pytest.approx((truth > 0).sum() * 8 / 1000)
    seg = qc.plot_segmentation(img, truth, tmp_path / "seg.svg")
    reg = qc.plot_registration(img, img, truth > 0, tmp_path / "reg.svg")
    for fig in (seg, reg):
        text = fig.read_text()
        assert text.lstrip().startswith("<?xml") and "</svg>" in text


def _pv_phantom(r_gm_out: float, *, shape=(36, 36, 36), sub=4, seed=5):
    """WM sphere in a GM shell in CSF, voxel intensities = true tissue fractions x class
    intensity (computed on a ``sub``-times finer grid and block-averaged) + noise."""
    fine = np.indices(tuple(n * sub for n in shape)).astype(np.float32)
    centre = (np.array(shape) * sub - 1) / 2
    r = np.sqrt(sum((fine[k] - centre[k]) ** 2 for k in range(3))) / sub
    tissue = {"WM": r < 8.0, "GM": (r >= 8.0) & (r < r_gm_out), "CSF": r >= r_gm_out}

    def block(x):
        return x.reshape(shape[0], sub, shape[1], sub, shape[2], sub).mean(axis=(1, 3, 5))

    frac = {t: block(m.astype(np.float32)) for t, m in tissue.items()}
    levels = {"CSF": 20.0, "GM": 60.0, "WM": 100.0}
    rng = np.random.default_rng(seed)
    img = sum(frac[t] * levels[t] for t in levels) + rng.normal(0, 2, shape)
    return img.astype(np.float32), frac


def test_partial_volume_fractions_recover_true_gm_and_its_loss():
    """Against fractions computed from the geometry (not from any segmentation): GM volume of
    a 4.5-voxel cortex within 3 %, and a 1.2-voxel thinning of its outer surface (a GM/CSF
    boundary, as sub-voxel as atrophy is) followed with ratio 0.9-1.1; the posteriors, which
    saturate, are further off."""
    img0, frac0 = _pv_phantom(12.5)
    img1, frac1 = _pv_phantom(11.3)
    mask = ants.from_numpy(np.ones(img0.shape, np.float32))
    seg0 = segmentation.segment_tissues(ants.from_numpy(img0), mask)
    seg1 = segmentation.segment_tissues(ants.from_numpy(img1), mask)
    gm0, gm1 = (s.probseg["GM"].numpy().sum() for s in (seg0, seg1))
    true0, true1 = frac0["GM"].sum(), frac1["GM"].sum()
    assert gm0 == pytest.approx(true0, rel=0.03)
    ratio = (gm0 - gm1) / (true0 - true1)
    assert 0.9 <= ratio <= 1.1, ratio
    post = [s.posteriors["GM"].numpy().sum() for s in (seg0, seg1)]
    assert abs((post[0] - post[1]) / (true0 - true1) - 1) > abs(ratio - 1)
    total = sum(seg0.probseg[t].numpy() for t in segmentation.TISSUES)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_partial_volume_fractions_reject_a_non_t1w_contrast():
    img, _ = _pv_phantom(12.5, shape=(20, 20, 20))
    probs = {"CSF": (img < 40).astype(float), "GM": ((img >= 40) & (img < 80)).astype(float),
             "WM": (img >= 80).astype(float)}
    with pytest.raises(ValueError, match="not ordered"):
        segmentation.partial_volume_fractions(-img, probs, np.ones(img.shape))


def test_modulate_conserves_the_amount_under_a_known_scaling(tmp_path):
    """A map carried by an affine with known scale: the Jacobian-modulated sum keeps the
    native amount (volume), the plain resampled sum changes by the scale's determinant."""
    from bids_app.core.anat import registration

    grid = np.indices((40, 40, 40)) - 19.5
    ball = (np.sqrt((grid**2).sum(0)) < 10).astype(np.float32)
    image = ants.from_numpy(ball, spacing=(2.0, 2.0, 2.0))
    reference = ants.from_numpy(np.zeros((80, 80, 80), np.float32), spacing=(1.0, 1.0, 1.0))
    # reference point y -> image point 1.25 * y (about the common centre): the image's
    # ball appears 1.25 times smaller in reference space, i.e. 1/1.25^3 of its volume
    centre = np.array(reference.spacing) * (np.array(reference.shape) - 1) / 2
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    matrix=np.eye(3) * 1.25, center=list(centre),
                                    translation=list(np.array(image.spacing)
                                                     * (np.array(image.shape) - 1) / 2 - centre))
    path = tmp_path / "scale.mat"
    ants.write_transform(tx, str(path))
    native = ball.sum() * 8.0
    plain = registration.warp_image(image, reference, path).numpy().sum() * 1.0
    modulated = registration.modulate(image, reference, path).numpy().sum() * 1.0
    assert plain == pytest.approx(native / 1.25**3, rel=0.03)
    assert modulated == pytest.approx(native, rel=0.02)
