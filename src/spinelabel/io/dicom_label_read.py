"""Spine labels from DICOM: read the GSPS and SR annotations clinicians saved.

The inputs are files and folders (searched recursively) holding sagittal
image series mixed with the presentation states (GSPS) and structured
reports (SR) that clinicians saved while labelling them. Images are indexed
by SOPInstanceUID; every label found on an image is mapped to world RAS mm
through that image's own ImagePositionPatient / ImageOrientationPatient /
PixelSpacing. The result is one :class:`~spinelabel.scan_annotation.ScanAnnotation`
per labelled sagittal series, plus a list of one-line problems (an item that
cannot be used is skipped and named; the rest is imported).

- GSPS (and the colour / pseudo-colour presentation states, which share the
  Graphic Annotation module): per referenced image, text objects
  (UnformattedTextValue at its AnchorPoint, else at the centre of its
  BoundingBox) are paired with graphic objects (POINT, a small POLYLINE /
  INTERPOLATED / CIRCLE / ELLIPSE -> its centre, an arrow -> its tip) within
  :data:`PAIR_RADIUS_MM`, least summed distance first
  (:mod:`spinelabel.io.dicom_label_marks`); the graphic gives the point. A
  text with no graphic nearby is the point itself.
- Objects holding an algorithm's labels (spinelabel's own unless a reviewer
  confirmed them, an SR with only a device observer) are skipped and said.
- SR (Enhanced, Comprehensive, Comprehensive 3D, Extensible; e.g. TID 1500
  Measurement Reports): every SCOORD and SCOORD3D, named from nearby content
  (:mod:`spinelabel.io.dicom_label_sr`).

Pixel coordinates follow :mod:`spinelabel.io.dicom_label_common`.

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
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, one_line
from ..geometry import lps_to_ras
from ..scan_annotation import ScanAnnotation, ScanAnnotationBuilder
from .dicom import LOCALIZER, ORIENTATION_TOL
from .dicom_files import read_dicom
from .dicom_label_common import GSPS_SOP_CLASS, SOFTWARE_NAME
from .dicom_label_index import Found, ImageIndex, check_on_image, floats, image_refs, single_image
from .dicom_label_marks import MAX_SHAPE_MM, PAIR_RADIUS_MM, Marks, Skip, pair_marks, try_level
from .dicom_label_sr import device_observed, read_sr

__all__ = ["MAX_SHAPE_MM", "PAIR_RADIUS_MM", "DicomImport", "import_dicom_annotations"]

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
#: Two points given for one level of one series (two readers, or a GSPS and an SR) name the same vertebra
#: when they are at most this far apart (mm) in the sagittal plane (a reader may click on a slice beside the
#: middle one: a body is ~45 mm wide). A body-centre point varies between readers by about the
#: localisation errors of the paper (1.2-2.6 mm); 10 mm is a third of a lumbar body's height and more than
#: half a cervical level (spacing ~17 mm): points farther apart mark different vertebrae, or no centre.
DUPLICATE_AGREEMENT_MM = 10.0


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
# reading: files


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


def _scan_files(files: list[Path], problems: list[str]) -> tuple[ImageIndex, list[tuple[Path, Any]]]:
    """Index the images; return the presentation states and SRs in file order."""
    from pydicom.errors import InvalidDicomError

    index, objects = ImageIndex(), []
    for path in files:
        try:
            ds = read_dicom(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not a DICOM file: skipped silently, like the image loader
        except Exception as exc:  # pydicom raises many types for damaged files
            problems.append(f"{path}: malformed DICOM file, skipped ({one_line(exc)})")
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
# reading: presentation states (GSPS)


def _pixel_units(item: Any, keyword: str, where: str) -> None:
    units = str(item.get(keyword, "") or "").upper()
    if units != "PIXEL":
        raise Skip(f"{where}: {units or 'no'} annotation units (only PIXEL units are read)")


def _text_position(text: Any, where: str) -> tuple[np.ndarray, bool]:
    """Anchor point, else bounding-box centre, in pixel coordinates (2,); and whether it is the box's."""
    if text.get("AnchorPoint") is not None:
        _pixel_units(text, "AnchorPointAnnotationUnits", where)
        return floats(text.AnchorPoint, 2, where)[0], False
    if text.get("BoundingBoxTopLeftHandCorner") is not None and text.get("BoundingBoxBottomRightHandCorner") is not None:
        _pixel_units(text, "BoundingBoxAnnotationUnits", where)
        corners = floats([*text.BoundingBoxTopLeftHandCorner, *text.BoundingBoxBottomRightHandCorner], 2, where)
        return corners.mean(axis=0), True
    raise Skip(f"{where}: text without anchor point or bounding box")


def _screen_fixed(item: Any) -> bool:
    """Whether a graphic annotation is only text fixed to the screen (DISPLAY units): a note, such as our GSPS's
    warning lines, that names no point of the image, so no label (passed over without a problem)."""
    texts = item.get("TextObjectSequence", []) or []
    keys = ("AnchorPointAnnotationUnits", "BoundingBoxAnnotationUnits")
    units = [str(t.get(k, "") or "").upper() for t in texts for k in keys if t.get(k) is not None]
    return bool(texts) and not item.get("GraphicObjectSequence") and bool(units) and set(units) == {"DISPLAY"}


def _gsps_marks(path: Path, ds: Any, problems: list[str]) -> dict[tuple[str, int | None], Marks]:
    """Texts and graphics of a presentation state, per referenced image."""
    applies_to = [ref for series in ds.get("ReferencedSeriesSequence", []) or []
                  for ref in image_refs(series.get("ReferencedImageSequence"))]
    marks: dict[tuple[str, int | None], Marks] = {}
    ours = _is_ours(ds)
    if not ds.get("GraphicAnnotationSequence"):
        problems.append(f"{path}: presentation state without graphic annotations (truncated?): nothing to import")
    for n, item in enumerate(ds.get("GraphicAnnotationSequence", []) or [], start=1):
        where = f"{path}: graphic annotation #{n}"
        if _screen_fixed(item):  # a note on the screen, such as our GSPS's warning lines; one that names a level is said
            for text in item.get("TextObjectSequence", []) or []:
                value = str(text.get("UnformattedTextValue", "") or "").strip()
                if not ours and try_level(value) is not None:
                    problems.append(f"{where}: text {value!r} is fixed to the screen (DISPLAY units), not to a point "
                                    "of the image (skipped)")
            continue
        # without its own ReferencedImageSequence an annotation applies to every image of the state
        refs = image_refs(item.ReferencedImageSequence) if "ReferencedImageSequence" in item else applies_to
        try:
            key = single_image(refs, where)
        except Skip as exc:
            problems.append(f"{exc} (skipped)")
            continue
        bucket = marks.setdefault(key, Marks())
        for text in item.get("TextObjectSequence", []) or []:
            value = str(text.get("UnformattedTextValue", "") or "")
            if ours:  # our GSPS marks an unsure name "L3?" (none in a reviewed one): the name is the level
                value = value.rstrip().removesuffix("?")
            twhere = f"{where}, text {value.strip()!r}"
            try:
                position, boxed = _text_position(text, twhere)
                bucket.texts.append((value, position, twhere, boxed))
            except Skip as exc:
                problems.append(f"{exc} (skipped)")
        for g, graphic in enumerate(item.get("GraphicObjectSequence", []) or [], start=1):
            gtype = str(graphic.get("GraphicType", "") or "")
            gwhere = f"{where}, graphic #{g} ({gtype})"
            try:
                _pixel_units(graphic, "GraphicAnnotationUnits", gwhere)
                points = floats(graphic.get("GraphicData"), 2, gwhere)
            except Skip as exc:
                problems.append(f"{exc} (skipped)")
                continue
            bucket.graphics.append((gtype, points, gwhere, str(graphic.get("TrackingID", "") or "") or None))
    return marks


def _read_presentation_state(path: Path, ds: Any, index: ImageIndex, problems: list[str]) -> list[Found]:
    """Named points of a GSPS (see the module docstring)."""
    found = []
    referenced = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", None) or []}
    for (uid, frame), marks in _one_key_per_image(_gsps_marks(path, ds, problems), index).items():
        names = ", ".join(repr(t.strip()) for t, _, _, _ in marks.texts) or "graphics only"
        try:
            plane = index.plane(uid, frame)
        except Skip as exc:
            problems.append(f"{path}: labels on image {uid} ({names}): {exc} (skipped)")
            continue
        series = index.images[uid].series_uid
        if referenced and series not in referenced:  # an annotation pointing into a series the state does not present
            problems.append(f"{path}: labels on image {uid} ({names}) of series {series}, which the presentation state "
                            "does not reference (skipped)")
            continue
        for label, col_row in pair_marks(marks, plane.spacing, problems):
            try:
                check_on_image(col_row, plane)
            except Skip as exc:
                problems.append(f"{path}: {label} on image {uid}: {exc} (skipped)")
                continue
            found.append(Found(series, label, plane.to_lps(col_row)[0], path))
    return found


def _one_key_per_image(marks: dict[tuple[str, int | None], Marks], index: ImageIndex) -> dict[tuple[str, int | None], Marks]:
    """``marks`` with frame 1 of a single-frame image taken as the image itself: a viewer may reference the text
    without a frame number and its mark as frame 1, and the two must be paired."""
    out: dict[tuple[str, int | None], Marks] = {}
    for (uid, frame), found in marks.items():
        if frame == 1 and uid in index.images and not index.multi_frame(uid):
            frame = None
        bucket = out.setdefault((uid, frame), Marks())
        bucket.texts.extend(found.texts)
        bucket.graphics.extend(found.graphics)
    return out


# ----------------------------------------------------------------------------
# reading: public entry point


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _scan_ids(series_uids: list[str], index: ImageIndex) -> dict[str, str]:
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


def _group(found: list[Found], index: ImageIndex, problems: list[str]) -> list[ScanAnnotation]:
    """One ScanAnnotation per sagittal series, in order of first label."""
    order: list[str] = []
    for f in found:
        if f.series_uid not in order:
            order.append(f.series_uid)
    kept = []
    for uid in order:
        why = _not_a_scan(uid, index)
        if why:
            n = sum(f.series_uid == uid for f in found)
            problems.append(f"series {uid}: {why}; its {n} label(s) were skipped")
            continue
        kept.append(uid)
    ids = _scan_ids(kept, index)
    out = []
    for uid in kept:
        mine = _agreeing([f for f in found if f.series_uid == uid], problems)
        if not mine:
            continue
        builder = ScanAnnotationBuilder(ids[uid], _series_folder(index.series_files(uid)), mine[0].source, uid)
        for f in mine:
            builder.add(f.label, [float(c) for c in lps_to_ras(f.lps)])
        out.append(builder.build())
    return out


def _not_a_scan(series_uid: str, index: ImageIndex) -> str | None:
    """Why a series cannot be a training scan (not sagittal, a localizer), or None.

    A localizer (scout) is typed ``LOCALIZER`` in ImageType, or mixes planes
    (a 3-plane localizer's first image may be sagittal): its labels are a
    quick mark for planning, on images the loader refuses to stack.
    """
    plane = index.first_plane(series_uid)
    if plane is None or not plane.is_sagittal:
        return "not a sagittal series"
    headers = [index.images[uid].header for uid in index.series_images[series_uid]]
    if any(LOCALIZER in [str(v).upper() for v in (h.get("ImageType") or [])] for h in headers):
        return "a localizer (ImageType LOCALIZER), not a sagittal series to train on"
    cosines = np.array([np.asarray(h.ImageOrientationPatient, float)[:6] for h in headers
                        if len(h.get("ImageOrientationPatient") or []) >= 6])
    if len(cosines) and np.abs(cosines - cosines[0]).max() > ORIENTATION_TOL:  # the image loader's: one stack
        return "images of several orientations in one series (a localizer?), not a sagittal series to train on"
    return None


def _agreeing(found: list[Found], problems: list[str]) -> list[Found]:
    """The labels of one series without the levels given twice at places more than
    :data:`DUPLICATE_AGREEMENT_MM` apart (each such level said); a level given twice at one place stays (the
    first point is used, the repeat listed as a duplicate)."""
    by_level: dict[str, list[Found]] = {}
    for f in found:
        by_level.setdefault(f.label, []).append(f)
    disputed = set()
    for level, same in by_level.items():
        apart = max(float(np.linalg.norm((g.lps - h.lps)[1:])) for g in same for h in same)  # sagittal plane (P, S)
        if apart > DUPLICATE_AGREEMENT_MM:
            disputed.add(level)
            sources = sorted({str(g.source) for g in same})
            where = f"in {sources[0]}" if len(sources) == 1 else f"by {', '.join(sources)}"
            problems.append(f"series {same[0].series_uid}: {level} is given {len(same)} times {where}, up to "
                            f"{apart:.0f} mm apart: the labels disagree on which vertebra it is, so it was skipped")
    return [f for f in found if f.label not in disputed]


def _is_ours(ds: Any) -> bool:
    """Whether spinelabel wrote this SR or GSPS (its Manufacturer)."""
    return str(ds.get("Manufacturer", "") or "") == SOFTWARE_NAME


def _machine_made(ds: Any) -> str | None:
    """Why an object holds an algorithm's labels rather than a person's; None when it is a person's (or unknown).

    spinelabel's own SR and GSPS carry its name as Manufacturer (those a
    review confirmed are verified by, or created by, the reviewer: a person's);
    another product's SR names only a device as its observer (TID 1002).
    Training on either would teach a model an algorithm's answers, its
    confident errors too.
    """
    if _is_ours(ds):
        if ds.get("VerificationFlag") == "VERIFIED" or str(ds.get("ContentCreatorName", "") or ""):
            return None  # confirmed in `spinelabel review`: a person's labels (SR verified by, GSPS created by them)
        return f"written by {SOFTWARE_NAME} itself (the model's labels, not a person's; train on reviewed results)"
    if device_observed(ds):
        return "its only observer is a device (an algorithm's labels, not a person's)"
    return None


def import_dicom_annotations(sources: Sequence[str | Path] | str | Path, own_outputs: bool = False) -> DicomImport:
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
        ``problems``: one line per item or file that was skipped. Objects
        holding an algorithm's labels (:func:`_machine_made`) are skipped,
        each with a line, unless ``own_outputs``: then spinelabel's own are
        read, an unsure name's "?" dropped (what tests of the writers use).

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
    found: list[Found] = []
    for path, ds in objects:
        kind = PRESENTATION_STATE_CLASSES.get(_sop_class(ds)) or SR_SOP_CLASSES[_sop_class(ds)]
        try:
            machine = None if own_outputs and _is_ours(ds) else _machine_made(ds)
            if machine is not None:
                problems.append(f"{path}: {kind} {machine}: skipped")
                continue
            if _sop_class(ds) in PRESENTATION_STATE_CLASSES:
                found.extend(_read_presentation_state(path, ds, index, problems))
            else:
                found.extend(read_sr(path, ds, index, problems))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OSError, EOFError) as exc:
            problems.append(f"{path}: malformed {kind}, skipped ({one_line(exc)})")
    if not objects:
        problems.append(f"no GSPS or SR objects found in {', '.join(str(s) for s in sources)}")
    return DicomImport(_group(found, index, problems), problems, len(objects))
