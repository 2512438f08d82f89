"""Posterior spinal hardware in a training crop: pedicle screws and rods as MR shows them.

A fusion's titanium or steel screws and rods hold no signal of their own and
shift the frequency of the tissue around them, so a turbo spin echo shows
each as a signal void wider than the metal, with a bright rim on one side
along the frequency-encoding direction, where the signal displaced out of the
void piles up (Hargreaves BA, Worters PW, Pauly KB et al., "Metal-induced
artifacts in MRI", AJR 197:547-555, 2011). A network that has never seen such
a rim may read it as the edge of a body or of the sacrum (docs/NOTES.md,
thirty-ninth session: a rim below L5's screws took the anchor off S1).

The hardware is drawn in the source image's in-plane (row, col) mm, rows
running inferior and columns posterior (the training frame, R-I-P), so that a
crop reads it where it reads the anatomy. Plain functions over arrays; the
caller owns the random generator and the ranges (``spec.SamplerSpec``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import SamplerSpec

__all__ = ["Hardware", "draw_hardware", "pedicle_hardware"]

#: Points sampled across the pile-up rim (a rim pixel is one the void reaches
#: when shifted by up to the rim's width along the frequency-encoding axis).
RIM_SAMPLES = 6
#: Frequency encoding of a sagittal spine series runs head-foot or front-back
#: (rows or columns of the source frame), either way.
ENCODING_DIRECTIONS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


@dataclass(frozen=True)
class Hardware:
    """Metal as 3D line segments with a void radius each, and the rim of the pile-up.

    ``segments`` rows are (x_a, row_a, col_a, x_b, row_b, col_b, radius) in
    the source frame's mm (x lateral); the rim lies up to ``rim_mm`` beyond
    the void along ``rim_direction`` (unit, in-plane (row, col), the
    frequency-encoding axis) and is ``rim_signal`` bright (normalised
    intensity, 1 = the scan's 99.5th percentile).
    """

    segments: np.ndarray  # (K, 7)
    rim_mm: float
    rim_direction: np.ndarray  # (2,)
    rim_signal: float

    def void(self, y: np.ndarray, x: float | np.ndarray) -> np.ndarray:
        """Whether in-plane positions y (..., 2) of a slice at lateral x (scalar or (...)) lie in a void, shape (...)."""
        p = np.concatenate([np.broadcast_to(np.asarray(x, float), y.shape[:-1])[..., None], y], axis=-1)
        out = np.zeros(y.shape[:-1], bool)
        for *ends, radius in self.segments:
            a, b = np.array(ends[:3]), np.array(ends[3:])
            t = np.clip((p - a) @ (b - a) / max(float((b - a) @ (b - a)), 1e-9), 0.0, 1.0)
            out |= np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1) < radius
        return out

    def rim(self, y: np.ndarray, x: float | np.ndarray, void: np.ndarray) -> np.ndarray:
        """Whether positions y (..., 2) at lateral x lie in the pile-up rim (beyond the void along ``rim_direction``).

        ``void`` is ``self.void(y, x)``, which the caller needs as well.
        """
        hit = np.zeros(y.shape[:-1], bool)
        for s in np.linspace(0.0, self.rim_mm, RIM_SAMPLES + 1)[1:]:
            hit |= self.void(y - s * self.rim_direction, x)
        return hit & ~void


def _posterior(down: np.ndarray) -> np.ndarray:
    """The unit in-plane direction perpendicular to the spine's ``down`` that points posterior (columns)."""
    back = np.array([-down[1], down[0]])
    return back if back[1] >= 0.0 else -back


def _directions(points: np.ndarray) -> np.ndarray:
    """Unit cranio-caudal direction at each of ``points`` (N, 2), N >= 2, from its neighbours."""
    grad = np.gradient(points, axis=0)
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-6)


def pedicle_hardware(rng: np.random.Generator, points_mm: np.ndarray, spec: SamplerSpec) -> Hardware | None:
    """A fusion of a random run of annotated levels, or None (not drawn, or fewer than 2 points).

    Each instrumented level gets a screw either side, from its tip
    ``hardware_tip_anterior_mm`` in front of the body centre and
    ``hardware_tip_lateral_mm`` beside the midline, back through the pedicle
    to its head ``hardware_head_posterior_mm`` behind the centre (along the
    screw's direction in the sagittal plane, turned by up to
    ``hardware_angle_deg``) and ``hardware_head_lateral_mm`` beside the
    midline; a rod each side joins the heads. The midline is the annotated
    centre's lateral position. No random number is drawn when
    ``spec.p_hardware`` is 0.

    Parameters
    ----------
    points_mm : ndarray, shape (N, 3)
        Annotated centres, (lateral, row, col) mm in cranio-caudal order.
    """
    n = len(points_mm)
    if n < 2 or spec.p_hardware <= 0.0 or rng.random() >= spec.p_hardware:
        return None
    count = min(int(rng.integers(spec.hardware_levels[0], spec.hardware_levels[1] + 1)), n)
    first = int(rng.integers(n - count + 1))
    down = _directions(points_mm[:, 1:])
    void = rng.uniform(*spec.hardware_void_mm)
    segments: list[list[float]] = []
    heads: dict[float, list[np.ndarray]] = {-1.0: [], 1.0: []}
    for i in range(first, first + count):
        back = _posterior(down[i])
        turn = np.deg2rad(rng.uniform(-spec.hardware_angle_deg, spec.hardware_angle_deg))
        tip = points_mm[i, 1:] - rng.uniform(*spec.hardware_tip_anterior_mm) * back
        axis = np.cos(turn) * back + np.sin(turn) * down[i]
        head = points_mm[i, 1:] + rng.uniform(*spec.hardware_head_posterior_mm) * axis
        lateral = (rng.uniform(*spec.hardware_tip_lateral_mm), rng.uniform(*spec.hardware_head_lateral_mm))
        for side in heads:
            a = np.array([points_mm[i, 0] + side * lateral[0], *tip])
            b = np.array([points_mm[i, 0] + side * lateral[1], *head])
            segments.append([*a, *b, void])
            heads[side].append(b)
    rod = min(rng.uniform(*spec.hardware_rod_void_mm), void)  # a rod never blooms more than its screws
    segments += [[*a, *b, rod] for side in heads.values() for a, b in zip(side[:-1], side[1:])]
    direction = ENCODING_DIRECTIONS[int(rng.integers(len(ENCODING_DIRECTIONS)))]
    return Hardware(np.array(segments), rng.uniform(*spec.hardware_rim_mm), direction,
                    rng.uniform(*spec.hardware_rim_signal))


def draw_hardware(img: np.ndarray, y: np.ndarray, x: float | np.ndarray, hardware: Hardware) -> np.ndarray:
    """A crop with ``hardware`` drawn in: voids set to 0, the rim raised to its signal.

    Signal displaced out of a void adds to the tissue's, so the rim is at
    least ``rim_signal`` and never darker than the tissue; it is drawn only
    where the crop read the volume (``img`` != 0; a crop reads exactly 0
    outside it), dark tissue included.

    Parameters
    ----------
    img : ndarray, shape (H, W)
        Normalised crop.
    y : ndarray, shape (H, W, 2)
        Source (row, col) mm of each crop pixel.
    x : float or ndarray, shape (H, W)
        Lateral source mm of the slice (each pixel's, for an oblique slab).

    Returns
    -------
    ndarray, shape (H, W)
        A new array; noise and contrast come later, as for the anatomy.
    """
    void = hardware.void(y, x)
    rim = hardware.rim(y, x, void) & (img != 0.0)
    out = img.copy()
    out[rim] = np.maximum(out[rim], hardware.rim_signal)
    out[void] = 0.0
    return out
