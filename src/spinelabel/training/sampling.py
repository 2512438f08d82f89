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
from .intensity import invert_tissue, random_network_contrast

#: Targets for the level channel are ordinals relative to L3.
LEVEL_OFFSET = anatomy.ordinal("L3")


@dataclass(frozen=True)
class SamplerSpec:
    """Augmentation ranges and target shapes (all lengths in mm unless _px)."""

    crop_px: int = 128
    pixel_mm: float = 2.0
    heatmap_sigma_px: float = 2.5
    plateau_fraction: float = 0.3
    lateral_falloff_mm: float = 4.0
    level_radius_px: float = 3.0
    slab_mm: tuple[float, float] = (1.0, 5.0)
    scale: tuple[float, float] = (0.85, 1.2)
    rotation_deg: float = 20.0
    centre_jitter_mm: float = 45.0
    lateral_jitter_mm: float = 14.0
    p_random_slice: float = 0.2
    p_negative: float = 0.04
    unannotated_band_mm: float = 35.0
    #: Probability that the part of the spine caudal to a random annotated disc
    #: is moved rigidly: rotated by up to ``segment_rotation_deg`` about the disc
    #: (lumbosacral angle, steep sacrum, straightened or kyphotic segments) and
    #: slipped by up to ``segment_slip_mm`` front to back (spondylolisthesis).
    p_segment: float = 0.3
    #: Sacral slope varies from ~20 to ~70 deg between patients (Legaye et al.,
    #: Eur Spine J 7:99-103, 1998); +-25 deg about the shared scans' angles covers it.
    segment_rotation_deg: float = 25.0
    #: Grade I-II listhesis: a slip of up to about half a body depth (~15 mm lumbar);
    #: 8 mm keeps the chain recognisable while teaching that bodies need not line up.
    segment_slip_mm: float = 8.0
    #: Half-width of the band over which the move blends in at the disc (mm); the
    #: body centres lie >= 7 mm from their discs, so they move rigidly.
    segment_blend_mm: float = 3.0
    #: Probability that one annotated disc (a random one) is narrowed: the
    #: spine below it moves up along the spine by up to ``narrow_fraction`` of
    #: that step (a degenerate disc; discs are ~0.27 of a step, lumbar and
    #: cervical alike, so 0.2 leaves a sliver). Off by default (issue 11, class
    #: 4: a vertebra missed in a degenerated segment). With 0.25 and
    #: ``p_collapse`` 0.2, seed 3 left one source out gained (44/50 and 15/17
    #: against 43 and 14) but seed 4 lost (35/50 and 14/17 against 40 and 16),
    #: and the shipped fine-tune lost two held-out scans (25/28 against 27/28;
    #: docs/NOTES.md, seventeenth session): not shipped.
    p_narrow: float = 0.0
    narrow_fraction: float = 0.2
    #: Probability that one annotated body with a neighbour on each side is
    #: collapsed about its centre to a fraction ``collapse_height`` of its
    #: height, its front by up to ``collapse_wedge`` more than its back (a
    #: wedge or crush fracture, Genant grades 1-3 lose 20-40 % and more); the
    #: discs above and below stretch to fill, so no centre moves. Off by default.
    p_collapse: float = 0.0
    collapse_height: tuple[float, float] = (0.4, 0.9)
    collapse_wedge: float = 0.3
    #: Probability that the whole annotated chain is bent in the sagittal plane:
    #: every annotated disc turns the spine below it by an equal share of one
    #: total angle of up to ``bend_deg`` either way (``_bend_moves``). Lumbar
    #: lordosis differs by tens of degrees between people and postures, and a
    #: network trained on one source read the level partly from it: on the
    #: other source its per-scan level bias followed the change of step angle
    #: from L1-L2 to L4-L5 (r = -0.73; docs/NOTES.md, fifteenth session). Off
    #: by default: with 0.5, one seed left one source out did not weaken that
    #: correlation (-0.71) and gained 1 scan net; not shipped.
    p_bend: float = 0.0
    #: Half-range of that total angle (deg): the L1-L5 angle of adults spans
    #: roughly 20-60 deg, so +-15 deg about a scan's own moves it across most of it.
    bend_deg: float = 15.0
    #: Probability that the field of view ends at or below the caudal-most
    #: annotated vertebra: the image is blank beyond an edge that lies
    #: ``caudal_cut_mm`` below that vertebra's centre, from a half-cut body to
    #: one whole with the next segment below partly in view. The shared sources
    #: span both regimes: MyoSegmenTUM ends 1-47 mm below the S1 centre (median
    #: 15), Zukic 79-116 mm (whole sacrum); a model trained on one of them must
    #: see the other (leave-one-source-out: the Zukic-only model seldom found S1
    #: on MyoSegmenTUM). Full-sacrum views stay the majority of crops.
    p_caudal_cut: float = 0.25
    #: A body is ~25-30 mm tall and the sacral segments below S1 shrink fast: -4 mm
    #: cuts through the upper half of the body; 45 mm leaves S1 whole and the upper
    #: S2 in view, where most clinical lumbar fields of view end.
    caudal_cut_mm: tuple[float, float] = (-4.0, 45.0)
    #: The edge runs across the source image's superior-inferior axis (a field of
    #: view is a rectangle in the scanner's frame, not one that follows the spine),
    #: tilted by up to this angle (deg) for stacks planned obliquely to the body.
    caudal_cut_tilt_deg: float = 15.0
    #: Probability that the image ends between two annotated vertebrae instead:
    #: below a random one and above the next, whose points leave the targets. A
    #: field of view that stops above the sacrum (L5 at the bottom edge, no S1)
    #: must not look like a cut S1 to the anchor head.
    p_gap_cut: float = 0.1
    #: Where that cut lies below the kept vertebra's centre, as a fraction of the
    #: distance to the next: from its lower endplate (bodies are ~0.6 spacings
    #: tall, so ~0.3) to just above the next body's upper endplate (~0.7).
    gap_cut_fraction: tuple[float, float] = (0.3, 0.65)
    #: Relative weights of the caudal gap cut's gaps nearest the caudal end,
    #: nearest first (every other gap weighs 1; empty: all equal). Clinical
    #: lumbar fields of view that miss the sacrum mostly end at L5/S1 or
    #: L4/L5, yet an equal draw over the ~5-8 annotated gaps ends the image
    #: there in about 1 crop in 60; e.g. (4.0, 2.0) makes the L5/S1 gap (S1
    #: annotated last) four times and L4/L5 twice as likely as any other.
    #: Empty by default (the shipped recipe); an experiment for issue 11.
    gap_cut_caudal_weights: tuple[float, ...] = ()
    #: The same at the cranial end: probability that the field of view starts
    #: ``cranial_cut_mm`` above the cranial-most annotated vertebra (edge across
    #: the image rows, tilted as the caudal one). Off by default; cervical
    #: training turns it on (``train.REGION_SAMPLER``): the real cervical
    #: sources start at the dens (the image top lies 25-35 mm above the C2
    #: body centre in all three shared subjects), clinical stacks anywhere from
    #: the posterior fossa down, so C2 must be known by its own shape (body and
    #: dens) and not by the skull above it.
    p_cranial_cut: float = 0.0
    #: Measured from the first annotated centre: on the real cervical subjects
    #: (annotated from C2) from 12 mm above the C2 body centre (the body whole,
    #: the base of the dens in view: the body is ~14 mm tall, the dens rises
    #: ~15 mm above it) to 45 mm (C1 and the foramen magnum in view); on
    #: phantoms annotated from C1 (13-18 mm above C2), the edge stays above C1.
    #: Cuts through the C2 body are never drawn: with the dens gone, a C2 at
    #: the edge would look like a C3 there yet be taught as the anchor.
    cranial_cut_mm: tuple[float, float] = (12.0, 45.0)
    #: Probability that the image starts between two annotated vertebrae
    #: instead (at ``gap_cut_fraction``, the cranial ones leave the targets): a
    #: C3 or lower body at the top edge must not look like the C2 anchor. A
    #: level without a body (C1) is never dropped alone: that cut would run
    #: through the dens of the C2 below it.
    p_cranial_gap_cut: float = 0.0
    #: Probability that the slab is tilted out of the sagittal plane and bent:
    #: clinical stacks are angled to follow the spine, patients lie rotated, and
    #: scoliotic spines leave the plane (partial volume of a body's side).
    p_oblique: float = 0.25
    #: Tilt of the slab about each in-plane axis, up to this angle (deg):
    #: planners angle sagittal stacks by up to ~15 deg.
    oblique_deg: float = 15.0
    #: Peak lateral deviation of a scoliotic bend across the crop (mm): a lumbar
    #: curve of 10-20 deg Cobb moves the apex body ~10-15 mm out of the plane.
    lateral_curve_mm: float = 12.0
    #: Wavelength range of that bend (mm): one curve over 5-9 vertebrae.
    lateral_curve_wavelength_mm: tuple[float, float] = (180.0, 320.0)
    #: Probability of a smooth random intensity remap (other contrasts) ...
    p_remap: float = 0.35
    #: ... and, of those, the share whose knots sit at quantiles of the crop's
    #: tissue intensities rather than at random intensities: every tissue class
    #: (fluid, disc, marrow, fat, muscle) gets a new brightness, in any order.
    #: T1 (dark discs, bright marrow), STIR and water-only Dixon (fat dark,
    #: fluid bright) are such reorderings of T2 tissue brightnesses.
    tissue_remap_share: float = 0.5
    #: Percentile range of the tissue knots over the crop's foreground.
    tissue_percentiles: tuple[float, float] = (20.0, 99.0)
    #: Inner knots of the remap's piecewise-linear curve: four tissue classes
    #: besides the background (fluid, disc, marrow, fat/muscle) get a new
    #: brightness each.
    remap_knots: int = 4
    #: Tissue knots need more than this many foreground pixels (a crop that is
    #: nearly all background gets random knots): a percentile of fewer pixels
    #: is one pixel's value, not a tissue's.
    tissue_remap_min_pixels: int = 16
    #: The background (0) maps to at most this: air stays dark in every contrast.
    remap_background_max: float = 0.2
    #: Foreground: normalised intensity above this (the image outside the field
    #: of view is 0 and would otherwise pull the quantiles down).
    foreground_threshold: float = 0.05
    #: Probability of a plain inversion when no remap was drawn.
    p_invert: float = 0.15
    #: Invert only where there is tissue and keep the air dark
    #: (``intensity.invert_tissue``): every real image has dark air, so a
    #: bright background would teach a shortcut for the other polarity. The
    #: weight of the inversion follows the crop smoothed by 1 px (2 mm, beyond
    #: the air's pixel noise) from 0 at 0.05 of the normalised range (air and the
    #: scanner's background lie below) to 1 at 0.15 (every soft tissue above).
    #: Off: in the cervical recipe it left the inverted and T1-like real necks
    #: refused (docs/NOTES.md, twenty-eighth session).
    invert_keeps_air_dark: bool = False
    air_smoothing_px: float = 1.0
    air_range: tuple[float, float] = (0.05, 0.15)
    #: Probability that a crop's contrast and texture come from a shallow
    #: network of random weights instead (``intensity.random_network_contrast``;
    #: Ouyang et al. 2023, single-source domain generalisation): edges stay,
    #: every tissue's brightness, polarity and fine texture change. Off by
    #: default, and then no random number is drawn. The other numbers are the
    #: paper's: four layers of two channels, kernels of 1 or 3 px, a leaky ReLU
    #: of slope 0.2, and half the crops blending two networks through a smooth
    #: mask of 4 x 4 control points (regions of ~2 vertebrae at 2 mm pixels).
    p_random_network: float = 0.0
    random_network_layers: int = 4
    random_network_channels: int = 2
    random_network_kernels: tuple[int, ...] = (1, 3)
    random_network_leak: float = 0.2
    random_network_blend: float = 0.5
    random_network_blend_grid: int = 4
    #: (level, weight) pairs: how much more often a crop is centred near that
    #: level than near any other annotated one (weight 1). Rare, hard levels
    #: (C1's ring, C2) get more of the training this way.
    centre_weights: tuple[tuple[str, float], ...] = ()
    #: Normalised intensities (1 = the 99.5th percentile, ``normalize_intensity``)
    #: are clipped here before the intensity augmentation: fat and fluid may
    #: exceed the percentile a little, a few bright artefacts by far.
    intensity_clip: float = 1.2
    #: Gamma range applied after the remap: scanners and windowing differ in
    #: how they map signal to grey levels (sqrt-like to square-like).
    gamma: tuple[float, float] = (0.6, 1.6)
    #: Probability of a smooth multiplicative bias field (surface-coil falloff,
    #: B1 inhomogeneity) ...
    p_bias_field: float = 0.7
    #: ... exp of a cubic zoom of a ``bias_field_grid`` x ``bias_field_grid``
    #: grid of N(0, sd) values, sd drawn from this range: up to ~x0.5-x2 across a
    #: crop, as from the centre of a spine coil array to its edge.
    bias_field_sd: tuple[float, float] = (0.1, 0.35)
    bias_field_grid: int = 3
    #: Probability and Gaussian sd range (px) of a blur: thick slices, partial
    #: volume and in-plane interpolation soften edges by up to about a pixel.
    p_blur: float = 0.4
    blur_sigma_px: tuple[float, float] = (0.3, 1.2)
    #: Probability and sd range of additive Gaussian noise (share of the
    #: normalised bright level): low-field and fast sequences reach ~8 %.
    p_noise: float = 0.7
    noise_sd: tuple[float, float] = (0.0, 0.08)
    #: Final linear gain and offset ranges: what is left of the percentile
    #: normalisation's spread between scans.
    gain: tuple[float, float] = (0.8, 1.25)
    offset: tuple[float, float] = (-0.1, 0.1)
    #: Negative samples (no vertebra): Gaussian noise of this mean and sd,
    #: smoothed by a Gaussian of sd drawn from ``negative_smoothing_px``: blobby
    #: texture at the scale of bowel, muscle and fat, where the detector must
    #: stay silent.
    negative_mean: float = 0.4
    negative_sd: float = 0.3
    negative_smoothing_px: tuple[float, float] = (1.0, 6.0)
    #: Beyond the first and last annotated vertebra the loss is masked from this
    #: share of the spacing to the next annotated one on: the next (unlabeled)
    #: body's edge lies ~0.6 spacings away (bodies are ~0.6 spacings tall, so
    #: their edges start at ~0.7 of the way), minus a margin for the heatmap width.
    validity_band_start: float = 0.55
    #: The level map is a target only where a vertebra's lateral profile is
    #: above this (``lateral_profile``): near a body's side its level is still
    #: clear, while far out of its slab the pixel shows another structure.
    level_min_amplitude: float = 0.3
    #: Level spacing (mm) assumed for a scan with a single annotated point
    #: (a typical lumbar spacing; it only scales that point's plateau).
    default_spacing_mm: float = 30.0


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


@dataclass(frozen=True)
class SegmentMove:
    """A rigid move of the in-plane part of the spine caudal to a disc (source mm, (row, col)).

    Rows run inferior, so the spine direction ``down`` points from the upper
    vertebra to the lower one. Positions beyond the disc line by more than
    ``blend`` mm move by ``x -> hinge + R (x - hinge) + slip``; the move fades
    linearly to nothing across the band of +-``blend`` mm around the line.
    """

    hinge: np.ndarray  # (2,)
    down: np.ndarray  # (2,) unit
    rotation: np.ndarray  # (2, 2)
    slip: np.ndarray  # (2,)
    blend: float
    first_moved: int  # index of the first point (cranio-caudal order) caudal to the disc

    def _weight(self, y: np.ndarray) -> np.ndarray:
        """(...,) share of the move at positions y (..., 2) of the moved image."""
        along = (y - self.hinge) @ self.down
        return np.clip(0.5 + along / (2.0 * self.blend), 0.0, 1.0)

    def source_of(self, y: np.ndarray) -> np.ndarray:
        """Where the moved image at y (..., 2) reads the original image (..., 2)."""
        back = self.hinge + (y - self.hinge - self.slip) @ self.rotation  # R^T applied to row vectors
        return y + self._weight(y)[..., None] * (back - y)

    def points(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) points with the in-plane coordinates of the caudal ones moved."""
        out = points_mm.copy()
        tail = out[self.first_moved :, 1:]
        out[self.first_moved :, 1:] = self.hinge + (tail - self.hinge) @ self.rotation.T + self.slip
        return out


def _segment_move(rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec) -> SegmentMove | None:
    """A random caudal-segment move at a random annotated disc, or None (not drawn, or < 2 points)."""
    if len(scan.points_mm) < 2 or rng.random() >= spec.p_segment:
        return None
    i = int(rng.integers(len(scan.points_mm) - 1))
    hinge, down = _disc(scan, i)
    theta = np.deg2rad(rng.uniform(-spec.segment_rotation_deg, spec.segment_rotation_deg))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    across = np.array([-down[1], down[0]])
    slip = across * rng.uniform(-spec.segment_slip_mm, spec.segment_slip_mm)
    return SegmentMove(hinge, down, rotation, slip, spec.segment_blend_mm, i + 1)


def _narrow_move(rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec) -> SegmentMove | None:
    """A random annotated disc narrowed: the spine caudal to it moved up along the spine, or None (not drawn)."""
    if len(scan.points_mm) < 2 or spec.p_narrow <= 0.0 or rng.random() >= spec.p_narrow:  # no draw when off
        return None
    i = int(rng.integers(len(scan.points_mm) - 1))
    hinge, down = _disc(scan, i)
    step = float(np.linalg.norm(scan.points_mm[i + 1, 1:] - scan.points_mm[i, 1:]))
    slip = -down * rng.uniform(0.0, spec.narrow_fraction) * step
    return SegmentMove(hinge, down, np.eye(2), slip, spec.segment_blend_mm, i + 1)


@dataclass(frozen=True)
class Collapse:
    """One body compressed about its centre (source mm, (row, col)); every annotated centre stays where it is.

    Along the spine (``down``) a body of half-height ``body`` is squeezed to
    ``k`` of it, ``k`` running from ``k_front`` at ``depth`` mm anterior of the
    centre to ``k_back`` as far posterior; the band out to ``band`` mm (the
    discs) stretches to fill, and nothing beyond it or more than
    ``2 * depth`` to either side moves.
    """

    centre: np.ndarray  # (2,)
    down: np.ndarray  # (2,) unit, rows run inferior
    body: float
    band: float
    depth: float
    k_front: float
    k_back: float

    def source_of(self, y: np.ndarray) -> np.ndarray:
        """Where the collapsed image at y (..., 2) reads the original image (..., 2)."""
        rel = y - self.centre
        along = rel @ self.down
        across = rel @ np.array([-self.down[1], self.down[0]])  # + towards increasing columns: posterior
        k = np.interp(across, [-self.depth, self.depth], [self.k_front, self.k_back])
        a, inner = np.abs(along), np.abs(along) <= k * self.body
        stretched = self.body + (a - k * self.body) * (self.band - self.body) / (self.band - k * self.body)
        src = np.where(inner, a / k, np.where(a < self.band, stretched, a))
        shift = np.where(np.abs(across) < 2.0 * self.depth, src - a, 0.0) * np.sign(along)
        return y + shift[..., None] * self.down


#: A body's half-height, the reach of the discs beside it and its half-depth, as
#: fractions of the mean step to its neighbours (a lumbar body ~0.6 of a step
#: tall, its discs ~0.27, ~1 step deep).
COLLAPSE_BODY, COLLAPSE_BAND, COLLAPSE_DEPTH = 0.3, 0.8, 0.5


def _collapse(rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec) -> Collapse | None:
    """A random annotated body with neighbours on both sides collapsed, or None (not drawn)."""
    if len(scan.points_mm) < 3 or spec.p_collapse <= 0.0 or rng.random() >= spec.p_collapse:  # no draw when off
        return None
    i = int(rng.integers(1, len(scan.points_mm) - 1))
    above, here, below = scan.points_mm[i - 1 : i + 2, 1:]
    step = float(np.linalg.norm(here - above) + np.linalg.norm(below - here)) / 2.0
    down = (below - above) / max(float(np.linalg.norm(below - above)), 1e-6)
    k = rng.uniform(*spec.collapse_height)
    wedge = rng.uniform(0.0, spec.collapse_wedge)
    k_front = max(k - wedge / 2.0, 0.2)
    return Collapse(here.copy(), down, COLLAPSE_BODY * step, COLLAPSE_BAND * step, COLLAPSE_DEPTH * step,
                    k_front, min(k + wedge / 2.0, 1.0))


def _disc(scan: TrainingScan, i: int) -> tuple[np.ndarray, np.ndarray]:
    """In-plane midpoint and unit cranio-caudal direction (2,) of the step from point i to point i + 1."""
    upper, lower = scan.points_mm[i, 1:], scan.points_mm[i + 1, 1:]
    return (upper + lower) / 2, (lower - upper) / max(float(np.linalg.norm(lower - upper)), 1e-6)


def _bend_moves(rng: np.random.Generator, scan: TrainingScan, spec: SamplerSpec) -> list[SegmentMove]:
    """A random sagittal bend of the annotated chain as one turn per annotated disc (cranio-caudal order), or []."""
    n = len(scan.points_mm)
    if n < 3 or spec.p_bend <= 0.0 or rng.random() >= spec.p_bend:  # no draw when off: samples stay as they were
        return []
    step = np.deg2rad(rng.uniform(-spec.bend_deg, spec.bend_deg)) / (n - 1)
    rotation = np.array([[np.cos(step), -np.sin(step)], [np.sin(step), np.cos(step)]])
    return [SegmentMove(*_disc(scan, i), rotation, np.zeros(2), spec.segment_blend_mm, i + 1) for i in range(n - 1)]


def _apply_moves(moves: list[SegmentMove], points_mm: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) and reading positions (..., 2) under moves at discs of the original chain.

    Each move is defined on the original image with its own hinge; composed
    caudal move first, every hinge stays where it was when its move applies:
    points move caudal-first, reading positions undo the cranial move first.
    """
    ordered = sorted(moves, key=lambda m: m.first_moved)
    for m in ordered:
        y = m.source_of(y)
    for m in reversed(ordered):
        points_mm = m.points(points_mm)
    return points_mm, y


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


def _read_slab(
    scan: TrainingScan, lateral: Callable[[np.ndarray], np.ndarray], thickness_mm: float, y: np.ndarray
) -> np.ndarray:
    """Mean over a slab of ``thickness_mm`` around the surface x = lateral(y), at in-plane positions y (..., 2)."""
    n = max(1, int(round(thickness_mm / scan.spacing[0])))
    xs = lateral(y)
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
    moves = _bend_moves(rng, scan, spec)
    moves += [m for m in (_segment_move(rng, scan, spec), _narrow_move(rng, scan, spec)) if m is not None]
    collapse = _collapse(rng, scan, spec)  # of the original image: read after the moves, centres unmoved
    y_read = y
    if moves:
        moved, y_read = _apply_moves(moves, scan.points_mm, y)
        scan = replace(scan, points_mm=moved)
    if collapse is not None:
        y_read = collapse.source_of(y_read)
    if rng.random() < spec.p_oblique:
        lateral = _tilted_slab(rng, spec, x_mm, centre)
        img = _read_slab(scan, lateral, thickness, y_read)
        x_at_points: float | np.ndarray = lateral(source_points)
    else:
        coords = np.moveaxis(y_read / scan.spacing[1:], -1, 0)
        img = ndimage.map_coordinates(_slab(scan, x_mm, thickness), coords, order=1, cval=0.0)
        x_at_points = x_mm
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
    return _augment_intensity(rng, img, spec), heat, level, level_w, valid, anchor


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
