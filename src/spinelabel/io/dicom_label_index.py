"""The images a DICOM label import reads its labels against, and the helpers both readers share.

:func:`spinelabel.io.dicom_label_read.import_dicom_annotations` indexes every
image header of its inputs by SOPInstanceUID (:class:`ImageIndex`); the
presentation-state reader (there) and the structured-report reader
(:mod:`spinelabel.io.dicom_label_sr`) map each label to a :class:`Found`
point in patient LPS mm (a pixel point through its image's plane).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .dicom_label_common import ImagePlane, plane_of
from .dicom_label_marks import Skip

__all__ = ["Found", "ImageIndex", "check_on_image", "floats", "image_refs", "single_image"]


@dataclass
class _Image:
    path: Path
    header: Any
    series_uid: str


@dataclass(frozen=True)
class Found:
    """One named point: which series it belongs to and where (LPS mm)."""

    series_uid: str
    label: str
    lps: np.ndarray
    source: Path


class ImageIndex:
    """Image headers by SOPInstanceUID, with their planes computed on demand."""

    def __init__(self) -> None:
        self.images: dict[str, _Image] = {}
        #: SeriesInstanceUID -> SOPInstanceUIDs of its images, in file order.
        self.series_images: dict[str, list[str]] = {}
        self._planes: dict[tuple[str, int | None], ImagePlane] = {}

    def add(self, path: Path, header: Any) -> None:
        uid = str(header.get("SOPInstanceUID", "") or "")
        series = str(header.get("SeriesInstanceUID", "") or "")
        if not uid or uid in self.images:  # copies of one instance count once
            return
        self.images[uid] = _Image(path, header, series)
        self.series_images.setdefault(series, []).append(uid)

    def series_files(self, series_uid: str) -> list[Path]:
        return [self.images[uid].path for uid in self.series_images[series_uid]]

    def series_header(self, series_uid: str) -> Any:
        """The header of the series' first image (for patient, series and frame-of-reference attributes)."""
        return self.images[self.series_images[series_uid][0]].header

    def frame_of_reference(self, series_uid: str) -> str:
        """The FrameOfReferenceUID of a series ('' when its first image has none)."""
        return str(self.series_header(series_uid).get("FrameOfReferenceUID", "") or "")

    def plane(self, sop_uid: str, frame: int | None) -> ImagePlane:
        """The plane of a referenced image; Skip when absent or unusable."""
        key = (sop_uid, frame)
        if key not in self._planes:
            image = self.images.get(sop_uid)
            if image is None:
                raise Skip(f"references image {sop_uid}, which is not among the inputs (export the images too)")
            try:
                self._planes[key] = plane_of(image.path, image.header, frame)
            except InputError as exc:
                raise Skip(f"its image cannot be used: {exc}") from None
        return self._planes[key]

    def multi_frame(self, sop_uid: str) -> bool:
        """Whether an indexed image has several frames (a single-frame image's only frame is the image)."""
        return int(self.images[sop_uid].header.get("NumberOfFrames", 1) or 1) > 1

    def first_plane(self, series_uid: str) -> ImagePlane | None:
        """The plane of any image of a series (for its orientation), None if none is usable."""
        for uid in self.series_images.get(series_uid, []):
            try:
                return self.plane(uid, 1 if self.multi_frame(uid) else None)
            except Skip:
                continue
        return None


def _frames(ref: Any) -> list[int] | None:
    """ReferencedFrameNumber values (1-based), None when absent."""
    from pydicom.multival import MultiValue

    value = ref.get("ReferencedFrameNumber")
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [int(v) for v in values]


def single_image(refs: list[tuple[str, list[int] | None]], where: str) -> tuple[str, int | None]:
    """The one (SOPInstanceUID, frame) an annotation is drawn on; Skip when it is shown on several."""
    if not refs:
        raise Skip(f"{where}: references no image")
    if len(refs) > 1:
        raise Skip(f"{where}: drawn on {len(refs)} images, so its slice is unknown")
    uid, frames = refs[0]
    if frames is not None and len(frames) > 1:
        raise Skip(f"{where}: drawn on {len(frames)} frames, so its slice is unknown")
    return uid, (frames[0] if frames else None)


def image_refs(sequence: Any) -> list[tuple[str, list[int] | None]]:
    """(ReferencedSOPInstanceUID, frames or None) of each item of a referenced-image sequence."""
    return [(str(r.get("ReferencedSOPInstanceUID", "")), _frames(r)) for r in sequence or []]


def floats(values: Any, dims: int, where: str) -> np.ndarray:
    """A flat list of numbers as points of shape (N, dims); Skip when malformed."""
    try:
        out = np.array([float(v) for v in values or []], dtype=float)
        out = out.reshape(-1, dims)
    except (TypeError, ValueError):
        raise Skip(f"{where}: malformed coordinates") from None
    if not np.all(np.isfinite(out)):
        raise Skip(f"{where}: coordinates are not finite")
    return out


def check_on_image(col_row: np.ndarray, plane: ImagePlane) -> None:
    """Skip for a pixel point (column, row) off its image: beyond [0, Columns] x [0, Rows] (DICOM pixel
    coordinates run from the top left corner of the first pixel to the bottom right of the last)."""
    point = np.asarray(col_row, float).reshape(2)
    if np.any(point < 0.0) or np.any(point > np.asarray(plane.size, float)):
        raise Skip(f"the point ({point[0]:.1f}, {point[1]:.1f}) lies off the {plane.size[0]} x {plane.size[1]} image")
