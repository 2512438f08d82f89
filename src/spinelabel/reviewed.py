"""Reviewed results as training annotations: the labels a radiologist confirmed in ``spinelabel review``.

A reviewed result is the JSON of ``spinelabel label`` (schema v1) with a
``"review"`` record (docs/output-format.md). Only scans whose review status is
accepted or corrected become annotations; the points are the vertebrae's
``position_mm`` (world RAS), the image is the record's ``image`` (and
``series_uid`` for a DICOM folder), and the scan id is the JSON's file name
without ``.json`` (the name ``spinelabel review`` gave the scan).

A JSON file that looks like a result (it has a ``"schema_version"``, or
``"vertebrae"`` with ``"position_mm"`` points) but cannot be used (cut short,
another schema version, malformed) is reported with its reason, as an
unreviewed one is; other JSON files are not results and are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError
from .jsonfile import is_finite_number, read_json
from .scan_annotation import ScanAnnotation, ScanAnnotationBuilder

__all__ = ["ACCEPTED", "CORRECTED", "REVIEWED_STATES", "UNREVIEWED", "check_schema", "is_result_file", "load_reviewed",
           "result_files", "review_status"]

#: Review states of a scan, as ``spinelabel review`` writes them.
UNREVIEWED, ACCEPTED, CORRECTED = "unreviewed", "accepted", "corrected"
#: The states whose labels a person has confirmed: only these are training data.
REVIEWED_STATES = (ACCEPTED, CORRECTED)
#: The result schema version this reader understands (``io.outputs.SCHEMA_VERSION``).
RESULT_SCHEMA_VERSION = 1
#: Characters shown of an unsupported schema_version (a version is a short number; anything else is cut).
SHOWN_CHARS = 20
#: What the text of a result JSON holds (its first key), even when the file was cut short.
RESULT_MARK = b'"schema_version"'


def check_schema(doc: Any, path: Path) -> dict[str, Any]:
    """``doc``, read from ``path``, checked to be a result of the schema this spinelabel reads.

    Raises
    ------
    InputError
        Another schema version (said so), or no result at all.
    """
    if isinstance(doc, dict) and "schema_version" in doc and doc["schema_version"] != RESULT_SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version {repr(doc['schema_version'])[:SHOWN_CHARS]} is not supported "
                         f"(this spinelabel reads version {RESULT_SCHEMA_VERSION})")
    if not isinstance(doc, dict) or "schema_version" not in doc or not isinstance(doc.get("vertebrae"), list):
        raise InputError(f"{path}: not a spinelabel result (schema_version 1 with a \"vertebrae\" list)")
    return doc


def _looks_like_result(doc: Any) -> bool:
    """A result, or what is meant as one: a ``"schema_version"``, or points named ``"position_mm"``."""
    if not isinstance(doc, dict):
        return False
    vertebrae = doc.get("vertebrae")
    points = isinstance(vertebrae, list) and any(isinstance(v, dict) and "position_mm" in v for v in vertebrae)
    return "schema_version" in doc or points


def _result_doc(path: Path) -> dict[str, Any]:
    """The result document in ``path``; InputError when it is no readable JSON or no result (:func:`check_schema`)."""
    return check_schema(read_json(path), path)


def is_result_file(path: Path) -> bool:
    """Whether ``path`` holds a spinelabel result JSON, or what looks like one (usable or not).

    Such a file is read as a result (:func:`load_reviewed`), which says what
    is wrong with it rather than reading it as another kind of annotation.
    """
    try:
        return _looks_like_result(read_json(path))
    except InputError:  # not JSON, perhaps cut short: a result when its text has the result's first key
        try:
            return RESULT_MARK in path.read_bytes()
        except OSError:
            return False


def result_files(folder: Path) -> list[Path]:
    """The result JSON files in ``folder`` or below, sorted (hidden files and folders left out)."""
    found = sorted(f for f in folder.rglob("*.json") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(folder).parts))
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
        if not all(is_finite_number(c) for c in xyz):
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
        Receives one line per file that cannot be used (not reviewed yet, not
        readable, another schema version, malformed, reviewed with no
        vertebra), which is skipped; when
        None, such a file is an error.

    Raises
    ------
    InputError
        A file cannot be used and ``on_problem`` is None, or no result is reviewed.
    """
    out: list[ScanAnnotation] = []
    for path in files:
        try:
            doc = _result_doc(path)
            status = review_status(doc)
            if status not in REVIEWED_STATES:
                raise InputError(
                    f"{path}: not reviewed yet (status {status}): confirm it with 'spinelabel review' first")
            if not doc["vertebrae"]:  # a reviewer removed every label (not a spine, another body part)
                raise InputError(f"{path}: reviewed ({status}) with no vertebra: nothing to train on")
            out.append(_annotation(path, doc))
        except InputError as exc:
            if on_problem is None:
                raise
            on_problem(f"{exc}; skipped")
    if not out:
        where = str(files[0].parent) if files else "the given files"
        raise InputError(f"{where}: no reviewed result (accepted or corrected) with labels")
    return out
