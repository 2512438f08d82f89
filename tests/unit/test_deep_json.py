"""JSON nested deeper than the parser goes, wherever a command reads JSON the user gave: one line, exit 1.

``json.loads`` raises RecursionError for ``[[[...]]]`` some thousand levels deep; the readers caught
``ValueError`` only, so each of these printed a traceback (red team, forty-fourth session).
"""

import json
import shutil

import pytest

from spinelabel.cli import main
from spinelabel.io.nifti import save_nifti
from spinelabel.testing.dummy import blob_spine, silent_model_dir

DEEP = "[" * 100_000 + "]" * 100_000


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("spinelabel: error: "), err
    return lines[0]


@pytest.fixture
def deep(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    return path


def test_evaluate_refuses_deep_predictions_and_annotations(capsys, tmp_path, deep):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"vertebrae": [{"label": "L1", "world_mm": [0, 0, 0]}]}))
    assert main(["evaluate", str(deep), str(gt)]) == 1
    assert "nested too deeply" in _one_error(capsys)
    assert main(["evaluate", str(gt), str(deep)]) == 1
    assert "nested too deeply" in _one_error(capsys)


def test_a_deep_jsonl_manifest_is_refused_before_the_batch(capsys, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(DEEP + "\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert "line 1: not valid JSON" in _one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_deep_split_file_is_refused_by_train(capsys, tmp_path, deep):
    assert main(["train", str(tmp_path / "none"), "--out", str(tmp_path / "m"), "--exclude", str(deep)]) == 1
    assert "nested too deeply" in _one_error(capsys)
    assert not (tmp_path / "m").exists()


def test_a_deep_model_config_is_refused(capsys, tmp_path, deep):
    model = tmp_path / "model"
    shutil.copytree(silent_model_dir(tmp_path / "silent"), model)
    shutil.copyfile(deep, model / "config.json")
    scan = tmp_path / "scan.nii.gz"
    save_nifti(blob_spine()[0], scan)
    assert main(["label", str(scan), "--model", str(model), "-o", str(tmp_path / "r.json")]) == 1
    assert "nested too deeply" in _one_error(capsys)
    assert not (tmp_path / "r.json").exists()


def test_a_deep_file_where_the_result_goes_is_not_taken_for_a_result(deep):
    """An earlier output that is not a document of ours: the output pre-check reads it as "not a result"."""
    from spinelabel.io.outputs import existing_result

    assert existing_result(deep) is None
