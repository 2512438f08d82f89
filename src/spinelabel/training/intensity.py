"""Contrast augmentations beyond global remaps: random shallow networks, and inversion of the tissue only.

Ouyang C, Chen C, Li S, et al., "Causality-inspired single-source domain
generalization for medical image segmentation", IEEE Trans Med Imaging
42:1095-1106 (2023). A network trained on one source learns that source's
tissue brightnesses and textures as if they were anatomy. Passing each crop
through a shallow convolutional network with freshly drawn random weights
(their "GIN") keeps every edge where it was (the kernels are at most 3 x 3 px)
while the brightness of each tissue, its polarity and its fine texture change
at random; blending two such outputs through a smooth random mask (their
"IPA") lets neighbouring regions change differently, as coil falloff and fat
suppression do. Global remaps (``sampling._remap``) change brightness per
intensity only; this changes it per local pattern as well.

``invert_tissue`` inverts the tissue's polarity while the air stays dark, as
on any real image (a whole-crop inversion makes the air bright).

Plain functions over 2D arrays; the caller owns the random generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..preprocessing import INTENSITY_PERCENTILES

__all__ = ["invert_tissue", "random_network", "random_network_contrast"]

#: Percentiles of a network's output mapped to 0 and 1: the same robust range
#: the input normalisation uses (1 = the 99.5th percentile), with the darkest
#: percent allowed below 0 and then clipped.
OUTPUT_PERCENTILES = INTENSITY_PERCENTILES


def random_network(
    rng: np.random.Generator, img: np.ndarray, layers: int, channels: int, kernel_sizes: Sequence[int], leak: float
) -> np.ndarray:
    """One pass through a random convolutional network.

    Parameters
    ----------
    rng : numpy.random.Generator
    img : ndarray, shape (H, W)
    layers : int
        Convolutions; all but the last followed by a leaky ReLU.
    channels : int
        Feature maps between layers (the last layer has one).
    kernel_sizes : sequence of int
        Each layer's square kernel size is drawn from these (odd: centred).
    leak : float
        Slope of the leaky ReLU below zero.

    Returns
    -------
    ndarray, shape (H, W)
        Unnormalised output; weights are N(0, 1), biases zero.
    """
    h = img[None].astype(np.float64)
    for layer in range(layers):
        last = layer == layers - 1
        k = int(rng.choice(np.asarray(kernel_sizes)))
        w = rng.normal(0.0, 1.0, (1 if last else channels, h.shape[0], k, k))
        out = np.zeros((w.shape[0],) + h.shape[1:])
        for o, i in np.ndindex(w.shape[:2]):
            out[o] += ndimage.correlate(h[i], w[o, i], mode="nearest")
        h = out if last else np.where(out > 0, out, leak * out)
    return h[0]


def _unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, OUTPUT_PERCENTILES)
    return (x - lo) / max(float(hi - lo), 1e-6)


def random_network_contrast(
    rng: np.random.Generator,
    img: np.ndarray,
    layers: int,
    channels: int,
    kernel_sizes: Sequence[int],
    leak: float,
    p_blend: float,
    blend_grid: int,
    clip: float,
) -> np.ndarray:
    """A crop given a random contrast and texture, its edges in place.

    The network's output, scaled to the unit range (``OUTPUT_PERCENTILES``),
    is mixed with the crop itself at a random weight ``alpha ~ U(0, 1)``
    (as in GIN: the original contrast stays one end of the range). With
    probability ``p_blend`` two networks' outputs are first blended through a
    smooth mask (``blend_grid`` x ``blend_grid`` random values in [0, 1],
    linearly interpolated over the crop).

    Parameters
    ----------
    img : ndarray, shape (H, W)
        A normalised crop (1 = the scan's 99.5th percentile).
    clip : float
        The result is clipped to [0, clip], the range of a normalised crop.

    Returns
    -------
    ndarray, shape (H, W)
    """

    def one() -> np.ndarray:
        return _unit_range(random_network(rng, img, layers, channels, kernel_sizes, leak))

    out = one()
    if rng.random() < p_blend:
        coarse = rng.uniform(0.0, 1.0, (blend_grid, blend_grid))
        zoom = (img.shape[0] / blend_grid, img.shape[1] / blend_grid)
        mask = ndimage.zoom(coarse, zoom, order=1, mode="nearest")  # linear: stays in [0, 1]
        out = mask * out + (1.0 - mask) * one()
    alpha = rng.uniform(0.0, 1.0)
    return np.clip(alpha * out + (1.0 - alpha) * img, 0.0, clip)


def invert_tissue(img: np.ndarray, clip: float, sigma_px: float, dark: tuple[float, float]) -> np.ndarray:
    """Intensities inverted where there is tissue; what is dark on every sequence stays dark.

    A whole-crop inversion makes the air bright, which no MR image shows: a
    network could read "bright background" as "other polarity". Here fluid
    turns dark and mid-grey tissue bright, as on T1, while air and what is
    dark on every sequence (cortical bone, ligament) keep their own values. The
    weight of the inversion rises from 0 to 1 as a pixel rises through
    ``dark``, read on the lower of the pixel and the image smoothed by
    ``sigma_px``: a lone bright noise pixel in the air stays, and so does the
    air next to bright tissue (no bright rim); a smooth blend, no edge at a
    threshold.

    Parameters
    ----------
    img : ndarray, shape (rows, cols)
        Normalised intensities in 0..``clip`` (1 = the scan's 99.5th percentile).
    clip : float
        The top of the range; ``clip`` maps to 0 and 0 to 1 where inverted.
    sigma_px : float
        Gaussian smoothing (pixels) of the image the weight is read from.
    dark : (float, float)
        Intensities (the lower of pixel and smoothed image) at which the weight starts to rise and reaches 1.

    Returns
    -------
    ndarray, shape (rows, cols)
    """
    smooth = ndimage.gaussian_filter(img, sigma_px)
    weight = np.clip((np.minimum(img, smooth) - dark[0]) / (dark[1] - dark[0]), 0.0, 1.0)
    return weight * (1.0 - img / clip) + (1.0 - weight) * img
