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


@pytest.mark.parametrize("name", ["", "."])
def test_an_empty_name_is_refused(tmp_path, name):
    from pathlib import Path

    with pytest.raises(OutputError):
        atomic_write_bytes(Path(name), b"x")
