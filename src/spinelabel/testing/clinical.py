"""Clinical-style test studies: a sagittal MR series plus spine labels drawn in a GSPS.

PACS viewers store a radiologist's spine labels as a Grayscale Softcopy
Presentation State: per labeled image, a GraphicAnnotationSequence item that
references the image and holds text objects ("L3") whose anchor point is the
vertebra's pixel position on that image (PIXEL units). This module writes such
objects independently of spinelabel's own readers and writers (pixel positions
come from the written files' ImagePositionPatient / ImageOrientationPatient /
PixelSpacing), so tests can check the import against a different producer.

It can also plant the faults that real clinical labels have
(:func:`plant_fault`). Used by ``tests/integration/test_orthanc.py`` and
``benchmarks/pacs.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import anatomy
from ..geometry import Volume, lps_to_ras, reorient, resample_grid

__all__ = ["FAULTS", "ClinicalStudy", "clinical_series_volume", "plant_fault", "write_clinical_study", "write_label_gsps"]

#: Faults :func:`plant_fault` can plant, named as the cleaning report names them.
FAULTS = ("missing_level", "duplicate", "shifted", "far_from_vertebra")
#: How far (mm) a repeated click lands from the first one: a re-click on the same body.
DUPLICATE_OFFSET_MM = np.array([0.0, 2.0, -3.0])

Label = tuple[str, np.ndarray]


@dataclass(frozen=True)
class ClinicalStudy:
    """A written study: image series, GSPS, and the labels as drawn (world RAS mm)."""

    study_uid: str
    series_uid: str
    patient_id: str
    image_files: list[Path]
    gsps_file: Path
    labels: list[Label]


def clinical_series_volume(volume: Volume, inplane_mm: float = 1.5, slice_mm: float = 4.0) -> Volume:
    """A volume as a clinical sagittal series: slices across the body, thick slices, coarser pixels.

    Axes become (P, I, R): DICOM columns run anterior to posterior, rows head
    to feet, slices right to left, as scanners store sagittal series.
    """
    canon = reorient(volume, "PIR")
    return resample_grid(canon, [inplane_mm, inplane_mm, slice_mm], order=1)


def plant_fault(labels: dict[str, np.ndarray], fault: str) -> list[Label]:
    """The labels of one scan (cranial to caudal) with one realistic fault.

    ``missing_level``: the third label is left out. ``duplicate``: the second
    label is clicked again 3.6 mm away. ``shifted``: every label is named one
    level too cranial (counted from the wrong end). ``far_from_vertebra``: the
    third label is placed on the disc below its vertebra (the mid-point of two
    centres). Needs at least 4 labels.
    """
    names = list(labels)
    pts = [np.asarray(labels[n], float) for n in names]
    if len(names) < 4:
        raise ValueError("plant_fault needs at least 4 labels")
    out = list(zip(names, pts))
    if fault == "missing_level":
        del out[2]
    elif fault == "duplicate":
        out.insert(2, (names[1], pts[1] + DUPLICATE_OFFSET_MM))
    elif fault == "shifted":
        chain = anatomy.STANDARD_LEVELS
        out = [(chain[chain.index(n) - 1], p) for n, p in out]
    elif fault == "far_from_vertebra":
        out[2] = (names[2], (pts[2] + pts[3]) / 2)
    else:
        raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
    return out


def _plane(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origin, row direction, column direction (LPS) and [row, column] spacing of one image."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    spacing = np.array([float(v) for v in ds.PixelSpacing])
    return ipp, iop[:3], iop[3:], spacing


def _anchor(datasets: Sequence, point_ras: np.ndarray) -> tuple[int, tuple[float, float]]:
    """Index of the image nearest the point, and the point's (column, row) anchor on it.

    GSPS pixel coordinates put (0, 0) at the top left corner of the top left
    pixel (PS3.3 C.10.5.1.2), so a pixel centre (c, r) is at (c + 0.5, r + 0.5).
    """
    p = lps_to_ras(np.asarray(point_ras, float))  # RAS <-> LPS is its own inverse
    best, best_d = 0, np.inf
    for k, ds in enumerate(datasets):
        ipp, row, col, _ = _plane(ds)
        d = abs((p - ipp) @ np.cross(row, col))
        if d < best_d:
            best, best_d = k, d
    ipp, row, col, spacing = _plane(datasets[best])
    c = (p - ipp) @ row / spacing[1]
    r = (p - ipp) @ col / spacing[0]
    return best, (float(c + 0.5), float(r + 0.5))


def write_label_gsps(
    image_files: Sequence[Path], labels: Sequence[Label], path: str | Path, *, series_number: int = 99
) -> Path:
    """A GSPS holding each label as a text object anchored on the nearest image of the series."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    datasets = [pydicom.dcmread(f) for f in image_files]
    by_image: dict[int, list[hd.pr.TextObject]] = {}
    for name, xyz in labels:
        k, anchor = _anchor(datasets, xyz)
        text = hd.pr.TextObject(
            text_value=name, units=hd.pr.AnnotationUnitsValues.PIXEL, anchor_point=anchor,
            graphic_group=None,
        )
        by_image.setdefault(k, []).append(text)
    layer = hd.pr.GraphicLayer(layer_name="SPINE_LABELS", order=1, description="spine labels")
    annotations = [
        hd.pr.GraphicAnnotation(referenced_images=[datasets[k]], graphic_layer=layer, text_objects=texts)
        for k, texts in sorted(by_image.items())
    ]
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=datasets,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Example PACS",
        manufacturer_model_name="Viewer",
        software_versions="1.0",
        device_serial_number="0",
        content_label="SPINE_LABELS",
        graphic_layers=[layer],
        graphic_annotations=annotations,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gsps.save_as(path, enforce_file_format=True)
    return path


def write_clinical_study(
    volume: Volume,
    labels: Sequence[Label],
    folder: str | Path,
    *,
    patient_id: str,
    series_description: str = "T2 TSE SAG",
) -> ClinicalStudy:
    """Write ``volume`` (already in its clinical geometry) as a series plus a labels GSPS.

    Layout: ``folder/images/IM00001.dcm...`` and ``folder/labels.gsps.dcm``.
    """
    from pydicom.uid import generate_uid

    from ..io.dicom_write import write_dicom_series

    folder = Path(folder)
    study_uid, series_uid = generate_uid(), generate_uid()
    files = write_dicom_series(
        volume, folder / "images", series_description=series_description, patient_id=patient_id,
        patient_name=f"TEST^{patient_id}", study_uid=study_uid, series_uid=series_uid, series_number=3,
    )
    gsps = write_label_gsps(files, labels, folder / "labels.gsps.dcm")
    return ClinicalStudy(study_uid, series_uid, patient_id, files, gsps, [(n, np.asarray(p, float)) for n, p in labels])
