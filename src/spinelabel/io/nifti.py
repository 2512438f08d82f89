"""NIfTI input and output (nibabel).

The affine is the one nibabel chooses (sform if its code is set, else qform,
else the pixdim fall-back), in millimetres (a header in metres or micrometres
is converted, :mod:`.nifti_header`); it maps voxel indices to RAS
millimetres, which is exactly what :class:`~spinelabel.geometry.Volume` holds.

Non-finite voxels: an image whose voxels are *all* NaN/inf is rejected; an
image with *some* NaN/inf voxels (common after registration or masking) is
accepted and those voxels are set to 0.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import GeometryError, InputError, one_line
from ..geometry import Rescale, Volume, is_small_int
from ..limits import check_enough_slices, check_image_size
from ..warning_codes import LabelWarning
from .nifti_header import MM_PER_UNIT, affine_in_mm, header_warnings, spatial_unit

NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: gzip level of a written ``.nii.gz``: nibabel's default (fast; a higher level gains little on images).
GZIP_LEVEL = 1


def is_nifti_path(path: str | Path) -> bool:
    """True when the file name ends with ``.nii`` or ``.nii.gz`` (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_nifti_file(path: str | Path) -> bool:
    """An existing file with a NIfTI name (False, not an error, for a name the system will not look at)."""
    return os.path.isfile(path) and is_nifti_path(path)


def load_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI image: :func:`read_nifti` without its warnings."""
    return read_nifti(path)[0]


def read_nifti(path: str | Path) -> tuple[Volume, list[LabelWarning]]:
    """Read a 3D NIfTI image, and what its header warns of (:func:`.nifti_header.header_warnings`).

    Parameters
    ----------
    path : str or Path
        A ``.nii`` or ``.nii.gz`` file. A 4D image holding a single volume
        (shape (I, J, K, 1)) is accepted and squeezed.

    Returns
    -------
    volume : Volume
        ``data`` of shape (I, J, K): the stored integers when they are at most
        16 bits (``geometry.is_small_int``), with ``scl_slope/scl_inter`` as
        the volume's ``rescale`` when they scale them by a positive slope;
        else float32, scaled, with non-finite voxels set to 0. ``affine``
        voxel -> RAS mm (a header in metres or micrometres converted).
    warnings : list of LabelWarning
        A sheared grid; sform and qform that disagree.

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file; several volumes (4D); all voxels
        NaN/inf; beyond the size limits of :mod:`spinelabel.limits` (checked
        from the header, before the data are read).
    GeometryError
        Fewer than ``limits.MIN_SLICES`` voxels along an axis (a 2D image or a
        thin stack), or a singular affine.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if path.is_dir():
        raise InputError(f"expected a NIfTI file, got a folder: {path}")
    with _quiet_nibabel():
        img = _open(path)
        _check_orientation(img.header, path)
        _check_voxel_size(img, path)
        shape = _spatial_shape(tuple(int(s) for s in img.shape), path)
        affine = affine_in_mm(np.asarray(img.affine, dtype=float), img.header)
        warnings = header_warnings(img.header, affine, shape)
        # from the header, before the data are read (a non-finite affine is refused by Volume below)
        unit = spatial_unit(img.header)
        where = str(path) if MM_PER_UNIT[unit] == 1.0 else f"{path} (its header gives lengths in {unit}, converted to mm)"
        check_image_size(shape, np.nan_to_num(np.linalg.norm(affine[:3, :3], axis=0), nan=0.0, posinf=0.0), where)
        data, rescale = _read_data(img, path)
    data = _replace_non_finite(data.reshape(shape), path)
    try:
        return Volume(data, affine, rescale), warnings
    except ValueError as exc:
        raise GeometryError(f"{path}: unusable image geometry: {exc}") from exc


#: nibabel's logger of header problems, which writes its repairs ("setting 0 dims to 1") to stderr.
NIBABEL_LOGGER = "nibabel.global"


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Keep nibabel's header-repair messages off stderr: our one line (or the labels) says what matters.

    The logger's level is raised above every problem level, not its handlers
    removed: a logger without handlers falls back to Python's last-resort
    handler, which prints to stderr too. Errors are still raised.
    """
    import logging

    logger = logging.getLogger(NIBABEL_LOGGER)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_orientation(header: Any, path: Path) -> None:
    """GeometryError for a header that says nothing of where the patient is (sform and qform codes both 0).

    nibabel then assumes the voxel axes run left-to-right, back-to-front and
    feet-to-head, which is a guess: a scan stored in another order would be
    read mirrored or upside down and named wrong, without a sign.
    """
    codes = [int(header.get(key, 0) or 0) for key in ("sform_code", "qform_code")]
    if not any(codes):
        raise GeometryError(
            f"{path}: the NIfTI header gives no orientation (sform_code and qform_code are 0), so which way is "
            f"head, front or left is unknown; convert the DICOM series again (e.g. dcm2niix) or label the DICOM series"
        )


def _check_voxel_size(img: Any, path: Path) -> None:
    """GeometryError for a qform-only header whose voxel size (pixdim) is 0 or not a number.

    nibabel repairs such a header as it reads it ("setting 0 dims to 1"), so a
    0.5 mm scan was labeled as a 1 mm one (a spine twice its size, refused as
    "no vertebrae found" with no word of the header). The header is read again
    without the repairs. An sform carries its own voxel size and is left alone.
    """
    from nibabel.openers import ImageOpener

    if int(img.header.get("sform_code", 0) or 0):
        return
    try:
        with ImageOpener(str(path)) as f:
            raw = type(img.header).from_fileobj(f, check=False)
        pixdim = np.asarray(raw["pixdim"][1:4], dtype=float)
    except Exception:  # noqa: BLE001 - nibabel read it a moment ago; what it repaired stays as it read it
        return
    if not (np.isfinite(pixdim).all() and (pixdim != 0).all()):
        raise GeometryError(
            f"{path}: the NIfTI header gives voxel sizes {', '.join(f'{v:g}' for v in pixdim)} mm (pixdim) and no sform, "
            "so the image's size is unknown (nibabel would take 1 mm); convert the DICOM series again or label it")


def save_nifti(volume: Volume, path: str | Path) -> None:
    """Write ``volume`` as NIfTI-1 (sform and qform from its affine, units mm).

    The file is written beside ``path`` under a temporary name and then
    renamed, so a reader never sees a half-written file. ``.nii.gz`` is
    gzip-compressed. Data keep their dtype where NIfTI-1 supports it
    (bool -> uint8, float16 -> float32, int64 -> int32 when the values fit);
    a ``rescale`` is written as ``scl_slope/scl_inter`` (float32 in the header).

    Raises
    ------
    InputError
        The name does not end with ``.nii`` or ``.nii.gz``.
    OutputError
        The file cannot be written (:func:`~spinelabel.io.outputs.atomic_write`).
    """
    import nibabel as nib

    from .outputs import atomic_write

    path = Path(path)
    if not is_nifti_path(path):
        raise InputError(f"a NIfTI file name must end with .nii or .nii.gz: {path}")
    img = nib.Nifti1Image(_nifti_compatible(volume.data), volume.affine)
    img.header.set_xyzt_units("mm")
    if volume.rescale is not None:
        img.header.set_slope_inter(volume.rescale.slope, volume.rescale.intercept)
    atomic_write(path, lambda f: _write_image(img, f, compress=path.name.lower().endswith(".gz")))


def _write_image(img: Any, stream: BinaryIO, compress: bool) -> None:
    """Write a nibabel NIfTI-1 image into an open binary file (gzip-compressed, as nibabel does, when ``compress``)."""
    if not compress:
        img.to_stream(stream)
        return
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
        img.to_stream(gz)


def _open(path: Path) -> Any:
    """nibabel image of ``path`` (header read; data still on disk)."""
    import nibabel as nib

    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise InputError(f"cannot read NIfTI file {path}: {one_line(exc)}") from exc


def _spatial_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """The 3D shape after dropping trailing singleton dimensions (4th and up)."""
    if any(n <= 0 for n in shape):
        raise InputError(f"{path}: the header gives the image {'x'.join(map(str, shape))} voxels (dim): not an image; "
                         "a damaged header?")
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 4:
        raise InputError(f"{path}: 4D image with {shape[3]} volumes (shape {shape}); need a single 3D volume")
    if len(shape) > 4:
        raise InputError(f"{path}: {len(shape)}D image (shape {shape}); need a single 3D volume")
    check_enough_slices(min(shape) if len(shape) == 3 else 1, f"{path} (shape {shape})")
    return shape  # type: ignore[return-value]


def _read_data(img: Any, path: Path) -> tuple[np.ndarray, Rescale | None]:
    """The voxel values and the rescale still to apply to them; InputError when unreadable.

    Small integers (``geometry.is_small_int``) are kept as stored (native byte
    order), with ``scl_slope/scl_inter`` as a :class:`Rescale` unless they are
    1 and 0; anything else (a float or wide type, a slope <= 0) is float32 with
    the scaling applied.
    """
    if img.get_data_dtype().fields is not None:  # RGB(A) voxels: a record of channels
        raise InputError(f"{path}: colour (RGB) NIfTI images are not supported; give the grey-scale MR image")
    if img.get_data_dtype().kind == "c":  # numpy would keep the real part without a word
        raise InputError(f"{path}: complex NIfTI images (real and imaginary parts) are not supported; give the magnitude image")
    try:
        scaling = _small_int_scaling(img)
        if scaling is None:
            return np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32), None
        data = np.asarray(img.dataobj.get_unscaled())
        rescale = None if scaling == (1.0, 0.0) else Rescale(*scaling)
        return data.astype(data.dtype.newbyteorder("="), copy=False), rescale
    except Exception as exc:  # truncated gzip, short file, odd dtype...
        raise InputError(f"cannot read NIfTI file {path}: {one_line(exc)}") from exc


def _small_int_scaling(img: Any) -> tuple[float, float] | None:
    """(slope, intercept) of an image of small integers with a finite positive slope; None otherwise."""
    proxy = img.dataobj
    slope, inter = float(getattr(proxy, "slope", np.nan)), float(getattr(proxy, "inter", np.nan))
    if not is_small_int(img.get_data_dtype()) or not (np.isfinite(slope) and np.isfinite(inter)):
        return None
    return (slope, inter) if slope > 0 else None


def _replace_non_finite(data: np.ndarray, path: Path) -> np.ndarray:
    """Set NaN/inf voxels to 0; InputError when no voxel is finite."""
    if data.dtype.kind in "iu":  # integers are finite: no full-size mask
        return data
    finite = np.isfinite(data)
    if finite.all():
        return data
    if not finite.any():
        raise InputError(f"{path}: contains NaN/inf values only (no finite voxel)")
    data = data.copy()
    data[~finite] = 0.0
    return data


def _nifti_compatible(data: np.ndarray) -> np.ndarray:
    """``data`` in a dtype that NIfTI-1 stores without surprises."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:
        small = np.int32 if data.dtype.kind == "i" else np.uint32
        info = np.iinfo(small)
        if data.size == 0 or (data.min() >= info.min and data.max() <= info.max):
            return data.astype(small)
        return data.astype(np.float64)
    return data
