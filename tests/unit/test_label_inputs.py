"""``spinelabel label``, ``synth`` and a model's config at their edges (a red team's cases, thirty-sixth session).

Each case broke a rule of the command line: a traceback, a batch stopped by one item, or a result lost.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinelabel import pipeline
from spinelabel.cli import main
from spinelabel.geometry import reorient
from spinelabel.io.nifti import save_nifti
from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config, silent_model_dir


@pytest.fixture
def blob_labeler(monkeypatch):
    labeler = pipeline.Labeler(dummy_config(), BlobNet())
    monkeypatch.setattr(pipeline, "make_labeler", lambda *args, **kwargs: labeler)
    return labeler


@pytest.fixture(scope="module")
def silent_model(tmp_path_factory):
    return silent_model_dir(tmp_path_factory.mktemp("model"))


def _blob(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(reorient(blob_spine()[0], "PIL"), path)
    return path


def _run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------- inputs the system will not look at


def test_a_name_too_long_is_one_line_and_fails_alone_in_a_batch(capsys, tmp_path, blob_labeler):
    good = _blob(tmp_path / "good.nii.gz")
    long = tmp_path / ("b" * 300 + ".nii.gz")  # ENAMETOOLONG from stat, not "no such file"
    code, _, err = _run(capsys, "label", good, long, "--output-dir", tmp_path / "out", "-q")
    (failed,) = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert code == 1 and "File name too long" in failed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json"]
    code, _, err = _run(capsys, "label", long, "-o", tmp_path / "one.json")
    assert code == 1 and "cannot read" in _one_error_line(err) and not (tmp_path / "one.json").exists()


def test_a_folder_the_user_may_not_search_is_one_line(capsys, tmp_path, blob_labeler, monkeypatch):
    hidden = _blob(tmp_path / "locked" / "scan.nii.gz")
    real_stat = os.stat

    def refused(path, *args, **kwargs):  # as for a non-root user under a folder of mode 700
        if os.fspath(path) == os.fspath(hidden):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refused)
    code, _, err = _run(capsys, "label", hidden, "-o", tmp_path / "r.json")
    assert code == 1 and "cannot read" in _one_error_line(err) and "Permission denied" in err
    assert not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------- results kept


def test_a_reviewed_result_is_never_replaced(capsys, tmp_path, blob_labeler):
    scan = _blob(tmp_path / "scan.nii.gz")
    reviewed = {"schema_version": 1, "input": str(scan), "vertebrae": [], "review": {"status": "corrected", "events": []}}
    out = tmp_path / "reviewed" / "scan.json"
    out.parent.mkdir()
    out.write_text(json.dumps(reviewed))
    code, _, err = _run(capsys, "label", scan, "-o", out)
    assert code == 1 and "holds a reviewed result (review status 'corrected')" in _one_error_line(err)
    assert json.loads(out.read_text()) == reviewed
    other = _blob(tmp_path / "other.nii.gz")
    code, _, err = _run(capsys, "label", scan, other, "--output-dir", out.parent, "-q")
    (failed,) = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert code == 1 and "reviewed result" in failed and json.loads(out.read_text()) == reviewed
    assert (out.parent / "other.json").is_file()


def test_a_review_saved_while_the_scan_is_labeled_is_not_replaced(capsys, tmp_path, blob_labeler, monkeypatch):
    """The check ran only before labeling: a review saved in the seconds the network ran was replaced."""
    scan = _blob(tmp_path / "scan.nii.gz")
    out, overlay = tmp_path / "scan.json", tmp_path / "scan.png"
    out.write_text(json.dumps({"schema_version": 1, "input": str(scan), "vertebrae": []}))  # an earlier, unreviewed run
    reviewed = {"schema_version": 1, "input": str(scan), "vertebrae": [], "review": {"status": "accepted", "events": []}}
    label_loaded = pipeline.label_loaded

    def label_while_a_review_is_saved(labeler, loaded, counting=None):
        result = label_loaded(labeler, loaded, counting)
        out.write_text(json.dumps(reviewed))  # the review page saves now
        return result

    monkeypatch.setattr(pipeline, "label_loaded", label_while_a_review_is_saved)
    code, _, err = _run(capsys, "label", scan, "-o", out, "--overlay", overlay)
    assert code == 1 and "holds a reviewed result (review status 'accepted')" in _one_error_line(err)
    assert json.loads(out.read_text()) == reviewed and not overlay.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_another_input_s_result_in_the_folder_keeps_its_name(capsys, tmp_path, blob_labeler):
    a, b = _blob(tmp_path / "A" / "scan.nii.gz"), _blob(tmp_path / "B" / "scan.nii.gz")
    out = tmp_path / "out"
    assert _run(capsys, "label", a, b, "--output-dir", out, "-q")[0] == 0
    assert json.loads((out / "scan.json").read_text())["input"] == str(a)
    assert json.loads((out / "scan_.json").read_text())["input"] == str(b)
    before = (out / "scan.json").read_bytes()
    assert _run(capsys, "label", b, "--output-dir", out, "-q")[0] == 0  # B alone, in a later run
    assert (out / "scan.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["scan.json", "scan_.json"]


def test_a_link_is_named_as_given_not_after_its_target(capsys, tmp_path, blob_labeler):
    target = _blob(tmp_path / "store" / "image.nii.gz")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "patientA.nii.gz").symlink_to(target)
    assert _run(capsys, "label", tmp_path / "links" / "patientA.nii.gz", "--output-dir", tmp_path / "out", "-q")[0] == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["patientA.json"]


@pytest.mark.parametrize("option, name, ending", [
    ("-o", "r.nii.gz", ".json"), ("--overlay", "o.tif", ".png or .jpg or .jpeg"),
    ("--label-map", "m.png", ".nii or .nii.gz"),
])
def test_an_output_named_unlike_its_format_is_refused_before_labeling(capsys, tmp_path, blob_labeler, option, name, ending):
    scan = _blob(tmp_path / "scan.nii.gz")
    extra = [] if option == "-o" else ["-o", tmp_path / "r.json"]
    code, _, err = _run(capsys, "label", scan, option, tmp_path / name, *extra)
    assert code == 1 and f"must end in {ending}" in _one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_a_batch_of_nifti_and_dicom_gives_the_dicom_options_to_the_dicom_series_only(capsys, tmp_path, blob_labeler):
    from spinelabel.io.dicom_write import write_dicom_series

    nifti = _blob(tmp_path / "n.nii.gz")
    write_dicom_series(reorient(blob_spine()[0], "PIL"), tmp_path / "d")
    code, _, err = _run(capsys, "label", nifti, tmp_path / "d", "--output-dir", tmp_path / "out", "--dicom-outputs", "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d.gsps.dcm", "d.json", "d.sr.dcm", "n.json"]


# ----------------------------------------------------------------- values at their limits


def test_a_complex_nifti_is_refused_not_read_as_its_real_part(capsys, tmp_path):
    data = (np.ones((8, 40, 40)) * 1j).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 1.0, 1.0, 1.0])), str(tmp_path / "c.nii.gz"))
    code, _, err = _run(capsys, "label", tmp_path / "c.nii.gz", "-o", tmp_path / "r.json")
    assert code == 1 and "complex" in _one_error_line(err) and "magnitude" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("value", ["99999999999999999999", "2147483648", "20000"])
def test_a_thread_count_beyond_the_limit_is_one_line(capsys, tmp_path, silent_model, monkeypatch, value):
    scan = _blob(tmp_path / "scan.nii.gz")
    monkeypatch.setenv("SPINELABEL_THREADS", value)
    code, _, err = _run(capsys, "label", scan, "--model", silent_model, "-o", tmp_path / "r.json")
    assert code == 1 and "from 1 to 256" in _one_error_line(err)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("field, value", [
    ("inplane_spacing_mm", 0), ("inplane_spacing_mm", float("nan")), ("slice_step_mm", "two"),
    ("intensity_percentiles", [99.5, 1.0]), ("level_sd", -1), ("level_sd", float("inf")), ("out_channels", 7),
])
def test_a_model_config_with_an_impossible_value_is_one_line(capsys, tmp_path, silent_model, field, value):
    model = tmp_path / "model"
    shutil.copytree(silent_model, model)
    config = json.loads((model / "config.json").read_text())
    config[field] = value
    (model / "config.json").write_text(json.dumps(config))  # NaN is written as the JSON extension NaN
    code, _, err = _run(capsys, "label", _blob(tmp_path / "scan.nii.gz"), "--model", model, "-o", tmp_path / "r.json")
    assert code == 1 and field in _one_error_line(err)
    assert not (tmp_path / "r.json").exists()


def test_a_detection_threshold_outside_zero_to_one_is_refused(capsys, tmp_path, silent_model):
    model = tmp_path / "model"
    shutil.copytree(silent_model, model)
    config = json.loads((model / "config.json").read_text())
    config["detection"]["threshold"] = -1
    (model / "config.json").write_text(json.dumps(config))
    code, _, err = _run(capsys, "label", _blob(tmp_path / "scan.nii.gz"), "--model", model, "-o", tmp_path / "r.json")
    assert code == 1 and "detection.threshold" in _one_error_line(err)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("seed", ["-5", str(2**32)])
def test_a_phantom_seed_outside_numpy_s_32_bit_words_is_a_usage_error(capsys, tmp_path, seed):
    code, _, err = _run(capsys, "synth", tmp_path / "out", "--n", "1", "--seed", seed, "-q")
    assert code == 2 and "--seed" in err
    assert not (tmp_path / "out").exists()


def test_review_finds_a_result_by_its_name_after_the_scans_moved(tmp_path):
    """``label`` passes over a name whose result is another input's that exists; ``review`` keeps the name (it
    checks the result against the image), and so does ``label`` when the recorded input is gone (scans moved)."""
    from spinelabel.output_names import unique_names

    old, moved = tmp_path / "old-disk" / "scan.nii.gz", tmp_path / "new-disk" / "scan.nii.gz"
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "scan.json").write_text(json.dumps({"input": str(old)}))
    assert unique_names([moved], labels) == ["scan"]  # the recorded input is gone: taken for this one
    _blob(old)
    _blob(moved)
    assert unique_names([moved], labels) == ["scan_"]  # another file that exists
    assert unique_names([moved]) == ["scan"]  # review
    (labels / "scan.json").write_text(json.dumps({"input": str(moved)}))
    assert unique_names([moved], labels) == ["scan"]


def test_a_nifti_beside_a_dicom_series_does_not_take_the_series_result(capsys, tmp_path, blob_labeler):
    from spinelabel.io.dicom_write import write_dicom_series

    write_dicom_series(reorient(blob_spine()[0], "PIL"), tmp_path / "case1")
    out = tmp_path / "out"
    assert _run(capsys, "label", tmp_path / "case1", "--output-dir", out, "-q")[0] == 0
    before = (out / "case1.json").read_bytes()
    _blob(tmp_path / "case1" / "image.nii.gz")  # a conversion saved in the series folder, also named case1
    assert _run(capsys, "label", tmp_path / "case1" / "image.nii.gz", "--output-dir", out, "-q")[0] == 0
    assert (out / "case1.json").read_bytes() == before and (out / "case1_.json").is_file()


def test_dicom_options_for_a_batch_of_nifti_files_only_are_one_line(capsys, tmp_path, blob_labeler):
    scan = _blob(tmp_path / "scan.nii.gz")
    code, _, err = _run(capsys, "label", scan, "--output-dir", tmp_path / "out", "--dicom-outputs", "-q")
    assert code == 1 and "--dicom-outputs applies to DICOM series" in _one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_label_without_an_output_says_that_nothing_was_written(capsys, tmp_path, blob_labeler):
    scan = _blob(tmp_path / "scan.nii.gz")
    code, out, err = _run(capsys, "label", scan)
    assert code == 0 and "vertebrae:" in out and "nothing written: give -o NAME.json" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]
    code, out, err = _run(capsys, "label", scan, "-o", tmp_path / "r.json")
    assert code == 0 and "nothing written" not in err and (tmp_path / "r.json").is_file()


def test_an_output_folder_that_is_a_file_is_refused_before_labeling(capsys, tmp_path, blob_labeler, monkeypatch):
    scan = _blob(tmp_path / "scan.nii.gz")
    (tmp_path / "afile").write_text("a file")
    monkeypatch.setattr(pipeline, "label_loaded", lambda *a, **k: pytest.fail("labeled before the outputs were checked"))
    code, out, err = _run(capsys, "label", scan, "-o", tmp_path / "afile" / "x.json")
    assert code == 1 and "afile is a file, not a folder" in _one_error_line(err) and "vertebrae" not in out
