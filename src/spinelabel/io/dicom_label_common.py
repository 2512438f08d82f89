"""What the reader and the writers of DICOM spine labels share.

SOP classes, the pixel coordinate convention, the geometry of one image plane
and the SNOMED CT vertebra codes, used by :mod:`spinelabel.io.dicom_label_read`
and :mod:`spinelabel.io.dicom_label_write`.

Pixel coordinates
-----------------
GSPS graphic annotations in PIXEL units and SR SCOORD values are
(column, row) pairs in which the top left hand corner of the top left pixel
is (0, 0) and the bottom right corner of the bottom right pixel is
(Columns, Rows) (DICOM PS3.3 C.10.5 Graphic Annotation Module and C.18.6
Spatial Coordinates Macro; highdicom's ImageToReferenceTransformer and
cornerstone use the same convention). The centre of the pixel with 0-based
indices (i, j) is therefore at (i + 0.5, j + 0.5): see :data:`PIXEL_CENTRE`.
ImagePositionPatient is the centre of the top left pixel, so a point (c, r)
lies at ``IPP + (c - 0.5) * dc * X + (r - 0.5) * dr * Y`` (LPS), with X, Y
the row and column direction cosines and dc, dr = PixelSpacing[1],
PixelSpacing[0]. Reader and writers use the same two functions
(:meth:`ImagePlane.to_lps`, :meth:`ImagePlane.to_pixel`), so a round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import anatomy
from ..errors import InputError

__all__ = ["GSPS_SOP_CLASS", "PIXEL_CENTRE", "ImagePlane", "plane_of", "snomed_levels"]

#: Grayscale Softcopy Presentation State Storage.
GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
#: Manufacturer (and model name) of the SR and GSPS spinelabel writes: what tells its own labels from a person's.
SOFTWARE_NAME = "spinelabel"
#: Offset of a pixel centre from its index in DICOM pixel coordinates: the top
#: left corner of the top left pixel is (0, 0), its centre (0.5, 0.5)
#: (PS3.3 C.10.5 and C.18.6).
PIXEL_CENTRE = 0.5


@dataclass(frozen=True)
class ImagePlane:
    """Geometry of one 2D image (a single-frame file or one frame), LPS mm.

    ``origin`` (3,) is the centre of the top left pixel (ImagePositionPatient);
    ``row_dir`` (3,) the unit direction of increasing column index, ``col_dir``
    (3,) that of increasing row index; ``spacing`` (2,) = (mm per column step,
    mm per row step); ``size`` = (Columns, Rows).
    """

    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: np.ndarray
    size: tuple[int, int]

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (3,), row_dir x col_dir."""
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    def to_lps(self, col_row: np.ndarray) -> np.ndarray:
        """DICOM pixel coordinates (N, 2) (column, row) -> LPS mm (N, 3) on this plane."""
        ij = (np.asarray(col_row, float).reshape(-1, 2) - PIXEL_CENTRE) * self.spacing
        return self.origin + ij[:, :1] * self.row_dir + ij[:, 1:] * self.col_dir

    def to_pixel(self, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LPS mm (N, 3) -> pixel coordinates (N, 2) of the projection, and the signed distance (N,) to the plane."""
        d = np.asarray(lps, float).reshape(-1, 3) - self.origin
        col_row = np.stack([d @ self.row_dir, d @ self.col_dir], axis=1) / self.spacing + PIXEL_CENTRE
        return col_row, d @ self.normal

    @property
    def is_sagittal(self) -> bool:
        """True when the slice normal is closest to the left-right axis."""
        return int(np.argmax(np.abs(self.normal))) == 0


def plane_of(path: Path, header: Any, frame: int | None) -> ImagePlane:
    """The plane of a single-frame image (frame None) or of 1-based ``frame``; InputError if unusable."""
    from .dicom import _slices_of

    slices = _slices_of(path, header)
    if frame is None:
        if len(slices) > 1:
            raise InputError(f"{path}: multi-frame image referenced without a frame number")
        s = slices[0]
    elif 1 <= frame <= len(slices):
        s = slices[frame - 1]
    else:
        raise InputError(f"{path}: frame {frame} referenced, but the image has {len(slices)} frame(s)")
    row, col = s.iop[:3], s.iop[3:]
    if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-6 or s.pixel_spacing.min() <= 0:
        raise InputError(f"{path}: degenerate ImageOrientationPatient or PixelSpacing")
    spacing = np.array([s.pixel_spacing[1], s.pixel_spacing[0]])  # (column step, row step)
    return ImagePlane(s.ipp, row / np.linalg.norm(row), col / np.linalg.norm(col), spacing, (s.size[1], s.size[0]))


def snomed_levels() -> dict[tuple[str, str], str]:
    """SNOMED CT vertebra codes known to pydicom: (scheme, code) -> level."""
    from pydicom.sr.codedict import codes

    out = {}
    for level in anatomy.ALL_LEVELS:
        code = getattr(codes.SCT, f"{level}Vertebra", None) if level in anatomy.STANDARD_LEVELS else None
        if code is not None:
            out[("SCT", str(code.value))] = level
    return out
