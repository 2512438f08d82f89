"""Hostile inputs (issue 14), one class at a time: each case gives one line, an exit status, and a known disk.

Classes: (1) usage errors, (2) failed writes, (3) bad inputs, (4) warnings
that must reach the user, (5) odd DICOMweb servers, (6) CSV output. Every
command runs through ``spinelabel.cli.main(argv)``; a labeler that needs no
trained model (``testing.dummy``) stands in for the CNN where a case needs
labels.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from spinelabel import pipeline
from spinelabel.annotations import ScanAnnotation, drop_implausible, load_annotations
from spinelabel.cli import main
from spinelabel.errors import InputError
from spinelabel.geometry import Volume, reorient
from spinelabel.io.dicom import load_dicom
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.io.nifti import save_nifti
from spinelabel.limits import MAX_FIELD_OF_VIEW_MM, MAX_VOXELS
from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config

PASSWORD = "s3cret-Pw"


# ----------------------------------------------------------------- helpers


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _one_error(err: str, fragment: str) -> str:
    """The single stderr line: ``spinelabel: error: ...`` containing ``fragment``, no traceback."""
    lines = _lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("spinelabel: error: ") and fragment in lines[0], lines[0]
    return lines[0]


def _one_usage_error(err: str, fragment: str) -> None:
    """A usage error: click's usage block with exactly one ``Error:`` line, no traceback."""
    errors = [ln for ln in _lines(err) if ln.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in err, err


def _tree(root: Path) -> set[str]:
    """Every file below ``root``, relative, as posix strings."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def blob_labeler(monkeypatch):
    """``make_labeler`` answers a BlobNet labeler: labels blob spines, no trained model needed."""
    labeler = pipeline.Labeler(dummy_config(), BlobNet())
    monkeypatch.setattr(pipeline, "make_labeler", lambda *args, **kwargs: labeler)
    return labeler


def _blob_dicom(folder: Path) -> list[Path]:
    """A 5-vertebra blob spine as a sagittal DICOM series (slices across the body)."""
    vol, _ = blob_spine()
    return write_dicom_series(reorient(vol, "PIL"), folder)


def _small_dicom(folder: Path, n_slices: int = 5) -> list[Path]:
    vol = Volume(np.random.default_rng(0).random((20, 20, n_slices)).astype(np.float32) * 100, np.diag([1.0, 1.0, 3.0, 1.0]))
    return write_dicom_series(vol, folder)


def _rewrite(path: Path, edit) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


def _replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Put a value pydicom would refuse to write (``len(new) == len(old)``) into a file."""
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


# ----------------------------------------------------------------- 1. usage errors


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["label"], "Missing argument"),
        (["label", "x.nii.gz", "--bogus"], "No such option"),
        (["nonsense"], "No such command"),
        (["train", "x.csv", "--out", "m", "--steps", "abc"], "'--steps'"),
        (["evaluate", "a", "b", "--radius", "-5"], "'--radius'"),
        (["label", "x.nii.gz", "--jobs", "0"], "'--jobs'"),
        (["label", "x.nii.gz", "--output-dir", "out", "--overlay", "x.png"], "--overlay applies to a single image"),
        (["label", "x.nii.gz", "--output-dir", "out", "--label-map", "x.nii"], "--label-map applies to a single"),
        (["label", "x.nii.gz", "-o", "x.json", "--label-maps"], "--label-maps is an option of batch mode"),
        (["label", "x.nii.gz", "--overlays"], "--overlays is an option of batch mode"),
        (["label", "x.nii.gz", "--jobs", "2"], "--jobs is an option of batch mode"),
        (["batch"], "Missing option"),  # no manifest is allowed (a DICOMweb batch), no --output-dir is not
        (["annotations", "import", "x", "-o", "labels.json"], "must end in .csv"),
        (["label", "x.nii.gz", "--region", "elbow"], "unknown region"),
        (["annotations", "check", "x.csv", "-o", "labels.json"], "must end in .csv"),
    ],
)
def test_usage_errors_exit_2_with_one_error_line_and_write_nothing(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, *argv)
    assert code == 2
    _one_usage_error(err, fragment)
    assert _tree(tmp_path) == set()


# ----------------------------------------------------------------- 2. failed writes


def test_an_output_name_used_twice_writes_nothing(capsys, tmp_path, blob_labeler):
    _blob_dicom(tmp_path / "series")
    out = tmp_path / "out" / "x"
    code, _, err = _run(capsys, "label", tmp_path / "series", "-o", out, "--overlay", out)
    assert code == 1
    _one_error(err, "x")
    assert not (tmp_path / "out").exists() or _tree(tmp_path / "out") == set()


@pytest.mark.parametrize("option", ["--dicom-sr", "--gsps", "-o"])
def test_an_output_named_as_an_input_file_is_refused_and_the_input_kept(capsys, tmp_path, blob_labeler, option):
    """``--dicom-sr series/IM00003.dcm`` would replace an image of the series with the SR: one line, nothing written."""
    files = _blob_dicom(tmp_path / "series")
    before = files[3].read_bytes()
    result = tmp_path / "labels.json"
    args = ["-o", files[3]] if option == "-o" else ["-o", result, option, files[3]]
    code, _, err = _run(capsys, "label", tmp_path / "series", *args)
    assert code == 1
    _one_error(err, f"{files[3]} is an input of this run (a file it reads)")
    assert files[3].read_bytes() == before and not result.exists()


def test_a_batch_output_never_overwrites_another_input_of_the_batch(capsys, tmp_path, blob_labeler):
    """``x.nii.gz`` and ``x.labels.nii.gz`` labeled into their folder: x's label map would replace the second input."""
    vol, _ = blob_spine()
    first, second = tmp_path / "x.nii.gz", tmp_path / "x.labels.nii.gz"
    save_nifti(vol, first)
    save_nifti(vol, second)
    before = second.read_bytes()
    code, _, err = _run(capsys, "label", first, second, "--output-dir", tmp_path, "--label-maps")
    assert code == 0, err
    assert second.read_bytes() == before
    assert {"x_.json", "x_.labels.nii.gz", "x.labels.json", "x.labels.labels.nii.gz"} <= _tree(tmp_path)


def test_a_nifti_input_is_not_overwritten_by_its_label_map(capsys, tmp_path, blob_labeler):
    vol, _ = blob_spine()
    scan = tmp_path / "scan.nii.gz"
    save_nifti(vol, scan)
    before = scan.read_bytes()
    code, _, err = _run(capsys, "label", scan, "-o", tmp_path / "a.json", "--label-map", scan)
    assert code == 1
    _one_error(err, "is an input of this run (a file it reads)")
    assert scan.read_bytes() == before and not (tmp_path / "a.json").exists()


def test_a_file_where_a_folder_is_expected_writes_nothing(capsys, tmp_path, blob_labeler):
    _blob_dicom(tmp_path / "series")
    (tmp_path / "blocker").write_text("a file, not a folder")
    code, _, err = _run(
        capsys, "label", tmp_path / "series", "-o", tmp_path / "labels.json", "--overlay", tmp_path / "blocker" / "o.png"
    )
    assert code == 1
    _one_error(err, f"{tmp_path / 'blocker'} is a file, not a folder")
    assert not (tmp_path / "labels.json").exists() and (tmp_path / "blocker").read_text() == "a file, not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(capsys, tmp_path, blob_labeler):
    _blob_dicom(tmp_path / "series")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = _run(capsys, "label", tmp_path / "series", "-o", locked / "labels.json")
    finally:
        locked.chmod(0o755)
    assert code == 1
    _one_error(err, "locked")
    assert _tree(locked) == set()


def test_an_empty_output_name_is_one_line(capsys, tmp_path, blob_labeler, monkeypatch):
    _blob_dicom(tmp_path / "series")
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "label", tmp_path / "series", "-o", "")
    assert code == 1
    _one_error(err, "not a file name")
    assert _tree(tmp_path) == {f"series/{n}" for n in _tree(tmp_path / "series")}


@pytest.mark.parametrize("option", ["-o", "--overlay"])
def test_a_name_too_long_for_the_file_system_is_one_line(capsys, tmp_path, blob_labeler, option):
    _blob_dicom(tmp_path / "series")
    before = _tree(tmp_path)
    long_name = tmp_path / ("a" * 300 + ".json")  # beyond NAME_MAX (255 on Linux and macOS)
    argv = ["-o", long_name] if option == "-o" else ["-o", tmp_path / "x.json", "--overlay", long_name]
    code, _, err = _run(capsys, "label", tmp_path / "series", *argv)
    assert code == 1
    _one_error(err, "name too long")
    assert _tree(tmp_path) == before


def _blocked_folder(tmp_path: Path) -> Path:
    """A file standing where an output folder should be."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_label_output_dir_that_is_a_file_is_one_line_before_labeling(capsys, tmp_path, jobs, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("no model is loaded for a batch that cannot be written")

    monkeypatch.setattr(pipeline, "make_labeler", never)
    blocker = _blocked_folder(tmp_path)
    code, _, err = _run(capsys, "label", tmp_path / "a.nii.gz", tmp_path / "b", "--output-dir", blocker / "out", "--jobs", jobs)
    assert code == 1
    _one_error(err, f"cannot write into {blocker / 'out'}: {blocker} is a file, not a folder")
    assert _tree(tmp_path) == {"blocker"} and blocker.read_text() == "a file, not a folder"


def _manifest(tmp_path: Path) -> Path:
    _blob_dicom(tmp_path / "series")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"input,id\n{tmp_path / 'series'},a\n{tmp_path / 'missing'},b\n")
    return manifest


@pytest.mark.parametrize("blocked", ["run", "run/labels"])
def test_batch_output_dir_that_cannot_be_written_is_one_line(capsys, tmp_path, blob_labeler, blocked):
    manifest = _manifest(tmp_path)
    before = _tree(tmp_path)
    (tmp_path / blocked).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / blocked).write_text("a file")
    code, out, err = _run(capsys, "batch", manifest, "--output-dir", tmp_path / "run" / "out" if blocked == "run" else tmp_path / "run")
    assert code == 1 and out == ""
    _one_error(err, f"{tmp_path / blocked} is a file, not a folder")
    assert _tree(tmp_path) == before | {blocked}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_batch_into_a_read_only_folder_is_one_line(capsys, tmp_path, blob_labeler):
    manifest = _manifest(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = _run(capsys, "batch", manifest, "--output-dir", locked / "run")
    finally:
        locked.chmod(0o755)
    assert code == 1
    _one_error(err, "is not writable")
    assert _tree(locked) == set()


def test_batch_item_that_cannot_be_written_is_one_failed_line_and_the_rest_goes_on(capsys, tmp_path, blob_labeler):
    manifest = _manifest(tmp_path)
    manifest.write_text(manifest.read_text().replace("missing,b", "series,b"))
    (tmp_path / "run" / "labels" / "a.json").mkdir(parents=True)  # a folder where item a's result goes
    code, _, err = _run(capsys, "batch", manifest, "--output-dir", tmp_path / "run", "--quiet")
    assert code == 1
    assert _lines(err) == [f"failed: a: {tmp_path / 'series'}: cannot write {tmp_path / 'run' / 'labels' / 'a.json'}: it is a folder"]
    assert _tree(tmp_path / "run") == {".spinelabel-batch.lock", "done.txt", "failed.csv", "labels/b.json", "worklist.csv"}
    assert [line.split("\t")[0] for line in (tmp_path / "run" / "done.txt").read_text().splitlines()] == ["b"]
    assert (tmp_path / "run" / "worklist.csv").read_text().splitlines()[1].startswith("b,")  # only what was done
    assert all(p.stat().st_mode & 0o644 == 0o644 for p in (tmp_path / "run").rglob("*") if p.is_file())


def test_train_into_a_file_is_one_line_before_training(capsys, tmp_path):
    blocker = _blocked_folder(tmp_path)
    code, _, err = _run(capsys, "train", tmp_path / "labels.csv", "--out", blocker / "model", "--steps", "1")
    assert code == 1
    _one_error(err, f"{blocker} is a file, not a folder")
    assert _tree(tmp_path) == {"blocker"}


@pytest.mark.parametrize(
    ("device", "fragment"),
    [("gpu0", "--device gpu0: not a PyTorch device"), ("cuda:7", "--device cuda:7: PyTorch sees")],
)
def test_train_on_a_device_that_is_not_here_is_one_line_before_training(capsys, tmp_path, device, fragment):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    code, _, err = _run(capsys, "train", tmp_path / "labels.csv", "--out", tmp_path / "model", "--device", device)
    assert code == 1
    _one_error(err, fragment)
    assert _tree(tmp_path) == set()  # refused before the labels are read or anything is written


def test_save_model_that_cannot_be_written_is_an_output_error(tmp_path, model_dir):
    import torch

    from spinelabel.errors import OutputError
    from spinelabel.models import load_model, save_model

    config, net = load_model(model_dir)
    before = (model_dir / "weights.pt").read_bytes()
    with pytest.raises(OutputError, match="cannot write the model to .*blocker"):
        save_model(_blocked_folder(tmp_path) / "model", config, net)
    with torch.no_grad():
        net.head.bias.fill_(-9.0)
    save_model(model_dir, config, net)  # an overwrite replaces both files, no temporary left
    assert {p.name for p in model_dir.iterdir()} == {"config.json", "weights.pt"}
    assert (model_dir / "weights.pt").read_bytes() != before
    load_model(model_dir)  # the checksum in the new config matches the new weights


@pytest.mark.parametrize("report", ["cleaned.csv", "report_folder.csv"])
def test_annotations_check_writes_the_labels_and_the_report_or_neither(capsys, tmp_path, report):
    csv_path = _annotation_csv(tmp_path / "labels.csv", "")
    (tmp_path / "report_folder.csv").mkdir()
    before = _tree(tmp_path)
    code, _, err = _run(
        capsys, "annotations", "check", csv_path, "-o", tmp_path / "cleaned.csv", "--report", tmp_path / report, "--no-images"
    )
    assert code == 1
    _one_error(err, "given for two outputs" if report == "cleaned.csv" else "it is a folder")
    assert _tree(tmp_path) == before


def test_synth_into_a_file_is_one_line(capsys, tmp_path):
    blocker = _blocked_folder(tmp_path)
    code, _, err = _run(capsys, "synth", blocker / "phantoms", "--n", "1", "--quiet")
    assert code == 1
    _one_error(err, f"{blocker} is a file, not a folder")
    assert _tree(tmp_path) == {"blocker"}


def test_review_labels_folder_that_is_a_file_is_one_line(capsys, tmp_path):
    blocker = _blocked_folder(tmp_path)
    code, _, err = _run(capsys, "review", tmp_path / "scan.nii.gz", "--labels", blocker, "--port", "0")
    assert code == 1
    _one_error(err, f"cannot write into {blocker}: {blocker} is a file, not a folder")
    assert _tree(tmp_path) == {"blocker"}


# ----------------------------------------------------------------- 3. bad inputs


def test_non_numeric_rescale_slope(capsys, tmp_path):
    files = _small_dicom(tmp_path / "series")
    _rewrite(files[2], lambda ds: setattr(ds, "RescaleSlope", "9.99"))
    _replace_bytes(files[2], b"9.99", b"abcd")
    code, _, err = _run(capsys, "label", tmp_path / "series", "-o", tmp_path / "out.json")
    assert code == 1
    _one_error(err, "malformed DICOM tag RescaleSlope")  # pydicom's own warning about the value is not shown
    assert not (tmp_path / "out.json").exists()


def test_non_numeric_rescale_intercept_is_refused_by_the_reader(tmp_path):
    files = _small_dicom(tmp_path / "series")
    _rewrite(files[0], lambda ds: setattr(ds, "RescaleIntercept", "1.25"))
    _replace_bytes(files[0], b"1.25", b"n/a ")
    with pytest.raises(InputError, match="malformed DICOM tag RescaleIntercept"):
        load_dicom(tmp_path / "series")


@pytest.mark.parametrize("syntax", [b"1.2.3.4\x00", b"\xff\xfe\x01zz\x00\x00\x00"])
def test_corrupt_transfer_syntax(capsys, tmp_path, syntax):
    files = _small_dicom(tmp_path / "series")
    for f in files:
        _rewrite(f, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4"))
        _replace_bytes(f, b"1.2.3.4\x00", syntax)
    code, _, err = _run(capsys, "label", tmp_path / "series", "-o", tmp_path / "out.json")
    assert code == 1
    assert _one_error(err, "transfer syntax").isprintable()  # the corrupt bytes are escaped, not echoed raw
    assert not (tmp_path / "out.json").exists()


def test_rows_and_columns_far_beyond_the_pixel_data(capsys, tmp_path):
    files = _small_dicom(tmp_path / "series")
    for f in files:  # 4000 x 4000 pixels of 0.1 mm: within the limits, but 20 x 20 pixels stored
        _rewrite(f, lambda ds: (setattr(ds, "Rows", 4000), setattr(ds, "Columns", 4000), setattr(ds, "PixelSpacing", [0.1, 0.1])))
    code, _, err = _run(capsys, "label", tmp_path / "series")
    assert code == 1
    _one_error(err, "bytes of pixel data, but Rows x Columns (4000 x 4000) need")


def test_a_header_beyond_the_voxel_limit_is_refused_before_allocating(capsys, tmp_path):
    files = _small_dicom(tmp_path / "series")
    for f in files:  # 60000 x 60000 x 5 = 1.8e10 voxels (67 GiB as float32)
        _rewrite(f, lambda ds: (setattr(ds, "Rows", 60000), setattr(ds, "Columns", 60000), setattr(ds, "PixelSpacing", [0.01, 0.01])))
    code, _, err = _run(capsys, "label", tmp_path / "series")
    assert code == 1
    _one_error(err, f"the limit is {MAX_VOXELS:.3g}")


@pytest.mark.parametrize("order", ["LPS", "RPI", "RAS"])
def test_a_nifti_without_orientation_is_refused_not_guessed(capsys, tmp_path, blob_labeler, order):
    """sform and qform codes 0: nibabel would assume RAS voxel axes and the names come out shifted or mirrored."""
    vol, _ = blob_spine()
    img = nib.Nifti1Image(np.asarray(reorient(vol, order).data, np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "scan.nii.gz")
    code, _, err = _run(capsys, "label", tmp_path / "scan.nii.gz", "-o", tmp_path / "out.json")
    assert code == 1
    _one_error(err, "the NIfTI header gives no orientation (sform_code and qform_code are 0)")
    assert _tree(tmp_path) == {"scan.nii.gz"}


def test_an_input_the_user_may_not_read_fails_alone_in_a_batch(capsys, tmp_path, blob_labeler, monkeypatch):
    """The command line does not refuse the whole batch for one unreadable input: that item fails, the rest is labeled.

    (Tests run as root, for whom file modes do not apply, so ``os.access`` is
    what says "not readable" here, as it does for click's own check.)
    """
    vol, _ = blob_spine()
    good, locked = tmp_path / "good.nii.gz", tmp_path / "locked.nii.gz"
    save_nifti(vol, good)
    save_nifti(vol, locked)
    real_access, real_load = os.access, nib.load

    def load(path, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    monkeypatch.setattr(nib, "load", load)  # and reading it fails, as it would for a user without the right
    code, _, err = _run(capsys, "label", locked, good, "--output-dir", tmp_path / "out")
    assert "Usage:" not in err and "Traceback" not in err, err
    failed = [ln for ln in _lines(err) if "locked.nii.gz" in ln]
    assert len(failed) == 1 and "Permission denied" in failed[0], err
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json"]


def test_nibabel_header_repairs_stay_off_stderr(tmp_path):
    """A header nibabel repairs while reading (pixdim 0, set to 1): stderr holds our lines only.

    In a process of its own: nibabel's log handler keeps the stderr it found
    at import, which no capture of this test process sees.
    """
    import struct
    import subprocess
    import sys

    vol, _ = blob_spine()
    scan = tmp_path / "scan.nii"
    save_nifti(vol, scan)
    raw = bytearray(scan.read_bytes())
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1] = 0 (the sform still gives the geometry)
    scan.write_bytes(bytes(raw))
    run = subprocess.run([sys.executable, "-m", "spinelabel.cli", "label", str(scan), "-o", str(tmp_path / "out.json")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = _lines(run.stderr)
    assert lines and all(ln.startswith(("warning: ", "spinelabel: error: ")) for ln in lines), run.stderr
    assert "pixdim" not in run.stderr


@pytest.mark.parametrize("name", ["scan.mgz", "scan.img", "scan.nrrd"])
def test_a_file_of_another_format_is_named_as_such(capsys, tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00" * 600)
    code, _, err = _run(capsys, "label", tmp_path / name, "-o", tmp_path / "out.json")
    assert code == 1
    _one_error(err, "not a DICOM file; spinelabel reads DICOM and NIfTI .nii/.nii.gz: convert other formats to NIfTI")


def test_a_colour_nifti_is_one_line(capsys, tmp_path):
    rgb = np.zeros((10, 10, 10), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii.gz")
    code, _, err = _run(capsys, "label", tmp_path / "rgb.nii.gz", "-o", tmp_path / "o.json")
    assert code == 1
    _one_error(err, "colour (RGB) NIfTI images are not supported")


def _nifti_header_only(path: Path, shape: tuple[int, ...], zooms: tuple[float, ...]) -> Path:
    """A .nii file whose header announces ``shape`` but which holds (almost) no data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_zooms(zooms)
    header.set_sform(np.diag([*zooms, 1.0]), code=1)
    header.set_qform(np.diag([*zooms, 1.0]), code=1)
    path.write_bytes(header.binaryblock + b"\x00" * 4 + b"\x00" * 64)  # vox_offset 352: a few voxels only
    return path


def test_a_nifti_field_of_view_beyond_the_limit(capsys, tmp_path):
    path = _nifti_header_only(tmp_path / "huge_fov.nii", (200, 300, 300), (40.0, 40.0, 40.0))  # 12 m: pixdim in the wrong unit
    code, _, err = _run(capsys, "label", path, "-o", tmp_path / "out.json")
    assert code == 1
    _one_error(err, f"beyond the limit of {MAX_FIELD_OF_VIEW_MM:.0f} mm")
    assert _tree(tmp_path) == {"huge_fov.nii"}


def test_a_nifti_voxel_count_beyond_the_limit(capsys, tmp_path):
    path = _nifti_header_only(tmp_path / "huge.nii", (2000, 2000, 200), (0.1, 0.1, 0.5))  # 8e8 voxels in 200 x 200 x 100 mm
    code, _, err = _run(capsys, "label", path)
    assert code == 1
    _one_error(err, "image too large")


def test_a_thin_nifti_says_how_many_slices_it_has(capsys, tmp_path):
    nib.save(nib.Nifti1Image(np.ones((200, 200, 2), np.float32), np.eye(4)), tmp_path / "thin.nii.gz")
    code, _, err = _run(capsys, "label", tmp_path / "thin.nii.gz", "-o", tmp_path / "out.json")
    assert code == 1
    line = _one_error(err, "only 2 slices: need a 3D sagittal stack of at least 3 slices")
    assert "2D" not in line
    assert _tree(tmp_path) == {"thin.nii.gz"}


@pytest.fixture
def model_dir(tmp_path):
    """A real model directory (tiny U-Net, never fires), to be damaged by the tests."""
    import torch

    from spinelabel.models import DetectionSettings, ModelConfig, save_model
    from spinelabel.models.network import UNet2D

    net = UNet2D(channels=(4, 8))
    with torch.no_grad():
        net.head.bias.fill_(-10.0)
    config = ModelConfig(
        name="silent", version="0", region="lumbar", axcodes=("R", "I", "P"), inplane_spacing_mm=2.0,
        slice_step_mm=2.0, intensity_percentiles=(1.0, 99.5), channels=(4, 8), level_offset=22.0,
        level_sd=1.0, detection=DetectionSettings(), shape_model={},
    )
    return save_model(tmp_path / "model", config, net)


def _damage_weights(model: Path) -> None:
    (model / "weights.pt").write_bytes(b"PK\x03\x04 this is not a torch file" * 10)
    cfg = json.loads((model / "config.json").read_text())
    cfg["sha256"] = ""  # no checksum to catch it: torch.load itself must fail cleanly
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_config_json(model: Path) -> None:
    (model / "config.json").write_text('{"name": "silent", "version": ')


def _damage_config_shape(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg["channels"] = "abc"
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_labeling(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg["labeling"] = {"no_such_setting": 1}
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_anchor_levels(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg["labeling"] = {"anchor_levels": ["S2"]}
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_switch(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg["labeling"] = {"edge_slack": "no"}  # a string is truthy: it would have run with the slack on
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_caudal_turns(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg["detection"]["caudal_turns_deg"] = [float("nan")]  # json writes NaN, and reads it back
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_spacing_range(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg["labeling"] = {"spacing_range_mm": 0}  # log(0): every chain would cost -inf, silently
    (model / "config.json").write_text(json.dumps(cfg))


def _damage_config_field(model: Path) -> None:
    cfg = json.loads((model / "config.json").read_text())
    del cfg["axcodes"]
    (model / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_damage_config_field, "lacks the field 'axcodes'"),
        (_damage_weights, "cannot be loaded"),
        (_damage_caudal_turns, "is unreadable"),
        (_damage_config_json, "is unreadable"),
        (_damage_config_shape, "channels must be whole numbers"),
        (_damage_labeling, "unusable config"),
        (_damage_anchor_levels, "unusable config"),
        (_damage_switch, "unusable config"),
        (_damage_spacing_range, "unusable config"),
    ],
)
def test_garbage_model_is_one_line(capsys, tmp_path, model_dir, damage, fragment):
    damage(model_dir)
    code, _, err = _run(capsys, "label", tmp_path / "missing.nii.gz", "--model", model_dir, "-o", tmp_path / "o.json")
    assert code == 1
    _one_error(err, fragment)
    assert not (tmp_path / "o.json").exists()


# ----------------------------------------------------------------- 4. warnings that must reach the user


def _label_with_warning(capsys, tmp_path: Path, fragment: str, code: str) -> None:
    """Label ``tmp_path/series``: exit 0, the reader's warning once on stderr and in the JSON, with its code."""
    out = tmp_path / "labels.json"
    status, stdout, err = _run(capsys, "label", tmp_path / "series", "-o", out)
    assert status == 0, err
    assert "5 vertebrae" in stdout
    lines = _lines(err)
    assert all(ln.startswith("warning: ") for ln in lines), err  # no library noise
    assert sum(fragment in ln and ln.endswith(f" [{code}]") for ln in lines) == 1, err
    doc = json.loads(out.read_text())
    assert len(doc["warning_codes"]) == len(doc["warnings"])
    assert [c for w, c in zip(doc["warnings"], doc["warning_codes"]) if fragment in w] == [code]


def test_a_missing_slice_is_a_warning_on_stderr_and_in_the_json(capsys, tmp_path, blob_labeler):
    files = _blob_dicom(tmp_path / "series")
    files[len(files) // 2].unlink()
    _label_with_warning(capsys, tmp_path, "1 slice(s) missing", "missing-slices")


def test_gantry_tilt_is_a_warning_on_stderr_and_in_the_json(capsys, tmp_path, blob_labeler):
    files = _blob_dicom(tmp_path / "series")
    for k, f in enumerate(files):  # each slice 0.5 mm further along the column direction: a sheared grid

        def tilt(ds, k=k):
            ipp = [float(v) for v in ds.ImagePositionPatient]
            col = [float(v) for v in ds.ImageOrientationPatient[3:]]
            ds.ImagePositionPatient = [f"{p + 0.5 * k * c:.4f}" for p, c in zip(ipp, col)]

        _rewrite(f, tilt)
    _label_with_warning(capsys, tmp_path, "gantry tilt", "sheared-grid")


def _annotation_csv(path: Path, image: str, x: str = "1.0") -> Path:
    rows = ["scan,label,x,y,z,image"]
    for scan in ("a", "b"):
        rows += [f"{scan},{lv},{x},0,{z},{image}" for lv, z in (("L3", 0.0), ("L4", -36.0), ("L5", -72.0))]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_annotations_check_that_could_not_read_any_image_says_so(capsys, tmp_path):
    csv_path = _annotation_csv(tmp_path / "labels.csv", "missing.nii.gz")
    code, out, err = _run(capsys, "annotations", "check", csv_path, "-o", tmp_path / "cleaned.csv", "--model", "lumbar")
    assert code == 0
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith("warning: image checks skipped for 2 of 2 scans"), err
    assert "0 findings" in out and "image checks skipped for 2 scans" in out
    assert (tmp_path / "cleaned.csv").exists()


def test_labels_at_1e30_are_refused_with_the_row(capsys, tmp_path):
    csv_path = _annotation_csv(tmp_path / "labels.csv", "", x="1e30")
    code, _, err = _run(capsys, "annotations", "check", csv_path, "-o", tmp_path / "cleaned.csv", "--no-images")
    assert code == 1
    _one_error(err, "beyond +-10000 mm")
    assert not (tmp_path / "cleaned.csv").exists()


def test_imported_labels_at_1e30_are_skipped_with_a_warning():
    good = ScanAnnotation("s", None, {"L3": np.array([1.0, 2.0, 3.0]), "L4": np.array([1e30, 0.0, -1e30])})
    gone = ScanAnnotation("t", None, {"L1": np.array([0.0, -2e30, 0.0])})
    kept, problems = drop_implausible([good, gone])
    assert [a.scan_id for a in kept] == ["s"] and list(kept[0].points) == ["L3"]
    assert len(problems) == 2 and "s L4" in problems[0] and "label skipped" in problems[1]


def test_a_json_label_at_1e30_is_an_input_error(tmp_path):
    doc = {"case": "c", "vertebrae": [{"label": "L3", "world_mm": [0, 0, 0]}, {"label": "L4", "world_mm": [0, -1e30, 0]}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="beyond"):
        load_annotations([tmp_path / "c.json"])


def _reviewed_folder(folder: Path) -> Path:
    """One accepted and one unreviewed result of ``spinelabel review``."""
    folder.mkdir()
    vertebrae = [{"label": lv, "verse_id": 0, "position_mm": [0.0, 0.0, z], "voxel": [0, 0, 0], "confidence": 0.9}
                 for lv, z in (("L3", 0.0), ("L4", -36.0))]
    doc = {"schema_version": 1, "input": "x", "region": "lumbar", "vertebrae": vertebrae, "warnings": []}
    (folder / "done.json").write_text(json.dumps({**doc, "review": {"status": "accepted", "image": "done.nii.gz"}}))
    (folder / "open.json").write_text(json.dumps(doc))
    return folder


def test_library_code_prints_nothing_the_command_line_shows_skipped_items(capsys, tmp_path):
    folder = _reviewed_folder(tmp_path / "reviewed")
    assert [a.scan_id for a in load_annotations([folder])] == ["done"]
    assert capsys.readouterr() == ("", "")  # skipped quietly without a callback: library code never prints
    code, _, err = _run(capsys, "annotations", "check", folder, "-o", tmp_path / "cleaned.csv", "--no-images")
    assert code == 0
    assert len(_lines(err)) == 1 and _lines(err)[0].startswith("warning: ") and "open.json: not reviewed yet" in err


# ----------------------------------------------------------------- 5. DICOMweb servers


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up is not news


def _serve(handler: type[BaseHTTPRequestHandler]):
    httpd = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web"


class _Dripping(BaseHTTPRequestHandler):
    """Answers 200 with a 1000-byte body, one byte every 0.2 s (a read timeout never fires)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass  # the client hung up: the deadline worked

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dripping():
    httpd, url = _serve(_Dripping)
    yield url
    httpd.shutdown()
    httpd.server_close()


def test_timeout_is_a_deadline_per_request_not_per_read(capsys, dripping, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    code, _, err = _run(capsys, "pacs", "find", "--url", dripping, "--timeout", "1")
    elapsed = time.monotonic() - start
    assert code == 1
    _one_error(err, "did not answer in time (deadline 1 s")
    assert elapsed < 10, elapsed  # the body alone would take 200 s
    assert _tree(tmp_path) == set()


class _Failing(BaseHTTPRequestHandler):
    """Lists one study, then fails its series search with a reason that echoes the password."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?")[0].endswith("/studies"):
            body = json.dumps([{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]).encode()
            self.send_response(200)
        else:
            body = b"{}"
            self.send_response(500, f"internal error for user ann password {PASSWORD}")
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_the_password_is_never_shown_nor_written(capsys, tmp_path):
    httpd, url = _serve(_Failing)
    try:
        with_password = url.replace("http://", f"http://ann:{PASSWORD}@")
        code, out, err = _run(capsys, "pacs", "harvest", tmp_path / "h", "--url", with_password, "--quiet")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert code == 1
    failed = [ln for ln in _lines(err) if ln.startswith("failed: ")]
    assert len(failed) == 1 and "HTTP 500" in failed[0] and "***" in failed[0], err
    assert PASSWORD not in out + err
    manifest = (tmp_path / "h" / "harvest.json").read_text()
    assert PASSWORD not in manifest and json.loads(manifest)["failures"] == [failed[0][len("failed: ") :]]
    assert _tree(tmp_path / "h") == {"harvest.json"}


def test_a_wrong_json_shape_is_one_line(capsys, tmp_path):
    class Odd(_Failing):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"studies": "not a list"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd, url = _serve(Odd)
    try:
        code, _, err = _run(capsys, "pacs", "find", "--url", url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert code == 1
    _one_error(err, "unexpected answer")


class _NoStow:
    """A DICOMweb client double whose STOW-RS answers HTTP 500 (a pydicom-level fake, no server)."""

    base_url = "http://pacs.example/dicom-web"

    def store_instances(self, datasets):
        import requests

        response = requests.Response()
        response.status_code, response.reason = 500, "Internal Server Error"
        raise requests.exceptions.HTTPError(response=response)


def test_a_failed_stow_is_reported_as_such(capsys, tmp_path, monkeypatch, blob_labeler):
    from spinelabel import pacs, pacs_client
    from spinelabel.pacs_query import SeriesInfo

    def find_series(client, study_uid, **kwargs):
        return [SeriesInfo(study_uid, "1.2.3.7", "MR", "T2 SAG", 7, 20, "sagittal")]

    def retrieve(client, study_uid, series_uid, folder, **kwargs):
        return _blob_dicom(folder)

    monkeypatch.setattr(pacs, "find_series", find_series)
    monkeypatch.setattr(pacs, "retrieve_series", retrieve)
    monkeypatch.setattr(pacs_client, "connect", lambda config: _NoStow())
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "pacs", "label", "1.2.3", "--store", "--url", "http://pacs.example/dicom-web", "--output-dir", out)
    assert code == 1
    assert "series 1.2.3.7: 5 vertebrae" in stdout and "stored" not in stdout
    failed = [ln for ln in _lines(err) if not ln.startswith("warning: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: series 1.2.3.7: labeled"), err
    assert "not stored on the server" in failed[0] and "HTTP 500" in failed[0]
    assert "no series could be labeled" not in err
    assert _tree(out) == {"1.2.3.7.json", "1.2.3.7.sr.dcm", "1.2.3.7.gsps.dcm"}


# ----------------------------------------------------------------- 6. CSV output


def test_a_scan_id_that_looks_like_a_formula_is_written_as_text(capsys, tmp_path):
    rows = ["scan,label,x,y,z"] + [f"=HYPERLINK(1),{lv},0,0,{z}" for lv, z in (("L3", 0), ("L4", -36), ("L5", -72))]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    code, _, err = _run(capsys, "annotations", "check", tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--no-images")
    assert code == 0 and _lines(err) == []
    cells = [line.split(",")[0] for line in (tmp_path / "out.csv").read_text().splitlines()[1:]]
    assert cells and all(c == "'=HYPERLINK(1)" for c in cells)
    assert [a.scan_id for a in load_annotations([tmp_path / "out.csv"])] == ["=HYPERLINK(1)"]  # read back as written


def test_the_report_csv_writes_formula_like_cells_as_text(capsys, tmp_path):
    rows = ["scan,label,x,y,z"] + [f"@SUM(1+1),{lv},0,0,{z}" for lv, z in (("L3", 0), ("L4", -36), ("L4", -72))]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    code, _, err = _run(
        capsys, "annotations", "check", tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--report", tmp_path / "r.csv", "--no-images"
    )
    assert code == 0 and _lines(err) == []
    findings = (tmp_path / "r.csv").read_text().splitlines()[1:]
    assert findings and all(line.startswith("'@SUM(1+1),") for line in findings)


def test_test_helpers_fail_on_two_lines():
    with pytest.raises(AssertionError):
        _one_error("spinelabel: error: a\nspinelabel: error: b\n", "a")
