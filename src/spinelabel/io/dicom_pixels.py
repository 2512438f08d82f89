"""DICOM pixel data: one series' slices into one array, within the size limits.

Used by :mod:`spinelabel.io.dicom` once the slices are ordered; everything
about geometry and series choice stays there. The array is indexed
``[column, row, slice]`` (see that module's conventions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, one_line
from ..geometry import Rescale
from ..limits import check_image_size


@dataclass(frozen=True)
class DicomSlice:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    path: Path
    dataset: Any  # pydicom Dataset (header; pixel data deferred)
    frame: int | None  # 0-based frame index, None for single-frame files
    ipp: np.ndarray  # (3,) ImagePositionPatient, LPS mm
    iop: np.ndarray  # (6,) row cosine then column cosine
    pixel_spacing: np.ndarray  # (2,) [row spacing, column spacing] mm
    size: tuple[int, int]  # (Rows, Columns)
    slope: float
    intercept: float


#: The elements that hold an image's pixels.
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def shown(value: Any) -> str:
    """A tag value for a message: repr, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: A value length of 0xFFFFFFFF: encapsulated (compressed) pixel data, whose size the header does not say.
_UNDEFINED_LENGTH = 0xFFFFFFFF


def check_sizes(ordered: list[DicomSlice], affine_lps: np.ndarray, where: str, n_slices: int) -> None:
    """InputError for a series beyond the size limits or pixel data shorter than the headers say.

    Everything here comes from the headers (pixel data are deferred), so a
    header claiming 60000 x 60000 pixels is refused before anything is allocated.
    """
    rows, columns = ordered[0].size
    check_image_size((columns, rows, n_slices), np.linalg.norm(affine_lps[:3, :3], axis=0), where)
    for path, ds in {s.path: s.dataset for s in ordered}.items():
        stored = _pixel_data_length(ds)
        needed = _native_pixel_bytes(ds, rows, columns)
        if stored is not None and needed is not None and stored < needed:
            raise InputError(
                f"corrupt DICOM file {path}: {stored} bytes of pixel data, but Rows x Columns "
                f"({rows} x {columns}) need {needed}"
            )


def _pixel_data_length(ds: Any) -> int | None:
    """Bytes of native pixel data as stored; None when unknown (compressed or absent)."""
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            element = ds.get_item(keyword, keep_deferred=True)  # the length, without reading the pixels
            length = getattr(element, "length", None)
            if length is None and getattr(element, "value", None) is not None:
                length = len(element.value)
            return None if length in (None, _UNDEFINED_LENGTH) else int(length)
    return None


def _native_pixel_bytes(ds: Any, rows: int, columns: int) -> int | None:
    """Bytes that uncompressed pixel data of this header need (None when the header cannot say)."""
    try:
        bits = int(ds.get("BitsAllocated", 16) or 16)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None
    if bits < 1:
        return None
    return (rows * columns * frames * bits + 7) // 8


def _transfer_syntax(ds: Any) -> tuple[str, bool]:
    """(name, is compressed) of a file's TransferSyntaxUID; a malformed UID is ('UID ...', False)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return "no TransferSyntaxUID", False
    try:
        return str(syntax.name), bool(syntax.is_compressed)
    except Exception:  # pydicom raises ValueError for a UID that is not a transfer syntax
        return f"unknown transfer syntax {shown(str(syntax))}", False


def read_pixels(ordered: list[DicomSlice]) -> tuple[np.ndarray, Rescale | None]:
    """Pixel data of shape (Columns, Rows, n_slices), of :func:`_voxel_type`, and the rescale still to apply.

    Each slice is written straight into the one preallocated array. A file's
    pixel data (the stored bytes and pydicom's decoded array, which the
    dataset would otherwise keep) are released after its last slice, so a
    series never sits in memory twice besides its array. Values beyond the
    integer type (beyond BitsStored) turn the array into float32 with every
    rescale applied (exact for what is already read).
    """
    rows, columns = ordered[0].size
    dtype, rescale = _voxel_type(ordered)
    out = np.empty((columns, rows, len(ordered)), dtype=dtype)
    last_use = {s.path: k for k, s in enumerate(ordered)}
    decoded: dict[Path, np.ndarray] = {}
    for k, s in enumerate(ordered):
        if s.path not in decoded:
            decoded = {s.path: decode(s)}  # keep one file at a time in memory
        frames = decoded[s.path]
        plane = frames[s.frame] if frames.ndim == 3 else frames
        if plane.shape != (rows, columns):
            raise InputError(
                f"corrupt DICOM file {s.path}: pixel data of shape {plane.shape}, expected {(rows, columns)}"
            )
        slope, intercept = (1.0, 0.0) if rescale is not None else (s.slope, s.intercept)
        if out.dtype.kind in "iu" and not _fits(plane, intercept, out.dtype):
            out = out.astype(np.float32)
            if rescale is not None:
                rescale.apply_in_place(out[:, :, :k])
            rescale, slope, intercept = None, s.slope, s.intercept
        store_plane(out[:, :, k], plane, slope, intercept)
        if last_use[s.path] == k:
            decoded = {}
            _release_pixel_data(s.dataset)
    return out, rescale


#: Integer voxel types a series may keep, smallest first (each at most
#: ``geometry.MAX_INT_VOXEL_BYTES`` bytes: half of float32 or less, and exact in float32).
_INT_VOXEL_TYPES = (np.uint8, np.int8, np.uint16, np.int16)


def _voxel_type(ordered: list[DicomSlice]) -> tuple[np.dtype, Rescale | None]:
    """The array type of a series and the rescale to record on the volume (None: applied while reading).

    1. A slope of 1 with whole-number intercepts maps stored integers to
       integers exactly: the rescaled integers, in the smallest type of
       ``_INT_VOXEL_TYPES`` that holds every value BitsStored and
       PixelRepresentation allow plus the intercepts.
    2. Else, when every slice has the same positive slope and intercept (a
       fractional slope, as Philips MR series carry): the stored integers, in
       the smallest type that holds them, and that map as the rescale.
    3. Otherwise (float pixel data, too wide a range, slices that differ):
       float32, with the rescale applied while reading.
    """
    first = ordered[0]
    if all(s.slope == 1.0 and s.intercept.is_integer() for s in ordered):
        intercepts = [int(s.intercept) for s in ordered]
        shifted = _stored_int_dtype(first.dataset, min(intercepts), max(intercepts))
        if shifted is not None:
            return shifted, None
    uniform = all(s.slope == first.slope and s.intercept == first.intercept for s in ordered)
    stored = _stored_int_dtype(first.dataset, 0, 0) if uniform and first.slope > 0 else None
    if stored is None:
        return np.dtype(np.float32), None
    return stored, Rescale(first.slope, first.intercept)


def _stored_int_dtype(ds: Any, shift_lo: int, shift_hi: int) -> np.dtype | None:
    """The smallest type of ``_INT_VOXEL_TYPES`` holding every stored integer plus a shift in [shift_lo, shift_hi].

    The stored range comes from BitsStored and PixelRepresentation; None for
    float pixel data, more than 16 bits or a range no type holds.
    """
    if "PixelData" not in ds:
        return None
    try:
        bits = int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (TypeError, ValueError):
        return None
    if not 1 <= bits <= 16:
        return None
    stored_lo, stored_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    lo, hi = stored_lo + shift_lo, stored_hi + shift_hi
    for t in _INT_VOXEL_TYPES:
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return np.dtype(t)
    return None


def _fits(plane: np.ndarray, intercept: float, dtype: np.dtype) -> bool:
    """Whether the integers ``plane + intercept`` fit ``dtype`` (False for float planes)."""
    if plane.dtype.kind not in "iu":
        return False
    info, stored = np.iinfo(dtype), np.iinfo(plane.dtype)
    if info.min <= stored.min + int(intercept) and stored.max + int(intercept) <= info.max:
        return True  # every value the stored type can hold fits: no pass over the plane
    return info.min <= int(plane.min()) + int(intercept) and int(plane.max()) + int(intercept) <= info.max


#: Rows of a plane rescaled at a time: float64 scratch of a few MB (a 2048-column plane:
#: 2 MB), not a whole-plane temporary that would stay in the heap after the read.
RESCALE_ROWS = 128


def store_plane(target: np.ndarray, plane: np.ndarray, slope: float, intercept: float) -> None:
    """Write ``plane * slope + intercept`` (transposed) into ``target`` (float32 or integer).

    Without a rescale the stored values are cast directly (the same float32
    values as through float64: one rounding either way); with one, the
    arithmetic is done ``RESCALE_ROWS`` rows at a time, in float64 (or in
    int32 for an integer target: slope 1 and a whole-number intercept).
    """
    if slope == 1.0 and intercept == 0.0:
        target[...] = plane.T
        return
    for start in range(0, plane.shape[0], RESCALE_ROWS):
        rows = slice(start, start + RESCALE_ROWS)
        if target.dtype.kind in "iu":
            target[:, rows] = (plane[rows].astype(np.int32) + int(intercept)).T
            continue
        scaled = plane[rows].astype(np.float64)
        scaled *= slope
        scaled += intercept
        target[:, rows] = scaled.T


def _release_pixel_data(ds: Any) -> None:
    """Drop a dataset's pixel data and pydicom's cached decoded array (the header stays)."""
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)


def decode(s: DicomSlice) -> np.ndarray:
    """The stored pixel array of a file: (Rows, Columns) or (frames, Rows, Columns)."""
    try:
        return np.asarray(s.dataset.pixel_array)
    except Exception as exc:  # decoder missing, truncated data, bad group 0028, unknown transfer syntax...
        name, compressed = _transfer_syntax(s.dataset)
        if compressed:
            raise InputError(
                f"cannot decode the compressed pixel data of {s.path} ({name}): {one_line(exc)}; "
                f"decompress the series first (for example with DCMTK's dcmdjpeg or gdcmconv --raw)"
            ) from exc
        raise InputError(f"corrupt DICOM file {s.path}: cannot read pixel data ({name}): {one_line(exc)}") from exc


__all__ = [
    "PIXEL_KEYWORDS",
    "RESCALE_ROWS",
    "DicomSlice",
    "check_sizes",
    "decode",
    "read_pixels",
    "shown",
    "store_plane",
]
