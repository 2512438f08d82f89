"""``scoring.score_models`` and ``spinelabel evaluate-model``: named scans labeled by each model and scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinelabel import anatomy
from spinelabel.cli import main
from spinelabel.errors import InputError
from spinelabel.io.nifti import save_nifti
from spinelabel.pipeline import Labeler
from spinelabel.scan_annotation import ScanAnnotation
from spinelabel.scoring import score_models
from spinelabel.testing.dummy import blob_labeler, blob_spine, silent_model_dir


@pytest.fixture
def scans(tmp_path) -> dict[str, ScanAnnotation]:
    """One blob spine saved twice: ``right`` names its bodies as the blob labeler does, ``shifted`` one level higher."""
    volume, _ = blob_spine()
    named = blob_labeler().label(volume).vertebrae
    assert len(named) >= 3
    out = {}
    for scan, shift in (("right", 0), ("shifted", -1)):
        save_nifti(volume, tmp_path / f"{scan}.nii.gz")
        points = {anatomy.STANDARD_LEVELS[anatomy.STANDARD_LEVELS.index(v.label) + shift]: np.asarray(v.position_mm) for v in named}
        out[scan] = ScanAnnotation(scan, tmp_path / f"{scan}.nii.gz", points)
    return out


@pytest.fixture
def models(tmp_path, monkeypatch) -> dict[str, object]:
    """``blob`` (names the blob spines) and ``silent`` (a real model folder whose network never fires)."""
    from spinelabel import pipeline

    made = {"blob": blob_labeler(), "silent": Labeler.load(silent_model_dir(tmp_path / "silent"))}
    calls = []

    def make(region, model=None, threads=None, *, check_orientation=True):
        calls.append(model)
        return made[model]

    monkeypatch.setattr(pipeline, "make_labeler", make)
    return {"calls": calls}


def test_each_model_is_scored_against_the_names_on_the_same_scans(scans, models):
    blob, silent = score_models([scans["right"], scans["shifted"]], ["blob", "silent"], "lumbar", 20.0)
    assert models["calls"] == ["blob", "silent"]  # each model loaded once
    assert blob.model == "blob" and blob.refused == ()
    assert {r.scan_id: r.all_correct for r in blob.report.per_scan} == {"right": True, "shifted": False}
    assert blob.report.n_scans_correct == 1 and blob.report.identification_rate == 0.5
    assert silent.refused == ("right", "shifted")
    assert silent.report.n_scans == 2 and silent.report.n_scans_correct == 0 and silent.report.tp == 0


def test_a_scan_whose_image_is_missing_or_unnamed_is_left_out_with_a_line_and_not_counted(scans, models, tmp_path):
    lines: list[str] = []
    gone = ScanAnnotation("gone", tmp_path / "nowhere.nii.gz", dict(scans["right"].points))
    unnamed = ScanAnnotation("unnamed", None, dict(scans["right"].points))
    (blob,) = score_models([gone, scans["right"], unnamed], ["blob"], "lumbar", 20.0, on_problem=lines.append)
    assert [r.scan_id for r in blob.report.per_scan] == ["right"] and blob.report.n_scans_correct == 1
    assert len(lines) == 2 and "'gone'" in lines[0] and "'unnamed'" in lines[1] and "names no image" in lines[1]
    with pytest.raises(InputError, match="no annotated scan names an image that can be read"):
        score_models([gone, unnamed], ["blob"], "lumbar", 20.0)


def _csv(scans: dict[str, ScanAnnotation], path: Path) -> Path:
    rows = ["scan,label,x,y,z,image"]
    for a in scans.values():
        rows += [f"{a.scan_id},{lv},{x},{y},{z},{Path(a.image).name}" for lv, (x, y, z) in a.points.items()]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_the_command_prints_and_writes_one_report_per_model(scans, tmp_path, capsys):
    """A real model folder through the command line: it names nothing, and the report says so."""
    labels = _csv(scans, tmp_path / "labels.csv")
    model = silent_model_dir(tmp_path / "m")
    code = main(["evaluate-model", str(labels), "--model", model, "--json", str(tmp_path / "report.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"== model {model}: 0 of 2 scans entirely right; named nothing in right, shifted" in out
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [m["model"] for m in doc["models"]] == [model]
    assert doc["models"][0]["named_nothing_in"] == ["right", "shifted"]
    assert doc["models"][0]["report"]["overall"]["n_scans"] == 2
    # a second run replaces its own report; `evaluate` over a folder holding it passes it over, as a report
    assert main(["evaluate-model", str(labels), "--model", model, "--json", str(tmp_path / "report.json")]) == 0
    results = tmp_path / "results"
    results.mkdir()
    (results / "report.json").write_bytes((tmp_path / "report.json").read_bytes())
    code = main(["evaluate", str(results), str(labels)])
    assert code == 1 and "no prediction *.json files in this folder" in capsys.readouterr().err


def test_the_command_refuses_unusable_inputs_in_one_line(scans, tmp_path, capsys):
    labels = _csv(scans, tmp_path / "labels.csv")
    model = silent_model_dir(tmp_path / "m")
    for scan in scans:
        (tmp_path / f"{scan}.nii.gz").unlink()
    code = main(["evaluate-model", str(labels), "--model", model])
    err = capsys.readouterr().err
    assert code == 1 and err.count("spinelabel: error:") == 1 and "Traceback" not in err
    assert "no annotated scan names an image that can be read" in err
    code = main(["evaluate-model", str(labels), "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("spinelabel: error:") and err.count("\n") == 1


def test_a_reviewed_folder_is_the_ground_truth_and_unreviewed_results_in_it_are_skipped(scans, models, tmp_path, capsys):
    """The hospital's check: results accepted in ``spinelabel review`` (images beside them), an open one skipped."""
    folder = tmp_path / "check"
    folder.mkdir()
    for a in scans.values():
        vertebrae = [{"label": lv, "verse_id": anatomy.VERSE_ID[lv], "position_mm": [float(c) for c in p],
                      "voxel": [0, 0, 0], "confidence": 0.9} for lv, p in a.points.items()]
        doc = {"schema_version": 1, "input": str(a.image), "region": "lumbar", "vertebrae": vertebrae, "warnings": []}
        (folder / f"{a.scan_id}.json").write_text(json.dumps(
            {**doc, "review": {"status": "corrected", "image": f"../{Path(a.image).name}"}}))
        (folder / f"open-{a.scan_id}.json").write_text(json.dumps(doc))
    code = main(["evaluate-model", str(folder), "--model", "blob"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "== model blob: 1 of 2 scans entirely right" in printed.out
    assert printed.err.count("not reviewed yet") == 2 and "Traceback" not in printed.err


def test_an_error_while_labeling_one_scan_counts_it_as_named_nothing_and_the_others_go_on(scans, models, monkeypatch):
    from spinelabel import pipeline
    from spinelabel.errors import InputError as Refused

    label = pipeline.label_loaded

    def fail_on_right(labeler, loaded):
        if "right" in str(loaded.source):
            raise Refused("the image is too large")
        return label(labeler, loaded)

    monkeypatch.setattr(pipeline, "label_loaded", fail_on_right)
    lines: list[str] = []
    (blob,) = score_models([scans["right"], scans["shifted"]], ["blob"], "lumbar", 20.0, on_problem=lines.append)
    assert blob.refused == ("right",) and blob.report.n_scans == 2
    assert lines == ["scan 'right', model blob: the image is too large; counted as named nothing"]


def test_held_out_scores_only_the_scans_train_exclude_left_out(scans, models, tmp_path, capsys):
    labels = _csv(scans, tmp_path / "labels.csv")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"validation": ["shifted"]}))
    assert main(["evaluate-model", str(labels), "--model", "blob", "--held-out", str(split)]) == 0
    out = capsys.readouterr().out
    assert "== model blob: 0 of 1 scans entirely right" in out
    assert "\nshifted " in out and "\nright " not in out  # the table's rows: the held-out scan only
    split.write_text(json.dumps({"validation": ["elsewhere"]}))
    code = main(["evaluate-model", str(labels), "--model", "blob", "--held-out", str(split)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "none of its 1 'validation' scan ids is among the annotations" in err


def test_a_model_given_twice_is_scored_once(scans, models):
    scores = score_models([scans["right"]], ["blob", "blob"], "lumbar", 20.0)
    assert [s.model for s in scores] == ["blob"] and models["calls"] == ["blob"]


def test_scans_all_left_out_for_a_repeated_level_say_so_before_any_model_is_loaded(scans, models, tmp_path, capsys):
    """Every scan giving a level twice was reported as "no annotated scan names an image that can be read", after
    the models had been loaded (found by review)."""
    labels = _csv({"right": scans["right"]}, tmp_path / "labels.csv")
    first = labels.read_text().splitlines()[1]
    labels.write_text(labels.read_text() + first + "\n")  # the first level given twice
    code = main(["evaluate-model", str(labels), "--model", "blob"])
    err = capsys.readouterr().err
    assert code == 1 and models["calls"] == []
    assert err.splitlines()[-1] == ("spinelabel: error: no annotated scan left to evaluate against: each gives some "
                                    "level more than once")


def test_labels_outside_their_image_are_left_out_with_a_line_not_counted_as_misses(scans, models):
    """As ``train`` does: a label no model can find in the image is not the model's miss (review's left-alone item)."""
    right = scans["right"]
    first, *rest = right.points
    one_out = ScanAnnotation("one-out", right.image, {**right.points, first: right.points[first] + [0.0, 0.0, 300.0]})
    all_out = ScanAnnotation("all-out", right.image, {lv: p + [200.0, 0.0, 0.0] for lv, p in right.points.items()})
    lines: list[str] = []
    (blob,) = score_models([one_out, all_out], ["blob"], "lumbar", 20.0, on_problem=lines.append)
    (scored,) = blob.report.per_scan
    assert scored.scan_id == "one-out" and scored.all_correct and scored.n_gt == len(rest)
    assert lines[0] == f"scan 'one-out': {first} left out: outside the image"
    assert lines[1].startswith(f"scan 'all-out': all {len(right.points)} of its labels lie outside its image (")
    assert lines[1].endswith("); left out") and len(lines) == 2
