import numpy as np
import pytest

from spinelabel.errors import GeometryError, InputError
from spinelabel.geometry import Volume, reorient
from spinelabel.preprocessing import FrameSpec, check_sagittal, normalize_intensity, to_model_frame


def _sagittal_volume(
    axcodes: str, spacing=(0.7, 0.7, 3.5), centre=(-3.0, -12.0, -5.0), shape=(20, 150, 120)
) -> tuple[Volume, np.ndarray]:
    """A sagittal volume (thick R slices) holding a Gaussian blob, reoriented to ``axcodes``.

    Returns the volume and the world position (RAS mm) of the blob centre.
    """
    # shape: R (thick slices), I, P
    lin = np.array([[spacing[2], 0, 0], [0, 0, -spacing[1]], [0, -spacing[0], 0]])  # columns: R, I, P
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = [-30.0, 10.0, 40.0]
    centre = np.asarray(centre, float)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ lin.T + affine[:3, 3]
    sigma = np.array([6.0, 4.0, 4.0])
    data = np.exp(-0.5 * (((world - centre) / sigma) ** 2).sum(1)).reshape(shape).astype(np.float32)
    return reorient(Volume(data, affine), axcodes), centre


def _centroid_world(vol: Volume) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij"), -1).reshape(-1, 3)
    w = vol.data.reshape(-1)
    return vol.voxel_to_world((ijk * w[:, None]).sum(0) / w.sum())


@pytest.mark.parametrize("codes", ["RIP", "PIR", "LPS", "ASL", "IRA", "SAR"])
def test_model_frame_keeps_world_positions(codes):
    vol, centre = _sagittal_volume(codes)
    np.testing.assert_allclose(_centroid_world(vol), centre, atol=0.2)
    frame = to_model_frame(vol, FrameSpec(inplane_spacing_mm=2.0, slice_step_mm=2.0))
    assert frame.axcodes == ("R", "I", "P")
    np.testing.assert_allclose(frame.spacing, [3.5, 2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(_centroid_world(frame), centre, atol=0.3)


@pytest.mark.parametrize("codes", ["RIP", "LPS"])
def test_model_frame_reduces_fine_slice_step(codes):
    """1 mm slices become 2 mm: the spacing, the extent and the blob's world position all follow."""
    # 40 slices of 1 mm (R -30..9 mm): the blob (sd 6 mm) lies well inside
    vol, centre = _sagittal_volume(codes, spacing=(1.0, 1.0, 1.0), centre=(-10.0, -40.0, -20.0), shape=(40, 150, 120))
    frame = to_model_frame(vol, FrameSpec(2.0, 2.0))
    assert frame.axcodes == ("R", "I", "P")
    np.testing.assert_allclose(frame.spacing, [2.0, 2.0, 2.0])
    # the same field of view (40, 150, 120 mm) on a grid half as fine, to within a voxel per axis
    assert all(abs(n - m / 2) <= 1 for n, m in zip(frame.shape, (40, 150, 120))), frame.shape
    np.testing.assert_allclose(_centroid_world(frame), centre, atol=0.3)


def test_axial_thick_slices_rejected():
    data = np.zeros((200, 200, 20), np.float32)
    axial = Volume(data, np.diag([0.8, 0.8, 4.0, 1.0]))  # RAS, thick along S
    with pytest.raises(GeometryError, match="not a sagittal series: slices are axial"):
        check_sagittal(axial)


def test_2d_rejected():
    with pytest.raises(GeometryError, match="2D"):
        check_sagittal(Volume(np.zeros((1, 100, 100)), np.eye(4)))


def test_normalize_robust_and_errors():
    rng = np.random.default_rng(0)
    data = rng.normal(1000, 100, (10, 50, 50)).astype(np.float32)
    data[0, 0, 0] = 1e6  # a hot pixel must not set the scale
    out = normalize_intensity(data)
    assert 0.3 < np.median(out) < 0.7 and out.max() <= 1.5
    with pytest.raises(InputError, match="constant"):
        normalize_intensity(np.ones((5, 5, 5)))
    mask = np.zeros((20, 20, 20))
    mask[5:15, 5:15, 5:15] = 1  # a binary mask given for the image
    with pytest.raises(InputError, match="two values only: a mask or label image"):
        normalize_intensity(mask)
    with pytest.raises(InputError, match="no finite"):
        normalize_intensity(np.full((5, 5, 5), np.nan))
