"""DICOM input: one image series into a Volume (writing a series: :mod:`spinelabel.io.dicom_write`).

Conventions (see docs/output-format.md)
---------------------------------------
The array of a series is indexed ``[column, row, slice]``:

- axis 0 = column index, along the row direction cosine ``X`` (IOP[0:3]),
- axis 1 = row index, along the column direction cosine ``Y`` (IOP[3:6]),
- axis 2 = slice, sorted by the projection of ImagePositionPatient on the
  slice normal ``n = X x Y``.

The voxel -> LPS affine has columns ``X * column_spacing``,
``Y * row_spacing``, the (median) step between consecutive slice positions
and the position of the first slice; it is converted to RAS with
:func:`spinelabel.geometry.lps_to_ras`. Slice spacing comes from the
positions, never from SliceThickness/SpacingBetweenSlices. Such a grid is
always right-handed.

Only DICOM Part 10 files (with the "DICM" preamble) are read; other files in
a folder are skipped silently. A file that is DICOM but damaged (truncated)
is an error, never silently dropped: a missing slice would shift anatomy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, InputError, one_line
from ..geometry import Rescale, Volume, lps_to_ras
from ..limits import check_enough_slices, check_image_size
from ..warning_codes import LabelWarning
from .dicom_repair import fill_missing, grid_index, invert_monochrome1, missing_slices_warning
from .dicom_stacks import PER_FRAME, STACK_KEYWORDS, as_text, choose_stack, has_duplicates
from .nifti import is_nifti_path

#: Largest difference between direction cosines still counted as one orientation.
ORIENTATION_TOL = 1e-3
#: Slices closer than this (mm) along the normal are duplicates.
DUPLICATE_TOL_MM = 0.01
#: Relative deviation of a slice step from the median that triggers a warning.
IRREGULAR_STEP = 0.10
GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
ENHANCED_UNSUPPORTED = "enhanced multi-frame DICOM not supported yet"


@dataclass
class DicomSeriesInfo:
    """Identity of a loaded series, for writing DICOM SR / GSPS that reference it.

    ``sop_instance_uids``, ``frame_numbers`` and ``files`` have one entry per
    slice, in slice order: index ``k`` is array axis 2 index ``k``. For a
    multi-frame (enhanced) file the SOP Instance UID repeats and
    ``frame_numbers`` gives the 1-based frame; for single-frame files the
    frame number is None.
    """

    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: list[str]
    sop_class_uid: str
    modality: str
    series_description: str
    patient_id: str
    warnings: list[LabelWarning] = field(default_factory=list)
    frame_numbers: list[int | None] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _Slice:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    path: Path
    dataset: Any  # pydicom Dataset (header; pixel data deferred)
    frame: int | None  # 0-based frame index, None for single-frame files
    ipp: np.ndarray  # (3,) ImagePositionPatient, LPS mm
    iop: np.ndarray  # (6,) row cosine then column cosine
    pixel_spacing: np.ndarray  # (2,) [row spacing, column spacing] mm
    size: tuple[int, int]  # (Rows, Columns)
    slope: float
    intercept: float


# ----------------------------------------------------------------------------
# reading


def load_dicom(
    paths: Sequence[str | Path] | str | Path, series_uid: str | None = None, stack: str | None = None
) -> tuple[Volume, DicomSeriesInfo]:
    """Read one DICOM image series into a Volume.

    Parameters
    ----------
    paths : sequence of str or Path
        One or more folders (searched recursively) and/or files.
    series_uid : str, optional
        SeriesInstanceUID to load when the inputs hold several image series.
    stack : str, optional
        The stack to read when the series holds several at the same slice
        positions (``dicom_stacks.pick_stack``: a header value as listed, a
        part of it, or an echo time).

    Returns
    -------
    volume : Volume
        Data of shape (Columns, Rows, n_slices) and affine voxel -> RAS mm.
        The data are integers (int8 to uint16) where they can be: with
        RescaleSlope 1 and whole-number intercepts, the rescaled integers;
        else, when every slice has the same positive slope and intercept, the
        stored integers with that map as the volume's ``rescale``. Otherwise
        float32 with the rescale applied (:func:`_voxel_type`). MONOCHROME1
        values are inverted, and slices missing from a regular grid are
        interpolated between their neighbours, with a warning
        (:mod:`.dicom_repair`).
    info : DicomSeriesInfo
        UIDs and per-slice references; ``warnings`` lists irregularities.

    Raises
    ------
    InputError
        Missing path, empty folder, no DICOM images, corrupt file, several
        series without ``series_uid`` (unless only one of them is sagittal:
        it is read, with a warning), a missing geometry tag.
        Non-numeric rescale values, pixel data shorter than Rows x Columns
        imply, an image beyond the limits of :mod:`spinelabel.limits`.
    GeometryError
        Fewer than 3 slices, mixed orientations or sizes, duplicate positions
        (several stacks at the same positions are told apart by
        :mod:`.dicom_stacks`: of several echoes the longest is read, with a
        warning in ``info.warnings``; other stacks are refused unless
        ``stack`` names one). InputError when ``stack`` names none of them.
    """
    inputs = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    files = _collect_files(inputs)
    where = _describe_inputs(inputs)
    headers = _read_headers(files, where)
    groups = _group_by_series(headers)
    uid, chosen = _choose_series(groups, series_uid, where)
    ordered, affine_lps, grid, warnings = _slice_geometry(
        [s for path, ds in groups[uid] for s in _slices_of(path, ds)], uid, stack
    )
    warnings = chosen + warnings
    _check_sizes(ordered, affine_lps, where, int(grid[-1]) + 1)  # from the headers, before any pixel is allocated
    return _read_volume(ordered, affine_lps, grid, uid), _series_info(uid, ordered, warnings)


def _read_volume(ordered: list[_Slice], affine_lps: np.ndarray, grid: np.ndarray, uid: str) -> Volume:
    """The slices' pixels as a Volume: in displayed polarity, missing slices filled in (:mod:`.dicom_repair`)."""
    data, rescale = _read_pixels(ordered)
    photometric = [str(s.dataset.get("PhotometricInterpretation", "")) for s in ordered]
    data = fill_missing(invert_monochrome1(data, photometric, f"series {uid}"), grid)
    return Volume(data, lps_to_ras(affine_lps), rescale)


def _collect_files(paths: list[Path]) -> list[Path]:
    """Every file named or found (recursively, sorted) under the given paths."""
    if not paths:
        raise InputError("no DICOM input given")
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise InputError(f"no such file or folder: {p}")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file())
            if not found:
                raise InputError(f"folder is empty: {p}")
            files.extend(found)
        else:
            files.append(p)
    return files


def _describe_inputs(paths: list[Path]) -> str:
    """The inputs for messages: the one path, or the first and a count."""
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more inputs"


def _read_headers(files: list[Path], where: str) -> list[tuple[Path, Any]]:
    """(path, dataset) of every DICOM image file; non-DICOM files are skipped."""
    headers, n_dicom = [], 0
    for path in files:
        ds = _read_header(path)
        if ds is None:
            continue
        n_dicom += 1
        if _has_pixels(ds):
            headers.append((path, ds))
        elif "Image Storage" in _sop_class_name(ds):
            raise InputError(f"corrupt DICOM file {path}: image without pixel data (truncated?)")
    if not headers:
        raise InputError(_nothing_found_message(files, where, n_dicom))
    return headers


def _read_header(path: Path) -> Any | None:
    """The dataset of a DICOM Part 10 file (large values deferred), or None."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size=1024)
    except InvalidDicomError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {one_line(exc)}") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"corrupt DICOM file {path}: {one_line(exc)}") from exc


#: The elements that hold an image's pixels.
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _sop_class_name(ds: Any) -> str:
    """The name of the SOP class ('MR Image Storage', ...), '' when unknown."""
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return str(getattr(uid, "name", "")) if uid else ""


def _nothing_found_message(files: list[Path], where: str, n_dicom: int) -> str:
    if n_dicom:
        return f"no DICOM images in {where} ({n_dicom} DICOM files without pixel data)"
    hint = ""
    if any(is_nifti_path(f) for f in files):
        hint = " (it holds NIfTI files: give the .nii/.nii.gz file itself)"
    elif len(files) == 1:
        hint = " (not a DICOM file; spinelabel reads DICOM and NIfTI .nii/.nii.gz: convert other formats to NIfTI)"
    return f"no DICOM files in {where}{hint}"


def _group_by_series(headers: list[tuple[Path, Any]]) -> dict[str, list[tuple[Path, Any]]]:
    """Image files grouped by SeriesInstanceUID, in first-seen order.

    Copies of one instance (same SOPInstanceUID, e.g. a series exported twice
    into one folder) count once.
    """
    groups: dict[str, list[tuple[Path, Any]]] = {}
    seen: set[str] = set()
    for path, ds in headers:
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if sop_uid and sop_uid in seen:
            continue
        seen.add(sop_uid)
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)"), []).append((path, ds))
    return groups


def _choose_series(
    groups: dict[str, list[tuple[Path, Any]]], series_uid: str | None, where: str
) -> tuple[str, list[LabelWarning]]:
    """The UID of the series to load, and a warning when it was chosen for the user.

    Of several series, the only sagittal one (sagittal or oblique sagittal
    images, at least 3) is chosen, with a warning that names the others: a
    study exported with its localizer and axial series is labeled without
    asking. Otherwise InputError listing the series.
    """
    summaries = {uid: _series_summary(uid, members) for uid, members in groups.items()}
    listing = "; ".join(summaries.values())
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(f"series {series_uid} not found in {where}; available: {listing}")
        return series_uid, []
    if len(groups) == 1:
        return next(iter(groups)), []
    sagittal = [uid for uid, members in groups.items() if _is_sagittal_stack(members)]
    if len(sagittal) != 1:
        raise InputError(f"{len(groups)} image series in {where}; choose one with --series UID: {listing}")
    others = "; ".join(summary for uid, summary in summaries.items() if uid != sagittal[0])
    return sagittal[0], [LabelWarning(
        "series-chosen",
        f"{len(groups)} image series in {where}: labeled the only sagittal one, "
        f"{summaries[sagittal[0]]} (others: {others}; --series UID picks another)",
    )]


def _is_sagittal_stack(members: list[tuple[Path, Any]]) -> bool:
    """Whether every image of a series is (oblique) sagittal and there are at least 3 of them."""
    n_images = sum(int(m.get("NumberOfFrames", 1) or 1) for _, m in members)
    return n_images >= 3 and all(_orientation_name(ds).endswith("sagittal") for _, ds in members)


def _series_summary(uid: str, members: list[tuple[Path, Any]]) -> str:
    """``UID 'description' (N images, sagittal)`` for the series listing (``sagittal, coronal, axial`` for a localizer)."""
    ds = members[0][1]
    n_images = sum(int(m.get("NumberOfFrames", 1) or 1) for _, m in members)
    description = str(ds.get("SeriesDescription", "") or "")
    names = ", ".join(dict.fromkeys(_orientation_name(m) for _, m in members))
    return f"{uid} '{description}' ({n_images} images, {names})"


def _orientation_name(ds: Any) -> str:
    """'sagittal', 'coronal', 'axial' (prefixed 'oblique' when tilted > ~11 deg) or 'unknown'."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None and "SharedFunctionalGroupsSequence" in ds:
        iop = _functional_value(
            [ds.SharedFunctionalGroupsSequence[0]], "PlaneOrientationSequence", "ImageOrientationPatient"
        )
    if iop is None or len(iop) != 6:
        return "unknown orientation"
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    axis = int(np.argmax(np.abs(normal)))
    name = ("sagittal", "coronal", "axial")[axis]
    return name if abs(normal[axis]) >= 0.98 * np.linalg.norm(normal) else f"oblique {name}"


# ----------------------------------------------------------------------------
# slices: geometry tags of single-frame files and of enhanced multi-frame frames


def _slices_of(path: Path, ds: Any) -> list[_Slice]:
    """The 2D images of one file."""
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise InputError(f"{path}: colour DICOM images are not supported")
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _frames_of(path, ds)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path}: {ENHANCED_UNSUPPORTED} (multi-frame file without functional groups)")
    for keyword in GEOMETRY_TAGS:
        if ds.get(keyword) in (None, "", []):
            raise InputError(f"{path}: missing DICOM tag {keyword} (needed for the image geometry)")
    return [
        _Slice(
            path=path,
            dataset=ds,
            frame=None,
            ipp=_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", path),
            iop=_floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path),
            pixel_spacing=_floats(ds.PixelSpacing, 2, "PixelSpacing", path),
            size=_size(ds, path),
            slope=_slope(ds.get("RescaleSlope"), path),
            intercept=_number(ds.get("RescaleIntercept"), 0.0, "RescaleIntercept", path),
        )
    ]


def _frames_of(path: Path, ds: Any) -> list[_Slice]:
    """The frames of an enhanced multi-frame file (plane position, orientation, pixel measures)."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(ds.PerFrameFunctionalGroupsSequence) != n_frames or "Rows" not in ds or "Columns" not in ds:
        raise InputError(f"{path}: {ENHANCED_UNSUPPORTED} (inconsistent functional groups)")
    slices = []
    for f in range(n_frames):
        groups = _frame_groups(ds, f)
        ipp = _functional_value(groups, "PlanePositionSequence", "ImagePositionPatient")
        iop = _functional_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _functional_value(groups, "PixelMeasuresSequence", "PixelSpacing")
        if ipp is None or iop is None or spacing is None:
            raise InputError(f"{path}: {ENHANCED_UNSUPPORTED} (no plane position/orientation/pixel measures per frame)")
        slope = _functional_value(groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional_value(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = slope if slope not in (None, "") else ds.get("RescaleSlope")
        intercept = intercept if intercept not in (None, "") else ds.get("RescaleIntercept")
        slices.append(
            _Slice(
                path=path,
                dataset=ds,
                frame=f,
                ipp=_floats(ipp, 3, "ImagePositionPatient", path),
                iop=_floats(iop, 6, "ImageOrientationPatient", path),
                pixel_spacing=_floats(spacing, 2, "PixelSpacing", path),
                size=_size(ds, path),
                slope=_slope(slope, path),
                intercept=_number(intercept, 0.0, "RescaleIntercept", path),
            )
        )
    return slices


def _frame_groups(ds: Any, frame: int) -> list[Any]:
    """The functional groups of one frame of an enhanced file: its per-frame group, then the shared one."""
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    return [g for g in (ds.PerFrameFunctionalGroupsSequence[frame], shared) if g is not None]


def _stack_value(s: _Slice, keyword: str) -> str:
    """One slice's value of a ``dicom_stacks.STACK_KEYWORDS`` element as text; per frame first in enhanced files."""
    value = None
    if s.frame is not None and keyword in PER_FRAME:
        value = _functional_value(_frame_groups(s.dataset, s.frame), *PER_FRAME[keyword])
    return as_text(s.dataset.get(keyword) if value is None else value)


def _functional_value(groups: list[Any], sequence: str, keyword: str) -> Any:
    """``groups[i].<sequence>[0].<keyword>`` from the first group that has it, else None."""
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


def _number(value: Any, default: float, keyword: str, path: Path) -> float:
    """A single-valued numeric tag as a finite float; ``default`` when absent or empty."""
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: malformed DICOM tag {keyword}: {_shown(value)} (expected a number)") from None
    if not np.isfinite(out):
        raise InputError(f"{path}: malformed DICOM tag {keyword}: {_shown(value)} (expected a finite number)")
    return out


def _slope(value: Any, path: Path) -> float:
    """RescaleSlope: 1 when absent, empty or 0 (a slope of 0 would blank the image)."""
    return _number(value, 1.0, "RescaleSlope", path) or 1.0


def _size(ds: Any, path: Path) -> tuple[int, int]:
    """(Rows, Columns), both positive integers."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise InputError(f"{path}: malformed DICOM tags Rows/Columns") from None
    if rows < 1 or columns < 1:
        raise InputError(f"{path}: image of {rows} x {columns} pixels (Rows/Columns must be positive)")
    return rows, columns


def _shown(value: Any) -> str:
    """A tag value for a message: repr, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _floats(value: Any, n: int, keyword: str, path: Path) -> np.ndarray:
    """A multi-valued numeric tag as a float array of length ``n``."""
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed DICOM tag {keyword}: {value!r}") from exc
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InputError(f"{path}: malformed DICOM tag {keyword}: {value!r} (expected {n} numbers)")
    return out


# ----------------------------------------------------------------------------
# geometry


def _slice_geometry(
    slices: list[_Slice], uid: str, stack: str | None = None
) -> tuple[list[_Slice], np.ndarray, np.ndarray, list[LabelWarning]]:
    """Keep one stack, sort its slices along their normal and build the voxel -> LPS affine.

    Returns
    -------
    ordered : list of _Slice
        The slices read, sorted along the normal: of several stacks at the
        same positions, the one :func:`_one_stack` keeps (``stack``: the one named).
    affine_lps : ndarray, shape (4, 4)
        Voxel (column, row, slice) -> LPS mm.
    grid : ndarray of int, shape (len(ordered),)
        Each slice's index along array axis 2: consecutive, or with holes
        where slices are missing from a regular grid (``dicom_repair.grid_index``).
    warnings : list of LabelWarning
        The stack choice first, then missing slices, irregular steps and sheared grids.
    """
    _check_consistent(slices, uid)  # one orientation: a localizer is refused before stacks are looked for
    row, col = _direction_cosines(slices[0])
    normal = np.cross(row, col)
    slices, stack_warnings = _one_stack(slices, np.array([s.ipp for s in slices]) @ normal, uid, stack)
    check_enough_slices(len(slices), f"series {uid}")
    ipp = np.array([s.ipp for s in slices])
    proj = ipp @ normal
    order = np.argsort(proj, kind="stable")
    steps = np.diff(proj[order])
    if steps.min() < DUPLICATE_TOL_MM:
        raise GeometryError(
            f"duplicate slice positions in series {uid} (several echoes, time points or stacks in one series?)"
        )
    grid = grid_index(steps, IRREGULAR_STEP)
    if grid is None:  # irregular, not holed: the median step, with a warning
        grid = np.arange(len(order))
    gap_steps = np.diff(grid).astype(float)
    step = np.median(np.diff(ipp[order], axis=0) / gap_steps[:, None], axis=0)
    row_spacing, column_spacing = slices[0].pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = row * column_spacing
    affine[:3, 1] = col * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = ipp[order[0]]
    missing = missing_slices_warning(grid, float(step @ normal))  # None without holes
    warnings = stack_warnings + ([missing] if missing else []) + _spacing_warnings(steps / gap_steps, step, normal)
    return [slices[i] for i in order], affine, grid, warnings


def _one_stack(
    slices: list[_Slice], positions: np.ndarray, uid: str, stack: str | None = None
) -> tuple[list[_Slice], list[LabelWarning]]:
    """The slices of one stack where several share the positions (``dicom_stacks.choose_stack``), and warnings.

    ``positions``: each slice's position along the normal (mm). The header
    values that tell stacks apart are read only when two slices share one.
    """
    if not has_duplicates(positions, DUPLICATE_TOL_MM):
        return slices, []
    values = {k: [_stack_value(s, k) for s in slices] for k in STACK_KEYWORDS}
    keep, warnings = choose_stack(positions, values, uid, DUPLICATE_TOL_MM, stack)
    return [slices[i] for i in keep], warnings


def _check_consistent(slices: list[_Slice], uid: str) -> None:
    """GeometryError unless all slices share orientation, size and pixel spacing."""
    first = slices[0]
    iops = np.array([s.iop for s in slices])
    if np.abs(iops - first.iop).max() > ORIENTATION_TOL:
        n = len({tuple(np.round(v, 3)) for v in iops})
        raise GeometryError(
            f"inconsistent ImageOrientationPatient in series {uid}: {n} orientations (localizer or several stacks?)"
        )
    if any(s.size != first.size for s in slices):
        raise GeometryError(f"slices of series {uid} differ in size (Rows/Columns)")
    if any(np.abs(s.pixel_spacing - first.pixel_spacing).max() > 1e-4 for s in slices):
        raise GeometryError(f"slices of series {uid} differ in PixelSpacing")
    if first.pixel_spacing.min() <= 0:
        raise GeometryError(f"series {uid}: PixelSpacing must be positive, got {list(first.pixel_spacing)}")


def _direction_cosines(s: _Slice) -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column direction cosines (LPS), shape (3,) each."""
    row, col = s.iop[:3], s.iop[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if min(norms) < 1e-6:
        raise GeometryError(f"{s.path}: ImageOrientationPatient has a zero vector")
    row, col = row / norms[0], col / norms[1]
    if abs(row @ col) > 1e-3:
        raise GeometryError(f"{s.path}: ImageOrientationPatient row and column directions are not perpendicular")
    return row, col


def _spacing_warnings(steps: np.ndarray, step: np.ndarray, normal: np.ndarray) -> list[LabelWarning]:
    """Warnings for irregular slice steps and for in-plane offsets (sheared grids)."""
    warnings = []
    median = float(np.median(steps))
    if np.abs(steps - median).max() > IRREGULAR_STEP * median:
        warnings.append(LabelWarning(
            "irregular-spacing",
            f"irregular slice spacing: steps from {steps.min():.3g} to {steps.max():.3g} mm; "
            f"using the median {median:.3g} mm (positions of some slices are approximate)",
        ))
    in_plane = float(np.linalg.norm(step - (step @ normal) * normal))
    if in_plane > 0.01 * median:
        warnings.append(LabelWarning(
            "sheared-grid", f"slices are offset in-plane by {in_plane:.3g} mm per slice (gantry tilt?): sheared grid"
        ))
    return warnings


# ----------------------------------------------------------------------------
# pixels and series identity

#: A value length of 0xFFFFFFFF: encapsulated (compressed) pixel data, whose size the header does not say.
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _check_sizes(ordered: list[_Slice], affine_lps: np.ndarray, where: str, n_slices: int) -> None:
    """InputError for a series beyond the size limits or pixel data shorter than the headers say.

    Everything here comes from the headers (pixel data are deferred), so a
    header claiming 60000 x 60000 pixels is refused before anything is allocated.
    """
    rows, columns = ordered[0].size
    check_image_size((columns, rows, n_slices), np.linalg.norm(affine_lps[:3, :3], axis=0), where)
    for path, ds in {s.path: s.dataset for s in ordered}.items():
        stored = _pixel_data_length(ds)
        needed = _native_pixel_bytes(ds, rows, columns)
        if stored is not None and needed is not None and stored < needed:
            raise InputError(
                f"corrupt DICOM file {path}: {stored} bytes of pixel data, but Rows x Columns "
                f"({rows} x {columns}) need {needed}"
            )


def _pixel_data_length(ds: Any) -> int | None:
    """Bytes of native pixel data as stored; None when unknown (compressed or absent)."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            element = ds.get_item(keyword, keep_deferred=True)  # the length, without reading the pixels
            length = getattr(element, "length", None)
            if length is None and getattr(element, "value", None) is not None:
                length = len(element.value)
            return None if length in (None, _UNDEFINED_LENGTH) else int(length)
    return None


def _native_pixel_bytes(ds: Any, rows: int, columns: int) -> int | None:
    """Bytes that uncompressed pixel data of this header need (None when the header cannot say)."""
    try:
        bits = int(ds.get("BitsAllocated", 16) or 16)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None
    if bits < 1:
        return None
    return (rows * columns * frames * bits + 7) // 8


def _transfer_syntax(ds: Any) -> tuple[str, bool]:
    """(name, is compressed) of a file's TransferSyntaxUID; a malformed UID is ('UID ...', False)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return "no TransferSyntaxUID", False
    try:
        return str(syntax.name), bool(syntax.is_compressed)
    except Exception:  # pydicom raises ValueError for a UID that is not a transfer syntax
        return f"unknown transfer syntax {_shown(str(syntax))}", False


def _read_pixels(ordered: list[_Slice]) -> tuple[np.ndarray, Rescale | None]:
    """Pixel data of shape (Columns, Rows, n_slices), of :func:`_voxel_type`, and the rescale still to apply.

    Each slice is written straight into the one preallocated array. A file's
    pixel data (the stored bytes and pydicom's decoded array, which the
    dataset would otherwise keep) are released after its last slice, so a
    series never sits in memory twice besides its array. Values beyond the
    integer type (beyond BitsStored) turn the array into float32 with every
    rescale applied (exact for what is already read).
    """
    rows, columns = ordered[0].size
    dtype, rescale = _voxel_type(ordered)
    out = np.empty((columns, rows, len(ordered)), dtype=dtype)
    last_use = {s.path: k for k, s in enumerate(ordered)}
    decoded: dict[Path, np.ndarray] = {}
    for k, s in enumerate(ordered):
        if s.path not in decoded:
            decoded = {s.path: _decode(s)}  # keep one file at a time in memory
        frames = decoded[s.path]
        plane = frames[s.frame] if frames.ndim == 3 else frames
        if plane.shape != (rows, columns):
            raise InputError(
                f"corrupt DICOM file {s.path}: pixel data of shape {plane.shape}, expected {(rows, columns)}"
            )
        slope, intercept = (1.0, 0.0) if rescale is not None else (s.slope, s.intercept)
        if out.dtype.kind in "iu" and not _fits(plane, intercept, out.dtype):
            out = out.astype(np.float32)
            if rescale is not None:
                rescale.apply_in_place(out[:, :, :k])
            rescale, slope, intercept = None, s.slope, s.intercept
        _store_plane(out[:, :, k], plane, slope, intercept)
        if last_use[s.path] == k:
            decoded = {}
            _release_pixel_data(s.dataset)
    return out, rescale


#: Integer voxel types a series may keep, smallest first (each at most
#: ``geometry.MAX_INT_VOXEL_BYTES`` bytes: half of float32 or less, and exact in float32).
_INT_VOXEL_TYPES = (np.uint8, np.int8, np.uint16, np.int16)


def _voxel_type(ordered: list[_Slice]) -> tuple[np.dtype, Rescale | None]:
    """The array type of a series and the rescale to record on the volume (None: applied while reading).

    1. A slope of 1 with whole-number intercepts maps stored integers to
       integers exactly: the rescaled integers, in the smallest type of
       ``_INT_VOXEL_TYPES`` that holds every value BitsStored and
       PixelRepresentation allow plus the intercepts.
    2. Else, when every slice has the same positive slope and intercept (a
       fractional slope, as Philips MR series carry): the stored integers, in
       the smallest type that holds them, and that map as the rescale.
    3. Otherwise (float pixel data, too wide a range, slices that differ):
       float32, with the rescale applied while reading.
    """
    first = ordered[0]
    if all(s.slope == 1.0 and s.intercept.is_integer() for s in ordered):
        intercepts = [int(s.intercept) for s in ordered]
        shifted = _stored_int_dtype(first.dataset, min(intercepts), max(intercepts))
        if shifted is not None:
            return shifted, None
    uniform = all(s.slope == first.slope and s.intercept == first.intercept for s in ordered)
    stored = _stored_int_dtype(first.dataset, 0, 0) if uniform and first.slope > 0 else None
    if stored is None:
        return np.dtype(np.float32), None
    return stored, Rescale(first.slope, first.intercept)


def _stored_int_dtype(ds: Any, shift_lo: int, shift_hi: int) -> np.dtype | None:
    """The smallest type of ``_INT_VOXEL_TYPES`` holding every stored integer plus a shift in [shift_lo, shift_hi].

    The stored range comes from BitsStored and PixelRepresentation; None for
    float pixel data, more than 16 bits or a range no type holds.
    """
    if "PixelData" not in ds:
        return None
    try:
        bits = int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (TypeError, ValueError):
        return None
    if not 1 <= bits <= 16:
        return None
    stored_lo, stored_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    lo, hi = stored_lo + shift_lo, stored_hi + shift_hi
    for t in _INT_VOXEL_TYPES:
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return np.dtype(t)
    return None


def _fits(plane: np.ndarray, intercept: float, dtype: np.dtype) -> bool:
    """Whether the integers ``plane + intercept`` fit ``dtype`` (False for float planes)."""
    if plane.dtype.kind not in "iu":
        return False
    info, stored = np.iinfo(dtype), np.iinfo(plane.dtype)
    if info.min <= stored.min + int(intercept) and stored.max + int(intercept) <= info.max:
        return True  # every value the stored type can hold fits: no pass over the plane
    return info.min <= int(plane.min()) + int(intercept) and int(plane.max()) + int(intercept) <= info.max


#: Rows of a plane rescaled at a time: float64 scratch of a few MB (a 2048-column plane:
#: 2 MB), not a whole-plane temporary that would stay in the heap after the read.
RESCALE_ROWS = 128


def _store_plane(target: np.ndarray, plane: np.ndarray, slope: float, intercept: float) -> None:
    """Write ``plane * slope + intercept`` (transposed) into ``target`` (float32 or integer).

    Without a rescale the stored values are cast directly (the same float32
    values as through float64: one rounding either way); with one, the
    arithmetic is done ``RESCALE_ROWS`` rows at a time, in float64 (or in
    int32 for an integer target: slope 1 and a whole-number intercept).
    """
    if slope == 1.0 and intercept == 0.0:
        target[...] = plane.T
        return
    for start in range(0, plane.shape[0], RESCALE_ROWS):
        rows = slice(start, start + RESCALE_ROWS)
        if target.dtype.kind in "iu":
            target[:, rows] = (plane[rows].astype(np.int32) + int(intercept)).T
            continue
        scaled = plane[rows].astype(np.float64)
        scaled *= slope
        scaled += intercept
        target[:, rows] = scaled.T


def _release_pixel_data(ds: Any) -> None:
    """Drop a dataset's pixel data and pydicom's cached decoded array (the header stays)."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)


def _decode(s: _Slice) -> np.ndarray:
    """The stored pixel array of a file: (Rows, Columns) or (frames, Rows, Columns)."""
    try:
        return np.asarray(s.dataset.pixel_array)
    except Exception as exc:  # decoder missing, truncated data, bad group 0028, unknown transfer syntax...
        name, compressed = _transfer_syntax(s.dataset)
        if compressed:
            raise InputError(
                f"cannot decode the compressed pixel data of {s.path} ({name}): {one_line(exc)}; "
                f"decompress the series first (for example with DCMTK's dcmdjpeg or gdcmconv --raw)"
            ) from exc
        raise InputError(
            f"corrupt DICOM file {s.path}: cannot read pixel data ({name}): {one_line(exc)}"
        ) from exc


def _series_info(uid: str, ordered: list[_Slice], warnings: list[LabelWarning]) -> DicomSeriesInfo:
    """Identity of the series; per-slice lists in the order along the normal (the slices read, not those filled in)."""
    ds = ordered[0].dataset

    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "")

    return DicomSeriesInfo(
        series_instance_uid=uid,
        study_instance_uid=text("StudyInstanceUID"),
        frame_of_reference_uid=text("FrameOfReferenceUID"),
        sop_instance_uids=[str(s.dataset.get("SOPInstanceUID", "") or "") for s in ordered],
        sop_class_uid=text("SOPClassUID"),
        modality=text("Modality"),
        series_description=text("SeriesDescription"),
        patient_id=text("PatientID"),
        warnings=list(warnings),
        frame_numbers=[None if s.frame is None else s.frame + 1 for s in ordered],
        files=[s.path for s in ordered],
    )


__all__ = ["ENHANCED_UNSUPPORTED", "DicomSeriesInfo", "load_dicom"]
