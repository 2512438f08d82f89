import numpy as np

from spinelabel import anatomy
from spinelabel.geometry import Volume
from spinelabel.training import sampling as S
from spinelabel.training import spine_moves as M


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



def test_data_spacing_and_points_agree_after_reorientation():
    """An anisotropic (I, P, R) grid with an origin: the canonical (R, I, P) data, spacing and points still agree."""
    spacing = np.array([0.8, 1.1, 3.0])  # along the array axes: I, P, R
    affine = np.array([[0, 0, spacing[2], -40.0], [0, -spacing[1], 0, 25.0], [-spacing[0], 0, 0, 90.0], [0, 0, 0, 1]])
    data = np.random.default_rng(2).uniform(0, 1, (150, 90, 20)).astype(np.float32)
    marked = (61, 37, 13)
    data[marked] = 1000.0
    vol = Volume(data, affine)
    scan = S.make_training_scan("t", vol, {"L3": vol.voxel_to_world(marked), "L4": vol.voxel_to_world([101, 37, 13])})
    assert scan.data.shape == (20, 150, 90)  # R, I, P
    np.testing.assert_allclose(scan.spacing, spacing[[2, 0, 1]])
    # the marked voxel, found in the data, is where the L3 point says (mm from the first voxel centre)
    found = np.array(np.unravel_index(np.argmax(scan.data), scan.data.shape))
    np.testing.assert_allclose(found * scan.spacing, scan.points_mm[0], atol=1e-6)
    # and L4 lies 40 voxels of 0.8 mm further down (I), nothing else changed
    np.testing.assert_allclose(scan.points_mm[1] - scan.points_mm[0], [0.0, 40 * 0.8, 0.0], atol=1e-6)

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


def test_cervical_training_centres_more_crops_on_c1_and_c2_and_cuts_the_top():
    from spinelabel.training.train import sampler_spec

    assert dict(sampler_spec("cervical").centre_weights)["C1"] > 1.0
    assert sampler_spec("cervical").p_cranial_cut > 0.0 and sampler_spec("cervical").p_cranial_gap_cut > 0.0
    assert sampler_spec("lumbar").centre_weights == ()
    assert sampler_spec("lumbar").p_cranial_cut == sampler_spec("lumbar").p_cranial_gap_cut == 0.0


def test_only_the_lumbar_recipe_draws_fusion_hardware():
    from spinelabel.training.train import sampler_spec

    assert sampler_spec("lumbar").p_hardware == 0.3
    assert sampler_spec("cervical").p_hardware == sampler_spec("whole").p_hardware == 0.0


def test_crop_rotation_spans_the_spec_range_and_no_more():
    rng = np.random.default_rng(0)
    spec = S.SamplerSpec(rotation_deg=35.0)
    angles = []
    for _ in range(400):
        matrix, _ = S._crop_transform(rng, spec, np.zeros(2))
        angles.append(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    assert max(np.abs(angles)) <= 35.0 and max(angles) > 33.0 and min(angles) < -33.0


def _dot_scan() -> S.TrainingScan:
    """A dark canonical-frame scan with a bright 3 mm dot at each of L1..L5 (35 mm apart), 1 mm voxels."""
    data = np.zeros((20, 220, 120), np.float32)
    points = np.array([[10.0, 40.0 + 35.0 * i, 60.0] for i in range(5)])
    rows, cols = np.indices(data.shape[1:])
    for p in points:
        data[:, (rows - p[1]) ** 2 + (cols - p[2]) ** 2 <= 9] = 1.0
    return S.TrainingScan("dots", data, np.ones(3), [f"L{i}" for i in range(1, 6)], points)


def _dots_under_peaks(scan: S.TrainingScan, spec: S.SamplerSpec, draws: int = 20) -> int:
    """Of ``draws`` samples (seed 5), how many have a bright dot under their strongest heatmap peak (>= 0.9)."""
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(draws):
        img, heat, *_ = S.sample(rng, scan, spec)
        if heat.max() > 0.9:
            u, v = np.unravel_index(np.argmax(heat), heat.shape)
            hits += img[max(u - 1, 0) : u + 2, max(v - 1, 0) : v + 2].max() > 0.3
    return hits


def test_segment_move_carries_image_and_targets_together():
    """The caudal part rotated and slipped at a disc: each dot is where its moved point (and heatmap peak) is."""
    scan = _dot_scan()
    theta = np.deg2rad(20.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    hinge = scan.points_mm[1:3, 1:].mean(axis=0)  # disc between L2 and L3
    down = np.array([1.0, 0.0])  # rows run inferior
    move = M.SegmentMove(hinge, down, rot, np.array([0.0, 6.0]), 3.0, first_moved=2)
    moved = move.points(scan.points_mm)
    np.testing.assert_allclose(moved[:2], scan.points_mm[:2])  # L1, L2 stay
    assert np.linalg.norm(moved[4, 1:] - scan.points_mm[4, 1:]) > 20.0  # L5 swings by tens of mm
    # the moved image shows each dot at its moved point: read the image through the move
    for p in moved:
        src = move.source_of(p[1:][None])[0] / scan.spacing[1:]
        assert scan.data[10, int(round(src[0])), int(round(src[1]))] == 1.0
    # and a random draw through `sample` keeps image and heatmap aligned
    assert _dots_under_peaks(scan, S.SamplerSpec(p_segment=1.0, p_negative=0.0, p_random_slice=0.0, p_caudal_cut=0.0,
                                                 lateral_jitter_mm=0.0, slab_mm=(1.0, 1.0))) >= 15


def test_bend_turns_every_step_by_an_equal_share_and_carries_the_image_along():
    """A sagittal bend: each step between annotated points turns by total / (n - 1); dots stay under their points."""
    scan = _dot_scan()
    spec = S.SamplerSpec(p_bend=1.0, bend_deg=16.0)
    rng = np.random.default_rng(3)
    moves = M.bend_moves(rng, scan.points_mm, spec)
    assert [m.first_moved for m in moves] == [1, 2, 3, 4]
    y = np.stack(np.meshgrid(np.arange(220.0), np.arange(120.0), indexing="ij"), axis=-1)
    moved, y_read = M.apply_moves(moves, scan.points_mm, y)
    steps = np.diff(moved[:, 1:], axis=0)
    turn = np.degrees(np.diff(np.arctan2(steps[:, 1], steps[:, 0])))
    assert np.all(np.abs(turn - turn[0]) < 1e-6) and 0.0 < abs(turn[0]) <= 16.0 / 4
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 35.0, rtol=1e-3)  # turned about the discs: spacings kept
    np.testing.assert_allclose(moved[0], scan.points_mm[0])  # the cranial-most point stays
    for p in moved:  # the bent image shows each dot at its bent point
        src = M.apply_moves(moves, scan.points_mm, p[1:][None])[1][0] / scan.spacing[1:]
        assert scan.data[10, int(round(src[0])), int(round(src[1]))] == 1.0
    assert y_read.shape == y.shape
    # off by default, and then no random number is drawn (the other augmentations' draws stay as they were)
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert M.bend_moves(rng_a, scan.points_mm, S.SamplerSpec()) == [] and rng_a.random() == rng_b.random()


def test_a_narrowed_disc_moves_the_spine_below_it_up_and_the_image_with_it():
    scan = _dot_scan()
    spec = S.SamplerSpec(p_narrow=1.0, narrow_fraction=0.2)
    for seed in range(10):
        move = M.narrow_move(np.random.default_rng(seed), scan.points_mm, spec)
        moved = move.points(scan.points_mm)
        above, below = moved[: move.first_moved], moved[move.first_moved :]
        np.testing.assert_allclose(above, scan.points_mm[: move.first_moved])  # the spine above stays
        shift = below[:, 1:] - scan.points_mm[move.first_moved :, 1:]
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape))  # the spine below moves as one piece ...
        assert shift[0, 1] == 0.0 and -0.2 * 35.0 <= shift[0, 0] <= 0.0  # ... up along it, by at most 0.2 of a step
        for q in moved:  # the narrowed image shows each dot at its moved point
            src = move.source_of(q[1:][None])[0] / scan.spacing[1:]
            assert scan.data[10, int(round(src[0])), int(round(src[1]))] == 1.0
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)  # off by default, and then no draw
    assert M.narrow_move(rng_a, scan.points_mm, S.SamplerSpec()) is None and rng_a.random() == rng_b.random()


def test_a_collapsed_body_is_squeezed_about_its_fixed_centre_more_at_the_front():
    down = np.array([1.0, 0.0])  # rows inferior; columns posterior
    c = M.Collapse(np.array([100.0, 60.0]), down, body=10.0, band=28.0, depth=18.0, k_front=0.5, k_back=0.9)
    at = lambda row, col: c.source_of(np.array([[row, col]]))[0]  # noqa: E731
    np.testing.assert_allclose(at(100.0, 60.0), [100.0, 60.0])  # the centre stays
    np.testing.assert_allclose(at(100.0 + 0.7 * 10.0, 60.0), [110.0, 60.0])  # mid-depth: k 0.7, the endplate at 0.7 h
    np.testing.assert_allclose(at(100.0 - 0.5 * 10.0, 42.0), [90.0, 42.0])  # the front: squeezed to half
    np.testing.assert_allclose(at(100.0 + 0.9 * 10.0, 78.0), [110.0, 78.0])  # the back: to 0.9
    np.testing.assert_allclose(at(100.0 + 28.0, 60.0), [128.0, 60.0])  # beyond the discs nothing moves
    np.testing.assert_allclose(at(100.0 + 8.0, 60.0 + 40.0), [108.0, 100.0])  # nor far behind the body
    mid = at(100.0 + 20.0, 60.0)[0]
    assert 100.0 + 20.0 < mid < 100.0 + 28.0  # the disc below stretches to fill
    scan = _dot_scan()  # drawn on a scan: a middle body, its centre unmoved, its dot still under its point
    spec = S.SamplerSpec(p_collapse=1.0)
    for seed in range(10):
        col = M.random_collapse(np.random.default_rng(seed), scan.points_mm, spec)
        i = int(np.argmin(np.linalg.norm(scan.points_mm[:, 1:] - col.centre, axis=1)))
        assert 0 < i < len(scan.points_mm) - 1 and col.k_front <= col.k_back
        for q in scan.points_mm:
            src = col.source_of(q[1:][None])[0] / scan.spacing[1:]
            assert scan.data[10, int(round(src[0])), int(round(src[1]))] == 1.0
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert M.random_collapse(rng_a, scan.points_mm, S.SamplerSpec()) is None and rng_a.random() == rng_b.random()


def test_pathology_draws_keep_image_and_heatmap_aligned():
    """Through ``sample`` with narrowing and collapse always on: a bright dot under each strong heatmap peak."""
    spec = S.SamplerSpec(p_narrow=1.0, p_collapse=1.0, p_negative=0.0, p_random_slice=0.0, p_caudal_cut=0.0,
                         lateral_jitter_mm=0.0, slab_mm=(1.0, 1.0))
    assert _dots_under_peaks(_dot_scan(), spec) >= 15


def test_caudal_cut_blanks_the_image_beyond_the_last_vertebra_only():
    scan = _dot_scan()
    spec = S.SamplerSpec(p_caudal_cut=1.0, caudal_cut_mm=(0.0, 0.0), caudal_cut_tilt_deg=0.0)
    rows = np.arange(0, 220, 1.0)
    y = np.stack([rows, np.full_like(rows, 60.0)], axis=-1)
    cut, keep = S._caudal_cut(np.random.default_rng(0), scan, spec, y)
    last_row = scan.points_mm[-1, 1]
    assert cut[rows > last_row + 0.5].all() and not cut[rows < last_row - 0.5].any()
    assert keep == len(scan.points_mm)


def test_caudal_cut_is_a_field_of_view_edge_across_the_image_not_across_a_tilted_spine():
    """A spine running 45 deg through the image: the edge stays a row of the source, ``caudal_cut_mm`` below the last body."""
    points = np.array([[10.0, 40.0 + 25.0 * i, 20.0 + 25.0 * i] for i in range(5)])
    scan = S.TrainingScan("diagonal", np.zeros((20, 220, 220), np.float32), np.ones(3),
                          [f"L{i}" for i in range(1, 6)], points)
    spec = S.SamplerSpec(p_caudal_cut=1.0, caudal_cut_mm=(20.0, 20.0), caudal_cut_tilt_deg=0.0)
    y = np.stack(np.meshgrid(np.arange(0, 220.0), np.arange(0, 220.0), indexing="ij"), axis=-1)
    cut, keep = S._caudal_cut(np.random.default_rng(1), scan, spec, y)
    edge = points[-1, 1] + 20.0
    assert cut[y[..., 0] > edge + 0.5].all() and not cut[y[..., 0] < edge - 0.5].any()
    assert keep == 5
    # tilted edges stay within the tilt: at 15 deg, over +-100 mm of columns the edge moves < 27 mm
    tilted = S.SamplerSpec(p_caudal_cut=1.0, caudal_cut_mm=(20.0, 20.0), caudal_cut_tilt_deg=15.0)
    rng = np.random.default_rng(2)
    for _ in range(10):
        cut, _ = S._caudal_cut(rng, scan, tilted, y)
        near = np.abs(y[..., 1] - points[-1, 2]) <= 100.0
        assert not cut[near & (y[..., 0] < edge - 27.0)].any() and cut[near & (y[..., 0] > edge + 27.0)].all()


def test_gap_cut_ends_the_image_between_vertebrae_and_drops_the_ones_below(monkeypatch):
    """A field of view ending above the next body: the bodies beyond leave the targets, the kept ones stay whole."""
    scan = _dot_scan()
    spec = S.SamplerSpec(p_caudal_cut=0.0, p_gap_cut=1.0, gap_cut_fraction=(0.5, 0.5))
    rows = np.arange(0, 220, 1.0)
    y = np.stack([rows, np.full_like(rows, 60.0)], axis=-1)
    rng = np.random.default_rng(3)
    for _ in range(10):
        cut, keep = S._caudal_cut(rng, scan, spec, y)
        assert 1 <= keep <= len(scan.points_mm) - 1
        kept_row, next_row = scan.points_mm[keep - 1, 1], scan.points_mm[keep, 1]
        middle = (kept_row + next_row) / 2
        assert cut[rows > middle + 0.5].all() and not cut[rows < middle - 0.5].any()
    # through `sample`: no heatmap is taught below the cut, where the image is blank
    spec_cut = S.SamplerSpec(p_caudal_cut=0.0, p_gap_cut=1.0, gap_cut_fraction=(0.5, 0.5), p_negative=0.0,
                             p_segment=0.0, p_oblique=0.0)
    _assert_no_target_beyond_the_cut(rng, spec_cut, monkeypatch)


def test_caudal_gap_weights_favour_the_gaps_nearest_the_caudal_end():
    """(4, 2): L4/L5 (keep 4) four times, L3/L4 (keep 3) twice as often as L1/L2 or L2/L3; off: equal odds, same draws."""
    scan = _dot_scan()
    y = np.stack([np.arange(0, 220, 1.0), np.full(220, 60.0)], axis=-1)
    weighted = S.SamplerSpec(p_caudal_cut=0.0, p_gap_cut=1.0, gap_cut_caudal_weights=(4.0, 2.0))
    rng = np.random.default_rng(7)
    kept = np.array([S._caudal_cut(rng, scan, weighted, y)[1] for _ in range(4000)])
    share = np.bincount(kept, minlength=5)[1:] / len(kept)
    np.testing.assert_allclose(share, [1 / 8, 1 / 8, 2 / 8, 4 / 8], atol=0.03)
    # empty weights: the uniform draw of the recipes trained before them, crop for crop
    plain = S.SamplerSpec(p_caudal_cut=0.0, p_gap_cut=1.0)
    a, b = np.random.default_rng(8), np.random.default_rng(8)
    for _ in range(20):
        i = S._caudal_cut(a, scan, plain, y)[1]
        b.random()
        assert i == 1 + int(b.integers(4))
        b.uniform()


def test_cranial_cut_blanks_the_image_above_the_first_vertebra_and_keeps_every_target():
    scan = _dot_scan()
    spec = S.SamplerSpec(p_cranial_cut=1.0, cranial_cut_mm=(12.0, 12.0), caudal_cut_tilt_deg=0.0)
    rows = np.arange(0, 220, 1.0)
    y = np.stack([rows, np.full_like(rows, 60.0)], axis=-1)
    cut, keep = S._cranial_cut(np.random.default_rng(0), scan, spec, y)
    edge = scan.points_mm[0, 1] - 12.0  # rows run inferior: above is smaller rows
    assert cut[rows < edge - 0.5].all() and not cut[rows > edge + 0.5].any()
    assert keep == len(scan.points_mm)
    assert S._cranial_cut(np.random.default_rng(0), scan, S.SamplerSpec(), y) is None  # off by default


def test_cranial_gap_cut_starts_the_image_between_vertebrae_and_drops_the_ones_above(monkeypatch):
    """Through `sample`: the top bodies leave the targets (no heat on the blank part), the lower ones are kept."""
    scan = _dot_scan()
    spec = S.SamplerSpec(p_cranial_gap_cut=1.0, gap_cut_fraction=(0.5, 0.5))
    rows = np.arange(0, 220, 1.0)
    y = np.stack([rows, np.full_like(rows, 60.0)], axis=-1)
    rng = np.random.default_rng(4)
    for _ in range(10):
        cut, keep = S._cranial_cut(rng, scan, spec, y)
        assert 1 <= keep <= len(scan.points_mm) - 1
        first_kept = len(scan.points_mm) - keep
        middle = (scan.points_mm[first_kept, 1] + scan.points_mm[first_kept - 1, 1]) / 2
        assert cut[rows < middle - 0.5].all() and not cut[rows > middle + 0.5].any()
    spec_cut = S.SamplerSpec(p_caudal_cut=0.0, p_gap_cut=0.0, p_cranial_gap_cut=1.0, gap_cut_fraction=(0.5, 0.5),
                             p_negative=0.0, p_segment=0.0, p_oblique=0.0)
    _assert_no_target_beyond_the_cut(rng, spec_cut, monkeypatch)


def _assert_no_target_beyond_the_cut(rng, spec, monkeypatch) -> None:
    """Through `sample` on a mid-grey scan (exact zeros only beyond the cut, or outside the source):
    neither heat nor a level target is taught on the blank part, so the dropped side is the cut one."""
    monkeypatch.setattr(S, "_augment_intensity", lambda rng, img, spec: img.astype(np.float32))
    base = _dot_scan()
    scan = S.TrainingScan("grey", np.maximum(base.data, 0.5), base.spacing, base.levels, base.points_mm)
    cut_seen = 0
    for _ in range(20):
        img, heat, level, level_w, *_ = S.sample(rng, scan, spec)
        blank = img == 0.0
        assert heat[blank].max(initial=0.0) < 0.5
        assert not (level_w > 0)[blank].any()
        cut_seen += bool(blank.mean() > 0.05 and (level_w > 0).any())
    assert cut_seen >= 5


def test_cranial_gap_cut_never_drops_c1_alone():
    """Dropping only C1 would cut through the dens of the C2 kept below it (taught as the anchor)."""
    points = np.array([[10.0, 40.0 + 16.0 * i, 60.0] for i in range(4)])
    scan = S.TrainingScan("c1c4", np.zeros((20, 220, 120), np.float32), np.ones(3), ["C1", "C2", "C3", "C4"], points)
    spec = S.SamplerSpec(p_cranial_gap_cut=1.0)
    y = np.stack([np.arange(0, 220, 1.0), np.full(220, 60.0)], axis=-1)
    rng = np.random.default_rng(6)
    kept = {S._cranial_cut(rng, scan, spec, y)[1] for _ in range(60)}
    assert kept == {1, 2}  # C4 alone, or C3-C4: never C2-C4 without C1
    two = S.TrainingScan("c1c2", scan.data, scan.spacing, ["C1", "C2"], points[:2])
    assert S._cranial_cut(rng, two, spec, y) is None


def test_oblique_slab_follows_the_tilted_surface_and_scales_targets():
    """A tilted slab reads the voxels at x = lateral(row, col), and each point's heat falls with its distance from it."""
    data = np.zeros((40, 60, 60), np.float32)
    data[10:14] = 1.0  # a bright lateral band at x in [10, 13] mm
    scan = S.TrainingScan("band", data, np.ones(3), ["L1", "L2"], np.array([[12.0, 20.0, 30.0], [30.0, 40.0, 30.0]]))
    lateral = lambda rc: 12.0 + 0.5 * (rc[..., 1] - 30.0)  # noqa: E731 - tilted about the rows
    cols = np.arange(20.0, 41.0)
    y = np.stack([np.full_like(cols, 30.0), cols], axis=-1)
    img = S._read_slab(scan, lateral(y), 1.0, y)
    inside = np.abs(lateral(y) - 11.5) < 1.4
    assert img[inside].min() > 0.5 and img[np.abs(lateral(y) - 11.5) > 3.0].max() < 0.01
    amp = S.lateral_profile(scan, S.SamplerSpec(), lateral(scan.points_mm[:, 1:]))
    assert amp[0] == 1.0 and amp[1] < amp[0]


def _s1_scan() -> S.TrainingScan:
    """L2-S1 spaced 35 mm along -z, S1 the anchor."""
    data = np.random.default_rng(0).uniform(0, 100, (60, 120, 240)).astype(np.float32)  # R, A, S: 240 mm head-foot
    vol = Volume(data, np.eye(4))
    centre = vol.voxel_to_world([30, 60, 120])
    names = ["L2", "L3", "L4", "L5", "S1"]
    return S.make_training_scan("t", vol, {lv: centre + np.array([0.0, 0.0, 70.0 - 35.0 * i]) for i, lv in enumerate(names)})


def test_upside_down_crops_are_the_same_draw_mirrored_head_foot_with_no_anchor_and_no_level():
    scan = _s1_scan()
    # crops centred near S1 in the midline, never cut, so the anchor is in view
    base = dict(p_negative=0.0, centre_weights=(("S1", 50.0),), p_caudal_cut=0.0, p_gap_cut=0.0, p_random_slice=0.0,
                lateral_jitter_mm=0.0)
    off, on = S.SamplerSpec(**base), S.SamplerSpec(p_upside_down=1.0, **base)
    assert S.SamplerSpec().p_upside_down == 0.0
    for seed in range(4):
        upright = S.sample(np.random.default_rng(seed), scan, off)
        turned = S.sample(np.random.default_rng(seed), scan, on)  # its one extra draw comes after all the others
        img, heat, level, level_w, valid, anchor = upright
        assert anchor.max() > 0.5 and level_w.max() > 0  # the upright crop teaches S1 and levels
        np.testing.assert_array_equal(turned[0], img[::-1])
        np.testing.assert_array_equal(turned[1], heat[::-1])
        np.testing.assert_array_equal(turned[4], valid[::-1])
        for target in (turned[2], turned[3], turned[5]):  # level, its weight, anchor
            assert not target.any()
    # axis 0 of a crop runs caudal: the heat of the upright crop's S1 lies below (higher row than) its L5
    img, heat, level, level_w, valid, anchor = S.sample(np.random.default_rng(0), scan,
                                                        S.SamplerSpec(**(base | dict(rotation_deg=0.0))))
    s1_row = np.unravel_index(np.argmax(anchor), anchor.shape)[0]
    assert np.average(np.arange(heat.shape[0]), weights=heat.sum(axis=1)) < s1_row


def test_upside_down_off_draws_no_random_number():
    """Off (0), the sampler draws exactly one number fewer than a share that is on but never turns a crop."""
    scan = _s1_scan()
    rng_off, rng_on = np.random.default_rng(3), np.random.default_rng(3)
    off = S.sample(rng_off, scan, S.SamplerSpec(p_negative=0.0))
    on = S.sample(rng_on, scan, S.SamplerSpec(p_negative=0.0, p_upside_down=1e-300))
    for a, b in zip(off, on):
        np.testing.assert_array_equal(a, b)
    first, second = rng_off.random(), rng_off.random()
    assert rng_on.random() == second != first
