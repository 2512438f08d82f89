"""What a label drawn on one DICOM image names, and where: texts paired with the marks they label.

A viewer's spine label is a text (``"L3"``) and, mostly, a mark beside it: a
point, a small outline, or an arrow from the text to the vertebra. This module
turns the texts and graphics of one image into (level, pixel point) pairs:

- a shape marks its centre (:func:`shape_centre`); a two-point line is an
  arrow, which marks the end away from its text;
- texts and marks are paired so that the summed distance is least
  (:func:`pair_marks`), each within :data:`PAIR_RADIUS_MM`; a text left
  without a mark is the point itself (at its anchor point, or at the centre of
  its box, which is said).

Pixel coordinates follow :mod:`spinelabel.io.dicom_label_common`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import anatomy

__all__ = ["MAX_SHAPE_MM", "PAIR_RADIUS_MM", "Marks", "Skip", "level_of_text", "pair_marks", "shape_centre", "try_level"]

#: A text and a graphic on one image belong together when they are at most this
#: far apart (mm, in-plane). Labels are typed next to the mark they name; 30 mm
#: is below the lumbar centre-to-centre spacing (~35-40 mm, see
#: anatomy.typical_spacing_mm), so a label does not reach the next-but-one
#: vertebra.
PAIR_RADIUS_MM = 30.0
#: What leaving one text or one mark unpaired costs in the pairing (mm): half the
#: radius, so that a pair closer than PAIR_RADIUS_MM is made exactly when it
#: lowers the sum. At the full radius per item the pairing made as many pairs as
#: it could before looking at distance (a stray mark took a text from its own).
UNPAIRED_COST_MM = PAIR_RADIUS_MM / 2
#: A two-point line is an arrow from its text when the text lies at most this
#: fraction as far from one end as from the other; otherwise (a line drawn across
#: a body, labelled near its middle) it marks its middle.
ARROW_END_RATIO = 0.5
#: Largest extent (mm) of a shape taken as marking one vertebra: a vertebral
#: body is ~35 mm deep and ~30 mm high on a sagittal image, so an outline of one
#: body fits; a larger shape (a long line, an outline of several levels) does not
#: mark one vertebra's centre.
MAX_SHAPE_MM = 60.0


class Skip(Exception):
    """One annotation item cannot be used; the message says which and why."""


def shape_centre(graphic_type: str, points: np.ndarray, spacing: np.ndarray | None, what: str) -> np.ndarray:
    """Centre of a marked shape: points (N, D) -> (D,); Skip for big or unsupported shapes.

    ``spacing`` (D,) converts the points to mm for the size check (None: already mm).
    """
    kind = graphic_type.upper()
    n = len(points)
    if n == 0:
        raise Skip(f"{what}: {kind} without coordinates")
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
        raise Skip(f"{what}: graphic type {kind} with {n} points does not mark one point")
    scaled = extent * (spacing if spacing is not None else 1.0)
    size = float(np.max(np.linalg.norm(scaled[:, None, :] - scaled[None, :, :], axis=-1)))
    if size > MAX_SHAPE_MM:
        raise Skip(f"{what}: {kind} spanning {size:.0f} mm is too large to mark one vertebra (> {MAX_SHAPE_MM:.0f} mm)")
    return centre


def arrow_ends(graphic_type: str, points: np.ndarray) -> np.ndarray | None:
    """The two ends (2, D) of an open two-point line (an arrow, or a line drawn like one); None for other shapes."""
    if graphic_type.upper() in ("POLYLINE", "INTERPOLATED") and len(points) == 2 and not np.array_equal(*points):
        return points
    return None


def level_of_text(text: str) -> str:
    """The level a label text names; Skip with the reason otherwise."""
    try:
        return anatomy.parse_level(text)
    except ValueError as exc:  # the reason without the text it repeats
        raise Skip(f"unknown vertebra label {text.strip()!r} ({anatomy.reason(exc, text)})") from None


def try_level(text: str) -> str | None:
    try:
        return level_of_text(text)
    except Skip:
        return None


@dataclass
class Marks:
    """What is drawn on one image: texts (text, (2,) pixel position, where, placed by its box alone) and
    graphics (graphic type, (N, 2) pixel points, where, TrackingID or None)."""

    texts: list[tuple[str, np.ndarray, str, bool]] = field(default_factory=list)
    graphics: list[tuple[str, np.ndarray, str, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class _Mark:
    centre: np.ndarray  # (2,) pixels
    ends: np.ndarray | None  # (2, 2) pixels, for an arrow
    where: str
    tracking: str | None


def _distance_and_point(text_at: np.ndarray, mark: _Mark, spacing: np.ndarray) -> tuple[float, np.ndarray]:
    """How far a text is from a mark (mm) and the point the pair names: an arrow's end away from the text."""
    to_centre = float(np.linalg.norm((text_at - mark.centre) * spacing))
    if mark.ends is None:
        return to_centre, mark.centre
    ends = np.linalg.norm((mark.ends - text_at) * spacing, axis=1)
    if ends.min() <= ARROW_END_RATIO * ends.max():  # the text sits at one end: an arrow pointing away from it
        return float(ends.min()), mark.ends[int(np.argmax(ends))]
    return to_centre, mark.centre


def _least_total_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    """(text, mark) pairs of least summed cost, each closer than :data:`PAIR_RADIUS_MM`; the rest unpaired.

    Leaving a text or a mark unpaired costs :data:`UNPAIRED_COST_MM` (a dummy
    column per text, a dummy row per mark). Pairing nearest-first instead gave each text
    the mark of the level above when every text sat a little above its own.
    """
    from scipy.optimize import linear_sum_assignment

    n_text, n_mark = cost.shape
    big = 1e6
    full = np.full((n_text + n_mark, n_mark + n_text), big)
    full[:n_text, :n_mark] = np.where(cost <= PAIR_RADIUS_MM, cost, big)
    full[:n_text, n_mark:] = np.where(np.eye(n_text, dtype=bool), UNPAIRED_COST_MM, big)
    full[n_text:, :n_mark] = np.where(np.eye(n_mark, dtype=bool), UNPAIRED_COST_MM, big)
    full[n_text:, n_mark:] = 0.0
    rows, cols = linear_sum_assignment(full)
    return [(int(t), int(g)) for t, g in zip(rows, cols) if t < n_text and g < n_mark and cost[t, g] <= PAIR_RADIUS_MM]


def pair_marks(marks: Marks, spacing: np.ndarray, problems: list[str]) -> list[tuple[str, np.ndarray]]:
    """(label, (2,) pixel point) per vertebra label on one image; problems for the rest.

    ``spacing`` (2,): mm per pixel (column, row). Every text is paired, those
    naming no vertebra too, so that the mark of a refused text ("L3/L4 disc")
    is not given to another. A paired label takes its mark's point; an
    unpaired one its own position (said when that is only the centre of its
    text box); an unpaired mark is used only when its TrackingID names a
    vertebra.
    """
    texts: list[tuple[str | None, np.ndarray, str, bool]] = []
    for text, position, where, boxed in marks.texts:
        try:
            texts.append((level_of_text(text), position, where, boxed))
        except Skip as exc:
            problems.append(f"{where}: {exc} (skipped)")
            texts.append((None, position, where, boxed))
    found: list[_Mark] = []
    for gtype, points, where, tracking in marks.graphics:
        try:
            found.append(_Mark(shape_centre(gtype, points, spacing, where), arrow_ends(gtype, points), where, tracking))
        except Skip as exc:
            problems.append(f"{exc} (skipped)")
    measured = [[_distance_and_point(pos, m, spacing) for m in found] for _, pos, _, _ in texts]
    cost = np.array([[d for d, _ in row] for row in measured]).reshape(len(texts), len(found))
    mark_of = dict(_least_total_pairs(cost)) if cost.size else {}
    out = []
    for t, (label, position, where, boxed) in enumerate(texts):
        if label is None:
            continue
        if t in mark_of:
            out.append((label, measured[t][mark_of[t]][1]))
            continue
        if boxed:
            problems.append(f"{where}: no mark within {PAIR_RADIUS_MM:.0f} mm; placed at the centre of its text box, "
                            "which may lie beside the vertebra (check it)")
        out.append((label, position))
    for g, mark in enumerate(found):
        if g in mark_of.values():
            continue
        level = try_level(mark.tracking) if mark.tracking else None
        if level is not None:
            out.append((level, mark.centre))
        else:
            problems.append(f"{mark.where}: no vertebra label within {PAIR_RADIUS_MM:.0f} mm (skipped)")
    return out
