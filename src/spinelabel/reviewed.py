"""Reviewed results as training annotations: the labels a radiologist confirmed in ``spinelabel review``.

A reviewed result is the JSON of ``spinelabel label`` (schema v1) with a
``"review"`` record (docs/output-format.md). Only scans whose review status is
accepted or corrected become annotations; the points are the vertebrae's
``position_mm`` (world RAS), the image is the record's ``image`` (and
``series_uid`` for a DICOM folder), and the scan id is the JSON's file name
without ``.json`` (the name ``spinelabel review`` gave the scan).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError
from .jsonfile import read_json
from .scan_annotation import ScanAnnotation, ScanAnnotationBuilder

__all__ = ["ACCEPTED", "CORRECTED", "REVIEWED_STATES", "UNREVIEWED", "is_result_file", "load_reviewed", "result_files",
           "review_status"]

#: Review states of a scan, as ``spinelabel review`` writes them.
UNREVIEWED, ACCEPTED, CORRECTED = "unreviewed", "accepted", "corrected"
#: The states whose labels a person has confirmed: only these are training data.
REVIEWED_STATES = (ACCEPTED, CORRECTED)
#: The result schema version this reader understands (``io.outputs.SCHEMA_VERSION``).
RESULT_SCHEMA_VERSION = 1


def _read(path: Path) -> Any:
    """The JSON in ``path``, or None when it is not readable JSON."""
    try:
        return read_json(path)
    except InputError:
        return None


def _is_result(doc: Any) -> bool:
    """Whether a JSON value is a result document (schema v1 with a vertebra list)."""
    return isinstance(doc, dict) and doc.get("schema_version") == RESULT_SCHEMA_VERSION and isinstance(doc.get("vertebrae"), list)


def is_result_file(path: Path) -> bool:
    """Whether ``path`` holds a spinelabel result JSON (schema v1), reviewed or not."""
    return _is_result(_read(path))


def result_files(folder: Path) -> list[Path]:
    """The result JSON files in ``folder`` or below, sorted (hidden files left out)."""
    found = sorted(f for f in folder.rglob("*.json") if f.is_file() and not f.name.startswith("."))
    return [f for f in found if is_result_file(f)]


def review_status(doc: dict[str, Any]) -> str:
    """unreviewed, accepted or corrected: the state a result document records (unreviewed without a valid record)."""
    review = doc.get("review")
    if not isinstance(review, dict) or review.get("status") not in REVIEWED_STATES:
        return UNREVIEWED
    return str(review["status"])


def _annotation(path: Path, doc: dict[str, Any]) -> ScanAnnotation:
    """The confirmed points of one reviewed result."""
    from . import anatomy

    review = doc["review"]
    image = review.get("image")
    if not isinstance(image, str) or not image:
        raise InputError(f"{path}: the review record names no image")
    series = review.get("series_uid")
    builder = ScanAnnotationBuilder(path.stem, path.parent / image, path, series if isinstance(series, str) else None)
    for n, v in enumerate(doc["vertebrae"], start=1):
        where = f"{path}: vertebra #{n}"
        xyz = v.get("position_mm") if isinstance(v, dict) else None
        if not isinstance(xyz, list) or len(xyz) != 3:
            raise InputError(f"{where}: \"position_mm\" must be a list of 3 numbers")
        try:
            label = anatomy.parse_level(str(v.get("label")))
        except ValueError:
            raise InputError(f"{where}: unknown vertebra label {str(v.get('label'))!r}") from None
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in xyz):
            raise InputError(f"{where} ({label}): \"position_mm\" must hold finite numbers")
        builder.add(label, [float(c) for c in xyz])
    return builder.build()


def load_reviewed(files: Sequence[Path], on_problem: Callable[[str], None] | None = None) -> list[ScanAnnotation]:
    """The annotations of the reviewed (accepted or corrected) results among ``files``.

    Parameters
    ----------
    files : sequence of Path
        Result JSON files.
    on_problem : callable, optional
        Receives one line per result that is not reviewed yet (skipped); when
        None, such a result is an error.

    Raises
    ------
    InputError
        A file is not a result, a reviewed result is malformed, an unreviewed
        one is given without ``on_problem``, or no result is reviewed.
    """
    out: list[ScanAnnotation] = []
    for path in files:
        doc = _read(path)
        if not _is_result(doc):
            raise InputError(f"{path}: not a spinelabel result (schema_version 1 with a \"vertebrae\" list)")
        status = review_status(doc)
        if status not in REVIEWED_STATES:
            message = f"{path}: not reviewed yet (status {status}): confirm it with 'spinelabel review' first"
            if on_problem is None:
                raise InputError(message)
            on_problem(f"{message}; skipped")
            continue
        if doc["vertebrae"]:
            out.append(_annotation(path, doc))
    if not out:
        where = str(files[0].parent) if files else "the given files"
        raise InputError(f"{where}: no reviewed result (accepted or corrected) with labels")
    return out
