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
