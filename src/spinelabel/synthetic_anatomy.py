"""Synthetic spine anatomy: tissues, contrasts, size priors, the random anatomy and the spine curve.

The first stage of :func:`spinelabel.synthetic.synthesize_spine`: a
:class:`SyntheticSpec` is validated, an anatomy (segment sizes, curvature,
body habitus) is drawn at random, and the spine centre curve is built in
world RAS millimetres, independent of any output grid.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import anatomy

# --------------------------------------------------------------------------------------
# tissues and contrasts

AIR, FAT, MUSCLE, VISCERA, FLUID, LUNG, VESSEL, CORTEX = range(8)
MARROW, POSTERIOR, ANNULUS, NUCLEUS, CSF, CORD, BRAIN = range(8, 15)
TISSUES = ("air", "fat", "muscle", "viscera", "fluid", "lung", "vessel", "cortex",
           "marrow", "posterior", "annulus", "nucleus", "csf", "cord", "brain")  # fmt: skip
#: Label of the nucleus of disc k is NUCLEUS_BASE + k; marrow of segment k is MARROW_BASE + k.
NUCLEUS_BASE, MARROW_BASE = 64, 128
#: Labels reserved per structure from each base: room for 64 segments (C1's marrow takes the last).
SEGMENT_SLOTS = 64

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
RANDOM_DARK = {AIR: 0.15, LUNG: 0.15, CORTEX: 0.25}

# --------------------------------------------------------------------------------------
# size priors (nominal mm at scale 1), keyed by anatomy.ordinal (C1=1 .. S1=25; S2..S5 = 26..29)

# fmt: off
_BODY_HALF_DEPTH = ((2, 8.0), (7, 8.5), (8, 9.0), (13, 12.5), (19, 15.0), (20, 16.0), (24, 17.5), (25, 17.0))
_BODY_HALF_WIDTH = ((2, 9.0), (7, 12.0), (8, 13.0), (13, 15.0), (19, 20.0), (20, 21.0), (24, 25.0), (25, 24.0))
_CANAL_HALF_AP = ((2, 8.0), (4, 7.5), (7, 7.5), (8, 7.0), (19, 7.0), (20, 8.5), (24, 8.5), (25, 7.0), (29, 3.0))
_CANAL_HALF_LR = ((2, 12.5), (7, 12.0), (8, 9.0), (19, 8.5), (20, 10.5), (24, 12.0), (25, 11.0), (29, 4.0))
#: Spinous process tilt below the horizontal (deg) and length (mm).
SPINOUS_TILT = ((2, 20.0), (7, 25.0), (8, 30.0), (11, 55.0), (16, 55.0), (19, 20.0), (20, 8.0), (25, 10.0))
SPINOUS_LEN = ((2, 28.0), (3, 18.0), (6, 20.0), (7, 35.0), (8, 35.0), (19, 32.0), (20, 28.0), (24, 24.0),
                (25, 10.0), (29, 5.0))
#: Trunk outline from the body centre: anterior skin, posterior skin, half width (mm).
TRUNK_ANTERIOR = ((1, 55.0), (7, 65.0), (8, 95.0), (11, 150.0), (17, 160.0), (20, 135.0), (23, 130.0),
                   (25, 115.0), (29, 105.0))
TRUNK_POSTERIOR = ((1, 75.0), (7, 90.0), (8, 95.0), (24, 100.0), (25, 95.0), (29, 80.0))
TRUNK_HALF_WIDTH = ((1, 60.0), (7, 65.0), (8, 150.0), (12, 160.0), (24, 160.0), (29, 175.0))
#: Fused sacral segments below S1: height, depth and width as fractions of S1's.
_SACRAL_FRACTIONS = ((0.8, 0.85, 0.8), (0.65, 0.7, 0.65), (0.5, 0.55, 0.5), (0.4, 0.45, 0.4))
# fmt: on

_DS = 0.5  # curve sampling step (mm)
C1_MARROW = 63  # marrow label offset of the atlas (segments use 0..n-1)


def size_prior(table: tuple[tuple[float, float], ...], ordinal: float) -> float:
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


#: Accepted voxel sizes (mm), exclusive below and inclusive above: a guard against nonsense input (far
#: finer than any scan, a grid too large to render; coarser than any useful slab), not an anatomical bound.
_SPACING_LIMITS_MM = (0.05, 20)
#: Accepted range of each numeric spec field, inclusive: likewise guards against nonsense input, wide
#: around what random_spec draws (scale: half to twice an average adult; lordosis: a kyphotic -30 deg to 90).
_SPEC_LIMITS = {
    "noise": (0, 1),
    "bias": (0, 1),
    "scale": (0.5, 2),
    "lordosis_deg": (-30, 90),
    "scoliosis_deg": (0, 45),
}


def validate_spec(spec: SyntheticSpec) -> tuple[str, ...]:
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
    lo, hi = _SPACING_LIMITS_MM
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= lo) or np.any(spacing > hi):
        raise ValueError(f"spacing must be 3 voxel sizes in ({lo}, {hi}] mm, got {spec.spacing!r}")
    codes = str(spec.axcodes).upper()
    if len(codes) != 3 or sorted(world_axis(c) for c in codes) != [0, 1, 2]:
        raise ValueError(f"axcodes must name one of R/L, A/P and S/I each, got {spec.axcodes!r}")
    if spec.contrast not in (*CONTRASTS, "random"):
        raise ValueError(f"contrast must be one of {(*CONTRASTS, 'random')}, got {spec.contrast!r}")
    checks = {name: low <= getattr(spec, name) <= high for name, (low, high) in _SPEC_LIMITS.items()}
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"out of range: {', '.join(f'{b}={getattr(spec, b)!r}' for b in bad)}")
    if spec.fov_mm is not None:
        fov = np.asarray(spec.fov_mm, dtype=float)
        if fov.shape != (3,) or not np.all(np.isfinite(fov)) or np.any(fov <= 0):
            raise ValueError(f"fov_mm must be 3 positive extents (LR, SI, AP), got {spec.fov_mm!r}")
    return chain


def world_axis(code: str) -> int:
    """0, 1, 2 for an R/L, A/P, S/I axis code; -1 otherwise."""
    return {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(code, -1)


# --------------------------------------------------------------------------------------
# anatomy parameters


@dataclass
class Segment:
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
class Anatomy:
    """Random anatomy: segments laid out along the curve, angles, habitus, gains."""

    segments: list[Segment]
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
    marrow_gain: np.ndarray = field(default_factory=lambda: np.ones(SEGMENT_SLOTS))  # per segment
    disc_state: np.ndarray = field(default_factory=lambda: np.ones(SEGMENT_SLOTS))  # per disc, in [0, 1]

    def seg(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)


#: Range of the per-segment jitter of body height: +-4 %, chosen by eye (neighbours differ a little).
_HEIGHT_JITTER = (0.96, 1.04)
#: Range of the per-disc jitter of disc height: +-12 %, larger than the bodies' as discs vary more; by eye.
_DISC_JITTER = (0.88, 1.12)
#: Height (mm) of the S1/S2 junction (no entry in anatomy.DISC_BELOW_MM): a thin rudimentary disc, by eye.
_S1_DISC_MM = 3.0
#: Height (mm) of the fused junctions between S2..S5: thinner still, by eye.
_FUSED_DISC_MM = 2.5
#: anatomy.ordinal of S1, as in the size-prior tables.
_S1_ORDINAL = 25
#: The ordinal given to S2 (S3..S5 follow), as in the size-prior tables.
_S2_ORDINAL = 26.0
#: Thoracic kyphosis as a factor of the lumbar lordosis (the two curves go together in adults); by eye.
_KYPHOSIS_FACTOR = (0.75, 1.05)
#: Cervical lordosis as a factor of the lumbar lordosis; by eye.
_CERVICAL_LORDOSIS_FACTOR = (0.45, 0.8)
#: Total kyphosis (deg) of the sacrum from S1 to S5: its concave anterior surface; by eye.
_SACRAL_KYPHOSIS_DEG = (45, 70)
#: Sacral slope (deg): the S1 endplate against the horizontal, around the typical adult ~40 deg; by eye.
_SACRAL_SLOPE_DEG = (35, 45)
#: Extra lordosis (deg) at the lumbosacral disc, the most wedge-shaped of the spine; by eye.
_LUMBOSACRAL_DEG = (10, 20)
#: Extra sagittal rotation (deg) of the whole spine: patient positioning; by eye.
_TILT_DEG = (-3, 5)
#: Abdominal depth factor below T10: slim to large bellies; by eye.
_ANTERIOR_FACTOR = (0.8, 1.25)
#: Subcutaneous fat thickness (mm, at scale 1): lean to obese adults; by eye.
_FAT_MM = (6, 28)
#: Offset (mm, each world axis) of the mean level centre from the world origin: where the patient lies.
_OFFSET_MM = (-40, 40)
#: Left-right shift (mm) of the field of view from the spine: off-centre sagittal stacks; by eye.
_FOV_SHIFT_LR_MM = (-5, 5)
#: Antero-posterior shift of the field of view, as a fraction of its depth; by eye.
_FOV_SHIFT_AP = (-0.05, 0.05)
#: Per-segment multiplicative marrow signal (+-7 %): fatty and red marrow vary between levels; by eye.
_MARROW_GAIN = (0.93, 1.07)


def draw_anatomy(spec: SyntheticSpec, chain: tuple[str, ...], rng: np.random.Generator) -> Anatomy:
    """Draw sizes and shape parameters; lay the segments out along the curve.

    Every draw here happens in a fixed number regardless of grid and orientation.
    """
    k = spec.scale
    names = [lv for lv in chain if lv != "C1"] + ["S2", "S3", "S4", "S5"]
    n = len(names)
    h_jit, d_jit = rng.uniform(*_HEIGHT_JITTER, n), rng.uniform(*_DISC_JITTER, n)
    segs: list[Segment] = []
    for i, name in enumerate(names):
        if name in anatomy.VERSE_ID:
            o = anatomy.ordinal(name)
            h = anatomy.BODY_HEIGHT_MM[name]
            d = anatomy.DISC_BELOW_MM.get(name, _S1_DISC_MM)
            dd, ww = size_prior(_BODY_HALF_DEPTH, o), size_prior(_BODY_HALF_WIDTH, o)
        else:  # fused sacral segment S2..S5
            j = int(name[1]) - 2
            fh, fd, fw = _SACRAL_FRACTIONS[j]
            o, h, d = _S2_ORDINAL + j, anatomy.BODY_HEIGHT_MM["S1"] * fh, _FUSED_DISC_MM
            dd, ww = size_prior(_BODY_HALF_DEPTH, _S1_ORDINAL) * fd, size_prior(_BODY_HALF_WIDTH, _S1_ORDINAL) * fw
        segs.append(
            Segment(
                name,
                o,
                h * h_jit[i] * k,
                d * d_jit[i] * k,
                dd * k,
                ww * k,
                size_prior(_CANAL_HALF_AP, o) * k,
                size_prior(_CANAL_HALF_LR, o) * k,
            )
        )
    for prev, cur in itertools.pairwise(segs):
        cur.s = prev.s + prev.height / 2 + prev.disc + cur.height / 2
    lord = math.radians(spec.lordosis_deg)
    return Anatomy(
        segments=segs,
        scale=k,
        lordosis=lord,
        kyphosis=lord * rng.uniform(*_KYPHOSIS_FACTOR),
        cervical_lordosis=lord * rng.uniform(*_CERVICAL_LORDOSIS_FACTOR),
        sacral_kyphosis=math.radians(rng.uniform(*_SACRAL_KYPHOSIS_DEG)),
        sacral_slope=math.radians(rng.uniform(*_SACRAL_SLOPE_DEG)),
        lumbosacral=math.radians(rng.uniform(*_LUMBOSACRAL_DEG)),
        tilt=math.radians(rng.uniform(*_TILT_DEG)),
        scoliosis=math.radians(spec.scoliosis_deg) * rng.choice([-1.0, 1.0]),
        anterior_factor=rng.uniform(*_ANTERIOR_FACTOR),
        fat=rng.uniform(*_FAT_MM) * k,
        offset=rng.uniform(*_OFFSET_MM, 3),
        fov_shift=np.array([rng.uniform(*_FOV_SHIFT_LR_MM), rng.uniform(*_FOV_SHIFT_AP)]),
        marrow_gain=rng.uniform(*_MARROW_GAIN, n),
        disc_state=rng.uniform(0, 1, n),
    )


# --------------------------------------------------------------------------------------
# spine centre curve


@dataclass(frozen=True)
class Frame:
    """A rigid local frame: ``centre`` (3,) and unit axes ``up``, ``ant``, ``right`` (3,) in RAS."""

    centre: np.ndarray
    up: np.ndarray
    ant: np.ndarray
    right: np.ndarray

    def at(self, u: float, v: float, w: float = 0.0) -> np.ndarray:
        """World position (3,) of local coordinates (up, anterior, right)."""
        return self.centre + u * self.up + v * self.ant + w * self.right

    def moved(self, u: float, v: float) -> Frame:
        return Frame(self.at(u, v), self.up, self.ant, self.right)


@dataclass(frozen=True)
class Curve:
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

    def frame(self, s: float) -> Frame:
        x, y, z, phi, psi = (float(a) for a in self.sample(np.asarray(s)))
        t = np.array([math.sin(psi), math.cos(psi) * math.sin(phi), -math.cos(psi) * math.cos(phi)])
        ant = np.array([0.0, math.cos(phi), math.sin(phi)])
        return Frame(np.array([x, y, z]), -t, ant, np.cross(t, ant))


#: Lordosis weight grows from 1 at the top of L1 by this much to the bottom of the last lumbar: the curve
#: is concentrated low, at L4-S1, as in adults.
_LORDOSIS_CAUDAL_GAIN = 2
#: Smoothing (Gaussian sigma, mm of arc) of the curvature, so that regional curves blend; by eye.
_CURVATURE_SMOOTH_MM = 8.0


def _curvature(anat: Anatomy, s: np.ndarray) -> np.ndarray:
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
    spread(lo, hi, -anat.lordosis, 1 + _LORDOSIS_CAUDAL_GAIN * (s - lo) / (hi - lo))
    spread(hi, top["S1"], -anat.lumbosacral)
    spread(bottom["S1"], bottom["S5"], anat.sacral_kyphosis)
    return ndimage.gaussian_filter1d(kappa, _CURVATURE_SMOOTH_MM / _DS, mode="nearest")


def _integrate(s: np.ndarray, phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Positions (M, 3) along the tangent field, 0 at s == 0."""
    t = np.stack([np.sin(psi), np.cos(psi) * np.sin(phi), -np.cos(psi) * np.cos(phi)], axis=1)
    pos = np.concatenate([np.zeros((1, 3)), np.cumsum((t[1:] + t[:-1]) / 2 * _DS, axis=0)])
    return pos - pos[np.argmin(np.abs(s))]


#: Arc length (mm) the curve extends above the C2 body centre and below S5's, so that every grid point
#: of the head and the pelvis finds its nearest curve point; generous, by eye.
_CURVE_ABOVE_MM = 160.0
#: Arc length (mm) the curve extends below the S5 body centre; see _CURVE_ABOVE_MM.
_CURVE_BELOW_MM = 120.0
#: Largest angle (deg) of the curve's tangent from the vertical, so no part of it runs horizontal.
_MAX_TANGENT_DEG = 80


def build_curve(anat: Anatomy, levels: tuple[str, ...]) -> Curve:
    """The spine curve, oriented (sacral slope or a vertical chord) and placed in the world."""
    segs = anat.segments
    s = np.arange(-_CURVE_ABOVE_MM, segs[-1].s + _CURVE_BELOW_MM, _DS)
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
    phi = np.clip(phi + anat.tilt, -math.radians(_MAX_TANGENT_DEG), math.radians(_MAX_TANGENT_DEG))
    pos = _integrate(s, phi, psi)
    curve = Curve(s, pos, phi, psi)
    centre = np.mean([level_point(anat, curve, lv) for lv in levels], axis=0)
    return Curve(s, pos - centre + anat.offset, phi, psi)


#: Arc length (mm, at scale 1) of C1 above the C2 body centre, when C1 ends the run (scoliosis, orientation).
_C1_ARC_ABOVE_C2_MM = 16.0
#: C1's centroid (mm, at scale 1) above the top of C2's body: the ring sits just above it; by eye.
_C1_ABOVE_C2_MM = 2.5
#: C1's centroid (mm, at scale 1) behind C2's centre: the ring surrounds the dens, so its centroid lies
#: behind it; by eye.
_C1_BEHIND_C2_MM = 8.0


def _level_arclength(anat: Anatomy, level: str) -> float:
    return anat.seg("C2").s - _C1_ARC_ABOVE_C2_MM * anat.scale if level == "C1" else anat.seg(level).s


def c1_offset(anat: Anatomy) -> tuple[float, float]:
    """C1 centroid in C2's frame (up, anterior), mm: just above C2, behind the dens."""
    return anat.seg("C2").height / 2 + _C1_ABOVE_C2_MM * anat.scale, -_C1_BEHIND_C2_MM * anat.scale


def level_point(anat: Anatomy, curve: Curve, level: str) -> np.ndarray:
    """World centre (3,) of a level: its body centre, or the centroid of the C1 ring."""
    if level == "C1":
        return curve.frame(anat.seg("C2").s).at(*c1_offset(anat))
    return curve.frame(anat.seg(level).s).centre
