"""Lumbar labeling under clinical-looking conditions the shared data lack, on the held-out split.

Usage (repository root, ../shared beside it)::

    python -m benchmarks.robustness

Each held-out scan of benchmarks/lumbar_split.json is changed the
way clinical series differ from the shared data, then labeled by the shipped
lumbar model and scored against its (moved along) annotations:

- ``dicom-thick``: written as an LPS-ordered DICOM series of 4 mm sagittal
  slices with 0.8 mm pixels, and read back through the DICOM loader (the
  slices are resampled at 4 mm by linear interpolation, not averaged over a
  4 mm slab as an acquisition would be);
- ``inverted``: intensities inverted (CSF and discs dark, as on T1);
- ``bias-noise``: a smooth multiplicative bias field (x0.6..x1.6) and
  Gaussian noise of 6 % of the bright level;
- ``no-sacrum``: the image cut 20 mm below the annotated L5 (no S1 anchor);
- ``no-thoracic``: the image cut 20 mm above the annotated L2 (L2/L3 down);
- ``steep-sacrum``: everything caudal to the L5/S1 disc (taken 0.55 of the
  L4-L5 spacing below L5) rotated 20 deg about it in the sagittal plane,
  sacrum backwards: sacral slopes of about 55-65 deg instead of 35-45;
- ``s1-half``: the image cut one L4-L5 spacing below L5, through the middle of
  S1 (a partly visible first sacral segment);
- ``jpeg2000-lossy``: the ``dicom-thick`` series with its pixel data compressed
  by lossy JPEG 2000 at 20:1 (a lossy archive setting; published guidelines for
  MR accept ratios of this order), read back through GDCM;
- ``oblique-dicom``: resampled onto 0.6 mm pixels and 4 mm sagittal slices
  turned 12 deg about the cranio-caudal axis, written and read as DICOM;
- ``t1-like``: intensities folded at the 75th percentile of the foreground, so
  the brightest tissues (fluid, discs) turn dark and mid-grey marrow bright;
- ``t1-like-dark-air``: the same fold inside the body's outline only, the air
  kept dark as on a real T1 image (the plain fold lifts the air's noise);
- ``stir-like``: intensities raised to the power 2.5 (mid tones such as fat and
  marrow suppressed, fluid kept bright), plus 4 % noise;
- ``fracture``: L1 compressed to 60 % of its height around its centre (a
  simulated compression fracture; the discs above and below stretch to fill);
- ``scoliosis``: a lumbar curve, every axial level moved sideways by up to
  15 mm at L3 (a Cobb angle near 23 deg): the midline slices cut the sides of
  the apical bodies;
- ``listhesis``: L5 slipped 9 mm forward over S1 (grade I spondylolisthesis);
- ``thick-slab``: a 2D sagittal stack as acquired: each 4 mm slice the mean of
  its slab, 4.4 mm apart (10 % gap), 0.7 mm pixels, through DICOM;
- ``narrow-disc``: the L4/L5 disc collapsed to a sliver (the spine below it
  moved up by 0.2 of the L4-L5 spacing), as in a degenerated segment;
- ``metal``: a posterior fusion of L4-L5 (a titanium pedicle screw on each
  side of each body and a rod joining the two screw heads of each side) as
  signal voids with a thin bright rim of pile-up on their caudal side, sizes
  of a 1.5 T turbo spin echo (:data:`METAL`);
- ``metal-severe``: the same hardware with the blooming and the bright rim of
  a 3 T series without metal-artefact reduction (:data:`METAL_SEVERE`);
- ``ghosting``: bulk motion during the acquisition: copies of the image
  shifted along the head-foot (phase-encoding) axis, two either side, at 12.5
  and 6 % of its intensity.

Cuts keep the annotated points at least 10 mm inside the image; points
closer to the cut are dropped from the ground truth. Nothing here is tuned:
it measures. Writes a section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.lumbar import (
    RELIABILITY_HEAD,
    REPO,
    SHARED,
    WARNING_CODE_HEAD,
    confidence_records,
    flag_counts,
    flag_stats,
    git_commit,
    held_out_truth,
    reliability_rows,
    warning_code_rows,
    write_section,
)

#: Ground-truth points closer than this to a cut are dropped (mm).
CUT_MARGIN_MM = 10.0


@dataclass
class Labeled:
    """What labelers made of some cases: names and positions, confidences, warned cases, warning codes, failures,
    seconds."""

    preds: dict[str, list] = field(default_factory=dict)
    conf: dict[str, dict[str, float]] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)
    codes: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def add(self, case: str, labeler, volume) -> None:
        """Label ``volume`` as ``case``, timed; a failure is recorded as its first line (a result, not a crash)."""
        t = time.perf_counter()
        try:
            result = labeler.label(volume)
            self.preds[case] = [(v.label, v.position_mm) for v in result.vertebrae]
            self.conf[case] = {v.label: v.confidence for v in result.vertebrae}
            self.codes[case] = [w.code for w in result.warnings]
            if result.warnings:
                self.warned.add(case)
        except Exception as exc:  # a failure is a result
            self.failures.append(f"{case}: {str(exc).splitlines()[0]}")
        self.times.append(time.perf_counter() - t)


def cut(volume, points: dict[str, np.ndarray], level: str, offset_mm: float, keep_above: bool):
    """Crop along the cranio-caudal axis at the annotated ``level`` + ``offset_mm`` (world z)."""
    from spinelabel.geometry import Volume, reorient

    canon = reorient(volume, "RIP")  # axis 1 runs inferior
    row = float(canon.world_to_voxel(points[level] + np.array([0.0, 0.0, offset_mm]))[1])
    n = canon.shape[1]
    lo, hi = (0, int(np.clip(np.ceil(row), 1, n))) if keep_above else (int(np.clip(np.floor(row), 0, n - 1)), n)
    affine = canon.affine.copy()
    affine[:3, 3] = canon.voxel_to_world([0.0, lo, 0.0])
    cropped = Volume(np.ascontiguousarray(canon.data[:, lo:hi]), affine, canon.rescale)
    z_cut = points[level][2] + offset_mm
    kept = {k: p for k, p in points.items() if (p[2] - z_cut > CUT_MARGIN_MM if keep_above else z_cut - p[2] > CUT_MARGIN_MM)}
    return cropped, kept


#: Pixel and slice spacing (mm) of the ``dicom-thick`` and ``jpeg2000-lossy`` series.
THICK_SPACING_MM = (0.8, 0.8, 4.0)
#: Compression ratio of the ``jpeg2000-lossy`` condition.
LOSSY_RATIO = 20


def write_series(volume, folder: Path, spacing_mm: tuple[float, float, float]) -> list[Path]:
    """``volume`` resampled to sagittal slices of ``spacing_mm`` (pixel, pixel, slice), written as an
    LPS-ordered DICOM series in ``folder``; the files."""
    from spinelabel.geometry import reorient, resample_grid
    from spinelabel.io.dicom_write import write_dicom_series

    lps = reorient(volume, ("P", "I", "L"))  # axis 2 lateral: one file per sagittal slice
    return write_dicom_series(resample_grid(lps, list(spacing_mm)), folder)


def dicom_series(volume, folder: Path, spacing_mm: tuple[float, float, float]):
    """``write_series``, read back through the DICOM loader."""
    from spinelabel.io import load_image

    write_series(volume, folder, spacing_mm)
    return load_image([folder]).volume


def dicom_thick(volume, points, tmp: Path, case: str, spacing_mm: tuple[float, float, float] = THICK_SPACING_MM):
    """Thick sagittal slices through DICOM (``dicom_series``); the points stay."""
    return dicom_series(volume, tmp / case, spacing_mm), points


def jpeg2000_lossy(volume, points, tmp: Path, case: str):
    """The ``dicom_thick`` series, every file's pixel data compressed by lossy JPEG 2000 (``LOSSY_RATIO``:1)."""
    import pydicom
    from pydicom.uid import JPEG2000

    from spinelabel.io import load_image

    folder = tmp / f"{case}-j2k"
    for f in write_series(volume, folder, THICK_SPACING_MM):
        ds = pydicom.dcmread(f)
        ds.compress(JPEG2000, j2k_cr=[LOSSY_RATIO])
        ds.save_as(f, enforce_file_format=True)
    return load_image([folder]).volume, points


def inverted(volume, points):
    """Intensities inverted about the 99.5th percentile."""
    from spinelabel.geometry import Volume

    data = volume.real_data()
    return Volume(float(np.percentile(data, 99.5)) - data, volume.affine), points


def bias_noise(volume, points, rng: np.random.Generator):
    """A smooth multiplicative field (x0.6..x1.6) and Gaussian noise of 6 % of the bright level."""
    from scipy import ndimage

    from spinelabel.geometry import Volume

    data = volume.real_data()
    coarse = rng.normal(0.0, 0.25, (4, 4, 4))
    field = ndimage.zoom(coarse, np.array(data.shape) / 4.0, order=3)[tuple(slice(0, s) for s in data.shape)]
    bright = float(np.percentile(data, 99))
    noisy = data * np.clip(np.exp(field), 0.6, 1.6) + rng.normal(0.0, 0.06 * bright, data.shape)
    return Volume(np.clip(noisy, 0, None).astype(np.float32), volume.affine), points


def _resample_to(volume, affine: np.ndarray, shape: tuple[int, int, int]):
    """``volume`` sampled (linearly) on another grid; outside the image is 0."""
    from scipy import ndimage

    from spinelabel.geometry import Volume

    grid = np.indices(shape, dtype=float).reshape(3, -1).T
    src = volume.world_to_voxel(grid @ affine[:3, :3].T + affine[:3, 3])
    data = ndimage.map_coordinates(volume.real_data(), src.T, order=1, cval=0.0)
    return Volume(data.reshape(shape), affine)


def oblique_dicom(volume, points, tmp: Path, case: str):
    """0.6 mm pixels, 4 mm slices, the slice plane turned 12 deg about world z, through DICOM."""
    from spinelabel.geometry import reorient
    from spinelabel.io import load_image
    from spinelabel.io.dicom_write import write_dicom_series

    lps = reorient(volume, ("P", "I", "L"))
    a = np.deg2rad(12.0)
    turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    axes = turn @ (lps.affine[:3, :3] / lps.spacing)  # unit axes, turned about z
    spacing = np.array([0.6, 0.6, 4.0])
    extent = np.array(lps.shape) * lps.spacing
    shape = tuple(int(n) for n in np.floor(extent / spacing))
    centre = lps.voxel_to_world((np.array(lps.shape) - 1) / 2.0)
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    folder = tmp / f"{case}-oblique"
    write_dicom_series(_resample_to(lps, affine, shape), folder)
    return load_image([folder]).volume, points


def _warp_sagittal(volume, source_of):
    """Every sagittal slice warped in the canonical (R, I, P) frame: pixel y (mm) reads ``source_of(y)``."""
    from scipy import ndimage

    from spinelabel.geometry import Volume, reorient

    canon = reorient(volume, "RIP")
    rows, cols = canon.shape[1:]
    y = np.stack(np.indices((rows, cols), dtype=float), axis=-1) * canon.spacing[1:]
    src = np.moveaxis(source_of(y) / canon.spacing[1:], -1, 0)
    data = np.stack([ndimage.map_coordinates(s, src, order=1, cval=0.0) for s in canon.real_data()])
    return Volume(data, canon.affine), canon


def _inplane(canon, point) -> np.ndarray:
    """(row, col) mm of a world point in the canonical frame."""
    return canon.world_to_voxel(point)[1:] * canon.spacing[1:]


#: The band (mm, either side of the disc line) over which a moved segment blends in, as in training
#: (``SamplerSpec.segment_blend_mm``): the body centres lie >= 7 mm from their discs and move rigidly.
BLEND_MM = 3.0


def turn_below(volume, points, level: str, above: str, deg: float):
    """Everything caudal to the disc below ``level`` turned by ``deg`` about it in the sagittal plane, positive: the
    caudal part swings back (``_move_below_disc``)."""
    t = np.deg2rad(deg)  # + turns caudal points towards +col (posterior)
    return _move_below_disc(volume, points, level, above, np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]))


def _move_below_disc(volume, points, level: str, above: str, rotation: np.ndarray, slip_back_mm: float = 0.0):
    """Everything caudal to the disc below ``level`` (0.55 of the ``above``-``level`` spacing below ``level``)
    moved rigidly in the sagittal plane: turned by ``rotation`` (2, 2) about the disc, then slipped back across the
    spine by ``slip_back_mm``; the points of the levels caudal to ``level`` move with it."""
    from spinelabel.geometry import reorient
    from spinelabel.training.spine_moves import SegmentMove

    canon = reorient(volume, "RIP", copy=False)
    a, b = _inplane(canon, points[above]), _inplane(canon, points[level])
    down = (b - a) / np.linalg.norm(b - a)
    back = np.array([-down[1], down[0]])  # rows run inferior, columns posterior
    move = SegmentMove(b + 0.55 * (b - a), down, rotation, slip_back_mm * back, BLEND_MM, first_moved=0)
    return _move_below(volume, points, level, move)


def _move_below(volume, points, level: str, move):
    """``volume`` warped by ``move`` (a ``SegmentMove`` in the RIP frame's (row, col) mm), and the points of the
    levels caudal to ``level`` moved with it."""
    from spinelabel.anatomy import ordinal

    warped, canon = _warp_sagittal(volume, move.source_of)
    moved = dict(points)
    for name in (n for n in points if ordinal(n) > ordinal(level)):
        vox = canon.world_to_voxel(points[name])
        vox[1:] = move.points(np.array([[0.0, *_inplane(canon, points[name])]]))[0, 1:] / canon.spacing[1:]
        moved[name] = canon.voxel_to_world(vox)
    return warped, moved


#: ``steep-sacrum``: the turn below L5 (deg): sacral slopes of about 55-65 deg instead of 35-45.
STEEP_SACRUM_DEG = 20.0


def _s1_half(volume, points):
    spacing = float(points["L4"][2] - points["L5"][2])
    return cut(volume, points, "L5", -spacing, keep_above=True)


#: Intensities (as a share of the bright level) are clipped here before the T1-like fold; it folds down to 0 there.
FOLD_TOP = 1.2


def _fold(x: np.ndarray, m: float) -> np.ndarray:
    """The T1-like fold of intensities ``x`` (0..``FOLD_TOP``): up to 1 below ``m``, back down to 0 above it."""
    return np.where(x <= m, x / m, np.clip((FOLD_TOP - x) / (FOLD_TOP - m), 0.0, None))


def contrast(volume, points, fold: bool, rng: np.random.Generator):
    """``fold``: T1-like (the brightest tissues folded over to dark); else STIR-like (power 2.5 and 4 % noise)."""
    from spinelabel.geometry import Volume

    data = volume.real_data()
    fg = data[data > np.percentile(data, 5)]
    x = np.clip(data / float(np.percentile(fg, 99.5)), 0.0, FOLD_TOP)
    if fold:  # t1-like: the brightest tissues fold over to dark
        y = _fold(x, float(np.percentile(x[data > np.percentile(data, 5)], 75)))
    else:  # stir-like
        y = x**2.5 + rng.normal(0.0, 0.04, x.shape)
    return Volume(np.clip(y, 0.0, None).astype(np.float32), volume.affine), points


#: The body's outline: the image smoothed by this Gaussian (sd, mm) above this share of its 99.5th percentile,
#: closed and filled (air and the scanner's background are far below it, every tissue above it).
OUTLINE_SIGMA_MM = 2.0
OUTLINE_LEVEL = 0.1
#: The air outside the outline keeps this share of its brightness: dark, as on any MR image.
AIR_GAIN = 0.1


def body_outline(volume) -> np.ndarray:
    """Voxels inside the body (bool, the volume's shape): ``OUTLINE_*``."""
    from scipy import ndimage

    data = volume.real_data().astype(np.float32)
    smooth = ndimage.gaussian_filter(data, OUTLINE_SIGMA_MM / np.asarray(volume.spacing, float))
    inside = ndimage.binary_closing(smooth > OUTLINE_LEVEL * float(np.percentile(data, 99.5)), iterations=3)
    return ndimage.binary_fill_holes(inside)


def t1_dark_air(volume, points):
    """T1-like inside the body outline (the fold of ``contrast`` at the 75th percentile of the body); the air dark."""
    from spinelabel.geometry import Volume

    data = volume.real_data().astype(np.float32)
    inside = body_outline(volume)
    x = np.clip(data / float(np.percentile(data[inside], 99.5)), 0.0, FOLD_TOP)
    folded = _fold(x, float(np.percentile(x[inside], 75)))
    return Volume(np.where(inside, folded, AIR_GAIN * x).astype(np.float32), volume.affine), points


def fracture(volume, points, level: str = "L1", below: str = "L2"):
    """``level`` compressed to 60 % of its height around its centre; the discs next to it stretch to fill."""
    from spinelabel.geometry import reorient

    canon = reorient(volume, "RIP")
    c, nxt = _inplane(canon, points[level]), _inplane(canon, points[below])
    spacing = float(np.linalg.norm(nxt - c))
    down = (nxt - c) / spacing
    body, band, k = 0.3 * spacing, 0.8 * spacing, 0.6  # half body height, warped band, compression

    def source_of(y):
        s = (y - c) @ down
        across = np.abs((y - c) @ np.array([-down[1], down[0]]))
        a = np.abs(s)
        inner = a <= k * body  # the compressed body reads the whole body
        src = np.where(inner, a / k, body + (a - k * body) * (band - body) / (band - k * body))
        src = np.where(a >= band, a, src) * np.sign(s)
        shift = np.where(across < 30.0, src - s, 0.0)
        return y + shift[..., None] * down

    warped, _ = _warp_sagittal(volume, source_of)
    return warped, points


#: Peak lateral deviation of the ``scoliosis`` curve (mm): a half sine of this height over six lumbar spacings (one
#: above L1 to one below L5, about 230 mm) tilts the end vertebrae by about 12 deg each way (a Cobb angle near
#: 23 deg, a mild to moderate curve) and keeps the moved bodies inside the shared scans' 77 mm lateral extent.
SCOLIOSIS_APEX_MM = 15.0


def scoliosis(volume, points, apex_mm: float = SCOLIOSIS_APEX_MM):
    """A lumbar curve: every axial level moved sideways by ``apex_mm`` sin(pi t), t running 0..1 from one spacing
    above L1 to one below L5 (apex at L3), nothing moved outside that span; the points move with the spine.

    A shear, not a rotation (the bodies stay level); on the sagittal slices the spine leaves the midline plane at
    the apex, as a scoliotic one does.
    """
    from scipy import ndimage

    from spinelabel.geometry import Volume, reorient

    canon = reorient(volume, "RIP")  # axis 0 lateral, axis 1 inferior
    l1, l5 = canon.world_to_voxel(points["L1"])[1], canon.world_to_voxel(points["L5"])[1]
    top, bottom = l1 - (l5 - l1) / 4.0, l5 + (l5 - l1) / 4.0

    def shift_mm(row: float) -> float:
        return float(apex_mm * np.sin(np.pi * np.clip((row - top) / (bottom - top), 0.0, 1.0)))

    data = canon.real_data().astype(np.float32)
    out = np.empty_like(data)
    for r in range(data.shape[1]):
        out[:, r, :] = ndimage.shift(data[:, r, :], (shift_mm(r) / canon.spacing[0], 0.0), order=1, cval=0.0)
    moved = {}
    for name, p in points.items():
        vox = canon.world_to_voxel(p)
        vox[0] += shift_mm(float(vox[1])) / canon.spacing[0]
        moved[name] = canon.voxel_to_world(vox)
    return Volume(out, canon.affine), moved


#: The ``listhesis`` slip (mm): a grade I isthmic spondylolisthesis, L5 about a quarter of a body depth (~35 mm)
#: in front of S1; the training augmentation's slips stop at 8 mm.
LISTHESIS_MM = 9.0


def listhesis(volume, points, slip_mm: float = LISTHESIS_MM):
    """L5 slipped forward over S1 by ``slip_mm``: everything caudal to the L5/S1 disc moved back by it, across the
    spine (``_move_below_disc``); the S1 point moves with the sacrum."""
    return _move_below_disc(volume, points, "L5", "L4", np.eye(2), slip_mm)


#: ``narrow-disc``: how much of the spacing between the two bodies the disc between them loses. Discs take about
#: 0.27 of a lumbar or cervical step, so 0.2 leaves a sliver: a collapsed, degenerated disc (issue 11, class 4).
NARROW_FRACTION = 0.2


def narrow_disc(volume, points, level: str, below: str, fraction: float = NARROW_FRACTION):
    """The disc between ``level`` and ``below`` narrowed: everything caudal to it (0.55 of their spacing below
    ``level``) moved up along the spine by ``fraction`` of that spacing; the points caudal to ``level`` with it."""
    from spinelabel.geometry import reorient
    from spinelabel.training.spine_moves import SegmentMove

    canon = reorient(volume, "RIP", copy=False)
    a, b = _inplane(canon, points[level]), _inplane(canon, points[below])
    step = float(np.linalg.norm(b - a))
    down = (b - a) / step
    move = SegmentMove(a + 0.55 * (b - a), down, np.eye(2), -fraction * step * down, BLEND_MM, first_moved=0)
    return _move_below(volume, points, level, move)


#: ``thick-slab``: a 2D TSE sagittal stack as most lumbar protocols acquire it: 4 mm slices with a 10 % gap
#: (4.4 mm apart), 0.7 mm pixels.
SLAB_MM = 4.0
SLAB_SPACING_MM = (0.7, 0.7, 4.4)


def slab_weights(slab_mm: float, step_mm: float) -> np.ndarray:
    """Weights of the slices a ``slab_mm`` slab centred on one slice covers, ``step_mm`` apart: shape (2k + 1,).

    Each weight is the share of its slice (``step_mm`` wide) inside the slab, so the profile is centred and
    sums to 1 whatever the ratio (a plain moving mean of an even number of slices is off by half a slice).
    """
    half = slab_mm / 2
    k = int(np.ceil(half / step_mm - 0.5))
    centres = np.arange(-k, k + 1) * step_mm
    inside = np.clip(np.minimum(centres + step_mm / 2, half) - np.maximum(centres - step_mm / 2, -half), 0.0, None)
    return inside / inside.sum()


def thick_slab(volume, points, tmp: Path, case: str, slab_mm: float = SLAB_MM,
               spacing_mm: tuple[float, float, float] = SLAB_SPACING_MM):  # fmt: skip
    """Each sagittal slice the mean over a ``slab_mm`` slab centred on it (partial volume across it), at
    ``spacing_mm`` (pixel, pixel, slice), through DICOM; the points stay."""
    from scipy import ndimage

    from spinelabel.geometry import Volume, reorient

    canon = reorient(volume, "RIP")
    weights = slab_weights(slab_mm, float(canon.spacing[0]))
    slab = ndimage.convolve1d(canon.real_data().astype(np.float32), weights, axis=0, mode="constant")
    return dicom_series(Volume(slab, canon.affine), tmp / f"{case}-slab", spacing_mm), points


@dataclass(frozen=True)
class MetalArtefact:
    """The signal void of a titanium screw or rod (mm around its axis) and the bright pile-up rim beside it.

    Attributes
    ----------
    screw_void_mm, rod_void_mm : float
        Void radius around a screw's and a rod's axis.
    rim_mm : float
        Width of the bright rim, on the void's caudal side only: the frequency-encoding direction of a series
        encoded head-foot in frequency and front-back in phase (the ``ghosting`` condition is another series,
        encoded head-foot in phase).
    rim_gain : float
        The rim's brightness, as a share of the image's 99th percentile (fluid).
    """

    screw_void_mm: float
    rod_void_mm: float
    rim_mm: float
    rim_gain: float


#: A 6.5 mm pedicle screw and a 5.5 mm rod voided to about 1.5 times their diameter, a 1.5 mm rim as bright as fluid:
#: a turbo spin echo at 1.5 T.
METAL = MetalArtefact(screw_void_mm=5.0, rod_void_mm=3.5, rim_mm=1.5, rim_gain=1.0)
#: About twice the diameter, a 2.5 mm rim brighter than fluid: 3 T without metal-artefact reduction.
METAL_SEVERE = MetalArtefact(screw_void_mm=6.0, rod_void_mm=4.0, rim_mm=2.5, rim_gain=1.3)
#: A screw's tip and its entry (at the facet), from the body centre (mm): (lateral, anterior). Pedicles sit about
#: 20-25 mm either side of the midline in the lower lumbar spine, and a screw reaches the anterior third of the body.
SCREW_TIP_MM = (8.0, 6.0)
SCREW_ENTRY_MM = (24.0, -38.0)
#: What is left of the signal in a void (a share): noise, nothing of the anatomy.
VOID_SIGNAL = 0.03


def metal(volume, points, artefact: MetalArtefact, levels: tuple[str, str] = ("L4", "L5")):
    """Pedicle screws in ``levels`` and a rod each side joining their heads, drawn as ``artefact``; the points stay."""
    from spinelabel.geometry import Volume

    data = volume.real_data().astype(np.float32)
    world = np.indices(data.shape, dtype=np.float32).reshape(3, -1).T @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    void, rim = np.zeros(len(world), bool), np.zeros(len(world), bool)
    heads: dict[float, list[np.ndarray]] = {}
    rods = []
    for level in levels:
        c = np.asarray(points[level], float)
        for side in (-1.0, 1.0):
            tip = c + np.array([side * SCREW_TIP_MM[0], SCREW_TIP_MM[1], 0.0])
            entry = c + np.array([side * SCREW_ENTRY_MM[0], SCREW_ENTRY_MM[1], 0.0])
            rods.append((tip, entry, artefact.screw_void_mm))
            heads.setdefault(side, []).append(entry)
    rods += [(ends[0], ends[-1], artefact.rod_void_mm) for ends in heads.values()]
    for a, b, radius in rods:
        t = np.clip((world - a) @ (b - a) / float((b - a) @ (b - a)), 0.0, 1.0)
        off = world - (a + t[:, None] * (b - a))
        d = np.linalg.norm(off, axis=1)
        void |= d < radius
        rim |= (d >= radius) & (d < radius + artefact.rim_mm) & (off[:, 2] < 0.0)  # the caudal side
    flat = data.reshape(-1).copy()
    bright = float(np.percentile(data, 99))
    flat[rim & ~void] = np.maximum(flat[rim & ~void], artefact.rim_gain * bright)
    flat[void] *= VOID_SIGNAL
    return Volume(flat.reshape(data.shape), volume.affine), points


#: ``ghosting``: the copies' shift, a share of the head-foot field of view (periodic motion at about a third of the
#: phase-encoding time), and the intensity of the nearest pair (the next pair, twice as far, at half of it).
GHOST_SHIFT_FRACTION = 0.3
GHOST_AMPLITUDE = 0.125


def ghosting(volume, points):
    """Two pairs of copies of the image shifted head-foot by ``k`` x :data:`GHOST_SHIFT_FRACTION` of the field of
    view, each at :data:`GHOST_AMPLITUDE` / ``k``, added to it (a magnitude image's ghosts); the points stay."""
    from spinelabel.geometry import Volume, reorient

    canon = reorient(volume, "RIP")  # axis 1 runs head to foot
    data = canon.real_data().astype(np.float32)
    out = data.copy()
    for k in (1, 2):
        shift = int(round(k * GHOST_SHIFT_FRACTION * data.shape[1]))
        out += GHOST_AMPLITUDE / k * (np.roll(data, shift, axis=1) + np.roll(data, -shift, axis=1))
    return Volume(out, canon.affine), points


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def _mm(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} mm"


def conditions(tmp: Path, seed: int):
    """Name -> function(volume, points, case) -> (volume, points)."""
    rng = np.random.default_rng(seed)
    return {
        "original": lambda v, p, c: (v, p),
        "dicom-thick": lambda v, p, c: dicom_thick(v, p, tmp, c),
        "inverted": lambda v, p, c: inverted(v, p),
        "bias-noise": lambda v, p, c: bias_noise(v, p, rng),
        "no-sacrum": lambda v, p, c: cut(v, p, "L5", -20.0, keep_above=True),
        "no-thoracic": lambda v, p, c: cut(v, p, "L2", 20.0, keep_above=False),
        "steep-sacrum": lambda v, p, c: turn_below(v, p, "L5", "L4", STEEP_SACRUM_DEG),
        "s1-half": lambda v, p, c: _s1_half(v, p),
        "oblique-dicom": lambda v, p, c: oblique_dicom(v, p, tmp, c),
        "jpeg2000-lossy": lambda v, p, c: jpeg2000_lossy(v, p, tmp, c),
        "t1-like": lambda v, p, c: contrast(v, p, True, rng),
        "t1-like-dark-air": lambda v, p, c: t1_dark_air(v, p),
        "stir-like": lambda v, p, c: contrast(v, p, False, rng),
        "fracture": lambda v, p, c: fracture(v, p),
        "scoliosis": lambda v, p, c: scoliosis(v, p),
        "listhesis": lambda v, p, c: listhesis(v, p),
        "thick-slab": lambda v, p, c: thick_slab(v, p, tmp, c),
        "narrow-disc": lambda v, p, c: narrow_disc(v, p, "L4", "L5"),
        "metal": lambda v, p, c: metal(v, p, METAL),
        "metal-severe": lambda v, p, c: metal(v, p, METAL_SEVERE),
        "ghosting": lambda v, p, c: ghosting(v, p),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lumbar")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    ap.add_argument("--only", nargs="*", help="run only these conditions (development; the RESULTS section lists them)")
    args = ap.parse_args(argv)

    from spinelabel.annotations import ScanAnnotation
    from spinelabel.evaluation import evaluate
    from spinelabel.io import load_image
    from spinelabel.pipeline import Labeler
    from spinelabel.results import LOW_CONFIDENCE

    cases, gt, n_s1 = held_out_truth()
    labeler = Labeler.load(args.model)
    rows, coded, records = [], [], []
    total = {"scans": 0, "scans_right": 0, "wrong": 0, "wrong_warned": 0, "right": 0, "right_warned": 0}
    with tempfile.TemporaryDirectory(prefix="spinelabel-robust-") as tmp:
        for name, change in conditions(Path(tmp), args.seed).items():
            if args.only and name not in args.only:
                continue
            truth, run = [], Labeled()
            for case in cases:
                volume, points = change(load_image([SHARED / case / "image.nii.gz"]).volume, dict(gt[case].points), case)
                truth.append(ScanAnnotation(case, None, points))
                run.add(case, labeler, volume)
            rep = evaluate(run.preds, truth)
            shifted = [r.scan_id for r in rep.per_scan if r.mislabeled]
            counts = flag_counts(rep, run.conf, warned=run.warned)
            coded += [(run.codes[r.scan_id], r.all_correct) for r in rep.per_scan if r.scan_id in run.codes]
            records += confidence_records(rep, run.conf, run.warned)
            rows.append(
                f"| {name} | {_pct(rep.sensitivity)} | {_pct(rep.precision)} | "
                f"{_mm(rep.error_mean_mm)} | {_pct(rep.identification_rate)} | "
                f"{rep.n_scans_correct}/{rep.n_scans} | {np.median(run.times):.2f} s | "
                f"{'; '.join(run.failures + [f'{s} mislabeled' for s in shifted]) or '—'} | {flag_stats(counts=counts)} |"
            )
            print(rows[-1], flush=True)
            total["scans"] += rep.n_scans
            total["scans_right"] += rep.n_scans_correct
            for key in ("wrong", "wrong_warned", "right", "right_warned"):
                total[key] += counts[key]
    body = f"""## Lumbar: robustness to clinical-looking conditions (held-out split)

- command: `python -m benchmarks.robustness {' '.join(argv if argv is not None else sys.argv[1:])}`
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{git_commit()}`
- the {len(cases)} held-out scans, each changed as the module docstring of `benchmarks/robustness.py` says;
  ground truth: the sources' T11-L5 points plus our S1 points where S1 is visible ({n_s1} scans,
  `annotations/lumbar-s1.csv`);
  shipped lumbar model; match radius 20 mm. Measured only, nothing tuned on it.
- totals: {total['scans_right']} of {total['scans']} scans entirely right; {total['wrong']} wrong names,
  {total['wrong_warned']} of them ({_pct(total['wrong_warned'] / max(total['wrong'], 1))}) flagged or in a scan with a warning;
  {total['right_warned']} of {total['right']} right names ({_pct(total['right_warned'] / max(total['right'], 1))}) are in a scan with a warning too.

| condition | sensitivity | precision | mean error | identification | scans right | time/scan | failures, mislabeled scans | confidence as a flag |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

What the warning codes say (docs/output-format.md), over every condition and scan above (refused scans left out): a
scan is wrong when it is not entirely right (a name wrong, a vertebra missed or a false one).

{WARNING_CODE_HEAD}
{chr(10).join(warning_code_rows(coded))}

How often a name is right at each confidence, over every condition above (matched names; a name below
{LOW_CONFIDENCE} carries "?" in every output):

{RELIABILITY_HEAD}
{chr(10).join(reliability_rows(records))}
"""
    write_section(args.results, "lumbar-robustness", body)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
