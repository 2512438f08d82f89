"""Limits on the size of an input image, checked from its header before any pixel is read.

An image beyond them is refused with one line instead of allocating gigabytes
(a corrupt header, a voxel size in micrometres, Rows/Columns far larger than
the pixel data) and running for minutes before a MemoryError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import GeometryError, InputError

#: Largest extent (mm) of an input image along any array axis. An adult spine
#: from C1 to the coccyx is about 750 mm long; a whole-spine MR (composed from
#: stations) with head and pelvis in view stays under 1000 mm. Larger means a
#: wrong voxel size in the header, and the image resampled to the model's 2 mm
#: pixels would be too large (1000 mm -> 500 pixels per axis at most).
MAX_FIELD_OF_VIEW_MM = 1000.0
#: Most voxels of an input image: 2**28 (1 GiB as float32, the reader's dtype).
#: A clinical sagittal series is under 10 M voxels (512 x 512 x 30), a 3D
#: isotropic 1 mm lumbar scan about 25 M; 268 M leaves room for thin 3D
#: whole-spine scans while a 2-core, 8 GiB machine can still process it.
MAX_VOXELS = 2**28
#: Fewest slices (voxels along the thinnest axis) of an input image. The
#: detector finds a body's lateral centre from the run of sagittal slices that
#: cross it, which needs a slice on each side of the middle one; a clinical
#: sagittal series has 12-20 slices, so fewer than 3 is a 2D image or a stub.
MIN_SLICES = 3


def check_image_size(shape: Sequence[int], spacing_mm: Sequence[float], where: str) -> None:
    """Refuse an image whose voxel count or field of view is beyond the limits.

    Parameters
    ----------
    shape : sequence of int
        Voxels along each array axis (3 values).
    spacing_mm : sequence of float
        Voxel size along each array axis in mm.
    where : str
        The image, for the message.

    Raises
    ------
    InputError
        More than :data:`MAX_VOXELS` voxels, or an extent over
        :data:`MAX_FIELD_OF_VIEW_MM` along an axis.
    """
    n_voxels = int(np.prod([int(s) for s in shape], dtype=object))
    if n_voxels > MAX_VOXELS:
        raise InputError(
            f"{where}: image too large ({' x '.join(str(int(s)) for s in shape)} = {n_voxels:.3g} voxels; "
            f"the limit is {MAX_VOXELS:.3g}): crop or downsample it first"
        )
    extent = np.asarray([int(s) for s in shape], float) * np.abs(np.asarray(spacing_mm, float))
    if not np.all(np.isfinite(extent)) or extent.max() > MAX_FIELD_OF_VIEW_MM:
        shown = " x ".join(f"{e:.4g}" for e in extent)
        raise InputError(
            f"{where}: field of view of {shown} mm is beyond the limit of {MAX_FIELD_OF_VIEW_MM:.0f} mm "
            f"per axis (wrong voxel size in the header?)"
        )


def check_enough_slices(n_slices: int, where: str) -> None:
    """Refuse an image with fewer than :data:`MIN_SLICES` slices, saying how many it has.

    Parameters
    ----------
    n_slices : int
        Slices of the image (voxels along its thinnest axis; 1 for a 2D image).
    where : str
        The image, for the message.

    Raises
    ------
    GeometryError
        Fewer than :data:`MIN_SLICES` slices.
    """
    if n_slices >= MIN_SLICES:
        return
    what = "a 2D image (one slice)" if n_slices <= 1 else f"only {n_slices} slices"
    raise GeometryError(f"{where}: {what}: need a 3D sagittal stack of at least {MIN_SLICES} slices")
