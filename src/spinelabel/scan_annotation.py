"""The annotated vertebrae of one scan: the type every annotation reader returns.

It sits below :mod:`spinelabel.annotations` (CSV and JSON files) and
:mod:`spinelabel.io.dicom_label_read` (GSPS and SR objects), which both build
it, so neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import anatomy

__all__ = ["ScanAnnotation", "ScanAnnotationBuilder", "ordered_points"]


@dataclass(frozen=True, eq=False)
class ScanAnnotation:
    """The annotated vertebrae of one scan.

    ``eq=False``: instances compare by identity (``points`` holds arrays, whose
    ``==`` is element-wise).
    """

    #: Scan identifier, e.g. the case folder name.
    scan_id: str
    #: Image file or folder the points belong to, if known.
    image: Path | None
    #: Level name -> (3,) world RAS mm, cranial to caudal.
    points: dict[str, np.ndarray]
    #: Labels that occurred more than once (the first point was kept), cranial to caudal.
    duplicates: tuple[str, ...] = ()
    #: Where the points were read from (file, with row numbers in messages).
    source: Path | None = None
    #: SeriesInstanceUID to read from ``image`` (a DICOM folder that may hold several series).
    series_uid: str | None = None

    @property
    def levels(self) -> tuple[str, ...]:
        """The annotated level names, cranial to caudal."""
        return tuple(self.points)


def ordered_points(points: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same points with their levels sorted cranial to caudal."""
    return dict(sorted(points.items(), key=lambda kv: anatomy.ordinal(kv[0])))


def _sorted_levels(levels: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(levels), key=anatomy.ordinal))


class ScanAnnotationBuilder:
    """Collects the points of one scan, keeping the first of duplicated labels.

    Parameters
    ----------
    scan_id : str
    image : Path or None
        Image file or folder the points belong to.
    source : Path
        Where the points are read from.
    series_uid : str, optional
        SeriesInstanceUID to read from ``image``.
    """

    def __init__(self, scan_id: str, image: Path | None, source: Path, series_uid: str | None = None):
        self.scan_id, self.image, self.source, self.series_uid = scan_id, image, source, series_uid
        self.points: dict[str, np.ndarray] = {}
        self.duplicates: set[str] = set()

    def add(self, label: str, xyz: Sequence[float]) -> None:
        """Add a point (world RAS mm); a label seen before is listed as a duplicate."""
        if label in self.points:
            self.duplicates.add(label)
        else:
            self.points[label] = np.asarray(xyz, dtype=float)

    def build(self) -> ScanAnnotation:
        """The scan's annotation, levels cranial to caudal."""
        return ScanAnnotation(
            self.scan_id, self.image, ordered_points(self.points), _sorted_levels(self.duplicates), self.source,
            self.series_uid,
        )
