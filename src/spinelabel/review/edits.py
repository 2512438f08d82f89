"""A reviewer's corrections: checked edit operations applied to a result document, and the review record.

The page sends a list of operations in display-voxel coordinates (slice, row,
column of the sagittal display grid); :func:`apply_ops` checks every one of
them, converts positions to world RAS mm and input voxels, and returns the new
vertebra list and the changes to record. Nothing is applied unless every
operation is valid.

The review record added to the result JSON (schema v1, docs/output-format.md)::

    "review": {"status": "corrected", "image": "/abs/input", "series_uid": null,
               "events": [{"reviewer": "...", "time": "2026-12-01T12:00:00Z",
                           "action": "corrected", "changes": [...]}]}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .. import anatomy
from ..cleaning_geometry import out_of_order, spine_axis
from ..errors import InputError
from ..results import LabelResult, Vertebra
from ..reviewed import ACCEPTED, CORRECTED, REVIEWED_STATES, UNREVIEWED, review_status
from ..warning_codes import document_warnings

#: Confidence given to a label the reviewer placed or renamed: a person's label, not the model's estimate.
REVIEWER_CONFIDENCE = 1.0
#: Most operations one save may carry: far more than any scan has labels (26 levels), small enough to bound the work.
MAX_OPS = 1000
#: Decimals kept for positions in the JSON (0.01 mm, as ``io.outputs.result_to_dict`` writes).
POSITION_DECIMALS = 2


__all__ = ["ACCEPTED", "CORRECTED", "REVIEWED_STATES", "UNREVIEWED", "DisplayGrid", "ReviewOrderError",
           "ReviewRequestError", "apply_ops", "check_order", "result_of", "review_status", "with_review"]


class ReviewRequestError(InputError):
    """A review request from the page is malformed (unknown label, bad coordinates, unknown operation)."""


class ReviewOrderError(ReviewRequestError):
    """The names are out of order along the spine (a rename or a move slipped); saved only when confirmed."""


def check_order(vertebrae: list[dict[str, Any]]) -> None:
    """Refuse names whose positions do not run head to foot in level order.

    Positions are projected on the spine's axis (``cleaning_geometry``, the
    check ``annotations check`` makes later, when the reviewer can no longer
    see the scan); the names off every longest head-to-foot run are named.

    Parameters
    ----------
    vertebrae : list of dict
        Cranial to caudal by level, each with ``"label"`` and ``"position_mm"`` (world RAS mm).

    Raises
    ------
    ReviewOrderError
    """
    if len(vertebrae) < 2:
        return
    points = np.array([v["position_mm"] for v in vertebrae], float)
    bad = out_of_order(points @ spine_axis(points))
    if bad:
        names = ", ".join(vertebrae[i]["label"] for i in bad)
        raise ReviewOrderError(f"names out of order from head to foot: {names} (a rename or a move slipped?)")


@dataclass(frozen=True)
class DisplayGrid:
    """Maps display voxels (slice, row, column) to world RAS mm and input voxels.

    Attributes
    ----------
    to_world : callable
        (3,) display voxel -> (3,) world RAS mm.
    to_input_voxel : callable
        (3,) world RAS mm -> (3,) input voxel.
    shape : tuple of int
        (slices, rows, columns) of the display grid.
    """

    to_world: Callable[[np.ndarray], np.ndarray]
    to_input_voxel: Callable[[np.ndarray], np.ndarray]
    shape: tuple[int, int, int]


def _level(value: Any) -> str:
    """A level name from the page ("l3" -> "L3"), else ReviewRequestError."""
    try:
        return anatomy.parse_level(str(value))
    except ValueError:
        raise ReviewRequestError(f"unknown vertebra label {str(value)[:20]!r}") from None


def _display_voxel(op: dict[str, Any], grid: DisplayGrid) -> np.ndarray:
    """The (slice, row, column) of an operation: JSON numbers (no text, no true/false), finite, inside the image."""
    values = [op.get(key) for key in ("slice", "row", "col")]
    numbers = [x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)]
    try:
        ijk = np.array([float(x) for x in numbers])  # an integer of 400 digits: OverflowError
    except OverflowError:
        ijk = np.array([math.inf])
    if len(ijk) != len(values) or not all(math.isfinite(x) for x in ijk):
        raise ReviewRequestError("an operation needs slice, row and col as finite numbers")
    if np.any(ijk < -0.5) or np.any(ijk > np.asarray(grid.shape) - 0.5):
        raise ReviewRequestError(f"position {ijk.round(1).tolist()} lies outside the image {list(grid.shape)}")
    return ijk


def _rounded(xyz: np.ndarray) -> list[float]:
    """A position as the JSON keeps it (:data:`POSITION_DECIMALS`)."""
    return [round(float(x), POSITION_DECIMALS) for x in xyz]


def _entry(label: str, world: np.ndarray, grid: DisplayGrid, confidence: float) -> dict[str, Any]:
    """One vertebra of the result JSON."""
    return {
        "label": label,
        "verse_id": anatomy.VERSE_ID[label],
        "position_mm": _rounded(world),
        "voxel": _rounded(grid.to_input_voxel(world)),
        "confidence": confidence,
    }


def _find(vertebrae: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """The vertebra called ``label``, else ReviewRequestError."""
    for v in vertebrae:
        if v["label"] == label:
            return v
    raise ReviewRequestError(f"no label {label} in this scan")


def _apply_one(op: Any, verts: list[dict[str, Any]], grid: DisplayGrid) -> dict[str, Any] | None:
    """Apply one operation to ``verts`` (in place) and return the change to record (None: nothing changed)."""
    if not isinstance(op, dict):
        raise ReviewRequestError("each operation must be a JSON object")
    kind, label = op.get("op"), _level(op.get("label"))
    if kind == "add":
        if any(v["label"] == label for v in verts):
            raise ReviewRequestError(f"{label} is already labeled in this scan")
        world = grid.to_world(_display_voxel(op, grid))
        verts.append(_entry(label, world, grid, REVIEWER_CONFIDENCE))
        return {"op": "add", "label": label, "position_mm": _rounded(world)}
    v = _find(verts, label)
    if kind == "delete":
        verts.remove(v)
        return {"op": "delete", "label": label, "position_mm": v["position_mm"]}
    if kind == "move":
        world = grid.to_world(_display_voxel(op, grid))
        verts[verts.index(v)] = _entry(label, world, grid, REVIEWER_CONFIDENCE)
        return {"op": "move", "label": label, "from_mm": v["position_mm"], "to_mm": _rounded(world)}
    if kind == "rename":
        new = _level(op.get("to"))
        if new == label:  # a rename to its own name changes nothing: no correction, no reviewer confidence
            return None
        if any(w["label"] == new for w in verts):
            raise ReviewRequestError(f"cannot rename {label} to {new}: {new} is already labeled")
        verts[verts.index(v)] = {**v, "label": new, "verse_id": anatomy.VERSE_ID[new], "confidence": REVIEWER_CONFIDENCE}
        return {"op": "rename", "from": label, "to": new}
    raise ReviewRequestError(f"unknown operation {str(kind)[:20]!r} (add, delete, move or rename)")


def apply_ops(vertebrae: list[dict[str, Any]], ops: Any, grid: DisplayGrid) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The vertebrae after the reviewer's operations, cranial to caudal, and the changes made.

    Parameters
    ----------
    vertebrae : list of dict
        The ``"vertebrae"`` of a result document (not modified).
    ops : list of dict
        ``{"op": "move"|"add", "label", "slice", "row", "col"}``,
        ``{"op": "rename", "label", "to"}`` or ``{"op": "delete", "label"}``,
        applied in order (coordinates are JSON numbers). A rename to the
        label's own name changes nothing and records no change.
    grid : DisplayGrid

    Raises
    ------
    ReviewRequestError
        Any operation is malformed or impossible (then nothing is applied).
    """
    if not isinstance(ops, list):
        raise ReviewRequestError("\"ops\" must be a list")
    if len(ops) > MAX_OPS:
        raise ReviewRequestError(f"too many operations ({len(ops)} > {MAX_OPS})")
    verts = [dict(v) for v in vertebrae]
    changes = [change for op in ops if (change := _apply_one(op, verts, grid)) is not None]
    verts.sort(key=lambda v: anatomy.ordinal(v["label"]))
    return verts, changes


def utc_now() -> str:
    """The current time, ISO 8601 UTC to the second (``2026-12-01T12:00:00Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_review(
    doc: dict[str, Any], vertebrae: list[dict[str, Any]], changes: list[dict[str, Any]], reviewer: str,
    image: str, series_uid: str | None, order_confirmed: bool = False,
) -> dict[str, Any]:
    """A copy of ``doc`` with the reviewed vertebrae and one more review event.

    The status is "corrected" once any event changed a label, else "accepted".
    ``order_confirmed``: the reviewer saved names out of head-to-foot order on
    purpose; the event says so (``annotations check`` and ``train`` still
    drop such points: the chain model has no reversed order).
    """
    old = doc.get("review")
    old = old if isinstance(old, dict) else {}
    events = [*old.get("events", []), {
        "reviewer": reviewer, "time": utc_now(), "action": CORRECTED if changes else ACCEPTED, "changes": changes,
        **({"order_confirmed": True} if order_confirmed else {}),
    }]
    status = CORRECTED if any(e.get("changes") for e in events) else ACCEPTED
    review = {"status": status, "image": image, "series_uid": series_uid, "events": events}
    return {**doc, "vertebrae": vertebrae, "review": review}


def _upside_down_check(doc: dict[str, Any]) -> str:
    """The document's record of the upside-down check (``checks.upside_down``); empty where it holds none, or a
    hand-edited one that is no text in an object."""
    checks = doc.get("checks")
    check = checks.get("upside_down") if isinstance(checks, dict) else None
    return check if isinstance(check, str) else ""


def result_of(doc: dict[str, Any]) -> LabelResult:
    """The ``LabelResult`` a result document describes (for the SR and GSPS writers).

    A reviewed document's warnings have been answered by its reviewer, so
    none go on (the GSPS would otherwise mark every name of a scan whose count
    was in doubt); the document itself keeps them.
    """
    model = doc.get("model") or {}
    vertebrae = [
        Vertebra(v["label"], np.asarray(v["position_mm"], float), np.asarray(v["voxel"], float), float(v["confidence"]))
        for v in doc["vertebrae"]
    ]
    return LabelResult(
        region=str(doc.get("region", "")), model_name=str(model.get("name", "")),
        model_version=str(model.get("version", "")), model_sha256=str(model.get("sha256", "")), vertebrae=vertebrae,
        warnings=[] if review_status(doc) in REVIEWED_STATES else document_warnings(doc),
        upside_down_check=_upside_down_check(doc),
    )
