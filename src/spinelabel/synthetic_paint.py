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


def _trunk_extents(anat: Anatomy, ordinal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anterior skin, posterior skin (both from the body centre) and trunk half-width (mm), each like ``ordinal``."""
    k = anat.scale
    a = np.array([size_prior(TRUNK_ANTERIOR, o) for o in ordinal]) * k
    a = np.where(ordinal >= 17, a * anat.anterior_factor, a)
    p = np.array([size_prior(TRUNK_POSTERIOR, o) for o in ordinal]) * k + anat.fat * 0.5
    w = np.array([size_prior(TRUNK_HALF_WIDTH, o) for o in ordinal]) * k + anat.fat * 0.5
    return a, p, w


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
        z_hi = min(z_hi, level_point(anat, curve, chain[first - 1])[2] - 2.0 * k)
    if last < len(chain) - 1:
        z_lo = max(z_lo, level_point(anat, curve, chain[last + 1])[2] + 2.0 * k)
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


def make_grid(spec: SyntheticSpec, lo: np.ndarray, hi: np.ndarray) -> Grid:
    """Voxel centres covering the box, with the spec's spacing mapped onto R, A, S."""
    spacing = np.zeros(3)
    for code, sp in zip(spec.axcodes.upper(), spec.spacing):
        spacing[world_axis(code)] = sp
    coords, ns, sss = [], [], []
    for a in range(3):
        n = max(1, round((hi[a] - lo[a]) / spacing[a]))
        ss = 1 if spacing[a] <= 1.5 else 2  # thick slices: two sub-slices each
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
    for _ in range(3):
        _, yc, zc_s, phi, psi = curve.sample(s)
        ty, tz = np.cos(psi) * np.sin(phi), -np.cos(psi) * np.cos(phi)
        step = (ty * (y - yc) + tz * (z - zc_s)) / (ty**2 + tz**2)
        s = np.clip(s + np.clip(step, -30, 30), curve.s[0], curve.s[-1])
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


def _paint_soft_tissue(ctx: Context) -> None:
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


def _paint_viscera(ctx: Context, s_of: dict[str, float], dd: np.ndarray, k: float) -> None:
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


def _paint_canal(ctx: Context) -> None:
    """Bony canal (epidural fat), thecal sac (CSF) and cord / conus / brainstem along the curve."""
    anat, segs, k = ctx.anat, ctx.anat.segments, ctx.anat.scale
    dd = ctx.profile([g.half_depth for g in segs])
    ca = ctx.profile([g.canal_ap for g in segs])
    cl = ctx.profile([g.canal_lr for g in segs])
    vc = -(dd + ca + 0.5 * k)
    s, v = ctx.s2, ctx.v2
    along = s > anat.seg("C2").s - 60 * k  # the brainstem and cisterns reach this far up
    foramen = anat.seg("C2").s - c1_offset(anat)[0] - 14 * k
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


def _paint_disc(ctx: Context, i: int) -> None:
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


def _paint_vertebra(ctx: Context, i: int) -> None:
    """Segment i: posterior elements, then the body (cortex shell around marrow)."""
    g, k = ctx.anat.segments[i], ctx.anat.scale
    frame = ctx.curve.frame(g.s)
    hh, dd, ww = g.height / 2, g.half_depth, g.half_width
    region = g.region
    sacral = region == "S"
    tp_len = {"C": 12.0, "T": 26.0, "L": 32.0, "S": 30.0}[region] * k
    sp_len = size_prior(SPINOUS_LEN, g.ordinal) * k
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


def _posterior_elements(u, v, w, g: Segment, k: float, tp_len: float, sp_len: float) -> np.ndarray:
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
    tilt = math.radians(size_prior(SPINOUS_TILT, g.ordinal))
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


def _paint_atlas(ctx: Context) -> None:
    """C1: an elliptic ring (anterior and posterior arches) with lateral masses, centred on its centroid."""
    k = ctx.anat.scale
    frame = ctx.curve.frame(ctx.anat.seg("C2").s).moved(*c1_offset(ctx.anat))
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
    _paint(ctx.labels, sl, (arch <= 0.45) | masses_in, MARROW_BASE + C1_MARROW)


def _paint_head(ctx: Context) -> None:
    """Skull base: scalp, skull (cortex and diploe) with a foramen magnum, CSF, brain, clivus."""
    k = ctx.anat.scale
    c2 = ctx.curve.frame(ctx.anat.seg("C2").s)
    u1, _ = c1_offset(ctx.anat)
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
