"""Clinical point annotations ("spine labels"): a named point per vertebra, per scan.

Two input forms are read, both giving world **RAS** millimetres:

- ``centroids.json`` (the layout of ``../shared/data/lumbar-mr/<case>/``)::

      {"case": "zukic-02", "vertebrae": [{"label": "L3", "verse_id": 22,
        "voxel": [i, j, k], "world_mm": [x, y, z]}, ...]}

  The scan id is the name of the folder holding the file. (A JSON file with
  another name, e.g. ``zukic-02.json``, uses its ``"case"`` field, else its
  stem.) ``image`` is ``image.nii.gz`` beside the file when that exists. A
  vertebra without ``"label"`` is named from ``"verse_id"`` (VerSe numbering).
  A folder given as a source means every ``centroids.json`` below it, in
  sorted path order.
- CSV with the header ``scan,label,x,y,z`` and optional ``image`` (a path
  relative to the CSV's folder, or absolute) and ``series`` (the
  SeriesInstanceUID to read when ``image`` is a DICOM folder holding several
  series) and ``frame`` (``RAS``, the default, or ``LPS``: DICOM patient
  coordinates, converted to RAS when read) columns. Rows of one scan need not
  be adjacent; other columns are ignored.
- DICOM: a folder with no ``centroids.json`` below it, or a DICOM file, is
  read by :func:`spinelabel.io.dicom_label_read.import_dicom_annotations`
  (GSPS / SR spine labels among the images they label; all DICOM sources of
  one call are read together). Items it cannot use are reported to
  ``on_problem`` and skipped; no label at all is an InputError.
- Reviewed results of ``spinelabel review`` (:mod:`spinelabel.reviewed`): a
  result JSON file, or a folder of them with no ``centroids.json`` below it;
  only accepted or corrected scans are read (in a folder, the others are
  reported and skipped).

Label text is normalised with :func:`spinelabel.anatomy.parse_level`
("l3", "L 3" -> "L3"). Points are stored cranial to caudal.

A label given twice for one scan is *not* an error here: the first point is
kept and the label is listed in :attr:`ScanAnnotation.duplicates`, so a
later cleaning step (or the user) can decide. Every other problem is an
:class:`~spinelabel.errors.InputError` with a one-line message naming the
file and the row or vertebra.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import anatomy
from .errors import InputError
from .geometry import lps_to_ras
from .io.dicom_files import is_dicom_file
from .jsonfile import read_json
from .reviewed import is_result_file, load_reviewed, result_files
from .scan_annotation import ScanAnnotation, ScanAnnotationBuilder, ordered_points

__all__ = ["CENTROIDS_NAME", "ScanAnnotation", "add_labels", "drop_implausible", "load_annotations", "save_annotations_csv"]

#: File name of a per-scan annotation file inside a case folder.
CENTROIDS_NAME = "centroids.json"
#: Image file looked for beside a ``centroids.json``.
IMAGE_NAME = "image.nii.gz"
CSV_COLUMNS = ("scan", "label", "x", "y", "z")
#: Optional CSV columns: the image file or DICOM folder, the SeriesInstanceUID
#: in it, and the coordinate frame of the row's x, y, z.
CSV_OPTIONAL_COLUMNS = ("image", "series", "frame")
#: Frames a CSV row's coordinates may be given in (blank: RAS). RAS is what
#: NIfTI tools (3D Slicer, ITK-SNAP's world readout, nibabel) show; LPS is
#: DICOM's patient coordinate system, what a PACS or a DICOM viewer exports.
#: The two differ in the signs of x and y only, so LPS numbers read as RAS give
#: plausible-looking points in the wrong place: the frame must be said.
CSV_FRAMES = ("RAS", "LPS")
#: Largest plausible |coordinate| (mm) of a point in a patient. Patient
#: coordinates are relative to the scanner's isocentre or table origin, and a
#: patient lies within about 2 m of it; a point beyond 10 m (1e30 from a bad
#: export, or metres read as micrometres) cannot be a vertebra.
MAX_COORDINATE_MM = 10_000.0


# ----------------------------------------------------------------- helpers


def _coordinate(value: object, where: str, axis: str) -> float:
    """A finite float from JSON or CSV text, else InputError naming ``where``."""
    if isinstance(value, bool):
        raise InputError(f"{where}: coordinate {axis} is not a number: {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{where}: coordinate {axis} is not a number: {value!r}") from None
    if not math.isfinite(x):
        raise InputError(f"{where}: coordinate {axis} is not finite: {value!r}")
    if abs(x) > MAX_COORDINATE_MM:
        raise InputError(f"{where}: coordinate {axis} = {x:.4g} mm is beyond +-{MAX_COORDINATE_MM:.0f} mm (not a point in a patient)")
    return x


def drop_implausible(annotations: Sequence[ScanAnnotation]) -> tuple[list[ScanAnnotation], list[str]]:
    """The annotations without points beyond :data:`MAX_COORDINATE_MM`, and one line per point dropped.

    For labels imported from DICOM, where a bad item is skipped and reported
    rather than failing the whole import; a scan left without points is dropped.
    """
    kept: list[ScanAnnotation] = []
    problems: list[str] = []
    for ann in annotations:
        bad = [lv for lv, p in ann.points.items() if not np.all(np.abs(np.asarray(p, float)) <= MAX_COORDINATE_MM)]
        for lv in bad:
            where = f" ({ann.source})" if ann.source is not None else ""
            problems.append(
                f"scan {ann.scan_id} {lv}: position {np.asarray(ann.points[lv], float).round(1).tolist()} mm is beyond "
                f"+-{MAX_COORDINATE_MM:.0f} mm{where}: label skipped"
            )
        points = {lv: p for lv, p in ann.points.items() if lv not in bad}
        if points:
            kept.append(replace(ann, points=points) if bad else ann)
    return kept, problems


def _level(text: object, where: str) -> str:
    try:
        return anatomy.parse_level(str(text))
    except ValueError as exc:  # the reason without the text it repeats: "names a disc or a range, not a vertebra"
        raise InputError(f"{where}: unknown vertebra label {str(text)!r} ({anatomy.reason(exc, str(text))})") from None


# ----------------------------------------------------------------- JSON


def _load_centroids_json(path: Path) -> ScanAnnotation:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object with a \"vertebrae\" list")
    verts = doc.get("vertebrae")
    if not isinstance(verts, list):
        raise InputError(f"{path}: no \"vertebrae\" list")
    if not verts:
        raise InputError(f"{path}: \"vertebrae\" is empty (no annotated points)")

    if path.name == CENTROIDS_NAME:
        scan_id = path.resolve().parent.name or str(doc.get("case") or path.stem)
    else:
        scan_id = str(doc.get("case") or path.stem)
    image = path.parent / IMAGE_NAME
    builder = ScanAnnotationBuilder(scan_id, image if image.exists() else None, path)

    for n, v in enumerate(verts, start=1):
        where = f"{path}: vertebra #{n}"
        if not isinstance(v, dict):
            raise InputError(f"{where}: expected an object with \"label\" and \"world_mm\"")
        if v.get("label") is not None:
            label = _level(v["label"], where)
            named = _verse_name(v.get("verse_id"))  # a placeholder id (0, none) is not checked
            if named is not None and named != label:
                raise InputError(f"{where}: \"label\" {label} and \"verse_id\" {v['verse_id']} ({named}) disagree")
        elif v.get("verse_id") is not None:
            label = _verse_name(v["verse_id"]) or ""
            if not label:
                raise InputError(f"{where}: unknown VerSe id {v['verse_id']!r}")
        else:
            raise InputError(f"{where}: no \"label\" (or \"verse_id\")")
        xyz = v.get("world_mm")
        if not isinstance(xyz, list) or len(xyz) != 3:
            raise InputError(f"{where} ({label}): \"world_mm\" must be a list of 3 numbers")
        builder.add(label, [_coordinate(c, f"{where} ({label})", a) for c, a in zip(xyz, "xyz")])
    return builder.build()


def _verse_name(vid: Any) -> str | None:
    """The level of a VerSe id (20 -> "L1"); None for anything else."""
    if isinstance(vid, bool) or not isinstance(vid, (int, float)) or not math.isfinite(vid) or int(vid) != vid:
        return None
    return anatomy.VERSE_NAME.get(int(vid))


# ----------------------------------------------------------------- CSV


def _header_wide(row: list[str], width: int, where: str) -> list[str]:
    """A CSV row as ``width`` cells: a short one padded with empty cells, one with more refused unless they are
    empty (a trailing separator), since a decimal comma splits each number in two (x=40,5 reads as x=40, y=5)."""
    if any(cell.strip() for cell in row[width:]):
        raise InputError(f"{where}: {len(row)} fields under a header of {width} "
                         "(a decimal comma? coordinates take a point: 12.5)")
    return row + [""] * (width - len(row))


def _csv_frame(text: str, where: str) -> str:
    """The coordinate frame a CSV row names (:data:`CSV_FRAMES`); RAS when blank."""
    frame = text.strip().upper() or "RAS"
    if frame not in CSV_FRAMES:
        raise InputError(f"{where}: frame {text.strip()!r} is not one of {', '.join(CSV_FRAMES)}")
    return frame


def _same_per_scan(seen: dict[str, str], scan: str, value: str, what: str, where: str) -> None:
    """Record a scan's ``image`` or ``series`` cell; a second, different one is an InputError."""
    if not value:
        return
    if scan in seen and seen[scan] != value:
        raise InputError(f"{where}: scan {scan!r} has two different {what}s ({seen[scan]!r} and {value!r})")
    seen[scan] = value


def _csv_header(path: Path, reader: Any) -> tuple[list[str], dict[str, int]]:
    """The header row and the index of each known column; InputError if a required one is missing."""
    expected = f"{','.join(CSV_COLUMNS)}[,image][,series][,frame]"
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty CSV file (expected header {expected})") from None
    except csv.Error as e:
        raise InputError(f"{path}: line 1: not valid CSV ({e})") from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise InputError(
            f"{path}: line 1: missing column(s) {', '.join(missing)} "
            f"(expected header {expected}, got {','.join(h.strip() for h in header)})"
        )
    return header, {name: names.index(name) for name in (*CSV_COLUMNS, *CSV_OPTIONAL_COLUMNS) if name in names}


def _load_csv(path: Path) -> list[ScanAnnotation]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: tolerate Excel's BOM
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (UTF-8) CSV file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header, col = _csv_header(path, reader)

    def cell(row: list[str], name: str) -> str:
        return from_spreadsheet_text(row[col[name]].strip()) if name in col else ""

    builders: dict[str, ScanAnnotationBuilder] = {}
    image_of: dict[str, str] = {}
    series_of: dict[str, str] = {}
    frame_of: dict[str, str] = {}
    try:
        for row in reader:
            if not any(cell_.strip() for cell_ in row):
                continue
            where = f"{path}: line {reader.line_num}"
            row = _header_wide(row, len(header), where)
            scan = cell(row, "scan")
            if not scan:
                raise InputError(f"{where}: empty scan id")
            label = _level(row[col["label"]], where)
            xyz = [_coordinate(row[col[a]].strip(), f"{where} ({scan} {label})", a) for a in "xyz"]
            frame = _csv_frame(cell(row, "frame"), where)
            _same_per_scan(frame_of, scan, frame, "frame", where)  # one scan's points in one frame, not a mix
            if frame == "LPS":
                xyz = [float(v) for v in lps_to_ras(xyz)]
            _same_per_scan(image_of, scan, cell(row, "image"), "image", where)
            _same_per_scan(series_of, scan, cell(row, "series"), "series", where)
            if scan not in builders:
                builders[scan] = ScanAnnotationBuilder(scan, None, path)
            builders[scan].add(label, xyz)
    except csv.Error as e:
        raise InputError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None
    if not builders:
        raise InputError(f"{path}: no annotation rows below the header")
    for scan, text_ in image_of.items():
        builders[scan].image = Path(os.path.normpath(path.parent / text_))  # absolute stays absolute; "a/../b" is "b"
    return [replace(b.build(), series_uid=series_of.get(b.scan_id)) for b in builders.values()]


# ----------------------------------------------------------------- public


def _load_file(path: Path) -> list[ScanAnnotation]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _load_csv(path)
    if suffix == ".json":
        return load_reviewed([path]) if is_result_file(path) else [_load_centroids_json(path)]
    raise InputError(f"{path}: not an annotation file (expected {CENTROIDS_NAME}, *.json, *.csv or DICOM)")


def _has_dicom_files(folder: Path) -> bool:
    return any(f.is_file() and is_dicom_file(f) for f in folder.rglob("*"))


def _ignore_problem(message: str) -> None:
    """The default ``on_problem``: library code reports nothing itself (the command line passes a callback)."""


def _load_dicom_sources(sources: list[Path], on_problem: Callable[[str], None]) -> list[ScanAnnotation]:
    """Spine labels from GSPS/SR objects among DICOM images; InputError if none is found."""
    from .io.dicom_label_read import import_dicom_annotations

    imported = import_dicom_annotations(sources)
    annotations, implausible = drop_implausible(imported.annotations)
    problems = [*imported.problems, *implausible]
    for message in problems:
        on_problem(message)
    if not annotations:
        where = str(sources[0]) if len(sources) == 1 else f"{sources[0]} and {len(sources) - 1} more"
        reason = f": {problems[0]}" if problems else ""
        raise InputError(f"{where}: no spine labels found in the DICOM files{reason}")
    return annotations


def load_annotations(
    sources: Sequence[str | Path], on_problem: Callable[[str], None] | None = None
) -> list[ScanAnnotation]:
    """Read point annotations from files and folders (see the module docstring).

    ``sources`` may mix ``centroids.json`` / ``*.json`` files, CSV files,
    folders (every ``centroids.json`` below, sorted) and DICOM files or
    folders (GSPS / SR labels with their images, read together). Scans are
    returned in the order found, DICOM scans last. A file reached twice
    (e.g. a folder and a file inside it) is read once.

    Parameters
    ----------
    on_problem : callable, optional
        Receives one line per skipped item (a DICOM object, an unreviewed
        result in a folder); the caller shows it (``spinelabel`` prints
        ``warning: ...``). None: skipped items are not reported.

    Raises
    ------
    InputError
        A source is missing or unreadable, a folder holds neither
        ``centroids.json`` nor DICOM files, a file is malformed (the message
        names the file and the row or vertebra), DICOM sources hold no usable
        label, or two sources annotate the same scan id.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files, reviewed, dicom_sources = _classify_sources(sources)
    seen: set[Path] = set()
    loaded: list[tuple[Path, list[ScanAnnotation]]] = []
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        loaded.append((f, _load_file(f)))
    if reviewed:
        loaded.append((reviewed[0], load_reviewed(reviewed, on_problem or _ignore_problem)))
    if dicom_sources:
        loaded.append((dicom_sources[0], _load_dicom_sources(dicom_sources, on_problem or _ignore_problem)))
    return _unique_scans(loaded)


def _classify_sources(sources: Sequence[str | Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(annotation files, reviewed result files, DICOM files and folders) named by ``sources``.

    Raises
    ------
    InputError
        A source is missing, not a file or folder, or a folder with nothing to read.
    """
    files: list[Path] = []
    reviewed: list[Path] = []  # result JSONs of `spinelabel review` in the folders given
    dicom_sources: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(f for f in p.rglob(CENTROIDS_NAME) if f.is_file())
            if found:
                files.extend(found)
            elif results := result_files(p):
                reviewed.extend(results)
            elif _has_dicom_files(p):
                dicom_sources.append(p)
            else:
                raise InputError(f"{p}: no {CENTROIDS_NAME} found in this folder or below (and no DICOM files)")
        elif p.is_file():
            if p.suffix.lower() not in (".csv", ".json") and is_dicom_file(p):
                dicom_sources.append(p)
            else:
                files.append(p)
        elif p.exists():
            raise InputError(f"{p}: not a file or folder")
        else:
            raise InputError(f"{p}: no such file or folder")
    return files, reviewed, dicom_sources


def _unique_scans(loaded: list[tuple[Path, list[ScanAnnotation]]]) -> list[ScanAnnotation]:
    """The annotations in order; a scan id annotated by two sources is an ``InputError``."""
    out: list[ScanAnnotation] = []
    origin: dict[str, Path] = {}
    for f, anns in loaded:
        for ann in anns:
            if ann.scan_id in origin:
                raise InputError(
                    f"{f}: scan {ann.scan_id!r} is already annotated in {origin[ann.scan_id]} (scan ids must be unique)"
                )
            origin[ann.scan_id] = f
            out.append(ann)
    return out

def add_labels(
    annotations: Sequence[ScanAnnotation], extra: Sequence[ScanAnnotation]
) -> tuple[list[ScanAnnotation], int]:
    """Add the points of ``extra`` to the scans of the same id (levels the annotations lack, e.g. S1).

    Extra scans whose id is not among ``annotations`` are ignored (they may
    belong to scans excluded from this run).

    Returns
    -------
    annotations : list of ScanAnnotation
        In the input order; extended scans get their points re-sorted cranial to caudal.
    n_extended : int
        How many scans received points.

    Raises
    ------
    InputError
        An extra label is already annotated in its scan (which point is right
        is for the user to decide, not for a merge).
    """
    by_id = {a.scan_id: a for a in extra}
    out, n = [], 0
    for ann in annotations:
        more = by_id.get(ann.scan_id)
        if more is None:
            out.append(ann)
            continue
        clash = sorted(set(more.points) & set(ann.points), key=anatomy.ordinal)
        if clash:
            raise InputError(
                f"{more.source}: scan {ann.scan_id!r} already has {', '.join(clash)} in {ann.source} "
                "(extra labels may only add levels)"
            )
        out.append(replace(ann, points=ordered_points({**ann.points, **more.points})))
        n += 1
    return out, n


def _atomic_write_text(path: Path, text: str) -> None:
    from .io.outputs import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """A CSV text cell that a spreadsheet shows as text: a leading ' before a formula character.

    Every CSV that spinelabel writes passes its text cells through this (no
    formula injection from a scan id, a path or a message).
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


def from_spreadsheet_text(text: str) -> str:
    """Inverse of :func:`spreadsheet_text`: a cell as read back from a CSV that spinelabel wrote."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def save_annotations_csv(
    annotations: Sequence[ScanAnnotation], path: str | Path, relative_to: str | Path | None = None
) -> None:
    """Write annotations as CSV ``scan,label,x,y,z[,image][,series]`` (atomic: temp file + rename).

    The ``image`` column is written when any scan has an image; it holds the
    path relative to the CSV's folder, or to ``relative_to`` where the file is
    written elsewhere first (a staged file renamed into that folder later;
    absolute when no relative path exists, e.g. another drive). The ``series`` column (SeriesInstanceUID)
    is written when any scan has one. Coordinates are written with full
    float precision, so :func:`load_annotations` reads back the same points.
    Duplicated labels (only their first point is kept) are not written. Text
    cells that a spreadsheet would run as a formula (starting with = + - @)
    get a leading ``'``, which :func:`load_annotations` removes again.
    """
    path = Path(path)
    with_image = any(a.image is not None for a in annotations)
    with_series = any(a.series_uid for a in annotations)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS] + ["image"] * with_image + ["series"] * with_series)
    base = os.path.abspath(path.parent if relative_to is None else relative_to)
    for ann in annotations:
        image = ""
        if ann.image is not None:
            try:
                image = Path(os.path.relpath(os.path.abspath(ann.image), base)).as_posix()
            except ValueError:  # no relative path (Windows: another drive)
                image = os.path.abspath(ann.image)
        for label, xyz in ann.points.items():
            row = [spreadsheet_text(ann.scan_id), label, *(repr(float(c)) for c in np.asarray(xyz, float).reshape(3))]
            writer.writerow(row + [spreadsheet_text(image)] * with_image + [spreadsheet_text(ann.series_uid or "")] * with_series)
    _atomic_write_text(path, buf.getvalue())
