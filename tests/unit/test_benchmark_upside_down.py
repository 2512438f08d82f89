"""benchmarks.upside_down: the data turned head-foot under the same geometry, the points moved with their voxels."""

import numpy as np
import pytest

from benchmarks.robustness import Labeled
from benchmarks.upside_down import sure_unwarned, upside_down
from spinelabel.geometry import Rescale, Volume

SPACING = 2.0
SHAPE = (20, 15, 60)  # LPS order: x to the left, y posterior, z superior


def _lps_affine(turn_deg: float = 0.0) -> np.ndarray:
    """LPS voxel order in RAS world mm, optionally turned about the left-right axis (an oblique sagittal grid)."""
    t = np.deg2rad(turn_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([-SPACING, -SPACING, SPACING])
    a[:3, 3] = [20.0, 15.0, -40.0]
    return a


@pytest.mark.parametrize("turn_deg", [0.0, 10.0])
def test_upside_down_mirrors_the_data_head_foot_keeps_the_geometry_and_moves_the_points_with_their_voxels(turn_deg):
    vol = Volume(np.zeros(SHAPE, np.float32), _lps_affine(turn_deg))
    high = np.array([10, 7, 50])  # near the top (k runs superior)
    vol.data[tuple(high)] = 100.0
    point = vol.voxel_to_world(high)
    turned, moved = upside_down(vol, {"L1": point})
    # the bright voxel is where the moved point is, and near the bottom now
    bright = turned.voxel_to_world(np.argwhere(turned.real_data() == 100.0)[0])
    np.testing.assert_allclose(bright, moved["L1"], atol=1e-6)
    centre = vol.voxel_to_world((np.array(SHAPE) - 1) / 2)
    head_foot = vol.affine[:3, 2] / np.linalg.norm(vol.affine[:3, 2])  # the grid's own cranio-caudal axis
    assert (point - centre) @ head_foot > 0 > (moved["L1"] - centre) @ head_foot
    # the same world box: every corner of the turned grid is a corner of the original
    def corners(v: Volume) -> set:
        return {tuple(np.round(v.voxel_to_world(np.array(c) * (np.array(v.shape) - 1)), 6)) for c in np.ndindex(2, 2, 2)}

    before, after = corners(vol), corners(turned)
    assert before == after
    # turned twice is the original image and point
    again, back = upside_down(turned, moved)
    np.testing.assert_allclose(back["L1"], point, atol=1e-6)
    np.testing.assert_allclose(again.voxel_to_world(np.argwhere(again.real_data() == 100.0)[0]), point, atol=1e-6)


def test_sure_unwarned_lists_only_names_at_the_threshold_or_above_in_scans_without_a_warning():
    run = Labeled(conf={"a": {"L4": 0.5, "L5": 0.49}, "b": {"L4": 0.9}, "c": {"L4": 0.2}}, warned={"b"})
    assert sure_unwarned(run) == {"a": ["L4 (0.50)"]}


def test_upside_down_keeps_the_stored_values_and_their_rescale():
    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    vol = Volume(data, _lps_affine(), Rescale(2.0, -5.0))
    turned, _ = upside_down(vol, {})
    assert turned.rescale == vol.rescale and turned.data.dtype == np.int16
    np.testing.assert_array_equal(np.sort(turned.real_data(), axis=None), np.sort(vol.real_data(), axis=None))
    # the voxel at a world point of the original is the mirrored voxel of the turned image
    p = vol.voxel_to_world([3, 4, 5])
    _, moved = upside_down(vol, {"x": p})
    assert turned.real_data()[tuple(np.round(turned.world_to_voxel(moved["x"])).astype(int))] == vol.real_data()[3, 4, 5]


def test_upside_down_warned_counts_the_checks_warnings_and_those_with_no_other_count_code():
    from benchmarks.upside_down import upside_down_warned

    run = Labeled(codes={"a": ["upside-down"], "b": ["upside-down", "low-confidence"], "c": ["upside-down", "level-offset"],
                         "d": ["level-offset"], "e": []})
    assert upside_down_warned(run) == (3, 2)
