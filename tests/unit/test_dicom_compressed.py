"""Compressed DICOM, as archives store it: read to the same image and geometry as the uncompressed series.

Hospitals' archives and CD exports often hold JPEG Lossless (Process 14 SV1),
JPEG-LS, JPEG 2000 or RLE pixel data. The series here are compressed with
pydicom's own encoders (RLE, JPEG-LS via pyjpegls, JPEG 2000 via
pylibjpeg-openjpeg) and, for JPEG Lossless SV1 and JPEG baseline, for which
pydicom has no encoder, with DCMTK's ``dcmcjpeg`` (Debian ``dcmtk``, which the
Orthanc package installs; skipped without it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from spinelabel.geometry import Volume
from spinelabel.io import load_image
from spinelabel.io.dicom_write import write_dicom_series

#: A sagittal grid as scanners store it (axes P, I, R): 0.7 x 0.8 mm pixels, 3.5 mm slices.
AFFINE = np.array([[0, 0, -3.5, 20.0], [-0.7, 0, 0, 35.5], [0, -0.8, 0, 12.25], [0, 0, 0, 1]], float)
#: JPEG 2000 at 10:1, a common lossy archive setting; the read image must stay within this share of its range.
LOSSY_RATIO = 10
LOSSY_MEAN_ERROR_FRACTION = 0.02
#: Two JPEG decoders (libjpeg here, DCMTK's IJG) may round the inverse DCT differently by a grey level.
IDCT_ROUNDING = 1.0


def _smooth_volume(shape=(40, 48, 6), seed: int = 0) -> Volume:
    """Stored integers 0..4000 that vary smoothly (compressible, like anatomy), with noise; uint16."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    plane = 2000 + 1500 * np.sin(i / 6.0) * np.cos(j / 9.0)
    data = plane[..., None] + 50 * np.arange(shape[2]) + rng.integers(0, 40, shape)
    return Volume(np.clip(data, 0, 4000).astype(np.uint16), AFFINE)


def _compress_with_pydicom(files: list[Path], folder: Path, syntax: str, **kwargs) -> list[Path]:
    folder.mkdir()
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.compress(syntax, **kwargs)
        ds.save_as(folder / f.name, enforce_file_format=True)
        out.append(folder / f.name)
    return out


def _compress_with_dcmtk(files: list[Path], folder: Path, *options: str) -> list[Path]:
    folder.mkdir()
    for f in files:
        subprocess.run(["dcmcjpeg", *options, str(f), str(folder / f.name)], check=True, capture_output=True)
    return [folder / f.name for f in files]


def _as_8_bit(files: list[Path], folder: Path) -> list[Path]:
    """The series with its stored values divided by 16 and stored as 8-bit samples."""
    folder.mkdir()
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PixelData = (ds.pixel_array // 16).astype(np.uint8).tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.save_as(folder / f.name, enforce_file_format=True)
    return [folder / f.name for f in files]


def _written(tmp_path: Path, volume: Volume | None = None) -> tuple[Volume, list[Path]]:
    volume = _smooth_volume() if volume is None else volume
    return volume, write_dicom_series(volume, tmp_path / "plain")


def _syntaxes(files: list[Path]) -> set[str]:
    """The transfer syntaxes the files are stored in (the codec really ran)."""
    return {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files}


def _assert_same_image(files: list[Path], plain: list[Path], syntax: str) -> None:
    assert _syntaxes(files) == {syntax}
    got, want = load_image(files), load_image(plain)
    np.testing.assert_array_equal(got.volume.affine, want.volume.affine)
    np.testing.assert_array_equal(got.volume.real_data(), want.volume.real_data())


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_a_losslessly_compressed_series_reads_as_the_uncompressed_one(tmp_path: Path, syntax: str):
    _, plain = _written(tmp_path)
    _assert_same_image(_compress_with_pydicom(plain, tmp_path / "compressed", syntax), plain, syntax)


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK's dcmcjpeg not installed (Debian dcmtk)")
def test_a_jpeg_lossless_sv1_series_reads_as_the_uncompressed_one(tmp_path: Path):
    _, plain = _written(tmp_path)
    _assert_same_image(_compress_with_dcmtk(plain, tmp_path / "sv1", "--encode-lossless-sv1"), plain, JPEGLosslessSV1)


def _assert_close_image(files: list[Path], plain: list[Path], syntax: str) -> None:
    assert _syntaxes(files) == {syntax}
    got, want = load_image(files), load_image(plain)
    np.testing.assert_array_equal(got.volume.affine, want.volume.affine)
    a, b = got.volume.real_data(), want.volume.real_data()
    assert not np.array_equal(a, b)  # really lossy: the test reads what the codec made
    assert np.mean(np.abs(a - b)) <= LOSSY_MEAN_ERROR_FRACTION * np.ptp(b)


def test_a_lossy_jpeg_2000_series_reads_close_to_the_uncompressed_one(tmp_path: Path):
    _, plain = _written(tmp_path)
    lossy = _compress_with_pydicom(plain, tmp_path / "j2k", JPEG2000, j2k_cr=[LOSSY_RATIO])
    _assert_close_image(lossy, plain, JPEG2000)


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK's dcmcjpeg not installed (Debian dcmtk)")
def test_a_lossy_jpeg_series_reads_as_dcmtk_decodes_it(tmp_path: Path):
    """Lossy 8-bit baseline JPEG: the values DCMTK's own decoder gives.

    DCMTK re-scales the pixel range when it encodes lossy JPEG, so its
    decoder, not the uncompressed series, is the reference.
    """
    _, wide = _written(tmp_path)
    plain = _as_8_bit(wide, tmp_path / "8bit")  # baseline JPEG holds 8-bit samples only
    lossy = _compress_with_dcmtk(plain, tmp_path / "jpeg", "--encode-baseline")
    assert _syntaxes(lossy) == {JPEGBaseline8Bit}
    (tmp_path / "decoded").mkdir()
    for f in lossy:
        subprocess.run(["dcmdjpeg", str(f), str(tmp_path / "decoded" / f.name)], check=True, capture_output=True)
    got, want = load_image(lossy), load_image([tmp_path / "decoded"])
    np.testing.assert_array_equal(got.volume.affine, load_image(plain).volume.affine)
    np.testing.assert_array_equal(got.volume.affine, want.volume.affine)
    np.testing.assert_allclose(got.volume.real_data(), want.volume.real_data(), atol=IDCT_ROUNDING)


def test_a_compressed_series_is_labeled_as_the_uncompressed_one(tmp_path: Path):
    """The whole inference path on a JPEG 2000 series: the same names at the same places (stand-in network)."""
    from spinelabel.geometry import reorient
    from spinelabel.testing.dummy import blob_labeler, blob_spine

    plain = write_dicom_series(reorient(blob_spine()[0], "PIL"), tmp_path / "plain")
    compressed = _compress_with_pydicom(plain, tmp_path / "j2k", JPEG2000Lossless)
    labeler = blob_labeler()
    a, b = (labeler.label(load_image(files).volume) for files in (plain, compressed))
    assert len(a.vertebrae) == 5
    assert [v.label for v in b.vertebrae] == [v.label for v in a.vertebrae]
    np.testing.assert_allclose([v.position_mm for v in b.vertebrae], [v.position_mm for v in a.vertebrae], atol=1e-6)


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK's dcmcjpeg not installed (Debian dcmtk)")
def test_a_syntax_without_a_decoder_is_refused_in_one_line_that_says_what_to_do(tmp_path: Path, capsys):
    """12-bit lossy JPEG (Extended): no BSD/MIT decoder reads it; one line naming it and the way out, no outputs."""
    from spinelabel.cli import main

    _, plain = _written(tmp_path)
    files = _compress_with_dcmtk(plain, tmp_path / "jpeg12", "--encode-extended")
    assert _syntaxes(files) == {JPEGExtended12Bit}
    out = tmp_path / "out.json"
    assert main(["label", str(tmp_path / "jpeg12"), "-o", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spinelabel: error: cannot decode the compressed pixel data"), lines
    assert "JPEG Extended" in lines[0] and "dcmdjpeg" in lines[0]
    assert not out.exists()
