"""What a DICOM series needs before it is a regular image: its missing slices and its polarity.

- **Missing slices.** A series that lost a file in transfer has one step
  twice as long as the others. Its slices lie on a regular grid with a hole,
  so they are placed at their own grid index and each missing plane is
  interpolated between its two neighbours: every slice read keeps its true
  position (a grid of the median step alone would move every slice beyond the
  hole by one step).
- **MONOCHROME1.** The lowest value is shown white (PS3.3 C.7.6.3.1.2), so
  the values are inverted about their range: what the network sees has the
  polarity of the displayed image, as in a MONOCHROME2 series.

Pure functions over arrays; :mod:`spinelabel.io.dicom` calls them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..warning_codes import LabelWarning

__all__ = ["fill_missing", "grid_index", "invert_monochrome1", "missing_slices_warning"]

#: Photometric interpretation whose lowest value is displayed white.
MONOCHROME1 = "MONOCHROME1"


def grid_index(steps: np.ndarray, tolerance: float) -> np.ndarray | None:
    """Each sorted slice's index on the regular grid of the median step, or None.

    Parameters
    ----------
    steps : ndarray, shape (n - 1,)
        Distances (mm) between consecutive slices along the normal, all > 0.
    tolerance : float
        Largest deviation of a step from a whole number of median steps, as a
        fraction of the median step.

    Returns
    -------
    ndarray of int, shape (n,), or None
        Grid index of each slice (0 for the first; consecutive slices differ
        by the whole number of median steps between them). None when some
        step is not within ``tolerance`` of a whole number of median steps:
        the grid is irregular, not holed.
    """
    median = float(np.median(steps))
    whole = np.maximum(np.rint(steps / median), 1.0)
    if np.any(np.abs(steps - whole * median) > tolerance * median):
        return None
    return np.concatenate([[0], np.cumsum(whole)]).astype(int)


def fill_missing(data: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Planes read at grid positions ``index``, with every missing plane interpolated between its neighbours.

    Parameters
    ----------
    data : ndarray, shape (I, J, n)
        The slices read, in grid order (any numeric type).
    index : ndarray of int, shape (n,)
        Increasing grid index of each plane (:func:`grid_index`), from 0.

    Returns
    -------
    ndarray, shape (I, J, index[-1] + 1), the type of ``data``
        ``data`` itself when nothing is missing; otherwise each missing plane
        linearly interpolated between the nearest planes read on either side
        (rounded for integer types: it lies between two values of the type).
    """
    size = int(index[-1]) + 1
    if size == data.shape[2]:
        return data
    out = np.empty(data.shape[:2] + (size,), dtype=data.dtype)
    out[:, :, index] = data
    for k in range(len(index) - 1):
        lo, hi = int(index[k]), int(index[k + 1])
        for j in range(lo + 1, hi):
            w = (j - lo) / (hi - lo)
            plane = (1.0 - w) * data[:, :, k].astype(np.float64) + w * data[:, :, k + 1]
            out[:, :, j] = np.rint(plane) if out.dtype.kind in "iu" else plane
    return out


def missing_slices_warning(index: np.ndarray, step_mm: float) -> LabelWarning | None:
    """The warning for a grid with holes (None without): how many slices are missing, and where."""
    gaps = np.flatnonzero(np.diff(index) > 1)
    if gaps.size == 0:
        return None
    missing = int(index[-1]) + 1 - len(index)
    where = ", ".join(f"{(index[g] + 1) * step_mm:.3g}" for g in gaps[:3]) + (" ..." if gaps.size > 3 else "")
    return LabelWarning(
        "missing-slices",
        f"{missing} slice(s) missing from the series (at {where} mm from the first slice): filled in by "
        f"interpolating their neighbours, so that every slice read keeps its position",
    )


def invert_monochrome1(data: np.ndarray, photometric: Sequence[str], where: str) -> np.ndarray:
    """``data`` (I, J, n) in displayed polarity: MONOCHROME1 values inverted about their range, in place.

    Parameters
    ----------
    data : ndarray, shape (I, J, n)
        The series' values (stored integers or real values).
    photometric : sequence of str
        Each slice's PhotometricInterpretation (as stored; "" where absent).
    where : str
        The series, for the message.

    Raises
    ------
    InputError
        Some slices are MONOCHROME1 and others are not.
    """
    kinds = {p.strip().upper() for p in photometric}
    if MONOCHROME1 not in kinds:
        return data
    if len(kinds) > 1:
        raise InputError(f"{where}: slices differ in PhotometricInterpretation ({', '.join(sorted(kinds))})")
    lo, hi = data.min(), data.max()
    for k in range(data.shape[2]):  # one plane at a time: hi - (v - lo) stays within [lo, hi] in the array's type
        plane = data[:, :, k]
        data[:, :, k] = (hi.astype(np.float64) - (plane.astype(np.float64) - lo)).astype(data.dtype)
    return data
