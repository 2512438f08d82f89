"""From any input volume to the network's frame, and back.

The model frame ("canonical sagittal") has array axes (R, I, P): axis 0 steps
across the body (one sagittal slice per index), axis 1 runs head to feet, axis 2
front to back. Slices are resampled in-plane to the model's pixel size; the
slice step is kept when it is coarser than the model's (thick clinical slices)
and reduced to it otherwise. All of this is recorded in the returned Volume's
affine, so model-frame voxel positions map to world RAS mm exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GeometryError, InputError
from .geometry import Volume, describe_grid, reorient, resample_grid
from .limits import MIN_SLICES

CANONICAL_AXCODES = ("R", "I", "P")

#: Ratio of slice step to in-plane pixel size above which a series counts as 2D-acquired.
ANISOTROPY_RATIO = 1.5
#: The smallest head-foot and front-back extent (mm) that can show two vertebrae.
MIN_INPLANE_EXTENT_MM = 40.0
#: Model-frame voxels whose spacing equals the target within this relative
#: tolerance are taken as they are, not resampled: header spacings written as
#: decimal text (0.9375 as 0.937500, 2 as 1.9999) differ in the last digits.
SAME_SPACING_RTOL = 1e-3

#: Intensities mapped to 0 and 1 (percentiles of the non-background voxels):
#: robust to the darkest percent (noise, vessel flow voids) and to the
#: brightest half percent (fat, fluid inflow, a coil's near-field glare), so
#: that 1 is about the brightest tissue (CSF on T2, fat on T1) in every
#: contrast. Training normalised its crops the same way, so this is a fact
#: of every shipped model, not a setting.
INTENSITY_PERCENTILES = (1.0, 99.5)
#: Voxels at or below this percentile of the image are background (air
#: outside the body, of which a sagittal spine field of view usually holds
#: far more than 5 %), and the window is taken from the voxels above it.
BACKGROUND_PERCENTILE = 5.0
#: The window is computed on a regular stride through the image that keeps
#: between this many voxels and twice as many: the percentiles of 2 million regularly spaced
#: voxels differ from the whole image's by a small fraction of the window,
#: and the sort stays quick for a 1024 x 1024 x 200 series.
WINDOW_SAMPLE_VOXELS = 2_000_000
#: Fewer voxels above the background than this (an image nearly all one
#: value) give no stable percentiles: the window is then taken from all.
MIN_FOREGROUND_VOXELS = 100
#: A window narrower than this fraction of its upper end (or than this many
#: grey levels, below 1) has no contrast: a constant image, or a mask.
NO_CONTRAST_RTOL = 1e-6
#: Voxels read to tell a constant image and a two-valued mask apart.
DISTINCT_VALUES_SAMPLE = 100_000
#: Normalised intensities are clipped to this range: a little below 0 keeps
#: what lies under the 1st percentile (cortical rims, flow voids) apart from
#: air, and up to 1.5 keeps fluid and fat above the 99.5th percentile while
#: bounding metal pile-up and inflow glare. Training crops are clipped at
#: 1.2 before their intensity augmentation (``SamplerSpec.intensity_clip``);
#: clipping inference at [0, 1.2] as well was measured and lost a scan over
#: seven robustness conditions (docs/NOTES.md, forty-first session).
WINDOW_CLIP = (-0.2, 1.5)


@dataclass(frozen=True)
class FrameSpec:
    """What a model expects: pixel size in the sagittal plane and the slice step."""

    inplane_spacing_mm: float = 2.0
    slice_step_mm: float = 2.0
    intensity_percentiles: tuple[float, float] = INTENSITY_PERCENTILES


def check_sagittal(volume: Volume) -> None:
    """Raise GeometryError unless the volume can give sagittal slices.

    A 3D (near-isotropic) volume is accepted in any orientation; an anisotropic
    (2D multi-slice) series must have its thick axis across the body (R/L).
    """
    spacing = volume.spacing
    if min(volume.shape) < MIN_SLICES:
        raise GeometryError(
            f"image is 2D or too thin (shape {volume.shape}): need a sagittal stack of at least {MIN_SLICES} slices"
        )
    thick = int(np.argmax(spacing))
    if spacing[thick] / np.min(spacing) > ANISOTROPY_RATIO and volume.axcodes[thick] not in ("R", "L"):
        plane = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal"}[volume.axcodes[thick]]
        raise GeometryError(
            f"not a sagittal series: slices are {plane} ({spacing[thick]:.1f} mm apart along "
            f"{volume.axcodes[thick]}); spinelabel needs sagittal images"
        )
    canon = reorient(volume, CANONICAL_AXCODES, copy=False)  # a view: only its shape and spacing are read
    extent = np.array(canon.shape) * canon.spacing
    if extent[1] < MIN_INPLANE_EXTENT_MM or extent[2] < MIN_INPLANE_EXTENT_MM:
        raise GeometryError(
            f"field of view too small for a spine image ({extent[1]:.0f} x {extent[2]:.0f} mm sagittal; "
            f"{describe_grid(volume)}: a wrong voxel size in the header?)"
        )


def to_model_frame(volume: Volume, spec: FrameSpec) -> Volume:
    """Reorient to (R, I, P) and resample to the model's pixel size and slice step.

    Returns
    -------
    Volume
        float32 real-world values (``volume.rescale`` applied) of shape
        (slices, rows, cols), C-contiguous and not sharing memory with
        ``volume``, not yet intensity-normalised.

    Notes
    -----
    The input is reoriented as a view and read once, by the resampling or by
    one float32 copy: at most one full-size array is made besides the input.
    Integer input (``geometry.is_small_int``) is read as it is (no float copy
    of it besides the result) and gives the same values as its float32 version;
    a ``rescale`` is applied to the result, in place.
    """
    check_sagittal(volume)
    canon = reorient(volume, CANONICAL_AXCODES, copy=False)
    step = max(float(canon.spacing[0]), spec.slice_step_mm)
    target = np.array([step, spec.inplane_spacing_mm, spec.inplane_spacing_mm])
    if np.allclose(target, canon.spacing, rtol=SAME_SPACING_RTOL):
        return Volume(canon.real_data(), canon.affine)
    return resample_grid(canon, target, order=1)


def normalize_intensity(data: np.ndarray, percentiles: tuple[float, float] = INTENSITY_PERCENTILES) -> np.ndarray:
    """Map intensities to about [0, 1] by robust percentiles of the non-background voxels.

    Parameters
    ----------
    data : ndarray, any shape

    Raises
    ------
    InputError
        If the image has no finite values or is constant.
    """
    return apply_window(data, *intensity_window(data, percentiles))


def intensity_window(
    data: np.ndarray, percentiles: tuple[float, float] = INTENSITY_PERCENTILES
) -> tuple[float, float]:
    """The (lo, hi) intensities that :func:`normalize_intensity` maps to 0 and 1.

    Raises
    ------
    InputError
        If the image has no finite values or is constant.
    """
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError("image contains no finite values (all NaN/inf)")
    values = data[finite]
    del finite
    sample = values[:: max(1, values.size // WINDOW_SAMPLE_VOXELS)]
    background = np.percentile(sample, BACKGROUND_PERCENTILE)
    fg = sample[sample > background]
    if fg.size < MIN_FOREGROUND_VOXELS:
        fg = sample
    lo, hi = np.percentile(fg, percentiles)
    if hi - lo <= NO_CONTRAST_RTOL * max(1.0, abs(hi)):
        values_seen = np.unique(sample[:DISTINCT_VALUES_SAMPLE]).size
        if values_seen == 1:
            raise InputError("image is constant (no contrast): nothing to label")
        what = "two values only: a mask or label image, not an MR image?" if values_seen == 2 else "nothing to label"
        raise InputError(f"image has no contrast above its background ({what})")
    return lo, hi


def apply_window(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(data - lo) / (hi - lo)`` clipped to :data:`WINDOW_CLIP`, float32; non-finite values become 0.

    Element by element, so a large image may be mapped in parts (the overlay
    maps a slice a block of rows at a time) with the same result.
    """
    lo64, hi64 = np.float64(lo), np.float64(hi)  # float64 arithmetic, whatever the caller passes
    out = (np.where(np.isfinite(data), data, lo64) - lo64) / (hi64 - lo64)
    return np.clip(out, *WINDOW_CLIP).astype(np.float32)
