"""Spine labels as DICOM objects: read GSPS and SR annotations, write SR and GSPS.

Reading (:func:`import_dicom_annotations`)
------------------------------------------
The inputs are files and folders (searched recursively) holding sagittal
image series mixed with the presentation states (GSPS) and structured
reports (SR) that clinicians saved while labelling them. Images are indexed
by SOPInstanceUID; every label found on an image is mapped to world RAS mm
through that image's own ImagePositionPatient / ImageOrientationPatient /
PixelSpacing. The result is one :class:`~spinelabel.annotations.ScanAnnotation`
per labelled sagittal series, plus a list of one-line problems (an item that
cannot be used is skipped and named; the rest is imported).

- GSPS (and the colour / pseudo-colour presentation states, which share the
  Graphic Annotation module): per referenced image, text objects
  (UnformattedTextValue at its AnchorPoint, else at the centre of its
  BoundingBox) are paired with the nearest graphic object (POINT, or a small
  POLYLINE / INTERPOLATED / CIRCLE / ELLIPSE -> its centre) within
  :data:`PAIR_RADIUS_MM`; the graphic gives the point. A text with no graphic
  nearby is the point itself.
- SR (Enhanced, Comprehensive, Comprehensive 3D, Extensible; e.g. TID 1500
  Measurement Reports): every SCOORD (image pixel coordinates, with the image
  it is SELECTED FROM) and SCOORD3D (patient LPS mm in a frame of reference)
  is named from nearby content: its parent TEXT/CODE item, else the Tracking
  Identifier, Finding Site or other TEXT/CODE items of its container (a
  measurement group). A container holding one SCOORD and one SCOORD3D (what
  :func:`write_sr` writes) is one point: the exact 3D position, on the series
  of the 2D reference.

Pixel coordinates
-----------------
GSPS graphic annotations in PIXEL units and SR SCOORD values are
(column, row) pairs in which the top left hand corner of the top left pixel
is (0, 0) and the bottom right corner of the bottom right pixel is
(Columns, Rows) (DICOM PS3.3 C.10.5 Graphic Annotation Module and C.18.6
Spatial Coordinates Macro; highdicom's ImageToReferenceTransformer and
cornerstone use the same convention). The centre of the pixel with 0-based
indices (i, j) is therefore at (i + 0.5, j + 0.5): see :data:`PIXEL_CENTRE`.
ImagePositionPatient is the centre of the top left pixel, so a point (c, r)
lies at ``IPP + (c - 0.5) * dc * X + (r - 0.5) * dr * Y`` (LPS), with X, Y
the row and column direction cosines and dc, dr = PixelSpacing[1],
PixelSpacing[0]. Reader and writers use the same two functions
(:meth:`_Plane.to_lps`, :meth:`_Plane.to_pixel`), so a round trip is exact.

Naming
------
Label text goes through :func:`spinelabel.anatomy.parse_level` ("l3",
"L 3", "L3 vertebra" -> "L3"); SNOMED CT vertebra codes (C1..L5) are also
understood. Disc levels ("L4-L5", "L4/5") are refused rather than read as
the upper vertebra.

Scans
-----
``scan_id`` is ``<PatientID>_<SeriesNumber>`` (characters other than
letters, digits, ``.``, ``_`` and ``-`` replaced by ``-``; ``anon`` without a
PatientID). When two labelled series would get the same id (e.g. two studies
of one patient), each gets ``_<8 hex digits of a hash of its
SeriesInstanceUID>`` appended; the SeriesInstanceUID itself is kept in
``ScanAnnotation.series_uid``. ``image`` is the folder holding the series'
files (their common folder), which :func:`spinelabel.io.load_image` reads
with ``series_uid`` when the folder holds other series too.

Writing (:func:`write_sr`, :func:`write_gsps`)
----------------------------------------------
Both reference the sagittal slice nearest each vertebra (by the distance of
the point to each slice plane) with the point projected onto that slice in
pixel coordinates. The SR also stores the exact world point (SCOORD3D), so
it re-imports to the same 3D point; a GSPS can only hold in-plane points, so
it re-imports to the projection of the point onto its slice (out of plane by
at most half the slice spacing).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import anatomy
from ..annotations import ScanAnnotation, _Builder
from ..errors import InputError
from ..geometry import lps_to_ras
from .nifti import _one_line

if TYPE_CHECKING:
    from ..results import LabelResult
    from .dicom import DicomSeriesInfo

__all__ = [
    "GSPS_SOP_CLASS",
    "MAX_SHAPE_MM",
    "PAIR_RADIUS_MM",
    "PIXEL_CENTRE",
    "DicomImport",
    "import_dicom_annotations",
    "write_gsps",
    "write_sr",
]

#: Grayscale Softcopy Presentation State Storage.
GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
#: Presentation states with the Graphic Annotation module (GSPS, colour, pseudo-colour).
PRESENTATION_STATE_CLASSES = {
    GSPS_SOP_CLASS: "GSPS",
    "1.2.840.10008.5.1.4.1.1.11.2": "Color Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.11.3": "Pseudo-Color Softcopy Presentation State",
}
#: Structured report storage classes that may hold spatial coordinates.
SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}
#: Offset of a pixel centre from its index in DICOM pixel coordinates: the top
#: left corner of the top left pixel is (0, 0), its centre (0.5, 0.5)
#: (PS3.3 C.10.5 and C.18.6).
PIXEL_CENTRE = 0.5
#: A text and a graphic on one image belong together when they are at most this
#: far apart (mm, in-plane). Labels are typed next to the mark they name; 30 mm
#: is below the lumbar centre-to-centre spacing (~35-40 mm, see
#: anatomy.typical_spacing_mm), so a label does not reach the next-but-one
#: vertebra, and pairing nearest-first keeps the closer cervical levels apart.
PAIR_RADIUS_MM = 30.0
#: Largest extent (mm) of a shape taken as marking one vertebra: a vertebral
#: body is ~35 mm deep and ~30 mm high on a sagittal image, so an outline of one
#: body fits; a larger shape (a long line, an outline of several levels) does not
#: mark one vertebra's centre.
MAX_SHAPE_MM = 60.0
#: Series numbers of the objects written; high so they sort after the acquired
#: series (numbered from 1, rarely above a few hundred) in PACS series lists.
SR_SERIES_NUMBER = 9901
GSPS_SERIES_NUMBER = 9902
#: Size (mm) of the text box written beside each point in a GSPS, and its gap from the point.
TEXT_BOX_MM = (24.0, 8.0)
TEXT_GAP_MM = 6.0
#: GSPS content label (a DICOM code string: capitals, digits, '_' and ' ').
GSPS_CONTENT_LABEL = "SPINE_LABELS"
GRAPHIC_LAYER = "VERTEBRAE"
#: Local code for the labeller's confidence (local coding schemes begin with "99").
CONFIDENCE_CODE = ("LABELCONF", "99SPINELABEL", "Vertebra label confidence")

# SR concept names (scheme, code value) that carry a label.
_TRACKING_ID = ("DCM", "112039")
_FINDING_SITE = {("SCT", "363698007"), ("SRT", "G-C0E3")}
_SHORT_LABEL = ("DCM", "125309")
_DISC_RE = re.compile(r"^\s*[CTLS]\s*\d{1,2}\s*[-/]\s*[CTLS]?\s*\d", re.IGNORECASE)


class _Skip(Exception):
    """One annotation item cannot be used; the message says which and why."""


@dataclass
class DicomImport:
    """What :func:`import_dicom_annotations` found.

    Attributes
    ----------
    annotations : list of ScanAnnotation
        One per labelled sagittal series, points in world RAS mm.
    problems : list of str
        One line per skipped item or file (naming it and the reason).
    n_objects : int
        Number of GSPS and SR objects read.
    """

    annotations: list[ScanAnnotation]
    problems: list[str] = field(default_factory=list)
    n_objects: int = 0


# ----------------------------------------------------------------------------
# geometry of one image plane


@dataclass(frozen=True)
class _Plane:
    """Geometry of one 2D image (a single-frame file or one frame), LPS mm.

    ``origin`` (3,) is the centre of the top left pixel (ImagePositionPatient);
    ``row_dir`` (3,) the unit direction of increasing column index, ``col_dir``
    (3,) that of increasing row index; ``spacing`` (2,) = (mm per column step,
    mm per row step); ``size`` = (Columns, Rows).
    """

    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: np.ndarray
    size: tuple[int, int]

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (3,), row_dir x col_dir."""
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    def to_lps(self, col_row: np.ndarray) -> np.ndarray:
        """DICOM pixel coordinates (N, 2) (column, row) -> LPS mm (N, 3) on this plane."""
        ij = (np.asarray(col_row, float).reshape(-1, 2) - PIXEL_CENTRE) * self.spacing
        return self.origin + ij[:, :1] * self.row_dir + ij[:, 1:] * self.col_dir

    def to_pixel(self, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LPS mm (N, 3) -> pixel coordinates (N, 2) of the projection, and the signed distance (N,) to the plane."""
        d = np.asarray(lps, float).reshape(-1, 3) - self.origin
        col_row = np.stack([d @ self.row_dir, d @ self.col_dir], axis=1) / self.spacing + PIXEL_CENTRE
        return col_row, d @ self.normal

    @property
    def is_sagittal(self) -> bool:
        """True when the slice normal is closest to the left-right axis."""
        return int(np.argmax(np.abs(self.normal))) == 0


def _plane_of(path: Path, header: Any, frame: int | None) -> _Plane:
    """The plane of a single-frame image (frame None) or of 1-based ``frame``; InputError if unusable."""
    from .dicom import _slices_of

    slices = _slices_of(path, header)
    if frame is None:
        if len(slices) > 1:
            raise InputError(f"{path}: multi-frame image referenced without a frame number")
        s = slices[0]
    elif 1 <= frame <= len(slices):
        s = slices[frame - 1]
    else:
        raise InputError(f"{path}: frame {frame} referenced, but the image has {len(slices)} frame(s)")
    row, col = s.iop[:3], s.iop[3:]
    if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-6 or s.pixel_spacing.min() <= 0:
        raise InputError(f"{path}: degenerate ImageOrientationPatient or PixelSpacing")
    spacing = np.array([s.pixel_spacing[1], s.pixel_spacing[0]])  # (column step, row step)
    return _Plane(s.ipp, row / np.linalg.norm(row), col / np.linalg.norm(col), spacing, (s.size[1], s.size[0]))


# ----------------------------------------------------------------------------
# reading: files and the image index


@dataclass
class _Image:
    path: Path
    header: Any
    series_uid: str


@dataclass(frozen=True)
class _Found:
    """One named point: which series it belongs to and where (LPS mm)."""

    series_uid: str
    label: str
    lps: np.ndarray
    source: Path


class _Index:
    """Image headers by SOPInstanceUID, with their planes computed on demand."""

    def __init__(self) -> None:
        self.images: dict[str, _Image] = {}
        #: SeriesInstanceUID -> SOPInstanceUIDs of its images, in file order.
        self.series_images: dict[str, list[str]] = {}
        self._planes: dict[tuple[str, int | None], _Plane] = {}

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

    def plane(self, sop_uid: str, frame: int | None) -> _Plane:
        """The plane of a referenced image; _Skip when absent or unusable."""
        key = (sop_uid, frame)
        if key not in self._planes:
            image = self.images.get(sop_uid)
            if image is None:
                raise _Skip(f"references image {sop_uid}, which is not among the inputs (export the images too)")
            try:
                self._planes[key] = _plane_of(image.path, image.header, frame)
            except InputError as exc:
                raise _Skip(f"its image cannot be used: {exc}") from None
        return self._planes[key]

    def first_plane(self, series_uid: str) -> _Plane | None:
        """The plane of any image of a series (for its orientation), None if none is usable."""
        for uid in self.series_images.get(series_uid, []):
            multi_frame = int(self.images[uid].header.get("NumberOfFrames", 1) or 1) > 1
            try:
                return self.plane(uid, 1 if multi_frame else None)
            except _Skip:
                continue
        return None


def _collect_files(sources: Sequence[str | Path]) -> list[Path]:
    """Every file named or found (recursively, sorted) under ``sources``."""
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        elif p.is_file():
            files.append(p)
        elif p.exists():
            raise InputError(f"{p}: not a file or folder")
        else:
            raise InputError(f"{p}: no such file or folder")
    return files


def _sop_class(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return str(uid or "")


def _is_image(ds: Any) -> bool:
    return "Rows" in ds and "Columns" in ds and any(
        k in ds for k in ("ImagePositionPatient", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")
    )


def _scan_files(files: list[Path], problems: list[str]) -> tuple[_Index, list[tuple[Path, Any]]]:
    """Index the images; return the presentation states and SRs in file order."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    index, objects = _Index(), []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not a DICOM file: skipped silently, like the image loader
        except Exception as exc:  # pydicom raises many types for damaged files
            problems.append(f"{path}: malformed DICOM file, skipped ({_one_line(exc)})")
            continue
        sop_class = _sop_class(ds)
        if sop_class in PRESENTATION_STATE_CLASSES or sop_class in SR_SOP_CLASSES:
            objects.append((path, ds))
        elif _is_image(ds):
            index.add(path, ds)
        elif not sop_class:
            problems.append(f"{path}: malformed DICOM file (no SOP Class UID), skipped")
    return index, objects


# ----------------------------------------------------------------------------
# reading: shapes and label text


def _shape_centre(graphic_type: str, points: np.ndarray, spacing: np.ndarray | None, what: str) -> np.ndarray:
    """Centre of a marked shape: points (N, D) -> (D,); _Skip for big or unsupported shapes.

    ``spacing`` (D,) converts the points to mm for the size check (None: already mm).
    """
    kind = graphic_type.upper()
    n = len(points)
    if n == 0:
        raise _Skip(f"{what}: {kind} without coordinates")
    if kind == "POINT":
        return points[0]
    if kind in ("POLYLINE", "INTERPOLATED", "POLYGON"):
        if n > 1 and np.array_equal(points[0], points[-1]):
            points = points[:-1]  # closed outline: the repeated first vertex counts once
        centre, extent = points.mean(axis=0), points
    elif kind == "CIRCLE" and n == 2:
        centre = points[0]
        radius = points[1] - points[0]
        extent = np.stack([centre - radius, centre + radius])
    elif kind in ("ELLIPSE", "ELLIPSOID") and n in (4, 6):
        centre, extent = points.mean(axis=0), points
    elif kind == "MULTIPOINT" and n == 1:
        return points[0]
    else:
        raise _Skip(f"{what}: graphic type {kind} with {n} points does not mark one point")
    scaled = extent * (spacing if spacing is not None else 1.0)
    size = float(np.max(np.linalg.norm(scaled[:, None, :] - scaled[None, :, :], axis=-1)))
    if size > MAX_SHAPE_MM:
        raise _Skip(f"{what}: {kind} spanning {size:.0f} mm is too large to mark one vertebra (> {MAX_SHAPE_MM:.0f} mm)")
    return centre


def _snomed_levels() -> dict[tuple[str, str], str]:
    """SNOMED CT vertebra codes known to pydicom: (scheme, code) -> level."""
    from pydicom.sr.codedict import codes

    out = {}
    for level in anatomy.ALL_LEVELS:
        code = getattr(codes.SCT, f"{level}Vertebra", None) if level in anatomy.STANDARD_LEVELS else None
        if code is not None:
            out[("SCT", str(code.value))] = level
    return out


def _level_of_text(text: str) -> str:
    """The level a label text names; _Skip with the reason otherwise."""
    if _DISC_RE.match(text):
        raise _Skip(f"{text.strip()!r} names a disc level, not a vertebra")
    try:
        return anatomy.parse_level(text)
    except ValueError:
        raise _Skip(f"unknown vertebra label {text.strip()!r}") from None


def _try_level(text: str) -> str | None:
    try:
        return _level_of_text(text)
    except _Skip:
        return None


# ----------------------------------------------------------------------------
# reading: presentation states (GSPS)


@dataclass
class _Marks:
    """What is drawn on one image: texts (text, (2,) pixel position, where) and
    graphics (graphic type, (N, 2) pixel points, where, TrackingID or None)."""

    texts: list[tuple[str, np.ndarray, str]] = field(default_factory=list)
    graphics: list[tuple[str, np.ndarray, str, str | None]] = field(default_factory=list)


def _frames(ref: Any) -> list[int] | None:
    """ReferencedFrameNumber values (1-based), None when absent."""
    from pydicom.multival import MultiValue

    value = ref.get("ReferencedFrameNumber")
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [int(v) for v in values]


def _single_image(refs: list[tuple[str, list[int] | None]], where: str) -> tuple[str, int | None]:
    """The one (SOPInstanceUID, frame) an annotation is drawn on; _Skip when it is shown on several."""
    if not refs:
        raise _Skip(f"{where}: references no image")
    if len(refs) > 1:
        raise _Skip(f"{where}: drawn on {len(refs)} images, so its slice is unknown")
    uid, frames = refs[0]
    if frames is not None and len(frames) > 1:
        raise _Skip(f"{where}: drawn on {len(frames)} frames, so its slice is unknown")
    return uid, (frames[0] if frames else None)


def _image_refs(sequence: Any) -> list[tuple[str, list[int] | None]]:
    return [(str(r.get("ReferencedSOPInstanceUID", "")), _frames(r)) for r in sequence or []]


def _pixel_units(item: Any, keyword: str, where: str) -> None:
    units = str(item.get(keyword, "") or "").upper()
    if units != "PIXEL":
        raise _Skip(f"{where}: {units or 'no'} annotation units (only PIXEL units are read)")


def _floats(values: Any, dims: int, where: str) -> np.ndarray:
    """A flat list of numbers as points of shape (N, dims); _Skip when malformed."""
    try:
        out = np.array([float(v) for v in values or []], dtype=float)
        out = out.reshape(-1, dims)
    except (TypeError, ValueError):
        raise _Skip(f"{where}: malformed coordinates") from None
    if not np.all(np.isfinite(out)):
        raise _Skip(f"{where}: coordinates are not finite")
    return out


def _text_position(text: Any, where: str) -> np.ndarray:
    """Anchor point, else bounding-box centre, in pixel coordinates (2,)."""
    if text.get("AnchorPoint") is not None:
        _pixel_units(text, "AnchorPointAnnotationUnits", where)
        return _floats(text.AnchorPoint, 2, where)[0]
    if text.get("BoundingBoxTopLeftHandCorner") is not None and text.get("BoundingBoxBottomRightHandCorner") is not None:
        _pixel_units(text, "BoundingBoxAnnotationUnits", where)
        corners = _floats([*text.BoundingBoxTopLeftHandCorner, *text.BoundingBoxBottomRightHandCorner], 2, where)
        return corners.mean(axis=0)
    raise _Skip(f"{where}: text without anchor point or bounding box")


def _gsps_marks(path: Path, ds: Any, problems: list[str]) -> dict[tuple[str, int | None], _Marks]:
    """Texts and graphics of a presentation state, per referenced image."""
    applies_to = [ref for series in ds.get("ReferencedSeriesSequence", []) or []
                  for ref in _image_refs(series.get("ReferencedImageSequence"))]
    marks: dict[tuple[str, int | None], _Marks] = {}
    if not ds.get("GraphicAnnotationSequence"):
        problems.append(f"{path}: presentation state without graphic annotations (truncated?): nothing to import")
    for n, item in enumerate(ds.get("GraphicAnnotationSequence", []) or [], start=1):
        where = f"{path}: graphic annotation #{n}"
        # without its own ReferencedImageSequence an annotation applies to every image of the state
        refs = _image_refs(item.ReferencedImageSequence) if "ReferencedImageSequence" in item else applies_to
        try:
            key = _single_image(refs, where)
        except _Skip as exc:
            problems.append(f"{exc} (skipped)")
            continue
        bucket = marks.setdefault(key, _Marks())
        for text in item.get("TextObjectSequence", []) or []:
            value = str(text.get("UnformattedTextValue", "") or "")
            twhere = f"{where}, text {value.strip()!r}"
            try:
                bucket.texts.append((value, _text_position(text, twhere), twhere))
            except _Skip as exc:
                problems.append(f"{exc} (skipped)")
        for g, graphic in enumerate(item.get("GraphicObjectSequence", []) or [], start=1):
            gtype = str(graphic.get("GraphicType", "") or "")
            gwhere = f"{where}, graphic #{g} ({gtype})"
            try:
                _pixel_units(graphic, "GraphicAnnotationUnits", gwhere)
                points = _floats(graphic.get("GraphicData"), 2, gwhere)
            except _Skip as exc:
                problems.append(f"{exc} (skipped)")
                continue
            bucket.graphics.append((gtype, points, gwhere, str(graphic.get("TrackingID", "") or "") or None))
    return marks


def _read_presentation_state(path: Path, ds: Any, index: _Index, problems: list[str]) -> list[_Found]:
    """Named points of a GSPS (see the module docstring)."""
    found = []
    for (uid, frame), marks in _gsps_marks(path, ds, problems).items():
        try:
            plane = index.plane(uid, frame)
        except _Skip as exc:
            names = ", ".join(repr(t.strip()) for t, _, _ in marks.texts) or "graphics only"
            problems.append(f"{path}: labels on image {uid} ({names}): {exc} (skipped)")
            continue
        series = index.images[uid].series_uid
        for label, col_row in _pair_marks(marks, plane, problems):
            found.append(_Found(series, label, plane.to_lps(col_row)[0], path))
    return found


def _pair_marks(marks: _Marks, plane: _Plane, problems: list[str]) -> list[tuple[str, np.ndarray]]:
    """(label, (2,) pixel point) per vertebra label on one image; problems for the rest.

    Texts naming a vertebra and graphic centres are paired nearest-first
    within PAIR_RADIUS_MM; a paired label takes the graphic's centre, an
    unpaired one its own position; an unpaired graphic is used only when its
    TrackingID names a vertebra.
    """
    labels: list[tuple[str, np.ndarray]] = []
    for text, position, where in marks.texts:
        try:
            labels.append((_level_of_text(text), position))
        except _Skip as exc:
            problems.append(f"{where}: {exc} (skipped)")
    centres: list[tuple[np.ndarray, str, str | None]] = []
    for gtype, points, where, tracking in marks.graphics:
        try:
            centres.append((_shape_centre(gtype, points, plane.spacing, where), where, tracking))
        except _Skip as exc:
            problems.append(f"{exc} (skipped)")
    pairs = sorted(
        (float(np.linalg.norm((pos - centre) * plane.spacing)), t, g)
        for t, (_, pos) in enumerate(labels)
        for g, (centre, _, _) in enumerate(centres)
    )
    graphic_of: dict[int, int] = {}
    for distance, t, g in pairs:
        if distance <= PAIR_RADIUS_MM and t not in graphic_of and g not in graphic_of.values():
            graphic_of[t] = g
    out = [(label, centres[graphic_of[t]][0] if t in graphic_of else pos) for t, (label, pos) in enumerate(labels)]
    for g, (centre, where, tracking) in enumerate(centres):
        if g in graphic_of.values():
            continue
        level = _try_level(tracking) if tracking else None
        if level is not None:
            out.append((level, centre))
        else:
            problems.append(f"{where}: no vertebra label within {PAIR_RADIUS_MM:.0f} mm (skipped)")
    return out


# ----------------------------------------------------------------------------
# reading: structured reports


def _concept(item: Any, keyword: str = "ConceptNameCodeSequence") -> tuple[str, str, str] | None:
    """(scheme, value, meaning) of a code sequence's first item, or None."""
    seq = item.get(keyword)
    if not seq:
        return None
    code = seq[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue") or ""
    return str(code.get("CodingSchemeDesignator", "") or ""), str(value), str(code.get("CodeMeaning", "") or "")


def _value_texts(item: Any, snomed: dict[tuple[str, str], str]) -> list[str]:
    """Label candidates held by a TEXT or CODE item's value (a SNOMED vertebra code -> its level)."""
    vtype = str(item.get("ValueType", "") or "")
    if vtype == "TEXT":
        return [str(item.get("TextValue", "") or "")]
    if vtype == "CODE":
        code = _concept(item, "ConceptCodeSequence")
        if code is None:
            return []
        return [snomed[code[:2]]] if code[:2] in snomed else [code[2]]
    return []


def _children(item: Any) -> list[Any]:
    return list(item.get("ContentSequence", []) or [])


def _is_container(item: Any) -> bool:
    return "ValueType" not in item or str(item.ValueType) == "CONTAINER"  # the document root has no ValueType


def _coordinate_items(root: Any) -> Iterator[tuple[Any, list[Any]]]:
    """Every SCOORD/SCOORD3D item with its ancestors (root first), depth first."""
    stack: list[tuple[Any, list[Any]]] = [(root, [])]
    while stack:
        item, ancestors = stack.pop()
        kids = _children(item)
        for child in reversed(kids):
            if str(child.get("ValueType", "")) in ("SCOORD", "SCOORD3D"):
                continue
            stack.append((child, ancestors + [item]))
        for child in kids:
            if str(child.get("ValueType", "")) in ("SCOORD", "SCOORD3D"):
                yield child, ancestors + [item]


def _container_levels(container: Any, snomed: dict[tuple[str, str], str]) -> tuple[set[str], list[str]]:
    """Levels named by a container's label items: strong ones (tracking id, finding site, short label) first.

    Returns the set of levels and the label texts that name no vertebra.
    """
    strong: set[Any] = set()
    weak: set[Any] = set()
    bad: list[Any] = []
    for child in _children(container):
        concept = _concept(child)
        key = concept[:2] if concept else None
        is_strong = key == _TRACKING_ID or key in _FINDING_SITE or key == _SHORT_LABEL
        for text in _value_texts(child, snomed):
            try:
                (strong if is_strong else weak).add(_level_of_text(text))
            except _Skip as exc:
                if is_strong:
                    bad.append(str(exc))
    return (strong or weak), bad


def _sr_label(coord: Any, ancestors: list[Any], snomed: dict[tuple[str, str], str]) -> str:
    """The level naming a coordinate item (see the module docstring); _Skip otherwise."""
    own = _concept(coord)
    if own and (level := _try_level(own[2])):
        return level
    bad: list[str] = []
    for item in reversed(ancestors):
        if not _is_container(item):
            for text in _value_texts(item, snomed):
                try:
                    return _level_of_text(text)
                except _Skip as exc:
                    bad.append(str(exc))
            continue
        levels, bad_here = _container_levels(item, snomed)
        if len(levels) == 1:
            return next(iter(levels))
        if len(levels) > 1:
            raise _Skip(f"several vertebra names next to it ({', '.join(sorted(levels, key=anatomy.ordinal))})")
        name = _concept(item)
        if name and (level := _try_level(name[2])):
            return level
        bad.extend(bad_here)
        break
    raise _Skip(bad[0] if bad else "no vertebra name next to it")


def _image_reference(coord: Any) -> tuple[str, int | None]:
    """The (SOPInstanceUID, frame) a SCOORD is SELECTED FROM; _Skip when missing."""
    for child in _children(coord):
        if str(child.get("ValueType", "")) == "IMAGE" and child.get("ReferencedSOPSequence"):
            ref = child.ReferencedSOPSequence[0]
            return _single_image([(str(ref.get("ReferencedSOPInstanceUID", "")), _frames(ref))], "SCOORD")
    raise _Skip("SCOORD without a referenced image")


def _graphic_points(coord: Any, dims: int) -> np.ndarray:
    return _floats(coord.get("GraphicData"), dims, str(coord.get("ValueType", "")))


def _evidence_series(ds: Any) -> set[str]:
    """SeriesInstanceUIDs listed in the SR's evidence sequences."""
    out = set()
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []) or []:
            for series in study.get("ReferencedSeriesSequence", []) or []:
                out.add(str(series.get("SeriesInstanceUID", "")))
    return out


def _series_for_frame_of_reference(for_uid: str, ds: Any, index: _Index) -> str:
    """The one sagittal series in ``for_uid`` (preferring those the SR lists as evidence)."""
    candidates = []
    for series in index.series_images:
        plane = index.first_plane(series)
        if _frame_of_reference(series, index) == for_uid and plane is not None and plane.is_sagittal:
            candidates.append(series)
    evidence = _evidence_series(ds)
    preferred = [s for s in candidates if s in evidence] or candidates
    if len(preferred) == 1:
        return preferred[0]
    if not preferred:
        raise _Skip(f"no sagittal series of frame of reference {for_uid} among the inputs")
    raise _Skip(f"{len(preferred)} sagittal series share frame of reference {for_uid}; cannot tell which one is labelled")


def _read_sr(path: Path, ds: Any, index: _Index, problems: list[str]) -> list[_Found]:
    """Named points of a structured report (see the module docstring)."""
    coords = list(_coordinate_items(ds))
    if not coords:
        problems.append(f"{path}: SR without spatial coordinates (SCOORD/SCOORD3D): nothing to import")
        return []
    snomed = _snomed_levels()
    by_container: dict[int, list[tuple[int, Any, list[Any]]]] = {}
    for n, (coord, ancestors) in enumerate(coords, start=1):
        by_container.setdefault(id(ancestors[-1]), []).append((n, coord, ancestors))
    found = []
    for members in by_container.values():
        kinds = sorted(str(coord.ValueType) for _, coord, _ in members)
        # a SCOORD with a SCOORD3D in one container is one point (what write_sr writes)
        groups = [members] if kinds == ["SCOORD", "SCOORD3D"] else [[m] for m in members]
        for group in groups:
            where = f"{path}: {'+'.join(str(c.ValueType) for _, c, _ in group)} #{group[0][0]}"
            try:
                found.append(_sr_point(path, ds, [(c, a) for _, c, a in group], index, snomed))
            except _Skip as exc:
                problems.append(f"{where}: {exc} (skipped)")
    return found


def _sr_point(path: Path, ds: Any, group: list[tuple[Any, list[Any]]], index: _Index,
              snomed: dict[tuple[str, str], str]) -> _Found:
    """One named point from a SCOORD, a SCOORD3D, or a SCOORD + SCOORD3D pair."""
    coord, ancestors = group[-1]
    label = _sr_label(coord, ancestors, snomed)
    flat = {str(c.ValueType): c for c, _ in group}
    series, lps = None, None
    if "SCOORD" in flat:
        uid, frame = _image_reference(flat["SCOORD"])
        plane = index.plane(uid, frame)
        series = index.images[uid].series_uid
        points = _graphic_points(flat["SCOORD"], 2)
        centre = _shape_centre(str(flat["SCOORD"].get("GraphicType", "")), points, plane.spacing, "SCOORD")
        lps = plane.to_lps(centre)[0]
    if "SCOORD3D" in flat:
        item = flat["SCOORD3D"]
        for_uid = str(item.get("ReferencedFrameOfReferenceUID", "") or "")
        if series is None:
            series = _series_for_frame_of_reference(for_uid, ds, index)
        elif for_uid != _frame_of_reference(series, index):
            raise _Skip(f"its SCOORD3D is in frame of reference {for_uid}, not that of its image")
        lps = _shape_centre(str(item.get("GraphicType", "")), _graphic_points(item, 3), None, "SCOORD3D")
    if series is None or lps is None:
        raise _Skip("no usable coordinates")
    return _Found(series, label, np.asarray(lps, float), path)


def _frame_of_reference(series_uid: str, index: _Index) -> str:
    return str(index.series_header(series_uid).get("FrameOfReferenceUID", "") or "")


# ----------------------------------------------------------------------------
# reading: public entry point


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _scan_ids(series_uids: list[str], index: _Index) -> dict[str, str]:
    """``<PatientID>_<SeriesNumber>`` per series, made unique with a hash of the UID where needed."""
    base = {}
    for uid in series_uids:
        header = index.series_header(uid)
        patient = _safe(str(header.get("PatientID", "") or "")) or "anon"
        number = str(header.get("SeriesNumber", "") or "").strip()
        base[uid] = f"{patient}_{number}" if number else f"{patient}_{_uid_hash(uid)}"
    counts: dict[str, int] = {}
    for b in base.values():
        counts[b] = counts.get(b, 0) + 1
    return {uid: (b if counts[b] == 1 else f"{b}_{_uid_hash(uid)}") for uid, b in base.items()}


def _uid_hash(uid: str) -> str:
    """8 hex digits identifying a UID (short and stable, for scan ids)."""
    return hashlib.sha1(uid.encode()).hexdigest()[:8]


def _series_folder(files: list[Path]) -> Path:
    """The folder holding all files of a series."""
    return Path(os.path.commonpath([str(f.parent.resolve()) for f in files]))


def _group(found: list[_Found], index: _Index, problems: list[str]) -> list[ScanAnnotation]:
    """One ScanAnnotation per sagittal series, in order of first label."""
    order: list[str] = []
    for f in found:
        if f.series_uid not in order:
            order.append(f.series_uid)
    kept = []
    for uid in order:
        plane = index.first_plane(uid)
        if plane is None or not plane.is_sagittal:
            n = sum(f.series_uid == uid for f in found)
            problems.append(f"series {uid}: not a sagittal series; its {n} label(s) were skipped")
            continue
        kept.append(uid)
    ids = _scan_ids(kept, index)
    out = []
    for uid in kept:
        mine = [f for f in found if f.series_uid == uid]
        builder = _Builder(ids[uid], _series_folder(index.series_files(uid)), mine[0].source)
        for f in mine:
            builder.add(f.label, [float(c) for c in lps_to_ras(f.lps)])
        out.append(replace(builder.build(), series_uid=uid))
    return out


def import_dicom_annotations(sources: Sequence[str | Path] | str | Path) -> DicomImport:
    """Read spine labels from GSPS and SR objects among DICOM images.

    Parameters
    ----------
    sources : sequence of str or Path
        Files and folders (searched recursively) holding the labelled image
        series and their GSPS / SR objects. Non-DICOM files are skipped.

    Returns
    -------
    DicomImport
        ``annotations``: one ScanAnnotation per labelled sagittal series
        (points in world RAS mm, cranial to caudal, duplicates listed);
        ``problems``: one line per item or file that was skipped.

    Raises
    ------
    InputError
        Only when a source does not exist; every other problem is listed in
        ``problems`` and the rest is imported.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    problems: list[str] = []
    index, objects = _scan_files(_collect_files(list(sources)), problems)
    found: list[_Found] = []
    for path, ds in objects:
        kind = PRESENTATION_STATE_CLASSES.get(_sop_class(ds)) or SR_SOP_CLASSES[_sop_class(ds)]
        try:
            if _sop_class(ds) in PRESENTATION_STATE_CLASSES:
                found.extend(_read_presentation_state(path, ds, index, problems))
            else:
                found.extend(_read_sr(path, ds, index, problems))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OSError, EOFError) as exc:
            problems.append(f"{path}: malformed {kind}, skipped ({_one_line(exc)})")
    if not objects:
        problems.append(f"no GSPS or SR objects found in {', '.join(str(s) for s in sources)}")
    return DicomImport(_group(found, index, problems), problems, len(objects))


# ----------------------------------------------------------------------------
# writing


@dataclass
class _SeriesHeaders:
    """Headers of the slices of a loaded series, and each slice's plane (axis-2 order)."""

    headers: list[Any]  # one per slice (a multi-frame file repeats)
    frames: list[int | None]
    planes: list[_Plane]

    def unique_headers(self) -> list[Any]:
        seen, out = set(), []
        for h in self.headers:
            if id(h) not in seen:
                seen.add(id(h))
                out.append(h)
        return out


def _series_headers(info: DicomSeriesInfo | None, what: str) -> _SeriesHeaders:
    """Read the headers of the series behind a result; InputError for a non-DICOM input."""
    import pydicom

    if info is None or not info.files:
        raise InputError(f"{what} needs a DICOM input (the image was not read from a DICOM series)")
    cache: dict[Path, Any] = {}
    headers, planes = [], []
    frames: list[int | None] = list(info.frame_numbers) if info.frame_numbers else [None] * len(info.files)
    for path, frame in zip(info.files, frames):
        if path not in cache:
            try:
                cache[path] = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as exc:  # moved or damaged since it was loaded
                raise InputError(f"cannot read {path} to write {what}: {_one_line(exc)}") from None
            _fill_type2(cache[path])
        headers.append(cache[path])
        planes.append(_plane_of(path, cache[path], frame))
    return _SeriesHeaders(headers, frames, planes)


def _fill_type2(header: Any) -> None:
    """Add empty Type 2 patient/study attributes that some images lack (highdicom copies them)."""
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                    "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName"):
        if keyword not in header:
            setattr(header, keyword, "")


@dataclass(frozen=True)
class _Placed:
    """A vertebra placed on its nearest slice: slice index, pixel point (2,), exact LPS (3,)."""

    label: str
    confidence: float
    k: int
    col_row: np.ndarray
    lps: np.ndarray


def _place(result: LabelResult, series: _SeriesHeaders) -> list[_Placed]:
    """Each vertebra on the slice whose plane is nearest to it, projected in pixel coordinates."""
    out = []
    for v in result.vertebrae:
        lps = lps_to_ras(np.asarray(v.position_mm, float))  # RAS -> LPS: the flip is its own inverse
        distances = [abs(float(p.to_pixel(lps)[1][0])) for p in series.planes]
        k = int(np.argmin(distances))
        plane = series.planes[k]
        col_row = plane.to_pixel(lps)[0][0]
        col_row = np.clip(col_row, 0.0, np.array(plane.size, float))  # DICOM pixel coordinates lie on the image
        out.append(_Placed(v.label, float(v.confidence), k, col_row, lps))
    return out


@contextlib.contextmanager
def _quiet_highdicom() -> Iterator[None]:
    """Hide highdicom's advice on the source's PatientName format (the source's, not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name", category=UserWarning)
        yield


def _save(dataset: Any, path: str | Path) -> None:
    """Write a dataset as a DICOM Part 10 file, atomically."""
    from pydicom import dcmwrite

    from .outputs import atomic_write_bytes

    buf = io.BytesIO()
    dcmwrite(buf, dataset, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())


def _software() -> tuple[str, str]:
    from .. import __version__

    return "spinelabel", str(__version__)


def write_sr(result: LabelResult, dicom_info: DicomSeriesInfo | None, path: str | Path) -> None:
    """Write the labels as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

    One TID 1410 measurement group per vertebra: tracking identifier = the
    level name ("L3"); finding "Vertebra" with the SNOMED CT finding site of
    the level (C1..L5; other levels are named by the tracking identifier
    only); the labeller's confidence as a NUM (local code
    :data:`CONFIDENCE_CODE`, no units); the image region: a SCOORD POINT on
    the nearest slice (what viewers draw), plus a SCOORD3D POINT (DCM
    111010 "Center", the exact world LPS point; TID 1410 is extensible).
    Patient and study come from the source images, which are listed as
    evidence and in the image library.

    Parameters
    ----------
    result : LabelResult
        Positions in world RAS mm.
    dicom_info : DicomSeriesInfo or None
        ``LoadedImage.dicom`` of the labelled series; None (NIfTI) is an error.
    path : str or Path
        The .dcm file to write (atomically).

    Raises
    ------
    InputError
        Not a DICOM input, the series files are no longer readable, or the
        object cannot be built from them.
    """
    series = _series_headers(dicom_info, "--dicom-sr")
    try:
        with _quiet_highdicom():
            dataset = _build_sr(result, dicom_info, series)  # type: ignore[arg-type]
    except ValueError as exc:  # highdicom refuses a value taken from the source headers
        raise InputError(f"cannot write the DICOM SR: {_one_line(exc)}") from exc
    _save(dataset, path)


def _build_sr(result: LabelResult, info: DicomSeriesInfo, series: _SeriesHeaders) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    name, version = _software()
    snomed = {level: code for (scheme, code), level in _snomed_levels().items()}
    algorithm = hd.sr.AlgorithmIdentification(name=f"{name} {result.model_name}", version=result.model_version)
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(), name=name, manufacturer_name=name, model_name=f"{result.model_name} {result.model_version}"
            ),
        )
    )
    groups: list[Any] = []
    used: list[Any] = []
    for placed in _place(result, series):
        header, frame = series.headers[placed.k], series.frames[placed.k]
        source = hd.sr.SourceImageForRegion.from_source_image(header, referenced_frame_numbers=[frame] if frame else None)
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT,
                                   graphic_data=placed.col_row.reshape(1, 2), source_image=source)
        site = [hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept(snomed[placed.label], "SCT", f"{placed.label} vertebra"))] \
            if placed.label in snomed else None
        confidence = hd.sr.Measurement(name=hd.sr.CodedConcept(*CONFIDENCE_CODE), value=placed.confidence,
                                       unit=codes.UCUM.NoUnits)
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=placed.label),
            referenced_region=region, finding_type=codes.SCT.Vertebra, finding_sites=site,
            algorithm_id=algorithm, measurements=[confidence],
        )
        if info.frame_of_reference_uid:
            group[0].ContentSequence.append(hd.sr.Scoord3DContentItem(
                name=codes.DCM.Center, graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                graphic_data=placed.lps.reshape(1, 3), frame_of_reference_uid=info.frame_of_reference_uid,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ))
        groups.append(group)
        if id(header) not in {id(h) for h in used}:
            used.append(header)
    procedure = codes.cid100.MRIUnspecifiedBodyRegion if info.modality == "MR" else codes.SCT.ImagingProcedure
    # highdicom's image library reads the plane attributes of single-frame images only; it is optional in TID 1500
    library = used if used and all(frame is None for frame in series.frames) else None
    report = hd.sr.MeasurementReport(observation_context=observer, procedure_reported=procedure,
                                     imaging_measurements=groups, referenced_images=library)
    return hd.sr.Comprehensive3DSR(
        evidence=series.unique_headers(), content=report, series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=name, is_complete=True, is_final=False, is_verified=False,
        series_description="spinelabel vertebra labels (SR)", software_versions=version,
        manufacturer_model_name=name,
    )


def write_gsps(result: LabelResult, dicom_info: DicomSeriesInfo | None, path: str | Path) -> None:
    """Write the labels as a Grayscale Softcopy Presentation State for the source series.

    Per vertebra, on the slice nearest to it: a POINT graphic and a text
    object (the level name, with "?" appended below
    :data:`spinelabel.results.LOW_CONFIDENCE`) anchored at the point, its
    box beside it. The presentation state applies to every image of the
    series (window and rescale taken from the images), so a PACS viewer
    shows the labels while scrolling. Points are the projection of each
    vertebra onto its slice (out of plane by at most half the slice spacing).

    Parameters
    ----------
    result : LabelResult
    dicom_info : DicomSeriesInfo or None
        ``LoadedImage.dicom``; None (NIfTI) is an error.
    path : str or Path
        The .dcm file to write (atomically).

    Raises
    ------
    InputError
        As :func:`write_sr`.
    """
    series = _series_headers(dicom_info, "--gsps")
    try:
        with _quiet_highdicom():
            dataset = _build_gsps(result, series)
    except ValueError as exc:  # highdicom refuses a value taken from the source headers
        raise InputError(f"cannot write the GSPS: {_one_line(exc)}") from exc
    _save(dataset, path)


def _text_box(plane: _Plane, col_row: np.ndarray) -> tuple[float, float, float, float]:
    """[left, top, right, bottom] pixel box beside a point (right of it, else left), inside the image."""
    size = np.array(TEXT_BOX_MM) / plane.spacing
    gap = TEXT_GAP_MM / plane.spacing[0]
    limit = np.array(plane.size, float)
    left = col_row[0] + gap
    if left + size[0] > limit[0]:
        left = col_row[0] - gap - size[0]
    top = col_row[1] - size[1] / 2
    lo = np.clip([left, top], 0.0, np.maximum(limit - size, 0.0))
    hi = np.minimum(lo + size, limit)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _build_gsps(result: LabelResult, series: _SeriesHeaders) -> Any:
    import highdicom as hd
    from pydicom.uid import generate_uid

    from ..results import LOW_CONFIDENCE

    name, version = _software()
    layer = hd.pr.GraphicLayer(layer_name=GRAPHIC_LAYER, order=1, description="vertebra labels")
    annotations = []
    for placed in _place(result, series):
        header, frame, plane = series.headers[placed.k], series.frames[placed.k], series.planes[placed.k]
        text = placed.label if placed.confidence >= LOW_CONFIDENCE else f"{placed.label}?"
        point = (float(placed.col_row[0]), float(placed.col_row[1]))
        annotations.append(hd.pr.GraphicAnnotation(
            referenced_images=[header], graphic_layer=layer, referenced_frame_number=frame,
            graphic_objects=[hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POINT,
                                                 graphic_data=placed.col_row.reshape(1, 2),
                                                 units=hd.pr.AnnotationUnitsValues.PIXEL)],
            text_objects=[hd.pr.TextObject(text_value=text, units=hd.pr.AnnotationUnitsValues.PIXEL,
                                           anchor_point=point, bounding_box=_text_box(plane, placed.col_row),
                                           text_justification=hd.pr.TextJustificationValues.LEFT)],
        ))
    return hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=series.unique_headers(), series_instance_uid=generate_uid(),
        series_number=GSPS_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=name, manufacturer_model_name=name, software_versions=version, device_serial_number="0",
        content_label=GSPS_CONTENT_LABEL, content_description=f"vertebra labels by {name} {result.model_name}",
        graphic_annotations=annotations or None, graphic_layers=[layer],
        series_description="spinelabel vertebra labels (GSPS)",
        modality_lut_transformation=_modality_lut(series.unique_headers()[0]),
    )


def _modality_lut(header: Any) -> Any:
    """The source's rescale as the GSPS modality LUT, type "US" (unspecified, as MR has no units).

    highdicom derives it itself for classic images but, for enhanced
    multi-frame ones with a Pixel Value Transformation group, asks for a
    rescale type that MR images do not carry.
    """
    import highdicom as hd

    groups = header.get("SharedFunctionalGroupsSequence") or [header]
    transform = (groups[0].get("PixelValueTransformationSequence") or [header])[0]
    slope = float(transform.get("RescaleSlope", header.get("RescaleSlope", 1.0)))
    intercept = float(transform.get("RescaleIntercept", header.get("RescaleIntercept", 0.0)))
    return hd.ModalityLUTTransformation(rescale_intercept=intercept, rescale_slope=slope, rescale_type="US")
