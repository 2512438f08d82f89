"""The shape model of the chain: how far apart adjacent vertebral levels lie.

Learned from annotated scans (median and MAD-based sd of each adjacent pair's
centroid distance, ``fit_shape_model``), with anatomical priors
(``anatomy.typical_spacing_mm``) for pairs the annotations lack. The labeling
(``labeling.py``) charges a labeled pair for the deviation of its distance
from these moments.
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
    """

    spacing: dict[str, tuple[float, float]] = field(default_factory=dict)

    def adjacent(self, upper: str, lower: str) -> tuple[float, float]:
        """Mean and sd (mm) of the distance between two adjacent levels."""
        learned = self.spacing.get(_pair_key(upper, lower))
        if learned is not None:
            return float(learned[0]), float(learned[1])
        prior = typical_spacing_mm(upper, lower)
        bodiless = upper in BODILESS_LEVELS or lower in BODILESS_LEVELS
        return prior, (BODILESS_PRIOR_SD_FRACTION if bodiless else PRIOR_SD_FRACTION) * prior

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
        return {"spacing": {k: [float(m), float(s)] for k, (m, s) in sorted(self.spacing.items())}}

    @classmethod
    def from_dict(cls, d: Mapping | None) -> ShapeModel:
        """Read the output of ``to_dict``; an empty or missing dict gives the prior-only model."""
        spacing = (d or {}).get("spacing", {}) or {}
        return cls({str(k): (float(v[0]), float(v[1])) for k, v in spacing.items()})


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


def _scan_pairs(points: Mapping[str, np.ndarray]) -> Iterable[tuple[str, float]]:
    """Adjacent standard-chain pairs of one scan, with their distances (mm).

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
            yield _pair_key(upper, lower), float(np.linalg.norm(named[lower] - named[upper]))


def fit_shape_model(
    annotations: Iterable[Mapping[str, np.ndarray]], min_samples: int = 3, min_sd_mm: float = 2.0
) -> ShapeModel:
    """Learn adjacent-level spacings from annotated scans, robustly.

    Parameters
    ----------
    annotations : iterable of mapping
        Per scan, level name -> (3,) RAS mm centroid.
    min_samples : int
        Pairs seen in fewer scans are left to the anatomical prior.
    min_sd_mm : float
        Floor on the learned sd (annotation precision is a few mm).

    Returns
    -------
    ShapeModel
        Median distance and MAD-based sd (x 1.4826) per pair.
    """
    samples: dict[str, list[float]] = {}
    for points in annotations:
        for key, d in _scan_pairs(points):
            samples.setdefault(key, []).append(d)
    spacing = {}
    for key, values in samples.items():
        if len(values) >= min_samples:
            v = np.asarray(values)
            med = float(np.median(v))
            sd = _MAD_TO_SD * float(np.median(np.abs(v - med)))
            spacing[key] = (med, max(sd, min_sd_mm))
    return ShapeModel(spacing)
