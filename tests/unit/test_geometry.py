"""Geometry: reorientation (all 48 axis codes), resampling, LPS<->RAS, Volume checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spinelabel.geometry import (
    RESCALE_BLOCK_VOXELS, Rescale, Volume, apply_affine, distance_outside, distance_to_edge, lps_to_ras, reorient,
    resample_grid,
)

PAIRS = (("L", "R"), ("P", "A"), ("I", "S"))
#: Every permutation of the three axes times every flip: 6 x 8 = 48 codes.
ALL_AXCODES = [
    tuple(pair[flip] for pair, flip in zip(perm, flips))
    for perm in itertools.permutations(PAIRS)
    for flips in itertools.product((0, 1), repeat=3)
]


def _rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    """Rotation about x by ``ax_deg`` then about z by ``az_deg``, shape (3, 3)."""
    a, b = np.deg2rad(ax_deg), np.deg2rad(az_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def _affine(linear: np.ndarray, origin) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = linear
    aff[:3, 3] = origin
    return aff


def _all_indices(shape) -> np.ndarray:
    """Every voxel index of ``shape`` in C order, shape (N, 3)."""
    return np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)


@pytest.fixture(params=["aligned", "oblique"])
def numbered_volume(request) -> Volume:
    """A (4, 5, 6) volume whose voxel values are their flat index; RAS-ish or 7-degree oblique."""
    rot = np.eye(3) if request.param == "aligned" else _rotation(7.0, -5.0)
    affine = _affine(rot @ np.diag([0.8, 1.1, 3.0]), [-12.0, 30.5, 7.25])
    return Volume(np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6), affine)


def test_all_axcodes_are_48_distinct():
    assert len(set(ALL_AXCODES)) == 48


@pytest.mark.parametrize("codes", ALL_AXCODES, ids="".join)
def test_reorient_round_trip_and_world_positions(numbered_volume: Volume, codes):
    vol = numbered_volume
    out = reorient(vol, codes)
    assert out.axcodes == codes
    # every voxel keeps its world position: its value is its old flat index
    new_ijk = _all_indices(out.shape)
    old_ijk = np.stack(np.unravel_index(out.data[tuple(new_ijk.T)], vol.shape), -1)
    np.testing.assert_allclose(out.voxel_to_world(new_ijk), vol.voxel_to_world(old_ijk), atol=1e-9)
    back = reorient(out, vol.axcodes)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)


@pytest.mark.parametrize("codes", ALL_AXCODES, ids="".join)
def test_reorient_keeps_a_marked_voxel_in_place(codes):
    data = np.zeros((5, 6, 7), dtype=np.float32)
    data[1, 4, 2] = 100.0
    vol = Volume(data, _affine(np.diag([-0.9, 1.2, 2.5]) @ _rotation(0, 90), [3.0, -4.0, 5.0]))
    out = reorient(vol, "".join(codes))
    (idx,) = np.argwhere(out.data == 100.0)
    np.testing.assert_allclose(out.voxel_to_world(idx), vol.voxel_to_world([1, 4, 2]), atol=1e-9)
    assert out.axcodes == codes


def _ramp(xyz: np.ndarray) -> np.ndarray:
    """A linear function of RAS position, shape (N,)."""
    return 0.3 * xyz[..., 0] - 0.2 * xyz[..., 1] + 0.5 * xyz[..., 2] + 7.0


@pytest.mark.parametrize("new_spacing", [(2.0, 2.0, 6.0), (0.5, 0.75, 1.5), (1.0, 3.0, 3.0)])
def test_resample_grid_keeps_a_world_ramp(new_spacing):
    affine = _affine(_rotation(12.0, 20.0) @ np.diag([1.0, 1.5, 3.0]), [10.0, -20.0, 5.0])
    shape = (12, 10, 6)
    vol0 = Volume(np.zeros(shape), affine)
    data = _ramp(vol0.voxel_to_world(_all_indices(shape))).reshape(shape).astype(np.float32)
    out = resample_grid(Volume(data, affine), new_spacing)
    np.testing.assert_allclose(out.spacing, new_spacing, atol=1e-12)
    np.testing.assert_allclose(out.affine[:3, 3], affine[:3, 3])  # first voxel centre kept
    directions_in = affine[:3, :3] / vol0.spacing
    np.testing.assert_allclose(out.affine[:3, :3] / out.spacing, directions_in, atol=1e-12)
    expected = _ramp(out.voxel_to_world(_all_indices(out.shape))).reshape(out.shape)
    np.testing.assert_allclose(out.data, expected, atol=1e-3)
    assert out.data.dtype == np.float32


def test_resample_grid_to_same_spacing_is_a_copy():
    vol = Volume(np.random.default_rng(0).random((4, 5, 6)), np.diag([1.0, 2.0, 3.0, 1.0]))
    out = resample_grid(vol, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(out.data, vol.data, rtol=1e-6)
    np.testing.assert_allclose(out.affine, vol.affine)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8])
@pytest.mark.parametrize("new_spacing", [(4.0, 2.0, 2.0), (4.0, 0.8, 0.7)], ids=["resampled", "same-grid"])
def test_resample_grid_of_small_integers_equals_their_float32_version_without_a_float_copy(dtype, new_spacing):
    import tracemalloc

    affine = _affine(_rotation(0.0, 10.0) @ np.diag([4.0, 0.8, 0.7]), [10.0, -20.0, 5.0])
    data = np.random.default_rng(0).integers(0, 250, (6, 120, 140)).astype(dtype)
    expected = resample_grid(Volume(data.astype(np.float32), affine), new_spacing)
    tracemalloc.start()
    out = resample_grid(Volume(data, affine), new_spacing)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data, expected.data)
    np.testing.assert_array_equal(out.affine, expected.affine)
    assert peak < out.data.nbytes + data.size * 4 // 2  # the output and less than half a float32 copy of the input


# ----------------------------------------------------------------------------
# a rescale (stored integers and the map to real-world values) travels with the data

RESCALE = Rescale(1.52747, -3.25)


def _rescaled_and_real(seed: int = 0) -> tuple[Volume, Volume]:
    """(stored uint16 with ``RESCALE``, its real-world float32 values without a map), 7-degree oblique."""
    affine = _affine(_rotation(7.0, -5.0) @ np.diag([3.5, 0.8, 0.7]), [-12.0, 30.5, 7.25])
    stored = np.random.default_rng(seed).integers(0, 4096, (6, 40, 50)).astype(np.uint16)
    real = (stored * RESCALE.slope + RESCALE.intercept).astype(np.float32)
    return Volume(stored, affine, RESCALE), Volume(real, affine)


def test_real_data_applies_the_map_in_float64_in_blocks():
    stored = np.random.default_rng(1).integers(0, 65536, (3, 700, 900)).astype(np.uint16)  # > one block
    assert stored.size > RESCALE_BLOCK_VOXELS
    vol = Volume(stored, np.eye(4), RESCALE)
    expected = (stored.astype(np.float64) * RESCALE.slope + RESCALE.intercept).astype(np.float32)
    np.testing.assert_array_equal(vol.real_data(), expected)
    np.testing.assert_array_equal(vol.real_data(1), expected[1])
    np.testing.assert_array_equal(vol.real_data((slice(None), 5)), expected[:, 5])
    assert vol.real_data().flags.c_contiguous and vol.data.dtype == np.uint16  # the stored data are untouched
    plain = Volume(stored, np.eye(4))
    np.testing.assert_array_equal(plain.real_data(), stored.astype(np.float32))


@pytest.mark.parametrize("slope, intercept", [(0.0, 1.0), (-1.5, 0.0), (np.nan, 0.0), (1.0, np.inf)])
def test_a_rescale_needs_a_finite_positive_slope(slope, intercept):
    with pytest.raises(ValueError, match="finite positive slope"):
        Rescale(slope, intercept)


@pytest.mark.parametrize("codes", ["RIP", "LAS", "PIR", "SPL"])
@pytest.mark.parametrize("copy", [True, False])
def test_a_reoriented_volume_keeps_its_map(codes, copy):
    vol, real = _rescaled_and_real()
    out, expected = reorient(vol, codes, copy=copy), reorient(real, codes)
    assert out.rescale == RESCALE and out.axcodes == tuple(codes) and out.data.dtype == np.uint16
    np.testing.assert_array_equal(out.affine, expected.affine)
    np.testing.assert_array_equal(out.real_data(), expected.data)
    np.testing.assert_array_equal(reorient(out, vol.axcodes).real_data(), real.data)


@pytest.mark.parametrize("new_spacing", [(4.0, 2.0, 2.0), (3.5, 0.8, 0.7)], ids=["resampled", "same-grid"])
def test_resampling_a_volume_with_a_map_gives_real_values(new_spacing):
    vol, real = _rescaled_and_real()
    out, expected = resample_grid(vol, new_spacing), resample_grid(real, new_spacing)
    assert out.rescale is None and out.data.dtype == np.float32
    np.testing.assert_array_equal(out.affine, expected.affine)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-6, atol=1e-3)


def test_lps_to_ras_points():
    np.testing.assert_allclose(lps_to_ras([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    pts = np.array([[1.0, -2.0, 3.0], [0.0, 5.5, -1.0]])
    np.testing.assert_allclose(lps_to_ras(pts), [[-1.0, 2.0, 3.0], [0.0, -5.5, -1.0]])
    np.testing.assert_allclose(lps_to_ras(lps_to_ras(pts)), pts)


def test_lps_to_ras_matrix_maps_points_consistently():
    affine_lps = _affine(_rotation(10.0, 30.0) @ np.diag([0.5, 0.6, 4.0]), [100.0, -50.0, 20.0])
    affine_ras = lps_to_ras(affine_lps)
    ijk = np.array([[0, 0, 0], [3, 4, 5], [10.5, -2.0, 1.0]])
    np.testing.assert_allclose(apply_affine(affine_ras, ijk), lps_to_ras(apply_affine(affine_lps, ijk)))
    np.testing.assert_allclose(lps_to_ras(affine_ras), affine_lps)
    np.testing.assert_array_equal(affine_ras[3], [0, 0, 0, 1])


def test_lps_to_ras_rejects_other_shapes():
    with pytest.raises(ValueError):
        lps_to_ras(np.zeros((3, 4)))


def test_world_to_voxel_inverts_voxel_to_world():
    vol = Volume(np.zeros((3, 4, 5)), _affine(_rotation(20, 40) @ np.diag([1.0, 2.0, 3.0]), [1, 2, 3]))
    ijk = np.array([[0.0, 1.0, 2.0], [2.5, 3.0, 4.0]])
    np.testing.assert_allclose(vol.world_to_voxel(vol.voxel_to_world(ijk)), ijk, atol=1e-12)


@pytest.mark.parametrize("shape", [(10, 12), (3, 4, 5, 2), (7,)])
def test_volume_rejects_non_3d_data(shape):
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros(shape), np.eye(4))


@pytest.mark.parametrize(
    "affine",
    [np.diag([1.0, 0.0, 1.0, 1.0]), _affine(np.array([[1.0, 2.0, 0], [2.0, 4.0, 0], [0, 0, 1]]), [0, 0, 0])],
    ids=["zero-voxel-size", "collinear-axes"],
)
def test_volume_rejects_singular_affines(affine):
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((3, 3, 3)), affine)


def test_volume_rejects_non_finite_or_misshapen_affines():
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite 4x4"):
        Volume(np.zeros((3, 3, 3)), bad)
    with pytest.raises(ValueError, match="finite 4x4"):
        Volume(np.zeros((3, 3, 3)), np.eye(3))


def test_distance_to_edge_in_a_ras_box():
    """A 10 x 20 x 30 box of 2 mm voxels from the origin: voxel extents run -1 .. 19 / 39 / 59 mm."""
    aff = _affine(np.diag([2.0, 2.0, 2.0]), (0.0, 0.0, 0.0))
    pts = np.array([[4.0, 10.0, 20.0], [4.0, 10.0, 58.0], [4.0, 10.0, 80.0]])
    up = distance_to_edge(aff, (10, 20, 30), pts, (0.0, 0.0, 1.0))
    down = distance_to_edge(aff, (10, 20, 30), pts, (0.0, 0.0, -5.0))  # any length of direction
    np.testing.assert_allclose(up, [39.0, 1.0, 0.0])
    np.testing.assert_allclose(down, [21.0, 59.0, 0.0])  # the third point lies outside
    diagonal = distance_to_edge(aff, (10, 20, 30), pts[:1], (1.0, 0.0, 1.0))
    np.testing.assert_allclose(diagonal, [15.0 * np.sqrt(2.0)])  # leaves through x = 19 first


@pytest.mark.parametrize("codes", ALL_AXCODES[::5])
def test_distance_to_edge_is_the_same_in_every_voxel_order(codes):
    """Reorienting only permutes and flips the voxels, so the image box in the world is unchanged."""
    aff = _affine(_rotation(10.0, -20.0) @ np.diag([0.7, 0.9, 3.5]), (-40.0, 25.0, -60.0))
    vol = Volume(np.zeros((40, 50, 12)), aff)
    pts = vol.voxel_to_world(np.array([[20.0, 25.0, 6.0], [3.0, 40.0, 1.0]]))
    other = reorient(vol, codes)
    for direction in ((0.0, 0.0, 1.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)):
        np.testing.assert_allclose(
            distance_to_edge(other.affine, other.shape, pts, direction),
            distance_to_edge(vol.affine, vol.shape, pts, direction),
            atol=1e-9,
        )


def test_distance_outside_is_measured_in_mm_along_each_voxel_axis_of_a_turned_grid():
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # voxel i runs along world y
    affine = np.eye(4)
    affine[:3, :3] = turn @ np.diag([2.0, 1.0, 3.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    shape = (5, 6, 7)
    inside = apply_affine(affine, [[0, 0, 0], [4.5, 5.5, 6.5], [2, 3, 3]])
    beyond_i = apply_affine(affine, [[7.5, 2, 2]])  # 3 voxels of 2 mm past the last voxel's edge
    corner = apply_affine(affine, [[-3.5, 2, 9.5]])  # 3 voxels (6 mm) and 3 slices (9 mm) outside
    d = distance_outside(affine, shape, np.concatenate([inside, beyond_i, corner]))
    np.testing.assert_allclose(d, [0.0, 0.0, 0.0, 6.0, np.hypot(6.0, 9.0)])


def test_turned_head_foot_mirrors_the_data_along_the_head_foot_axis_under_the_same_world_box():
    from spinelabel.geometry import turned_head_foot

    affine = np.array([[0.0, 0.0, -1.5, 30.0], [-2.0, 0.0, 0.0, 20.0], [0.0, 3.0, 0.0, -60.0], [0, 0, 0, 1]])  # P, S, L
    data = np.zeros((6, 8, 5), np.float32)
    data[1, 6, 2] = 7.0  # high up (axis 1 runs superior)
    vol = Volume(data, affine)
    turned = turned_head_foot(vol)
    canon = reorient(vol, "RIP")
    np.testing.assert_allclose(turned.affine, canon.affine)  # the grid is the RIP grid of the same box
    assert turned.shape == canon.shape
    np.testing.assert_array_equal(turned.data, canon.data[:, ::-1])
    before, after = vol.voxel_to_world([1, 6, 2]), turned.voxel_to_world(np.argwhere(turned.data == 7.0)[0])
    # the bright voxel moved head-foot only: same left-right and front-back, superior <-> inferior about the centre
    centre_z = vol.voxel_to_world((np.array(vol.shape) - 1) / 2)[2]
    np.testing.assert_allclose(after[:2], before[:2])
    np.testing.assert_allclose(after[2] - centre_z, -(before[2] - centre_z))
    np.testing.assert_array_equal(turned_head_foot(turned).data, canon.data)  # turned twice: the upright image
