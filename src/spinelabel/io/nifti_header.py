"""What a NIfTI header says about geometry beyond the affine nibabel picks: units, and forms that disagree.

nibabel reads the affine as it is stored (sform if its code is set, else
qform) and leaves the header's spatial unit to the caller;
:func:`affine_in_mm` applies it, and :func:`header_warnings` says when the
grid is sheared or the two forms put the image in different places.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..warning_codes import LabelWarning

#: Millimetres per spatial unit of ``xyzt_units`` (NIfTI-1): an unknown unit is taken as mm, as every
#: converter of clinical images writes it (and as nibabel, which ignores the field, always does).
MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}
#: Largest |cosine| between two voxel axes still taken as perpendicular: 0.01, the in-plane offset of
#: 1 % of the step at which the DICOM reader warns of a sheared grid (``dicom._spacing_warnings``).
SHEAR_COSINE = 0.01
#: Farthest apart (mm) the sform and the qform may put a corner of the image before they are said to
#: disagree: a tenth of a typical slice, far above float rounding, far below a mislabeled orientation.
FORM_AGREEMENT_MM = 0.5


def spatial_unit(header: Any) -> str:
    """The header's spatial unit ("meter", "mm", "micron" or "unknown")."""
    try:
        unit = header.get_xyzt_units()[0]
    except (AttributeError, KeyError, ValueError):  # an Analyze-style header without the field
        return "unknown"
    return str(unit) if unit in MM_PER_UNIT else "unknown"


def affine_in_mm(affine: np.ndarray, header: Any) -> np.ndarray:
    """``affine`` (voxel -> RAS in the header's unit) as voxel -> RAS mm: shape (4, 4)."""
    out = np.array(affine, dtype=float)
    out[:3, :] *= MM_PER_UNIT[spatial_unit(header)]
    return out


def header_warnings(header: Any, affine: np.ndarray, shape: tuple[int, int, int]) -> list[LabelWarning]:
    """The input warnings of a NIfTI header: a sheared grid, sform and qform that disagree.

    Parameters
    ----------
    header : nibabel Nifti1Header
    affine : ndarray, shape (4, 4)
        The affine read (:func:`affine_in_mm` of nibabel's choice of form).
    shape : tuple of int
        The spatial shape (I, J, K): the corners where the forms are compared.
    """
    warnings = []
    axes = affine[:3, :3] / np.maximum(np.linalg.norm(affine[:3, :3], axis=0), 1e-12)
    worst = max(abs(float(axes[:, a] @ axes[:, b])) for a, b in ((0, 1), (0, 2), (1, 2)))
    if worst > SHEAR_COSINE:
        degrees = 90.0 - float(np.degrees(np.arccos(min(worst, 1.0))))
        warnings.append(LabelWarning(
            "sheared-grid", f"the voxel axes of the NIfTI affine are {degrees:.1f} deg from perpendicular "
                            "(gantry tilt?): sheared grid",
        ))
    apart = _forms_apart_mm(header, shape) if not warnings else 0.0  # a qform cannot hold a shear: no news
    if apart > FORM_AGREEMENT_MM:
        warnings.append(LabelWarning(
            "forms-disagree", f"the NIfTI sform and qform place the image up to {apart:.3g} mm apart: the sform was "
                              "used (as nibabel does); a viewer that uses the qform shows the labels elsewhere",
        ))
    return warnings


def _forms_apart_mm(header: Any, shape: tuple[int, int, int]) -> float:
    """Largest distance (mm) between where the sform and the qform put a corner voxel; 0 unless both are set."""
    try:
        sform, s_code = header.get_sform(coded=True)
        qform, q_code = header.get_qform(coded=True)
    except (ValueError, np.linalg.LinAlgError):  # a malformed quaternion: the affine check refuses the image
        return 0.0
    if not s_code or not q_code or sform is None or qform is None:
        return 0.0
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, n - 1) for n in shape])]).T
    moved = affine_in_mm(sform, header) @ corners - affine_in_mm(qform, header) @ corners
    return float(np.linalg.norm(moved[:3], axis=0).max())


__all__ = ["MM_PER_UNIT", "affine_in_mm", "header_warnings", "spatial_unit"]
