"""Image geometry: a volume is an array plus a 4x4 voxel-to-RAS affine.

Every coordinate that leaves spinelabel is a world position in RAS millimetres
(the NIfTI convention). DICOM patient coordinates (LPS) are converted in exactly
one place, :func:`lps_to_ras`. Array indices are 0-based voxel centres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio

#: Diagonal flip between DICOM patient coordinates (LPS) and RAS; its own inverse.
LPS_RAS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(matrix_or_points: npt.ArrayLike) -> np.ndarray:
    """Convert a 4x4 LPS affine, or points of shape (N, 3) / (3,), to RAS.

    The same call converts RAS back to LPS (the flip is its own inverse).
    """
    a = np.asarray(matrix_or_points, dtype=float)
    if a.shape == (4, 4):
        return LPS_RAS_FLIP @ a
    if a.shape[-1] != 3:
        raise ValueError(f"expected a 4x4 affine or points of shape (N, 3), got {a.shape}")
    return a * np.array([-1.0, -1.0, 1.0])


def apply_affine(affine: npt.ArrayLike, points: npt.ArrayLike) -> np.ndarray:
    """Apply a 4x4 affine to points of shape (N, 3) or (3,)."""
    aff = np.asarray(affine, dtype=float)
    pts = np.asarray(points, dtype=float)
    return pts @ aff[:3, :3].T + aff[:3, 3]


#: Widest integer voxel type kept as read (not converted to float32): 2 bytes a voxel,
#: half of float32, and every value exact in float32 (which holds integers up to 2**24).
MAX_INT_VOXEL_BYTES = 2


def is_small_int(data: np.ndarray | np.dtype) -> bool:
    """Whether ``data`` (an array or a dtype) holds integers of at most ``MAX_INT_VOXEL_BYTES`` bytes (exact in float32)."""
    dtype = np.dtype(getattr(data, "dtype", data))
    return dtype.kind in "iu" and dtype.itemsize <= MAX_INT_VOXEL_BYTES


#: Voxels of float64 scratch per block when a rescale is applied (8 MB), not a whole-array temporary.
RESCALE_BLOCK_VOXELS = 1 << 20


@dataclass(frozen=True)
class Rescale:
    """A positive linear map from stored voxel values to real-world values.

    ``real = stored * slope + intercept`` (DICOM RescaleSlope/RescaleIntercept,
    NIfTI scl_slope/scl_inter). The slope is positive, so the map keeps the
    order of values and commutes with percentiles and linear interpolation.

    Parameters
    ----------
    slope : float
        Finite and > 0.
    intercept : float
        Finite.
    """

    slope: float
    intercept: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.slope) and np.isfinite(self.intercept)) or self.slope <= 0:
            raise ValueError(f"a rescale needs a finite positive slope and a finite intercept, got {self}")

    def apply_in_place(self, out: np.ndarray) -> None:
        """Replace the stored values in ``out`` (floating point, ndim >= 1) by real-world values.

        The arithmetic is done in float64, ``RESCALE_BLOCK_VOXELS`` voxels (whole
        sub-arrays along axis 0) at a time, with one rounding to ``out``'s type:
        the values of rescaling the whole array in float64 at once.
        """
        if out.dtype.kind != "f":
            raise TypeError(f"a rescale writes real values into a floating-point array, got {out.dtype}")
        step = max(1, RESCALE_BLOCK_VOXELS // max(1, out[:1].size))
        for start in range(0, out.shape[0], step):
            block = out[start : start + step].astype(np.float64)
            block *= self.slope
            block += self.intercept
            out[start : start + step] = block


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image and the affine mapping voxel indices (i, j, k) to RAS mm.

    Parameters
    ----------
    data : ndarray, shape (I, J, K)
        Voxel values; any real dtype. The readers give float32, or the stored
        integers (int8 to uint16, see ``MAX_INT_VOXEL_BYTES``): the image's
        values as they are, or with ``rescale`` the values before it.
    affine : ndarray, shape (4, 4)
        Voxel-to-world (RAS, mm) affine.
    rescale : Rescale, optional
        The map from ``data`` to the image's real-world values; None: ``data``
        are the real-world values. Whatever reads intensities uses
        :meth:`real_data` (or applies the map itself).
    """

    data: np.ndarray
    affine: np.ndarray
    rescale: Rescale | None = None

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        affine = np.asarray(self.affine, dtype=float)
        if data.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array, got shape {data.shape}")
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError("a Volume needs a finite 4x4 affine")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            raise ValueError("the affine is singular (zero voxel size or degenerate axes)")
        if self.rescale is not None and not isinstance(self.rescale, Rescale):
            raise TypeError(f"rescale must be a Rescale or None, got {type(self.rescale).__name__}")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "affine", affine)

    def real_data(self, index: Any = ...) -> np.ndarray:
        """The real-world values of ``data[index]``: a new C-contiguous float32 array.

        Parameters
        ----------
        index : optional
            Any numpy index of ``data`` (default: the whole array), e.g. one slice.
        """
        out = np.array(self.data[index], dtype=np.float32, order="C")
        if self.rescale is not None:
            self.rescale.apply_in_place(out.reshape(-1))
        return out

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each array axis in mm, shape (3,)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Nearest anatomical direction of each array axis, e.g. ('R', 'A', 'S')."""
        return tuple(nio.aff2axcodes(self.affine))  # type: ignore[return-value]

    def voxel_to_world(self, ijk: npt.ArrayLike) -> np.ndarray:
        """Voxel indices, shape (N, 3) or (3,), to RAS mm."""
        return apply_affine(self.affine, ijk)

    def world_to_voxel(self, xyz: npt.ArrayLike) -> np.ndarray:
        """RAS mm, shape (N, 3) or (3,), to (fractional) voxel indices."""
        return apply_affine(np.linalg.inv(self.affine), xyz)


def describe_grid(volume: Volume) -> str:
    """The image grid in words, for a refusal a wrong header may cause.

    E.g. ``"image of 381 x 381 x 77 voxels of 0.5 x 0.5 x 0.5 mm, voxel
    axes toward P, S, R (from the header)"``: a voxel size or orientation
    that the header gets wrong is then visible in the message itself.
    """
    shape = " x ".join(str(int(n)) for n in volume.shape)
    spacing = " x ".join(f"{d:.3g}" for d in volume.spacing)  # 0.0005 (metres read as mm) stays visible
    return f"image of {shape} voxels of {spacing} mm, voxel axes toward {', '.join(volume.axcodes)} (from the header)"


def distance_to_edge(
    affine: npt.ArrayLike, shape: tuple[int, int, int], points: npt.ArrayLike, direction: npt.ArrayLike
) -> np.ndarray:
    """How far each point can go along a world direction before it leaves the image.

    The image is the box of its voxels' extents, ``[-0.5, shape - 0.5]`` in
    voxel indices, mapped to the world by ``affine``.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        Voxel-to-world (RAS mm).
    shape : tuple of int
        The array shape (I, J, K).
    points : ndarray, shape (N, 3)
        World RAS mm.
    direction : ndarray, shape (3,)
        World direction (normalised here).

    Returns
    -------
    ndarray, shape (N,)
        Distance in mm; 0 for a point outside the box.
    """
    aff = np.asarray(affine, float)
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    inv = np.linalg.inv(aff)
    p = apply_affine(inv, np.asarray(points, float).reshape(-1, 3))  # (N, 3) voxels
    dv = inv[:3, :3] @ d  # voxels per mm along the ray
    hi = np.asarray(shape, float) - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = np.where(dv > 0, (hi - p) / dv, np.where(dv < 0, (-0.5 - p) / dv, np.inf))
    inside = np.all((p >= -0.5) & (p <= hi), axis=1)
    return np.where(inside, t_hi.min(axis=1), 0.0)


def distance_outside(affine: npt.ArrayLike, shape: tuple[int, int, int], points: npt.ArrayLike) -> np.ndarray:
    """How far each point lies outside the image: 0 inside it.

    The image is the box of its voxels' extents, ``[-0.5, shape - 0.5]`` in
    voxel indices; the distance is measured along the voxel axes, each scaled
    by its spacing (exact for an orthogonal grid).

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        Voxel-to-world (RAS mm).
    shape : tuple of int
        The array shape (I, J, K).
    points : ndarray, shape (N, 3)
        World RAS mm.

    Returns
    -------
    ndarray, shape (N,)
        Distance in mm.
    """
    aff = np.asarray(affine, float)
    voxels = apply_affine(np.linalg.inv(aff), np.asarray(points, float).reshape(-1, 3))
    beyond = np.maximum(-0.5 - voxels, voxels - (np.asarray(shape, float) - 0.5)).clip(min=0.0)
    return np.linalg.norm(beyond * np.linalg.norm(aff[:3, :3], axis=0), axis=1)


def reorient(volume: Volume, axcodes: tuple[str, str, str] | str, copy: bool = True) -> Volume:
    """Permute and flip the array so its axes point along ``axcodes``.

    Only axis permutations and flips are applied (no interpolation), and the
    affine is updated so every voxel keeps its world position exactly.

    Parameters
    ----------
    volume : Volume
        Data of shape (I, J, K).
    axcodes : str or tuple of str
        e.g. "RIP".
    copy : bool
        True: a C-contiguous array of its own. False: a strided view of
        ``volume.data`` (no copy; writing to it writes to the input), for
        reading the shape, the spacing or a few slices.
    """
    target = nio.axcodes2ornt(tuple(axcodes))
    current = nio.io_orientation(volume.affine)
    transform = nio.ornt_transform(current, target)
    data = nio.apply_orientation(volume.data, transform)
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape)
    return Volume(np.ascontiguousarray(data) if copy else data, affine, volume.rescale)


def turned_head_foot(volume: Volume) -> Volume:
    """The image's data turned head to foot under its own world grid: what an upside-down image looks like.

    An image whose header says upright while its data are stored upside down
    (a feet-first patient registered head-first, or a converter that flips the
    rows but not the affine) has this relation to the right one: the same
    world box, the voxels mirrored along the axis nearest superior-inferior.
    Turning such an image again gives the right one back.

    Parameters
    ----------
    volume : Volume
        Data of shape (I, J, K), any voxel order.

    Returns
    -------
    Volume
        In RIP voxel order (``reorient``), axis 1 (inferior) reversed under
        that order's affine; the voxel at row ``j`` holds what row
        ``J' - 1 - j`` held, with ``J'`` the number of rows.
    """
    canon = reorient(volume, "RIP", copy=False)
    return Volume(np.ascontiguousarray(canon.data[:, ::-1]), canon.affine, canon.rescale)


def resample_grid(volume: Volume, spacing: npt.ArrayLike, order: int = 1) -> Volume:
    """Resample along the array axes to the given voxel size (mm) per axis.

    The first voxel centre is kept; new voxel ``n`` along an axis sits at old
    fractional index ``n * new / old``. The affine is updated exactly, so world
    positions are preserved. Axis directions (including obliquity) are unchanged.

    The result is float32 real-world values (no ``rescale``). Integers of at
    most 16 bits are read as they are, without a float32 copy of the whole
    input: they are exact in float32, so the result is the same as for the
    float32 version of the input. A ``rescale`` is applied to the result (a
    positive linear map commutes with the interpolation), not to the input.
    """
    from scipy import ndimage

    new = np.asarray(spacing, dtype=float)
    factor = new / volume.spacing
    shape = tuple(int(np.floor((n - 1) / f)) + 1 for n, f in zip(volume.shape, factor))
    if np.allclose(factor, 1.0):
        out = volume.real_data()
    else:
        data = volume.data if is_small_int(volume.data) else volume.data.astype(np.float32, copy=False)
        out = ndimage.affine_transform(data, factor, output_shape=shape, order=order, mode="nearest", output=np.float32)
        if volume.rescale is not None:
            volume.rescale.apply_in_place(out)
    affine = volume.affine @ np.diag([*factor, 1.0])
    return Volume(out, affine)
