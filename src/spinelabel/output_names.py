"""The output name of each input of a batch: ``NAME.json`` (and its overlay, label map, SR, GSPS) in one folder.

``spinelabel label --output-dir`` and ``spinelabel review --labels`` name a
scan's results the same way, so that the review page finds what ``label``
wrote: after the file or folder the user gave (not the target of a link), with
a "_" added while an earlier input of the same run has the name. ``label``
also passes over a name whose result in the folder is another input's (a
second export folder ``SAG_T2`` labeled in a later run must not replace the
first one's result). ``review`` does not: it finds a reviewed result by its
name even after the scans moved, and checks it against the image instead
(``review.documents``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["holds_another_input", "scan_name", "unique_names"]


def scan_name(inp: Path) -> str:
    """A visible output name for an input: its file or folder name without .nii(.gz), "scan" if it has none.

    An input named ``image.nii.gz`` (or a folder given as ``.``) takes its
    folder's name. The name is the one given: a link keeps its own name.
    """
    given = Path(os.path.abspath(inp))  # absolute, links not followed
    name = given.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name in ("image", "") and given.parent.name:
        name = given.parent.name
    return name.lstrip(".") or "scan"


def holds_another_input(json_path: Path, inp: Path) -> bool:
    """Whether ``json_path`` holds the result of an input other than ``inp``, as far as can be told from here.

    The result's ``input`` is a path (NIfTI) or ``io.describe_dicom``'s text
    (its folder). It is another input's only when that path exists from the
    current folder and is not ``inp`` (for a DICOM series read from a file,
    not ``inp``'s folder either). A result whose input cannot be found from
    here (scans moved, a relative path written from another folder) is not
    taken for another's; nor is a file that is missing, unreadable or not a
    result.
    """
    from .io import parse_dicom_description
    from .io.nifti import is_nifti_path
    from .io.outputs import existing_result

    doc = existing_result(json_path)
    source = doc.get("input") if doc is not None else None
    if not isinstance(source, str) or not source:
        return False
    dicom = parse_dicom_description(source)
    recorded = Path(dicom[1] if dicom else source)
    same = [Path(inp)]
    if dicom and os.path.isfile(inp) and not is_nifti_path(inp):
        same.append(Path(inp).parent)
    try:
        return recorded.exists() and not any(os.path.samefile(recorded, here) for here in same if here.exists())
    except OSError:  # a name the system refuses: nothing to tell
        return False


def unique_names(
    inputs: Sequence[Path], folder: Path | None = None, taken: Callable[[str, Path], bool] = lambda name, inp: False
) -> list[str]:
    """One name per input (:func:`scan_name`), "_" added while it is used by an earlier input, holds another
    input's result in ``folder`` (``NAME.json``; None: not looked at), or ``taken(name, input)`` says so."""
    names: list[str] = []
    for inp in inputs:
        name = scan_name(inp)
        while name in names or (folder is not None and holds_another_input(folder / f"{name}.json", inp)) or taken(name, inp):
            name += "_"
        names.append(name)
    return names
