"""The overlay picture: readable size, the labels drawn where the vertebrae are, PNG or JPEG."""

import numpy as np
import pytest
from PIL import Image

from spinelabel.geometry import Volume
from spinelabel.io.outputs import OVERLAY_MAX_SIZE, OVERLAY_MIN_SIZE, render_overlay
from spinelabel.pipeline import LabelResult, Vertebra


def _scan(shape=(30, 200, 120), spacing=(4.0, 1.0, 1.0)) -> tuple[Volume, LabelResult]:
    """An (R, I, P)-ordered volume with one bright vertebra, labeled L3 at its centre."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, -1, 0]]) * np.array(spacing)  # R, I, P axes
    data = np.zeros(shape, np.float32)
    data[:, 90:110, 50:70] = 1.0
    data[:, 0, 0] = 0.5  # some contrast elsewhere
    vol = Volume(data, affine)
    centre = vol.voxel_to_world([shape[0] / 2, 100, 60])
    result = LabelResult("lumbar", "m", "0", [Vertebra("L3", centre, np.array([15.0, 100, 60]), 0.9)])
    return vol, result


@pytest.mark.parametrize("suffix,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG")])
def test_overlay_is_at_least_the_minimum_size_in_the_format_of_its_suffix(tmp_path, suffix, fmt):
    vol, result = _scan()
    out = tmp_path / f"o{suffix}"
    render_overlay(vol, result, out)
    with Image.open(out) as im:
        assert im.format == fmt
        assert max(im.size) == OVERLAY_MIN_SIZE  # a 200 mm field of view at 1 mm pixels is drawn larger
        assert im.size[1] > im.size[0]  # rows run cranio-caudally: taller than wide
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # the label's green dot is drawn at the vertebra: 100 of 200 rows down, 60 of 120 columns across
    y, x = rgb.shape[0] * 100 // 200, rgb.shape[1] * 60 // 120
    patch = rgb[y - 3 : y + 4, x - 3 : x + 4]
    assert (patch[..., 1] > 150).any() and (patch[..., 0] < 120).any()


def test_a_fine_grid_is_capped_at_the_maximum_size(tmp_path):
    vol, result = _scan(shape=(8, 1500, 900), spacing=(4.0, 0.2, 0.2))
    render_overlay(vol, result, tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        assert max(im.size) == OVERLAY_MAX_SIZE


def test_grey_levels_mapped_in_row_blocks_equal_the_whole_slice_at_once():
    from spinelabel.io.outputs import GRAY_ROWS, _gray_bytes
    from spinelabel.preprocessing import normalize_intensity

    img = np.random.default_rng(1).gamma(2.0, 100.0, (3 * GRAY_ROWS + 5, 70)).astype(np.float32)
    img[3, 4] = np.nan
    whole = (np.clip(normalize_intensity(img), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(_gray_bytes(img), whole)
    np.testing.assert_array_equal(_gray_bytes(np.ones((5, 5), np.float32)), np.zeros((5, 5), np.uint8))
