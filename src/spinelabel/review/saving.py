"""Saving a review: the result JSON and, for a DICOM input, its SR and GSPS: all of them, or none.

Every new file is written into a hidden temporary folder beside the results
first; the previous files are copied there too. Only then are the new files
renamed into place, the JSON last; when a rename fails, the files already
replaced are put back, so the three never disagree.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError
from .documents import digest
from .edits import result_of

if TYPE_CHECKING:
    from ..io import LoadedImage

#: Prefix of the temporary folder of a save: hidden, so no reader of the folder takes its files for results
#: (``reviewed.result_files`` passes hidden folders by). An interrupted save may leave it: harmless, and removable.
TEMP_PREFIX = ".spinelabel-review-"


def json_bytes(doc: dict[str, Any]) -> bytes:
    """The document as ``io.outputs.write_json`` writes it (indent 1, final newline).

    Raises
    ------
    OutputError
        A value is NaN or infinite: no JSON can hold it.
    """
    try:
        return (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    except ValueError:
        raise OutputError("the result holds a value that is no finite number (NaN or infinity): not written") from None


def _stage(
    json_path: Path, name: str, doc: dict[str, Any], payload: bytes, loaded: LoadedImage, tmp: Path
) -> list[tuple[Path, Path]]:
    """Write the new files into ``tmp`` (``payload``: the JSON's bytes); ``(new file, target)`` pairs, the JSON last."""
    from ..io.outputs import atomic_write_bytes, check_output_target

    writers: dict[str, Callable[[Path], None]] = {}
    if loaded.dicom is not None:
        from ..io.dicom_label_write import write_gsps, write_sr

        result, info = result_of(doc), loaded.dicom
        writers[".sr.dcm"] = functools.partial(write_sr, result, info)
        # a review confirms every name: no "?" in the GSPS
        writers[".gsps.dcm"] = functools.partial(write_gsps, result, info, confirmed=True)
    writers[".json"] = functools.partial(atomic_write_bytes, payload=payload)
    staged = []
    for suffix, write in writers.items():
        target = json_path if suffix == ".json" else json_path.parent / f"{name}{suffix}"
        check_output_target(target)
        write(tmp / f".new{suffix}")
        staged.append((tmp / f".new{suffix}", target))
    return staged


def _replace_all(staged: list[tuple[Path, Path]], tmp: Path) -> None:
    """Rename the new files into place; on a failure, put back every file replaced so far.

    Raises
    ------
    OutputError
        A previous file cannot be kept aside, or a new one not renamed into place.
    """
    backups: dict[Path, Path] = {}
    done: list[Path] = []
    target = staged[0][1]
    try:
        for n, (_, target) in enumerate(staged):
            if target.exists():
                backups[target] = Path(shutil.copy2(target, tmp / f".old{n}"))
        for new, target in staged:
            os.replace(new, target)
            done.append(target)
    except BaseException as exc:
        lost = _restore(done, backups)
        if not isinstance(exc, OSError):
            raise
        also = f"; and {', '.join(lost)} could not be put back: its files disagree now" if lost else ""
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}; nothing saved{also}") from None


def _restore(done: list[Path], backups: dict[Path, Path]) -> list[str]:
    """Put back the previous files of ``done`` (remove the new ones that had none); the names that could not be."""
    lost = []
    for target in reversed(done):
        try:
            if target in backups:
                os.replace(backups[target], target)
            else:
                target.unlink()
        except OSError:
            lost.append(target.name)
    return lost


def save_review(json_path: Path, name: str, doc: dict[str, Any], loaded: LoadedImage) -> str:
    """Write ``doc`` to ``json_path`` and, for a DICOM input, ``NAME.sr.dcm`` and ``NAME.gsps.dcm`` beside it.

    Returns
    -------
    str
        The digest of the JSON written (``documents.digest``).

    Raises
    ------
    OutputError
        Something cannot be written: then the previous files are as they were.
    """
    folder, payload = json_path.parent, json_bytes(doc)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=TEMP_PREFIX, ignore_cleanup_errors=True) as tmp:
            _replace_all(_stage(json_path, name, doc, payload, loaded, Path(tmp)), Path(tmp))
    except OSError as exc:
        raise OutputError(f"cannot save the review of {name} in {folder}: {exc.strerror or exc}") from None
    return digest(payload)


__all__ = ["TEMP_PREFIX", "json_bytes", "save_review"]
