"""``spinelabel train``: what is refused before training, what a scan's labels must satisfy, what the config records.

Found by a red team (thirty-fifth session): each test fails on the code before its fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinelabel.cli import main
from spinelabel.errors import InputError
from spinelabel.io.nifti import save_nifti
from spinelabel.testing.dummy import blob_spine, silent_model_dir
from spinelabel.cleaning import OUTSIDE_IMAGE_MM
from spinelabel.training.data import check_region_covered, load_training_scans, validation_ids

LEVELS = ("T12", "L1", "L2", "L3", "L4")


@pytest.fixture
def labels(tmp_path) -> Path:
    """Two blob spines as NIfTI and a CSV naming their five bodies T12-L4 (scan ids ``a`` and ``1042``)."""
    volume, centres = blob_spine()
    rows = ["scan,label,x,y,z,image"]
    for scan in ("a", "1042"):
        save_nifti(volume, tmp_path / f"{scan}.nii.gz")
        rows += [f"{scan},{lv},{x},{y},{z},{scan}.nii.gz" for lv, (x, y, z) in zip(LEVELS, centres)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("region", ["foo", "auto", ""])
def test_a_region_to_train_for_is_checked_before_anything_is_read(capsys, labels, region):
    """``--region foo`` trained a model that ``label`` refuses (and with phantoms ended in a KeyError traceback)."""
    code, err = _run(capsys, "train", labels, "--out", labels.parent / "m", "--steps", "1", "--region", region)
    assert code == 2 and "--region" in err and "Traceback" not in err
    assert not (labels.parent / "m").exists()


def test_labels_outside_their_image_are_left_out_and_a_scan_of_them_is_skipped(labels):
    """Lumbar labels given for another image lay outside it, and a scan of them was trained on as "no vertebrae"."""
    _, centres = blob_spine()
    rows = ["scan,label,x,y,z,image"]
    rows += [f"a,{lv},{x},{y},{z - 400.0},a.nii.gz" for lv, (x, y, z) in zip(LEVELS, centres)]  # all below the image
    top = 19.5 + OUTSIDE_IMAGE_MM + 1.0  # the image ends at z = 19.5 mm (blob_volume): T12 beyond the margin
    rows += [f"1042,{lv},{x},{y},{top if lv == 'T12' else z},1042.nii.gz" for lv, (x, y, z) in zip(LEVELS, centres)]
    labels.write_text("\n".join(rows) + "\n")
    said: list[str] = []
    scans, points = load_training_scans([labels], on_message=said.append)
    assert [s.scan_id for s in scans] == ["1042"] and list(points[0]) == list(LEVELS[1:])
    assert said == ["skipped a: 5 of its 5 labels lie outside its image (labels of another scan, or the wrong image?)",
                    "1042: T12 left out: outside the image"]


def test_labels_in_dicom_lps_read_as_ras_are_said_to_be(tmp_path):
    """A CSV of DICOM patient coordinates without ``frame`` names the likely cause, and with ``frame`` trains."""
    volume, centres = blob_spine()
    shift = np.array([60.0, 80.0, 0.0])  # off the isocentre, so that x and y negated leave the image
    volume.affine[:3, 3] += shift
    save_nifti(volume, tmp_path / "a.nii.gz")
    lps = [(lv, c + shift) for lv, c in zip(LEVELS, centres)]
    rows = [f"a,{lv},{-x},{-y},{z},a.nii.gz" for lv, (x, y, z) in lps]
    (tmp_path / "plain.csv").write_text("scan,label,x,y,z,image\n" + "\n".join(rows) + "\n")
    said: list[str] = []
    with pytest.raises(InputError, match="no usable annotated scans"):
        load_training_scans([tmp_path / "plain.csv"], on_message=said.append)
    assert len(said) == 1 and said[0].startswith("skipped a: 5 of its 5 labels lie outside its image (they lie inside")
    assert "frame=LPS" in said[0]
    (tmp_path / "lps.csv").write_text("scan,label,x,y,z,image,frame\n" + "\n".join(r + ",LPS" for r in rows) + "\n")
    said.clear()
    scans, points = load_training_scans([tmp_path / "lps.csv"], on_message=said.append)
    assert said == [] and [s.scan_id for s in scans] == ["a"]
    np.testing.assert_allclose(np.array(list(points[0].values())), centres + shift)


def test_a_split_file_must_list_scan_ids(tmp_path):
    """``{"validation": "a"}`` was read letter by letter and excluded nothing; numeric ids never matched."""
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"validation": [1042, "a"]}))
    assert validation_ids(split) == {"1042", "a"}
    for bad in ("a", [1.5], [["a"]], [True]):
        split.write_text(json.dumps({"validation": bad}))
        with pytest.raises(InputError, match='"validation" must be a list of scan ids'):
            validation_ids(split)


def test_labels_of_another_region_are_refused(capsys, labels):
    """Cervical labels trained a "lumbar" model without a word (and lumbar ones a cervical model)."""
    with pytest.raises(InputError, match="none of the 1 scans has a label of the cervical region .their labels: T12-L4."):
        check_region_covered([dict.fromkeys(LEVELS, np.zeros(3))], "cervical")
    check_region_covered([dict.fromkeys(LEVELS, np.zeros(3))], "lumbar")
    code, err = _run(capsys, "train", labels, "--out", labels.parent / "m", "--steps", "1", "--region", "cervical",
                     "--no-clean", "--quiet")
    assert code == 1 and "none of the 2 scans has a label of the cervical region" in err
    assert not (labels.parent / "m").exists()


def test_out_holding_other_files_is_refused_and_a_model_folder_is_replaced(capsys, labels, tmp_path):
    """``--out proj`` replaced proj/config.json (an application's settings); ``--out .`` wrote into the working folder."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "config.json").write_text('{"my": "app settings"}')
    code, err = _run(capsys, "train", labels, "--out", proj, "--steps", "1", "--no-clean")
    assert code == 1 and "holds other files and no spinelabel model" in err
    assert (proj / "config.json").read_text() == '{"my": "app settings"}'
    model = Path(silent_model_dir(tmp_path / "old"))
    code, err = _run(capsys, "train", labels, "--out", model, "--steps", "1", "--no-clean", "--quiet",
                     "--exclude", _split(tmp_path, ["a"]))
    assert code == 0, err
    data = json.loads((model / "config.json").read_text())["training"]
    assert data["scans"] == ["1042"]
    assert data["data"] == {"annotations": [str(labels)], "extra_labels": [], "exclude": str(tmp_path / "split.json"),
                            "clean": False}


def _split(folder: Path, ids: list) -> Path:
    (folder / "split.json").write_text(json.dumps({"validation": ids}))
    return folder / "split.json"


@pytest.mark.parametrize(("option", "value"), [("--seed", str(2**64)), ("--threads", "100000"), ("--steps", str(10**23))])
def test_out_of_range_numbers_are_usage_errors(capsys, labels, option, value):
    """A seed of 2**64 ended in a torch traceback, 100000 threads in a segfault, 1e23 steps ran for ever."""
    code, err = _run(capsys, "train", labels, "--out", labels.parent / "m", option, value)
    assert code == 2 and option in err and "Traceback" not in err


def test_a_corrupt_init_model_is_one_line_before_the_scans_are_read(capsys, labels, tmp_path, monkeypatch):
    model = Path(silent_model_dir(tmp_path / "init"))
    (model / "weights.pt").write_bytes((model / "weights.pt").read_bytes()[:100])

    def no_reading(*args, **kwargs):
        raise AssertionError("the scans were read before the --init model was checked")

    monkeypatch.setattr("spinelabel.training.data.load_training_scans", no_reading)
    code, err = _run(capsys, "train", labels, "--out", tmp_path / "m", "--init", model, "--steps", "1", "--no-clean")
    assert code == 1 and err.startswith("spinelabel: error: model weights") and err.count("\n") == 1


def test_an_error_during_training_starts_its_own_line(capsys, labels, monkeypatch):
    """The error line was glued to the progress bar ("training: 100%|...|spinelabel: error: ...")."""
    from spinelabel.errors import OutputError

    def fail(scans, points, region, out, settings, progress=None, **kwargs):
        progress(1, 0.5)
        raise OutputError(f"cannot write the model to {out}: File too large")

    monkeypatch.setattr("spinelabel.training.train.train_and_save", fail)
    code, err = _run(capsys, "train", labels, "--out", labels.parent / "m", "--steps", "1", "--no-clean")
    assert code == 1
    assert any(line.startswith("spinelabel: error: cannot write the model") for line in err.splitlines()), err


def test_a_fine_tune_keeps_its_starting_models_shape_where_its_own_scans_are_too_few(tmp_path):
    """``--init``: the shape model of a fine-tune on three scans labeled T12-L4 keeps the starting model's pairs the
    scans cannot learn (T10-T11; every direction), and learns the spacings they hold."""
    from spinelabel.models import read_config
    from spinelabel.training.train import TrainSettings, model_config, sampler_spec

    init = Path(silent_model_dir(tmp_path / "init"))
    cfg = json.loads((init / "config.json").read_text())
    cfg["shape_model"] = {"spacing": {"T10-T11": [29.0, 3.5], "T12-L1": [50.0, 3.5]}, "direction": {"L4-L5": [8.0, 8.0]}}
    (init / "config.json").write_text(json.dumps(cfg))
    _, centres = blob_spine()
    points = [{lv: np.asarray(c, float) + [0.0, 0.0, -k] for lv, c in zip(LEVELS, centres)} for k in range(3)]
    settings = TrainSettings(init=str(init))
    shape = model_config("lumbar", [], points, settings, sampler_spec("lumbar"), 1.0).shape_model
    assert list(shape["spacing"]["T10-T11"]) == [29.0, 3.5] and shape["direction"] == {"L4-L5": [8.0, 8.0]}
    assert shape["spacing"]["T12-L1"][0] == pytest.approx(float(np.linalg.norm(centres[1] - centres[0])))
    fresh = model_config("lumbar", [], points, TrainSettings(), sampler_spec("lumbar"), 1.0).shape_model
    assert "T10-T11" not in fresh["spacing"] and not fresh.get("direction")
    assert read_config(init).shape_model["spacing"]["T12-L1"] == [50.0, 3.5]  # the starting model is untouched


def test_an_init_model_with_an_unusable_shape_model_is_one_line_before_the_scans_are_read(capsys, labels, tmp_path,
                                                                                           monkeypatch):
    """The fine-tune keeps the starting model's shape model: a hand-edited one ended a whole training in a traceback."""
    import shutil

    from spinelabel.models import resolve_model_dir

    model = tmp_path / "init"
    shutil.copytree(resolve_model_dir("lumbar"), model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["shape_model"] = {"spacing": {"L1-L2": "x"}}
    (model / "config.json").write_text(json.dumps(cfg))

    def no_reading(*args, **kwargs):
        raise AssertionError("the scans were read before the --init model was checked")

    monkeypatch.setattr("spinelabel.training.data.load_training_scans", no_reading)
    code, err = _run(capsys, "train", labels, "--out", tmp_path / "m", "--init", model, "--steps", "1", "--no-clean")
    assert code == 1 and err.startswith(f"spinelabel: error: model {model}: unusable config") and err.count("\n") == 1


def _captured_settings(capsys, monkeypatch, *argv):
    """The TrainSettings that ``spinelabel train ARGV`` hands to the trainer (nothing is trained), and its output."""
    seen = {}

    def capture(scans, points, region, out, settings, progress=None, **kwargs):
        seen["settings"] = settings
        return out

    monkeypatch.setattr("spinelabel.training.train.train_and_save", capture)
    code = main(["train", *map(str, argv)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return seen["settings"], printed.out


def test_a_fine_tune_takes_the_measured_fine_tune_settings_unless_told_otherwise(capsys, labels, tmp_path, monkeypatch):
    """``--init`` with the defaults of a training from scratch ran 4000 steps at 0.002 without phantoms: a recipe never
    measured as a fine-tune. The hospital fine-tune measured by ``benchmarks.site_adaptation`` is the default now."""
    from spinelabel.cli_train import FINE_TUNE

    model = silent_model_dir(tmp_path / "init")
    settings, out = _captured_settings(capsys, monkeypatch, labels, "--out", tmp_path / "m", "--init", model, "--no-clean")
    assert (settings.steps, settings.learning_rate, settings.synthetic_fraction) == (1000, 5e-4, 0.25)
    assert (settings.steps, settings.learning_rate, settings.synthetic_fraction) == (
        FINE_TUNE.steps, FINE_TUNE.learning_rate, FINE_TUNE.synthetic_fraction)
    assert settings.init == str(model)
    assert "1000 steps, learning rate 0.0005, 25% of the crops from phantoms (a fine-tune of" in out

    given, _ = _captured_settings(capsys, monkeypatch, labels, "--out", tmp_path / "m", "--init", model, "--no-clean",
                                  "--steps", "7", "--learning-rate", "0.001", "--synthetic-fraction", "0")
    assert (given.steps, given.learning_rate, given.synthetic_fraction) == (7, 0.001, 0.0)


def test_a_training_from_scratch_keeps_the_train_settings_defaults(capsys, labels, tmp_path, monkeypatch):
    from spinelabel.cli_train import FROM_SCRATCH
    from spinelabel.training.train import TrainSettings

    settings, out = _captured_settings(capsys, monkeypatch, labels, "--out", tmp_path / "m", "--no-clean")
    library = TrainSettings()
    assert (settings.steps, settings.learning_rate, settings.synthetic_fraction) == (
        library.steps, library.learning_rate, library.synthetic_fraction)
    assert (FROM_SCRATCH.steps, FROM_SCRATCH.learning_rate, FROM_SCRATCH.synthetic_fraction) == (4000, 2e-3, 0.0)
    assert settings.init is None and "(from a random network)" in out


def test_a_fine_tunes_phantom_share_counts_in_the_crop_share_check(capsys, labels, tmp_path):
    """--init's 25 % of phantoms plus --region-fraction 0.9 is over 1: the line says which share it counted."""
    model = silent_model_dir(tmp_path / "init")
    code, err = _run(capsys, "train", labels, "--out", tmp_path / "m", "--init", model, "--region-fraction", "0.9")
    assert code == 1 and err.count("\n") == 1
    assert "--synthetic-fraction (0.25) plus --region-fraction (0.9) must not exceed 1" in err
