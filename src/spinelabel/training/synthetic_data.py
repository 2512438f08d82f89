"""Synthetic annotated scans for training: phantoms mixed with real annotations.

Real clinical annotations rarely name every visible level (the shared lumbar
data stop at L5; no cervical annotations exist at all). Phantoms from
:mod:`spinelabel.synthetic` name every level they draw, S1 and C1/C2
included, in any contrast, resolution and orientation. Mixed into training
at a small fraction they teach what the real data cannot (the sacrum, the
cervical spine), while the real scans keep the detector anchored to real MR
appearance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..preprocessing import CANONICAL_AXCODES
from ..geometry import reorient
from .sampling import TrainingScan, make_training_scan

#: Lateral half-width (mm) kept around the spine in a phantom: the sampler
#: draws slabs within about 3 sd (14 mm) of the mid-plane plus random slices;
#: cropping the rest keeps a pool of hundreds of phantoms in memory.
LATERAL_HALF_WIDTH_MM = 60.0
#: Finest in-plane pixel (mm) kept: the sampler reads crops at 1.7-2.4 mm per
#: pixel, so finer phantoms (0.5-0.9 mm, like clinical thick-slice series)
#: are smoothed and downsampled to this, saving memory and time.
MIN_INPLANE_MM = 1.0


def _crop_lateral(scan: TrainingScan, half_width_mm: float) -> TrainingScan:
    """Keep only sagittal slices within ``half_width_mm`` of the annotated points' mean."""
    centre = scan.points_mm[:, 0].mean()
    dx = scan.spacing[0]
    lo = max(int(np.floor((centre - half_width_mm) / dx)), 0)
    hi = min(int(np.ceil((centre + half_width_mm) / dx)) + 1, scan.data.shape[0])
    if lo == 0 and hi == scan.data.shape[0]:
        return scan
    points = scan.points_mm.copy()
    points[:, 0] -= lo * dx
    return TrainingScan(scan.scan_id, np.ascontiguousarray(scan.data[lo:hi]), scan.spacing, list(scan.levels), points)


def _limit_inplane(scan: TrainingScan, min_mm: float) -> TrainingScan:
    """Downsample rows and columns finer than ``min_mm`` (Gaussian prefilter, linear resampling)."""
    from scipy import ndimage

    factors = np.ones(3)
    factors[1:] = np.minimum(scan.spacing[1:] / min_mm, 1.0)
    if np.all(factors == 1.0):
        return scan
    sigma = np.where(factors < 1.0, 0.5 / factors, 0.0)
    smooth = ndimage.gaussian_filter(scan.data, sigma * np.array([0, 1, 1]))
    data = ndimage.zoom(smooth, factors, order=1).astype(np.float32)
    # ndimage.zoom maps the first and last voxel centres onto each other, so
    # this spacing keeps every position in mm (and the points) unchanged.
    n_in, n_out = np.array(scan.data.shape, float), np.array(data.shape, float)
    spacing = scan.spacing * np.maximum(n_in - 1, 1) / np.maximum(n_out - 1, 1)
    return TrainingScan(scan.scan_id, data, spacing, list(scan.levels), scan.points_mm.copy())


def synthetic_training_scans(
    n: int, regions: Mapping[str, float], seed: int = 0
) -> tuple[list[TrainingScan], list[dict[str, np.ndarray]]]:
    """Draw ``n`` random phantoms and turn them into training scans.

    Parameters
    ----------
    n : int
        Number of phantoms.
    regions : mapping of str to float
        Field-of-view kinds for :func:`spinelabel.synthetic.random_spec`
        ("lumbar", "cervical", "whole") and their relative frequencies.
    seed : int

    Returns
    -------
    scans : list of TrainingScan
        Canonical (R, I, P), normalised, laterally cropped.
    points : list of dict
        Level -> (3,) world RAS mm per phantom.
    """
    from ..synthetic import random_spec, synthesize_spine

    names = list(regions)
    p = np.array([regions[k] for k in names], float)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    scans, points = [], []
    for i in range(n):
        region = names[int(rng.choice(len(names), p=p))]
        volume, pts = synthesize_spine(random_spec(rng, region), rng)
        canon = reorient(volume, CANONICAL_AXCODES)
        scan = make_training_scan(f"phantom-{region}-{i:04d}", canon, pts)
        scans.append(_limit_inplane(_crop_lateral(scan, LATERAL_HALF_WIDTH_MM), MIN_INPLANE_MM))
        points.append(pts)
    return scans, points


def mixing_weights(n_real: int, n_synthetic: int, synthetic_fraction: float) -> np.ndarray:
    """Per-scan sampling probabilities giving synthetic scans ``synthetic_fraction`` of all draws.

    Returns
    -------
    ndarray, shape (n_real + n_synthetic,)
        Real scans first; sums to 1.
    """
    if not 0.0 <= synthetic_fraction <= 1.0:
        raise ValueError(f"synthetic_fraction must be in [0, 1], got {synthetic_fraction}")
    if n_synthetic == 0 or n_real == 0:
        return np.full(n_real + n_synthetic, 1.0 / max(n_real + n_synthetic, 1))
    real = np.full(n_real, (1.0 - synthetic_fraction) / n_real)
    synth = np.full(n_synthetic, synthetic_fraction / n_synthetic)
    return np.concatenate([real, synth])

