"""DICOM output: a Volume as an MR Image Storage series, one file per slice.

The geometry conventions are those of :mod:`spinelabel.io.dicom` (array
``[column, row, slice]``, LPS patient coordinates), so that
:func:`~spinelabel.io.dicom.load_dicom` reads back what
:func:`write_dicom_series` wrote.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GeometryError
from ..geometry import Rescale, Volume, lps_to_ras

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass(frozen=True)
class _SeriesMeta:
    """Attributes shared by every file of a written series."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_description: str
    series_number: int
    patient_id: str
    patient_name: str
    iop: list[str]  # 6 DS strings
    pixel_spacing: list[str]  # [row spacing, column spacing] DS strings
    slice_thickness: str
    rescale: Rescale  # stored uint16 value v means v * slope + intercept
    window: tuple[str, str]  # (center, width) DS strings
    date: str
    time: str


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    series_description: str = "spinelabel",
    patient_id: str = "ANON",
    patient_name: str = "ANON",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    file_prefix: str = "IM",
) -> list[Path]:
    """Write ``volume`` as an MR Image Storage series, one file per slice of axis 2.

    The real-world values (``volume.rescale`` applied) are written. Pixels
    are uint16 with RescaleSlope/RescaleIntercept (integer data that fit
    are stored exactly, other data to 1/65535 of their range; NaN/inf -> the
    minimum). ImagePositionPatient/ImageOrientationPatient come from the
    affine (RAS -> LPS); PixelSpacing = [spacing of axis 1, spacing of axis 0].

    :func:`load_dicom` always returns a right-handed grid. For a right-handed
    ``volume.affine`` the round trip gives the same array and affine; for a
    left-handed one (det < 0) the slices are written in reverse order, so it
    gives the array flipped along axis 2 with the matching affine: every
    voxel keeps its world position either way.

    Parameters
    ----------
    volume : Volume
        Data of shape (I, J, K): I = DICOM columns, J = rows, K = slices.
        Axes 0 and 1 must be perpendicular in world space.
    folder : str or Path
        Created if needed; files ``{file_prefix}00001.dcm``... are overwritten.

    Returns
    -------
    list of Path, length K
        The files in the slice order that :func:`load_dicom` will return.
    """
    from pydicom.uid import generate_uid

    data, affine_lps = _writer_grid(volume)
    meta = _series_meta(
        data, affine_lps, study_uid=study_uid or generate_uid(), series_uid=series_uid or generate_uid(),
        frame_of_reference_uid=frame_of_reference_uid or generate_uid(), series_description=series_description,
        series_number=series_number, patient_id=patient_id, patient_name=patient_name,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(data.shape[2]):
        ds = _slice_dataset(meta, data[:, :, k], affine_lps, k)
        path = folder / f"{file_prefix}{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _writer_grid(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Real-world data (I, J, K) and voxel -> LPS affine, flipped along axis 2 if left-handed."""
    data = volume.data if volume.rescale is None else volume.real_data()
    affine = lps_to_ras(volume.affine)
    if np.linalg.det(affine[:3, :3]) < 0:
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1.0, data.shape[2] - 1
        data, affine = data[:, :, ::-1], affine @ flip
    row, col = affine[:3, 0], affine[:3, 1]
    if abs(row @ col) > 1e-6 * np.linalg.norm(row) * np.linalg.norm(col):
        raise GeometryError("cannot write DICOM: array axes 0 and 1 are not perpendicular (sheared in-plane affine)")
    return data, affine


def _series_meta(data: np.ndarray, affine_lps: np.ndarray, **identity: Any) -> _SeriesMeta:
    """Shared attributes of the series to write from its data and affine."""
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    row, col = affine_lps[:3, 0] / spacing[0], affine_lps[:3, 1] / spacing[1]
    thickness = abs(float(affine_lps[:3, 2] @ np.cross(row, col)))
    rescale, (lo, hi) = _choose_rescale(data)
    now = datetime.datetime.now()
    return _SeriesMeta(
        iop=[_ds(v) for v in (*row, *col)],
        pixel_spacing=[_ds(spacing[1]), _ds(spacing[0])],
        slice_thickness=_ds(thickness),
        rescale=rescale,
        window=(_ds((lo + hi) / 2), _ds(max(hi - lo, 1e-3))),
        date=now.strftime("%Y%m%d"),
        time=now.strftime("%H%M%S"),
        **identity,
    )


def _choose_rescale(data: np.ndarray) -> tuple[Rescale, tuple[float, float]]:
    """Slope/intercept mapping the finite range of ``data`` onto uint16; and that range."""
    if data.dtype.kind in "biu":
        lo, hi, integral = float(data.min()), float(data.max()), True
    else:
        finite = np.isfinite(data)
        lo = float(np.min(data, where=finite, initial=np.inf)) if finite.any() else 0.0
        hi = float(np.max(data, where=finite, initial=-np.inf)) if finite.any() else 0.0
        integral = bool(np.all(np.rint(data[finite]) == data[finite]))
    if integral and hi - lo <= 65535:
        intercept = 0.0 if lo >= 0 and hi <= 65535 else lo
        return Rescale(1.0, intercept), (lo, hi)
    slope = (hi - lo) / 65535 if hi > lo else 1.0
    return Rescale(float(_ds(slope)), float(_ds(lo))), (lo, hi)


def _encode(rescale: Rescale, plane: np.ndarray) -> np.ndarray:
    """Real values of any shape -> the stored uint16 values of ``rescale``, same shape (non-finite -> 0)."""
    values = np.where(np.isfinite(plane), plane, rescale.intercept).astype(np.float64)
    return np.clip(np.rint((values - rescale.intercept) / rescale.slope), 0, 65535).astype(np.uint16)


#: Significant digits kept in a decimal string (a nanometre at a metre; a rescale slope to 1e-12 of itself).
#: pydicom's formatter turns a value just short of a power of ten, such as -9.99999999999999, into 17 characters
#: ("-10.0000000000000", one more than DS allows); rounding to fewer digits first gives "-10.0".
DS_SIGNIFICANT = 12


def _ds(value: float) -> str:
    """A number as a DICOM decimal string (at most 16 characters)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(f"{float(value):.{DS_SIGNIFICANT}g}") + 0.0)  # + 0.0: no '-0'


def _slice_dataset(meta: _SeriesMeta, plane: np.ndarray, affine_lps: np.ndarray, k: int) -> Dataset:
    """The complete dataset of slice ``k``; ``plane`` has shape (I, J) = (columns, rows)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    from .. import __version__

    ds = Dataset()
    sop_uid = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(MR_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    _set_patient_study_series(ds, meta)
    ds.SoftwareVersions = f"spinelabel {__version__}"
    _set_mr_acquisition(ds)
    _set_plane(ds, meta, affine_lps, k)
    _set_pixels(ds, meta, plane)
    return ds


def _set_patient_study_series(ds: Dataset, meta: _SeriesMeta) -> None:
    """Patient, General Study, General Series, Frame of Reference, Equipment modules."""
    ds.PatientName = meta.patient_name
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = meta.study_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = meta.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = meta.time
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.SeriesInstanceUID = meta.series_uid
    ds.SeriesNumber = meta.series_number
    ds.SeriesDescription = meta.series_description
    ds.PatientPosition = ""
    ds.FrameOfReferenceUID = meta.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = ""


def _set_mr_acquisition(ds: Dataset) -> None:
    """Type 1/2 attributes of the MR Image module (unknown for derived data)."""
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = ""
    ds.RepetitionTime = ""
    ds.EchoTime = ""
    ds.EchoTrainLength = ""


def _set_plane(ds: Dataset, meta: _SeriesMeta, affine_lps: np.ndarray, k: int) -> None:
    """Image Plane module and InstanceNumber of slice ``k``."""
    position = affine_lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine_lps[:3, 3]
    row, col = np.array(meta.iop[:3], float), np.array(meta.iop[3:], float)
    ds.InstanceNumber = k + 1
    ds.PatientOrientation = ""
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = list(meta.iop)
    ds.PixelSpacing = list(meta.pixel_spacing)
    ds.SliceThickness = meta.slice_thickness
    ds.SpacingBetweenSlices = meta.slice_thickness
    ds.SliceLocation = _ds(position @ np.cross(row, col))


def _set_pixels(ds: Dataset, meta: _SeriesMeta, plane: np.ndarray) -> None:
    """Image Pixel, Modality LUT (rescale) and VOI LUT (window) attributes."""
    stored = _encode(meta.rescale, np.asarray(plane).T)  # (rows, columns)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = _ds(meta.rescale.slope)
    ds.RescaleIntercept = _ds(meta.rescale.intercept)
    ds.RescaleType = "US"
    ds.WindowCenter, ds.WindowWidth = meta.window
    ds.PixelData = np.ascontiguousarray(stored).astype("<u2").tobytes()


__all__ = ["MR_IMAGE_STORAGE", "write_dicom_series"]
