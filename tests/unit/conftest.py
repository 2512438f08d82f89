"""Shared helpers for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

from spinelabel.geometry import Volume
from spinelabel.io.dicom_write import write_dicom_series


def _write_enhanced_mr(
    vol: Volume, path: Path, tmp: Path, functional_groups: bool = True, patient_id: str | None = None
) -> None:
    """Write ``vol`` as one multi-frame file, frames in reverse slice order (classic frames staged in ``tmp``)."""
    kwargs = {} if patient_id is None else {"patient_id": patient_id}
    frames = [pydicom.dcmread(f) for f in write_dicom_series(vol, tmp, **kwargs)][::-1]
    first = frames[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "FrameOfReferenceUID", "Modality", "PatientID", "Rows",
                    "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
                    "HighBit", "PixelRepresentation"):  # fmt: skip
        setattr(ds, keyword, first.get(keyword))
    ds.NumberOfFrames = len(frames)
    ds.PixelData = b"".join(f.PixelData for f in frames)
    if functional_groups:
        shared = Dataset()
        shared.PlaneOrientationSequence = [Dataset()]
        shared.PlaneOrientationSequence[0].ImageOrientationPatient = first.ImageOrientationPatient
        shared.PixelMeasuresSequence = [Dataset()]
        shared.PixelMeasuresSequence[0].PixelSpacing = first.PixelSpacing
        shared.PixelValueTransformationSequence = [Dataset()]
        shared.PixelValueTransformationSequence[0].RescaleSlope = first.RescaleSlope
        shared.PixelValueTransformationSequence[0].RescaleIntercept = first.RescaleIntercept
        ds.SharedFunctionalGroupsSequence = [shared]
        ds.PerFrameFunctionalGroupsSequence = [Dataset() for _ in frames]
        for group, frame in zip(ds.PerFrameFunctionalGroupsSequence, frames):
            group.PlanePositionSequence = [Dataset()]
            group.PlanePositionSequence[0].ImagePositionPatient = frame.ImagePositionPatient
    else:
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            setattr(ds, keyword, first.get(keyword))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def write_enhanced_mr():
    """A function writing a volume as one enhanced multi-frame MR file (see ``_write_enhanced_mr``)."""
    return _write_enhanced_mr


def _write_two_stacks(folder: Path) -> None:
    """One series (UID 1.2.3) of two random 5-slice sagittal stacks at the same positions, told apart by ImageType
    (``DERIVED\\PRIMARY\\W`` and ``...\\F``: Dixon water and fat)."""
    import numpy as np

    sagittal = np.array([[0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    for k, part in enumerate(("W", "F")):
        vol = Volume(np.random.default_rng(k + 1).random((48, 48, 5)).astype(np.float32), sagittal)
        for f in write_dicom_series(vol, folder, series_uid="1.2.3", file_prefix=f"{part}_"):
            ds = pydicom.dcmread(f)
            ds.ImageType = ["DERIVED", "PRIMARY", part]
            ds.save_as(f)


@pytest.fixture
def write_two_stacks():
    """A function writing a two-stack Dixon-like series into a folder (see ``_write_two_stacks``)."""
    return _write_two_stacks
