"""The anatomy changes of benchmarks.robustness on a small synthetic image with known points and affine."""

import numpy as np
import pytest

from benchmarks.robustness import (
    LISTHESIS_MM,
    NARROW_FRACTION,
    SCOLIOSIS_APEX_MM,
    SLAB_SPACING_MM,
    listhesis,
    narrow_disc,
    scoliosis,
    slab_weights,
    thick_slab,
    turn_below,
)
from spinelabel.geometry import Volume

SPACING = 2.0  # mm, every axis
SHAPE = (40, 30, 130)  # LPS order: x to the left, y posterior, z superior
LEVELS = {"L1": 200.0, "L2": 164.0, "L3": 128.0, "L4": 92.0, "L5": 56.0, "S1": 20.0}  # z (mm) of each body


def _affine() -> np.ndarray:
    """LPS voxel order (not the benchmark's RIP frame), in RAS world mm."""
    return np.array([[-SPACING, 0, 0, 78.0], [0, -SPACING, 0, 58.0], [0, 0, SPACING, 0.0], [0, 0, 0, 1]])


def _spine(marked: str) -> tuple[Volume, dict[str, np.ndarray]]:
    """A dim column with a bright 6 mm cube on the body ``marked``; the points (RAS mm) of every body."""
    points = {k: np.array([40.0, 30.0, z]) for k, z in LEVELS.items()}
    vol = Volume(np.full(SHAPE, 10.0, np.float32), _affine())
    i, j, k = np.round(vol.world_to_voxel(points[marked])).astype(int)
    vol.data[i - 1 : i + 2, j - 1 : j + 2, k - 1 : k + 2] = 100.0
    return vol, points


def _bright_centre(vol: Volume) -> np.ndarray:
    """World centre (mm) of the bright cube: the mean voxel weighted by the brightness above the column's."""
    weight = np.clip(vol.real_data() - 10.0, 0.0, None)
    ijk = (np.argwhere(weight >= 0.0) * weight.reshape(-1, 1)).sum(axis=0) / weight.sum()
    return vol.voxel_to_world(ijk)


def test_scoliosis_moves_the_apex_sideways_and_its_point_with_it():
    vol, points = _spine("L3")
    out, moved = scoliosis(vol, points)
    centre = _bright_centre(out)
    np.testing.assert_allclose(centre, moved["L3"], atol=0.5)  # the point follows the body
    np.testing.assert_allclose(moved["L3"] - points["L3"], [SCOLIOSIS_APEX_MM, 0, 0], atol=0.5)  # apex at L3: all of it
    for level in ("L1", "L5"):  # a half sine over six spacings, L1 and L5 one spacing in: sin(pi / 6) of it
        np.testing.assert_allclose(abs(moved[level][0] - points[level][0]), SCOLIOSIS_APEX_MM / 2, atol=0.5)
    np.testing.assert_allclose(moved["S1"], points["S1"], atol=1e-6)  # outside the curve: nothing moves


def test_scoliosis_keeps_the_world_frame():
    vol, points = _spine("L1")
    out, moved = scoliosis(vol, points)
    np.testing.assert_allclose(_bright_centre(out), moved["L1"], atol=0.5)
    assert out.shape == (SHAPE[0], SHAPE[2], SHAPE[1])  # the RIP frame of the benchmark
    corner = out.voxel_to_world(np.zeros(3))
    assert vol.world_to_voxel(corner) == pytest.approx([SHAPE[0] - 1, 0, SHAPE[2] - 1])


@pytest.mark.parametrize("marked, moves", [("S1", True), ("L5", False)])
def test_listhesis_moves_the_sacrum_back_and_leaves_l5(marked: str, moves: bool):
    vol, points = _spine(marked)
    out, moved = listhesis(vol, points)
    centre = _bright_centre(out)
    expected = points[marked] + (np.array([0, -LISTHESIS_MM, 0]) if moves else 0.0)  # posterior is -y in RAS
    np.testing.assert_allclose(centre, expected, atol=0.5)
    np.testing.assert_allclose(moved[marked], expected, atol=0.5)


@pytest.mark.parametrize(("slab", "step", "expected"), [
    (4.0, 2.0, [0.25, 0.5, 0.25]),
    (4.0, 1.0, [0.125, 0.25, 0.25, 0.25, 0.125]),
    (3.0, 1.0, [1 / 3, 1 / 3, 1 / 3]),
    (4.0, 3.0, [1 / 8, 3 / 4, 1 / 8]),
    (1.0, 2.0, [1.0]),
])  # fmt: skip
def test_slab_weights_are_the_share_of_each_slice_inside_a_centred_slab(slab, step, expected):
    np.testing.assert_allclose(slab_weights(slab, step), expected)


def test_thick_slab_averages_each_slice_over_its_slab(tmp_path):
    vol, points = _spine("L3")
    vol.data[:] = 10.0
    i = int(round(vol.world_to_voxel(points["L3"])[0]))
    vol.data[i] = 100.0  # a 2 mm sagittal sheet, thinner than the 4 mm slab
    out, kept = thick_slab(vol, points, tmp_path, "case")
    assert kept is points
    # slices 4.4 mm apart across the body (R-L), pixels of 0.7 mm in the sagittal plane
    across = next(k for k, code in enumerate(out.axcodes) if code in "RL")
    assert out.spacing[across] == pytest.approx(SLAB_SPACING_MM[2], abs=1e-3)
    np.testing.assert_allclose(np.delete(out.spacing, across), SLAB_SPACING_MM[:2], atol=1e-3)
    data = out.real_data()
    assert 10.0 < data.max() < 100.0 * 0.75  # the sheet shares its slab with darker tissue
    # and the brightest slice of the new grid is the one through the sheet: data and affine agree
    brightest = int(np.argmax(data.mean(axis=tuple(k for k in range(3) if k != across))))
    assert brightest == int(round(out.world_to_voxel(points["L3"])[across]))


@pytest.mark.parametrize("deg", [-20.0, 20.0])
def test_turn_below_swings_the_caudal_part_about_the_disc(deg: float):
    vol, points = _spine("L5")
    out, moved = turn_below(vol, points, "L4", "L3", deg)
    hinge = points["L4"] + 0.55 * (points["L4"] - points["L3"])  # the L4/L5 disc, 0.55 of a spacing below L4
    arm = np.linalg.norm(points["L5"] - hinge)
    expected = hinge + arm * np.array([0.0, -np.sin(np.radians(deg)), -np.cos(np.radians(deg))])  # +deg: backwards
    np.testing.assert_allclose(_bright_centre(out), expected, atol=0.5)
    np.testing.assert_allclose(moved["L5"], expected, atol=0.5)
    np.testing.assert_allclose(moved["L3"], points["L3"])  # above the disc: nothing moves


def test_narrow_disc_moves_the_spine_below_up_by_its_share_of_the_step():
    vol, points = _spine("L5")
    out, moved = narrow_disc(vol, points, "L4", "L5")
    step = points["L4"][2] - points["L5"][2]
    expected = points["L5"] + np.array([0.0, 0.0, NARROW_FRACTION * step])  # up: +z
    np.testing.assert_allclose(_bright_centre(out), expected, atol=0.5)
    np.testing.assert_allclose(moved["L5"], expected, atol=0.5)
    np.testing.assert_allclose(moved["S1"], points["S1"] + expected - points["L5"], atol=0.5)
    np.testing.assert_allclose(moved["L4"], points["L4"])
