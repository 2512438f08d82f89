"""Synthetic spine painting: the field of view and grid, smooth random fields, and every structure.

The second stage of :func:`spinelabel.synthetic.synthesize_spine`: the world
box and its grid, then each structure (soft tissue, head, canal, discs,
vertebrae, atlas) painted as tissue labels on the grid, back to front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import anatomy
from .synthetic_anatomy import (
    AIR,
    ANNULUS,
    Anatomy,
    BRAIN,
    C1_MARROW,
    CORD,
    CORTEX,
    CSF,
    Curve,
    FAT,
    FLUID,
    Frame,
    LUNG,
    MARROW,
    MARROW_BASE,
    MUSCLE,
    NUCLEUS_BASE,
    POSTERIOR,
    SPINOUS_LEN,
    SPINOUS_TILT,
    Segment,
    SyntheticSpec,
    TRUNK_ANTERIOR,
    TRUNK_HALF_WIDTH,
    TRUNK_POSTERIOR,
    VESSEL,
    VISCERA,
    c1_offset,
    level_point,
    size_prior,
    world_axis,
)

# --------------------------------------------------------------------------------------
# field of view and grid

_ABDOMEN_ORDINAL = 17  #: T10: from here down, the anterior trunk depth takes the abdominal depth factor
#: Share of the subcutaneous fat that pushes the posterior and lateral skin outwards (the rest is taken from
#: the muscle inside); by eye.
_FAT_OUTWARD = 0.5


def _trunk_extents(anat: Anatomy, ordinal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anterior skin, posterior skin (both from the body centre) and trunk half-width (mm), each like ``ordinal``."""
    k = anat.scale
    a = np.array([size_prior(TRUNK_ANTERIOR, o) for o in ordinal]) * k
    a = np.where(ordinal >= _ABDOMEN_ORDINAL, a * anat.anterior_factor, a)
    p = np.array([size_prior(TRUNK_POSTERIOR, o) for o in ordinal]) * k + anat.fat * _FAT_OUTWARD
    w = np.array([size_prior(TRUNK_HALF_WIDTH, o) for o in ordinal]) * k + anat.fat * _FAT_OUTWARD
    return a, p, w


# The default field of view (mm, at scale 1 unless noted), as a clinical scan frames the requested levels.
_FOV_ABOVE_C1_MM = 45.0  #: reach above C1: the skull base and foramen magnum
_FOV_BELOW_S1_MM = 60.0  #: reach below S1: the rest of the sacrum
_FOV_ABOVE_C2_MM = 6.0  #: reach above the C2 body when C2 is the first level: part of the dens
#: Elsewhere the reach is the disc and this fraction of the neighbouring body, a scan cut part-way into it.
_FOV_NEIGHBOUR_SHARE = 0.15
_FOV_NEIGHBOUR_CLEARANCE_MM = 2.0  #: the unrequested neighbours' centres stay at least this far outside
_FOV_AP_MARGIN_MM = 12  #: margin (air) in front of the anterior skin and behind the posterior skin
_FOV_LR_MARGIN_MM = 18  #: margin either side of the widest vertebral body...
_FOV_MIN_HALF_LR_MM = 25.0  #: ... but never a LR half-width below this (mm, not scaled)


def fov_box(
    spec: SyntheticSpec, chain: tuple[str, ...], anat: Anatomy, curve: Curve, points: dict[str, np.ndarray]
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
            return _FOV_ABOVE_C1_MM * k  # skull base
        if level == "S1" and step > 0:
            return _FOV_BELOW_S1_MM * k  # the rest of the sacrum
        i = names.index("C2" if level == "C1" else level)
        cos = abs(math.cos(float(np.interp(segs[i].s, curve.s, curve.phi))))
        if level == "C2" and step < 0:  # up to the dens; C1 is clamped out below
            return (segs[i].height / 2 + _FOV_ABOVE_C2_MM * k) * cos
        nb = segs[i + step]
        gap = segs[i].disc if step > 0 else nb.disc
        return (segs[i].height / 2 + gap + _FOV_NEIGHBOUR_SHARE * nb.height) * cos

    z_hi = pts[0, 2] + beyond(levels[0], -1)
    z_lo = pts[-1, 2] - beyond(levels[-1], +1)
    first, last = chain.index(levels[0]), chain.index(levels[-1])
    if first > 0:  # keep the unrequested neighbours' centres out of view
        z_hi = min(z_hi, level_point(anat, curve, chain[first - 1])[2] - _FOV_NEIGHBOUR_CLEARANCE_MM * k)
    if last < len(chain) - 1:
        z_lo = max(z_lo, level_point(anat, curve, chain[last + 1])[2] + _FOV_NEIGHBOUR_CLEARANCE_MM * k)
    ordinals = [anatomy.ordinal(lv) for lv in levels]
    a, p, _ = _trunk_extents(anat, np.array(ordinals))
    y_lo, y_hi = np.min(pts[:, 1] - p) - _FOV_AP_MARGIN_MM * k, np.max(pts[:, 1] + a) + _FOV_AP_MARGIN_MM * k
    widest = max(anat.seg("C2" if lv == "C1" else lv).half_width for lv in levels)
    half_lr = max(widest + _FOV_LR_MARGIN_MM * k, _FOV_MIN_HALF_LR_MM)
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
class Grid:
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


_THICK_VOXEL_MM = 1.5  #: voxels thicker than this (mm) are rendered at sub-slices and averaged (partial volume)
_SUBSLICES = 2  #: sub-slices per thick voxel


def make_grid(spec: SyntheticSpec, lo: np.ndarray, hi: np.ndarray) -> Grid:
    """Voxel centres covering the box, with the spec's spacing mapped onto R, A, S."""
    spacing = np.zeros(3)
    for code, sp in zip(spec.axcodes.upper(), spec.spacing):
        spacing[world_axis(code)] = sp
    coords, ns, sss = [], [], []
    for a in range(3):
        n = max(1, round((hi[a] - lo[a]) / spacing[a]))
        ss = 1 if spacing[a] <= _THICK_VOXEL_MM else _SUBSLICES  # thick slices: rendered at sub-slices
        start = (lo[a] + hi[a]) / 2 - n * spacing[a] / 2
        coords.append((start + (np.arange(n * ss) + 0.5) * spacing[a] / ss).astype(np.float64))
        ns.append(n)
        sss.append(ss)
    return Grid(tuple(coords), spacing, tuple(ns), tuple(sss))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# smooth random fields on a world lattice (orientation- and spacing-independent)

_BSPLINE_STD = (151 / 315) ** 1.5  # std of a cubic B-spline interpolated unit white lattice (3D)


class LatticeField:
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


def _block(grid: Grid, frame: Frame, lo: tuple[float, float, float], hi: tuple[float, float, float]):
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


_ENDPLATE_CONCAVITY = 0.05  #: endplate concavity at the body's axis, a fraction of its half-height; by eye


def _rounded_cylinder(u, v, w, hh: float, dd: float, ww: float) -> np.ndarray:
    """Inside a vertebral-body shape: elliptic cross-section, flat, slightly concave endplates."""
    r2 = (v / dd) ** 2 + (w / ww) ** 2
    hh_eff = hh * (1 - _ENDPLATE_CONCAVITY * np.clip(1 - r2, 0, 1))
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


_NEWTON_STEPS = 3  #: Newton steps to the nearest curve point (from a start by height): enough for gentle curves
_NEWTON_MAX_STEP_MM = 30  #: longest step (mm of arc), so that no step jumps to another part of the curve


def sagittal_coords(curve: Curve, ys: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Curve coordinates of the sagittal grid (nearest curve point by Newton steps).

    Returns
    -------
    s, v, xc, cos_psi : ndarray, shape (len(ys), len(zs))
        Arc length, anterior distance from the curve, the curve's x there, cos(psi).
    """
    y, z = np.meshgrid(ys, zs, indexing="ij")
    zc = curve.pos[:, 2]
    s = np.interp(z, zc[::-1], curve.s[::-1])
    for _ in range(_NEWTON_STEPS):
        _, yc, zc_s, phi, psi = curve.sample(s)
        ty, tz = np.cos(psi) * np.sin(phi), -np.cos(psi) * np.cos(phi)
        step = (ty * (y - yc) + tz * (z - zc_s)) / (ty**2 + tz**2)
        s = np.clip(s + np.clip(step, -_NEWTON_MAX_STEP_MM, _NEWTON_MAX_STEP_MM), curve.s[0], curve.s[-1])
    xc, yc, zc_s, phi, psi = curve.sample(s)
    v = np.cos(phi) * (y - yc) + np.sin(phi) * (z - zc_s)
    return s, v, xc, np.cos(psi)


@dataclass
class Context:
    """Everything the painters share."""

    grid: Grid
    anat: Anatomy
    curve: Curve
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


def _columns(ctx: Context, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and lateral distances of the given flat (y, z) columns, each (n, nx)."""
    nx = ctx.labels.shape[2]
    return ctx.labels.reshape(-1, nx)[cols], ctx.w3.reshape(-1, nx)[cols]


def _store(ctx: Context, cols: np.ndarray, values: np.ndarray) -> None:
    ctx.labels.reshape(-1, ctx.labels.shape[2])[cols] = values


def _paint_tube(
    ctx: Context,
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


#: Subcutaneous fat of the neck as a fraction of the trunk's, rising to all of it from C7 to T1: (ordinals,
#: fractions) for np.interp; by eye.
_NECK_FAT = ((7, 8), (0.4, 1.0))
#: Muscle fills the trunk behind a plane this fraction of the body's half-depth in front of the body centre
#: (the back and paravertebral muscles)...
_BACK_MUSCLE_FRONT = 0.6
_ANTERIOR_WALL_MM = 10  #: ... and the anterior wall of chest and abdomen, this thick (mm); viscera fill the rest


def _paint_soft_tissue(ctx: Context) -> None:
    """Trunk: subcutaneous fat, muscle behind and beside the spine (and the anterior wall), viscera in front."""
    anat, segs, k = ctx.anat, ctx.anat.segments, ctx.anat.scale
    ordn = np.array([g.ordinal for g in segs])
    a, p, half_w = (ctx.profile(x) for x in _trunk_extents(anat, ordn))
    dd = ctx.profile([g.half_depth for g in segs])
    fat = ctx.profile(anat.fat * np.interp(ordn, *_NECK_FAT))
    v = ctx.v2
    centre, radius = (a - p) / 2, (a + p) / 2
    _paint_tube(ctx, ((v - centre) / radius) ** 2, FAT, half_w, power=4)
    inner = ((v - centre) / (radius - fat)) ** 2
    muscle_zone = (v < _BACK_MUSCLE_FRONT * dd) | (v > a - fat - _ANTERIOR_WALL_MM * k)
    _paint_tube(ctx, _gate(inner, muscle_zone), MUSCLE, half_w - fat, power=4)
    _paint_tube(ctx, _gate(inner, ~muscle_zone), VISCERA, half_w - fat, power=4)
    _paint_viscera(ctx, {g.name: g.s for g in segs}, dd, k)


# Organs (mm, at scale 1), placed by arc length s and by distance in front of the vertebral bodies.
# Sizes are roughly adult; shapes and positions were chosen by eye.
_CHEST_END_ABOVE_T12_MM = 10  #: the chest (lungs) ends this far above the T12 body centre
_MEDIASTINUM_HALF_WIDTH_MM = 30  #: half-width of the mediastinum: chest viscera beyond it are lung
#: Heart semi-axes (SI, AP, LR): an ellipsoid about 9 to 11 cm across, centred at the level of T7...
_HEART_RADII_MM = (45, 50, 55)
_HEART_ANTERIOR_MM = 75  #: ... and this far in front of the vertebral bodies
_BOWEL_FLUID_ABOVE = 1.7  #: the unit-variance bowel texture above this is fluid (~4.5 % of the bowel); by eye
_BOWEL_GAS_BELOW = -1.9  #: ... and below this is gas (~2.9 %); by eye
#: Bladder semi-axes (SI, AP, LR): a moderately filled one (about 260 ml), centred at the level of S4...
_BLADDER_RADII_MM = (40, 35, 45)
_BLADDER_ANTERIOR_MM = 70  #: ... and this far in front of the sacral bodies
_AORTA_RADIUS_MM = 11  #: aorta radius: a tube about 22 mm across, as in adults, from T4 to L4...
_AORTA_ANTERIOR_MM = 14  #: ... its centre this far in front of the vertebral bodies...
_AORTA_LEFT_MM = 10  #: ... and this far left of the midline
#: Airway (pharynx, trachea): its centre in front of the vertebral bodies at these levels.
_AIRWAY_ANTERIOR_MM = {"C2": 14, "C5": 16, "C7": 24, "T2": 30, "T4": 30}
_AIRWAY_HALF_DEPTH_MM = 6  #: airway half-depth (AP)...
_AIRWAY_HALF_WIDTH_MM = 9  #: ... and half-width (LR)
_AIRWAY_ABOVE_C2_MM = 45  #: the airway starts this far above the C2 body centre; it ends at T4 (the carina)


def _paint_viscera(ctx: Context, s_of: dict[str, float], dd: np.ndarray, k: float) -> None:
    """Organs in the visceral zone, placed by arc length: lungs, heart, aorta, airway, bowel, bladder."""
    lab, v, s = ctx.labels, ctx.v2, ctx.s2
    cols = np.flatnonzero((s > s_of["T1"]) & (s < s_of["T12"] - _CHEST_END_ABOVE_T12_MM * k))  # chest
    labels, w = _columns(ctx, cols)
    labels[(labels == VISCERA) & (np.abs(w) > _MEDIASTINUM_HALF_WIDTH_MM * k)] = LUNG
    _store(ctx, cols, labels)
    r_si, r_ap, r_lr = _HEART_RADII_MM
    heart = ((s - s_of["T7"]) / (r_si * k)) ** 2 + ((v - dd - _HEART_ANTERIOR_MM * k) / (r_ap * k)) ** 2
    _paint_tube(ctx, heart, VESSEL, r_lr * k, only=(VISCERA, LUNG))
    cols = np.flatnonzero(s > s_of["T12"])  # abdomen and pelvis: bowel loops with fluid and gas
    if cols.size:
        texture = ctx.bowel.reshape(-1, lab.shape[2])[cols]
        labels, _ = _columns(ctx, cols)
        visc = labels == VISCERA
        labels[visc & (texture > _BOWEL_FLUID_ABOVE)] = FLUID
        labels[visc & (texture < _BOWEL_GAS_BELOW)] = AIR
        _store(ctx, cols, labels)
    r_si, r_ap, r_lr = _BLADDER_RADII_MM
    bladder = ((s - s_of["S4"]) / (r_si * k)) ** 2 + ((v - dd - _BLADDER_ANTERIOR_MM * k) / (r_ap * k)) ** 2
    _paint_tube(ctx, _gate(bladder, v > 0), FLUID, r_lr * k, only=(VISCERA, FLUID, AIR))
    aorta_r2 = ((v - dd - _AORTA_ANTERIOR_MM * k) / (_AORTA_RADIUS_MM * k)) ** 2
    aorta = _gate(aorta_r2, (s > s_of["T4"]) & (s < s_of["L4"]))
    _paint_tube(ctx, aorta, VESSEL, _AORTA_RADIUS_MM * k, w_centre=-_AORTA_LEFT_MM * k)
    names = list(_AIRWAY_ANTERIOR_MM)
    centre = ctx.profile(list(_AIRWAY_ANTERIOR_MM.values()), names) * k + ctx.profile(
        [ctx.anat.seg(n).half_depth for n in names], names
    )
    airway_zone = (s > s_of["C2"] - _AIRWAY_ABOVE_C2_MM * k) & (s < s_of["T4"])
    airway = _gate(((v - centre) / (_AIRWAY_HALF_DEPTH_MM * k)) ** 2, airway_zone)
    _paint_tube(ctx, airway, AIR, _AIRWAY_HALF_WIDTH_MM * k)


# The canal and its contents (mm, at scale 1): roughly adult sizes, shapes by eye.
_CANAL_GAP_MM = 0.5  #: gap between the back of the bodies and the canal: the posterior longitudinal ligament
_BRAINSTEM_ABOVE_C2_MM = 60  #: the brainstem and cisterns (CSF, cord) reach this far above the C2 body centre
_FORAMEN_ABOVE_C1_MM = 14  #: the canal's epidural fat starts this far above C1's centroid: the foramen magnum
_SAC_FRACTION = 0.85  #: the thecal sac fills this fraction of the bony canal (AP, LR), epidural fat around it...
_SAC_FORWARD = 0.1  #: ... shifted forwards by this fraction of the canal's half-depth (more fat behind it)...
_SAC_TAPER_MM = 15  #: ... and tapers to its end at S2 over this length
_CONUS_BELOW_L1_MM = 5  #: the conus ends this far below the L1 body (about the L1/L2 disc, as in most adults)...
_CONUS_TAPER_MM = 25  #: ... tapering over this length
_MEDULLA_ABOVE_C2_MM = 20  #: above this height over the C2 body centre the cord widens into the medulla...
_MEDULLA_WIDENING = 0.6  #: ... by up to this fraction...
_MEDULLA_FLARE_MM = 40  #: ... over this length
#: Cord semi-axes (AP, LR) at these levels, interpolated between them: the cervical enlargement, the narrow
#: thoracic cord.
_CORD_RADII_MM = {"C2": (4.5, 6.5), "C5": (4.5, 7.0), "T1": (4.0, 5.0), "T6": (3.8, 4.5), "T12": (4.0, 4.5)}


def _paint_canal(ctx: Context) -> None:
    """Bony canal (epidural fat), thecal sac (CSF) and cord / conus / brainstem along the curve."""
    anat, segs, k = ctx.anat, ctx.anat.segments, ctx.anat.scale
    dd = ctx.profile([g.half_depth for g in segs])
    ca = ctx.profile([g.canal_ap for g in segs])
    cl = ctx.profile([g.canal_lr for g in segs])
    vc = -(dd + ca + _CANAL_GAP_MM * k)
    s, v = ctx.s2, ctx.v2
    along = s > anat.seg("C2").s - _BRAINSTEM_ABOVE_C2_MM * k  # the brainstem and cisterns reach this far up
    foramen = anat.seg("C2").s - c1_offset(anat)[0] - _FORAMEN_ABOVE_C1_MM * k
    _paint_tube(ctx, _gate(((v - vc) / ca) ** 2, s > foramen), FAT, cl)
    sac = np.clip((anat.seg("S2").s - s) / (_SAC_TAPER_MM * k), 0, 1) * _SAC_FRACTION + 1e-3  # ends at S2
    _paint_tube(ctx, _gate(((v - vc - _SAC_FORWARD * ca) / (ca * sac)) ** 2, along), CSF, cl * sac)
    conus = anat.seg("L1").s + anat.seg("L1").height / 2 + _CONUS_BELOW_L1_MM * k
    names = list(_CORD_RADII_MM)
    medulla = np.clip((anat.seg("C2").s - _MEDULLA_ABOVE_C2_MM * k - s) / (_MEDULLA_FLARE_MM * k), 0, 1)
    taper = np.clip((conus - s) / (_CONUS_TAPER_MM * k), 0, 1) * (1 + medulla * _MEDULLA_WIDENING)
    r_ap = ctx.profile([ap for ap, _ in _CORD_RADII_MM.values()], names) * k * taper + 1e-3
    r_lr = ctx.profile([lr for _, lr in _CORD_RADII_MM.values()], names) * k * taper + 1e-3
    _paint_tube(ctx, _gate(((v - vc) / r_ap) ** 2, along), CORD, r_lr)


_DISC_BULGE = 1.03  #: a disc bulges by this factor beyond the mean depth and width of its two bodies; by eye
_DISC_OVERLAP_MM = 2.0  #: the annulus reaches this far into each endplate (painted over), so no gap shows
_NUCLEUS_BACK = 0.1  #: the nucleus sits this fraction of the disc's half-depth behind its centre...
#: ... with semi-axes this fraction of the disc height, and of the disc's half-depth and half-width; by eye.
_NUCLEUS_FRACTIONS = (0.42, 0.6, 0.65)


def _paint_disc(ctx: Context, i: int) -> None:
    """The disc below segment i: annulus, and a nucleus (own label per disc) unless fused (sacral)."""
    upper, lower = ctx.anat.segments[i], ctx.anat.segments[i + 1]
    s = upper.s + upper.height / 2 + upper.disc / 2
    frame = ctx.curve.frame(s)
    dd = (upper.half_depth + lower.half_depth) / 2 * _DISC_BULGE
    ww = (upper.half_width + lower.half_width) / 2 * _DISC_BULGE
    bend = abs(float(np.interp(lower.s, ctx.curve.s, ctx.curve.phi) - np.interp(upper.s, ctx.curve.s, ctx.curve.phi)))
    hh = upper.disc / 2 + _DISC_OVERLAP_MM * ctx.anat.scale + dd * bend
    blk = _block(ctx.grid, frame, (-hh, -dd, -ww), (hh, dd, ww))
    if blk is None:
        return
    sl, u, v, w = blk
    r2 = (v / dd) ** 2 + (w / ww) ** 2
    _paint(ctx.labels, sl, (np.abs(u) <= hh) & (r2 <= 1), ANNULUS)
    if lower.region != "S" or lower.name == "S1":
        f_height, f_depth, f_width = _NUCLEUS_FRACTIONS
        nucleus = _ellipsoid(u, v, w, 0, -_NUCLEUS_BACK * dd, 0, f_height * upper.disc, f_depth * dd, f_width * ww)
        _paint(ctx.labels, sl, nucleus, NUCLEUS_BASE + i)


# Vertebrae (mm, at scale 1; by region C, T, L, S): roughly adult, shapes and proportions by eye.
#: Length of the transverse processes beyond the pedicles (for S: the sacral wings' lateral parts).
_TRANSVERSE_LEN_MM = {"C": 12.0, "T": 26.0, "L": 32.0, "S": 30.0}
_VERTEBRA_SLACK_MM = 6  #: a vertebra's block reaches this far beyond its parts laterally and caudally...
_VERTEBRA_SLACK_BACK_MM = 8  #: ... and this far posteriorly (it only needs to cover the shapes)
_DENS_BLOCK_MM = 12  #: C2's block reaches this far above its body, to hold the dens
_DENS_ABOVE_BODY_MM = 1  #: the dens: its centre this far above C2's body...
_DENS_RADII_MM = (10, 5, 5)  #: ... its semi-axes (SI, AP, LR): it rises about 1 cm and is 1 cm thick
#: Cortical shell thickness: thicker than the true shell (under a millimetre) so that a dark rim shows at
#: about 1 mm voxels, as on MR; by eye.
_CORTEX_MM = 1.2
_ALA_REACH_MM = 28  #: the sacral alae reach this far beyond the S1 body on either side...
_ALA_FADE = 0.3  #: ... narrowing by this fraction of that per sacral level below S1 (gone by S5)...
_ALA_HEIGHT = 0.9  #: ... their height a fraction of the body's...
_ALA_FRONT = 0.5  #: ... their front this fraction of the body's half-depth in front of its centre


def _paint_vertebra(ctx: Context, i: int) -> None:
    """Segment i: posterior elements, then the body (cortex shell around marrow)."""
    g, k = ctx.anat.segments[i], ctx.anat.scale
    frame = ctx.curve.frame(g.s)
    hh, dd, ww = g.height / 2, g.half_depth, g.half_width
    region = g.region
    sacral = region == "S"
    tp_len = _TRANSVERSE_LEN_MM[region] * k
    sp_len = size_prior(SPINOUS_LEN, g.ordinal) * k
    reach_w = max(ww, g.canal_lr) + tp_len + _VERTEBRA_SLACK_MM * k
    reach_v = dd + 2 * g.canal_ap + _VERTEBRA_SLACK_BACK_MM * k + sp_len
    dens_top = hh + _DENS_BLOCK_MM * k if g.name == "C2" else hh
    reach_u = -hh - sp_len - _VERTEBRA_SLACK_MM * k
    blk = _block(ctx.grid, frame, (reach_u, -reach_v, -reach_w), (dens_top + 1, dd + 1, reach_w))
    if blk is None:
        return
    sl, u, v, w = blk
    post = _posterior_elements(u, v, w, g, k, tp_len, sp_len)
    _paint(ctx.labels, sl, post, POSTERIOR)
    outer = _rounded_cylinder(u, v, w, hh, dd, ww)
    ct = _CORTEX_MM * k
    inner = _rounded_cylinder(u, v, w, hh - ct, dd - ct, ww - ct)
    if g.name == "C2":  # the dens rises from the body into C1's ring
        du, dv, dw = (r * k for r in _DENS_RADII_MM)
        outer |= _ellipsoid(u, v, w, hh + _DENS_ABOVE_BODY_MM * k, 0, 0, du, dv, dw)
        inner |= _ellipsoid(u, v, w, hh + _DENS_ABOVE_BODY_MM * k, 0, 0, du - ct, dv - ct, dw - ct)
    if sacral:  # alae: the wings either side of the sacral bodies
        fade = 1.0 if g.name == "S1" else max(0.0, 1 - _ALA_FADE * (int(g.name[1]) - 1))
        ala = (
            (np.abs(w) <= ww + _ALA_REACH_MM * k * fade)
            & (np.abs(u) <= hh * _ALA_HEIGHT)
            & (v <= dd * _ALA_FRONT)
            & (v >= -dd - 2 * g.canal_ap)
        )
        outer |= ala
        inner |= ala & (np.abs(u) <= hh * _ALA_HEIGHT - ct)
    _paint(ctx.labels, sl, outer, CORTEX)
    _paint(ctx.labels, sl, inner, MARROW_BASE + i)


# Posterior elements (mm at scale 1; by region C, T, L, S; heights "U" as fractions of the body's half-height).
_LAMINA_MM = {"C": 4.0, "T": 5.0, "L": 6.0, "S": 6.0}  #: lamina thickness (AP)
_PEDICLE_MM = {"C": 2.5, "T": 3.5, "L": 4.5, "S": 6.0}  #: pedicle half-width (LR)
_PEDICLE_INSET_MM = 0.5  #: pedicles start this far inside the canal's lateral edge (overlap, so no gap shows)
_PEDICLE_U = (-0.2, 0.8)  #: pedicles span these heights: the upper part of the body
_LAMINA_U = (-1.15, 0.6)  #: laminae span these heights, reaching down over the disc below...
_SACRAL_LAMINA_LOW = -1.0  #: ... but in the sacrum no lower than the body (the fused sacral laminae)
#: Spinous process half-thickness (SI) at its root, a fraction of the body's half-height (lumbar: hatchet-shaped).
_SPINOUS_HALF_THICK = {"C": 0.55, "T": 0.3, "L": 0.75, "S": 0.4}
_SPINOUS_ROOT_U = -0.2  #: spinous process: the height of its root...
_SPINOUS_HALF_WIDTH_MM = 3.0  #: ... its half-width (LR)...
_SPINOUS_TAPER = 0.3  #: ... and its narrowing towards the tip (fraction)
_TRANSVERSE_HALF_THICK_MM = 4  #: transverse process half-thickness (AP)...
_TRANSVERSE_U = 0.2  #: ... its centre height and half-height (the upper body)...
_TRANSVERSE_EXTRA_MM = 2  #: ... plus this to its half-height


def _posterior_elements(u, v, w, g: Segment, k: float, tp_len: float, sp_len: float) -> np.ndarray:
    """Pedicles, laminae, spinous and transverse processes of one segment (local coordinates)."""
    hh, dd, ca, cl = g.height / 2, g.half_depth, g.canal_ap, g.canal_lr
    region = g.region
    lam = _LAMINA_MM[region] * k
    ped = _PEDICLE_MM[region] * k
    back = dd + 2 * ca + _CANAL_GAP_MM * k  # posterior wall of the canal
    aw = np.abs(w)
    ped_lo, ped_hi = _PEDICLE_U
    pedicle = (
        (v <= -dd + 1)
        & (v >= -back)
        & (aw >= cl - _PEDICLE_INSET_MM * k)
        & (aw <= cl + 2 * ped)
        & (u >= ped_lo * hh)
        & (u <= ped_hi * hh)
    )
    u_lo = _SACRAL_LAMINA_LOW if region == "S" else _LAMINA_U[0]
    lamina = (v <= -back + 1) & (v >= -back - lam) & (aw <= cl + 2 * ped) & (u >= u_lo * hh) & (u <= _LAMINA_U[1] * hh)
    tilt = math.radians(size_prior(SPINOUS_TILT, g.ordinal))
    half_thick = _SPINOUS_HALF_THICK[region] * hh
    heading = (-math.sin(tilt), -math.cos(tilt))  # posterior, tilted caudally
    root = (_SPINOUS_ROOT_U * hh, -back - lam / 2)
    spinous = _bar(u, v, w, root, heading, sp_len + lam / 2, half_thick, _SPINOUS_HALF_WIDTH_MM * k, _SPINOUS_TAPER)
    tp_v = -dd - ca
    transverse = (
        (np.abs(v - tp_v) <= _TRANSVERSE_HALF_THICK_MM * k)
        & (aw >= cl)
        & (aw <= cl + 2 * ped + tp_len)
        & (np.abs(u - _TRANSVERSE_U * hh) <= _TRANSVERSE_U * hh + _TRANSVERSE_EXTRA_MM * k)
    )
    if region == "S":
        transverse = (v <= -dd) & (v >= -back - lam) & (aw >= cl) & (aw <= cl + tp_len) & (np.abs(u) <= hh)
    return pedicle | lamina | spinous | transverse


# The atlas, C1 (mm, at scale 1), around its centroid: roughly adult sizes, shapes by eye.
_ATLAS_BLOCK_MM = (8, 24, 42)  #: half-extents (SI, AP, LR) of its block
_ATLAS_RING_MM = (21, 19)  #: outer semi-axes (AP, LR) of the ring: about 42 by 38 mm
_ARCH_RADIAL = (0.86, 0.14)  #: arch cross-section: centre and radial half-width, fractions of the outer radius...
_ARCH_HALF_HEIGHT_MM = 5  #: ... and its half-height (SI)
_ARCH_MARROW = 0.45  #: the inner part of that cross-section (normalised radius squared) that is marrow
_LATERAL_MASS_LR_MM = 17  #: lateral masses: their centre lateral of the centroid...
_LATERAL_MASS_MM = (6.5, 8, 5.5)  #: ... their semi-axes (SI, AP, LR)...
_LATERAL_MASS_MARROW_MM = (5.3, 6.8, 4.3)  #: ... and their marrow's (less the 1.2 mm cortex, written out)
_ATLAS_TRANSVERSE_MM = (3, 4, 20, 38)  #: transverse processes: half-height, half-depth, lateral span (from, to)


def _paint_atlas(ctx: Context) -> None:
    """C1: an elliptic ring (anterior and posterior arches) with lateral masses, centred on its centroid."""
    k = ctx.anat.scale
    frame = ctx.curve.frame(ctx.anat.seg("C2").s).moved(*c1_offset(ctx.anat))
    bu, bv, bw = _ATLAS_BLOCK_MM
    blk = _block(ctx.grid, frame, (-bu * k, -bv * k, -bw * k), (bu * k, bv * k, bw * k))
    if blk is None:
        return
    sl, u, v, w = blk
    ring_ap, ring_lr = _ATLAS_RING_MM
    radial = np.sqrt((v / (ring_ap * k)) ** 2 + (w / (ring_lr * k)) ** 2)  # 1 on the outer rim
    arch_at, arch_half = _ARCH_RADIAL
    arch = ((radial - arch_at) / arch_half) ** 2 + (u / (_ARCH_HALF_HEIGHT_MM * k)) ** 2  # oval arch cross-section
    aw = np.abs(w)
    masses = _ellipsoid(u, v, aw, 0, 0, _LATERAL_MASS_LR_MM * k, *(r * k for r in _LATERAL_MASS_MM))
    tu, tv, t_from, t_to = _ATLAS_TRANSVERSE_MM
    transverse = (np.abs(u) <= tu * k) & (np.abs(v) <= tv * k) & (aw >= t_from * k) & (aw <= t_to * k)
    _paint(ctx.labels, sl, (arch <= 1) | masses | transverse, CORTEX)
    masses_in = _ellipsoid(u, v, aw, 0, 0, _LATERAL_MASS_LR_MM * k, *(r * k for r in _LATERAL_MASS_MARROW_MM))
    _paint(ctx.labels, sl, (arch <= _ARCH_MARROW) | masses_in, MARROW_BASE + C1_MARROW)


# The skull base (mm, at scale 1): roughly adult sizes, shapes by eye.
_SKULL_RADII_MM = (78, 92, 70)  #: skull semi-axes (SI, AP, LR): about an adult head's length and breadth
_SKULL_ABOVE_C1_MM = 14  #: the skull's lowest point lies this far above C1's centroid...
_SKULL_BEHIND_MM = 10  #: ... and its centre this far behind C2's body centre
_HEAD_SLACK_MM = 8  #: the head's block reaches this far beyond the skull on every side (covers the scalp)
_SCALP_MM = 6  #: scalp thickness outside the skull
_DIPLOE_MM = (2, 5)  #: diploe (skull marrow) between these depths below the skull's outer surface...
_SKULL_MM = 7  #: ... the skull's thickness (CSF inside it)...
_BRAIN_DEPTH_MM = 10  #: ... and the brain's surface, this deep
_FORAMEN_RADIUS_MM = 17  #: foramen magnum radius (about 35 mm across)...
_FORAMEN_FORWARD_MM = 2  #: ... its centre this far in front of the skull's centre
#: Clivus block: its reach above C1's centroid, behind and in front of C2's body centre, and half-width.
_CLIVUS_BLOCK_MM = (60, 10, 50, 12)
_CLIVUS_ROOT_MM = (12, 6)  #: clivus: its root above C1's centroid and in front of C2's body centre...
_CLIVUS_DEG = 50  #: ... its angle from the vertical, forwards (deg)...
_CLIVUS_MM = (45, 6, 11)  #: ... its length (about an adult clivus', 4-5 cm), half-thickness, half-width


def _paint_head(ctx: Context) -> None:
    """Skull base: scalp, skull (cortex and diploe) with a foramen magnum, CSF, brain, clivus."""
    k = ctx.anat.scale
    c2 = ctx.curve.frame(ctx.anat.seg("C2").s)
    u1, _ = c1_offset(ctx.anat)
    ru, rv, rw = (r * k for r in _SKULL_RADII_MM)
    skull = c2.moved(u1 + _SKULL_ABOVE_C1_MM * k + ru, -_SKULL_BEHIND_MM * k)
    m = _HEAD_SLACK_MM * k
    blk = _block(ctx.grid, skull, (-ru - m, -rv - m, -rw - m), (ru + m, rv + m, rw + m))
    if blk is None:
        return
    sl, u, v, w = blk
    r = np.sqrt((u / ru) ** 2 + (v / rv) ** 2 + (w / rw) ** 2) * ru  # ~ distance scale in mm
    hole = ((v - _FORAMEN_FORWARD_MM * k) ** 2 + w**2 <= (_FORAMEN_RADIUS_MM * k) ** 2) & (u < -0.5 * ru)
    _paint(ctx.labels, sl, (r <= ru + _SCALP_MM * k), FAT)
    _paint(ctx.labels, sl, (r <= ru) & ~hole, CORTEX)
    _paint(ctx.labels, sl, (r <= ru - _DIPLOE_MM[0] * k) & (r > ru - _DIPLOE_MM[1] * k) & ~hole, MARROW)
    _paint(ctx.labels, sl, (r <= ru - _SKULL_MM * k) | ((r <= ru) & hole), CSF)
    _paint(ctx.labels, sl, r <= ru - _BRAIN_DEPTH_MM * k, BRAIN)
    top, back, front, half_w = _CLIVUS_BLOCK_MM
    blk = _block(ctx.grid, c2, (u1, -back * k, -half_w * k), (u1 + top * k, front * k, half_w * k))
    if blk is not None:
        sl, u, v, w = blk
        up_forward = (math.cos(math.radians(_CLIVUS_DEG)), math.sin(math.radians(_CLIVUS_DEG)))
        root = (u1 + _CLIVUS_ROOT_MM[0] * k, _CLIVUS_ROOT_MM[1] * k)
        length, half_thick, half_width = (x * k for x in _CLIVUS_MM)
        clivus = _bar(u, v, w, root, up_forward, length, half_thick, half_width, 0.0)
        _paint(ctx.labels, sl, clivus, MARROW)

def render_labels(ctx: Context) -> None:
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
