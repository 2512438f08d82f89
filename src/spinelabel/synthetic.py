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
    SEGMENT_SLOTS,
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

#: Range of the per-tissue multiplicative jitter of the nominal contrast table (+-8 %), as scanners and
#: protocols differ; chosen by eye.
INTENSITY_JITTER = (0.92, 1.08)
#: How far a fully degenerate nucleus (``disc_state`` 1) moves from its own intensity towards the
#: annulus', as a fraction of the difference, in T2 and STIR: a degenerating disc loses water and darkens.
#: Chosen by eye to look like mild to moderate degeneration; the next two likewise.
DEGENERATE_SHIFT = 0.2
#: The same in T1, where nucleus and annulus differ less to begin with.
DEGENERATE_SHIFT_T1 = 0.15
#: The same in a random contrast: larger, chosen by eye.
DEGENERATE_SHIFT_RANDOM = 0.5


def _intensity_table(contrast: str, anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Label -> intensity lookup, shape (256,), float32 (a fixed number of draws)."""
    jitter = rng.uniform(*INTENSITY_JITTER, len(TISSUES))
    random_values = rng.uniform(0, 1, len(TISSUES))
    if contrast == "random":
        base = np.array([random_values[t] * RANDOM_DARK.get(t, 1.0) for t in range(len(TISSUES))])
        degenerate = DEGENERATE_SHIFT_RANDOM
    else:
        base = np.asarray(CONTRASTS[contrast]) * jitter
        degenerate = DEGENERATE_SHIFT_T1 if contrast == "T1" else DEGENERATE_SHIFT
    lut = np.zeros(256, np.float32)
    lut[: len(TISSUES)] = base
    n = len(anat.segments)
    # a degenerating nucleus loses water: its intensity moves towards the annulus'
    lut[NUCLEUS_BASE : NUCLEUS_BASE + n] = (
        base[NUCLEUS] + (base[ANNULUS] - base[NUCLEUS]) * degenerate * anat.disc_state
    )
    lut[MARROW_BASE : MARROW_BASE + SEGMENT_SLOTS] = base[MARROW]
    lut[MARROW_BASE : MARROW_BASE + n] = base[MARROW] * anat.marrow_gain
    return lut


#: Gaussian blur of a thick-slice axis before its sub-slices are averaged, sigma in output slices (0.4 * ss
#: sub-slices): a soft slice profile rather than a box, chosen by eye.
THICK_SLICE_BLUR = 0.4
#: Truncation of that blur (in sigmas): it only needs to reach the neighbouring slice.
THICK_SLICE_BLUR_TRUNCATE = 2.5


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
            img = ndimage.gaussian_filter1d(
                img, THICK_SLICE_BLUR * ss, axis=axis, mode="nearest", truncate=THICK_SLICE_BLUR_TRUNCATE
            )
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


#: Margin (mm) by which the smooth random fields reach beyond the field of view on every side.
FIELD_PAD_MM = 10.0
#: Correlation length (mm, at patient scale 1) of the bowel texture: about the size of bowel loops, by eye.
BOWEL_CELL_MM = 8.0
#: Correlation length (mm) of the tissue texture (marrow, muscle, fat); chosen by eye.
TEXTURE_CELL_MM = 6.0
#: Correlation length (mm) of the bias field: coil sensitivity varies over about a hand's breadth.
BIAS_CELL_MM = 90.0
#: Relative amplitude (std) of the tissue texture: a few per cent, chosen by eye.
TEXTURE_AMPLITUDE = 0.05
#: Relative amplitude (std) of the bowel-contents texture: bowel is heterogeneous, chosen by eye.
BOWEL_AMPLITUDE = 0.18


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
    pad = np.full(3, FIELD_PAD_MM)
    bowel = LatticeField(lo - pad, hi + pad, BOWEL_CELL_MM * anat.scale, rng)
    texture = LatticeField(lo - pad, hi + pad, TEXTURE_CELL_MM, rng)
    bias = LatticeField(lo - pad, hi + pad, BIAS_CELL_MM, rng)
    grid = make_grid(spec, lo, hi)
    s2, v2, xc, cos_psi = sagittal_coords(curve, grid.coords[1], grid.coords[2])
    w3 = ((grid.coords[0][None, None, :] - xc[:, :, None]) * cos_psi[:, :, None]).astype(np.float32)
    labels = np.zeros((len(grid.coords[1]), len(grid.coords[2]), len(grid.coords[0])), np.uint8)
    bowel_texture = bowel.sample(grid.coords)
    ctx = Context(grid, anat, curve, labels, s2.astype(np.float32), v2.astype(np.float32), w3, bowel_texture)
    render_labels(ctx)
    img = lut[labels]
    img *= 1 + TEXTURE_AMPLITUDE * texture.sample(grid.coords)  # tissue inhomogeneity (marrow, muscle, fat)
    img *= np.where(labels == VISCERA, 1 + BOWEL_AMPLITUDE * bowel_texture, np.float32(1))  # bowel contents
    img = _degrade(img, grid, spec, bias, rng)  # (ny, nz, nx)
    volume = Volume(np.ascontiguousarray(img.transpose(2, 0, 1)), grid.affine)
    return reorient(volume, spec.axcodes.upper()), points


# --------------------------------------------------------------------------------------
# random specs
# The shares and ranges below set the mix of phantoms in training. No derivation from data is recorded for
# any of them: read them as chosen by eye to cover the scans the models meet (typical protocols, and the
# occasional unusual one), not as measurements of a population.

#: Share of lumbar and whole-spine phantoms with each numbering variant (a thirteenth thoracic, a sixth
#: lumbar vertebra), drawn in this order: a few per cent, as these variants are uncommon; not fitted.
VARIANT_SHARES = (("T13", 0.04), ("L6", 0.06))
#: Share of lumbar runs that end at S1 (most lumbar scans include the sacrum); the others end at L3 to L5/L6.
LUMBAR_ENDS_AT_S1 = 0.75
#: A lumbar run's first level is drawn from [last - 9, last - 2) (runs of 4 to 10 vertebrae), not above T6.
LUMBAR_FIRST_ABOVE_LAST = (9, 2)
#: Share of cervical runs that start at C1 (the others start at C2 or C3).
CERVICAL_STARTS_AT_C1 = 0.6
#: A cervical run ends at least this many levels below its first (4 vertebrae or more), and at C6 or below.
CERVICAL_MIN_SPAN = 3
#: Share of whole-spine runs that end at S1 (the others end at L5, the sacrum cut off).
WHOLE_ENDS_AT_S1 = 0.8


def _random_levels(rng: np.random.Generator, region: str) -> tuple[str, ...]:
    """A contiguous run of levels typical of a ``region`` scan, variants included at times."""
    variants = tuple(v for v, p in VARIANT_SHARES if region != "cervical" and rng.random() < p)
    chain = anatomy.chain(variants)
    idx = chain.index
    if region == "lumbar":
        last = idx("S1") if rng.random() < LUMBAR_ENDS_AT_S1 else int(rng.integers(idx("L3"), idx("S1")))
        above_max, above_min = LUMBAR_FIRST_ABOVE_LAST
        first = int(rng.integers(max(idx("T6"), last - above_max), last - above_min))
    elif region == "cervical":
        first = idx("C1") if rng.random() < CERVICAL_STARTS_AT_C1 else int(rng.integers(idx("C2"), idx("C4")))
        last = int(rng.integers(max(first + CERVICAL_MIN_SPAN, idx("C6")), idx("T4") + 1))
    elif region == "whole":
        first = int(rng.integers(idx("C1"), idx("C3") + 1))
        last = idx("S1") if rng.random() < WHOLE_ENDS_AT_S1 else idx("S1") - 1
    else:
        raise ValueError(f"unknown region {region!r}; expected one of {tuple(anatomy.REGIONS)}")
    return chain[first : last + 1]


#: Share of phantoms in one of CLINICAL_AXCODES; the rest get any of the 48 orientations.
CLINICAL_AXCODES_SHARE = 0.5
#: Orientations common in clinical exports (sagittal ones such as PIR and IPR first).
CLINICAL_AXCODES = ("PIR", "IPR", "PIL", "ASR", "IPL", "RAS", "LPS", "LAS", "RPI")


def _random_axcodes(rng: np.random.Generator) -> str:
    """Any valid orientation, with clinical sagittal ones (PIR, IPR, ...) more likely."""
    if rng.random() < CLINICAL_AXCODES_SHARE:
        return str(rng.choice(CLINICAL_AXCODES))
    pairs = [("R", "L"), ("A", "P"), ("S", "I")]
    order = rng.permutation(3)
    return "".join(pairs[a][int(rng.integers(2))] for a in order)


#: Share of phantoms with thick sagittal slices, as in routine clinical sagittal T1/T2 series.
THICK_SLICE_SHARE = 0.6
#: Their slice thickness (mm, across R/L): the usual 3-4 mm of clinical sagittal series.
THICK_SLICE_MM = (3.0, 4.0)
#: Their in-plane voxel size (mm).
THICK_INPLANE_MM = (0.5, 0.9)
#: The other phantoms' near-isotropic voxel size (mm), as in 3D sequences...
ISO_VOXEL_MM = (0.8, 1.5)
#: ... each axis scaled by a factor in this range (slightly anisotropic voxels).
ISO_ANISOTROPY = (0.9, 1.1)
#: Share of phantoms per contrast: T2 (the workhorse of spine MR), T1, STIR and a random table (SynthSeg
#: style, for robustness to unseen contrasts).
CONTRAST_SHARES = {"T2": 0.5, "T1": 0.25, "STIR": 0.1, "random": 0.15}
#: Lumbar lordosis over L1-L5 (deg, ``SyntheticSpec.lordosis_deg``): roughly the adult range, flat and
#: hyperlordotic spines included.
LORDOSIS_DEG = (15, 60)
#: The same for cervical scans (a wider range of neck postures): the cervical curve takes 0.45-0.8 of it and the
#: thoracic kyphosis below, in view down to T4, 0.75-1.05.
CERVICAL_LORDOSIS_DEG = (10, 70)
#: Share of phantoms without scoliosis.
STRAIGHT_SHARE = 0.7
#: Cobb-like angle (deg) of the others: up to mild scoliosis.
SCOLIOSIS_DEG = (0, 15)
#: Rician noise std, relative to the brightest tissue: clean to noisy scans, chosen by eye.
NOISE_RANGE = (0.0, 0.08)
#: Bias field strength (log-amplitude): flat to strongly shaded, chosen by eye.
BIAS_RANGE = (0.0, 0.4)
#: Patient size factor on every length: small to large adults (+-15 %).
SCALE_RANGE = (0.85, 1.15)


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
    if rng.random() < THICK_SLICE_SHARE:
        inplane = rng.uniform(*THICK_INPLANE_MM)
        world = [rng.uniform(*THICK_SLICE_MM), inplane, inplane]
    else:
        world = list(rng.uniform(*ISO_VOXEL_MM) * rng.uniform(*ISO_ANISOTROPY, 3))
    sx, sy, sz = (float(world[world_axis(c)]) for c in axcodes)
    contrast = str(rng.choice(list(CONTRAST_SHARES), p=list(CONTRAST_SHARES.values())))
    lordosis = rng.uniform(*LORDOSIS_DEG) if region != "cervical" else rng.uniform(*CERVICAL_LORDOSIS_DEG)
    scoliosis = 0.0 if rng.random() < STRAIGHT_SHARE else rng.uniform(*SCOLIOSIS_DEG)
    return SyntheticSpec(
        levels=levels,
        spacing=(sx, sy, sz),
        axcodes=axcodes,
        contrast=contrast,
        noise=float(rng.uniform(*NOISE_RANGE)),
        bias=float(rng.uniform(*BIAS_RANGE)),
        scale=float(rng.uniform(*SCALE_RANGE)),
        lordosis_deg=float(lordosis),
        scoliosis_deg=float(scoliosis),
    )
