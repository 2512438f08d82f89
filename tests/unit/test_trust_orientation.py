"""``--trust-orientation``: the upside-down check switched off, from every command that labels down to the result."""

import json

import pytest

from spinelabel import pipeline
from spinelabel.batch import LabelerSpec
from spinelabel.cli import main
from spinelabel.errors import ModelError
from spinelabel.geometry import reorient
from spinelabel.io.nifti import save_nifti
from spinelabel.io.outputs import result_to_dict
from spinelabel.results import LabelResult
from spinelabel.review.edits import result_of
from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config


@pytest.fixture
def asked(monkeypatch):
    """The ``check_orientation`` of each ``make_labeler`` call, which builds a blob labeler with it."""
    calls: list[bool] = []

    def make(region="lumbar", model=None, threads=None, *, check_orientation=True):
        calls.append(check_orientation)
        return pipeline.Labeler(dummy_config(), BlobNet(), check_orientation=check_orientation)

    monkeypatch.setattr(pipeline, "make_labeler", make)
    return calls


@pytest.fixture
def scan(tmp_path):
    path = tmp_path / "scan.nii.gz"
    save_nifti(reorient(blob_spine()[0], "PIL"), path)
    return path


@pytest.mark.parametrize("trust", [False, True])
def test_label_records_whether_the_check_ran(tmp_path, scan, asked, trust):
    out = tmp_path / "r.json"
    assert main(["label", str(scan), "-o", str(out), "-q", *(["--trust-orientation"] if trust else [])]) == 0
    assert asked == [not trust]
    check = json.loads(out.read_text())["checks"]["upside_down"]
    assert (check == "skipped") is trust and check in ("done", "not needed", "skipped")


def test_label_batch_and_archive_batch_pass_the_switch_to_their_labeler(tmp_path, scan, asked):
    assert main(["label", str(scan), "--output-dir", str(tmp_path / "a"), "-q", "--trust-orientation"]) == 0
    assert json.loads((tmp_path / "a" / "scan.json").read_text())["checks"] == {"upside_down": "skipped"}
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"input,id\n{scan},one\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "b"), "-q", "--trust-orientation"]) == 0
    assert json.loads((tmp_path / "b" / "labels" / "one.json").read_text())["checks"] == {"upside_down": "skipped"}
    assert asked == [False, False]


@pytest.mark.parametrize("command", [["pacs", "label", "1.2.3", "--url", "http://127.0.0.1:9"], ["review", "--port", "0"]])
def test_pacs_label_and_review_pass_the_switch_to_make_labeler(tmp_path, scan, monkeypatch, capsys, command):
    asked = []

    def refuse(*args, check_orientation=True, **kwargs):
        asked.append(check_orientation)
        raise ModelError("no model here")

    monkeypatch.setattr(pipeline, "make_labeler", refuse)
    inputs = [str(scan), "--labels", str(tmp_path / "labels")] if command[0] == "review" else []
    assert main([*command, *inputs, "--trust-orientation"]) == 1
    assert asked == [False] and "no model here" in capsys.readouterr().err


def test_a_worker_spec_loads_its_labeler_with_the_check_as_asked():
    assert LabelerSpec("lumbar", check_orientation=False).load().check_orientation is False
    assert LabelerSpec("lumbar").load().check_orientation is True
    auto = pipeline.make_labeler("auto", check_orientation=False)
    assert [labeler.check_orientation for labeler in auto.by_region.values()] == [False] * len(auto.by_region)


@pytest.mark.parametrize("check", ["done", "not needed", "skipped"])
def test_the_record_of_the_check_goes_into_the_document_and_back(check):
    result = LabelResult("lumbar", "m", "1", [], upside_down_check=check)
    doc = result_to_dict(result, "scan")
    assert doc["checks"] == {"upside_down": check}
    assert result_of(doc).upside_down_check == check


def test_a_document_written_before_the_check_was_recorded_reads_back_without_it():
    doc = result_to_dict(LabelResult("lumbar", "m", "1", []), "scan")
    assert "checks" not in doc and result_of(doc).upside_down_check == ""


@pytest.mark.parametrize("checks", ["done", ["done"], {"upside_down": 1}, None])
def test_a_hand_edited_record_of_the_check_reads_back_as_none(checks):
    doc = {**result_to_dict(LabelResult("lumbar", "m", "1", []), "scan"), "checks": checks}
    assert result_of(doc).upside_down_check == ""
