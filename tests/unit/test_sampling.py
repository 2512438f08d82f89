import numpy as np

from spinelabel import anatomy
from spinelabel.geometry import Volume
from spinelabel.training import sampling as S


def _scan(axcodes_affine: np.ndarray) -> S.TrainingScan:
    """A small scan with points for L1..L5 spaced 35 mm along -z (world)."""
    data = np.random.default_rng(0).uniform(0, 100, (60, 200, 120)).astype(np.float32)
    vol = Volume(data, axcodes_affine)
    centre = vol.voxel_to_world([30, 100, 60])
    points = {f"L{i}": centre + np.array([0.0, 0.0, 70.0 - 35.0 * (i - 1)]) for i in range(1, 6)}
    return S.make_training_scan("t", vol, points)


def test_points_follow_reorientation():
    # array axes (R, S, A) with 1 mm voxels vs (I, P, R): the canonical (R, I, P) points must agree
    ras = np.eye(4)
    ipr = np.array([[0, 0, 1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1.0]])
    a, b = _scan(ras), _scan(ipr)
    assert a.levels == b.levels == ["L1", "L2", "L3", "L4", "L5"]
    # consecutive points are 35 mm apart along the canonical I axis (column 1), in both
    for scan in (a, b):
        np.testing.assert_allclose(np.diff(scan.points_mm[:, 1]), 35.0)
        np.testing.assert_allclose(np.diff(scan.points_mm[:, [0, 2]], axis=0), 0.0, atol=1e-9)


def test_targets_peak_at_points_and_mask_beyond_ends():
    scan = _scan(np.eye(4))
    spec = S.SamplerSpec()
    centre = scan.points_mm[2, 1:]  # L3
    matrix = np.eye(2) * spec.pixel_mm
    offset = centre - matrix @ np.array([63.5, 63.5])
    heat, level, level_w, valid, anchor = S._targets(scan, spec, matrix, offset, x_mm=scan.points_mm[2, 0])
    # L3 sits at the crop centre, pixel (63.5, 63.5): the four nearest pixels hold the maximum
    assert heat[63:65, 63:65].min() > 0.75 and heat.max() <= 1.0
    assert level[64, 64] == anatomy.ordinal("L3") - S.LEVEL_OFFSET
    # L1 is 70 mm = 35 px cranial; 35 mm beyond it (a would-be T12) is masked, L1 itself is not
    assert valid[64 - 35, 64] == 1.0 and valid[64 - 35 - 20, 64] == 0.0
    assert valid[64, 10] == 1.0  # far anterior of the spine: a true negative


def test_batch_shapes_and_ranges():
    rng = np.random.default_rng(1)
    img, heat, level, level_w, valid, anchor = S.batch(rng, [_scan(np.eye(4))], S.SamplerSpec(), 6)
    for a in (img, heat, level, level_w, valid):
        assert a.shape == (6, 1, 128, 128) and a.dtype == np.float32
    assert np.isfinite(img).all() and heat.min() >= 0 and heat.max() <= 1


def test_anchor_target_marks_s1_only():
    data = np.random.default_rng(0).uniform(0, 100, (60, 240, 120)).astype(np.float32)
    vol = Volume(data, np.eye(4))
    centre = vol.voxel_to_world([30, 120, 60])
    names = ["L3", "L4", "L5", "S1"]
    points = {lv: centre + np.array([0.0, 0.0, 54.0 - 36.0 * i]) for i, lv in enumerate(names)}
    scan = S.make_training_scan("t", vol, points)
    assert list(scan.is_anchor) == [False, False, False, True]
    spec = S.SamplerSpec()
    matrix = np.eye(2) * spec.pixel_mm
    mid = scan.points_mm[1:3, 1:].mean(axis=0)
    offset = mid - matrix @ np.array([63.5, 63.5])
    heat, _, _, _, anchor = S._targets(scan, spec, matrix, offset, x_mm=scan.points_mm[0, 0])
    uv = np.round((scan.points_mm[:, 1:] - offset) / spec.pixel_mm).astype(int)
    for (u, v), is_anchor in zip(uv, scan.is_anchor):
        if 0 <= u < 128 and 0 <= v < 128:
            assert heat[u, v] > 0.7
            assert (anchor[u, v] > 0.7) == is_anchor


def test_centre_weights_choose_crop_centres_by_level():
    scan = _scan(np.eye(4))
    rng = np.random.default_rng(3)
    uniform = [S._centre_index(rng, scan, S.SamplerSpec()) for _ in range(2000)]
    weighted_spec = S.SamplerSpec(centre_weights=(("L2", 6.0), ("C1", 50.0)))  # C1 not in this scan
    weighted = [S._centre_index(rng, scan, weighted_spec) for _ in range(2000)]
    l2 = scan.levels.index("L2")
    assert abs(np.mean(np.array(uniform) == l2) - 0.2) < 0.04
    assert abs(np.mean(np.array(weighted) == l2) - 0.6) < 0.04  # 6 / (6 + 4)
    assert set(weighted) == set(range(5))


def test_cervical_training_centres_more_crops_on_c1_and_c2():
    from spinelabel.training.train import sampler_spec

    assert dict(sampler_spec("cervical").centre_weights)["C1"] > 1.0
    assert sampler_spec("lumbar").centre_weights == ()
