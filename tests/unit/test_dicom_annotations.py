"""Spine labels from DICOM (GSPS, SR) in, SR and GSPS out.

Expected world points come from the image loader's affine (voxel (c - 0.5,
r - 0.5, k) for DICOM pixel coordinates (c, r) on slice k), an independent
check of the pixel convention used by the reader and the writers.
"""

from __future__ import annotations

import re
import warnings as warnings_module
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spinelabel.annotations import load_annotations
from spinelabel.cli import main
from spinelabel.geometry import Volume
from spinelabel.io import LoadedImage, load_image
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.io.dicom_label_common import GSPS_SOP_CLASS
from spinelabel.io.dicom_label_read import PAIR_RADIUS_MM, import_dicom_annotations
from spinelabel.io.dicom_label_write import write_gsps, write_sr
from spinelabel.pipeline import LabelResult, Vertebra
from spinelabel.warning_codes import LabelWarning

SHAPE = (64, 72, 9)  # columns, rows, slices
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"


def _rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    a, b = np.radians(ax_deg), np.radians(az_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def _affine(kind: str) -> np.ndarray:
    """RAS affine of a sagittal array (columns, rows, slices): columns along +A, rows along -S."""
    axes = np.stack([[0.0, 0.8, 0.0], [0.0, 0.0, -0.9], [-3.5, 0.0, 0.0]], axis=1)
    if kind == "oblique":
        axes = _rotation(12.0, 9.0) @ axes
    elif kind == "axial":  # columns along +R, rows along -A, slices along +S
        axes = np.stack([[0.8, 0.0, 0.0], [0.0, -0.8, 0.0], [0.0, 0.0, 4.0]], axis=1)
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = [12.0, -30.5, 40.25]
    return affine


def _series(folder: Path, kind: str = "sagittal", **kwargs) -> LoadedImage:
    data = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    kwargs.setdefault("patient_id", "P1")
    kwargs.setdefault("series_number", 7)
    write_dicom_series(Volume(data, _affine(kind)), folder, **kwargs)
    return load_image(folder)


def _world(loaded: LoadedImage, col_row, k: int) -> np.ndarray:
    """RAS world point of DICOM pixel coordinates (column, row) on slice k, via the loader's affine."""
    c, r = col_row
    return loaded.volume.voxel_to_world(np.array([c - 0.5, r - 0.5, k]))


def _header(loaded: LoadedImage, k: int) -> Dataset:
    return pydicom.dcmread(loaded.dicom.files[k], stop_before_pixels=True)


# ----------------------------------------------------------------------------- building objects by hand


def _ref_image(header: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = header.SOPClassUID
    ref.ReferencedSOPInstanceUID = header.SOPInstanceUID
    return ref


def _text(value: str, anchor=None, box=None) -> Dataset:
    t = Dataset()
    t.UnformattedTextValue = value
    if anchor is not None:
        t.AnchorPointAnnotationUnits = "PIXEL"
        t.AnchorPoint = [float(v) for v in anchor]
        t.AnchorPointVisibility = "Y"
    if box is not None:
        t.BoundingBoxAnnotationUnits = "PIXEL"
        t.BoundingBoxTopLeftHandCorner = [float(v) for v in box[:2]]
        t.BoundingBoxBottomRightHandCorner = [float(v) for v in box[2:]]
        t.BoundingBoxTextHorizontalJustification = "LEFT"
    return t


def _graphic(graphic_type: str, points, units: str = "PIXEL") -> Dataset:
    g = Dataset()
    points = np.asarray(points, float).reshape(-1, 2)
    g.GraphicAnnotationUnits = units
    g.GraphicDimensions = 2
    g.NumberOfGraphicPoints = len(points)
    g.GraphicData = [float(v) for v in points.ravel()]
    g.GraphicType = graphic_type
    g.GraphicFilled = "N"
    return g


def _annotation(header: Dataset | None, texts=(), graphics=(), sop_uid: str | None = None) -> Dataset:
    item = Dataset()
    item.GraphicLayer = "LAYER1"
    ref = _ref_image(header) if header is not None else Dataset()
    if sop_uid is not None:
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ref.ReferencedSOPInstanceUID = sop_uid
    item.ReferencedImageSequence = DicomSequence([ref])
    if texts:
        item.TextObjectSequence = DicomSequence(list(texts))
    if graphics:
        item.GraphicObjectSequence = DicomSequence(list(graphics))
    return item


def _file_dataset(sop_class: str, like: Dataset, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = like.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = like.PatientID
    ds.PatientName = "TEST^PATIENT"
    return ds


def _write_gsps(path: Path, like: Dataset, annotations: list[Dataset]) -> Path:
    """A GSPS as viewers save them: text objects and graphics per referenced image."""
    ds = _file_dataset(GSPS_SOP_CLASS, like, "PR")
    series = Dataset()
    series.SeriesInstanceUID = like.SeriesInstanceUID
    series.ReferencedImageSequence = DicomSequence([_ref_image(like)])
    ds.ReferencedSeriesSequence = DicomSequence([series])
    layer = Dataset()
    layer.GraphicLayer = "LAYER1"
    layer.GraphicLayerOrder = 1
    ds.GraphicLayerSequence = DicomSequence([layer])
    ds.GraphicAnnotationSequence = DicomSequence(annotations)
    ds.ContentLabel = "ANNOTATIONS"
    ds.save_as(path, enforce_file_format=True)
    return path


def _code(value: str, scheme: str, meaning: str) -> DicomSequence:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return DicomSequence([c])


def _item(value_type: str, relationship: str, name: tuple[str, str, str], **values) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = _code(*name)
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _scoord(points, header: Dataset, graphic_type: str = "POINT") -> Dataset:
    item = Dataset()
    item.RelationshipType = "INFERRED FROM"
    item.ValueType = "SCOORD"
    item.GraphicType = graphic_type
    item.GraphicData = [float(v) for v in np.asarray(points, float).ravel()]
    image = Dataset()
    image.RelationshipType = "SELECTED FROM"
    image.ValueType = "IMAGE"
    image.ReferencedSOPSequence = DicomSequence([_ref_image(header)])
    item.ContentSequence = DicomSequence([image])
    return item


def _scoord3d(lps, frame_of_reference: str) -> Dataset:
    item = _item("SCOORD3D", "CONTAINS", ("111030", "DCM", "Image Region"))
    item.GraphicType = "POINT"
    item.GraphicData = [float(v) for v in lps]
    item.ReferencedFrameOfReferenceUID = frame_of_reference
    return item


def _write_sr(path: Path, like: Dataset, content: list[Dataset], sop_class: str = ENHANCED_SR) -> Path:
    ds = _file_dataset(sop_class, like, "SR")
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = _code("18748-4", "LN", "Diagnostic imaging report")
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentSequence = DicomSequence(content)
    ds.save_as(path, enforce_file_format=True)
    return path


def _result(loaded: LoadedImage, labels_voxels: dict[str, tuple[float, float, float]], confidence=0.9) -> LabelResult:
    vertebrae = [
        Vertebra(label, loaded.volume.voxel_to_world(np.array(ijk)), np.array(ijk, float), confidence)
        for label, ijk in labels_voxels.items()
    ]
    return LabelResult("lumbar", "dummy", "0", vertebrae)


# ----------------------------------------------------------------------------- GSPS in


def test_a_text_without_a_frame_number_pairs_with_its_mark_on_frame_1_of_a_single_frame_image(tmp_path):
    """One viewer referenced the text's annotation without a frame number and the mark's as frame 1 (the image's
    only frame): the two were kept apart, the text placed at its box and the mark left over."""
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 3)
    text = _annotation(h, texts=[_text("L3", box=(40, 12, 52, 18))])
    mark = _annotation(h, graphics=[_graphic("POINT", [(33.0, 17.5)])])
    mark.ReferencedImageSequence[0].ReferencedFrameNumber = 1
    gsps = _write_gsps(tmp_path / "gsps.dcm", h, [text, mark])
    imported = import_dicom_annotations([tmp_path / "series", gsps])
    (ann,) = imported.annotations
    assert imported.problems == []
    assert np.allclose(ann.points["L3"], _world(loaded, (33.0, 17.5), 3), atol=0.01)


@pytest.mark.parametrize("kind", ["sagittal", "oblique"])
def test_gsps_as_viewers_write_them_imports_world_points(tmp_path, kind):
    loaded = _series(tmp_path / "series", kind)
    h3, h5 = _header(loaded, 3), _header(loaded, 5)
    square = [(20, 30), (26, 30), (26, 36), (20, 36), (20, 30)]  # closed outline centred on (23, 33)
    gsps = _write_gsps(tmp_path / "gsps.dcm", h3, [
        _annotation(h3, texts=[_text("L3", anchor=(30.5, 40.25))]),  # text anchored at the point
        _annotation(h3, texts=[_text("l2", box=(40, 12, 52, 18))],  # text box beside a point mark
                    graphics=[_graphic("POINT", [(33.0, 17.5)])]),
        _annotation(h5, texts=[_text("L 4", box=(28, 30, 40, 36))], graphics=[_graphic("POLYLINE", square)]),
        _annotation(h5, texts=[_text("L5 vertebra", box=(20, 55, 32, 61))],
                    graphics=[_graphic("CIRCLE", [(21.0, 50.0), (24.0, 50.0)])]),
        _annotation(h5, texts=[_text("S1", box=(30, 62, 44, 68))]),  # text only: the box centre
    ])
    imported = import_dicom_annotations([tmp_path / "series", gsps])
    (said,) = imported.problems  # a text with no mark and no anchor point is placed, and said to be
    assert "text 'S1': no mark within 30 mm; placed at the centre of its text box" in said
    (ann,) = imported.annotations
    expected = {
        "L2": _world(loaded, (33.0, 17.5), 3),
        "L3": _world(loaded, (30.5, 40.25), 3),
        "L4": _world(loaded, (23.0, 33.0), 5),
        "L5": _world(loaded, (21.0, 50.0), 5),
        "S1": _world(loaded, (37.0, 65.0), 5),
    }
    assert list(ann.points) == list(expected)  # cranial to caudal
    for level, xyz in expected.items():
        np.testing.assert_allclose(ann.points[level], xyz, atol=1e-3, err_msg=level)
    assert ann.scan_id == "P1_7"
    assert ann.series_uid == loaded.dicom.series_instance_uid
    assert Path(ann.image).resolve() == (tmp_path / "series").resolve()
    assert ann.source == gsps


@pytest.mark.parametrize("point", [(900.0, 900.0), (-400.0, -400.0), (10.0, -3.0)])
def test_a_gsps_point_off_its_image_is_skipped_with_a_reason(tmp_path, point):
    """A label drawn off the image (a viewer's bug, a hand edit) would become a point metres away in training."""
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    _write_gsps(tmp_path / "gsps.dcm", h, [
        _annotation(h, texts=[_text("L2", anchor=(10, 20))]),
        _annotation(h, texts=[_text("L3", anchor=point)]),
    ])
    imported = import_dicom_annotations([tmp_path])
    (ann,) = imported.annotations
    assert list(ann.points) == ["L2"]
    assert len(imported.problems) == 1 and "L3" in imported.problems[0] and "lies off the" in imported.problems[0]


def test_a_gsps_annotation_on_an_image_of_another_series_is_skipped(tmp_path):
    """The state presents series A; one annotation points at an image of series B (both in the folder): its label
    must not become a label of B."""
    a = _series(tmp_path / "a", series_number=7)
    b = _series(tmp_path / "b", series_number=8)
    ha, hb = _header(a, 4), _header(b, 4)
    _write_gsps(tmp_path / "gsps.dcm", ha, [
        _annotation(ha, texts=[_text("L2", anchor=(10, 20))]),
        _annotation(hb, texts=[_text("L3", anchor=(10, 40))]),
    ])
    imported = import_dicom_annotations([tmp_path])
    assert [(x.series_uid, list(x.points)) for x in imported.annotations] == [(a.dicom.series_instance_uid, ["L2"])]
    assert len(imported.problems) == 1 and "which the presentation state does not reference" in imported.problems[0]


@pytest.mark.parametrize(
    "text, level", [("L3", "L3"), ("l3", "L3"), ("L 3", "L3"), ("L3 vertebra", "L3"), ("T13", "T13"), ("L6", "L6")]
)
def test_label_text_variants(tmp_path, text, level):
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    _write_gsps(tmp_path / "gsps.dcm", h, [_annotation(h, texts=[_text(text, anchor=(10, 20))])])
    (ann,) = import_dicom_annotations([tmp_path]).annotations
    assert list(ann.points) == [level]


def test_pairing_is_nearest_first_within_the_radius(tmp_path):
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    far = PAIR_RADIUS_MM / 0.8 + 5  # columns are 0.8 mm apart: a mark farther than the radius
    _write_gsps(tmp_path / "gsps.dcm", h, [
        _annotation(h, texts=[_text("L1", anchor=(10, 10)), _text("L2", anchor=(10, 30))],
                    graphics=[_graphic("POINT", [(10, 28)]), _graphic("POINT", [(10, 12)]),
                              _graphic("POINT", [(10 + far, 50)])]),
    ])
    imported = import_dicom_annotations([tmp_path])
    (ann,) = imported.annotations
    np.testing.assert_allclose(ann.points["L1"], _world(loaded, (10, 12), 4), atol=1e-3)
    np.testing.assert_allclose(ann.points["L2"], _world(loaded, (10, 28), 4), atol=1e-3)
    assert len(imported.problems) == 1 and "no vertebra label within" in imported.problems[0]


def test_duplicated_labels_keep_the_first_point(tmp_path):
    loaded = _series(tmp_path / "series")
    h2, h6 = _header(loaded, 2), _header(loaded, 6)
    _write_gsps(tmp_path / "gsps.dcm", h2, [
        _annotation(h2, texts=[_text("L3", anchor=(10, 20))]),
        _annotation(h6, texts=[_text("L3", anchor=(12, 22))]),
    ])
    (ann,) = import_dicom_annotations([tmp_path]).annotations
    assert ann.duplicates == ("L3",)
    np.testing.assert_allclose(ann.points["L3"], _world(loaded, (10, 20), 2), atol=1e-3)


# ----------------------------------------------------------------------------- SR in (written by other tools)


def test_sr_with_text_parent_and_finding_site_code(tmp_path):
    loaded = _series(tmp_path / "series", "oblique")
    h = _header(loaded, 4)
    text = _item("TEXT", "CONTAINS", ("121071", "DCM", "Finding"), TextValue="L4")
    text.ContentSequence = DicomSequence([_scoord([(12.0, 20.0)], h)])
    _write_sr(tmp_path / "enhanced.dcm", h, [text])

    lps = np.array([-3.0, 10.0, 25.0])
    group = _item("CONTAINER", "CONTAINS", ("125007", "DCM", "Measurement Group"), ContinuityOfContent="SEPARATE")
    site = _item("CODE", "HAS CONCEPT MOD", ("363698007", "SCT", "Finding Site"),
                 ConceptCodeSequence=_code("36470004", "SCT", "Third lumbar vertebra"))  # named by its code
    group.ContentSequence = DicomSequence([site, _scoord3d(lps, h.FrameOfReferenceUID)])
    _write_sr(tmp_path / "c3d.dcm", h, [group], COMPREHENSIVE_3D_SR)

    imported = import_dicom_annotations([tmp_path])
    assert imported.problems == []
    (ann,) = imported.annotations
    np.testing.assert_allclose(ann.points["L4"], _world(loaded, (12.0, 20.0), 4), atol=1e-3)
    np.testing.assert_allclose(ann.points["L3"], lps * [-1, -1, 1], atol=1e-3)  # LPS -> RAS


# ----------------------------------------------------------------------------- SR and GSPS out, and back in


LEVELS = {"L1": (20.3, 10.7, 1.2), "L2": (25.0, 30.2, 3.9), "L3": (30.9, 50.1, 6.4), "L4": (0.2, 71.0, 8.0)}


@pytest.mark.parametrize("kind", ["sagittal", "oblique"])
def test_sr_round_trip_and_validity(tmp_path, kind):
    import highdicom as hd

    loaded = _series(tmp_path / "series", kind, patient_id="P9", study_uid="1.2.826.0.1.3680043.9.7.1")
    result = _result(loaded, LEVELS)
    out = tmp_path / "labels" / "out.sr.dcm"
    write_sr(result, loaded.dicom, out)

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    assert ds.PatientID == "P9" and ds.StudyInstanceUID == "1.2.826.0.1.3680043.9.7.1"
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == loaded.dicom.series_instance_uid
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == list(LEVELS)
    assert all(g.roi.value_type.value == "SCOORD" and g.roi.graphic_type.value == "POINT" for g in groups)

    imported = import_dicom_annotations([tmp_path], own_outputs=True)
    assert imported.problems == []
    (ann,) = imported.annotations
    assert list(ann.points) == list(LEVELS)
    for v in result.vertebrae:
        assert np.linalg.norm(ann.points[v.label] - v.position_mm) <= 0.5, v.label
        np.testing.assert_allclose(ann.points[v.label], v.position_mm, atol=1e-3)


def test_sr_carries_the_warnings_as_text_and_still_reads_back_as_labels(tmp_path):
    import highdicom as hd

    loaded = _series(tmp_path / "series", "sagittal")
    warnings = [LabelWarning("no-anchor", "no anchor vertebra (S1) labeled — count"), LabelWarning("sheared-grid", "sheared")]
    out = tmp_path / "labels" / "out.sr.dcm"
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error")  # pydicom warns when a character does not fit the character set
        write_sr(replace(_result(loaded, LEVELS), warnings=warnings), loaded.dicom, out)
    ds = pydicom.dcmread(out)
    (container,) = [item for item in ds.ContentSequence if item.ValueType == "CONTAINER"
                    and item.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"]
    texts = [t.TextValue for t in container.ContentSequence]
    assert texts == ["no anchor vertebra (S1) labeled - count [no-anchor]", "sheared [sheared-grid]"]
    assert {t.ConceptNameCodeSequence[0].CodeValue for t in container.ContentSequence} == {"LABELWARN"}
    report = hd.sr.Comprehensive3DSR.from_dataset(ds).content  # still a measurement report to highdicom
    assert [g.tracking_identifier for g in report.get_planar_roi_measurement_groups()] == list(LEVELS)
    imported = import_dicom_annotations([tmp_path], own_outputs=True)
    assert imported.problems == [] and list(imported.annotations[0].points) == list(LEVELS)
    plain = tmp_path / "plain.sr.dcm"
    write_sr(_result(loaded, LEVELS), loaded.dicom, plain)  # no warnings: no container
    assert not [item for item in pydicom.dcmread(plain).ContentSequence if item.ValueType == "CONTAINER"
                and item.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"]


def test_sr_names_every_level_by_finding_site_where_a_code_exists(tmp_path):
    """Viewers such as OHIF show the finding site, not the tracking identifier: S1 gets the sacrum, L6 none."""
    import highdicom as hd

    loaded = _series(tmp_path / "series")
    levels = {"L4": (20.0, 30.0, 4.0), "L5": (22.0, 45.0, 4.2), "L6": (24.0, 55.0, 4.1), "S1": (26.0, 66.0, 3.9)}
    write_sr(_result(loaded, levels), loaded.dicom, tmp_path / "out.sr.dcm")
    report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(tmp_path / "out.sr.dcm")).content
    sites = {}
    for group in report.get_planar_roi_measurement_groups():
        found = [item.ConceptCodeSequence[0] for item in group[0].ContentSequence
                 if item.ConceptNameCodeSequence[0].CodeValue == "363698007"]  # fmt: skip
        sites[group.tracking_identifier] = (found[0].CodeValue, found[0].CodeMeaning) if found else None
    assert sites == {"L4": ("11994002", "L4 vertebra"), "L5": ("49668003", "L5 vertebra"), "L6": None,
                     "S1": ("54735007", "Sacrum")}  # fmt: skip
    (ann,) = import_dicom_annotations([tmp_path], own_outputs=True).annotations
    assert list(ann.points) == list(levels)  # the tracking identifier still names S1 on import


@pytest.mark.parametrize("kind", ["sagittal", "oblique"])
def test_gsps_round_trip_in_plane_and_validity(tmp_path, kind):
    loaded = _series(tmp_path / "series", kind, patient_id="P9")
    result = _result(loaded, LEVELS, confidence=0.3)
    out = tmp_path / "out.gsps.dcm"
    write_gsps(result, loaded.dicom, out)

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == GSPS_SOP_CLASS and ds.Modality == "PR" and ds.PatientID == "P9"
    assert ds.ContentLabel == "SPINE_LABELS" and ds.PresentationLUTShape == "IDENTITY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == loaded.dicom.series_instance_uid
    assert len(ds.ReferencedSeriesSequence[0].ReferencedImageSequence) == SHAPE[2]
    assert {"GraphicLayerSequence", "DisplayedAreaSelectionSequence", "SoftcopyVOILUTSequence"} <= set(ds.dir())
    texts = [a.TextObjectSequence[0].UnformattedTextValue for a in ds.GraphicAnnotationSequence]
    assert texts == ["L1?", "L2?", "L3?", "L4?"]  # low confidence is flagged

    (ann,) = import_dicom_annotations([tmp_path], own_outputs=True).annotations
    for v in result.vertebrae:
        got = loaded.volume.world_to_voxel(ann.points[v.label])
        in_plane_mm = (got[:2] - v.voxel[:2]) * loaded.volume.spacing[:2]
        assert np.linalg.norm(in_plane_mm) <= 0.5, v.label
        assert np.linalg.norm(in_plane_mm) < 1e-3
        assert abs(got[2] - v.voxel[2]) <= 0.5  # on the nearest slice
        assert got[2] == pytest.approx(round(v.voxel[2]), abs=1e-4)


def test_gsps_marks_every_name_when_a_warning_doubts_the_count(tmp_path):
    """Confident names get "?" when a ``count`` warning comes with them, not for other warnings; re-imported as named."""
    loaded = _series(tmp_path / "series", "sagittal")
    sure = _result(loaded, LEVELS, confidence=0.9)

    def texts_with(*warnings: LabelWarning) -> list[str]:
        out = tmp_path / "gsps" / "out.dcm"
        write_gsps(replace(sure, warnings=list(warnings)), loaded.dicom, out)
        return [a.TextObjectSequence[0].UnformattedTextValue for a in pydicom.dcmread(out).GraphicAnnotationSequence
                if a.GraphicLayer == "VERTEBRAE"]

    assert texts_with() == ["L1", "L2", "L3", "L4"]
    assert texts_with(LabelWarning("sheared-grid", "sheared"), LabelWarning("missed-level", "gap")) == ["L1", "L2", "L3", "L4"]
    assert texts_with(LabelWarning("anchor-rival", "rival")) == ["L1?", "L2?", "L3?", "L4?"]
    imported = import_dicom_annotations([tmp_path / "series", tmp_path / "gsps"], own_outputs=True)  # the warning lines are passed over
    assert imported.problems == [] and sorted(imported.annotations[0].points) == ["L1", "L2", "L3", "L4"]


def test_gsps_shows_what_to_check_on_every_image(tmp_path):
    """``count`` and ``detection`` warnings as screen-fixed lines on every image, with their codes; not ``input`` ones."""
    loaded = _series(tmp_path / "series", "sagittal")
    warned = replace(_result(loaded, LEVELS, confidence=0.9), warnings=[
        LabelWarning("sheared-grid", "sheared"), LabelWarning("no-anchor", "no anchor \u2014 count from a landmark"),
        LabelWarning("missed-at-end", "no vertebra found at L5 below L4 - look below"),
    ])
    write_gsps(warned, loaded.dicom, tmp_path / "out.dcm")
    ds = pydicom.dcmread(tmp_path / "out.dcm")
    assert [layer.GraphicLayer for layer in ds.GraphicLayerSequence] == ["VERTEBRAE", "WARNINGS"]
    (banner,) = [a for a in ds.GraphicAnnotationSequence if a.GraphicLayer == "WARNINGS"]
    assert len(banner.ReferencedImageSequence) == SHAPE[2]  # every slice
    lines = [t.UnformattedTextValue for t in banner.TextObjectSequence]
    assert lines == ["spinelabel: no anchor - count from a landmark [no-anchor]",
                     "spinelabel: no vertebra found at L5 below L4 - look below [missed-at-end]"]
    assert {t.BoundingBoxAnnotationUnits for t in banner.TextObjectSequence} == {"DISPLAY"}
    tops = [float(t.BoundingBoxTopLeftHandCorner[1]) for t in banner.TextObjectSequence]
    assert tops == sorted(tops) and all(0.0 <= v <= 1.0 for t in banner.TextObjectSequence
                                        for v in (*t.BoundingBoxTopLeftHandCorner, *t.BoundingBoxBottomRightHandCorner))
    write_gsps(_result(loaded, LEVELS, confidence=0.9), loaded.dicom, tmp_path / "calm.dcm")
    assert [layer.GraphicLayer for layer in pydicom.dcmread(tmp_path / "calm.dcm").GraphicLayerSequence] == ["VERTEBRAE"]


def test_enhanced_multiframe_series_round_trips_with_frame_numbers(tmp_path, write_enhanced_mr):
    data = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    write_enhanced_mr(Volume(data, _affine("oblique")), tmp_path / "mf" / "enhanced.dcm", tmp_path / "classic", patient_id="P5")
    loaded = load_image(tmp_path / "mf")
    result = _result(loaded, LEVELS)
    write_sr(result, loaded.dicom, tmp_path / "sr" / "out.dcm")
    write_gsps(result, loaded.dicom, tmp_path / "gsps" / "out.dcm")
    frames = [a.ReferencedImageSequence[0].ReferencedFrameNumber
              for a in pydicom.dcmread(tmp_path / "gsps" / "out.dcm").GraphicAnnotationSequence]
    assert frames == [loaded.dicom.frame_numbers[round(ijk[2])] for ijk in LEVELS.values()]
    for folder, atol in (("sr", 1e-3), ("gsps", loaded.volume.spacing[2] / 2)):
        imported = import_dicom_annotations([tmp_path / "mf", tmp_path / folder], own_outputs=True)
        assert imported.problems == []
        (ann,) = imported.annotations
        for v in result.vertebrae:
            np.testing.assert_allclose(ann.points[v.label], v.position_mm, atol=atol, err_msg=f"{folder} {v.label}")


# ----------------------------------------------------------------------------- problems


def test_bad_inputs_are_reported_per_item_and_the_rest_imports(tmp_path):
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    _write_gsps(tmp_path / "good.dcm", h, [
        _annotation(h, texts=[_text("L3", anchor=(10, 20)), _text("disc", anchor=(10, 40)), _text("L4-L5", anchor=(10, 60))]),
    ])
    _write_gsps(tmp_path / "missing_image.dcm", h, [
        _annotation(None, texts=[_text("L2", anchor=(10, 20))], sop_uid="1.2.826.0.1.3680043.9.7.99"),
    ])
    _write_sr(tmp_path / "no_coordinates.dcm", h, [_item("TEXT", "CONTAINS", ("121071", "DCM", "Finding"), TextValue="L1")])
    group = _item("CONTAINER", "CONTAINS", ("125007", "DCM", "Measurement Group"), ContinuityOfContent="SEPARATE")
    tracking = _item("TEXT", "HAS OBS CONTEXT", ("112039", "DCM", "Tracking Identifier"), TextValue="disc")
    group.ContentSequence = DicomSequence([tracking, _scoord([(5.0, 5.0)], h)])
    _write_sr(tmp_path / "unknown_label.dcm", h, [group])
    good = (tmp_path / "good.dcm").read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(1).bytes(300))
    (tmp_path / "notes.txt").write_text("not DICOM")  # silently skipped

    imported = import_dicom_annotations([tmp_path])
    (ann,) = imported.annotations
    assert list(ann.points) == ["L3"]
    text = "\n".join(imported.problems)
    assert "unknown vertebra label 'disc'" in text and "good.dcm" in text
    assert "'L4-L5' (names a disc or a range, not a vertebra)" in text
    assert "1.2.826.0.1.3680043.9.7.99" in text and "not among the inputs" in text
    assert "no_coordinates.dcm: SR without spatial coordinates" in text
    assert "unknown_label.dcm" in text
    assert "truncated.dcm" in text
    assert "garbage.dcm: malformed DICOM file" in text
    assert "notes.txt" not in text
    assert len(imported.problems) == 7
    assert all("\n" not in p for p in imported.problems)


def test_labels_on_an_axial_series_are_skipped_with_a_message(tmp_path):
    loaded = _series(tmp_path / "axial", "axial")
    h = _header(loaded, 4)
    _write_gsps(tmp_path / "gsps.dcm", h, [_annotation(h, texts=[_text("L3", anchor=(10, 20))])])
    imported = import_dicom_annotations([tmp_path])
    assert imported.annotations == []
    assert len(imported.problems) == 1 and "not a sagittal series" in imported.problems[0]


@pytest.mark.parametrize("scout", ["image type", "mixed planes"])
def test_labels_on_a_localizer_are_skipped_with_a_message(tmp_path, scout):
    """A 3-plane localizer's first image may be sagittal: its labels are planning marks, not a scan to train on."""
    loaded = _series(tmp_path / "scout")
    last = loaded.dicom.files[-1]
    ds = pydicom.dcmread(last)
    if scout == "image type":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    else:  # the last image axial
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.save_as(last)
    h = _header(loaded, 2)
    _write_gsps(tmp_path / "gsps.dcm", h, [_annotation(h, texts=[_text("L3", anchor=(10, 20))])])
    imported = import_dicom_annotations([tmp_path])
    assert imported.annotations == []
    assert len(imported.problems) == 1, imported.problems
    assert "localizer" in imported.problems[0] and "1 label(s) were skipped" in imported.problems[0]


def test_two_series_get_distinct_scan_ids_and_load_by_series(tmp_path):
    study = tmp_path / "study"
    a = _series(tmp_path / "a", series_number=3)
    b = _series(tmp_path / "b", series_number=4, study_uid=a.dicom.study_instance_uid)
    study.mkdir()
    for loaded, prefix in ((a, "A"), (b, "B")):  # one flat folder, as some exports are
        for f in loaded.dicom.files:
            f.rename(study / f"{prefix}{f.name}")
    a = load_image([study], series_uid=a.dicom.series_instance_uid)
    b = load_image([study], series_uid=b.dicom.series_instance_uid)
    for loaded, name in ((a, "a"), (b, "b")):
        h = _header(loaded, 2)
        _write_gsps(study / f"{name}.gsps.dcm", h, [_annotation(h, texts=[_text("L1", anchor=(5, 5))])])
    anns = import_dicom_annotations([study]).annotations
    assert sorted(x.scan_id for x in anns) == ["P1_3", "P1_4"]
    for ann in anns:  # the folder holds both series: the series UID picks one
        image = load_image([ann.image], series_uid=ann.series_uid)
        assert image.dicom.series_instance_uid == ann.series_uid


# ----------------------------------------------------------------------------- load_annotations and the CLI


def test_load_annotations_reads_a_dicom_folder(tmp_path):
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    _write_gsps(tmp_path / "gsps.dcm", h, [
        _annotation(h, texts=[_text("L3", anchor=(10, 20)), _text("disc", anchor=(10, 40))]),
    ])
    problems: list[str] = []
    (ann,) = load_annotations([tmp_path], on_problem=problems.append)
    assert list(ann.points) == ["L3"] and len(problems) == 1
    # what training does with it: the image folder reads back as the labelled series
    assert load_image([ann.image]).dicom.series_instance_uid == loaded.dicom.series_instance_uid


def test_load_annotations_dicom_folder_without_labels_is_an_error(tmp_path):
    from spinelabel.errors import InputError

    _series(tmp_path / "series")
    with pytest.raises(InputError, match="no spine labels found in the DICOM files: no GSPS or SR objects"):
        load_annotations([tmp_path], on_problem=lambda message: None)


def test_cli_annotations_import_writes_the_csv_train_reads(tmp_path, capsys):
    loaded = _series(tmp_path / "export" / "series")
    h = _header(loaded, 4)
    _write_gsps(tmp_path / "export" / "gsps.dcm", h, [
        _annotation(h, texts=[_text("L3", anchor=(10, 20)), _text("L4", anchor=(10, 50)), _text("disc", anchor=(9, 9))]),
    ])
    out = tmp_path / "labels" / "annotations.csv"
    code = main(["annotations", "import", str(tmp_path / "export"), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "imported 2 labels of 1 scans" in captured.out
    assert captured.err.count("warning: ") == 1 and "'disc'" in captured.err
    assert out.read_text().splitlines()[0] == "scan,label,x,y,z,image,series"
    (ann,) = load_annotations([out])
    assert ann.scan_id == "P1_7" and list(ann.points) == ["L3", "L4"]
    np.testing.assert_allclose(ann.points["L3"], _world(loaded, (10, 20), 4), atol=1e-9)
    assert Path(ann.image).resolve() == (tmp_path / "export" / "series").resolve()
    assert ann.series_uid == loaded.dicom.series_instance_uid


def test_cli_annotations_import_nothing_is_an_error(tmp_path, capsys):
    _series(tmp_path / "series")
    code = main(["annotations", "import", str(tmp_path), "-o", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "no GSPS or SR objects found" in err and "spinelabel: error: no spine labels imported" in err
    assert not (tmp_path / "out.csv").exists()


class _FixedLabeler:
    """Stands in for a model: labels four fixed voxels of whatever volume it gets."""

    def label(self, volume: Volume) -> LabelResult:
        vertebrae = [Vertebra(lv, volume.voxel_to_world(np.array(ijk)), np.array(ijk, float), 0.9)
                     for lv, ijk in LEVELS.items()]
        return LabelResult("lumbar", "fixed", "0", vertebrae)


@pytest.fixture
def fixed_labeler(monkeypatch):
    from spinelabel.pipeline import Labeler

    monkeypatch.setattr(Labeler, "load", classmethod(lambda cls, *args, **kwargs: _FixedLabeler()))


def test_cli_label_writes_sr_and_gsps(tmp_path, capsys, fixed_labeler):
    loaded = _series(tmp_path / "series", "oblique")
    sr, gsps = tmp_path / "out" / "labels.sr.dcm", tmp_path / "out" / "labels.gsps.dcm"
    code = main(["label", str(tmp_path / "series"), "--dicom-sr", str(sr), "--gsps", str(gsps), "-q"])
    assert code == 0, capsys.readouterr().err
    assert pydicom.dcmread(sr).SOPClassUID == COMPREHENSIVE_3D_SR
    assert pydicom.dcmread(gsps).SOPClassUID == GSPS_SOP_CLASS
    (ann,) = import_dicom_annotations([tmp_path / "series", sr], own_outputs=True).annotations
    for level, ijk in LEVELS.items():
        np.testing.assert_allclose(ann.points[level], loaded.volume.voxel_to_world(np.array(ijk)), atol=1e-3)


def test_cli_label_batch_dicom_outputs(tmp_path, capsys, fixed_labeler):
    _series(tmp_path / "scan1")
    code = main(["label", str(tmp_path / "scan1"), "--output-dir", str(tmp_path / "out"), "--dicom-outputs", "-q"])
    assert code == 0, capsys.readouterr().err
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"scan1.json", "scan1.sr.dcm", "scan1.gsps.dcm"}


def test_cli_label_nifti_input_refuses_dicom_outputs(tmp_path, capsys, fixed_labeler):
    from spinelabel.io.nifti import save_nifti

    save_nifti(Volume(np.zeros(SHAPE, np.float32), _affine("sagittal")), tmp_path / "scan.nii.gz")
    code = main(["label", str(tmp_path / "scan.nii.gz"), "--dicom-sr", str(tmp_path / "x.dcm")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "needs a DICOM input" in lines[0]
    assert not (tmp_path / "x.dcm").exists()


# ----------------------------------------------------------------------------- what a red team's vendor exports did


def test_an_arrow_marks_its_tip_not_its_middle(tmp_path):
    """A text box with an arrow drawn from it to the vertebra was read at the arrow's midpoint (9 mm off, kept by
    every check)."""
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    gsps = _write_gsps(tmp_path / "gsps.dcm", h, [
        _annotation(h, texts=[_text("L3", box=(40, 10, 52, 16))], graphics=[_graphic("POLYLINE", [(40, 14), (28, 30)])]),
        _annotation(h, texts=[_text("L4", box=(40, 40, 52, 46))], graphics=[_graphic("POLYLINE", [(28, 60), (41, 45)])]),
    ])
    imported = import_dicom_annotations([tmp_path / "series", gsps])
    (ann,) = imported.annotations
    assert imported.problems == []
    np.testing.assert_allclose(ann.points["L3"], _world(loaded, (28, 30), 4), atol=1e-3)
    np.testing.assert_allclose(ann.points["L4"], _world(loaded, (28, 60), 4), atol=1e-3)  # drawn tip first


def test_texts_set_off_from_their_marks_each_take_their_own(tmp_path):
    """Every text 10 mm above its point, the next point up 8 mm away: nearest-first pairing gave each text the point
    of the level above (all one level too cranial); the least summed distance gives each its own."""
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    rows = {"L1": 22, "L2": 42, "L3": 62}  # 18 mm apart; texts 11 rows (9.9 mm) above
    gsps = _write_gsps(tmp_path / "gsps.dcm", h, [
        _annotation(h, texts=[_text(lv, anchor=(30, r - 11)) for lv, r in rows.items()],
                    graphics=[_graphic("POINT", [(30, r)]) for r in rows.values()]),
    ])
    imported = import_dicom_annotations([tmp_path / "series", gsps])
    (ann,) = imported.annotations
    assert imported.problems == []
    for level, row in rows.items():
        np.testing.assert_allclose(ann.points[level], _world(loaded, (30, row), 4), atol=1e-3, err_msg=level)


def test_an_algorithms_labels_are_not_imported_as_a_persons(tmp_path):
    """Our own SR/GSPS (what `pacs label --store` puts in the archive) and another product's SR with a device as its
    only observer were imported as clinical labels: training on them teaches the algorithm's answers."""
    loaded = _series(tmp_path / "series")
    result = _result(loaded, {"L1": (30.0, 20.0, 4.0), "L2": (31.0, 45.0, 4.0)}, confidence=0.9)
    write_sr(result, loaded.dicom, tmp_path / "ours" / "labels.sr.dcm")
    write_gsps(result, loaded.dicom, tmp_path / "ours" / "labels.gsps.dcm")
    imported = import_dicom_annotations([tmp_path / "series", tmp_path / "ours"])
    assert imported.annotations == [] and len(imported.problems) == 2
    assert all("written by spinelabel itself (the model's labels, not a person's" in p for p in imported.problems)
    other = pydicom.dcmread(tmp_path / "ours" / "labels.sr.dcm")
    other.Manufacturer = "Acme Spine AI"
    (tmp_path / "theirs").mkdir()
    other.save_as(tmp_path / "theirs" / "ai.sr.dcm")
    (said,) = import_dicom_annotations([tmp_path / "series", tmp_path / "theirs"]).problems
    assert "its only observer is a device (an algorithm's labels, not a person's): skipped" in said


def test_labels_a_reviewer_confirmed_are_a_persons(tmp_path):
    """The review page's SR is verified by the reviewer and its GSPS created by them: read as clinical labels."""
    loaded = _series(tmp_path / "series")
    result = _result(loaded, {"L1": (30.0, 20.0, 4.0), "L2": (31.0, 45.0, 4.0)}, confidence=0.3)
    write_sr(result, loaded.dicom, tmp_path / "sr" / "labels.sr.dcm", reviewer="Dr. O'Neil \\ radiology = 1")
    write_gsps(result, loaded.dicom, tmp_path / "gsps" / "labels.gsps.dcm", confirmed=True, reviewer="Dr. O'Neil")
    sr = pydicom.dcmread(tmp_path / "sr" / "labels.sr.dcm")
    assert sr.VerificationFlag == "VERIFIED" and str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == (
        "Dr. O'Neil radiology 1")  # no VR delimiters in a person name
    assert str(pydicom.dcmread(tmp_path / "gsps" / "labels.gsps.dcm").ContentCreatorName) == "Dr. O'Neil"
    for folder in ("sr", "gsps"):
        imported = import_dicom_annotations([tmp_path / "series", tmp_path / folder])
        assert imported.problems == [] and list(imported.annotations[0].points) == ["L1", "L2"], folder


def test_a_level_two_sources_put_on_different_vertebrae_is_skipped_and_said(tmp_path):
    """A radiologist's GSPS names L3 right, another workstation's GSPS names L3 on the L4 body: the file that sorted
    first won, silently, and L3 and L4 lay on one vertebra. A repeat at the same place is still fine."""
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    right = [_annotation(h, texts=[_text(lv, anchor=(30, r))]) for lv, r in (("L3", 20), ("L4", 45), ("L5", 66))]
    _write_gsps(tmp_path / "b_radiologist.dcm", h, right)
    _write_gsps(tmp_path / "a_other.dcm", h, [_annotation(h, texts=[_text("L3", anchor=(30, 45))]),
                                              _annotation(h, texts=[_text("L5", anchor=(31, 67))])])
    imported = import_dicom_annotations([tmp_path])
    (ann,) = imported.annotations
    assert list(ann.points) == ["L4", "L5"] and ann.duplicates == ("L5",)
    (said,) = imported.problems
    assert re.search(r"L3 is given 2 times by .*a_other\.dcm, .*b_radiologist\.dcm, up to 2\d mm apart", said)


def test_a_level_named_by_a_text_fixed_to_the_screen_is_said_not_dropped_silently(tmp_path):
    """A text in DISPLAY units names no point of the image; one that names a level was passed over without a word."""
    loaded = _series(tmp_path / "series")
    h = _header(loaded, 4)
    screen = _text("L3", box=(0.1, 0.1, 0.2, 0.15))
    screen.BoundingBoxAnnotationUnits = "DISPLAY"
    note = _text("count checked", box=(0.1, 0.2, 0.3, 0.25))
    note.BoundingBoxAnnotationUnits = "DISPLAY"
    gsps = _write_gsps(tmp_path / "gsps.dcm", h, [
        _annotation(h, texts=[screen]), _annotation(h, texts=[note]), _annotation(h, texts=[_text("L4", anchor=(30, 40))]),
    ])
    imported = import_dicom_annotations([tmp_path / "series", gsps])
    assert list(imported.annotations[0].points) == ["L4"]
    (said,) = imported.problems  # the note that names no level stays silent
    assert "graphic annotation #1: text 'L3' is fixed to the screen (DISPLAY units)" in said


def test_pairing_keeps_each_text_on_its_own_mark_around_strays_refused_texts_and_lines(tmp_path):
    """A diff review's cases: a stray mark 29 mm above took L3 from its own point (and L3's point went to a
    text-only L4) when leaving an item unpaired cost the full radius; a refused text's point went to the label beside
    it; a line drawn across a body, labelled at its middle, was read as an arrow to one end."""
    loaded = _series(tmp_path / "series")
    h3, h5, h7 = _header(loaded, 3), _header(loaded, 5), _header(loaded, 7)
    gsps = _write_gsps(tmp_path / "gsps.dcm", h3, [
        _annotation(h3, texts=[_text("L3", anchor=(30, 37)), _text("L4", anchor=(30, 69))],
                    graphics=[_graphic("POINT", [(30, 5)]), _graphic("POINT", [(30, 39)])]),
        _annotation(h5, texts=[_text("L1", anchor=(30, 20)), _text("L1/L2 disc", anchor=(30, 34))],
                    graphics=[_graphic("POINT", [(30, 33)])]),
        _annotation(h7, texts=[_text("T12", anchor=(30, 30))], graphics=[_graphic("POLYLINE", [(20, 40), (40, 40)])]),
    ])
    imported = import_dicom_annotations([tmp_path / "series", gsps])
    (ann,) = imported.annotations
    np.testing.assert_allclose(ann.points["L3"], _world(loaded, (30, 39), 3), atol=1e-3)
    np.testing.assert_allclose(ann.points["L4"], _world(loaded, (30, 69), 3), atol=1e-3)
    np.testing.assert_allclose(ann.points["L1"], _world(loaded, (30, 20), 5), atol=1e-3)
    np.testing.assert_allclose(ann.points["T12"], _world(loaded, (30, 40), 7), atol=1e-3)
    assert any("graphic #1 (POINT): no vertebra label within 30 mm" in p for p in imported.problems)  # the stray
    assert any("'L1/L2 disc'" in p for p in imported.problems)
