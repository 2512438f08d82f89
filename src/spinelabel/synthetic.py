"""Procedural synthetic sagittal spine MR with known vertebra centres.

A SynthSeg-style generator for training and testing: the anatomy is drawn at
random (sizes, curvature, body habitus), every tissue gets an intensity from
a contrast table (or a random one), and the image is degraded with partial
volume, a smooth bias field and Rician noise.

The anatomy is built analytically in world RAS millimetres, independent of the
output grid: a smooth spine centre curve (lordosis, kyphosis, sacral slope,
optional scoliosis) carries rigid vertebral bodies, discs, posterior elements,
a spinal canal with CSF and cord, the sacrum, the atlas (C1) and axis (C2
with its dens), the skull base, and the soft tissue of neck, chest, abdomen
and pelvis. The output grid is laid over a world box (axes along R, A, S),
every voxel centre is evaluated exactly, and the array is finally permuted and
flipped to the requested orientation with :func:`geometry.reorient`, so the
affine is exact and two orientations of the same spec and seed give the same
image in the world.

Tissue intensities are nominal values in about [0, 1] (arbitrary units).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import anatomy
from .geometry import Volume, reorient

__all__ = ["CONTRASTS", "SyntheticSpec", "random_spec", "synthesize_spine"]

# --------------------------------------------------------------------------------------
# tissues and contrasts

AIR, FAT, MUSCLE, VISCERA, FLUID, LUNG, VESSEL, CORTEX = range(8)
MARROW, POSTERIOR, ANNULUS, NUCLEUS, CSF, CORD, BRAIN = range(8, 15)
TISSUES = ("air", "fat", "muscle", "viscera", "fluid", "lung", "vessel", "cortex",
           "marrow", "posterior", "annulus", "nucleus", "csf", "cord", "brain")  # fmt: skip
#: Label of the nucleus of disc k is NUCLEUS_BASE + k; marrow of segment k is MARROW_BASE + k.
NUCLEUS_BASE, MARROW_BASE = 64, 128

#: Nominal tissue intensities per contrast, in the order of ``TISSUES``.
# fmt: off
CONTRASTS: dict[str, tuple[float, ...]] = {
    #        air   fat   musc  visc  fluid lung  vess  cort  marr  post  annu  nucl  csf   cord  brain
    "T2":   (0.02, 0.78, 0.22, 0.38, 0.92, 0.03, 0.06, 0.06, 0.45, 0.40, 0.30, 0.82, 0.96, 0.40, 0.48),
    "T1":   (0.02, 0.92, 0.32, 0.42, 0.14, 0.03, 0.08, 0.05, 0.62, 0.56, 0.30, 0.40, 0.12, 0.48, 0.52),
    "STIR": (0.02, 0.07, 0.20, 0.35, 0.95, 0.02, 0.05, 0.04, 0.18, 0.17, 0.30, 0.85, 0.96, 0.42, 0.50),
}
# fmt: on
#: Upper bounds for tissues that stay dark in a "random" contrast (air, lung, cortical bone).
_RANDOM_DARK = {AIR: 0.15, LUNG: 0.15, CORTEX: 0.25}

# --------------------------------------------------------------------------------------
# size priors (nominal mm at scale 1), keyed by anatomy.ordinal (C1=1 .. S1=25; S2..S5 = 26..29)

# fmt: off
_BODY_HALF_DEPTH = ((2, 8.0), (7, 8.5), (8, 9.0), (13, 12.5), (19, 15.0), (20, 16.0), (24, 17.5), (25, 17.0))
_BODY_HALF_WIDTH = ((2, 9.0), (7, 12.0), (8, 13.0), (13, 15.0), (19, 20.0), (20, 21.0), (24, 25.0), (25, 24.0))
_CANAL_HALF_AP = ((2, 8.0), (4, 7.5), (7, 7.5), (8, 7.0), (19, 7.0), (20, 8.5), (24, 8.5), (25, 7.0), (29, 3.0))
_CANAL_HALF_LR = ((2, 12.5), (7, 12.0), (8, 9.0), (19, 8.5), (20, 10.5), (24, 12.0), (25, 11.0), (29, 4.0))
#: Spinous process tilt below the horizontal (deg) and length (mm).
_SPINOUS_TILT = ((2, 20.0), (7, 25.0), (8, 30.0), (11, 55.0), (16, 55.0), (19, 20.0), (20, 8.0), (25, 10.0))
_SPINOUS_LEN = ((2, 28.0), (3, 18.0), (6, 20.0), (7, 35.0), (8, 35.0), (19, 32.0), (20, 28.0), (24, 24.0),
                (25, 10.0), (29, 5.0))
#: Trunk outline from the body centre: anterior skin, posterior skin, half width (mm).
_TRUNK_ANTERIOR = ((1, 55.0), (7, 65.0), (8, 95.0), (11, 150.0), (17, 160.0), (20, 135.0), (23, 130.0),
                   (25, 115.0), (29, 105.0))
_TRUNK_POSTERIOR = ((1, 75.0), (7, 90.0), (8, 95.0), (24, 100.0), (25, 95.0), (29, 80.0))
_TRUNK_HALF_WIDTH = ((1, 60.0), (7, 65.0), (8, 150.0), (12, 160.0), (24, 160.0), (29, 175.0))
#: Fused sacral segments below S1: height, depth and width as fractions of S1's.
_SACRAL_FRACTIONS = ((0.8, 0.85, 0.8), (0.65, 0.7, 0.65), (0.5, 0.55, 0.5), (0.4, 0.45, 0.4))
# fmt: on

_DS = 0.5  # curve sampling step (mm)
_C1_MARROW = 63  # marrow label offset of the atlas (segments use 0..n-1)


def _prior(table: tuple[tuple[float, float], ...], ordinal: float) -> float:
    xs, ys = zip(*table)
    return float(np.interp(ordinal, xs, ys))


# --------------------------------------------------------------------------------------
# public spec


@dataclass(frozen=True)
class SyntheticSpec:
    """What to synthesise.

    Parameters
    ----------
    levels : tuple of str
        The vertebrae to return, a contiguous run of ``anatomy.chain(variants)``
        (``"T13"`` / ``"L6"`` present in the run switch those variants on). The
        default field of view shows them, ending part-way into their neighbours.
    spacing : (3,) floats
        Output voxel size (mm) along the output array axes.
    axcodes : str
        Output orientation, e.g. ``"PIR"``, ``"RAS"``, ``"LPS"``.
    contrast : {"T1", "T2", "STIR", "random"}
        Tissue intensity table; ``"random"`` draws every tissue (SynthSeg style).
    noise : float
        Rician noise standard deviation relative to the brightest nominal tissue (~1).
    bias : float
        Strength of the multiplicative smooth bias field (log-amplitude, ~ its std).
    scale : float
        Patient size factor applied to every length.
    lordosis_deg : float
        Lumbar lordosis over L1-L5 (deg). The lumbosacral disc adds a random
        10-20 deg and S1 sits at a sacral slope of 35-45 deg (when in view);
        cervical lordosis is 0.45-0.8x and thoracic kyphosis 0.75-1.05x this angle.
    scoliosis_deg : float
        Coronal Cobb-like angle of a C-shaped curve over the requested levels.
    fov_mm : (3,) floats or None
        Field of view (LR, SI, AP) in mm, centred on the requested levels; the
        default fits the levels plus a margin. An explicit field of view must
        contain every requested centre and may show unrequested neighbours.
    """

    levels: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    axcodes: str = "PIR"
    contrast: str = "T2"
    noise: float = 0.03
    bias: float = 0.2
    scale: float = 1.0
    lordosis_deg: float = 40.0
    scoliosis_deg: float = 0.0
    fov_mm: tuple[float, float, float] | None = None


def _validate(spec: SyntheticSpec) -> tuple[str, ...]:
    """Check a spec; return the anatomical chain (with variants) it lives in.

    Raises
    ------
    ValueError
        On any invalid field.
    """
    levels = tuple(spec.levels)
    if not levels or any(lv not in anatomy.VERSE_ID for lv in levels):
        raise ValueError(f"levels must be known vertebra names, got {levels!r}")
    chain = anatomy.chain(tuple(v for v in anatomy.VARIANT_AFTER if v in levels))
    start = chain.index(levels[0])
    if chain[start : start + len(levels)] != levels:
        raise ValueError(f"levels must be a contiguous cranio-caudal run of {chain}, got {levels!r}")
    spacing = np.asarray(spec.spacing, dtype=float)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0.05) or np.any(spacing > 20):
        raise ValueError(f"spacing must be 3 voxel sizes in (0.05, 20] mm, got {spec.spacing!r}")
    codes = str(spec.axcodes).upper()
    if len(codes) != 3 or sorted(_world_axis(c) for c in codes) != [0, 1, 2]:
        raise ValueError(f"axcodes must name one of R/L, A/P and S/I each, got {spec.axcodes!r}")
    if spec.contrast not in (*CONTRASTS, "random"):
        raise ValueError(f"contrast must be one of {(*CONTRASTS, 'random')}, got {spec.contrast!r}")
    checks = {
        "noise": 0 <= spec.noise <= 1,
        "bias": 0 <= spec.bias <= 1,
        "scale": 0.5 <= spec.scale <= 2,
        "lordosis_deg": -30 <= spec.lordosis_deg <= 90,
        "scoliosis_deg": 0 <= spec.scoliosis_deg <= 45,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"out of range: {', '.join(f'{b}={getattr(spec, b)!r}' for b in bad)}")
    if spec.fov_mm is not None:
        fov = np.asarray(spec.fov_mm, dtype=float)
        if fov.shape != (3,) or not np.all(np.isfinite(fov)) or np.any(fov <= 0):
            raise ValueError(f"fov_mm must be 3 positive extents (LR, SI, AP), got {spec.fov_mm!r}")
    return chain


def _world_axis(code: str) -> int:
    """0, 1, 2 for an R/L, A/P, S/I axis code; -1 otherwise."""
    return {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(code, -1)


# --------------------------------------------------------------------------------------
# anatomy parameters


@dataclass
class _Segment:
    """One body-bearing segment on the spine curve (C2..S1, or a fused sacral S2..S5)."""

    name: str
    ordinal: float
    height: float  # body height along the curve (mm)
    disc: float  # disc below (mm); fused sacral junctions are thin
    half_depth: float
    half_width: float
    canal_ap: float  # bony canal half-extent AP (mm)
    canal_lr: float
    s: float = 0.0  # arc length of the body centre (mm, caudal positive)

    @property
    def region(self) -> str:
        return "S" if self.name.startswith("S") else self.name[0]


@dataclass
class _Anatomy:
    """Random anatomy: segments laid out along the curve, angles, habitus, gains."""

    segments: list[_Segment]
    scale: float
    lordosis: float  # rad
    kyphosis: float
    cervical_lordosis: float
    sacral_kyphosis: float
    sacral_slope: float
    lumbosacral: float  # extra lordotic bend at the lumbosacral disc (rad)
    tilt: float  # extra sagittal rotation (rad)
    scoliosis: float  # signed Cobb-like angle (rad)
    anterior_factor: float  # abdominal depth factor
    fat: float  # subcutaneous fat thickness (mm)
    offset: np.ndarray  # (3,) world position of the mean level centre
    fov_shift: np.ndarray  # (2,) LR mm, AP fraction
    marrow_gain: np.ndarray = field(default_factory=lambda: np.ones(64))  # per segment
    disc_state: np.ndarray = field(default_factory=lambda: np.ones(64))  # per disc, in [0, 1]

    def seg(self, name: str) -> _Segment:
        return next(s for s in self.segments if s.name == name)


def _draw_anatomy(spec: SyntheticSpec, chain: tuple[str, ...], rng: np.random.Generator) -> _Anatomy:
    """Draw sizes and shape parameters; lay the segments out along the curve.

    Every draw here happens in a fixed number regardless of grid and orientation.
    """
    k = spec.scale
    names = [lv for lv in chain if lv != "C1"] + ["S2", "S3", "S4", "S5"]
    n = len(names)
    h_jit, d_jit = rng.uniform(0.96, 1.04, n), rng.uniform(0.88, 1.12, n)
    segs: list[_Segment] = []
    for i, name in enumerate(names):
        if name in anatomy.VERSE_ID:
            o = anatomy.ordinal(name)
            h = anatomy.BODY_HEIGHT_MM[name]
            d = anatomy.DISC_BELOW_MM.get(name, 3.0)
            dd, ww = _prior(_BODY_HALF_DEPTH, o), _prior(_BODY_HALF_WIDTH, o)
        else:  # fused sacral segment S2..S5
            j = int(name[1]) - 2
            fh, fd, fw = _SACRAL_FRACTIONS[j]
            o, h, d = 26.0 + j, anatomy.BODY_HEIGHT_MM["S1"] * fh, 2.5
            dd, ww = _prior(_BODY_HALF_DEPTH, 25) * fd, _prior(_BODY_HALF_WIDTH, 25) * fw
        segs.append(
            _Segment(
                name,
                o,
                h * h_jit[i] * k,
                d * d_jit[i] * k,
                dd * k,
                ww * k,
                _prior(_CANAL_HALF_AP, o) * k,
                _prior(_CANAL_HALF_LR, o) * k,
            )
        )
    for prev, cur in itertools.pairwise(segs):
        cur.s = prev.s + prev.height / 2 + prev.disc + cur.height / 2
    lord = math.radians(spec.lordosis_deg)
    return _Anatomy(
        segments=segs,
        scale=k,
        lordosis=lord,
        kyphosis=lord * rng.uniform(0.75, 1.05),
        cervical_lordosis=lord * rng.uniform(0.45, 0.8),
        sacral_kyphosis=math.radians(rng.uniform(45, 70)),
        sacral_slope=math.radians(rng.uniform(35, 45)),
        lumbosacral=math.radians(rng.uniform(10, 20)),
        tilt=math.radians(rng.uniform(-3, 5)),
        scoliosis=math.radians(spec.scoliosis_deg) * rng.choice([-1.0, 1.0]),
        anterior_factor=rng.uniform(0.8, 1.25),
        fat=rng.uniform(6, 28) * k,
        offset=rng.uniform(-40, 40, 3),
        fov_shift=np.array([rng.uniform(-5, 5), rng.uniform(-0.05, 0.05)]),
        marrow_gain=rng.uniform(0.93, 1.07, n),
        disc_state=rng.uniform(0, 1, n),
    )


# --------------------------------------------------------------------------------------
# spine centre curve


@dataclass(frozen=True)
class _Frame:
    """A rigid local frame: ``centre`` (3,) and unit axes ``up``, ``ant``, ``right`` (3,) in RAS."""

    centre: np.ndarray
    up: np.ndarray
    ant: np.ndarray
    right: np.ndarray

    def at(self, u: float, v: float, w: float = 0.0) -> np.ndarray:
        """World position (3,) of local coordinates (up, anterior, right)."""
        return self.centre + u * self.up + v * self.ant + w * self.right

    def moved(self, u: float, v: float) -> _Frame:
        return _Frame(self.at(u, v), self.up, self.ant, self.right)


@dataclass(frozen=True)
class _Curve:
    """The spine centre curve, sampled every ``_DS`` mm of arc length.

    Attributes
    ----------
    s : ndarray, shape (M,)
        Arc length (mm), increasing caudally; 0 at the C2 body centre.
    pos : ndarray, shape (M, 3)
        RAS positions (mm).
    phi, psi : ndarray, shape (M,)
        Sagittal and coronal tangent angles (rad). The caudal unit tangent is
        ``(sin psi, cos psi sin phi, -cos psi cos phi)``: phi > 0 heads anteriorly.
    """

    s: np.ndarray
    pos: np.ndarray
    phi: np.ndarray
    psi: np.ndarray

    def sample(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Linear interpolation at arc lengths ``s`` (any shape): x, y, z, phi, psi."""
        return tuple(np.interp(s, self.s, a) for a in (*self.pos.T, self.phi, self.psi))

    def frame(self, s: float) -> _Frame:
        x, y, z, phi, psi = (float(a) for a in self.sample(np.asarray(s)))
        t = np.array([math.sin(psi), math.cos(psi) * math.sin(phi), -math.cos(psi) * math.cos(phi)])
        ant = np.array([0.0, math.cos(phi), math.sin(phi)])
        return _Frame(np.array([x, y, z]), -t, ant, np.cross(t, ant))


def _curvature(anat: _Anatomy, s: np.ndarray) -> np.ndarray:
    """Sagittal curvature (rad/mm), shape like ``s``: lordoses < 0, kyphoses > 0."""
    top = {g.name: g.s - g.height / 2 for g in anat.segments}
    bottom = {g.name: g.s + g.height / 2 for g in anat.segments}
    first_lumbar = "L1"
    last_thoracic = "T13" if "T13" in top else "T12"
    kappa = np.zeros_like(s)

    def spread(lo: float, hi: float, angle: float, weight: np.ndarray | None = None) -> None:
        m = (s >= lo) & (s < hi)
        w = np.ones(m.sum()) if weight is None else weight[m]
        kappa[m] += angle * w / (w.sum() * _DS)

    spread(top["C2"], top["T1"], -anat.cervical_lordosis)
    spread(top["T1"], bottom[last_thoracic], anat.kyphosis)
    lo = top[first_lumbar]
    last_lumbar = "L6" if "L6" in top else "L5"
    hi = bottom[last_lumbar]
    spread(lo, hi, -anat.lordosis, 1 + 2 * (s - lo) / (hi - lo))
    spread(hi, top["S1"], -anat.lumbosacral)
    spread(bottom["S1"], bottom["S5"], anat.sacral_kyphosis)
    return ndimage.gaussian_filter1d(kappa, 8.0 / _DS, mode="nearest")


def _integrate(s: np.ndarray, phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Positions (M, 3) along the tangent field, 0 at s == 0."""
    t = np.stack([np.sin(psi), np.cos(psi) * np.sin(phi), -np.cos(psi) * np.cos(phi)], axis=1)
    pos = np.concatenate([np.zeros((1, 3)), np.cumsum((t[1:] + t[:-1]) / 2 * _DS, axis=0)])
    return pos - pos[np.argmin(np.abs(s))]


def _build_curve(anat: _Anatomy, levels: tuple[str, ...]) -> _Curve:
    """The spine curve, oriented (sacral slope or a vertical chord) and placed in the world."""
    segs = anat.segments
    s = np.arange(-160.0, segs[-1].s + 120.0, _DS)
    phi = np.cumsum(_curvature(anat, s)) * _DS
    phi += -anat.sacral_slope - np.interp(anat.seg("S1").s - anat.seg("S1").height / 2, s, phi)
    s_first, s_last = (_level_arclength(anat, lv) for lv in (levels[0], levels[-1]))
    span = max(s_last - s_first, 1.0)
    psi = anat.scoliosis / 2 * np.cos(np.pi * np.clip((s - s_first) / span, 0, 1))
    if "S1" not in levels:  # no sacrum to anchor on: make the visible run roughly vertical
        pos = _integrate(s, phi, psi)
        d = (
            np.interp(s_last, s, pos[:, 1]) - np.interp(s_first, s, pos[:, 1]),
            np.interp(s_last, s, pos[:, 2]) - np.interp(s_first, s, pos[:, 2]),
        )
        phi = phi - math.atan2(d[0], -d[1])
    phi = np.clip(phi + anat.tilt, -math.radians(80), math.radians(80))
    pos = _integrate(s, phi, psi)
    curve = _Curve(s, pos, phi, psi)
    centre = np.mean([_level_point(anat, curve, lv) for lv in levels], axis=0)
    return _Curve(s, pos - centre + anat.offset, phi, psi)


def _level_arclength(anat: _Anatomy, level: str) -> float:
    return anat.seg("C2").s - 16.0 * anat.scale if level == "C1" else anat.seg(level).s


def _c1_offset(anat: _Anatomy) -> tuple[float, float]:
    """C1 centroid in C2's frame (up, anterior), mm: just above C2, behind the dens."""
    return anat.seg("C2").height / 2 + 2.5 * anat.scale, -8.0 * anat.scale


def _level_point(anat: _Anatomy, curve: _Curve, level: str) -> np.ndarray:
    """World centre (3,) of a level: its body centre, or the centroid of the C1 ring."""
    if level == "C1":
        return curve.frame(anat.seg("C2").s).at(*_c1_offset(anat))
    return curve.frame(anat.seg(level).s).centre


# --------------------------------------------------------------------------------------
# field of view and grid


def _trunk_extents(anat: _Anatomy, ordinal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anterior skin, posterior skin (both from the body centre) and trunk half-width (mm), each like ``ordinal``."""
    k = anat.scale
    a = np.array([_prior(_TRUNK_ANTERIOR, o) for o in ordinal]) * k
    a = np.where(ordinal >= 17, a * anat.anterior_factor, a)
    p = np.array([_prior(_TRUNK_POSTERIOR, o) for o in ordinal]) * k + anat.fat * 0.5
    w = np.array([_prior(_TRUNK_HALF_WIDTH, o) for o in ordinal]) * k + anat.fat * 0.5
    return a, p, w


def _fov_box(
    spec: SyntheticSpec, chain: tuple[str, ...], anat: _Anatomy, curve: _Curve, points: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """World box (lo, hi), each (3,) RAS mm, that the image covers.

    Raises
    ------
    ValueError
        If an explicit ``fov_mm`` leaves a requested centre outside.
    """
    k, levels = anat.scale, spec.levels
    pts = np.array([points[lv] for lv in levels])
    segs = anat.segments
    names = [g.name for g in segs]

    def beyond(level: str, step: int) -> float:  # how far the box reaches past an end level
        if level == "C1" and step < 0:
            return 45.0 * k  # skull base
        if level == "S1" and step > 0:
            return 60.0 * k  # the rest of the sacrum
        i = names.index("C2" if level == "C1" else level)
        cos = abs(math.cos(float(np.interp(segs[i].s, curve.s, curve.phi))))
        if level == "C2" and step < 0:  # up to the dens; C1 is clamped out below
            return (segs[i].height / 2 + 6.0 * k) * cos
        nb = segs[i + step]
        gap = segs[i].disc if step > 0 else nb.disc
        return (segs[i].height / 2 + gap + 0.15 * nb.height) * cos

    z_hi = pts[0, 2] + beyond(levels[0], -1)
    z_lo = pts[-1, 2] - beyond(levels[-1], +1)
    first, last = chain.index(levels[0]), chain.index(levels[-1])
    if first > 0:  # keep the unrequested neighbours' centres out of view
        z_hi = min(z_hi, _level_point(anat, curve, chain[first - 1])[2] - 2.0 * k)
    if last < len(chain) - 1:
        z_lo = max(z_lo, _level_point(anat, curve, chain[last + 1])[2] + 2.0 * k)
    ordinals = [anatomy.ordinal(lv) for lv in levels]
    a, p, _ = _trunk_extents(anat, np.array(ordinals))
    y_lo, y_hi = np.min(pts[:, 1] - p) - 12 * k, np.max(pts[:, 1] + a) + 12 * k
    half_lr = max(max(anat.seg("C2" if lv == "C1" else lv).half_width for lv in levels) + 18 * k, 25.0)
    centre = np.array([pts[:, 0].mean() + anat.fov_shift[0], (y_lo + y_hi) / 2, (z_lo + z_hi) / 2])
    extent = np.array([2 * half_lr, y_hi - y_lo, z_hi - z_lo])
    if spec.fov_mm is None:
        centre[1] += anat.fov_shift[1] * extent[1]
    else:
        lr, si, ap = spec.fov_mm
        extent = np.array([lr, ap, si], dtype=float)
    lo, hi = centre - extent / 2, centre + extent / 2
    outside = [lv for lv, q in zip(levels, pts) if np.any(q < lo) or np.any(q > hi)]
    if outside:
        raise ValueError(f"fov_mm {spec.fov_mm} leaves {outside} outside the field of view")
    return lo, hi


@dataclass(frozen=True)
class _Grid:
    """The render grid: voxel centres along R, A, S (world mm).

    ``coords[a]`` has ``n[a] * ss[a]`` entries: each output voxel along axis a
    is rendered at ``ss[a]`` sub-positions (thick slices) and averaged.
    """

    coords: tuple[np.ndarray, np.ndarray, np.ndarray]
    spacing: np.ndarray  # (3,) output spacing along R, A, S
    n: tuple[int, int, int]
    ss: tuple[int, int, int]

    @property
    def out_coords(self) -> list[np.ndarray]:
        return [c.reshape(n, s).mean(axis=1) for c, n, s in zip(self.coords, self.n, self.ss)]

    @property
    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = [c[0] for c in self.out_coords]
        return aff


def _grid(spec: SyntheticSpec, lo: np.ndarray, hi: np.ndarray) -> _Grid:
    """Voxel centres covering the box, with the spec's spacing mapped onto R, A, S."""
    spacing = np.zeros(3)
    for code, sp in zip(spec.axcodes.upper(), spec.spacing):
        spacing[_world_axis(code)] = sp
    coords, ns, sss = [], [], []
    for a in range(3):
        n = max(1, round((hi[a] - lo[a]) / spacing[a]))
        ss = 1 if spacing[a] <= 1.5 else 2  # thick slices: two sub-slices each
        start = (lo[a] + hi[a]) / 2 - n * spacing[a] / 2
        coords.append((start + (np.arange(n * ss) + 0.5) * spacing[a] / ss).astype(np.float64))
        ns.append(n)
        sss.append(ss)
    return _Grid(tuple(coords), spacing, tuple(ns), tuple(sss))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# smooth random fields on a world lattice (orientation- and spacing-independent)

_BSPLINE_STD = (151 / 315) ** 1.5  # std of a cubic B-spline interpolated unit white lattice (3D)


class _LatticeField:
    """A smooth random field: unit-variance white noise on a world lattice, cubic B-spline interpolated.

    Parameters
    ----------
    lo, hi : ndarray, shape (3,)
        World box (RAS mm) the field must cover.
    cell : float
        Lattice step (mm): the correlation length.
    rng : numpy.random.Generator
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, cell: float, rng: np.random.Generator):
        self.lo, self.cell = np.asarray(lo, float), float(cell)
        shape = tuple(math.ceil((top - bottom) / cell) + 6 for bottom, top in zip(lo, hi))
        self.lattice = (rng.standard_normal(shape) / _BSPLINE_STD).astype(np.float32)

    def _weights(self, a: int, coords: np.ndarray) -> np.ndarray:
        """Interpolation matrix (len(coords), lattice size along axis a)."""
        size = self.lattice.shape[a]
        q = (np.asarray(coords, float) - self.lo[a]) / self.cell + 2.0
        i = np.clip(np.floor(q).astype(int), 1, size - 3)
        t = q - i
        w = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], 1) / 6
        m = np.zeros((len(q), size), np.float32)
        rows = np.arange(len(q))
        for j in range(4):
            m[rows, i - 1 + j] = w[:, j]
        return m

    def sample(self, coords: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """The field at the grid of axis coordinates (x, y, z), shape (len(y), len(z), len(x)), float32."""
        mx, my, mz = (self._weights(a, c) for a, c in enumerate(coords))
        out = np.tensordot(self.lattice, mz, axes=(2, 1))  # (Lx, Ly, nz)
        out = np.tensordot(my, out, axes=(1, 1))  # (ny, Lx, nz)
        out = np.ascontiguousarray(out.transpose(0, 2, 1))  # (ny, nz, Lx)
        return (out.reshape(-1, out.shape[2]) @ mx.T).reshape(len(coords[1]), len(coords[2]), len(coords[0]))


# --------------------------------------------------------------------------------------
# rendering helpers


def _block(grid: _Grid, frame: _Frame, lo: tuple[float, float, float], hi: tuple[float, float, float]):
    """Local coordinates on the grid block covering a local box.

    Parameters
    ----------
    lo, hi : (3,) floats
        Local box (up, anterior, right) in mm.

    Returns
    -------
    (slices, u, v, w) or None
        Index slices into the (y, z, x) label array and the local coordinates
        there, each float32 of the block's shape; None when the box misses the grid.
    """
    axes = np.stack([frame.up, frame.ant, frame.right])  # (3 local, 3 world)
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T @ axes + frame.centre
    slices = []
    for a, c in enumerate(grid.coords):
        i0, i1 = np.searchsorted(c, [corners[:, a].min(), corners[:, a].max()])
        if i1 <= i0:
            return None
        slices.append(slice(int(i0), int(i1)))
    d = [(grid.coords[a][slices[a]] - frame.centre[a]).astype(np.float32) for a in range(3)]
    x, y, z = d[0][None, None, :], d[1][:, None, None], d[2][None, :, None]
    u, v, w = ((y * ax[1] + z * ax[2] + x * ax[0]).astype(np.float32) for ax in axes)
    return (slices[1], slices[2], slices[0]), u, v, w


def _paint(labels: np.ndarray, slices: tuple[slice, ...], mask: np.ndarray, value: int) -> None:
    view = labels[slices]
    view[mask] = value


def _rounded_cylinder(u, v, w, hh: float, dd: float, ww: float) -> np.ndarray:
    """Inside a vertebral-body shape: elliptic cross-section, flat, slightly concave endplates."""
    r2 = (v / dd) ** 2 + (w / ww) ** 2
    hh_eff = hh * (1 - 0.05 * np.clip(1 - r2, 0, 1))
    a = (u / hh_eff) ** 2
    return a * a * a + r2 * r2 * r2 <= 1.0


def _ellipsoid(u, v, w, cu: float, cv: float, cw: float, ru: float, rv: float, rw: float) -> np.ndarray:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 + ((w - cw) / rw) ** 2 <= 1.0


def _bar(
    u,
    v,
    w,
    origin: tuple[float, float],
    direction: tuple[float, float],
    length: float,
    half_thick: float,
    half_width: float,
    taper: float = 0.35,
) -> np.ndarray:
    """A bar in the sagittal plane from ``origin`` (u, v) along the unit ``direction`` (du, dv), tapering to its end."""
    du, dv = direction
    pu, pv = u - origin[0], v - origin[1]
    along = pu * du + pv * dv
    across = pu * dv - pv * du
    inside = (along >= 0) & (along <= length) & (np.abs(w) <= half_width)
    return inside & (np.abs(across) <= half_thick * (1 - taper * np.clip(along / length, 0, 1)))


# --------------------------------------------------------------------------------------
# painting: soft tissue, canal, discs, vertebrae, head


def _sagittal_coords(curve: _Curve, ys: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Curve coordinates of the sagittal grid (nearest curve point by Newton steps).

    Returns
    -------
    s, v, xc, cos_psi : ndarray, shape (len(ys), len(zs))
        Arc length, anterior distance from the curve, the curve's x there, cos(psi).
    """
    y, z = np.meshgrid(ys, zs, indexing="ij")
    zc = curve.pos[:, 2]
    s = np.interp(z, zc[::-1], curve.s[::-1])
    for _ in range(3):
        _, yc, zc_s, phi, psi = curve.sample(s)
        ty, tz = np.cos(psi) * np.sin(phi), -np.cos(psi) * np.cos(phi)
        step = (ty * (y - yc) + tz * (z - zc_s)) / (ty**2 + tz**2)
        s = np.clip(s + np.clip(step, -30, 30), curve.s[0], curve.s[-1])
    xc, yc, zc_s, phi, psi = curve.sample(s)
    v = np.cos(phi) * (y - yc) + np.sin(phi) * (z - zc_s)
    return s, v, xc, np.cos(psi)


@dataclass
class _Context:
    """Everything the painters share."""

    grid: _Grid
    anat: _Anatomy
    curve: _Curve
    labels: np.ndarray  # (ny, nz, nx) uint8 on the render grid: one row per (y, z) column
    s2: np.ndarray  # (ny, nz) arc length
    v2: np.ndarray  # (ny, nz) anterior distance from the curve
    w3: np.ndarray  # (ny, nz, nx) lateral distance from the curve (right +)
    bowel: np.ndarray  # (ny, nz, nx) smooth unit-variance texture for the bowel

    def profile(self, values: list[float] | np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """A per-segment quantity interpolated along the arc length, shape (ny, nz)."""
        segs = self.anat.segments if names is None else [self.anat.seg(n) for n in names]
        return np.interp(self.s2, [g.s for g in segs], values).astype(np.float32)


def _at(x: float | np.ndarray, cols: np.ndarray) -> float | np.ndarray:
    """A scalar, or an (ny, nz) map picked at flat column indices, shaped (n, 1)."""
    return x.ravel()[cols][:, None] if isinstance(x, np.ndarray) else x


def _columns(ctx: _Context, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and lateral distances of the given flat (y, z) columns, each (n, nx)."""
    nx = ctx.labels.shape[2]
    return ctx.labels.reshape(-1, nx)[cols], ctx.w3.reshape(-1, nx)[cols]


def _store(ctx: _Context, cols: np.ndarray, values: np.ndarray) -> None:
    ctx.labels.reshape(-1, ctx.labels.shape[2])[cols] = values


def _paint_tube(
    ctx: _Context,
    r2d: np.ndarray,
    value: int,
    w_radius: float | np.ndarray,
    w_centre: float | np.ndarray = 0.0,
    only: tuple[int, ...] | None = None,
    power: int = 2,
) -> None:
    """Paint voxels where ``r2d + ((w - w_centre) / w_radius) ** power <= 1``.

    Only the grid columns (all x at one (y, z)) with ``r2d <= 1`` are visited.

    Parameters
    ----------
    r2d : ndarray, shape (ny, nz)
        The sagittal (curve-coordinate) part of the test.
    w_radius, w_centre : float or ndarray, shape (ny, nz)
        Lateral half-extent and centre (mm).
    only : tuple of int, optional
        Labels that may be overwritten (default: any).
    """
    cols = np.flatnonzero(r2d <= 1)
    if cols.size == 0:
        return
    labels, w = _columns(ctx, cols)
    q = (w - _at(w_centre, cols)) / _at(w_radius, cols)
    q *= q
    if power == 4:
        q *= q
    inside = q <= 1 - r2d.ravel()[cols][:, None]
    if only is not None:
        inside &= np.isin(labels, only)
    labels[inside] = value
    _store(ctx, cols, labels)


def _gate(r2d: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``r2d`` where ``keep``, else outside (2)."""
    return np.where(keep, r2d, np.float32(2.0)).astype(np.float32)


def _paint_soft_tissue(ctx: _Context) -> None:
    """Trunk: subcutaneous fat, muscle behind and beside the spine (and the anterior wall), viscera in front."""
    anat, segs, k = ctx.anat, ctx.anat.segments, ctx.anat.scale
    ordn = np.array([g.ordinal for g in segs])
    a, p, half_w = (ctx.profile(x) for x in _trunk_extents(anat, ordn))
    dd = ctx.profile([g.half_depth for g in segs])
    fat = ctx.profile(anat.fat * np.interp(ordn, [7, 8], [0.4, 1.0]))
    v = ctx.v2
    centre, radius = (a - p) / 2, (a + p) / 2
    _paint_tube(ctx, ((v - centre) / radius) ** 2, FAT, half_w, power=4)
    inner = ((v - centre) / (radius - fat)) ** 2
    muscle_zone = (v < 0.6 * dd) | (v > a - fat - 10 * k)
    _paint_tube(ctx, _gate(inner, muscle_zone), MUSCLE, half_w - fat, power=4)
    _paint_tube(ctx, _gate(inner, ~muscle_zone), VISCERA, half_w - fat, power=4)
    _paint_viscera(ctx, {g.name: g.s for g in segs}, dd, k)


def _paint_viscera(ctx: _Context, s_of: dict[str, float], dd: np.ndarray, k: float) -> None:
    """Organs in the visceral zone, placed by arc length: lungs, heart, aorta, airway, bowel, bladder."""
    lab, v, s = ctx.labels, ctx.v2, ctx.s2
    cols = np.flatnonzero((s > s_of["T1"]) & (s < s_of["T12"] - 10 * k))  # chest
    labels, w = _columns(ctx, cols)
    labels[(labels == VISCERA) & (np.abs(w) > 30 * k)] = LUNG
    _store(ctx, cols, labels)
    heart = ((s - s_of["T7"]) / (45 * k)) ** 2 + ((v - dd - 75 * k) / (50 * k)) ** 2
    _paint_tube(ctx, heart, VESSEL, 55 * k, only=(VISCERA, LUNG))
    cols = np.flatnonzero(s > s_of["T12"])  # abdomen and pelvis: bowel loops with fluid and gas
    if cols.size:
        texture = ctx.bowel.reshape(-1, lab.shape[2])[cols]
        labels, _ = _columns(ctx, cols)
        visc = labels == VISCERA
        labels[visc & (texture > 1.7)] = FLUID
        labels[visc & (texture < -1.9)] = AIR
        _store(ctx, cols, labels)
    bladder = ((s - s_of["S4"]) / (40 * k)) ** 2 + ((v - dd - 70 * k) / (35 * k)) ** 2
    _paint_tube(ctx, _gate(bladder, v > 0), FLUID, 45 * k, only=(VISCERA, FLUID, AIR))
    aorta = _gate(((v - dd - 14 * k) / (11 * k)) ** 2, (s > s_of["T4"]) & (s < s_of["L4"]))
    _paint_tube(ctx, aorta, VESSEL, 11 * k, w_centre=-10 * k)
    names = ["C2", "C5", "C7", "T2", "T4"]
    centre = ctx.profile([14, 16, 24, 30, 30], names) * k + ctx.profile(
        [ctx.anat.seg(n).half_depth for n in names], names
    )
    airway = _gate(((v - centre) / (6 * k)) ** 2, (s > s_of["C2"] - 45 * k) & (s < s_of["T4"]))
    _paint_tube(ctx, airway, AIR, 9 * k)


def _paint_canal(ctx: _Context) -> None:
    """Bony canal (epidural fat), thecal sac (CSF) and cord / conus / brainstem along the curve."""
    anat, segs, k = ctx.anat, ctx.anat.segments, ctx.anat.scale
    dd = ctx.profile([g.half_depth for g in segs])
    ca = ctx.profile([g.canal_ap for g in segs])
    cl = ctx.profile([g.canal_lr for g in segs])
    vc = -(dd + ca + 0.5 * k)
    s, v = ctx.s2, ctx.v2
    along = s > anat.seg("C2").s - 60 * k  # the brainstem and cisterns reach this far up
    foramen = anat.seg("C2").s - _c1_offset(anat)[0] - 14 * k
    _paint_tube(ctx, _gate(((v - vc) / ca) ** 2, s > foramen), FAT, cl)
    sac = np.clip((anat.seg("S2").s - s) / (15 * k), 0, 1) * 0.85 + 1e-3  # the dural sac ends at S2
    _paint_tube(ctx, _gate(((v - vc - 0.1 * ca) / (ca * sac)) ** 2, along), CSF, cl * sac)
    conus = anat.seg("L1").s + anat.seg("L1").height / 2 + 5 * k
    names = ["C2", "C5", "T1", "T6", "T12"]
    taper = np.clip((conus - s) / (25 * k), 0, 1) * (
        1 + np.clip((anat.seg("C2").s - 20 * k - s) / (40 * k), 0, 1) * 0.6
    )
    r_ap = ctx.profile([4.5, 4.5, 4.0, 3.8, 4.0], names) * k * taper + 1e-3
    r_lr = ctx.profile([6.5, 7.0, 5.0, 4.5, 4.5], names) * k * taper + 1e-3
    _paint_tube(ctx, _gate(((v - vc) / r_ap) ** 2, along), CORD, r_lr)


def _paint_disc(ctx: _Context, i: int) -> None:
    """The disc below segment i: annulus, and a nucleus (own label per disc) unless fused (sacral)."""
    upper, lower = ctx.anat.segments[i], ctx.anat.segments[i + 1]
    s = upper.s + upper.height / 2 + upper.disc / 2
    frame = ctx.curve.frame(s)
    dd = (upper.half_depth + lower.half_depth) / 2 * 1.03
    ww = (upper.half_width + lower.half_width) / 2 * 1.03
    bend = abs(float(np.interp(lower.s, ctx.curve.s, ctx.curve.phi) - np.interp(upper.s, ctx.curve.s, ctx.curve.phi)))
    hh = upper.disc / 2 + 2.0 * ctx.anat.scale + dd * bend
    blk = _block(ctx.grid, frame, (-hh, -dd, -ww), (hh, dd, ww))
    if blk is None:
        return
    sl, u, v, w = blk
    r2 = (v / dd) ** 2 + (w / ww) ** 2
    _paint(ctx.labels, sl, (np.abs(u) <= hh) & (r2 <= 1), ANNULUS)
    if lower.region != "S" or lower.name == "S1":
        nucleus = _ellipsoid(u, v, w, 0, -0.1 * dd, 0, 0.42 * upper.disc, 0.6 * dd, 0.65 * ww)
        _paint(ctx.labels, sl, nucleus, NUCLEUS_BASE + i)


def _paint_vertebra(ctx: _Context, i: int) -> None:
    """Segment i: posterior elements, then the body (cortex shell around marrow)."""
    g, k = ctx.anat.segments[i], ctx.anat.scale
    frame = ctx.curve.frame(g.s)
    hh, dd, ww = g.height / 2, g.half_depth, g.half_width
    region = g.region
    sacral = region == "S"
    tp_len = {"C": 12.0, "T": 26.0, "L": 32.0, "S": 30.0}[region] * k
    sp_len = _prior(_SPINOUS_LEN, g.ordinal) * k
    reach_w = max(ww, g.canal_lr) + tp_len + 6 * k
    reach_v = dd + 2 * g.canal_ap + 8 * k + sp_len
    dens_top = hh + 12 * k if g.name == "C2" else hh
    blk = _block(ctx.grid, frame, (-hh - sp_len - 6 * k, -reach_v, -reach_w), (dens_top + 1, dd + 1, reach_w))
    if blk is None:
        return
    sl, u, v, w = blk
    post = _posterior_elements(u, v, w, g, k, tp_len, sp_len)
    _paint(ctx.labels, sl, post, POSTERIOR)
    outer = _rounded_cylinder(u, v, w, hh, dd, ww)
    ct = 1.2 * k
    inner = _rounded_cylinder(u, v, w, hh - ct, dd - ct, ww - ct)
    if g.name == "C2":  # the dens rises from the body into C1's ring
        outer |= _ellipsoid(u, v, w, hh + 1 * k, 0, 0, 10 * k, 5 * k, 5 * k)
        inner |= _ellipsoid(u, v, w, hh + 1 * k, 0, 0, 10 * k - ct, 5 * k - ct, 5 * k - ct)
    if sacral:  # alae: the wings either side of the sacral bodies
        fade = 1.0 if g.name == "S1" else max(0.0, 1 - 0.3 * (int(g.name[1]) - 1))
        ala = (
            (np.abs(w) <= ww + 28 * k * fade) & (np.abs(u) <= hh * 0.9) & (v <= dd * 0.5) & (v >= -dd - 2 * g.canal_ap)
        )
        outer |= ala
        inner |= ala & (np.abs(u) <= hh * 0.9 - ct)
    _paint(ctx.labels, sl, outer, CORTEX)
    _paint(ctx.labels, sl, inner, MARROW_BASE + i)


def _posterior_elements(u, v, w, g: _Segment, k: float, tp_len: float, sp_len: float) -> np.ndarray:
    """Pedicles, laminae, spinous and transverse processes of one segment (local coordinates)."""
    hh, dd, ca, cl = g.height / 2, g.half_depth, g.canal_ap, g.canal_lr
    region = g.region
    lam = {"C": 4.0, "T": 5.0, "L": 6.0, "S": 6.0}[region] * k
    ped = {"C": 2.5, "T": 3.5, "L": 4.5, "S": 6.0}[region] * k
    back = dd + 2 * ca + 0.5 * k  # posterior wall of the canal
    aw = np.abs(w)
    pedicle = (
        (v <= -dd + 1) & (v >= -back) & (aw >= cl - 0.5 * k) & (aw <= cl + 2 * ped) & (u >= -0.2 * hh) & (u <= 0.8 * hh)
    )
    u_lo = -1.0 if region == "S" else -1.15
    lamina = (v <= -back + 1) & (v >= -back - lam) & (aw <= cl + 2 * ped) & (u >= u_lo * hh) & (u <= 0.6 * hh)
    tilt = math.radians(_prior(_SPINOUS_TILT, g.ordinal))
    half_thick = {"C": 0.55 * hh, "T": 0.3 * hh, "L": 0.75 * hh, "S": 0.4 * hh}[region]  # lumbar: hatchet-shaped
    heading = (-math.sin(tilt), -math.cos(tilt))  # posterior, tilted caudally
    spinous = _bar(u, v, w, (-0.2 * hh, -back - lam / 2), heading, sp_len + lam / 2, half_thick, 3.0 * k, 0.3)
    tp_v = -dd - ca
    transverse = (
        (np.abs(v - tp_v) <= 4 * k)
        & (aw >= cl)
        & (aw <= cl + 2 * ped + tp_len)
        & (np.abs(u - 0.2 * hh) <= 0.2 * hh + 2 * k)
    )
    if region == "S":
        transverse = (v <= -dd) & (v >= -back - lam) & (aw >= cl) & (aw <= cl + tp_len) & (np.abs(u) <= hh)
    return pedicle | lamina | spinous | transverse


def _paint_atlas(ctx: _Context) -> None:
    """C1: an elliptic ring (anterior and posterior arches) with lateral masses, centred on its centroid."""
    k = ctx.anat.scale
    frame = ctx.curve.frame(ctx.anat.seg("C2").s).moved(*_c1_offset(ctx.anat))
    blk = _block(ctx.grid, frame, (-8 * k, -24 * k, -42 * k), (8 * k, 24 * k, 42 * k))
    if blk is None:
        return
    sl, u, v, w = blk
    radial = np.sqrt((v / (21 * k)) ** 2 + (w / (19 * k)) ** 2)  # 1 on the outer rim
    arch = ((radial - 0.86) / 0.14) ** 2 + (u / (5 * k)) ** 2  # oval arch cross-section
    aw = np.abs(w)
    masses = _ellipsoid(u, v, aw, 0, 0, 17 * k, 6.5 * k, 8 * k, 5.5 * k)
    transverse = (np.abs(u) <= 3 * k) & (np.abs(v) <= 4 * k) & (aw >= 20 * k) & (aw <= 38 * k)
    _paint(ctx.labels, sl, (arch <= 1) | masses | transverse, CORTEX)
    masses_in = _ellipsoid(u, v, aw, 0, 0, 17 * k, 5.3 * k, 6.8 * k, 4.3 * k)
    _paint(ctx.labels, sl, (arch <= 0.45) | masses_in, MARROW_BASE + _C1_MARROW)


def _paint_head(ctx: _Context) -> None:
    """Skull base: scalp, skull (cortex and diploe) with a foramen magnum, CSF, brain, clivus."""
    k = ctx.anat.scale
    c2 = ctx.curve.frame(ctx.anat.seg("C2").s)
    u1, _ = _c1_offset(ctx.anat)
    ru, rv, rw = 78 * k, 92 * k, 70 * k
    skull = c2.moved(u1 + 14 * k + ru, -10 * k)
    blk = _block(ctx.grid, skull, (-ru - 8 * k, -rv - 8 * k, -rw - 8 * k), (ru + 8 * k, rv + 8 * k, rw + 8 * k))
    if blk is None:
        return
    sl, u, v, w = blk
    r = np.sqrt((u / ru) ** 2 + (v / rv) ** 2 + (w / rw) ** 2) * ru  # ~ distance scale in mm
    hole = ((v - 2 * k) ** 2 + w**2 <= (17 * k) ** 2) & (u < -0.5 * ru)
    _paint(ctx.labels, sl, (r <= ru + 6 * k), FAT)
    _paint(ctx.labels, sl, (r <= ru) & ~hole, CORTEX)
    _paint(ctx.labels, sl, (r <= ru - 2 * k) & (r > ru - 5 * k) & ~hole, MARROW)
    _paint(ctx.labels, sl, (r <= ru - 7 * k) | ((r <= ru) & hole), CSF)
    _paint(ctx.labels, sl, r <= ru - 10 * k, BRAIN)
    blk = _block(ctx.grid, c2, (u1, -10 * k, -12 * k), (u1 + 60 * k, 50 * k, 12 * k))
    if blk is not None:
        sl, u, v, w = blk
        up_forward = (math.cos(math.radians(50)), math.sin(math.radians(50)))
        clivus = _bar(u, v, w, (u1 + 12 * k, 6 * k), up_forward, 45 * k, 6 * k, 11 * k, 0.0)
        _paint(ctx.labels, sl, clivus, MARROW)


# --------------------------------------------------------------------------------------
# intensities and degradation


def _intensity_table(contrast: str, anat: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Label -> intensity lookup, shape (256,), float32 (a fixed number of draws)."""
    jitter = rng.uniform(0.92, 1.08, len(TISSUES))
    random_values = rng.uniform(0, 1, len(TISSUES))
    if contrast == "random":
        base = np.array([random_values[t] * _RANDOM_DARK.get(t, 1.0) for t in range(len(TISSUES))])
        degenerate = 0.5
    else:
        base = np.asarray(CONTRASTS[contrast]) * jitter
        degenerate = 0.15 if contrast == "T1" else 0.2
    lut = np.zeros(256, np.float32)
    lut[: len(TISSUES)] = base
    n = len(anat.segments)
    # a degenerating nucleus loses water: its intensity moves towards the annulus'
    lut[NUCLEUS_BASE : NUCLEUS_BASE + n] = (
        base[NUCLEUS] + (base[ANNULUS] - base[NUCLEUS]) * degenerate * anat.disc_state
    )
    lut[MARROW_BASE : MARROW_BASE + 64] = base[MARROW]
    lut[MARROW_BASE : MARROW_BASE + n] = base[MARROW] * anat.marrow_gain
    return lut


def _render(ctx: _Context) -> None:
    """Paint all structures, back to front."""
    _paint_soft_tissue(ctx)
    names = [g.name for g in ctx.anat.segments]
    _paint_head(ctx)
    _paint_canal(ctx)
    for i in range(len(names) - 1):
        if names[i] != "S5":
            _paint_disc(ctx, i)
    for i in range(len(names)):
        _paint_vertebra(ctx, i)
    _paint_atlas(ctx)


def _blur3(img: np.ndarray, axis: int) -> np.ndarray:
    """Gaussian blur with sigma 0.5 voxel (3 taps, edges repeated) along one axis, in place."""
    a = np.float32(math.exp(-2.0) / (1 + 2 * math.exp(-2.0)))
    x = np.moveaxis(img, axis, 0)
    if x.shape[0] < 2:
        return img
    prev = x[:-1].copy()
    nxt = x[1:].copy()
    x *= 1 - 2 * a
    x[1:] += a * prev
    x[:1] += a * prev[:1]
    x[:-1] += a * nxt
    x[-1:] += a * nxt[-1:]
    return img


def _degrade(
    img: np.ndarray, grid: _Grid, spec: SyntheticSpec, bias: _LatticeField, rng: np.random.Generator
) -> np.ndarray:
    """Partial volume (blur, slice averaging), bias field and Rician noise.

    Parameters
    ----------
    img : ndarray, shape (ny * ss_y, nz * ss_z, nx * ss_x)
        Noise-free tissue intensities on the render grid (y, z, x order).

    Returns
    -------
    ndarray, shape (ny, nz, nx), float32
    """
    for axis, ss in zip((2, 0, 1), grid.ss):  # the grid's x, y, z axes
        if ss == 1:
            _blur3(img, axis)
        else:  # thick slices: sub-slices are averaged below; blur them a little more
            img = ndimage.gaussian_filter1d(img, 0.4 * ss, axis=axis, mode="nearest", truncate=2.5)
    if any(s > 1 for s in grid.ss):
        (nx, ny, nz), (sx, sy, sz) = grid.n, grid.ss
        img = img.reshape(ny, sy, nz, sz, nx, sx).mean(axis=(1, 3, 5), dtype=np.float32)
    if spec.bias > 0:
        x, y, z = grid.out_coords
        img *= np.exp(spec.bias * bias.sample((x, y, z)))
    if spec.noise > 0:
        sd = np.float32(spec.noise)
        re = rng.standard_normal(img.shape, dtype=np.float32)
        re *= sd
        re += img
        im = rng.standard_normal(img.shape, dtype=np.float32)
        im *= sd
        img = np.sqrt(re * re + im * im)
    return img.astype(np.float32, copy=False)


def synthesize_spine(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[Volume, dict[str, np.ndarray]]:
    """Synthesise a sagittal spine MR and the world centre of every requested level.

    Parameters
    ----------
    spec : SyntheticSpec
    rng : numpy.random.Generator
        All randomness; the same spec and seed give the same anatomy in the
        world whatever ``spec.axcodes`` (and, up to voxelisation, ``spec.spacing``).

    Returns
    -------
    volume : Volume
        float32 data of shape (I, J, K) with axes along ``spec.axcodes`` and
        voxel sizes ``spec.spacing``; exact voxel-to-RAS affine.
    points : dict of str to ndarray, shape (3,)
        ``spec.levels`` in order -> vertebral-body centre in world RAS mm (for
        C1, the centroid of its ring).

    Raises
    ------
    ValueError
        For an invalid spec, or an explicit field of view that misses a level.
    """
    chain = _validate(spec)
    anat = _draw_anatomy(spec, chain, rng)
    curve = _build_curve(anat, spec.levels)
    points = {lv: _level_point(anat, curve, lv) for lv in spec.levels}
    lo, hi = _fov_box(spec, chain, anat, curve, points)
    lut = _intensity_table(spec.contrast, anat, rng)
    pad = np.full(3, 10.0)
    bowel = _LatticeField(lo - pad, hi + pad, 8.0 * anat.scale, rng)
    texture = _LatticeField(lo - pad, hi + pad, 6.0, rng)
    bias = _LatticeField(lo - pad, hi + pad, 90.0, rng)
    grid = _grid(spec, lo, hi)
    s2, v2, xc, cos_psi = _sagittal_coords(curve, grid.coords[1], grid.coords[2])
    w3 = ((grid.coords[0][None, None, :] - xc[:, :, None]) * cos_psi[:, :, None]).astype(np.float32)
    labels = np.zeros((len(grid.coords[1]), len(grid.coords[2]), len(grid.coords[0])), np.uint8)
    bowel_texture = bowel.sample(grid.coords)
    ctx = _Context(grid, anat, curve, labels, s2.astype(np.float32), v2.astype(np.float32), w3, bowel_texture)
    _render(ctx)
    img = lut[labels]
    img *= 1 + 0.05 * texture.sample(grid.coords)  # tissue inhomogeneity (marrow, muscle, fat)
    img *= np.where(labels == VISCERA, 1 + 0.18 * bowel_texture, np.float32(1))  # bowel contents
    img = _degrade(img, grid, spec, bias, rng)  # (ny, nz, nx)
    volume = Volume(np.ascontiguousarray(img.transpose(2, 0, 1)), grid.affine)
    return reorient(volume, spec.axcodes.upper()), points


# --------------------------------------------------------------------------------------
# random specs


def _random_levels(rng: np.random.Generator, region: str) -> tuple[str, ...]:
    """A contiguous run of levels typical of a ``region`` scan, variants included at times."""
    variants = tuple(v for v, p in (("T13", 0.04), ("L6", 0.06)) if region != "cervical" and rng.random() < p)
    chain = anatomy.chain(variants)
    idx = chain.index
    if region == "lumbar":
        last = idx("S1") if rng.random() < 0.75 else int(rng.integers(idx("L3"), idx("S1")))
        first = int(rng.integers(max(idx("T6"), last - 9), last - 2))
    elif region == "cervical":
        first = idx("C1") if rng.random() < 0.6 else int(rng.integers(idx("C2"), idx("C4")))
        last = int(rng.integers(max(first + 3, idx("C6")), idx("T4") + 1))
    elif region == "whole":
        first = int(rng.integers(idx("C1"), idx("C3") + 1))
        last = idx("S1") if rng.random() < 0.8 else idx("S1") - 1
    else:
        raise ValueError(f"unknown region {region!r}; expected one of {tuple(anatomy.REGIONS)}")
    return chain[first : last + 1]


def _random_axcodes(rng: np.random.Generator) -> str:
    """Any valid orientation, with clinical sagittal ones (PIR, IPR, ...) more likely."""
    if rng.random() < 0.5:
        return str(rng.choice(["PIR", "IPR", "PIL", "ASR", "IPL", "RAS", "LPS", "LAS", "RPI"]))
    pairs = [("R", "L"), ("A", "P"), ("S", "I")]
    order = rng.permutation(3)
    return "".join(pairs[a][int(rng.integers(2))] for a in order)


def random_spec(rng: np.random.Generator, region: str = "lumbar") -> SyntheticSpec:
    """A randomised, valid spec: partial field of view, contrast, resolution, orientation, curvature, noise.

    Parameters
    ----------
    rng : numpy.random.Generator
    region : {"lumbar", "cervical", "whole"}

    Returns
    -------
    SyntheticSpec
        Thick sagittal slices (3-4 mm across R/L, 0.5-0.9 mm in-plane) 60 % of
        the time, otherwise near-isotropic 0.8-1.5 mm voxels.
    """
    levels = _random_levels(rng, region)
    axcodes = _random_axcodes(rng)
    if rng.random() < 0.6:
        inplane = rng.uniform(0.5, 0.9)
        world = [rng.uniform(3.0, 4.0), inplane, inplane]
    else:
        world = list(rng.uniform(0.8, 1.5) * rng.uniform(0.9, 1.1, 3))
    sx, sy, sz = (float(world[_world_axis(c)]) for c in axcodes)
    contrast = str(rng.choice(["T2", "T1", "STIR", "random"], p=[0.5, 0.25, 0.1, 0.15]))
    lordosis = rng.uniform(15, 60) if region != "cervical" else rng.uniform(10, 70)
    scoliosis = 0.0 if rng.random() < 0.7 else rng.uniform(0, 15)
    return SyntheticSpec(
        levels=levels,
        spacing=(sx, sy, sz),
        axcodes=axcodes,
        contrast=contrast,
        noise=float(rng.uniform(0.0, 0.08)),
        bias=float(rng.uniform(0.0, 0.4)),
        scale=float(rng.uniform(0.85, 1.15)),
        lordosis_deg=float(lordosis),
        scoliosis_deg=float(scoliosis),
    )
