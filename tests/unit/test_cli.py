"""CLI behaviour on bad input: one clear line, non-zero exit, never a traceback."""

import json

import nibabel as nib
import numpy as np
import pytest

from spinelabel.cli import main
from spinelabel.geometry import Volume
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.testing.dummy import silent_model_dir


@pytest.fixture(scope="module")
def silent_model(tmp_path_factory):
    """A tiny real model directory whose network never fires (head bias -10)."""
    return silent_model_dir(tmp_path_factory.mktemp("model"))


def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else affine), str(path))
    return path


def _run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code, err, fragment):
    assert code == 1
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("spinelabel: error: ") and fragment in lines[0], lines[0]


def test_missing_file(capsys, silent_model, tmp_path):
    code, _, err = _run(capsys, "label", str(tmp_path / "nope.nii.gz"), "--model", silent_model)
    _assert_one_line_error(code, err, "no such file or folder")


def test_empty_folder(capsys, silent_model, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "label", str(tmp_path / "empty"), "--model", silent_model)
    _assert_one_line_error(code, err, "empty")


def test_corrupt_nifti(capsys, silent_model, tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08 this is not a gzip stream")
    code, _, err = _run(capsys, "label", str(bad), "--model", silent_model)
    _assert_one_line_error(code, err, "bad.nii.gz")


def test_axial_series_rejected(capsys, silent_model, tmp_path):
    path = _nifti(tmp_path / "axial.nii.gz", np.random.rand(100, 100, 12), np.diag([0.8, 0.8, 4.0, 1.0]))
    code, _, err = _run(capsys, "label", str(path), "--model", silent_model)
    _assert_one_line_error(code, err, "not a sagittal series")


def test_nan_image(capsys, silent_model, tmp_path):
    path = _nifti(tmp_path / "nan.nii.gz", np.full((20, 60, 60), np.nan))
    code, _, err = _run(capsys, "label", str(path), "--model", silent_model)
    _assert_one_line_error(code, err, "NaN")


def test_2d_image(capsys, silent_model, tmp_path):
    path = _nifti(tmp_path / "flat.nii.gz", np.random.rand(1, 100, 100))
    code, _, err = _run(capsys, "label", str(path), "--model", silent_model)
    _assert_one_line_error(code, err, "2D")


def test_two_series_in_one_folder(capsys, silent_model, tmp_path):
    for name in ("a", "b"):
        vol = Volume(np.random.rand(40, 40, 5).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
        write_dicom_series(vol, tmp_path / "study" / name, series_description=f"series {name}")
    code, _, err = _run(capsys, "label", str(tmp_path / "study"), "--model", silent_model)
    _assert_one_line_error(code, err, "--series")


def test_a_series_of_two_stacks_is_refused_pointing_to_stack(capsys, silent_model, tmp_path, write_two_stacks):
    write_two_stacks(tmp_path / "dixon")
    code, _, err = _run(capsys, "label", str(tmp_path / "dixon"), "--model", silent_model)
    _assert_one_line_error(code, err, "name one with --stack")


def test_a_stack_name_that_fits_no_stack_is_one_line(capsys, silent_model, tmp_path, write_two_stacks):
    write_two_stacks(tmp_path / "dixon")
    out = tmp_path / "out.json"
    code, _, err = _run(capsys, "label", str(tmp_path / "dixon"), "--model", silent_model, "--stack", "OP", "-o", str(out))
    _assert_one_line_error(code, err, "--stack 'OP' names none or several of the 2 stacks")
    assert not out.exists()


def test_non_spine_image_says_nothing_found(capsys, silent_model, tmp_path):
    path = _nifti(tmp_path / "noise.nii.gz", np.random.default_rng(0).random((30, 80, 80)))
    code, _, err = _run(capsys, "label", str(path), "--model", silent_model, "-o", str(tmp_path / "out.json"))
    _assert_one_line_error(code, err, "no vertebrae found")
    assert not (tmp_path / "out.json").exists()  # nothing invented, nothing half-written
    # the grid the header gives is named: a wrong voxel size or orientation shows in the refusal itself
    assert "[image of 30 x 80 x 80 voxels of 1 x 1 x 1 mm, voxel axes toward R, A, S (from the header)]" in err


def test_a_field_of_view_too_small_names_the_voxel_size(capsys, silent_model, tmp_path):
    """A scan whose header says 0.1 mm voxels was refused without the numbers that show the header is wrong."""
    path = _nifti(tmp_path / "small.nii.gz", np.ones((20, 300, 300)), np.diag([0.1, 0.1, 0.1, 1.0]))
    code, _, err = _run(capsys, "label", str(path), "--model", silent_model, "-o", str(tmp_path / "out.json"))
    _assert_one_line_error(code, err, "field of view too small for a spine image (30 x 30 mm sagittal; image of "
                           "20 x 300 x 300 voxels of 0.1 x 0.1 x 0.1 mm")
    assert "wrong voxel size in the header?" in err and not (tmp_path / "out.json").exists()


def test_batch_goes_on_and_summarises_failures(capsys, silent_model, tmp_path):
    noise = _nifti(tmp_path / "noise.nii.gz", np.random.default_rng(0).random((30, 80, 80)))
    code, out, err = _run(
        capsys, "label", str(tmp_path / "missing.nii.gz"), str(noise), "--model", silent_model,
        "--output-dir", str(tmp_path / "out"), "--quiet",
    )
    assert code == 1
    failed = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 2 and "missing.nii.gz" in failed[0] and "no vertebrae found" in failed[1]
    assert "Traceback" not in err


@pytest.mark.parametrize("stack, reason", [("OP", "names none or several of the 2 stacks"), ("W", "no vertebrae found")])
def test_batch_mode_reads_the_stack_named_for_every_item(capsys, silent_model, tmp_path, write_two_stacks, stack, reason):
    """``--stack`` reaches each batch item: a name that fits no stack fails there; ``W`` is read, and the silent
    network then finds nothing in it (not the "several stacks" refusal)."""
    write_two_stacks(tmp_path / "dixon")
    code, _, err = _run(
        capsys, "label", str(tmp_path / "dixon"), "--model", silent_model, "--stack", stack,
        "--output-dir", str(tmp_path / "out"), "--quiet",
    )
    (failed,) = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert code == 1 and reason in failed and "Traceback" not in err


@pytest.mark.parametrize("stack, reason", [(None, "name one with --stack"), ("W", "no vertebrae found")])
def test_pacs_label_reads_the_stack_named(capsys, silent_model, tmp_path, monkeypatch, write_two_stacks, stack, reason):
    """``spinelabel pacs label --stack`` reaches the retrieved series (the one path, ``pacs.label_series``): without
    it a two-stack series is refused as such; with ``W`` it is read, and the silent network finds nothing in it."""
    from spinelabel import pacs
    from spinelabel.pacs_query import SeriesInfo

    def one_series(client, study_uid, sagittal_only=True):
        return [SeriesInfo(study_uid, "1.2.3", "MR", "DIXON SAG", 7, 10, "sagittal")]

    def retrieve(client, study_uid, series_uid, folder):
        write_two_stacks(folder)
        return sorted(folder.iterdir())

    monkeypatch.setattr(pacs, "find_series", one_series)
    monkeypatch.setattr(pacs, "retrieve_series", retrieve)
    args = ["pacs", "label", "1.2", "--model", silent_model, "--url", "http://127.0.0.1:9/dicom-web",
            "--output-dir", str(tmp_path / "out")] + (["--stack", stack] if stack else [])  # fmt: skip
    code, _, err = _run(capsys, *args)
    assert code == 1 and reason in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.json"))


def test_unknown_region_is_a_usage_error(capsys, silent_model, tmp_path):
    path = _nifti(tmp_path / "x.nii.gz", np.random.rand(20, 60, 60))
    code, _, err = _run(capsys, "label", str(path), "--region", "elbow", "--model", silent_model)
    assert code == 2 and "unknown region" in err


def test_corrupt_model_weights(capsys, silent_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(silent_model, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["sha256"] = "0" * 64
    (broken / "config.json").write_text(json.dumps(cfg))
    path = _nifti(tmp_path / "x.nii.gz", np.random.rand(20, 60, 60))
    code, _, err = _run(capsys, "label", str(path), "--model", str(broken))
    _assert_one_line_error(code, err, "corrupt")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["label"], "Missing argument"),
        (["label", "--bogus"], "No such option"),
        (["nonsense"], "No such command"),
        (["train", "x.csv", "--out", "m", "--steps", "abc"], "Invalid value for '--steps'"),
        (["train", "x.csv", "--out", "m", "--steps", "0"], "--steps"),
        (["train", "x.csv", "--out", "m", "--synthetic-scans", "2000000000"], "--synthetic-scans"),
        (["synth", "out", "--n", "2000000000"], "--n"),
        (["evaluate", "a", "b", "--radius", "abc"], "Invalid value for '--radius'"),
        (["evaluate", "a", "b", "--radius", "-5"], "--radius"),
    ],
)
def test_usage_errors_give_a_usage_message_and_exit_2_without_a_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "Usage:" in err


def test_version(capsys):
    from spinelabel import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"spinelabel {__version__}"


def test_region_names_are_read_in_any_case_and_auto_only_where_it_applies(capsys):
    from spinelabel.cli import check_region

    assert check_region(" Lumbar ") == "lumbar" and check_region("AUTO") == "auto"
    assert check_region("Cervical", auto=False) == "cervical"
    assert main(["train", "x.csv", "--out", "m", "--region", "auto"]) == 2
    assert "auto is for labeling; choose one region: lumbar" in capsys.readouterr().err
    assert main(["synth", "out", "--region", "elbow"]) == 2
    assert "unknown region 'elbow'" in capsys.readouterr().err


def test_the_console_command_exits_with_mains_status_and_ignores_a_late_ctrl_c(monkeypatch):
    import signal

    from spinelabel import cli

    monkeypatch.setattr(cli, "main", lambda: 3)
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as info:
            cli.console_main()
        assert info.value.code == 3 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_count_from_options_are_given_once_or_once_per_link_of_the_chain():
    """``label --count-from``: each of its options holds for every link when given once, else is paired by order."""
    import click

    from spinelabel.cli import _counting_links

    from pathlib import Path

    neck, thoracic = Path("neck/"), Path("thoracic/")
    assert _counting_links([], [], []) == []
    assert _counting_links([neck], ["1.2"], []) == [(neck, "1.2", None)]
    assert _counting_links([neck, thoracic], [], ["W"]) == [(neck, None, "W"), (thoracic, None, "W")]
    # two series of one study folder; one series of one folder of two links; an empty value for a link without one
    assert _counting_links([neck], ["1.2", "1.3"], []) == [(neck, "1.2", None), (neck, "1.3", None)]
    assert _counting_links([neck, neck], ["1.2"], []) == [(neck, "1.2", None), (neck, "1.2", None)]
    assert _counting_links([neck, thoracic], ["1.2", ""], []) == [(neck, "1.2", None), (thoracic, None, None)]
    with pytest.raises(click.UsageError, match="names one series: give it once per --count-from"):
        _counting_links([neck, thoracic], ["1.2"], [])
    with pytest.raises(click.UsageError, match="--count-from-stack is given 2 times for a chain of 3"):
        _counting_links([neck, thoracic, neck], [], ["A", "B"])
    with pytest.raises(click.UsageError, match="give --count-from too"):
        _counting_links([], ["1.2"], [])
