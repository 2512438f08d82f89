"""Vertebra candidates: run the network slice by slice, find 3D heatmap peaks.

The network sees one sagittal slice at a time in the model frame (R, I, P);
stacking its outputs gives a heatmap of shape (slices, rows, cols). Peaks of
that stack, refined to sub-voxel precision, become candidates with a position
in world RAS mm, a detection score, and the network's level estimate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from .geometry import Volume, distance_to_edge
from .labeling import Candidate
from .models import DetectionSettings, ModelConfig
from .models.network import OUT_ANCHOR, OUT_HEATMAP, OUT_LEVEL
from .preprocessing import FrameSpec, normalize_intensity, to_model_frame


@dataclass(frozen=True)
class Heatmaps:
    """Network outputs in the model frame.

    Attributes
    ----------
    frame : Volume
        The model-frame image, shape (S, R, C); its affine maps to world RAS.
    heat : ndarray, shape (S, R, C)
        Vertebral-body-centre probability.
    level : ndarray, shape (S, R, C)
        Level estimate (``anatomy.ordinal``) at each pixel.
    anchor : ndarray, shape (S, R, C), or None
        Probability of an anchor level's centre (C2, S1); None for models
        without the anchor output.
    """

    frame: Volume
    heat: np.ndarray
    level: np.ndarray
    anchor: np.ndarray | None = None


def frame_spec(config: ModelConfig) -> FrameSpec:
    return FrameSpec(config.inplane_spacing_mm, config.slice_step_mm, config.intensity_percentiles)


def model_frame_image(volume: Volume, config: ModelConfig) -> Volume:
    """``volume`` (any orientation) resampled to the model frame and normalised: what the network sees, (S, R, C)."""
    frame = to_model_frame(volume, frame_spec(config))
    return Volume(normalize_intensity(frame.data, config.intensity_percentiles), frame.affine)


#: Slices per network pass: bounds the activations held at once, whatever
#: the number of slices (the memory target is per scan, docs/RESULTS.md).
#: Chosen, not tuned.
SLICE_BATCH = 8


def predict_heatmaps(volume: Volume, config: ModelConfig, net, batch_size: int = SLICE_BATCH) -> Heatmaps:
    """Run the network on every sagittal slice of ``volume`` (any orientation)."""
    frame = model_frame_image(volume, config)
    return _maps(frame, _network_outputs(net, frame.data, batch_size), config)


def _network_outputs(net, data: np.ndarray, batch_size: int = SLICE_BATCH) -> np.ndarray:
    """Raw network outputs for each slice of ``data`` (S, R, C): shape (S, K, R, C)."""
    import torch

    div = net.divisor
    _, rows, cols = data.shape
    padded = np.pad(data, ((0, 0), (0, (-rows) % div), (0, (-cols) % div)), mode="constant")
    outs = []
    with torch.inference_mode():
        for start in range(0, padded.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(padded[start : start + batch_size, None], np.float32))
            # channels-last input for a channels-last network (models.network.prepare_for_inference)
            outs.append(net(x.contiguous(memory_format=torch.channels_last)).numpy())
    return np.concatenate(outs)[:, :, :rows, :cols]


def _maps(frame: Volume, out: np.ndarray, config: ModelConfig) -> Heatmaps:
    """Heatmaps from raw outputs (S, K, R, C) on the model-frame image ``frame``."""
    heat = _sigmoid(out[:, OUT_HEATMAP])
    level = out[:, OUT_LEVEL] + config.level_offset
    anchor = _sigmoid(out[:, OUT_ANCHOR]) if out.shape[1] > OUT_ANCHOR else None
    return Heatmaps(frame, heat, level.astype(np.float32), anchor)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _peaks(heat: np.ndarray, spacing: np.ndarray, settings: DetectionSettings) -> np.ndarray:
    """Integer (s, r, c) indices of local maxima above threshold, shape (N, 3), strongest first."""
    radius_mm = np.array([settings.lateral_nms_mm, settings.inplane_nms_mm, settings.inplane_nms_mm]) / 2
    size = 2 * np.maximum(1, np.round(radius_mm / spacing)).astype(int) + 1
    local_max = ndimage.maximum_filter(heat, size=tuple(size), mode="constant") == heat
    idx = np.argwhere(local_max & (heat >= settings.threshold))
    return idx[np.argsort(-heat[tuple(idx.T)])]


#: Half-width (mm) of the in-plane window whose heat gives a candidate's centre.
#: The heatmap target is a Gaussian of sd 5 mm in the slice plane
#: (``training.spec.SamplerSpec.heatmap_sigma_px``, 2.5 px of 2 mm), above
#: half its height within +-5.9 mm: +-4 mm holds the core of that upper half and
#: none of the next body's, whose peak lies >= 14 mm away (the shortest cervical
#: step of the shared data, 16 mm, at the 0.85 scale of training). Measured
#: against +-2 mm parabolas and a 5 x 5 px quadratic: docs/NOTES.md, 2026-12-03.
CENTRE_WINDOW_MM = 4.0


#: Fraction of a peak's height that bounds the run of slices placing it across
#: the slices (``_lateral_centre``). The training target across the slices is
#: 1 within 0.3 spacings of the centre and falls off as a Gaussian of sd 4 mm
#: beyond (``training.sampling.lateral_profile``), so it is symmetric about the
#: centre at every height; the network's is not: on some bodies one side of the
#: plateau sags to 0.3-0.5 of the peak while the other holds 0.8, and the run
#: above half the peak then covers one side of the body only (myoseg-36: every
#: centre 4-7 mm to one side). Above 0.2 the run holds both shoulders; the heat
#: less 0.2 of the peak weights it, so the shoulders count less than the
#: plateau. Compared with 0.1, 0.3 and 0.5 on the same heatmaps (lumbar held
#: out, leave one source out, real cervical folds): docs/NOTES.md, twenty-fifth
#: session. 0.1 reaches lateral structures of the small cervical bodies.
LATERAL_FLOOR_FRACTION = 0.2


def _run(profile: np.ndarray, s: int, fraction: float = 0.5) -> tuple[int, int]:
    """First and last slice of the run of slices above ``fraction`` of the peak around slice s."""
    floor = fraction * profile[s]
    lo, hi = s, s
    while lo > 0 and profile[lo - 1] >= floor:
        lo -= 1
    while hi < len(profile) - 1 and profile[hi + 1] >= floor:
        hi += 1
    return lo, hi


def _lateral_centre(profile: np.ndarray, s: int) -> float:
    """Centre (fractional slice) of the body peaking at slice s across the slices.

    The heatmap is a plateau across the body (every slice through the body
    answers "yes"), so the centre of the plateau, not its maximum, is the
    centre: the centre of mass of the run above ``LATERAL_FLOOR_FRACTION`` of
    the peak, weighted by the heat above that floor.
    """
    lo, hi = _run(profile, s, LATERAL_FLOOR_FRACTION)
    w = profile[lo : hi + 1] - LATERAL_FLOOR_FRACTION * profile[s]
    total = float(w.sum())
    if total <= 0.0:
        return float(s)
    return float((np.arange(lo, hi + 1) * w).sum() / total)


def _inplane_centre(slices: np.ndarray, r: int, c: int, half: tuple[int, int]) -> tuple[float, float]:
    """Centre (fractional row, col) of a blob on ``slices`` (K, R, C), summed, near its peak pixel (r, c).

    The centre of mass of the summed blob's upper half (the heat less half its
    maximum, clipped at zero) within ``half`` pixels of the peak: the tails,
    a neighbour's among them, and a saturated (flat) top do not pull it.
    """
    r0, r1 = max(r - half[0], 0), min(r + half[0] + 1, slices.shape[1])
    c0, c1 = max(c - half[1], 0), min(c + half[1] + 1, slices.shape[2])
    window = slices[:, r0:r1, c0:c1].sum(axis=0)
    w = np.clip(window - 0.5 * window.max(), 0.0, None)
    total = float(w.sum())
    if total <= 0.0:
        return float(r), float(c)
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return float((w * rows).sum() / total), float((w * cols).sum() / total)


def _refine(
    heat: np.ndarray,
    level: np.ndarray,
    peak: np.ndarray,
    spacing: np.ndarray,
    anchor: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float, float | None]:
    """Sub-voxel position (s, r, c), peak value, and heat-weighted mean level estimate and anchor probability around a peak.

    Across the slices, the centre of the plateau (``_lateral_centre``); in
    the slice plane, the centre of the heat summed over the slices above half
    the peak (``_inplane_centre``, ``CENTRE_WINDOW_MM``): every slice through
    the body sees its centre, so all of them, not the peak slice alone, place it.
    """
    s, r, c = (int(v) for v in peak)
    profile = heat[:, r, c]
    lo, hi = _run(profile, s)
    half_r, half_c = (max(1, int(round(CENTRE_WINDOW_MM / float(d)))) for d in spacing[1:])
    row, col = _inplane_centre(heat[lo : hi + 1], r, c, (half_r, half_c))
    pos = np.array([_lateral_centre(profile, s), row, col], dtype=float)
    win = (slice(max(s - 1, 0), s + 2), slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2))
    weights = heat[win]
    total = max(float(weights.sum()), 1e-6)
    lev = float((level[win] * weights).sum() / total)
    anc = None if anchor is None else float((anchor[win] * weights).sum() / total)
    return pos, float(heat[s, r, c]), lev, anc


def _level_parts(
    heat: np.ndarray, level: np.ndarray, anchor: np.ndarray | None, spacing: np.ndarray, settings: DetectionSettings
) -> list[tuple[np.ndarray, float, float, float | None]]:
    """Candidates from blobs whose level estimate spans several levels, one per one-level part.

    Parameters
    ----------
    heat, level : ndarray, shape (S, R, C)
    anchor : ndarray, shape (S, R, C), or None
    spacing : ndarray, shape (3,)
        Voxel size (mm) of the three axes.
    settings : DetectionSettings

    Returns
    -------
    list of (position, score, level, anchor)
        Like :func:`_refine`: the part's heat-weighted centre (fractional
        voxel indices, shape (3,)), the heat there, the heat-weighted mean
        level and anchor probability over the part.
    """
    blobs, _ = ndimage.label(heat >= settings.threshold)
    bins = np.rint(level).astype(int)
    min_voxels = settings.split_min_volume_mm3 / float(np.prod(spacing))
    out = []
    for b, box in enumerate(ndimage.find_objects(blobs), start=1):
        in_blob = blobs[box] == b
        levels = np.unique(bins[box][in_blob])
        if len(levels) < 2:
            continue
        for k in levels:
            parts, n = ndimage.label(in_blob & (bins[box] == k))
            for j in range(1, n + 1):
                part = parts == j
                if part.sum() < min_voxels:
                    continue
                w = heat[box] * part
                total = float(w.sum())
                centre = np.array(ndimage.center_of_mass(w)) + [sl.start for sl in box]
                at = tuple(np.clip(np.rint(centre).astype(int), 0, np.array(heat.shape) - 1))
                lev = float((level[box] * w).sum() / total)
                anc = None if anchor is None else float((anchor[box] * w).sum() / total)
                out.append((centre, float(heat[at]), lev, anc))
    return out


def _merge(points_mm: np.ndarray, scores: np.ndarray, settings: DetectionSettings) -> list[int]:
    """Greedy suppression of weaker peaks of the same vertebra (close in-plane and across)."""
    keep: list[int] = []
    for i in np.argsort(-scores):
        d_in = [np.linalg.norm(points_mm[i, 1:] - points_mm[k, 1:]) for k in keep]
        d_lat = [abs(points_mm[i, 0] - points_mm[k, 0]) for k in keep]
        if not any(a < settings.merge_inplane_mm and b < settings.lateral_nms_mm for a, b in zip(d_in, d_lat)):
            keep.append(int(i))
    return keep


def candidates_from_heatmaps(maps: Heatmaps, config: ModelConfig) -> list[Candidate]:
    """Heatmap peaks as labeled-graph candidates in world RAS mm."""
    spacing = maps.frame.spacing
    peaks = _peaks(maps.heat, spacing, config.detection)
    if len(peaks) == 0:
        return []
    refined = [_refine(maps.heat, maps.level, p, spacing, maps.anchor) for p in peaks]
    if config.detection.split_levels:  # after the peaks: a part near a stronger peak merges into it
        refined += _level_parts(maps.heat, maps.level, maps.anchor, spacing, config.detection)
    vox = np.array([r[0] for r in refined])
    scores = np.array([r[1] for r in refined])
    keep = _merge(vox * spacing, scores, config.detection)
    world = maps.frame.voxel_to_world(vox[keep])
    up = distance_to_edge(maps.frame.affine, maps.frame.shape, world, (0.0, 0.0, 1.0))
    down = distance_to_edge(maps.frame.affine, maps.frame.shape, world, (0.0, 0.0, -1.0))
    return [
        Candidate(
            position=world[n],
            score=float(scores[i]),
            level_estimate=float(refined[i][2]),
            level_sd=config.level_sd,
            anchor=refined[i][3],
            room_mm=(float(up[n]), float(down[n])),
        )
        for n, i in enumerate(keep)
    ]


#: Largest angle (deg) between the line through two parts of one split body
#: and the cranio-caudal (world z) axis: an artefact splits a body between its
#: endplates, so its parts lie along the spine, which turns up to ~40 deg from
#: the axis at the lumbosacral junction (docs/NOTES.md, thirteenth session);
#: two detections side by side (lateral or anterior) are not one body.
SPLIT_BODY_MAX_TILT_DEG = 45.0
#: Largest distance (mm) across the sagittal slices (world x) between two
#: parts of one split body. Each part is placed across the slices at the
#: centre of the body's heat plateau (``_lateral_centre``), so the parts of
#: one body agree to a few mm; a quarter of a lumbar body's 40-50 mm width
#: keeps a lateral detection (a pedicle, a psoas edge) from pairing with a body.
SPLIT_BODY_MAX_LATERAL_MM = 10.0


def split_bodies(candidates: Sequence[Candidate], settings: DetectionSettings) -> list[Candidate]:
    """The body between each two candidates that may be the halves of one (``split_body_max_mm``).

    A body whose heat an artefact splits in two (the signal void and bright
    rim of pedicle screws, a fracture cleft) gives two peaks near its
    endplates, neither at its centre.

    Parameters
    ----------
    candidates : sequence of labeling.Candidate
        World RAS mm positions; the model frame's slices are sagittal, so x
        runs across them and z along the spine.
    settings : DetectionSettings

    Returns
    -------
    list of labeling.Candidate
        For each pair within ``SPLIT_BODY_MAX_LATERAL_MM`` of each other in x,
        between ``merge_inplane_mm`` and ``split_body_max_mm`` apart in the
        sagittal (y, z) plane and within ``SPLIT_BODY_MAX_TILT_DEG`` of z: the
        score-weighted mean of their positions, level estimates, anchor
        probabilities and room to the image edges (linear along z), and the
        weaker score (the body is only as sure as its less sure half). Empty
        when ``split_body_max_mm`` is None. Nothing is removed: the chain model
        chooses between the body and its halves.
    """
    if settings.split_body_max_mm is None:
        return []
    out = []
    cos_tilt = math.cos(math.radians(SPLIT_BODY_MAX_TILT_DEG))
    for a, b in itertools.combinations(candidates, 2):
        d = np.asarray(b.position, float) - np.asarray(a.position, float)
        inplane = float(np.hypot(d[1], d[2]))
        if abs(d[0]) > SPLIT_BODY_MAX_LATERAL_MM or not settings.merge_inplane_mm <= inplane <= settings.split_body_max_mm:
            continue
        if abs(d[2]) < cos_tilt * inplane:
            continue
        out.append(_between(a, b))
    return out


def _between(a: Candidate, b: Candidate) -> Candidate:
    """The score-weighted mean of two candidates, with the weaker score."""
    wa = a.score / (a.score + b.score)

    def mean(x: object, y: object) -> np.ndarray | None:  # None where either lacks it
        return None if x is None or y is None else wa * np.asarray(x, float) + (1 - wa) * np.asarray(y, float)

    level, anchor, room = mean(a.level_estimate, b.level_estimate), mean(a.anchor, b.anchor), mean(a.room_mm, b.room_mm)
    return Candidate(
        position=wa * np.asarray(a.position, float) + (1 - wa) * np.asarray(b.position, float),
        score=min(a.score, b.score),
        level_estimate=None if level is None else float(level),
        level_sd=a.level_sd,
        anchor=None if anchor is None else float(anchor),
        room_mm=None if room is None else (float(room[0]), float(room[1])),
    )


#: Half-width (mm) of the slab of sagittal slices, centred on the chain's last
#: vertebra, that ``candidates_beyond`` looks at again: a cervicothoracic body
#: is 25-35 mm wide, and the next few levels may drift sideways by some mm
#: (a lateral curve); further out lie ribs and lateral masses, not the chain.
BEYOND_SLAB_HALF_WIDTH_MM = 20.0
#: Logit given to pixels that a turned slice does not cover: probability ~0.
_UNCOVERED_LOGIT = -20.0
#: A pixel counts as covered by a turned slice when the turned-back image of
#: ones is above this: bilinear interpolation leaves values just below 1
#: along the turned slice's edge, where the network saw the zero padding.
COVERED_FRACTION = 0.99


def turn_slices(stack: np.ndarray, deg: float, centre: tuple[float, float]) -> np.ndarray:
    """Each slice of ``stack`` (S, R, C) turned in-plane by ``deg`` about pixel ``centre`` (linear, 0 outside).

    The model frame's pixels are square (``FrameSpec``), so a turn of the
    pixel grid is a turn in millimetres. ``turn_slices(turn_slices(x, a, c), -a, c)``
    is ``x`` wherever the turned slices cover it.
    """
    t = np.deg2rad(deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    at = np.asarray(centre, float)
    matrix = np.eye(3)
    matrix[1:, 1:] = rot.T  # output pixel o reads input rot.T @ (o - at) + at
    offset = np.concatenate([[0.0], at - rot.T @ at])
    return ndimage.affine_transform(stack, matrix, offset=offset, order=1, mode="constant", cval=0.0)


def candidates_beyond(
    frame: Volume, config: ModelConfig, net, end: np.ndarray, known: list[Candidate]
) -> list[Candidate]:
    """Candidates caudal to a chain's last vertebra, found on slices turned by ``config.detection.caudal_turns_deg``.

    The model-frame slices within ``BEYOND_SLAB_HALF_WIDTH_MM`` of ``end`` are
    turned in-plane about it, the network's outputs turned back, and their
    peaks below ``end`` that lie farther than ``merge_inplane_mm`` from every
    ``known`` candidate (and from each other) are returned. They carry no
    level estimate and no anchor probability: a turn moves both (the network
    reads them partly from the spine's angle), so the chain names them from
    their order and spacing alone.

    Parameters
    ----------
    frame : Volume
        The model-frame image of the plain pass (``model_frame_image``,
        ``Heatmaps.frame``), shape (S, R, C).
    end : ndarray, shape (3,)
        World RAS mm of the labeled chain's caudal vertebra.
    known : list of Candidate
        The plain pass's candidates.
    """
    settings = config.detection
    data = frame.data
    s, r, c = frame.world_to_voxel(np.asarray(end, float))
    half = int(np.ceil(BEYOND_SLAB_HALF_WIDTH_MM / frame.spacing[0]))
    lo, hi = max(int(round(s)) - half, 0), min(int(round(s)) + half + 1, data.shape[0])
    if lo >= hi:
        return []
    shift = np.eye(4)
    shift[0, 3] = lo
    slab = Volume(data[lo:hi], frame.affine @ shift)
    found: list[Candidate] = []
    for deg in settings.caudal_turns_deg:
        out = _network_outputs(net, turn_slices(slab.data, deg, (r, c)))
        covered = turn_slices(np.ones(slab.shape, np.float32), -deg, (r, c)) > COVERED_FRACTION
        back = np.stack([np.where(covered, turn_slices(out[:, k], -deg, (r, c)), _UNCOVERED_LOGIT) for k in range(out.shape[1])], 1)
        for cand in candidates_from_heatmaps(_maps(slab, back, config), config):
            p = np.asarray(cand.position, float)
            near = [np.linalg.norm(np.asarray(o.position, float) - p) for o in (*known, *found)]
            if p[2] < end[2] - settings.merge_inplane_mm and min(near, default=np.inf) >= settings.merge_inplane_mm:
                found.append(replace(cand, level_estimate=None, anchor=None))
    return found
