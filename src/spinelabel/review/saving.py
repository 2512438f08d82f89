"""Saving a review: the result JSON and, for a DICOM input, its SR and GSPS: all of them, or none.

``io.outputs.write_all_or_nothing`` writes the three into a hidden folder
beside the results first, then renames them into place, the JSON last; when a
rename fails, the files already replaced are put back, so the three never
disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.outputs import json_bytes
from .documents import digest
from .edits import result_of

if TYPE_CHECKING:
    from ..io import LoadedImage


def _writers(json_path: Path, name: str, doc: dict[str, Any], payload: bytes, loaded: LoadedImage
             ) -> list[tuple[Path, Callable[[Path], None]]]:
    """``(target, write)`` pairs for ``io.outputs.write_all_or_nothing``, the JSON last (``payload``: its bytes)."""
    from ..io.outputs import atomic_write_bytes

    writers: list[tuple[Path, Callable[[Path], None]]] = []
    if loaded.dicom is not None:
        from ..io.dicom_label_write import write_gsps, write_sr

        result, info = result_of(doc), loaded.dicom
        events = (doc.get("review") or {}).get("events") or [{}]
        reviewer = str(events[-1].get("reviewer") or "")  # who confirmed: the SR is verified by them, the GSPS theirs
        writers.append((json_path.parent / f"{name}.sr.dcm", functools.partial(write_sr, result, info, reviewer=reviewer)))
        # a review confirms every name: no "?" in the GSPS
        writers.append((json_path.parent / f"{name}.gsps.dcm",
                        functools.partial(write_gsps, result, info, confirmed=True, reviewer=reviewer)))
    writers.append((json_path, functools.partial(atomic_write_bytes, payload=payload)))
    return writers


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
    from ..io.outputs import write_all_or_nothing

    payload = json_bytes(doc)
    write_all_or_nothing(_writers(json_path, name, doc, payload, loaded))
    return digest(payload)


__all__ = ["json_bytes", "save_review"]
