"""Result documents under review: checked when read, and checked against the image they are opened with.

:func:`read_result` reads a ``labels/NAME.json`` and refuses anything the
page could not show or save faithfully (a position that is no number, a
confidence of NaN, a label given twice, a malformed review record).
:func:`check_matches_source` and :func:`check_matches_image` refuse a result
that belongs to another scan: a name reused by another input, or another
series of the same folder. A NIfTI result moved onto another image with the
same grid cannot be told apart this way.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import anatomy
from ..errors import InputError
from ..io import parse_dicom_description
from ..jsonfile import is_finite_number
from ..reviewed import check_schema
from ..warning_codes import document_warnings

if TYPE_CHECKING:
    from ..io import LoadedImage

#: How far (mm) a vertebra's ``position_mm`` may lie from its ``voxel`` mapped through the image's affine:
#: both are rounded to 0.01 (a few hundredths of a mm apart), while another image's grid puts them mm apart.
POSITION_TOLERANCE_MM = 0.5
#: How far (voxels) outside the image grid a vertebra's voxel may lie: half a voxel to the grid's edge,
#: plus the half voxel a centre of a body cut by the edge may lie beyond it (``io.outputs.label_map``).
VOXEL_MARGIN = 1.0
#: What to do about a result that belongs to another scan.
REMEDY = "use another --labels folder, or remove that file to label this scan afresh"


def digest(payload: bytes) -> str:
    """The SHA-256 of a file's bytes: tells whether the file on disk changed since it was read."""
    return hashlib.sha256(payload).hexdigest()


def _vertebra_problem(v: Any, seen: set[str]) -> str | None:
    """Why one entry of ``"vertebrae"`` is unusable, or None."""
    if not isinstance(v, dict) or v.get("label") not in anatomy.VERSE_ID:
        return "needs a known label"
    label = v["label"]
    for key in ("position_mm", "voxel"):
        xyz = v.get(key)
        if not isinstance(xyz, list) or len(xyz) != 3 or not all(is_finite_number(x) for x in xyz):
            return f'({label}): "{key}" must be a list of 3 finite numbers'
    confidence = v.get("confidence")
    if not is_finite_number(confidence) or not 0.0 <= confidence <= 1.0:
        return f'({label}): "confidence" must be a number from 0 to 1'
    if label in seen:
        return f"({label}): {label} is labeled twice"
    seen.add(label)
    return None


def _review_problem(review: Any) -> str | None:
    """Why a ``"review"`` record is unusable, or None."""
    if not isinstance(review, dict):
        return '"review" must be an object'
    events = review.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return '"review" "events" must be a list of objects'
    if not isinstance(review.get("series_uid"), (str, type(None))):
        return '"review" "series_uid" must be a text or null'
    return None


def check_result_doc(doc: Any, path: Path) -> dict[str, Any]:
    """``doc``, read from ``path``, checked to be a schema-v1 result the page can show and save.

    Raises
    ------
    InputError
        One line naming ``path`` and the first problem.
    """
    doc = check_schema(doc, path)
    if not isinstance(doc.get("input"), str):
        raise InputError(f'{path}: "input" must be the text naming the labeled image')
    seen: set[str] = set()
    for n, v in enumerate(doc["vertebrae"], start=1):
        if (problem := _vertebra_problem(v, seen)) is not None:
            raise InputError(f"{path}: vertebra #{n} {problem}")
    if "review" in doc and (problem := _review_problem(doc["review"])) is not None:
        raise InputError(f"{path}: {problem}")
    try:
        document_warnings(doc)
    except ValueError as exc:
        raise InputError(f"{path}: its warning_codes do not fit its warnings ({exc})") from None
    return doc


def parse_result(payload: bytes, path: Path) -> dict[str, Any]:
    """The checked result document in a file's bytes (:func:`check_result_doc`).

    Raises
    ------
    InputError
        Not UTF-8, not JSON (NaN and Infinity are not JSON), or not a usable result.
    """
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (UTF-8) JSON file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    return check_result_doc(doc, path)


def _refuse_constant(name: str) -> Any:
    """``json.loads`` reads NaN and Infinity by default: they are not JSON, and no position or confidence."""
    raise ValueError(f"{name} is not a JSON number")


def read_result(path: Path) -> tuple[dict[str, Any], str]:
    """An existing result JSON (``spinelabel label`` or a saved review) and the digest of its bytes.

    Raises
    ------
    InputError
        Unreadable, not JSON, or not a usable schema-v1 result (:func:`check_result_doc`).
    """
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_result(payload, path), digest(payload)


def doc_series_uid(doc: dict[str, Any]) -> str | None:
    """The SeriesInstanceUID a result was labeled or reviewed on, None for a NIfTI result."""
    review = doc.get("review")
    if isinstance(review, dict) and isinstance(review.get("series_uid"), str):
        return str(review["series_uid"])
    parts = parse_dicom_description(str(doc.get("input", "")))
    return parts[0] if parts else None


def _what(doc: dict[str, Any]) -> str:
    """What a result was labeled on, in words."""
    uid = doc_series_uid(doc)
    return f"DICOM series {uid}" if uid is not None else f"the NIfTI image {doc.get('input', '')}"


def check_matches_source(doc: dict[str, Any], path: Path, source: Path, series: str | None) -> None:
    """Refuse a result that belongs to another scan, where that shows without reading the image.

    A NIfTI result for a DICOM folder, a DICOM result for a NIfTI file, or
    the result of another series than ``--series`` names.

    Raises
    ------
    InputError
    """
    from ..io.nifti import is_nifti_path

    uid = doc_series_uid(doc)
    if uid is not None and is_nifti_path(source):
        raise InputError(f"{path} holds the labels of {_what(doc)}, not of the NIfTI image {source}: {REMEDY}")
    if uid is None and source.is_dir():
        raise InputError(f"{path} holds the labels of {_what(doc)}, not of the DICOM folder {source}: {REMEDY}")
    if uid is not None and series is not None and uid != series:
        raise InputError(f"{path} holds the labels of DICOM series {uid}, not of series {series}: {REMEDY}")


def check_matches_image(doc: dict[str, Any], path: Path, loaded: LoadedImage) -> None:
    """Refuse a result that was not labeled on ``loaded``: another kind, series or grid.

    Each vertebra's ``voxel`` must lie inside the image (:data:`VOXEL_MARGIN`)
    and map through the image's affine to its ``position_mm``
    (:data:`POSITION_TOLERANCE_MM`).

    Raises
    ------
    InputError
        One line naming ``path``, what it was labeled on and what it is opened with.
    """
    uid = doc_series_uid(doc)
    if loaded.dicom is None and uid is not None:
        raise InputError(f"{path} holds the labels of {_what(doc)}, not of the NIfTI image {loaded.source}: {REMEDY}")
    if loaded.dicom is not None:
        actual = loaded.dicom.series_instance_uid
        if uid is None:
            raise InputError(f"{path} holds the labels of {_what(doc)}, not of DICOM series {actual}: {REMEDY}")
        if uid != actual:
            raise InputError(f"{path} holds the labels of DICOM series {uid}, not of series {actual}: {REMEDY}")
    for v in doc["vertebrae"]:
        if (where := _misplaced(v, loaded)) is not None:
            raise InputError(
                f"{path} does not fit the image {loaded.source} ({v['label']} at voxel {v['voxel']} lies "
                f"{where}; labeled on {_what(doc)}): it holds the labels of another image, or its "
                f"positions were changed: {REMEDY}"
            )


def _misplaced(v: dict[str, Any], loaded: LoadedImage) -> str | None:
    """Where a vertebra's voxel lies when it does not fit the image (outside it, or off its position), else None."""
    shape = np.asarray(loaded.volume.shape, float)
    voxel = np.asarray(v["voxel"], float)
    if np.any(voxel < -VOXEL_MARGIN) or np.any(voxel > shape - 1 + VOXEL_MARGIN):
        return f"outside its grid {shape.astype(int).tolist()}"
    with np.errstate(over="ignore", invalid="ignore"):  # a position of 1e308 is far off, not a warning
        off = float(np.linalg.norm(loaded.volume.voxel_to_world(voxel) - np.asarray(v["position_mm"], float)))
    if off <= POSITION_TOLERANCE_MM:
        return None
    return f"{off:.1f} mm from its position_mm" if math.isfinite(off) else "impossibly far from its position_mm"


__all__ = ["check_matches_image", "check_matches_source", "check_result_doc", "digest", "parse_result", "read_result"]
