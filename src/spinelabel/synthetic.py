"""Procedural synthetic sagittal spine MR with known vertebra centres.

A SynthSeg-style generator for training and testing: the anatomy is drawn at
random (sizes, curvature, body habitus), every tissue gets an intensity from
a contrast table (or a random one), and the image is degraded with partial
volume, a smooth bias field and Rician noise.

The anatomy is built analytically in world RAS millimetres, independent of the
output grid: a smooth spine centre curve (lordosis, kyphosis, sacral slope,
optional scoliosis) carries rigid vertebral bodies, discs, posterior elements,
a spinal canal with CSF and cord, the sacrum, the atlas (C1) and axis (C2
with its dens), the skull base, and the soft tissue of neck, chest, abdomen
and pelvis. The output grid is laid over a world box (axes along R, A, S),
every voxel centre is evaluated exactly, and the array is finally permuted and
flipped to the requested orientation with :func:`geometry.reorient`, so the
affine is exact and two orientations of the same spec and seed give the same
image in the world.

Tissue intensities are nominal values in about [0, 1] (arbitrary units).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from . import anatomy
from .geometry import Volume, reorient
from .synthetic_anatomy import (
    ANNULUS,
    Anatomy,
    CONTRASTS,
    MARROW,
    MARROW_BASE,
    NUCLEUS,
    NUCLEUS_BASE,
    RANDOM_DARK,
    SyntheticSpec,
    TISSUES,
    VISCERA,
    build_curve,
    draw_anatomy,
    level_point,
    validate_spec,
    world_axis,
)
from .synthetic_paint import (
    Context,
    Grid,
    LatticeField,
    fov_box,
    make_grid,
    render_labels,
    sagittal_coords,
)

__all__ = ["CONTRASTS", "SyntheticSpec", "random_spec", "synthesize_spine"]

# --------------------------------------------------------------------------------------
# intensities and degradation


def _intensity_table(contrast: str, anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Label -> intensity lookup, shape (256,), float32 (a fixed number of draws)."""
    jitter = rng.uniform(0.92, 1.08, len(TISSUES))
    random_values = rng.uniform(0, 1, len(TISSUES))
    if contrast == "random":
        base = np.array([random_values[t] * RANDOM_DARK.get(t, 1.0) for t in range(len(TISSUES))])
        degenerate = 0.5
    else:
        base = np.asarray(CONTRASTS[contrast]) * jitter
        degenerate = 0.15 if contrast == "T1" else 0.2
    lut = np.zeros(256, np.float32)
    lut[: len(TISSUES)] = base
    n = len(anat.segments)
    # a degenerating nucleus loses water: its intensity moves towards the annulus'
    lut[NUCLEUS_BASE : NUCLEUS_BASE + n] = (
        base[NUCLEUS] + (base[ANNULUS] - base[NUCLEUS]) * degenerate * anat.disc_state
    )
    lut[MARROW_BASE : MARROW_BASE + 64] = base[MARROW]
    lut[MARROW_BASE : MARROW_BASE + n] = base[MARROW] * anat.marrow_gain
    return lut




def _blur3(img: np.ndarray, axis: int) -> np.ndarray:
    """Gaussian blur with sigma 0.5 voxel (3 taps, edges repeated) along one axis, in place."""
    a = np.float32(math.exp(-2.0) / (1 + 2 * math.exp(-2.0)))
    x = np.moveaxis(img, axis, 0)
    if x.shape[0] < 2:
        return img
    prev = x[:-1].copy()
    nxt = x[1:].copy()
    x *= 1 - 2 * a
    x[1:] += a * prev
    x[:1] += a * prev[:1]
    x[:-1] += a * nxt
    x[-1:] += a * nxt[-1:]
    return img


def _degrade(
    img: np.ndarray, grid: Grid, spec: SyntheticSpec, bias: LatticeField, rng: np.random.Generator
) -> np.ndarray:
    """Partial volume (blur, slice averaging), bias field and Rician noise.

    Parameters
    ----------
    img : ndarray, shape (ny * ss_y, nz * ss_z, nx * ss_x)
        Noise-free tissue intensities on the render grid (y, z, x order).

    Returns
    -------
    ndarray, shape (ny, nz, nx), float32
    """
    for axis, ss in zip((2, 0, 1), grid.ss):  # the grid's x, y, z axes
        if ss == 1:
            _blur3(img, axis)
        else:  # thick slices: sub-slices are averaged below; blur them a little more
            img = ndimage.gaussian_filter1d(img, 0.4 * ss, axis=axis, mode="nearest", truncate=2.5)
    if any(s > 1 for s in grid.ss):
        (nx, ny, nz), (sx, sy, sz) = grid.n, grid.ss
        img = img.reshape(ny, sy, nz, sz, nx, sx).mean(axis=(1, 3, 5), dtype=np.float32)
    if spec.bias > 0:
        x, y, z = grid.out_coords
        img *= np.exp(spec.bias * bias.sample((x, y, z)))
    if spec.noise > 0:
        sd = np.float32(spec.noise)
        re = rng.standard_normal(img.shape, dtype=np.float32)
        re *= sd
        re += img
        im = rng.standard_normal(img.shape, dtype=np.float32)
        im *= sd
        img = np.sqrt(re * re + im * im)
    return img.astype(np.float32, copy=False)


def synthesize_spine(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[Volume, dict[str, np.ndarray]]:
    """Synthesise a sagittal spine MR and the world centre of every requested level.

    Parameters
    ----------
    spec : SyntheticSpec
    rng : numpy.random.Generator
        All randomness; the same spec and seed give the same anatomy in the
        world whatever ``spec.axcodes`` (and, up to voxelisation, ``spec.spacing``).

    Returns
    -------
    volume : Volume
        float32 data of shape (I, J, K) with axes along ``spec.axcodes`` and
        voxel sizes ``spec.spacing``; exact voxel-to-RAS affine.
    points : dict of str to ndarray, shape (3,)
        ``spec.levels`` in order -> vertebral-body centre in world RAS mm (for
        C1, the centroid of its ring).

    Raises
    ------
    ValueError
        For an invalid spec, or an explicit field of view that misses a level.
    """
    chain = validate_spec(spec)
    anat = draw_anatomy(spec, chain, rng)
    curve = build_curve(anat, spec.levels)
    points = {lv: level_point(anat, curve, lv) for lv in spec.levels}
    lo, hi = fov_box(spec, chain, anat, curve, points)
    lut = _intensity_table(spec.contrast, anat, rng)
    pad = np.full(3, 10.0)
    bowel = LatticeField(lo - pad, hi + pad, 8.0 * anat.scale, rng)
    texture = LatticeField(lo - pad, hi + pad, 6.0, rng)
    bias = LatticeField(lo - pad, hi + pad, 90.0, rng)
    grid = make_grid(spec, lo, hi)
    s2, v2, xc, cos_psi = sagittal_coords(curve, grid.coords[1], grid.coords[2])
    w3 = ((grid.coords[0][None, None, :] - xc[:, :, None]) * cos_psi[:, :, None]).astype(np.float32)
    labels = np.zeros((len(grid.coords[1]), len(grid.coords[2]), len(grid.coords[0])), np.uint8)
    bowel_texture = bowel.sample(grid.coords)
    ctx = Context(grid, anat, curve, labels, s2.astype(np.float32), v2.astype(np.float32), w3, bowel_texture)
    render_labels(ctx)
    img = lut[labels]
    img *= 1 + 0.05 * texture.sample(grid.coords)  # tissue inhomogeneity (marrow, muscle, fat)
    img *= np.where(labels == VISCERA, 1 + 0.18 * bowel_texture, np.float32(1))  # bowel contents
    img = _degrade(img, grid, spec, bias, rng)  # (ny, nz, nx)
    volume = Volume(np.ascontiguousarray(img.transpose(2, 0, 1)), grid.affine)
    return reorient(volume, spec.axcodes.upper()), points


# --------------------------------------------------------------------------------------
# random specs


def _random_levels(rng: np.random.Generator, region: str) -> tuple[str, ...]:
    """A contiguous run of levels typical of a ``region`` scan, variants included at times."""
    variants = tuple(v for v, p in (("T13", 0.04), ("L6", 0.06)) if region != "cervical" and rng.random() < p)
    chain = anatomy.chain(variants)
    idx = chain.index
    if region == "lumbar":
        last = idx("S1") if rng.random() < 0.75 else int(rng.integers(idx("L3"), idx("S1")))
        first = int(rng.integers(max(idx("T6"), last - 9), last - 2))
    elif region == "cervical":
        first = idx("C1") if rng.random() < 0.6 else int(rng.integers(idx("C2"), idx("C4")))
        last = int(rng.integers(max(first + 3, idx("C6")), idx("T4") + 1))
    elif region == "whole":
        first = int(rng.integers(idx("C1"), idx("C3") + 1))
        last = idx("S1") if rng.random() < 0.8 else idx("S1") - 1
    else:
        raise ValueError(f"unknown region {region!r}; expected one of {tuple(anatomy.REGIONS)}")
    return chain[first : last + 1]


def _random_axcodes(rng: np.random.Generator) -> str:
    """Any valid orientation, with clinical sagittal ones (PIR, IPR, ...) more likely."""
    if rng.random() < 0.5:
        return str(rng.choice(["PIR", "IPR", "PIL", "ASR", "IPL", "RAS", "LPS", "LAS", "RPI"]))
    pairs = [("R", "L"), ("A", "P"), ("S", "I")]
    order = rng.permutation(3)
    return "".join(pairs[a][int(rng.integers(2))] for a in order)


def random_spec(rng: np.random.Generator, region: str = "lumbar") -> SyntheticSpec:
    """A randomised, valid spec: partial field of view, contrast, resolution, orientation, curvature, noise.

    Parameters
    ----------
    rng : numpy.random.Generator
    region : {"lumbar", "cervical", "whole"}

    Returns
    -------
    SyntheticSpec
        Thick sagittal slices (3-4 mm across R/L, 0.5-0.9 mm in-plane) 60 % of
        the time, otherwise near-isotropic 0.8-1.5 mm voxels.
    """
    levels = _random_levels(rng, region)
    axcodes = _random_axcodes(rng)
    if rng.random() < 0.6:
        inplane = rng.uniform(0.5, 0.9)
        world = [rng.uniform(3.0, 4.0), inplane, inplane]
    else:
        world = list(rng.uniform(0.8, 1.5) * rng.uniform(0.9, 1.1, 3))
    sx, sy, sz = (float(world[world_axis(c)]) for c in axcodes)
    contrast = str(rng.choice(["T2", "T1", "STIR", "random"], p=[0.5, 0.25, 0.1, 0.15]))
    lordosis = rng.uniform(15, 60) if region != "cervical" else rng.uniform(10, 70)
    scoliosis = 0.0 if rng.random() < 0.7 else rng.uniform(0, 15)
    return SyntheticSpec(
        levels=levels,
        spacing=(sx, sy, sz),
        axcodes=axcodes,
        contrast=contrast,
        noise=float(rng.uniform(0.0, 0.08)),
        bias=float(rng.uniform(0.0, 0.4)),
        scale=float(rng.uniform(0.85, 1.15)),
        lordosis_deg=float(lordosis),
        scoliosis_deg=float(scoliosis),
    )
