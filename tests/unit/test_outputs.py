"""Writing a scan's set of outputs: all or nothing, one clear error, normal permissions."""

import os
import stat

import pytest

from spinelabel.errors import OutputError
from spinelabel.io.outputs import atomic_write_bytes, write_all_or_nothing


def _writer(payload: bytes):
    return lambda p: atomic_write_bytes(p, payload)


def test_outputs_get_the_permissions_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_the_same_name_for_two_outputs_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(OutputError, match="two outputs"):
        write_all_or_nothing([(tmp_path / "x", _writer(b"1")), (tmp_path / "x", _writer(b"2"))])
    assert list(tmp_path.iterdir()) == []


def test_a_folder_or_device_in_the_way_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        write_all_or_nothing([(tmp_path / "a.json", _writer(b"1")), (tmp_path / "taken", _writer(b"2"))])
    assert not (tmp_path / "a.json").exists()
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_write_bytes("/dev/null", b"x")


def test_a_failed_write_removes_the_outputs_already_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write") as info:
        write_all_or_nothing([(tmp_path / "a.json", _writer(b"1")), (blocker / "b.png", _writer(b"2"))])
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_failed_write_keeps_the_earlier_outputs_of_a_run_before_it(tmp_path):
    (tmp_path / "a.json").write_bytes(b"earlier")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        write_all_or_nothing([(tmp_path / "a.json", _writer(b"new")), (blocker / "b.png", _writer(b"2"))])
    assert (tmp_path / "a.json").read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "file"]  # nothing staged left


def test_a_failed_rename_puts_back_the_outputs_already_replaced(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_bytes(b"earlier a")
    (tmp_path / "c.nii.gz").write_bytes(b"earlier c")
    replace = os.replace

    def c_refused(src, dst):  # as a file made immutable (chattr +i)
        if os.fspath(dst) == os.fspath(tmp_path / "c.nii.gz"):
            raise PermissionError(1, "Operation not permitted")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", c_refused)
    writers = [(tmp_path / name, _writer(b"new")) for name in ("a.json", "b.png", "c.nii.gz")]
    with pytest.raises(OutputError, match="Operation not permitted") as info:
        write_all_or_nothing(writers)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "c.nii.gz") in message and ".spinelabel-" not in message
    assert (tmp_path / "a.json").read_bytes() == b"earlier a"  # put back
    assert not (tmp_path / "b.png").exists()  # new, with no earlier file: removed
    assert (tmp_path / "c.nii.gz").read_bytes() == b"earlier c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "c.nii.gz"]


def test_a_failed_write_is_reported_under_the_target_name_not_the_staged_one(tmp_path):
    from spinelabel.io.outputs import atomic_write

    def disk_full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError) as info:
        write_all_or_nothing([(tmp_path / "a.json", _writer(b"1")), (tmp_path / "b.png", lambda p: atomic_write(p, disk_full))])
    assert str(info.value) == f"cannot write {tmp_path / 'b.png'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_outputs_in_several_folders_are_written_together(tmp_path):
    writers = [(tmp_path / "json" / "a.json", _writer(b"1")), (tmp_path / "png" / "a.png", _writer(b"2"))]
    write_all_or_nothing(writers)
    assert (tmp_path / "json" / "a.json").read_bytes() == b"1" and (tmp_path / "png" / "a.png").read_bytes() == b"2"
    assert [p.name for p in (tmp_path / "json").iterdir()] == ["a.json"]  # the staging folder is gone


def test_each_output_is_staged_under_a_hidden_name_that_ends_as_its_target(tmp_path):
    seen = []

    def record(p):
        seen.append(p)
        atomic_write_bytes(p, b"x")

    write_all_or_nothing([(tmp_path / "a.nii.gz", record)])
    (staged,) = seen
    assert staged.name == ".a.nii.gz" and staged.parent.parent.name.startswith(".spinelabel-")


def test_an_interrupt_right_after_a_rename_still_puts_the_earlier_file_back(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_bytes(b"earlier")
    replace = os.replace

    def interrupted(src, dst):  # Ctrl+C lands after the rename, before the writer notes it
        replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_all_or_nothing([(tmp_path / "a.json", _writer(b"new")), (tmp_path / "b.png", _writer(b"new"))])
    monkeypatch.setattr(os, "replace", replace)
    assert (tmp_path / "a.json").read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize("name", ["", "."])
def test_an_empty_name_is_refused(tmp_path, name):
    from pathlib import Path

    with pytest.raises(OutputError):
        atomic_write_bytes(Path(name), b"x")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_commit_comes_after_it(tmp_path, signame):
    """Ctrl+C or SIGTERM while the outputs are renamed and the staging folder removed: a handler that raised inside
    ``shutil.rmtree`` surfaced as an unrelated OSError (a traceback, exit status 1). The commit finishes, then the
    signal is handled as it would have been."""
    import signal

    class Stopped(BaseException):
        pass

    def stop(signum, frame):
        raise Stopped(signum)

    number = getattr(signal, signame)
    previous = signal.signal(number, stop)
    try:
        with pytest.raises(Stopped):
            write_all_or_nothing([(tmp_path / "a.json", _writer(b"1")), (tmp_path / "b.png", _writer(b"2"))],
                                 before_replace=lambda: signal.raise_signal(number))
        assert signal.getsignal(number) is stop  # the handler is back
    finally:
        signal.signal(number, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.png"]  # all written, nothing staged left


def test_an_output_folder_that_cannot_be_written_is_refused_by_the_scan_checks(tmp_path):
    from spinelabel.io.outputs import check_scan_outputs

    (tmp_path / "afile").write_text("a file, not a folder")
    with pytest.raises(OutputError, match="afile is a file, not a folder"):
        check_scan_outputs(json=tmp_path / "ok.json", overlay=tmp_path / "afile" / "x.png")
    check_scan_outputs(json=tmp_path / "new" / "ok.json")  # a folder still to be made: fine


def test_a_read_only_output_folder_is_refused_by_the_scan_checks(tmp_path, monkeypatch):
    from spinelabel.io.outputs import check_scan_outputs

    (tmp_path / "ro").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path / "ro") else real_access(p, mode, **kw))
    with pytest.raises(OutputError, match=r"ro is not writable \((permission denied|read-only file system)\)"):
        check_scan_outputs(json=tmp_path / "ro" / "x.json")


def test_a_result_with_a_value_that_is_no_number_is_refused_and_nothing_is_written(tmp_path):
    import numpy as np

    from spinelabel.io.outputs import write_json
    from spinelabel.results import LabelResult, Vertebra

    result = LabelResult("lumbar", "m", "1", [Vertebra("L5", np.array([1.0, 2.0, float("nan")]), np.zeros(3), 0.9)])
    with pytest.raises(OutputError, match="no finite number"):
        write_json(result, "scan.nii.gz", tmp_path / "scan.json")
    assert list(tmp_path.iterdir()) == []
    write_json(LabelResult("lumbar", "m", "1", [Vertebra("L5", np.ones(3), np.zeros(3), 0.9)]), "s", tmp_path / "a.json")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
