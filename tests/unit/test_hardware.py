"""Posterior fusion hardware drawn into training crops (``training.hardware``)."""

import numpy as np
import pytest
from scipy import ndimage

from spinelabel.geometry import Volume
from spinelabel.training import hardware as H
from spinelabel.training import sampling as S

#: Five centres 35 mm apart straight down the rows, at column 60 (lateral, row, col mm).
CHAIN = np.array([[20.0, 40.0 + 35.0 * i, 60.0] for i in range(5)])


def _fixed(**kw) -> S.SamplerSpec:
    """Hardware always drawn, with every range collapsed to one value (overridable)."""
    values = dict(p_hardware=1.0, hardware_levels=(2, 2), hardware_void_mm=(4.0, 4.0), hardware_rod_void_mm=(2.0, 2.0),
                  hardware_tip_anterior_mm=(6.0, 6.0), hardware_head_posterior_mm=(34.0, 34.0), hardware_angle_deg=0.0,
                  hardware_tip_lateral_mm=(6.0, 6.0), hardware_head_lateral_mm=(22.0, 22.0),
                  hardware_rim_mm=(2.0, 2.0), hardware_rim_signal=(1.1, 1.1))
    return S.SamplerSpec(**(values | kw))


def test_off_by_default_and_then_no_random_number_is_drawn():
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    assert H.pedicle_hardware(rng_a, CHAIN, S.SamplerSpec()) is None and rng_a.random() == rng_b.random()
    assert H.pedicle_hardware(np.random.default_rng(0), CHAIN[:1], _fixed()) is None  # one point: no run of levels


def test_screws_converge_from_the_pedicles_to_in_front_of_the_centre_and_rods_join_their_heads():
    for seed in range(10):
        hw = H.pedicle_hardware(np.random.default_rng(seed), CHAIN, _fixed())
        screws, rods = hw.segments[:4], hw.segments[4:]
        assert len(rods) == 2
        first = int(np.argmin(np.abs(CHAIN[:, 1] - screws[0, 1])))
        for k, (xa, ra, ca, xb, rb, cb, radius) in enumerate(screws):
            centre = CHAIN[first + k // 2]
            side = np.sign(xa - centre[0])
            np.testing.assert_allclose([xa, ra, ca], centre + [6.0 * side, 0.0, -6.0])  # tip: in front, near the midline
            np.testing.assert_allclose([xb, rb, cb], centre + [22.0 * side, 0.0, 34.0])  # head: 34 mm behind, at the pedicle
            assert radius == 4.0
        assert sorted(np.sign(screws[:, 0] - CHAIN[0, 0])) == [-1, -1, 1, 1]  # a screw either side of each level
        for rod in rods:  # head to head, on one side
            assert any(np.allclose(rod[:3], s[3:6]) for s in screws) and any(np.allclose(rod[3:6], s[3:6]) for s in screws)
            assert abs(rod[0] - CHAIN[0, 0]) == pytest.approx(22.0) and rod[6] == 2.0


def test_a_turned_screw_keeps_its_head_behind_the_centre_and_the_run_fits_the_chain():
    spec = _fixed(hardware_angle_deg=15.0, hardware_levels=(2, 9))
    for seed in range(20):
        hw = H.pedicle_hardware(np.random.default_rng(seed), CHAIN, spec)
        screws = hw.segments[hw.segments[:, 6] == 4.0]
        assert 2 <= len(screws) // 2 <= len(CHAIN)  # never more levels than the chain has
        centres = CHAIN[np.argmin(np.abs(CHAIN[:, 1][None] - screws[:, 1][:, None]), axis=1), 1:]
        head = screws[:, 4:6] - centres
        np.testing.assert_allclose(np.linalg.norm(head, axis=1), 34.0)
        turn = np.degrees(np.arctan2(head[:, 0], head[:, 1]))  # from straight back (columns run posterior)
        assert np.all(np.abs(turn) <= 15.0 + 1e-9)


def test_a_slice_sees_a_screw_only_near_it():
    hw = H.Hardware(np.array([[10.0, 100.0, 50.0, 30.0, 100.0, 90.0, 4.0]]), 0.0, H.ENCODING_DIRECTIONS[0], 1.0)
    y = np.array([[100.0, 50.0], [100.0, 70.0], [100.0, 90.0]])  # tip, middle, head in the plane
    assert list(hw.void(y, 10.0)) == [True, False, False]  # a slice through the tip: the rest of the screw leaves it
    assert list(hw.void(y, 20.0)) == [False, True, False]
    assert list(hw.void(y, np.array([10.0, 20.0, 30.0]))) == [True, True, True]  # an oblique slice along the screw
    assert not hw.void(y, 0.0).any()  # the midline, 10 mm from the tip


@pytest.mark.parametrize("direction", [0, 1, 2, 3])
def test_the_void_is_dark_and_the_rim_lies_beside_it_along_the_encoding_axis_only(direction):
    hw = H.Hardware(np.array([[0.0, 100.0, 50.0, 0.0, 100.0, 90.0, 4.0]]), 2.0, H.ENCODING_DIRECTIONS[direction], 1.3)
    y = np.stack(np.meshgrid(np.arange(80.0, 120.0, 0.5), np.arange(30.0, 110.0, 0.5), indexing="ij"), axis=-1)
    img = np.full(y.shape[:2], 0.4, np.float32)
    out = H.draw_hardware(img, y, 0.0, hw)
    at = lambda row, col: out[int((row - 80.0) / 0.5), int((col - 30.0) / 0.5)]  # noqa: E731
    assert at(100.0, 70.0) == 0.0 and at(103.5, 70.0) == 0.0  # on the screw, and within its void
    step = H.ENCODING_DIRECTIONS[direction]
    edge = np.array([100.0, 70.0]) if step[0] else np.array([100.0, 90.0 if step[1] > 0 else 50.0])
    beyond = edge + step * 5.0  # 1 mm past the void's edge along the encoding axis: the pile-up
    assert at(*beyond) == pytest.approx(1.3)
    brighter = H.draw_hardware(np.full(img.shape, 1.5, np.float32), y, 0.0, hw)
    assert brighter[int((beyond[0] - 80.0) / 0.5), int((beyond[1] - 30.0) / 0.5)] == pytest.approx(1.5)  # adds, never darkens
    blank = H.draw_hardware(np.zeros(img.shape, np.float32), y, 0.0, hw)
    assert blank.max() == 0.0  # read outside the volume (exactly 0) there is no signal to pile up
    dark = H.draw_hardware(np.full(img.shape, -0.1, np.float32), y, 0.0, hw)  # tissue below the window's low end
    assert dark[int((beyond[0] - 80.0) / 0.5), int((beyond[1] - 30.0) / 0.5)] == pytest.approx(1.3)
    assert at(*(2.0 * np.array([100.0, 70.0]) - beyond)) == pytest.approx(0.4)  # the mirror side has no rim
    assert at(*(edge + step * 7.0)) == pytest.approx(0.4)  # and beyond the rim's width nothing changed
    assert at(85.0, 35.0) == pytest.approx(0.4) and img.min() == pytest.approx(0.4)  # far away; the input untouched


def _scan() -> S.TrainingScan:
    data = np.random.default_rng(0).uniform(0, 100, (60, 240, 120)).astype(np.float32)
    vol = Volume(data, np.eye(4))
    centre = vol.voxel_to_world([30, 120, 60])
    names = ["L2", "L3", "L4", "L5", "S1"]
    return S.make_training_scan("t", vol, {lv: centre + np.array([0.0, 0.0, 70.0 - 35.0 * i]) for i, lv in
                                           enumerate(names)})


def test_hardware_changes_the_image_and_never_the_targets():
    """Metal is an artefact, not anatomy: the same draw with and without it teaches the same vertebrae.

    (With the field-of-view cuts on, the hardware's draws move the cuts' draws, so the comparison turns them off.)
    """
    base = dict(p_negative=0.0, p_caudal_cut=0.0, p_gap_cut=0.0, p_remap=0.0, p_invert=0.0, p_bias_field=0.0,
                p_blur=0.0, p_noise=0.0, gamma=(1.0, 1.0), gain=(1.0, 1.0), offset=(0.0, 0.0), p_random_slice=0.0,
                lateral_jitter_mm=0.0, p_oblique=0.0)
    changed = 0
    for seed in range(8):
        plain = S.sample(np.random.default_rng(seed), _scan(), S.SamplerSpec(**base))
        metal = S.sample(np.random.default_rng(seed), _scan(), _fixed(hardware_tip_lateral_mm=(0.0, 0.0), hardware_head_lateral_mm=(0.0, 0.0), **base))
        for a, b in zip(plain[1:], metal[1:]):
            np.testing.assert_array_equal(a, b)
        changed += int(np.sum(plain[0] != metal[0]) > 50)
    assert changed >= 6  # screws drawn in the midline slice: most crops show them


def _plain_and_metal(scan, spec_kw, hw_kw, seed):
    base = dict(p_negative=0.0, p_caudal_cut=0.0, p_gap_cut=0.0, p_remap=0.0, p_invert=0.0, p_bias_field=0.0,
                p_blur=0.0, p_noise=0.0, gamma=(1.0, 1.0), gain=(1.0, 1.0), offset=(0.0, 0.0), p_random_slice=0.0,
                lateral_jitter_mm=0.0, slab_mm=(1.0, 1.0), centre_jitter_mm=10.0) | spec_kw
    plain = S.sample(np.random.default_rng(seed), scan, S.SamplerSpec(**base))
    metal = S.sample(np.random.default_rng(seed), scan, _fixed(**(hw_kw | base)))
    return plain, metal


def test_the_metal_moves_with_the_bone_when_a_segment_turns():
    """Screws through every body centre: wherever the targets put a moved centre, the image has its void."""
    scan = _scan()
    hw = dict(hardware_levels=(5, 5), hardware_tip_anterior_mm=(0.0, 0.0), hardware_tip_lateral_mm=(0.0, 0.0),
              hardware_head_lateral_mm=(0.0, 0.0), hardware_void_mm=(3.0, 3.0), hardware_rim_mm=(0.0, 0.0))
    peaks = 0
    for seed in range(6):
        plain, metal = _plain_and_metal(scan, dict(p_segment=1.0, segment_rotation_deg=25.0, p_oblique=0.0), hw, seed)
        heat = plain[1]
        for u, v in np.argwhere((heat >= 0.95) & (heat == ndimage.maximum_filter(heat, 5)) & (plain[0] > 0)):
            assert metal[0][u, v] == 0.0  # the moved centre is in its screw's void
            peaks += 1
    assert peaks >= 10


def test_an_oblique_slice_sees_a_screw_where_its_own_lateral_position_meets_it():
    """An image whose value is its lateral position: voids lie exactly where the tilted slab is near the screw."""
    x = np.arange(60.0)
    data = np.broadcast_to((0.1 + x / 100.0)[:, None, None], (60, 240, 120)).astype(np.float32)
    points = np.array([[30.0, 50.0 + 35.0 * i, 60.0] for i in range(5)])
    scan = S.TrainingScan("ramp", data, np.ones(3), ["L1", "L2", "L3", "L4", "L5"], points)
    hw = dict(hardware_levels=(5, 5), hardware_tip_lateral_mm=(10.0, 10.0), hardware_head_lateral_mm=(10.0, 10.0),
              hardware_void_mm=(3.0, 3.0), hardware_rod_void_mm=(0.1, 0.1), hardware_rim_mm=(0.0, 0.0))
    voids = 0
    for seed in range(6):
        plain, metal = _plain_and_metal(scan, dict(p_oblique=1.0, p_segment=0.0), hw, seed)
        void = (metal[0] == 0.0) & (plain[0] > 0.0)
        lateral = (plain[0][void] - 0.1) * 100.0  # the slab's lateral position at each void pixel
        assert np.all(np.abs(np.abs(lateral - 30.0) - 10.0) < 3.0 + 0.05)  # within the void's radius of a screw
        voids += int(void.sum())
    assert voids > 0  # the midline slab (x 30) meets screws 10 mm beside it only where it is tilted or bent
