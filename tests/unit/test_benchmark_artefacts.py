"""The artefacts of benchmarks.robustness (metal hardware, motion ghosts) on small synthetic images with known affines."""

import numpy as np
import pytest

from benchmarks.robustness import (
    GHOST_AMPLITUDE, GHOST_SHIFT_FRACTION, METAL, METAL_SEVERE, SCREW_ENTRY_MM, SCREW_TIP_MM, VOID_SIGNAL, ghosting, metal,
)
from spinelabel.geometry import Volume, reorient


def _uniform(affine: np.ndarray, shape=(60, 90, 90)) -> tuple[Volume, dict[str, np.ndarray]]:
    """Uniform tissue (100) with L4 and L5 at the middle of the image and 35 mm below it."""
    vol = Volume(np.full(shape, 100.0, np.float32), affine)
    centre = vol.voxel_to_world((np.array(shape) - 1) / 2.0)
    return vol, {"L4": centre + [0.0, 0.0, 17.5], "L5": centre - [0.0, 0.0, 17.5]}


@pytest.mark.parametrize("artefact", [METAL, METAL_SEVERE])
def test_metal_voids_the_screw_path_and_brightens_its_caudal_rim(artefact):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-30.0, -60.0, -45.0]
    vol, points = _uniform(affine)
    out, kept = metal(vol, points, artefact)
    assert kept is points and np.array_equal(out.affine, vol.affine)
    c = points["L4"]
    mid = c + np.array([SCREW_TIP_MM[0] + SCREW_ENTRY_MM[0], SCREW_TIP_MM[1] + SCREW_ENTRY_MM[1], 0.0]) / 2.0
    at = lambda p: float(out.data[tuple(np.round(out.world_to_voxel(p)).astype(int))])  # noqa: E731
    assert at(mid) == pytest.approx(100.0 * VOID_SIGNAL)  # on the right screw's axis
    below = mid - [0.0, 0.0, artefact.screw_void_mm + artefact.rim_mm / 2.0]
    above = mid + [0.0, 0.0, artefact.screw_void_mm + artefact.rim_mm / 2.0]
    assert at(below) == pytest.approx(artefact.rim_gain * 100.0) and at(above) == 100.0  # the rim: caudal side only
    assert at(c) == 100.0  # the body centre, between the two screws, keeps its signal
    rod = (c + points["L5"]) / 2.0 + [SCREW_ENTRY_MM[0], SCREW_ENTRY_MM[1], 0.0]
    assert at(rod) == pytest.approx(100.0 * VOID_SIGNAL)  # the rod between the screw heads


def test_metal_follows_the_world_frame_in_any_voxel_order():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-30.0, -60.0, -45.0]
    vol, points = _uniform(affine)
    ras = metal(vol, points, METAL)[0]
    other = reorient(vol, "PIL")
    pil = metal(other, points, METAL)[0]
    assert np.array_equal(pil.affine, other.affine)
    assert np.allclose(reorient(pil, "RAS").data, ras.data)


def test_ghosting_adds_shifted_copies_along_the_head_foot_axis():
    data = np.zeros((8, 8, 100), np.float32)  # RAS: axis 2 runs head-ward
    data[:, :, 50] = 1000.0
    vol = Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]))
    out, kept = ghosting(vol, {})
    back = reorient(out, "RAS")
    assert np.allclose(back.affine, vol.affine) and kept == {}
    profile = back.data[4, 4]
    near = int(round(GHOST_SHIFT_FRACTION * 100))
    assert profile[50] == pytest.approx(1000.0)
    assert profile[50 + near] == pytest.approx(1000.0 * GHOST_AMPLITUDE)
    assert profile[50 - near] == pytest.approx(1000.0 * GHOST_AMPLITUDE)
    assert profile[(50 + 2 * near) % 100] == pytest.approx(1000.0 * GHOST_AMPLITUDE / 2)  # wrapped, as in MR
    assert np.count_nonzero(profile) == 5
