"""Every SR and GSPS we write passes dciodvfy (dicom3tools), an independent validator, without errors.

The warnings that remain are listed in docs/viewers.md; the tests pin them, so
a new warning is noticed. Skipped (with the reason) where dicom3tools is not
installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from spinelabel.geometry import Volume
from spinelabel.io import LoadedImage, load_image
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.io.dicom_label_write import write_gsps, write_sr
from spinelabel.results import LabelResult, Vertebra
from spinelabel.testing.dciodvfy import dciodvfy_executable, validate
from spinelabel.warning_codes import LabelWarning

pytestmark = pytest.mark.skipif(
    dciodvfy_executable() is None, reason="dciodvfy not installed (apt-get install dicom3tools; .ci/run installs it)"
)

SHAPE = (64, 72, 9)  # columns, rows, slices
#: Our local code scheme for the confidence (PS3.16 8.2: local designators begin with "99"), unknown to dciodvfy.
LOCAL_SCHEME_WARNING = "Unrecognized defined term <99SPINELABEL> for value 1 of attribute <Coding Scheme Designator>"
#: What dciodvfy says about the synthetic source images' patient and study, copied into our objects.
SOURCE_WARNINGS = {
    "Missing attribute or value that would be needed to build DICOMDIR - Study ID",
    "Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <ANON> - Retired Person Name form",
}
LUMBAR = {"T12": (30.0, 5.0, 4.0), "L1": (20.3, 10.7, 1.2), "L2": (25.0, 30.2, 3.9), "L5": (30.9, 50.1, 6.4),
          "S1": (0.2, 71.0, 8.0), "L6": (12.0, 60.0, 2.0)}  # fmt: skip
CERVICAL = {"C1": (10.0, 3.0, 4.0), "C2": (12.0, 15.0, 4.4), "C7": (30.0, 60.0, 5.1), "T1": (31.0, 70.0, 5.0)}


def _affine(oblique: bool) -> np.ndarray:
    axes = np.stack([[0.0, 0.8, 0.0], [0.0, 0.0, -0.9], [-3.5, 0.0, 0.0]], axis=1)
    if oblique:
        a = np.radians(12.0)
        axes = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]) @ axes
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = [12.0, -30.5, 40.25]
    return affine


def _volume(oblique: bool = False, scale: float = 1.0) -> Volume:
    return Volume((np.random.default_rng(0).random(SHAPE) * scale).astype(np.float32), _affine(oblique))


def _result(loaded: LoadedImage, levels: dict[str, tuple[float, float, float]], region: str) -> LabelResult:
    confidences = np.linspace(0.2, 0.99, len(levels))  # flagged and confident labels
    vertebrae = [Vertebra(label, loaded.volume.voxel_to_world(np.array(ijk)), np.array(ijk, float), float(c))
                 for (label, ijk), c in zip(levels.items(), confidences)]  # fmt: skip
    return LabelResult(region, "dummy", "0", vertebrae)


def _write_both(loaded: LoadedImage, result: LabelResult, folder: Path) -> tuple[Path, Path]:
    sr, gsps = folder / "labels.sr.dcm", folder / "labels.gsps.dcm"
    write_sr(result, loaded.dicom, sr)
    write_gsps(result, loaded.dicom, gsps)
    return sr, gsps


def _check(sr: Path, gsps: Path, source_warnings: set[str]) -> None:
    sr_report, gsps_report = validate(sr), validate(gsps)
    assert sr_report.iod == "Comprehensive3DSR"
    assert gsps_report.iod == "GrayscaleSoftcopyPresentationState"
    assert sr_report.errors == () and gsps_report.errors == ()
    assert set(sr_report.warnings) <= source_warnings | {LOCAL_SCHEME_WARNING}
    assert set(gsps_report.warnings) <= source_warnings


@pytest.mark.parametrize(("oblique", "levels", "region"), [
    (False, LUMBAR, "lumbar"), (True, LUMBAR, "lumbar"), (False, CERVICAL, "cervical"), (True, CERVICAL, "whole"),
])  # fmt: skip
def test_sr_and_gsps_of_a_classic_series_have_no_errors(tmp_path, oblique, levels, region):
    write_dicom_series(_volume(oblique), tmp_path / "series", patient_id="P1", series_number=7)
    loaded = load_image(tmp_path / "series")
    _check(*_write_both(loaded, _result(loaded, levels, region), tmp_path), SOURCE_WARNINGS)


def test_only_the_local_code_scheme_warning_is_ours(tmp_path):
    """With a source that names its patient and study, the one warning left is our local code scheme."""
    write_dicom_series(_volume(scale=1000.0), tmp_path / "series", patient_id="P1", patient_name="Doe^Jane")
    loaded = load_image(tmp_path / "series")
    sr, gsps = _write_both(loaded, _result(loaded, LUMBAR, "lumbar"), tmp_path)
    for path in (sr, gsps):  # the source images lack a Study ID, which PACS need for a DICOMDIR
        ds = pydicom.dcmread(path)
        ds.StudyID = "1"
        ds.save_as(path)
    assert validate(sr).warnings == (LOCAL_SCHEME_WARNING,) * (len(LUMBAR) + 1)  # each confidence, and the scheme
    assert validate(gsps).warnings == ()
    warned = replace(_result(loaded, LUMBAR, "lumbar"), warnings=[
        LabelWarning("no-anchor", "no anchor vertebra (S1) labeled"), LabelWarning("low-confidence", "L1 (0.40)")])
    sr, gsps = _write_both(loaded, warned, tmp_path / "warned")
    for path in (sr, gsps):
        ds = pydicom.dcmread(path)
        ds.StudyID = "1"
        ds.save_as(path)
    report = validate(sr)  # the warnings' TEXT items: one more local-scheme warning each, no error
    assert report.errors == () and report.warnings == (LOCAL_SCHEME_WARNING,) * (len(LUMBAR) + 1 + 2)
    report = validate(gsps)  # the warning lines on every image, in display units
    assert report.errors == () and report.warnings == ()
    assert "WARNINGS" in [layer.GraphicLayer for layer in pydicom.dcmread(gsps).GraphicLayerSequence]


def test_enhanced_multiframe_source_has_no_errors(tmp_path, write_enhanced_mr):
    write_enhanced_mr(_volume(oblique=True), tmp_path / "mf" / "enhanced.dcm", tmp_path / "classic", patient_id="P5")
    loaded = load_image(tmp_path / "mf")
    undated = {f"Missing attribute or value that would be needed to build DICOMDIR - Study {what}" for what in ("Date", "Time")}
    _check(*_write_both(loaded, _result(loaded, LUMBAR, "lumbar"), tmp_path), SOURCE_WARNINGS | undated)


def test_validator_reports_errors_it_finds(tmp_path):
    """The check can fail: a GSPS without its content label is an error for dciodvfy."""
    import pydicom

    write_dicom_series(_volume(), tmp_path / "series")
    loaded = load_image(tmp_path / "series")
    _, gsps = _write_both(loaded, _result(loaded, LUMBAR, "lumbar"), tmp_path)
    ds = pydicom.dcmread(gsps)
    del ds.ContentLabel
    ds.save_as(gsps)
    assert any("Content Label" in e or "ContentLabel" in e for e in validate(gsps).errors)


def test_unreadable_file_is_refused(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not DICOM")
    with pytest.raises(RuntimeError, match="could not check"):
        validate(junk)
