"""The geometry of a chain of labeled points: their order along the spine, spacings, and the line of neighbours.

Pure functions over level -> world RAS mm points and a
:class:`~spinelabel.shape_model.ShapeModel`, used by the checks of
:mod:`spinelabel.cleaning` (and the pseudo-labels of ``training.anchors``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import anatomy
from .labeling import LabelingParams
from .shape_model import PRIOR_SD_FRACTION, ShapeModel

__all__ = [
    "Pair",
    "chain_of",
    "level_pairs",
    "line_deviation",
    "local_spacing",
    "off_line",
    "on_the_line",
    "out_of_order",
    "sagittal",
    "size_factor",
    "size_factor_of_pairs",
    "spine_axis",
    "z_score",
]

#: Points far from the S-I axis: if the points' principal axis is more than
#: 60 deg from S-I (cosine below 0.5) it is not trusted and S-I is used. The
#: 52 shared scans are all within 16 deg (cosine >= 0.96); lordosis tilts a
#: lumbar segment by at most ~45 deg.
MIN_AXIS_COSINE = 0.5
#: A per-scan size factor (median of distance / expected distance) is
#: estimated from at least 3 pairs: the median then survives one bad pair.
MIN_PAIRS_FOR_SCALE = 3
#: Size-factor range: the labeler's own patient-size grid (+-25 %).
SCALE_RANGE = (min(LabelingParams().scale_grid), max(LabelingParams().scale_grid))
#: Without a size factor, patient size adds this fraction of the expected
#: distance to the sd (adult spacings vary by 10-15 %; shape_model.PRIOR_SD_FRACTION).
SIZE_SD_FRACTION = PRIOR_SD_FRACTION


def spine_axis(points: np.ndarray) -> np.ndarray:
    """The caudal unit direction along which points on a spine are ordered.

    The principal axis of the points (first right singular vector of the
    centred points), pointing caudally (negative z); world -z when there are
    fewer than 3 points or the principal axis is more than ~60 deg from S-I
    (:data:`MIN_AXIS_COSINE`).
    """
    caudal = np.array([0.0, 0.0, -1.0])
    pts = np.asarray(points, float).reshape(-1, 3)
    if len(pts) < 3:
        return caudal
    _, _, vt = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)
    axis = vt[0] / np.linalg.norm(vt[0])
    if abs(axis @ caudal) < MIN_AXIS_COSINE:
        return caudal
    return axis if axis @ caudal >= 0 else -axis


def out_of_order(positions_along: Sequence[float]) -> list[int]:
    """Indices that are not in *every* longest increasing subsequence.

    ``positions_along`` are the points' caudal coordinates in level order
    (cranial level first); in a correct annotation they increase. A point
    displaced past its neighbours is the only one outside the longest
    increasing run; for a swapped pair, each of the two is left out of some
    longest run, so both are returned.
    """
    t = np.asarray(positions_along, float)
    n = len(t)
    if n < 2:
        return []
    f = np.ones(n, int)  # longest increasing subsequence ending at i
    for i in range(n):
        for j in range(i):
            if t[j] < t[i]:
                f[i] = max(f[i], f[j] + 1)
    g = np.ones(n, int)  # ... starting at i
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            if t[j] > t[i]:
                g[i] = max(g[i], g[j] + 1)
    best = int(f.max())
    on_some = f + g - 1 == best
    flagged = []
    for i in range(n):
        # i is on every longest run iff it is on one and no other index on a
        # longest run shares its position f[i] in such a run
        unique = on_some[i] and sum(1 for k in range(n) if on_some[k] and f[k] == f[i]) == 1
        if not unique:
            flagged.append(i)
    return flagged


def chain_of(levels: Sequence[str]) -> tuple[str, ...]:
    """The standard chain with the transitional variants present in ``levels``."""
    return anatomy.chain(tuple(v for v in anatomy.VARIANT_AFTER if v in levels))


def local_spacing(shape: ShapeModel, level: str) -> float:
    """Expected distance (mm) from ``level`` to its adjacent levels (mean of both sides)."""
    chain = chain_of([level])
    i = chain.index(level)
    sides = []
    if i > 0:
        sides.append(shape.adjacent(chain[i - 1], level)[0])
    if i < len(chain) - 1:
        sides.append(shape.adjacent(level, chain[i + 1])[0])
    return float(np.mean(sides))


def sagittal(v: np.ndarray) -> np.ndarray:
    """The (y, z) components: the sagittal plane, where clinicians click."""
    return np.asarray(v, float)[..., 1:]


@dataclass(frozen=True)
class Pair:
    """Two consecutive annotated levels and how their distance fits the shape model."""

    upper: str
    lower: str
    distance: float
    mean: float
    sd: float
    missing: tuple[str, ...]  # levels between them that were not annotated

    @property
    def label(self) -> str:
        return f"{self.upper}-{self.lower}"


def level_pairs(points: Mapping[str, np.ndarray], shape: ShapeModel) -> list[Pair]:
    """Consecutive annotated levels with distance, expected mean and sd (unscaled)."""
    levels = list(points)
    chain = chain_of(levels)
    variants = tuple(v for v in anatomy.VARIANT_AFTER if v in levels)
    out = []
    for a, b in zip(levels, levels[1:]):
        mean, sd = shape.expected(a, b, variants)
        between = chain[chain.index(a) + 1 : chain.index(b)]
        out.append(Pair(a, b, float(np.linalg.norm(points[b] - points[a])), mean, sd, tuple(between)))
    return out


def size_factor_of_pairs(pairs: Sequence[Pair], min_pairs: int = MIN_PAIRS_FOR_SCALE) -> float | None:
    """Median of distance / expected distance over the pairs, clipped to SCALE_RANGE; None if too few."""
    if len(pairs) < min_pairs:
        return None
    ratio = float(np.median([p.distance / p.mean for p in pairs]))
    return float(np.clip(ratio, *SCALE_RANGE))


def size_factor(
    points: Mapping[str, np.ndarray], shape: ShapeModel, min_pairs: int = MIN_PAIRS_FOR_SCALE
) -> float | None:
    """A scan's size relative to the shape model, from its annotated points.

    Parameters
    ----------
    points : mapping
        Level -> (3,) world mm, in any order.

    Returns
    -------
    float or None
        Median ratio of the distances between consecutive annotated levels to
        their expected distances, clipped to ``SCALE_RANGE``; None with fewer
        than ``min_pairs`` pairs.
    """
    ordered = {lv: points[lv] for lv in sorted(points, key=anatomy.ordinal)}
    return size_factor_of_pairs(level_pairs(ordered, shape), min_pairs)


def z_score(pair: Pair, scale: float | None) -> float:
    """Signed z-score of a pair's distance at the scan's size factor."""
    if scale is None:
        sd = math.hypot(pair.sd, SIZE_SD_FRACTION * pair.mean)
        return (pair.distance - pair.mean) / sd
    return (pair.distance - scale * pair.mean) / (scale * pair.sd)


def line_deviation(points: Mapping[str, np.ndarray], a: str, b: str, c: str, shape: ShapeModel) -> float:
    """How far ``b`` lies from where its neighbours ``a`` and ``c`` put it, as a fraction of the level spacing.

    The expected position divides the a-c segment in the ratio of the shape
    model's spacings; the distance is measured in the sagittal plane.
    """
    variants = tuple(v for v in anatomy.VARIANT_AFTER if v in points)
    mu_ab = shape.expected(a, b, variants)[0]
    mu_bc = shape.expected(b, c, variants)[0]
    predicted = points[a] + (points[c] - points[a]) * mu_ab / (mu_ab + mu_bc)
    return float(np.linalg.norm(sagittal(points[b] - predicted))) / math.sqrt(mu_ab * mu_bc)


def off_line(points: Mapping[str, np.ndarray], shape: ShapeModel, limit: float) -> list[tuple[str, float, str, str]]:
    """Interior points off the line of their neighbours, worst first, removed one at a time.

    Returns (level, deviation as a fraction of the spacing, upper neighbour, lower neighbour).
    """
    current = dict(points)
    flagged = []
    while len(current) >= 3:
        levels = list(current)
        worst = None
        for a, b, c in zip(levels, levels[1:], levels[2:]):
            dev = line_deviation(current, a, b, c, shape)
            if worst is None or dev > worst[1]:
                worst = (b, dev, a, c)
        if worst is None or worst[1] <= limit:
            break
        flagged.append(worst)
        del current[worst[0]]
    return flagged


def on_the_line(points: Mapping[str, np.ndarray], shape: ShapeModel, limit: float) -> set[str]:
    """Interior points within ``limit`` level spacings of where their two annotated neighbours put them."""
    levels = list(points)
    return {b for a, b, c in zip(levels, levels[1:], levels[2:]) if line_deviation(points, a, b, c, shape) <= limit}
