"""Training samples: augmented sagittal crops and their targets, from point labels only.

A training scan is an image plus named vertebra centre points (what clinicians
leave in PACS); no masks are needed. Each sample is a thick sagittal slab
(1-5 mm, as clinical slices are) warped to a crop in the model's pixel grid
with random scale, rotation, translation, contrast, bias field, noise and blur.
Targets are computed analytically from the transformed points:

- heatmap: a Gaussian per vertebra in the slice plane, full height while the
  slab passes through the body (within ``plateau_fraction`` of the level
  spacing of the centre, across the body), falling off beyond: what one slice
  can actually see;
- level map: ``anatomy.ordinal(level) - LEVEL_OFFSET`` near each centre;
- anchor heatmap: the heatmap of the anchor levels (C2, S1) alone;
- validity: zero beyond the first/last annotated vertebra along the spine,
  where visible but unannotated vertebrae (T12 above an L1-L5 set, S1) would
  otherwise be taught as background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from .. import anatomy
from ..geometry import Volume, reorient
from ..preprocessing import CANONICAL_AXCODES, normalize_intensity
from .hardware import draw_hardware, pedicle_hardware
from .intensity import invert_tissue, random_network_contrast
from .spec import SamplerSpec
from .spine_moves import apply_moves, bend_moves, narrow_move, random_collapse, segment_move

#: Targets for the level channel are ordinals relative to L3.
LEVEL_OFFSET = anatomy.ordinal("L3")


@dataclass
class TrainingScan:
    """An image in the canonical (R, I, P) frame with points in its voxel mm frame.

    ``points_mm`` rows are (x, row, col) positions in mm along the canonical axes
    (voxel index times spacing), so sampling needs no affine at all.
    """

    scan_id: str
    data: np.ndarray  # (slices, rows, cols) float32, normalised
    spacing: np.ndarray  # (3,)
    levels: list[str]
    points_mm: np.ndarray  # (N, 3)
    #: Levels among ``levels`` that a detector supplied, not the annotations (see ``training.anchors``).
    pseudo_levels: tuple[str, ...] = ()
    ordinals: np.ndarray = field(init=False)
    is_anchor: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        order = np.argsort([anatomy.ordinal(lv) for lv in self.levels])
        self.levels = [self.levels[i] for i in order]
        self.points_mm = np.asarray(self.points_mm, dtype=float)[order]
        self.ordinals = np.array([anatomy.ordinal(lv) for lv in self.levels])
        self.is_anchor = np.array([lv in anatomy.ANCHOR_LEVELS for lv in self.levels], bool)


def make_training_scan(
    scan_id: str, volume: Volume, points: dict[str, np.ndarray], pseudo_levels: tuple[str, ...] = ()
) -> TrainingScan:
    """Reorient an annotated volume to the canonical frame and normalise it."""
    canon = reorient(volume, CANONICAL_AXCODES)
    levels = list(points)
    vox = canon.world_to_voxel(np.array([points[lv] for lv in levels]))
    data = normalize_intensity(canon.real_data())
    return TrainingScan(scan_id, data, canon.spacing, levels, vox * canon.spacing, tuple(pseudo_levels))


def _slab(scan: TrainingScan, x_mm: float, thickness_mm: float) -> np.ndarray:
    """Mean of the slices within a slab centred at x_mm, shape (rows, cols)."""
    n = scan.data.shape[0]
    lo = int(np.floor((x_mm - thickness_mm / 2) / scan.spacing[0] + 0.5))
    hi = int(np.floor((x_mm + thickness_mm / 2) / scan.spacing[0] + 0.5))
    lo, hi = np.clip([lo, max(hi, lo + 1)], 0, n)
    if hi <= lo:
        lo, hi = n - 1, n
    return scan.data[lo:hi].mean(axis=0)


def _crop_transform(rng: np.random.Generator, spec: SamplerSpec, centre_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2x2 matrix and offset mapping crop pixels (u, v) to source mm (row, col)."""
    scale = rng.uniform(*spec.scale) * spec.pixel_mm
    theta = np.deg2rad(rng.uniform(-spec.rotation_deg, spec.rotation_deg))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = rot * scale
    half = (spec.crop_px - 1) / 2
    offset = centre_mm - matrix @ np.array([half, half])
    return matrix, offset


def _level_spacing_mm(scan: TrainingScan, spec: SamplerSpec) -> np.ndarray:
    """Distance from each point to its nearest annotated neighbour (mm), shape (N,)."""
    if len(scan.points_mm) < 2:
        return np.full(len(scan.points_mm), spec.default_spacing_mm)
    d = np.linalg.norm(scan.points_mm[:, None] - scan.points_mm[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def lateral_profile(scan: TrainingScan, spec: SamplerSpec, x_mm: float | np.ndarray) -> np.ndarray:
    """Heatmap height per vertebra for a slab at x_mm (scalar, or (N,) per point): 1 inside the body, Gaussian fall-off outside."""
    half = spec.plateau_fraction * _level_spacing_mm(scan, spec)
    beyond = np.maximum(np.abs(scan.points_mm[:, 0] - x_mm) - half, 0.0)
    return np.exp(-(beyond**2) / (2 * spec.lateral_falloff_mm**2))


def _targets(
    scan: TrainingScan, spec: SamplerSpec, matrix: np.ndarray, offset: np.ndarray, x_mm: float | np.ndarray
):
    """Heatmap, level map, level weight, validity and anchor heatmap for one crop, each (crop, crop)."""
    n = spec.crop_px
    uu, vv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    inv = np.linalg.inv(matrix)
    uv = (scan.points_mm[:, 1:] - offset) @ inv.T  # (N, 2) crop pixels
    amp = lateral_profile(scan, spec, x_mm)
    heat = np.zeros((n, n), np.float32)
    level = np.zeros((n, n), np.float32)
    level_w = np.zeros((n, n), np.float32)
    anchor = np.zeros((n, n), np.float32)
    for (u, v), a, ordv, is_anchor in zip(uv, amp, scan.ordinals, scan.is_anchor):
        d2 = (uu - u) ** 2 + (vv - v) ** 2
        blob = a * np.exp(-d2 / (2 * spec.heatmap_sigma_px**2))
        heat = np.maximum(heat, blob)
        if is_anchor:
            anchor = np.maximum(anchor, blob)
        near = (d2 <= spec.level_radius_px**2) & (a > spec.level_min_amplitude)
        level[near] = ordv - LEVEL_OFFSET
        level_w[near] = a
    valid = _validity(uv, scan, spec, matrix, uu, vv)
    return heat, level, level_w, valid, anchor


def _validity(uv, scan, spec, matrix, uu, vv) -> np.ndarray:
    """Zero in a band along the spine beyond the first and last annotated vertebra."""
    valid = np.ones(uu.shape, np.float32)
    if len(uv) < 2:
        return valid
    px = float(np.sqrt(abs(np.linalg.det(matrix))))
    for end, nxt in ((0, 1), (-1, -2)):
        direction = uv[end] - uv[nxt]
        spacing = np.linalg.norm(direction)
        direction = direction / max(spacing, 1e-6)
        du, dv = uu - uv[end][0], vv - uv[end][1]
        along = du * direction[0] + dv * direction[1]
        across = np.abs(-du * direction[1] + dv * direction[0])
        band = (along > spec.validity_band_start * spacing) & (across < spec.unannotated_band_mm / px)
        valid[band] = 0.0
    return valid


def _edge_cut(
    rng: np.random.Generator,
    points: np.ndarray,
    y: np.ndarray,
    p_edge: float,
    edge_mm: tuple[float, float],
    tilt_deg: float,
    p_gap: float,
    gap_fraction: tuple[float, float],
    outward: float,
    bodiless: np.ndarray | None = None,
    end_weights: tuple[float, ...] = (),
) -> tuple[np.ndarray, int] | None:
    """A field of view ending at one end of the annotated spine, or None (not drawn).

    Either an edge across the image rows (tilted by up to ``tilt_deg``) at
    ``edge_mm`` beyond the end-most point (probability ``p_edge``), or an edge
    across the spine between two points (``p_gap``, at ``gap_fraction`` of
    their distance from the kept one).

    Parameters
    ----------
    points : ndarray, shape (N, 2)
        In-plane (row, col) mm, ordered from the far end towards this one.
    y : ndarray, shape (..., 2)
        Source mm of each crop pixel.
    outward : float
        +1 when this end lies towards increasing rows (caudal), -1 otherwise.
    bodiless : ndarray of bool, shape (N,), optional
        Points of levels without a body (C1): a gap cut never drops one of
        them as the first point beyond it, which would cut the body next to it.
    end_weights : tuple of float
        Weights of the gaps nearest this end, nearest first (``_pick_gap``).

    Returns
    -------
    mask : ndarray of bool, shape y.shape[:-1]
        Crop pixels beyond the edge.
    keep : int
        How many of ``points`` (from the far end) stay in the targets.
    """
    n = len(points)
    if n < 2 or p_edge + p_gap <= 0.0:  # no draw when off: other regions' samples stay as they were
        return None
    draw = rng.random()
    if draw < p_edge:
        tilt = np.deg2rad(rng.uniform(-tilt_deg, tilt_deg))
        out = outward * np.array([np.cos(tilt), np.sin(tilt)])  # rows run inferior
        return (y - points[-1]) @ out > rng.uniform(*edge_mm), n
    allowed = [k for k in range(1, n) if bodiless is None or not bodiless[k]]  # keep >= 1, drop >= 1
    if draw < p_edge + p_gap and allowed:
        i = _pick_gap(rng, allowed, n, end_weights)
        kept, nxt = points[i - 1], points[i]
        gap = max(float(np.linalg.norm(nxt - kept)), 1e-6)
        return (y - kept) @ ((nxt - kept) / gap) > rng.uniform(*gap_fraction) * gap, i
    return None


def _pick_gap(rng: np.random.Generator, allowed: list[int], n: int, end_weights: tuple[float, ...]) -> int:
    """The first point a gap cut drops, of ``allowed`` (indices into ``n`` points, far end first).

    Equal odds when ``end_weights`` is empty (one integer draw, as before the
    weights existed, so that earlier recipes draw the same crops); otherwise the
    gap before point k weighs ``end_weights[n - 1 - k]`` when there is one, else 1.
    """
    if not end_weights:
        return allowed[int(rng.integers(len(allowed)))]
    w = np.array([end_weights[n - 1 - k] if n - 1 - k < len(end_weights) else 1.0 for k in allowed])
    return allowed[int(rng.choice(len(allowed), p=w / w.sum()))]


def _caudal_cut(
    rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec, y: np.ndarray
) -> tuple[np.ndarray, int] | None:
    """A cut ending the image caudally (``p_caudal_cut``, ``p_gap_cut``), or None.

    Returns the crop pixels beyond it and how many points, from the cranial
    end, stay in the targets (``_edge_cut``).
    """
    return _edge_cut(
        rng, scan.points_mm[:, 1:], y, spec.p_caudal_cut, spec.caudal_cut_mm, spec.caudal_cut_tilt_deg,
        spec.p_gap_cut, spec.gap_cut_fraction, outward=1.0, end_weights=tuple(spec.gap_cut_caudal_weights),
    )


def _cranial_cut(
    rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec, y: np.ndarray
) -> tuple[np.ndarray, int] | None:
    """A cut starting the image cranially (``p_cranial_cut``, ``p_cranial_gap_cut``), or None.

    Returns the crop pixels beyond it and how many points, from the caudal
    end, stay in the targets (``_edge_cut``).
    """
    return _edge_cut(
        rng, scan.points_mm[::-1, 1:], y, spec.p_cranial_cut, spec.cranial_cut_mm, spec.caudal_cut_tilt_deg,
        spec.p_cranial_gap_cut, spec.gap_cut_fraction, outward=-1.0,
        bodiless=np.array([lv in anatomy.BODILESS_LEVELS for lv in scan.levels[::-1]], bool),
    )


def _tilted_slab(
    rng: np.random.Generator, spec: SamplerSpec, x_mm: float, centre: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """A random oblique, bent slab: the lateral position x (mm) at in-plane source positions (..., 2)."""
    tilt = np.tan(np.deg2rad(rng.uniform(-spec.oblique_deg, spec.oblique_deg, 2)))
    amplitude = rng.uniform(-spec.lateral_curve_mm, spec.lateral_curve_mm)
    wavelength = rng.uniform(*spec.lateral_curve_wavelength_mm)
    phase = rng.uniform(0, 2 * np.pi)

    def lateral(rc: np.ndarray) -> np.ndarray:
        d = rc - centre
        bend = amplitude * (np.sin(2 * np.pi * d[..., 0] / wavelength + phase) - np.sin(phase))
        return x_mm + d @ tilt + bend

    return lateral


def _read_slab(scan: TrainingScan, xs: np.ndarray, thickness_mm: float, y: np.ndarray) -> np.ndarray:
    """Mean over a slab of ``thickness_mm`` around the surface x = xs (...,) mm, at in-plane positions y (..., 2)."""
    n = max(1, int(round(thickness_mm / scan.spacing[0])))
    rows, cols = y[..., 0] / scan.spacing[1], y[..., 1] / scan.spacing[2]
    out = np.zeros(y.shape[:-1], np.float32)
    for dx in np.linspace(-thickness_mm / 2, thickness_mm / 2, n + 2)[1:-1]:
        coords = np.stack([(xs + dx) / scan.spacing[0], rows, cols])
        out += ndimage.map_coordinates(scan.data, coords, order=1, cval=0.0)
    return out / n


def _remap(rng: np.random.Generator, img: np.ndarray, spec: SamplerSpec) -> np.ndarray:
    """A smooth random intensity remap; knots at random intensities or at tissue quantiles."""
    fg = img[img > spec.foreground_threshold]
    if rng.random() < spec.tissue_remap_share and fg.size > spec.tissue_remap_min_pixels:
        knots = np.percentile(fg, np.sort(rng.uniform(*spec.tissue_percentiles, spec.remap_knots)))
    else:
        knots = rng.uniform(0, 1, spec.remap_knots)
    xs = np.concatenate([[0], np.sort(knots), [max(spec.intensity_clip, float(img.max()))]])
    xs = np.maximum.accumulate(xs + np.arange(xs.size) * 1e-6)  # strictly increasing for interp
    ys = rng.uniform(0, 1, xs.size)
    ys[0] = rng.uniform(0, spec.remap_background_max)
    return np.interp(img, xs, ys)


def _augment_intensity(rng: np.random.Generator, img: np.ndarray, spec: SamplerSpec) -> np.ndarray:
    """Random contrast remap or inversion, gamma, bias field, blur, noise, gain and offset (domain randomisation)."""
    img = np.clip(img, 0, spec.intensity_clip)
    if spec.p_random_network and rng.random() < spec.p_random_network:
        img = random_network_contrast(
            rng, img, spec.random_network_layers, spec.random_network_channels, spec.random_network_kernels,
            spec.random_network_leak, spec.random_network_blend, spec.random_network_blend_grid, spec.intensity_clip,
        )
    elif rng.random() < spec.p_remap:  # other contrasts (T1, STIR, Dixon)
        img = _remap(rng, img, spec)
    elif rng.random() < spec.p_invert:
        if spec.invert_keeps_air_dark:
            img = invert_tissue(img, spec.intensity_clip, spec.air_smoothing_px, spec.air_range)
        else:
            img = 1.0 - img / spec.intensity_clip
    img = np.clip(img, 0, None) ** rng.uniform(*spec.gamma)
    n, grid = img.shape[0], spec.bias_field_grid
    if rng.random() < spec.p_bias_field:
        coarse = rng.normal(0, rng.uniform(*spec.bias_field_sd), (grid, grid))
        field_ = ndimage.zoom(coarse, n / grid, order=3)[:n, :n]
        img = img * np.exp(field_)
    if rng.random() < spec.p_blur:
        img = ndimage.gaussian_filter(img, rng.uniform(*spec.blur_sigma_px))
    if rng.random() < spec.p_noise:
        img = img + rng.normal(0, rng.uniform(*spec.noise_sd), img.shape)
    img = img * rng.uniform(*spec.gain) + rng.uniform(*spec.offset)
    return img.astype(np.float32)


def _negative(rng: np.random.Generator, spec: SamplerSpec) -> tuple[np.ndarray, ...]:
    """A sample with no vertebrae at all: smooth random texture (all six arrays)."""
    n = spec.crop_px
    img = ndimage.gaussian_filter(rng.normal(spec.negative_mean, spec.negative_sd, (n, n)),
                                  rng.uniform(*spec.negative_smoothing_px))
    img = _augment_intensity(rng, np.clip(img, 0, 1), spec)
    zeros = np.zeros((n, n), np.float32)
    return img, zeros, zeros, zeros, np.ones((n, n), np.float32), zeros


def _centre_index(rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec) -> int:
    """The annotated point a crop is centred near: uniform, or weighted by ``spec.centre_weights``."""
    if not spec.centre_weights:
        return int(rng.integers(len(scan.points_mm)))
    weights = dict(spec.centre_weights)
    w = np.array([weights.get(lv, 1.0) for lv in scan.levels], float)
    return int(rng.choice(len(w), p=w / w.sum()))


def sample(rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec) -> tuple[np.ndarray, ...]:
    """One training sample: image, heatmap, level, level weight, validity, anchor (each (crop, crop))."""
    if rng.random() < spec.p_negative:
        return _negative(rng, spec)
    n_slices_mm = scan.data.shape[0] * scan.spacing[0]
    if rng.random() < spec.p_random_slice:
        x_mm = rng.uniform(0, n_slices_mm)
    else:
        x_mm = scan.points_mm[:, 0].mean() + rng.normal(0, spec.lateral_jitter_mm)
    thickness = rng.uniform(*spec.slab_mm)
    centre = scan.points_mm[_centre_index(rng, scan, spec), 1:] + rng.normal(0, spec.centre_jitter_mm, 2)
    matrix, offset = _crop_transform(rng, spec, centre)
    uv = np.stack(np.meshgrid(np.arange(spec.crop_px), np.arange(spec.crop_px), indexing="ij"), axis=-1)
    y = uv @ matrix.T + offset  # (crop, crop, 2) source mm of each crop pixel
    source_points = scan.points_mm[:, 1:]
    moves = bend_moves(rng, scan.points_mm, spec)
    moves += [m for m in (segment_move(rng, scan.points_mm, spec), narrow_move(rng, scan.points_mm, spec)) if m is not None]
    collapse = random_collapse(rng, scan.points_mm, spec)  # of the original image: read after the moves, centres unmoved
    y_read = y
    if moves:
        moved, y_read = apply_moves(moves, scan.points_mm, y)
        scan = replace(scan, points_mm=moved)
    if collapse is not None:
        y_read = collapse.source_of(y_read)
    if rng.random() < spec.p_oblique:
        lateral = _tilted_slab(rng, spec, x_mm, centre)
        surface = lateral(y_read)  # the slab's lateral position under each crop pixel
        img = _read_slab(scan, surface, thickness, y_read)
        x_pixels: float | np.ndarray = surface
        x_at_points: float | np.ndarray = lateral(source_points)
    else:
        coords = np.moveaxis(y_read / scan.spacing[1:], -1, 0)
        img = ndimage.map_coordinates(_slab(scan, x_mm, thickness), coords, order=1, cval=0.0)
        x_at_points = x_pixels = x_mm
    hardware = pedicle_hardware(rng, scan.points_mm, spec)  # at the moved centres: metal moves with the bone
    if hardware is not None:
        img = draw_hardware(img, y, x_pixels, hardware)
    for cut_at, cranial in ((_caudal_cut, False), (_cranial_cut, True)):
        cut = cut_at(rng, scan, spec, y)
        if cut is None:
            continue
        mask, keep = cut
        img[mask] = 0.0  # beyond the field of view
        if keep < len(scan.points_mm):
            kept = slice(len(scan.points_mm) - keep, None) if cranial else slice(0, keep)
            x_at_points = np.broadcast_to(x_at_points, len(scan.points_mm))[kept]
            scan = _some_points(scan, kept)
    heat, level, level_w, valid, anchor = _targets(scan, spec, matrix, offset, x_at_points)
    out = _augment_intensity(rng, img, spec), heat, level, level_w, valid, anchor
    if spec.p_upside_down and rng.random() < spec.p_upside_down:
        return turned_upside_down(*out)
    return out


def turned_upside_down(img: np.ndarray, heat: np.ndarray, level: np.ndarray, level_w: np.ndarray,
                       valid: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, ...]:
    """A sample turned head-foot (axis 0 of a crop runs caudal) as an anchor negative.

    The image, heatmap and validity are mirrored with it (a body is a body either way up); the anchor target is 0
    (no anchor vertebra, S1 or C2, stands upright in it) and the level regression is masked (weight 0), so the
    network learns that the anchor needs the spine the right way up and nothing about levels from a picture it
    never sees in a sound scan.
    Each array has shape (crop, crop).
    """
    zeros = np.zeros_like(level)
    return (np.ascontiguousarray(img[::-1]), np.ascontiguousarray(heat[::-1]), zeros, zeros.copy(),
            np.ascontiguousarray(valid[::-1]), zeros.copy())


def _some_points(scan: TrainingScan, kept: slice) -> TrainingScan:
    """The scan with only the ``kept`` points (cranio-caudal order)."""
    return replace(scan, levels=scan.levels[kept], points_mm=scan.points_mm[kept])


def batch(
    rng: np.random.Generator,
    scans: list[TrainingScan],
    spec: SamplerSpec,
    size: int,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """A batch: arrays of shape (size, 1, crop, crop) for the image and each target (see ``sample``).

    ``weights`` (shape (len(scans),), summing to 1) sets how often each scan is
    drawn; uniform when None.
    """
    picks = rng.choice(len(scans), size=size, p=weights)
    items = [sample(rng, scans[i], spec) for i in picks]
    return tuple(np.stack([it[k] for it in items])[:, None].astype(np.float32) for k in range(len(items[0])))
