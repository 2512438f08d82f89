"""Image input: one entry point, :func:`load_image`, for NIfTI files and DICOM series.

nibabel and pydicom are imported only when a file is read, so importing this
package (and starting the command line) stays fast.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import InputError
from .nifti import is_nifti_path

if TYPE_CHECKING:
    from ..geometry import Volume
    from ..warning_codes import LabelWarning
    from .dicom import DicomSeriesInfo


@dataclass(frozen=True)
class LoadedImage:
    """An image read from disk.

    Attributes
    ----------
    volume : Volume
        Data of shape (I, J, K) (float32, or integers of at most 16 bits,
        with the rescale to real-world values in ``volume.rescale`` where it
        is not applied; see the readers) and voxel -> RAS affine. For DICOM,
        I = column, J = row, K = slice (sorted along the slice normal; a slice
        missing from the series keeps its place, filled in).
    source : str
        Printable description: the NIfTI path, or
        ``DICOM series <SeriesInstanceUID> (<n> files in <folder>)``.
    kind : {"nifti", "dicom"}
    dicom : DicomSeriesInfo or None
        UIDs and per-slice references of a DICOM series; None for NIfTI.
    warnings : tuple of LabelWarning
        The reader's warnings (for DICOM, those of ``dicom.warnings``):
        irregular or missing slices, a sheared grid, NIfTI forms that disagree.
    """

    volume: Volume
    source: str
    kind: Literal["nifti", "dicom"]
    dicom: DicomSeriesInfo | None = None
    warnings: tuple[LabelWarning, ...] = ()


def load_image(
    inputs: Sequence[str | Path] | str | Path, series_uid: str | None = None, stack: str | None = None
) -> LoadedImage:
    """Read one image: a NIfTI file, a DICOM folder, or the DICOM files of a series.

    Parameters
    ----------
    inputs : sequence of str or Path
        One ``.nii``/``.nii.gz`` file; or one or more DICOM folders/files.
    series_uid : str, optional
        SeriesInstanceUID to pick when the DICOM inputs hold several series.
    stack : str, optional
        The stack to read when the DICOM series holds several at the same
        slice positions (Dixon water and fat, echoes; ``load_dicom``).

    Raises
    ------
    InputError
        Missing path, empty folder, mixed NIfTI and DICOM, several NIfTI
        files, or any problem reading the image (see the loaders).
    """
    paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    _check_paths(paths)
    niftis = [p for p in paths if p.is_file() and is_nifti_path(p)]
    if niftis:
        return _load_nifti_input(paths, series_uid, stack)
    from .dicom import load_dicom

    volume, info = load_dicom(paths, series_uid=series_uid, stack=stack)
    return LoadedImage(volume, describe_dicom(info, paths), "dicom", info, tuple(info.warnings))


def describe_dicom(info: DicomSeriesInfo, inputs: Sequence[Path]) -> str:
    """``DICOM series <UID> (<n> files in <folder>)`` for messages and result files."""
    files = sorted(set(info.files))
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        folder = str(inputs[0])
    else:
        folder = os.path.commonpath([str(f.parent) for f in files]) if files else "?"
    return f"DICOM series {info.series_instance_uid} ({len(files)} files in {folder})"


#: What :func:`describe_dicom` writes, read back: the SeriesInstanceUID and the folder.
DICOM_DESCRIPTION = re.compile(r"^DICOM series (?P<uid>\S*).*\(\d+ files? in (?P<folder>.+)\)\s*$")


def parse_dicom_description(text: str) -> tuple[str, str] | None:
    """(SeriesInstanceUID, folder) of a :func:`describe_dicom` text (a result's ``input``); None for other texts."""
    match = DICOM_DESCRIPTION.match(text.strip())
    return (match.group("uid"), match.group("folder")) if match else None


def _check_paths(paths: list[Path]) -> None:
    """InputError for no input, a missing path, one the system will not look at, or an empty folder."""
    if not paths:
        raise InputError("no input image given")
    for p in paths:
        try:
            mode = os.stat(p).st_mode
            empty = stat.S_ISDIR(mode) and not any(f.is_file() for f in p.rglob("*"))
        except (FileNotFoundError, NotADirectoryError):
            raise InputError(f"no such file or folder: {p}") from None
        except OSError as exc:  # a name too long, a folder the user may not search
            raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
        if empty:
            raise InputError(f"folder is empty: {p}")


def _load_nifti_input(paths: list[Path], series_uid: str | None, stack: str | None = None) -> LoadedImage:
    """The single NIfTI input, or InputError for a mix or several files."""
    from .nifti import read_nifti

    if len(paths) > 1:
        if all(p.is_file() and is_nifti_path(p) for p in paths):
            raise InputError(
                f"one NIfTI file per image, got {len(paths)}: label them one at a time or use --output-dir"
            )
        raise InputError("mixed NIfTI and DICOM inputs: give one NIfTI file, or the DICOM folder/files of one series")
    if series_uid is not None:
        raise InputError(f"--series selects a DICOM series, but {paths[0]} is a NIfTI file")
    if stack is not None:
        raise InputError(f"--stack selects a stack of a DICOM series, but {paths[0]} is a NIfTI file")
    volume, warnings = read_nifti(paths[0])
    return LoadedImage(volume, str(paths[0]), "nifti", None, tuple(warnings))


__all__ = ["LoadedImage", "describe_dicom", "load_image", "parse_dicom_description"]
