"""DICOM series as hospital exports write them: what the reader and the SR/GSPS writers must take.

Each case is a small synthetic series (known affine, from ``write_dicom_series``)
edited as a scanner or an anonymiser leaves it: Type 2 attributes empty or
absent, Type 1 attributes stripped, a Japanese character set, MONOCHROME1, a
rescale per slice, a localizer beside the sagittal series.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from spinelabel.errors import InputError
from spinelabel.geometry import Volume
from spinelabel.io import LoadedImage, load_image
from spinelabel.io.dicom_label_read import import_dicom_annotations
from spinelabel.io.dicom_label_write import output_character_set, write_gsps, write_sr
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.results import LabelResult, Vertebra
from spinelabel.testing.dciodvfy import dciodvfy_executable, validate

SHAPE = (40, 48, 7)  # columns, rows, slices
AFFINE = np.array([[0.0, 0.0, -3.5, 12.0], [0.8, 0.0, 0.0, -30.5], [0.0, -0.9, 0.0, 40.25], [0.0, 0.0, 0.0, 1.0]])
LEVELS = {"L3": (10.0, 12.0, 2.0), "L4": (20.0, 30.0, 3.0), "L5": (25.0, 40.0, 4.0)}


def _series(folder: Path, edit: Callable[[Any, int], None] | None = None, scale: float = 1000.0) -> list[Path]:
    """A sagittal series of random values; ``edit(dataset, k)`` changes each slice's file before it is kept."""
    data = (np.random.default_rng(1).random(SHAPE) * scale).astype(np.float32)
    files = write_dicom_series(Volume(data, AFFINE), folder, patient_id="P1", patient_name="Doe^Jane")
    for k, f in enumerate(files):
        if edit is not None:
            ds = pydicom.dcmread(f)
            edit(ds, k)
            ds.save_as(f)
    return files


def _result(loaded: LoadedImage) -> LabelResult:
    vertebrae = [Vertebra(label, loaded.volume.voxel_to_world(np.array(ijk)), np.array(ijk, float), 0.9)
                 for label, ijk in LEVELS.items()]  # fmt: skip
    return LabelResult("lumbar", "dummy", "0", vertebrae)


def _write(folder: Path, out: Path) -> tuple[Path, Path]:
    loaded = load_image(folder)
    sr, gsps = out / "labels.sr.dcm", out / "labels.gsps.dcm"
    out.mkdir(exist_ok=True)
    write_sr(_result(loaded), loaded.dicom, sr)
    write_gsps(_result(loaded), loaded.dicom, gsps)
    return sr, gsps


def _no_validator_errors(*paths: Path) -> None:
    if dciodvfy_executable() is None:  # .ci/run installs dicom3tools
        pytest.skip("dciodvfy (Debian dicom3tools) is needed to validate the written objects")
    for path in paths:
        assert validate(path).errors == (), path


@pytest.mark.parametrize("thickness", ["absent", "empty"])
def test_sr_is_written_without_a_slice_thickness(tmp_path, thickness):
    """SliceThickness is Type 2 (it may be empty or left out): the SR goes without its optional image library."""

    def edit(ds, k):
        if thickness == "absent":
            del ds.SliceThickness
        else:
            ds.SliceThickness = None

    _series(tmp_path / "s", edit)
    sr, gsps = _write(tmp_path / "s", tmp_path / "out")
    back = pydicom.dcmread(sr)
    assert len(back.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
               .ReferencedSOPSequence) == SHAPE[2]  # fmt: skip
    assert "Image Library" not in str(back.ContentSequence)
    _no_validator_errors(sr, gsps)


def test_sr_with_a_slice_thickness_keeps_its_image_library(tmp_path):
    _series(tmp_path / "s")
    sr, _ = _write(tmp_path / "s", tmp_path / "out")
    assert "Image Library" in str(pydicom.dcmread(sr).ContentSequence)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "Modality", "SOPInstanceUID"])
def test_a_stripped_type1_attribute_is_one_line(tmp_path, keyword):
    """An anonymiser that drops a required attribute from one slice: the SR is refused, naming it; nothing written."""
    _series(tmp_path / "s", lambda ds, k: delattr(ds, keyword) if k == 2 else None)
    loaded = load_image(tmp_path / "s")
    with pytest.raises(InputError, match=f"has no {keyword} \\(a required DICOM attribute\\)"):
        write_sr(_result(loaded), loaded.dicom, tmp_path / "sr.dcm")
    assert not (tmp_path / "sr.dcm").exists()


@pytest.mark.parametrize(("source", "declared"), [
    (None, None), ("", None), ("ISO_IR 100", "ISO_IR 100"), ("ISO 2022 IR 100", "ISO_IR 100"),
    ("ISO 2022 IR 6", None), (["", "ISO 2022 IR 87"], ["ISO 2022 IR 6", "ISO 2022 IR 87"]),
    ("ISO 2022 IR 87", ["ISO 2022 IR 6", "ISO 2022 IR 87"]), ("ISO_IR 192", "ISO_IR 192"),
    (["ISO 2022 IR 6", "ISO 2022 IR 149"], ["ISO 2022 IR 6", "ISO 2022 IR 149"]),
])  # fmt: skip
def test_output_character_set(source, declared):
    assert output_character_set(source) == declared


@pytest.mark.parametrize(("charset", "name"), [
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),  # as Japanese scanners write it
    ("ISO 2022 IR 100", "Müller^Jürgen"),
    ("ISO_IR 192", "Ŝmith^Ĵohn=山田^太郎"),
])  # fmt: skip
def test_sr_and_gsps_keep_the_patient_name_in_its_character_set(tmp_path, charset, name):
    def edit(ds, k):
        ds.SpecificCharacterSet = charset
        ds.PatientName = name

    _series(tmp_path / "s", edit)
    sr, gsps = _write(tmp_path / "s", tmp_path / "out")
    for path in (sr, gsps):
        assert str(pydicom.dcmread(path).PatientName) == name
    _no_validator_errors(sr, gsps)


def test_an_undeclared_latin1_name_is_written_declared(tmp_path):
    """A source without SpecificCharacterSet but with Latin-1 bytes in its names (common in the wild): our copies
    declare UTF-8, so they are valid DICOM and the name reads as pydicom read it."""

    def edit(ds, k):
        del ds.SpecificCharacterSet
        ds.PatientName = "Müller^Jürgen".encode("latin-1")

    _series(tmp_path / "s", edit)
    sr, gsps = _write(tmp_path / "s", tmp_path / "out")
    for path in (sr, gsps):
        back = pydicom.dcmread(path)
        assert back.SpecificCharacterSet == "ISO_IR 192" and str(back.PatientName) == "Müller^Jürgen"
    _no_validator_errors(sr, gsps)
    _series(tmp_path / "ascii", lambda ds, k: delattr(ds, "SpecificCharacterSet"))
    sr, _ = _write(tmp_path / "ascii", tmp_path / "out2")
    assert "SpecificCharacterSet" not in pydicom.dcmread(sr)  # plain ASCII needs no declaration


def test_monochrome1_is_read_in_displayed_polarity(tmp_path):
    """A MONOCHROME1 series (the lowest value shown white) reads as its MONOCHROME2 twin, inverted about its range."""
    _series(tmp_path / "m2")
    stored: list[np.ndarray] = []

    def invert(ds, k):
        ds.PhotometricInterpretation = "MONOCHROME1"
        top = 2 ** int(ds.BitsStored) - 1
        pixels = (top - ds.pixel_array.astype(np.int64)).astype(ds.pixel_array.dtype)
        stored.append(pixels)
        ds.PixelData = pixels.tobytes()

    _series(tmp_path / "m1", invert)
    plain, inverted = load_image(tmp_path / "m2"), load_image(tmp_path / "m1")
    np.testing.assert_array_equal(inverted.volume.affine, plain.volume.affine)
    a, b = plain.volume.real_data(), inverted.volume.real_data()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999  # same polarity (it was -1 before the fix)
    np.testing.assert_allclose(b - b.min(), a - a.min(), atol=1e-3 * np.ptp(a))
    _, gsps = _write(tmp_path / "m1", tmp_path / "out")
    assert pydicom.dcmread(gsps).PresentationLUTShape == "INVERSE"  # shown as without the GSPS
    _, plain_gsps = _write(tmp_path / "m2", tmp_path / "out2")
    assert pydicom.dcmread(plain_gsps).PresentationLUTShape == "IDENTITY"


def test_mixed_photometric_interpretations_are_refused(tmp_path):
    _series(tmp_path / "s", lambda ds, k: setattr(ds, "PhotometricInterpretation", "MONOCHROME1") if k == 3 else None)
    with pytest.raises(InputError, match="differ in PhotometricInterpretation"):
        load_image(tmp_path / "s")


def test_gsps_windows_each_slice_in_its_own_stored_values_when_rescales_differ(tmp_path):
    """Philips writes a slope per slice: the GSPS's modality LUT is then the identity, each window in stored values."""
    slopes = [0.002 + 0.0003 * k for k in range(SHAPE[2])]

    def rescale(ds, k):
        real = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], -1.5 * k
        ds.PixelData = np.clip(np.rint((real + 1.5 * k) / slopes[k]), 0, 65535).astype(np.uint16).tobytes()
        ds.WindowCenter, ds.WindowWidth = 500.0, 800.0

    files = _series(tmp_path / "s", rescale)
    _, gsps = _write(tmp_path / "s", tmp_path / "out")
    g = pydicom.dcmread(gsps)
    assert (float(g.RescaleSlope), float(g.RescaleIntercept)) == (1.0, 0.0)
    uid_slice = {pydicom.dcmread(f).SOPInstanceUID: k for k, f in enumerate(files)}
    seen = set()
    for item in g.SoftcopyVOILUTSequence:
        for ref in item.ReferencedImageSequence:
            k = uid_slice[ref.ReferencedSOPInstanceUID]
            seen.add(k)
            assert float(item.WindowCenter) == pytest.approx((500.0 + 1.5 * k) / slopes[k], rel=1e-6)
            assert float(item.WindowWidth) == pytest.approx(800.0 / slopes[k], rel=1e-6)
    assert seen == set(range(SHAPE[2]))
    _no_validator_errors(gsps)


def test_a_localizer_beside_the_series_is_listed_with_its_orientations(tmp_path):
    """A three-plane localizer is named as such in the listing, not by its first image's plane."""
    from spinelabel.io.dicom import _series_summary

    files = _series(tmp_path / "s")
    members = []
    for k, iop in enumerate(([0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1], [1, 0, 0, 0, 1, 0])):
        ds = pydicom.dcmread(files[k])
        ds.ImageOrientationPatient = iop
        members.append((files[k], ds))
    assert _series_summary("1.2", members).endswith("(3 images, sagittal, coronal, axial)")


def test_a_multi_valued_patient_name_is_written_as_the_source_has_it(tmp_path):
    """A backslash in PatientName (two values; VM is 1, but exports do it) made highdicom raise a TypeError: a
    traceback from ``label --dicom-sr`` and ``pacs label``. Now the SR and GSPS carry the source's values."""

    def edit(ds, k):
        ds.PatientName = "O'Brien^Una\\x"
        ds.ReferringPhysicianName = "Doe^J\\Roe^K"

    _series(tmp_path / "s", edit)
    sr, gsps = _write(tmp_path / "s", tmp_path / "out")
    for path in (sr, gsps):
        back = pydicom.dcmread(path)
        assert list(back.PatientName) == ["O'Brien^Una", "x"]
        assert list(back.ReferringPhysicianName) == ["Doe^J", "Roe^K"]
        assert back.PatientID == "P1"


def test_the_same_result_gives_the_same_sr_and_gsps_uids(tmp_path):
    """Storing a result again (a repeated or retried ``pacs label --store``) must not add a second copy to the PACS:
    the UIDs come from the content, so the PACS already holds the object. Another result gets other UIDs."""
    _series(tmp_path / "s")
    loaded = load_image(tmp_path / "s")

    def uids(result: LabelResult, confirmed: bool = False) -> list[tuple[str, str]]:
        sr, gsps = tmp_path / "x.sr.dcm", tmp_path / "x.gsps.dcm"
        write_sr(result, loaded.dicom, sr)
        write_gsps(result, loaded.dicom, gsps, confirmed=confirmed)
        return [(str(d.SeriesInstanceUID), str(d.SOPInstanceUID)) for d in map(pydicom.dcmread, (sr, gsps))]

    first = uids(_result(loaded))
    assert uids(_result(loaded)) == first
    assert len({u for pair in first for u in pair}) == 4  # SR and GSPS: two series, two instances
    surer = _result(loaded)
    surer.vertebrae[0] = Vertebra(surer.vertebrae[0].label, surer.vertebrae[0].position_mm, surer.vertebrae[0].voxel, 0.95)
    changed = uids(surer)
    assert changed[0] != first[0] and changed[1] != first[1]
    reviewed = uids(_result(loaded), confirmed=True)
    assert reviewed[0] == first[0] and reviewed[1] != first[1]  # the GSPS of a review has no "?" marks: another object


def test_the_sr_names_the_weights_and_other_weights_give_other_uids(tmp_path):
    """A model trained elsewhere keeps the shipped name and version: the SR records the weights' checksum as an
    algorithm parameter, and the same names from other weights are another object (other UIDs)."""
    import dataclasses

    _series(tmp_path / "s")
    loaded = load_image(tmp_path / "s")
    sr = tmp_path / "x.sr.dcm"

    def written(result: LabelResult) -> tuple[set[str], str]:
        """The SR's text values (the algorithm's parameters among them) and its SOP Instance UID."""
        write_sr(result, loaded.dicom, sr)
        ds = pydicom.dcmread(sr)
        return {str(e.value) for e in ds.iterall() if e.keyword == "TextValue"}, str(ds.SOPInstanceUID)

    texts, plain = written(_result(loaded))
    assert not any("SHA-256" in t for t in texts)  # none known (a result read back from an older document)
    texts, first = written(dataclasses.replace(_result(loaded), model_sha256="ab" * 32))
    assert f"weights SHA-256 {'ab' * 32}" in texts
    _, second = written(dataclasses.replace(_result(loaded), model_sha256="cd" * 32))
    assert len({plain, first, second}) == 3
    _no_validator_errors(sr)


@pytest.mark.parametrize("check", ["done", "not needed", "skipped"])
def test_the_sr_says_when_the_upside_down_check_was_skipped(tmp_path, check):
    """In PACS, where the JSON result is not read, a check skipped by --trust-orientation must not pass for a passed
    one: the SR names it among the algorithm's parameters and is another object (other UIDs) than the SR of the same
    names with the check run; the GSPS, which shows the same labels either way, keeps its UIDs."""
    import dataclasses

    _series(tmp_path / "s")
    loaded = load_image(tmp_path / "s")
    result = dataclasses.replace(_result(loaded), upside_down_check=check)

    def uids(path: Path) -> str:
        return str(pydicom.dcmread(path).SOPInstanceUID)

    write_sr(result, loaded.dicom, tmp_path / "x.sr.dcm")
    write_sr(dataclasses.replace(result, upside_down_check=""), loaded.dicom, tmp_path / "plain.sr.dcm")
    write_gsps(result, loaded.dicom, tmp_path / "x.gsps.dcm")
    write_gsps(dataclasses.replace(result, upside_down_check=""), loaded.dicom, tmp_path / "plain.gsps.dcm")
    texts = {str(e.value) for e in pydicom.dcmread(tmp_path / "x.sr.dcm").iterall() if e.keyword == "TextValue"}
    skipped = check == "skipped"
    assert ("upside-down check skipped (--trust-orientation)" in texts) == skipped
    assert (uids(tmp_path / "x.sr.dcm") != uids(tmp_path / "plain.sr.dcm")) == skipped
    assert uids(tmp_path / "x.gsps.dcm") == uids(tmp_path / "plain.gsps.dcm")
    _no_validator_errors(tmp_path / "x.sr.dcm")


def test_a_result_without_a_checksum_hashes_the_content_it_did_before(tmp_path, monkeypatch):
    """A reviewed document written before checksums were recorded, stored again, must get the UIDs it got then (the
    PACS already holds that object): its UID content names the model as [name, version], without a third field."""
    import dataclasses
    import json

    import pydicom.uid

    _series(tmp_path / "s")
    loaded = load_image(tmp_path / "s")
    contents: list[str] = []
    real = pydicom.uid.generate_uid
    def recording(*args, **kwargs):
        if kwargs.get("entropy_srcs"):
            contents.append(kwargs["entropy_srcs"][0])
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom.uid, "generate_uid", recording)
    write_sr(_result(loaded), loaded.dicom, tmp_path / "x.sr.dcm")
    write_sr(dataclasses.replace(_result(loaded), model_sha256="ab" * 32), loaded.dicom, tmp_path / "y.sr.dcm")
    assert json.loads(contents[0])["model"] == ["dummy", "0"]
    assert json.loads(contents[-1])["model"] == ["dummy", "0", "ab" * 32]


def _bare(path: Path, implicit: bool) -> None:
    """Rewrite a Part 10 file as a bare dataset: no preamble, no "DICM", no File Meta Information."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(path)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("implicit", [True, False])
def test_bare_datasets_without_the_part10_preamble_are_read(tmp_path, implicit):
    """Archives that keep objects as received (Conquest's .v2 files) hold datasets without the Part 10 header."""
    from spinelabel.io.dicom_files import is_dicom_file

    _series(tmp_path / "part10")
    reference = load_image(tmp_path / "part10")
    files = _series(tmp_path / "bare")
    for f in files:
        _bare(f, implicit)
    assert not any(f.read_bytes()[128:132] == b"DICM" for f in files) and all(is_dicom_file(f) for f in files)
    (tmp_path / "bare" / "notes.txt").write_text("not DICOM, skipped")
    (tmp_path / "bare" / "junk.bin").write_bytes(b"\x08\x00" + bytes(200))  # starts like one, names no SOP class
    loaded = load_image(tmp_path / "bare")
    assert np.array_equal(loaded.volume.data, reference.volume.data)
    assert np.allclose(loaded.volume.affine, reference.volume.affine) and len(loaded.dicom.files) == SHAPE[2]
    sr, gsps = _write(tmp_path / "bare", tmp_path / "out")  # the writers read the bare sources again
    assert pydicom.dcmread(sr).ContentSequence and pydicom.dcmread(gsps).GraphicAnnotationSequence
    _bare(gsps, implicit)  # and spine labels kept the same way are imported
    imported = import_dicom_annotations([tmp_path / "bare", gsps], own_outputs=True)
    (ann,) = imported.annotations
    assert set(ann.points) == set(LEVELS)
    for level, ijk in LEVELS.items():
        assert np.allclose(ann.points[level], loaded.volume.voxel_to_world(np.array(ijk)), atol=0.05)


def test_a_text_file_is_not_taken_for_a_bare_dataset(tmp_path):
    from pydicom.errors import InvalidDicomError

    from spinelabel.io.dicom_files import is_dicom_file, read_dicom

    text = tmp_path / "readme.txt"
    text.write_text("hello, this is not DICOM at all")
    assert not is_dicom_file(text)
    with pytest.raises(InvalidDicomError):
        read_dicom(text)


def test_a_series_uid_pasted_with_spaces_is_found(tmp_path):
    files = _series(tmp_path / "s")
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    loaded = load_image(tmp_path / "s", series_uid=f" {uid}\n")
    assert loaded.dicom.series_instance_uid == uid
