"""The shape model of the chain: how far apart adjacent vertebral levels lie, and in which direction.

Learned from annotated scans (median and MAD-based sd of each adjacent pair's
centroid distance, ``fit_shape_model``), with anatomical priors
(``anatomy.typical_spacing_mm``) for pairs the annotations lack. The labeling
(``labeling.py``) charges a labeled pair for the deviation of its distance
from these moments.

The direction of each step in the sagittal plane is learned too
(``sagittal_angle``: 0 straight caudal, positive towards posterior). It is
what tells L5 from S1 whatever the contrast: over the shared lumbar scans the
L5 -> S1 step turns 30-40 deg posteriorly (sd 7), the L4 -> L5 step 7-9 deg
and the upper lumbar steps 10-16 deg anteriorly (the lordosis). Pairs seen in
fewer than ``DIRECTION_MIN_SAMPLES`` scans get no direction term (no prior):
posture moves the cervical lordosis too much to guess it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .anatomy import BODILESS_LEVELS, STANDARD_LEVELS, VARIANT_AFTER, chain, parse_level, typical_spacing_mm

#: Prior standard deviation of an adjacent-level spacing, as a fraction of the
#: prior mean, used where no learned value exists. Centroid spacings vary by
#: roughly 10-15 % between adults (body size; Panjabi et al. 1991/1992).
PRIOR_SD_FRACTION = 0.12
#: The same for a pair with a level that has no body (``anatomy.BODILESS_LEVELS``:
#: C1). Its point sits on no body centre: annotations put it on the ring's
#: centroid, the anterior arch or the lateral masses, and flexion slides the
#: atlas over the dens, so its spacing to C2 varies about twice as much; the
#: detector's C1 response also fuses with C2's, pulling both centres inward.
BODILESS_PRIOR_SD_FRACTION = 0.25

#: Fewest annotated scans from which a step's sagittal direction is learned.
#: Posture (supine with or without knee support, neck flexion in the coil)
#: changes the lordosis between patients: the spread of fewer scans says
#: little about the next patient, so such pairs get no direction term.
DIRECTION_MIN_SAMPLES = 8
#: Floor on a learned direction sd (degrees). Two centroid clicks 35 mm apart,
#: each uncertain by ~2 mm across the step, already turn it by ~5 deg, and
#: hospitals position patients differently: the median L5 -> S1 step of the
#: two shared lumbar sources differs by 10 deg (40 vs 30), while within one
#: source its MAD-based sd is 5-7 deg. 8 deg keeps such a shift within about
#: one sd and the L4 -> L5 / L5 -> S1 difference (~30 deg) at 3-4 sd.
DIRECTION_SD_FLOOR_DEG = 8.0

#: Consistency constant turning a median absolute deviation into a Gaussian sd.
_MAD_TO_SD = 1.4826


def _pair_key(upper: str, lower: str) -> str:
    return f"{upper}-{lower}"


@dataclass(frozen=True)
class ShapeModel:
    """Learned centroid-to-centroid spacings between adjacent levels.

    Attributes
    ----------
    spacing : dict
        ``"L3-L4" -> (mean mm, sd mm)`` for pairs adjacent in a chain. Pairs not
        present fall back to ``anatomy.typical_spacing_mm`` with an sd of
        ``PRIOR_SD_FRACTION`` of it (``BODILESS_PRIOR_SD_FRACTION`` next to C1).
    direction : dict
        ``"L5-S1" -> (mean deg, sd deg)``: the step's ``sagittal_angle``.
        Pairs not present have no direction term.
    """

    spacing: dict[str, tuple[float, float]] = field(default_factory=dict)
    direction: dict[str, tuple[float, float]] = field(default_factory=dict)

    def adjacent(self, upper: str, lower: str) -> tuple[float, float]:
        """Mean and sd (mm) of the distance between two adjacent levels."""
        learned = self.spacing.get(_pair_key(upper, lower))
        if learned is not None:
            return float(learned[0]), float(learned[1])
        prior = typical_spacing_mm(upper, lower)
        bodiless = upper in BODILESS_LEVELS or lower in BODILESS_LEVELS
        return prior, (BODILESS_PRIOR_SD_FRACTION if bodiless else PRIOR_SD_FRACTION) * prior

    def step_direction(self, upper: str, lower: str) -> tuple[float, float] | None:
        """Mean and sd (deg) of the ``sagittal_angle`` of an adjacent step; None when not learned.

        A step next to a transitional variant ``v`` inserted after ``P`` (L6
        after L5, T13 after T12) borrows the standard steps it repeats: the
        supernumerary segment continues the one above (``P -> v`` as the step
        into ``P``), and the turn at the junction moves down with it (``v -> N``
        as ``P -> N``).
        """
        if lower in VARIANT_AFTER:
            i = STANDARD_LEVELS.index(upper)
            return self.direction.get(_pair_key(STANDARD_LEVELS[i - 1], upper)) if i > 0 else None
        if upper in VARIANT_AFTER:
            upper = VARIANT_AFTER[upper]
        return self.direction.get(_pair_key(upper, lower))

    def without_directions(self) -> ShapeModel:
        """The same spacings without learned step directions (spacings-only labeling)."""
        return ShapeModel(self.spacing)

    def expected(self, upper: str, lower: str, variants: tuple[str, ...] = ()) -> tuple[float, float]:
        """Mean and sd (mm) of the distance between ``upper`` and a more caudal ``lower``.

        For non-adjacent levels the means of the adjacent pairs along the chain
        are summed and their sds added in quadrature. The chain is the standard
        one with ``variants`` (and any variant among ``upper``/``lower``) inserted.

        Raises
        ------
        ValueError
            If ``lower`` is not caudal to ``upper`` in that chain.
        """
        used = set(variants) | {v for v in (upper, lower) if v in VARIANT_AFTER}
        levels = chain(tuple(sorted(used)))
        a, b = levels.index(upper), levels.index(lower)
        if b <= a:
            raise ValueError(f"{lower} is not caudal to {upper}")
        mu, sd = chain_moments(self, levels)
        return float(mu[a, b]), float(sd[a, b])

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (inverse of ``from_dict``)."""
        out = {"spacing": {k: [float(m), float(s)] for k, (m, s) in sorted(self.spacing.items())}}
        if self.direction:
            out["direction"] = {k: [float(m), float(s)] for k, (m, s) in sorted(self.direction.items())}
        return out

    @classmethod
    def from_dict(cls, d: Mapping | None) -> ShapeModel:
        """Read the output of ``to_dict``; an empty or missing dict gives the prior-only model.

        A model written before directions were learned (no ``"direction"``) has none.
        """
        def moments(key: str) -> dict[str, tuple[float, float]]:
            return {str(k): (float(v[0]), float(v[1])) for k, v in ((d or {}).get(key, {}) or {}).items()}

        return cls(moments("spacing"), moments("direction"))


def chain_moments(shape: ShapeModel, levels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Expected distance between every two levels of a chain.

    Returns
    -------
    mu, sd : ndarray, shape (L, L)
        ``mu[a, b]`` is the summed mean spacing from level ``a`` to ``b`` (a < b)
        and ``sd[a, b]`` the sds added in quadrature; entries with a >= b are
        0 (mu) and 1 (sd), placeholders that the search forbids.
    """
    adj = np.array([shape.adjacent(up, low) for up, low in itertools.pairwise(levels)], float).reshape(-1, 2)
    cum_mu = np.concatenate([[0.0], np.cumsum(adj[:, 0])])
    cum_var = np.concatenate([[0.0], np.cumsum(adj[:, 1] ** 2)])
    mu = cum_mu[None, :] - cum_mu[:, None]
    var = cum_var[None, :] - cum_var[:, None]
    upper = np.triu(np.ones_like(mu, bool), k=1)
    return np.where(upper, mu, 0.0), np.where(upper, np.sqrt(np.where(upper, var, 1.0)), 1.0)


def chain_directions(shape: ShapeModel, levels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Expected sagittal direction of the step between every two levels of a chain.

    For non-adjacent levels the mean steps (spacing x direction) are summed
    as vectors and the sideways scatter of each step (its length x its
    direction sd, in radians) is added in quadrature and divided by the summed
    length.

    Returns
    -------
    angle, sd : ndarray, shape (L, L)
        Degrees (``sagittal_angle``); ``sd`` is ``inf`` where a step between
        ``a`` and ``b`` (a < b) has no learned direction, and for a >= b.
    """
    L = len(levels)
    angle, sd = np.zeros((L, L)), np.full((L, L), np.inf)
    steps = list(itertools.pairwise(levels))
    known = [shape.step_direction(up, low) for up, low in steps]
    # per learned step: its mean vector (posterior, caudal) and sideways variance
    moves = [
        None if d is None else (
            length * np.array([np.sin(np.radians(d[0])), np.cos(np.radians(d[0]))]), (length * np.radians(d[1])) ** 2
        )
        for d, length in zip(known, (shape.adjacent(up, low)[0] for up, low in steps))
    ]
    for a in range(L):
        vec, var = np.zeros(2), 0.0
        for b in range(a + 1, L):
            move = moves[b - 1]
            if move is None:
                break
            vec = vec + move[0]
            var += move[1]
            norm = float(np.linalg.norm(vec))
            angle[a, b] = np.degrees(np.arctan2(vec[0], vec[1]))
            sd[a, b] = np.degrees(np.sqrt(var) / max(norm, 1e-9))
    return angle, sd


def sagittal_angle(step: np.ndarray) -> np.ndarray:
    """Direction of caudal steps in the sagittal plane, degrees.

    Parameters
    ----------
    step : ndarray, shape (..., 3)
        Lower minus upper centroid, world RAS mm.

    Returns
    -------
    ndarray, shape (...)
        0 for a step straight down (-z), positive when the lower point lies
        posterior (-y), negative anterior; the lateral (x) part is ignored.
    """
    step = np.asarray(step, float)
    return np.degrees(np.arctan2(-step[..., 1], -step[..., 2]))


def _scan_pairs(points: Mapping[str, np.ndarray]) -> Iterable[tuple[str, np.ndarray]]:
    """Adjacent standard-chain pairs of one scan, with their steps (lower minus upper, mm).

    A pair straddling a transitional variant present in the scan (L5-S1 when
    L6 is annotated) is not anatomically adjacent and is skipped.
    """
    named: dict[str, np.ndarray] = {}
    for key, p in points.items():
        try:
            name = parse_level(key)
        except ValueError:
            continue
        p = np.asarray(p, float).reshape(-1)
        if p.shape == (3,) and np.all(np.isfinite(p)):
            named[name] = p
    straddled = {VARIANT_AFTER[v] for v in VARIANT_AFTER if v in named}
    for upper, lower in itertools.pairwise(STANDARD_LEVELS):
        if upper in named and lower in named and upper not in straddled:
            yield _pair_key(upper, lower), named[lower] - named[upper]


def fit_shape_model(
    annotations: Iterable[Mapping[str, np.ndarray]],
    min_samples: int = 3,
    min_sd_mm: float = 2.0,
    prior: ShapeModel | None = None,
) -> ShapeModel:
    """Learn adjacent-level spacings from annotated scans, robustly.

    Parameters
    ----------
    annotations : iterable of mapping
        Per scan, level name -> (3,) RAS mm centroid.
    min_samples : int
        Pairs seen in fewer scans are left to ``prior``, or else to the
        anatomical prior.
    min_sd_mm : float
        Floor on the learned sd (annotation precision is a few mm).
    prior : ShapeModel, optional
        What an earlier fit learned (the model a fine-tune starts from): its
        spacings and directions stand wherever these scans are too few to
        learn the pair (a hospital fine-tuning on a handful of its own scans
        keeps the lumbosacral turn, which needs ``DIRECTION_MIN_SAMPLES``).

    Returns
    -------
    ShapeModel
        Median distance and MAD-based sd (x 1.4826) per pair; the same for the
        step's ``sagittal_angle`` where ``DIRECTION_MIN_SAMPLES`` scans have
        the pair (sd floored at ``DIRECTION_SD_FLOOR_DEG``); ``prior``'s
        elsewhere.
    """
    samples: dict[str, list[np.ndarray]] = {}
    for points in annotations:
        for key, step in _scan_pairs(points):
            samples.setdefault(key, []).append(step)
    spacing, direction = {}, {}
    for key, steps in samples.items():
        if len(steps) >= min_samples:
            spacing[key] = _robust_moments(np.linalg.norm(steps, axis=1), min_sd_mm)
        if len(steps) >= max(min_samples, DIRECTION_MIN_SAMPLES):
            direction[key] = _robust_moments(sagittal_angle(np.asarray(steps)), DIRECTION_SD_FLOOR_DEG)
    if prior is not None:
        spacing, direction = {**prior.spacing, **spacing}, {**prior.direction, **direction}
    return ShapeModel(spacing, direction)


def _robust_moments(values: np.ndarray, min_sd: float) -> tuple[float, float]:
    """Median and MAD-based sd (floored at ``min_sd``) of samples."""
    med = float(np.median(values))
    return med, max(_MAD_TO_SD * float(np.median(np.abs(values - med))), min_sd)
