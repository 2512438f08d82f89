"""Complete a scan's annotations with its anchor vertebra, found by a detector (self-training).

Clinical spine labels often stop one level short of the anchor the labeler
needs most: lumbar labels end at L5 and leave S1 unnamed, although the sacrum
is in view (the shared lumbar data annotate T11-L5 only). Training then never
sees a real S1, and the anchor output learns S1 from phantoms alone.

This module adds the missing anchor from the image itself, conservatively: the
strongest detector candidate at the distance and on the side the shape model
expects from the annotated neighbour (L5 for S1, C3 for C2). Nothing is added
when no candidate fits. The added point is a pseudo-label, recorded as such in
the trained model's config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..anatomy import VARIANT_AFTER, Region, chain
from ..cleaning_geometry import size_factor
from ..labeling import Candidate, LabelingParams
from ..shape_model import ShapeModel


@dataclass(frozen=True)
class CompletionParams:
    """When a detector candidate may stand in for a missing anchor label."""

    #: Candidates weaker than this are never used (the detection threshold is 0.25).
    min_score: float = 0.5
    #: Accepted distance from the neighbour: the expected spacing (scaled to the
    #: scan's own size) +- this many sds of the shape model.
    distance_sds: float = 2.5
    #: The neighbour-to-anchor vector must lie within this angle of the
    #: cranio-caudal axis (the labeling model's own limit, lordosis included).
    max_angle_deg: float = LabelingParams.max_angle_deg
    #: A candidate closer than this fraction of the expected spacing to any
    #: annotated vertebra is that vertebra, not the anchor.
    min_separation_fraction: float = 0.5


def find_anchor(
    points: Mapping[str, np.ndarray],
    anchor: str,
    candidates: Sequence[Candidate],
    shape: ShapeModel,
    params: CompletionParams = CompletionParams(),
) -> np.ndarray | None:
    """Position of the candidate that is ``anchor``, next to its annotated neighbour.

    Parameters
    ----------
    points : mapping
        The scan's annotations: level -> (3,) world RAS mm (z superior).
    anchor : str
        The level to find (``"S1"`` or ``"C2"``); must not be annotated yet.
    candidates : sequence of Candidate
        Detector candidates of the same scan, world RAS mm.

    Returns
    -------
    ndarray, shape (3,), or None
        None when the anchor is annotated already, no neighbour is annotated, or
        no candidate fits.
    """
    if anchor in points or not candidates:
        return None
    levels = chain(tuple(v for v in VARIANT_AFTER if v in points))
    k = levels.index(anchor)
    neighbours = [(levels[k - 1], -1.0)] if k > 0 else []  # anchor below its cranial neighbour
    neighbours += [(levels[k + 1], 1.0)] if k + 1 < len(levels) else []
    annotated = [(n, side) for n, side in neighbours if n in points]
    if not annotated:
        return None
    neighbour, side = annotated[0]
    scale = size_factor(points, shape, min_pairs=1) or 1.0  # the scan's size; 1.0 with a single label
    upper, lower = (neighbour, anchor) if side < 0 else (anchor, neighbour)
    mu, sd = shape.adjacent(upper, lower)
    origin = np.asarray(points[neighbour], float)
    others = np.array([np.asarray(p, float) for p in points.values()])
    best, best_score = None, -1.0
    for c in candidates:
        vec = np.asarray(c.position, float) - origin
        dist = float(np.linalg.norm(vec))
        if c.score < params.min_score or abs(dist - scale * mu) > params.distance_sds * scale * sd:
            continue
        cos = side * vec[2] / max(dist, 1e-9)  # side -1: caudal is -z
        if np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) > params.max_angle_deg:
            continue
        if np.min(np.linalg.norm(others - np.asarray(c.position, float), axis=1)) < params.min_separation_fraction * scale * mu:
            continue
        if c.score > best_score:
            best, best_score = np.asarray(c.position, float).copy(), float(c.score)
    return best


def complete_anchors(
    points: Mapping[str, np.ndarray],
    region: Region,
    candidates: Sequence[Candidate],
    shape: ShapeModel,
    params: CompletionParams = CompletionParams(),
) -> dict[str, np.ndarray]:
    """The region's anchors missing from ``points`` that the candidates supply (level -> (3,) mm)."""
    found = {}
    for anchor in region.anchors:
        p = find_anchor(points, anchor, candidates, shape, params)
        if p is not None:
            found[anchor] = p
    return found
