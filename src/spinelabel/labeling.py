"""Vertebra labeling with a parts-based graphical model (a chain of levels).

Follows Forsberg et al., "Detection and labeling of vertebrae in MR images
using deep learning with clinical annotations as training data", J Digit
Imaging 30:406-412 (2017): the CNN proposes vertebra *candidates*; a chain
model over the levels of a region assigns each candidate a level or declares
it a false positive, and the best assignment is found exactly by dynamic
programming (a shortest path in a DAG).

The model
---------
Candidates are sorted cranio-caudally (descending world z). A labeling is an
ordered subset of candidates given strictly increasing positions in a chain of
levels (the region's standard chain, or that chain with one transitional
variant inserted). Its cost, in nats (negative log-likelihood up to a
constant), is

- for every assigned candidate: ``-log(score)`` and, when the CNN gave a level
  estimate ``e`` with uncertainty ``sd``, ``(e - delta - g' - ordinal(level))**2 / (2 sd**2)``,
  where ``delta`` is one scan-wide offset of the level estimates and
  ``g' = (g - 1) (ordinal(level) - pivot)`` one scan-wide gain ``g`` about
  the middle of the levels the shape model learned (below);
  when it gave an anchor probability ``p``, ``-log p`` at the region's anchor
  level (C2, S1) and ``-log(1 - p)`` at any other (nothing at an anchor level
  that ``anchor_levels`` leaves out: an output not learned from real anchors);
- for every unassigned candidate: ``false_positive_weight * -log(1 - score)``
  and ``-log(1 - p)`` (``anchor_unassigned``: a false positive is not the
  anchor either; an anchor level that ``anchor_levels`` leaves out then pays
  ``-log(1 - p)`` like any other level, which says nothing about the names);
- for every two consecutive assigned candidates (upper at level ``a``, lower
  at level ``b``): ``((d - s mu_ab) / (s sd_ab))**2 / 2`` for their distance
  ``d`` at the global scale ``s`` (with ``spacing_range_mm`` = ``R``, plus
  ``log(s sd_ab sqrt(2 pi) / R)``: the ratio against a uniform step length;
  where a body may be cut by the image edge,
  ``d`` may be up to ``k_a + k_b`` longer, ``k = max(0, s h / 2 - room)`` for a body
  of height ``h`` with ``room`` mm of image on its outer side, and the best
  ``d`` in that range counts), a direction cost, and a miss cost per
  level skipped between ``a`` and ``b`` (``miss_cost``; ``bodiless_miss_cost``
  for C1), and, where the shape model learned the step's direction in the
  sagittal plane (``shape_model.sagittal_angle``, mean ``theta_ab``, sd
  ``tau_ab``), the log-likelihood ratio of that direction under a Student-t
  with ``direction_dof`` degrees of freedom against a uniform background over
  the ``direction_range_deg`` a step may take at all:
  ``log(tau_ab) + c(nu) + (nu + 1) / 2 * log(1 + t**2 / nu) - log(range)``,
  ``t = (angle - theta_ab) / tau_ab``, ``c(nu)`` the Student-t normaliser.
  A fitting step earns up to ~1.7 nats, one beyond ~2 sd pays. The lumbosacral
  step turns 30-40 deg posteriorly, the lumbar steps above it do not: this
  tells S1 from L5 when the anchor head
  and the level estimates are unsure (other contrast, other hospital). Every
  ``theta_ab`` is turned by one scan-wide tilt ``phi`` (posture), which
  costs ``phi**2 / (2 tilt_sd**2)`` once and runs over ``tilt_grid_deg``;
- ``delta**2 / (2 level_offset_sd**2)`` once: the CNN's level estimates of one
  scan share a bias (other scanner, contrast, field of view), so nine
  consistent estimates are one piece of evidence about the count, not nine.
  ``delta`` runs over ``LabelingParams.level_offset_grid`` and the best is kept,
  like the scale. The gain ``g`` (``level_gain_grid``, no prior cost) lets the
  estimates of a network that extrapolates beyond its training levels run
  compressed, as they do on another source's fields of view;
- for every assigned candidate that another series' count reaches
  (``Candidate.carried_level``, ``spinelabel label --count-from``):
  ``carried_name_cost`` when its level's place in the count the series
  carries (``count_place``: from C1 down when it counts from C2, from S1 up
  when it counts from S1; in the chain with its variant) is not the carried
  name's place in the standard chain. A counting series cannot see a
  transitional vertebra outside its field of view, so a carried name is a
  count, not a name: the "L1" of a count from C2 on a T13 is the 20th
  vertebra, which the T13 chain names T13. The carried names fix the
  count, as an anchor would: no confidence ceiling and no warning about
  the anchor or the level estimates' offset applies to a chain that
  takes a carried count; and where that count reaches C2, a transitional
  variant is countable in a range that reaches S1 alone
  (``variant_span``);
- ``variant_cost`` once if the chain contains a transitional variant. A
  variant is only named when the labeled range reaches from C2 to S1, the only
  field of view in which a supernumerary segment can be counted; elsewhere a
  variant chain that would fit better only raises a warning;
- at each end of the labeled range, the miss cost of the next level of the
  chain (``edge_levels``) when the shape model puts it inside the image (when
  candidates say how much image lies above and below them,
  ``Candidate.room_mm``): a lumbar chain cannot end at "L5" with a sacrum's
  length of image below it.

The labeled range may start and end at any level (partial field of view). The
best scale from ``LabelingParams.scale_grid`` and the best offset from
``level_offset_grid`` are kept. Confidences come from min-marginals (forward
and backward passes, minimised over scales and offsets) turned into a softmax
at ``temperature``; when no anchor is named, the level estimates alone fix
the count, and no confidence exceeds ``unanchored_confidence`` (below
``low_confidence``: flagged). Where the shape model has learned step directions,
each confidence is the lower of the posteriors with and without them (the
vertebra probability, "a vertebra of the chain at all", is the model's
own): the curvature may choose the names, but
on its own it cannot make a count sure, since a spine with an unusual curve
(a steep L4 -> L5 step above a sacrum out of view) looks like one a level
lower (issue 11: myoseg-32, myoseg-49). A warning says when the names
without the directions would differ. Likewise each confidence is the lower
of the posteriors with and without the left-out candidates' anchor outputs
(``anchor_unassigned``): they may choose the names (the true S1 left out
below an "S1" the chain took at L5 now costs its anchor output) but cannot
make them surer than the named candidates alone do. A left-out detection
that the anchor head rates above the named anchor raises a warning.

All positions are world RAS millimetres (x = Right, y = Anterior,
z = Superior).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .anatomy import ANCHOR_LEVELS, BODILESS_LEVELS, BODY_HEIGHT_MM, VARIANT_AFTER, Region, chain, ordinal
from .chain_dp import Pairs, backtrack, backward, forward, unassigned_marginals
from .labeling_params import Candidate, LabeledVertebra, LabelingParams, LabelingResult
from .labeling_warnings import (
    anchor_rivals,
    capped,
    direction_check,
    end_warnings,
    labeling_warnings,
    uncountable_variant_warning,
)
from .shape_model import ShapeModel, chain_directions, chain_moments, sagittal_angle
from .warning_codes import LabelWarning

__all__ = ["Candidate", "LabeledVertebra", "LabelingParams", "LabelingResult", "label_candidates"]

# --------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Inputs:
    """Candidates sorted cranio-caudally, as arrays (n candidates)."""

    order: np.ndarray  # (n,) original index of each sorted candidate
    pos: np.ndarray  # (n, 3)
    score: np.ndarray  # (n,) clipped
    est: np.ndarray  # (n,) NaN where unavailable
    sd: np.ndarray  # (n,)
    anchor: np.ndarray  # (n,) clipped; NaN where unavailable
    room: np.ndarray  # (n, 2) mm of image cranially and caudally; NaN where unknown
    carried: np.ndarray  # (n,) count_index of the level carried from a counting series; NaN where none
    carried_from: str = "C2"  # the anchor the carried count starts from (``count_place``)


@dataclass(frozen=True)
class _Solution:
    """Everything the DP gives for one chain, stacked over S scales."""

    levels: tuple[str, ...]
    variant: tuple[str, ...]
    best: np.ndarray  # (S,) total cost of the best labeling per scale (over offsets)
    path: list[tuple[int, int]]  # at the best scale and offset: (sorted candidate, level index)
    assigned: np.ndarray  # (n, L) min-marginal (over scales, offsets) with candidate i at level l
    unassigned: np.ndarray  # (n,) min-marginal (over scales, offsets) with candidate i unassigned
    offset: float  # the best offset of the level estimates
    gain: float = 1.0  # and their best gain
    scale_index: int = 0  # the index in ``scale_grid`` of the scale ``path`` was found at


def _prepare(candidates: Sequence[Candidate], params: LabelingParams) -> _Inputs:
    """Validate and sort candidates cranio-caudally (descending z; ties by y, x, score)."""
    n = len(candidates)
    pos = np.array([np.asarray(c.position, float).reshape(-1) for c in candidates], float).reshape(n, -1 if n else 3)
    if pos.shape != (n, 3) or not np.all(np.isfinite(pos)):
        raise ValueError("candidate positions must be finite (3,) RAS mm vectors")
    score = np.clip([float(c.score) for c in candidates], params.score_eps, 1.0 - params.score_eps)
    est = np.array([np.nan if c.level_estimate is None else float(c.level_estimate) for c in candidates])
    est[~np.isfinite(est)] = np.nan  # a non-finite estimate is no estimate
    sd = np.array([float(c.level_sd) for c in candidates])
    anchor = np.array([np.nan if c.anchor is None else float(c.anchor) for c in candidates])
    anchor = np.clip(anchor, params.anchor_eps, 1.0 - params.anchor_eps)  # NaN stays NaN
    if np.any(~(sd > 0)):
        raise ValueError("level_sd must be positive")
    room = np.array([(np.nan, np.nan) if c.room_mm is None else tuple(map(float, c.room_mm)) for c in candidates]).reshape(n, 2)
    room = np.where(np.isfinite(room), np.maximum(room, 0.0), np.nan)  # unknown: no field-of-view term, no slack
    carried = np.array([np.nan if c.carried_level is None else float(count_index(c.carried_level)) for c in candidates])
    anchors = {c.carried_from for c in candidates if c.carried_level is not None}
    if len(anchors) > 1 or not anchors <= {"C2", "S1"}:
        raise ValueError(f"carried names must count from one anchor, C2 or S1, not {sorted(anchors)}")
    order = np.lexsort((-score, pos[:, 0], pos[:, 1], -pos[:, 2])) if n else np.zeros(0, int)
    return _Inputs(order, pos[order], score[order], est[order], sd[order], anchor[order], room[order], carried[order],
                   *anchors)


def _region_chains(region: Region) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(variant, levels) for the region's standard chain and each variant chain."""
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = [((), tuple(region.levels))]
    for v in region.variants:
        if VARIANT_AFTER[v] in region.levels:
            out.append(((v,), tuple(lv for lv in chain((v,)) if lv in region.levels or lv == v)))
    return out


def _node_costs(
    inp: _Inputs,
    levels: Sequence[str],
    params: LabelingParams,
    anchors: Sequence[str] = (),
    offset: float = 0.0,
    gain: float = 1.0,
    pivot: float = 0.0,
) -> np.ndarray:
    """Cost of assigning each candidate to each level, minus its false-positive cost.

    Parameters
    ----------
    anchors : sequence of str
        The region's trusted anchor levels (``Region.anchors`` less those
        ``anchor_levels`` leaves out); any other anchor level
        (``anatomy.ANCHOR_LEVELS``) gets no anchor term.
    offset : float
        Scan-wide offset ``delta`` of the level estimates (levels).
    gain, pivot : float
        Scan-wide gain ``g`` of the level estimates about the ordinal ``pivot`` (``_gain_pivot``).

    Returns
    -------
    ndarray, shape (n, L)
        ``-log score + level term + anchor term + carried term - fp cost``: negative means "better assigned".
    """
    ords = np.array([ordinal(lv) for lv in levels], float)
    carried_term = np.zeros((len(inp.carried), len(levels)))
    if not np.isnan(inp.carried).all():  # no count carried (the usual case): no term to build
        places = np.array([count_place(lv, levels, inp.carried_from) for lv in levels], float)
        other = ~np.isnan(inp.carried)[:, None] & (inp.carried[:, None] != places[None, :])
        carried_term = params.carried_name_cost * other
    expected = ords + offset + (gain - 1.0) * (ords - pivot)
    level_term = (inp.est[:, None] - expected[None, :]) ** 2 / (2.0 * inp.sd[:, None] ** 2)
    level_term = np.where(np.isnan(inp.est)[:, None], 0.0, level_term)
    is_anchor = np.array([lv in anchors for lv in levels], bool)
    anchor_term = -params.anchor_weight * np.where(
        is_anchor[None, :], np.log(inp.anchor)[:, None], np.log1p(-inp.anchor)[:, None]
    )
    untrusted = np.array([lv in ANCHOR_LEVELS and lv not in anchors for lv in levels], bool)
    if not params.anchor_unassigned:  # an untrusted anchor level: no evidence there either way
        anchor_term = np.where(untrusted[None, :], 0.0, anchor_term)
    anchor_term = np.where(np.isnan(inp.anchor)[:, None], 0.0, anchor_term)
    fp = _false_positive_costs(inp, params)
    return -np.log(inp.score)[:, None] + level_term + anchor_term + carried_term - fp[:, None]


def count_index(level: str, levels: Sequence[str] = ()) -> int:
    """The place of ``level`` in the count from C1 (0 for C1) along the full chain of ``levels``' variant.

    >>> count_index("L1"), count_index("T13", ("T12", "T13", "L1")), count_index("L1", ("T12", "T13", "L1"))
    (19, 19, 20)
    """
    return chain(tuple(lv for lv in (*levels, level) if lv in VARIANT_AFTER)).index(level)


def count_place(level: str, levels: Sequence[str] = (), anchor: str = "C2") -> int:
    """The place of ``level`` in a count from ``anchor``, as the standard chain's ``count_index`` of that place.

    From C2 the count runs from C1 down (``count_index``); from S1 it runs up
    from S1, so that a transitional vertebra moves the places above it, not
    below: in an L6 chain, L6 is the place of the standard L5.

    >>> count_place("L1", ("T12", "T13", "L1")), count_place("L6", ("L5", "L6", "S1"), "S1")
    (20, 23)
    """
    place = count_index(level, levels)
    return place if anchor == "C2" else place - count_index("S1", levels) + count_index("S1")


def _gain_pivot(shape: ShapeModel, levels: Sequence[str], anchors: Sequence[str] = ()) -> float:
    """The ordinal about which the level estimates' gain turns (``level_gain_grid``).

    The middle of the levels whose spacings the shape model learned (the
    levels annotated in the training scans): the network's estimates hold
    there and compress beyond, and a gain about them does not mimic a
    whole-chain shift inside them. Without learned spacings, the first
    anchor, else the chain's middle.
    """
    learned = {lv for key in shape.spacing for lv in key.split("-")} & set(levels)
    if learned:
        return float(np.mean([ordinal(lv) for lv in learned]))
    return float(ordinal(anchors[0])) if anchors else float(np.mean([ordinal(lv) for lv in levels]))


def _false_positive_costs(inp: _Inputs, params: LabelingParams) -> np.ndarray:
    """(n,) cost of leaving each candidate unassigned.

    With ``params.anchor_unassigned`` an unassigned candidate is "not the
    anchor" and pays ``-anchor_weight * log(1 - anchor)`` too (nothing where
    the anchor output is unknown).
    """
    cost = -params.false_positive_weight * np.log1p(-inp.score)
    if params.anchor_unassigned:
        cost = cost - params.anchor_weight * np.where(np.isnan(inp.anchor), 0.0, np.log1p(-inp.anchor))
    return cost


def _pairs(pos: np.ndarray, params: LabelingParams) -> Pairs:
    """Ordered candidate pairs whose vector points caudally within ``max_angle_deg``.

    Parameters
    ----------
    pos : ndarray, shape (n, 3)
        Sorted cranio-caudally.
    """
    n = len(pos)
    j, i = np.tril_indices(n, k=-1)  # row-major over j: grouped by j, i < j
    vec = pos[j] - pos[i]
    dist = np.linalg.norm(vec, axis=1)
    cos = -vec[:, 2] / np.maximum(dist, 1e-9)
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    ok = (dist > 1e-6) & (angle <= params.max_angle_deg)
    i, j, dist, angle = i[ok], j[ok], dist[ok], angle[ok]
    direction = params.direction_weight * (angle / params.max_angle_deg) ** 2
    by_j = np.searchsorted(j, np.arange(n + 1))
    return Pairs(i, j, dist, direction, sagittal_angle(pos[j] - pos[i]), by_j)


def _miss_costs(levels: Sequence[str], params: LabelingParams) -> np.ndarray:
    """(L,) cost of each level of a chain being in view but not detected."""
    return np.array([params.bodiless_miss_cost if lv in BODILESS_LEVELS else params.miss_cost for lv in levels])


def _beyond_in_view(
    inp: _Inputs, mu: np.ndarray, scales: np.ndarray, params: LabelingParams
) -> tuple[np.ndarray, np.ndarray]:
    """Which levels beyond a labeled range's end the image shows whole, for every candidate, end level and scale.

    A level beyond the range's end is expected in view when its distance along
    the chain (scaled) plus ``edge_margin_fraction`` of its spacing to the
    next level inward fits in the image room on that side. Only the
    ``edge_levels`` levels next to each end are considered.

    Returns
    -------
    up, down : ndarray of bool, shape (L, L, n, S)
        ``up[l, b, j, s]``: level ``l`` cranial to ``b`` is in view above
        candidate ``j`` at level ``b`` and scale ``s``; ``down`` likewise caudally.
    """
    L = mu.shape[0]
    spacing = np.diag(mu, 1)  # (L-1,) adjacent spacings
    a, b = np.indices((L, L))
    # need_up[l, b]: room above a candidate at level b for level l < b to be in view
    inward_up = np.concatenate([spacing, [0.0]])  # level l's spacing to l + 1
    need_up = np.where((a < b) & (a >= b - params.edge_levels), mu + params.edge_margin_fraction * inward_up[:, None], np.inf)
    inward_down = np.concatenate([[0.0], spacing])  # level l's spacing to l - 1
    need_down = np.where(  # [l, b], b < l <= b + edge_levels
        (b < a) & (a <= b + params.edge_levels), mu.T + params.edge_margin_fraction * inward_down[:, None], np.inf
    )
    scaled_up = need_up[:, :, None, None] * scales[None, None, None, :]  # (l, b, 1, S)
    scaled_down = need_down[:, :, None, None] * scales[None, None, None, :]
    up = inp.room[:, 0][None, None, :, None]  # (1, 1, n, 1)
    down = inp.room[:, 1][None, None, :, None]
    return scaled_up <= up, scaled_down <= down


def _end_costs(
    inp: _Inputs, mu: np.ndarray, miss: np.ndarray, scales: np.ndarray, params: LabelingParams
) -> tuple[np.ndarray, np.ndarray]:
    """Field-of-view costs of starting and of ending a labeled range at each candidate and level.

    Every level the image shows beyond the range's end (``_beyond_in_view``)
    costs its miss cost.

    Returns
    -------
    start, end : ndarray, shape (L, n, S)
        ``start[b, j, s]``: summed miss costs of the levels cranial to ``b`` in
        view above candidate ``j`` at scale ``s``; ``end`` likewise caudally.
    """
    up, down = _beyond_in_view(inp, mu, scales, params)
    return (up * miss[:, None, None, None]).sum(axis=0), (down * miss[:, None, None, None]).sum(axis=0)


def _missed_beyond(inp: _Inputs, sol: _Solution, shape: ShapeModel, params: LabelingParams) -> tuple[list[str], list[str]]:
    """The levels ``sol.path`` pays as missed beyond its ends, at its scale: (above its first, below its last).

    Empty lists for an empty path.
    """
    if not sol.path:
        return [], []
    mu, _ = chain_moments(shape, sol.levels)
    up, down = _beyond_in_view(inp, mu, np.asarray(params.scale_grid, float), params)
    (j0, b0), (j1, b1) = sol.path[0], sol.path[-1]
    s = sol.scale_index
    return [sol.levels[k] for k in np.flatnonzero(up[:, b0, j0, s])], [sol.levels[k] for k in np.flatnonzero(down[:, b1, j1, s])]


def _pair_costs(
    pairs: Pairs,
    mu: np.ndarray,
    sd: np.ndarray,
    scales: np.ndarray,
    params: LabelingParams,
    miss: np.ndarray,
    heading: tuple[np.ndarray, np.ndarray] | None = None,
    slack: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Pairwise costs for every allowed pair, level pair and scale.

    ``heading``: the chain's expected step directions and their sds, (L, L)
    degrees each (``shape_model.chain_directions``); None or an infinite sd:
    no direction term. ``slack``: how much longer each step may be than
    measured because a body is cut by the image edge (``_edge_slack``), or
    None.

    Returns
    -------
    ndarray, shape (L, L, m, S)
        ``[a, b, p, s]``: cost of candidate ``pairs.i[p]`` at level ``a``
        directly followed by ``pairs.j[p]`` at level ``b``, at scale ``s``;
        ``inf`` unless a < b. (Scales last and levels first keep the DP's
        reductions over outer, contiguous axes.)
    """
    L = mu.shape[0]
    a, b = np.indices((L, L))
    cum = np.concatenate([[0.0], np.cumsum(miss)])  # cum[k]: summed miss costs of levels < k
    skipped = cum[b] - cum[np.minimum(a + 1, L)]  # levels a+1 .. b-1
    static = np.where(b > a, skipped, np.inf)
    cost = (pairs.dist[:, None] / scales[None, :])[None, None] - mu[:, :, None, None]
    if slack is not None:  # a step short of the mean by no more than its slack costs nothing for it
        upper, lower = slack
        near = np.flatnonzero((upper > 0).any(axis=(0, 2)) | (lower > 0).any(axis=(0, 2)))  # pairs at an edge only
        short = cost[:, :, near]
        allowed = upper[:, None, near] + lower[None, :, near]  # (L, L, k, S)
        cost[:, :, near] = np.where(short < 0.0, np.minimum(short + allowed, 0.0), short)
    cost *= (1.0 / sd)[:, :, None, None]
    cost *= cost
    cost *= 0.5
    if params.spacing_range_mm is not None:  # a likelihood ratio against a uniform step length
        normaliser = np.log(sd * math.sqrt(2.0 * math.pi) / params.spacing_range_mm)
        cost += normaliser[:, :, None, None] + np.log(scales)[None, None, None, :]
    cost += static[:, :, None, None]
    cost += pairs.direction[None, None, :, None]
    if heading is not None:
        cost += _heading_costs(pairs.sagittal, *heading, params.direction_dof, params.direction_range_deg)[:, :, :, None]
    return cost


def _edge_slack(inp: _Inputs, pairs: Pairs, levels: Sequence[str], scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far the centre of each pair's upper and lower body may lie beyond its candidate (``LabelingParams.edge_slack``).

    A body of height ``h`` whose candidate has ``r`` mm of image on its outer
    side may be cut by the edge there, its centre up to ``h / 2 - r`` further
    out: upward for the upper body of a step, downward for the lower one.

    Returns
    -------
    upper, lower : ndarray, shape (L, m, S)
        Slack in the units of the spacing means (mm divided by the scale):
        ``upper[a, p, s]`` for candidate ``pairs.i[p]`` at level ``a``,
        ``lower[b, p, s]`` for ``pairs.j[p]`` at level ``b``; 0 where the room is
        unknown or at least half the body.
    """
    half = np.array([BODY_HEIGHT_MM[lv] / 2.0 for lv in levels])[:, None, None]  # (L, 1, 1)

    def beyond(room: np.ndarray) -> np.ndarray:  # room (m,) mm -> (L, m, S)
        out = half - room[None, :, None] / scales[None, None, :]
        return np.where(np.isfinite(out), np.maximum(out, 0.0), 0.0)

    return beyond(inp.room[pairs.i, 0]), beyond(inp.room[pairs.j, 1])


def _heading_costs(angle: np.ndarray, theta: np.ndarray, tau: np.ndarray, dof: float, span: float) -> np.ndarray:
    """Negative log-likelihood ratio of each pair's sagittal direction under each level pair's learned one.

    Parameters
    ----------
    angle : ndarray, shape (m,)
        The pairs' ``sagittal_angle`` (deg).
    theta, tau : ndarray, shape (L, L)
        Expected direction and its sd (deg); ``tau = inf`` means not learned.
    dof : float
        Student-t degrees of freedom.
    span : float
        Width (deg) of the uniform background density.

    Returns
    -------
    ndarray, shape (L, L, m)
        ``-log t_dof(angle; theta, tau) - log(span)``; 0 where not learned.
    """
    known = np.isfinite(tau)
    scale = np.where(known, tau, 1.0)[:, :, None]
    t = (angle[None, None, :] - theta[:, :, None]) / scale
    normaliser = math.lgamma(dof / 2.0) - math.lgamma((dof + 1.0) / 2.0) + 0.5 * math.log(dof * math.pi)
    nll = normaliser + np.log(scale) + 0.5 * (dof + 1.0) * np.log1p(t * t / dof)
    return np.where(known[:, :, None], nll - math.log(span), 0.0)


def _span_masks(levels: tuple[str, ...], span: tuple[str | None, str] | None) -> tuple[np.ndarray, np.ndarray]:
    """(L,) extra start and end costs: 0, or inf where a range may not start / end.

    With ``span = (first, last)`` a labeled range must start at or above
    ``first`` (anywhere when it is None) and end at or below ``last``.
    """
    start, end = np.zeros(len(levels)), np.zeros(len(levels))
    if span is not None:
        if span[0] is not None:
            start[levels.index(span[0]) + 1 :] = np.inf
        end[: levels.index(span[1])] = np.inf
    return start, end


def _solve_chain(
    inp: _Inputs,
    pairs: Pairs,
    shape: ShapeModel,
    variant: tuple[str, ...],
    levels: tuple[str, ...],
    params: LabelingParams,
    anchors: Sequence[str] = (),
    span: tuple[str | None, str] | None = None,
    marginals: bool = True,
) -> _Solution:
    """Forward, backward and min-marginals for one chain at every scale, level offset and gain, and tilt.

    ``span``: the levels the labeled range must reach (``_span_masks``), or None.
    ``marginals=False`` runs the forward pass only: ``best`` and ``path`` are
    exact, ``assigned`` and ``unassigned`` stay inf (a chain that is only
    compared, never named).
    """
    scales = np.asarray(params.scale_grid, float)
    mu, sd = chain_moments(shape, levels)
    miss = _miss_costs(levels, params)
    start, end = _end_costs(inp, mu, miss, scales, params)
    span_start, span_end = _span_masks(levels, span)
    start, end = start + span_start[:, None, None], end + span_end[:, None, None]
    base = float(_false_positive_costs(inp, params).sum()) + (params.variant_cost if variant else 0.0)
    best = np.full(len(scales), np.inf)
    assigned = np.full((len(inp.order), len(levels)), np.inf)
    unassigned = np.full(len(inp.order), np.inf)
    top: tuple[float, float, float, list[tuple[int, int]], int] = (np.inf, 0.0, 1.0, [], 0)
    theta, tau = chain_directions(shape, levels)
    pivot = _gain_pivot(shape, levels, anchors)
    directional = bool(np.isfinite(tau).any())  # no learned direction: no term, and the tilt is moot
    slack = _edge_slack(inp, pairs, levels, scales) if params.edge_slack else None
    for tilt in params.tilt_grid_deg if directional else (0.0,):
        P = _pair_costs(pairs, mu, sd, scales, params, miss, (theta + tilt, tau) if directional else None, slack)
        tilt_prior = base + tilt**2 / (2.0 * params.tilt_sd_deg**2)
        for offset, gain in itertools.product(params.level_offset_grid, params.level_gain_grid):
            prior = tilt_prior + offset**2 / (2.0 * params.level_offset_sd**2)
            U = _node_costs(inp, levels, params, anchors, offset, gain, pivot)
            F, G = forward(U, P, pairs, start)
            here = prior + np.minimum((F + end).min(axis=(0, 1)), 0.0)  # (S,)
            best = np.minimum(best, here)
            if marginals:
                B = backward(U, P, pairs, end)
                assigned = np.minimum(assigned, prior + (F + B).min(axis=2).T)
                unassigned = np.minimum(unassigned, prior + unassigned_marginals(U, pairs, F, G, B, start, end).min(axis=1))
            s = int(np.argmin(here))
            if here[s] < top[0]:
                path = backtrack(F[:, :, s], G[:, :, s], P[:, :, :, s], pairs, start[:, :, s], end[:, :, s])
                top = (float(here[s]), float(offset), float(gain), path, s)
    return _Solution(levels, variant, best, top[3], assigned, unassigned, top[1], top[2], top[4])


def _confidences(solutions: list[_Solution], temperature: float) -> tuple[list[str], np.ndarray]:
    """Softmax of min-marginals over every level of every chain, "unassigned" and scales.

    Returns
    -------
    labels : list of str
        The union of the chains' levels (columns of ``probs`` before the last).
    probs : ndarray, shape (n, len(labels) + 1)
        Last column: unassigned.
    """
    labels = list(dict.fromkeys(lv for sol in solutions for lv in sol.levels))
    n = solutions[0].unassigned.shape[0]
    M = np.full((n, len(labels) + 1), np.inf)
    for sol in solutions:
        cols = [labels.index(lv) for lv in sol.levels]
        M[:, cols] = np.minimum(M[:, cols], sol.assigned)
        M[:, -1] = np.minimum(M[:, -1], sol.unassigned)
    z = -(M - M.min(axis=1, keepdims=True)) / temperature
    w = np.exp(z)
    return labels, w / w.sum(axis=1, keepdims=True)


def _name_posteriors(
    inp: _Inputs, pairs: Pairs, shape: ShapeModel, region: Region, params: LabelingParams, sols: list[_Solution]
) -> tuple[list[str], np.ndarray, list[_Solution]]:
    """``_confidences`` of ``sols``, each name lowered to its posterior under the other readings of the evidence.

    The step directions and the left-out candidates' anchor outputs may
    choose the names, not make them sure on their own: each name keeps the
    lowest of its posteriors with and without each of them.

    Returns
    -------
    labels, probs
        As ``_confidences``.
    plain_sols : list of _Solution
        The chains solved without directions (empty when the shape model has none).
    """
    labels, probs = _confidences(sols, params.temperature)
    plain_sols: list[_Solution] = []
    plain = shape.without_directions()
    readings = (shape, plain) if shape.direction else (shape,)
    if shape.direction:
        plain_sols, _ = _solve_region(inp, pairs, plain, region, params, uncountable=False)
        _lower_names(probs, labels, plain_sols, params.temperature)
    if params.anchor_unassigned:
        ignored = replace(params, anchor_unassigned=False)
        for reading in readings:
            other, _ = _solve_region(inp, pairs, reading, region, ignored, uncountable=False)
            _lower_names(probs, labels, other, params.temperature)
    return labels, probs, plain_sols


def _lower_names(probs: np.ndarray, labels: list[str], other: list[_Solution], temperature: float) -> None:
    """Lower each name's posterior, in place, to its posterior under another reading of the evidence.

    Parameters
    ----------
    probs : ndarray, shape (n, len(labels) + 1)
        ``_confidences`` of the chosen model; the last column ("unassigned")
        stays: "a vertebra of the chain at all" is that model's own.
    other : list of _Solution
        The region's nameable chains solved under the other reading.
    """
    other_labels, other_probs = _confidences(other, temperature)
    other_probs = other_probs[:, [other_labels.index(lv) for lv in labels] + [len(other_labels)]]
    probs[:, :-1] = np.minimum(probs[:, :-1], other_probs[:, :-1])


def label_candidates(
    candidates: Sequence[Candidate], region: Region, shape: ShapeModel, params: LabelingParams = LabelingParams()
) -> LabelingResult:
    """Assign levels of ``region`` to vertebra candidates (exact chain-model DP).

    Parameters
    ----------
    candidates : sequence of Candidate
        Any order; positions in world RAS mm.
    region : Region
        Its levels and transitional variants define the chains tried.
    shape : ShapeModel
        Expected spacings between levels.
    params : LabelingParams
        Costs.

    Returns
    -------
    LabelingResult
        Possibly empty (with a warning); never raises for an empty input.
    """
    region, shape = _evidence_used(region, shape, params)
    if any(c.carried_level is not None and c.carried_from == "C2" for c in candidates):  # it reaches C2 for the range
        params = replace(params, variant_span=(None, params.variant_span[1]))
    if len(candidates) > params.max_candidates:
        return _label_strongest(candidates, region, shape, params)
    inp = _prepare(candidates, params)
    if len(inp.order) == 0:
        empty: list[LabeledVertebra] = []
        return LabelingResult(empty, (), 1.0, 0.0, labeling_warnings(empty, 0, params))
    pairs = _pairs(inp.pos, params)
    sols, unnamed = _solve_region(inp, pairs, shape, region, params)
    c, s = np.unravel_index(int(np.argmin([sol.best for sol in sols])), (len(sols), len(params.scale_grid)))
    sol = sols[c]
    labels, probs, plain_sols = _name_posteriors(inp, pairs, shape, region, params, sols)
    vertebrae = [
        LabeledVertebra(
            sol.levels[b],
            int(inp.order[j]),
            inp.pos[j].copy(),
            float(probs[j, labels.index(sol.levels[b])]),
            float(1.0 - probs[j, -1]),
        )
        for j, b in sol.path
    ]
    vertebrae, warnings = _count_evidence(inp, sol, vertebrae, region, params)
    scale = float(params.scale_grid[s]) if vertebrae else 1.0
    warnings += end_warnings(vertebrae, *_missed_beyond(inp, sol, shape, params))
    cost = float(sol.best[s])
    if vertebrae:
        warnings += [uncountable_variant_warning(u.variant, region, params) for u in unnamed if float(u.best.min()) < cost]
    if vertebrae and shape.direction:
        best_plain = min(plain_sols, key=lambda p: float(p.best.min()))
        warnings += direction_check(vertebrae, {int(inp.order[j]): best_plain.levels[b] for j, b in best_plain.path})
    return LabelingResult(
        vertebrae, sol.variant, scale, cost, warnings, sol.offset if vertebrae else 0.0, sol.gain if vertebrae else 1.0
    )


def _count_evidence(
    inp: _Inputs, sol: _Solution, vertebrae: list[LabeledVertebra], region: Region, params: LabelingParams,
) -> tuple[list[LabeledVertebra], list[LabelWarning]]:
    """The chosen labeling's names under the confidence ceiling, and the warnings on what its count rests on.

    A count carried from another series (a candidate named as carried)
    needs no anchor of its own, and the level estimates' offset from its
    names is no disagreement with an anchor: no ceiling, no anchor or
    offset warning. Otherwise ``capped``, ``labeling_warnings`` and
    ``anchor_rivals`` with the region's anchors.
    """
    counted = any(inp.carried[j] == count_place(sol.levels[b], sol.levels, inp.carried_from) for j, b in sol.path)
    anchors = () if counted else region.anchors
    vertebrae = capped(vertebrae, anchors, params)
    anchor_probs = [float(inp.anchor[j]) for j, b in sol.path if sol.levels[b] in anchors]
    chain = (sol.levels, sol.variant, 0.0 if counted else sol.offset)
    warnings = labeling_warnings(vertebrae, len(inp.order), params, anchors, anchor_probs, chain)
    named = {int(j): sol.levels[b] for j, b in sol.path}
    return vertebrae, warnings + anchor_rivals(named, inp.pos, inp.score, inp.anchor, anchors, params)


def _evidence_used(region: Region, shape: ShapeModel, params: LabelingParams) -> tuple[Region, ShapeModel]:
    """The region with only its trusted anchors (``anchor_levels``), and the shape model without step
    directions where they would not be used (off, or none learned for the region: one solve, not two)."""
    if params.anchor_levels is not None:
        region = replace(region, anchors=tuple(a for a in region.anchors if a in params.anchor_levels))
    if shape.direction and not (params.use_directions and _learns_directions(shape, region)):
        shape = shape.without_directions()
    return region, shape


def _learns_directions(shape: ShapeModel, region: Region) -> bool:
    """Whether any step of the region's standard chain has a learned direction."""
    return any(shape.step_direction(up, low) is not None for up, low in itertools.pairwise(region.levels))


def _solve_region(
    inp: _Inputs, pairs: Pairs, shape: ShapeModel, region: Region, params: LabelingParams, uncountable: bool = True
) -> tuple[list[_Solution], list[_Solution]]:
    """The region's chains solved: (those that may be named, with marginals; uncountable variant chains, forward only).

    ``uncountable=False`` skips the latter (they only feed a warning).
    """
    sols: list[_Solution] = []
    unnamed: list[_Solution] = []
    for variant, levels in _region_chains(region):
        countable = not variant or all(lv is None or lv in levels for lv in params.variant_span)
        if not (countable or uncountable):
            continue
        span = params.variant_span if variant and countable else None
        sol = _solve_chain(inp, pairs, shape, variant, levels, params, region.anchors, span, marginals=countable)
        (sols if countable else unnamed).append(sol)
    return sols, unnamed


def _label_strongest(
    candidates: Sequence[Candidate], region: Region, shape: ShapeModel, params: LabelingParams
) -> LabelingResult:
    """``label_candidates`` on the ``params.max_candidates`` strongest candidates.

    Warns when a candidate of score >= ``params.low_confidence`` is left out:
    so many strong detections are unlike a spine. Weaker ones left out need no
    warning (a whole spine with its lateral duplicates gives 150-220
    candidates, most of them weak): as a vertebra, such a candidate would have
    been a flagged label at best, and a missing one is what the chain model
    already allows for.
    """
    order = np.argsort([-float(c.score) for c in candidates], kind="stable")
    keep = np.sort(order[: params.max_candidates])
    result = label_candidates([candidates[i] for i in keep], region, shape, params)
    vertebrae = [replace(v, candidate_index=int(keep[v.candidate_index])) for v in result.vertebrae]
    dropped_strong = sum(float(candidates[i].score) >= params.low_confidence for i in order[params.max_candidates :])
    if not dropped_strong:
        return replace(result, vertebrae=vertebrae)
    note = LabelWarning(
        "candidates-capped",
        f"{len(candidates) - len(keep)} weakest of {len(candidates)} candidates ignored "
        f"(more than {params.max_candidates}; {dropped_strong} of them with score >= {params.low_confidence}): "
        "is this a spine image?",
    )
    return replace(result, vertebrae=vertebrae, warnings=[note, *result.warnings])


