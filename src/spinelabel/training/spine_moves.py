"""Moves of the spine in a training crop: caudal segments turned or slipped, discs narrowed, bodies collapsed.

Each move is defined on the source image's in-plane (row, col) mm, where rows
run inferior, and carries both the image (``source_of``: where the moved image
reads the original) and the annotated centres (``points``), so that image and
targets move together. Plain functions over the annotated centres, shape
(N, 3) (lateral, row, col) mm in cranio-caudal order; the caller owns the
random generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import SamplerSpec

__all__ = ["Collapse", "SegmentMove", "apply_moves", "bend_moves", "disc", "narrow_move", "random_collapse",
           "segment_move"]


@dataclass(frozen=True)
class SegmentMove:
    """A rigid move of the in-plane part of the spine caudal to a disc (source mm, (row, col)).

    Rows run inferior, so the spine direction ``down`` points from the upper
    vertebra to the lower one. Positions beyond the disc line by more than
    ``blend`` mm move by ``x -> hinge + R (x - hinge) + slip``; the move fades
    linearly to nothing across the band of +-``blend`` mm around the line.
    """

    hinge: np.ndarray  # (2,)
    down: np.ndarray  # (2,) unit
    rotation: np.ndarray  # (2, 2)
    slip: np.ndarray  # (2,)
    blend: float
    first_moved: int  # index of the first point (cranio-caudal order) caudal to the disc

    def _weight(self, y: np.ndarray) -> np.ndarray:
        """(...,) share of the move at positions y (..., 2) of the moved image."""
        along = (y - self.hinge) @ self.down
        return np.clip(0.5 + along / (2.0 * self.blend), 0.0, 1.0)

    def source_of(self, y: np.ndarray) -> np.ndarray:
        """Where the moved image at y (..., 2) reads the original image (..., 2)."""
        back = self.hinge + (y - self.hinge - self.slip) @ self.rotation  # R^T applied to row vectors
        return y + self._weight(y)[..., None] * (back - y)

    def points(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) points with the in-plane coordinates of the caudal ones moved."""
        out = points_mm.copy()
        tail = out[self.first_moved :, 1:]
        out[self.first_moved :, 1:] = self.hinge + (tail - self.hinge) @ self.rotation.T + self.slip
        return out


def segment_move(rng: np.random.Generator, points_mm: np.ndarray, spec: SamplerSpec) -> SegmentMove | None:
    """A random caudal-segment move at a random annotated disc, or None (not drawn, or < 2 points)."""
    if len(points_mm) < 2 or rng.random() >= spec.p_segment:
        return None
    i = int(rng.integers(len(points_mm) - 1))
    hinge, down = disc(points_mm, i)
    theta = np.deg2rad(rng.uniform(-spec.segment_rotation_deg, spec.segment_rotation_deg))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    across = np.array([-down[1], down[0]])
    slip = across * rng.uniform(-spec.segment_slip_mm, spec.segment_slip_mm)
    return SegmentMove(hinge, down, rotation, slip, spec.segment_blend_mm, i + 1)


def narrow_move(rng: np.random.Generator, points_mm: np.ndarray, spec: SamplerSpec) -> SegmentMove | None:
    """A random annotated disc narrowed: the spine caudal to it moved up along the spine, or None (not drawn)."""
    if len(points_mm) < 2 or spec.p_narrow <= 0.0 or rng.random() >= spec.p_narrow:  # no draw when off
        return None
    i = int(rng.integers(len(points_mm) - 1))
    hinge, down = disc(points_mm, i)
    step = float(np.linalg.norm(points_mm[i + 1, 1:] - points_mm[i, 1:]))
    slip = -down * rng.uniform(0.0, spec.narrow_fraction) * step
    return SegmentMove(hinge, down, np.eye(2), slip, spec.segment_blend_mm, i + 1)


@dataclass(frozen=True)
class Collapse:
    """One body compressed about its centre (source mm, (row, col)); every annotated centre stays where it is.

    Along the spine (``down``) a body of half-height ``body`` is squeezed to
    ``k`` of it, ``k`` running from ``k_front`` at ``depth`` mm anterior of the
    centre to ``k_back`` as far posterior; the band out to ``band`` mm (the
    discs) stretches to fill, and nothing beyond it or more than
    ``2 * depth`` to either side moves.
    """

    centre: np.ndarray  # (2,)
    down: np.ndarray  # (2,) unit, rows run inferior
    body: float
    band: float
    depth: float
    k_front: float
    k_back: float

    def source_of(self, y: np.ndarray) -> np.ndarray:
        """Where the collapsed image at y (..., 2) reads the original image (..., 2)."""
        rel = y - self.centre
        along = rel @ self.down
        across = rel @ np.array([-self.down[1], self.down[0]])  # + towards increasing columns: posterior
        k = np.interp(across, [-self.depth, self.depth], [self.k_front, self.k_back])
        a, inner = np.abs(along), np.abs(along) <= k * self.body
        stretched = self.body + (a - k * self.body) * (self.band - self.body) / (self.band - k * self.body)
        src = np.where(inner, a / k, np.where(a < self.band, stretched, a))
        shift = np.where(np.abs(across) < 2.0 * self.depth, src - a, 0.0) * np.sign(along)
        return y + shift[..., None] * self.down


#: A body's half-height, the reach of the discs beside it and its half-depth, as
#: fractions of the mean step to its neighbours (a lumbar body ~0.6 of a step
#: tall, its discs ~0.27, ~1 step deep).
COLLAPSE_BODY, COLLAPSE_BAND, COLLAPSE_DEPTH = 0.3, 0.8, 0.5
#: The least height a collapsed body's front keeps (a fraction of its own):
#: a vertebra plana keeps about a fifth, and a wedge never closes to a point.
MIN_FRONT_HEIGHT = 0.2


def random_collapse(rng: np.random.Generator, points_mm: np.ndarray, spec: SamplerSpec) -> Collapse | None:
    """A random annotated body with neighbours on both sides collapsed, or None (not drawn)."""
    if len(points_mm) < 3 or spec.p_collapse <= 0.0 or rng.random() >= spec.p_collapse:  # no draw when off
        return None
    i = int(rng.integers(1, len(points_mm) - 1))
    above, here, below = points_mm[i - 1 : i + 2, 1:]
    step = float(np.linalg.norm(here - above) + np.linalg.norm(below - here)) / 2.0
    down = (below - above) / max(float(np.linalg.norm(below - above)), 1e-6)
    k = rng.uniform(*spec.collapse_height)
    wedge = rng.uniform(0.0, spec.collapse_wedge)
    k_front = max(k - wedge / 2.0, MIN_FRONT_HEIGHT)
    return Collapse(here.copy(), down, COLLAPSE_BODY * step, COLLAPSE_BAND * step, COLLAPSE_DEPTH * step,
                    k_front, min(k + wedge / 2.0, 1.0))


def disc(points_mm: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """In-plane midpoint and unit cranio-caudal direction (2,) of the step from point i to point i + 1."""
    upper, lower = points_mm[i, 1:], points_mm[i + 1, 1:]
    return (upper + lower) / 2, (lower - upper) / max(float(np.linalg.norm(lower - upper)), 1e-6)


def bend_moves(rng: np.random.Generator, points_mm: np.ndarray, spec: SamplerSpec) -> list[SegmentMove]:
    """A random sagittal bend of the annotated chain as one turn per annotated disc (cranio-caudal order), or []."""
    n = len(points_mm)
    if n < 3 or spec.p_bend <= 0.0 or rng.random() >= spec.p_bend:  # no draw when off: samples stay as they were
        return []
    step = np.deg2rad(rng.uniform(-spec.bend_deg, spec.bend_deg)) / (n - 1)
    rotation = np.array([[np.cos(step), -np.sin(step)], [np.sin(step), np.cos(step)]])
    return [SegmentMove(*disc(points_mm, i), rotation, np.zeros(2), spec.segment_blend_mm, i + 1) for i in range(n - 1)]


def apply_moves(moves: list[SegmentMove], points_mm: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) and reading positions (..., 2) under moves at discs of the original chain.

    Each move is defined on the original image with its own hinge; composed
    caudal move first, every hinge stays where it was when its move applies:
    points move caudal-first, reading positions undo the cranial move first.
    """
    ordered = sorted(moves, key=lambda m: m.first_moved)
    for m in ordered:
        y = m.source_of(y)
    for m in reversed(ordered):
        points_mm = m.points(points_mm)
    return points_mm, y
