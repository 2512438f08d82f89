"""The DICOM series repairs as pure functions: the slice grid with holes, its filling, MONOCHROME1."""

from __future__ import annotations

import numpy as np
import pytest

from spinelabel.errors import InputError
from spinelabel.io.dicom_repair import fill_missing, grid_index, invert_monochrome1, missing_slices_warning


@pytest.mark.parametrize(("steps", "index"), [
    ([4.0, 4.0, 4.0], [0, 1, 2, 3]),
    ([4.0, 8.1, 4.0, 3.9], [0, 1, 3, 4, 5]),  # one slice missing, positions within 10 % of the step
    ([4.0, 12.0, 4.0, 8.0, 4.0], [0, 1, 4, 5, 7, 8]),
    ([4.0, 5.5, 4.0], None),  # 1.4 steps: an irregular grid, not a hole
    ([4.0, 6.0, 4.0, 4.0], None),  # 1.5 steps
])  # fmt: skip
def test_grid_index(steps, index):
    got = grid_index(np.array(steps), 0.10)
    assert (got is None and index is None) or got.tolist() == index


def test_fill_missing_interpolates_between_neighbours_in_the_array_type():
    data = np.stack([np.full((2, 3), v, np.uint8) for v in (10, 20, 200)], axis=2)
    out = fill_missing(data, np.array([0, 1, 4]))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 5)
    assert out[0, 0].tolist() == [10, 20, 80, 140, 200]
    assert fill_missing(data, np.array([0, 1, 2])) is data  # nothing missing: the array itself


def test_missing_slices_warning_says_how_many_and_where():
    assert missing_slices_warning(np.array([0, 1, 2]), 4.0) is None
    w = missing_slices_warning(np.array([0, 1, 4, 5]), 4.0)
    assert w is not None and w.code == "missing-slices"
    assert w.text.startswith("2 slice(s) missing from the series (at 8 mm from the first slice)")


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
def test_monochrome1_is_inverted_about_its_range(dtype):
    data = np.array([[[-5, 0], [100, 32767]]], dtype=np.int64).clip(np.iinfo(np.int16).min if dtype != np.uint16 else 0)
    data = data.astype(dtype)
    lo, hi = data.min(), data.max()
    out = invert_monochrome1(data.copy(), ["MONOCHROME1"] * 2, "series 1")
    np.testing.assert_array_equal(out.astype(np.float64), hi + lo - data.astype(np.float64))
    same = invert_monochrome1(data.copy(), ["MONOCHROME2", ""], "series 1")
    np.testing.assert_array_equal(same, data)


def test_mixed_monochrome_is_refused():
    with pytest.raises(InputError, match="series 1: slices differ in PhotometricInterpretation"):
        invert_monochrome1(np.zeros((2, 2, 2)), ["MONOCHROME1", "MONOCHROME2"], "series 1")
