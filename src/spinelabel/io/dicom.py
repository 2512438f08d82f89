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

DICOM Part 10 files (with the "DICM" preamble) and bare datasets are read
(:mod:`spinelabel.io.dicom_files`); other files in a folder are skipped
silently. A file that is DICOM but damaged (truncated)
is an error, never silently dropped: a missing slice would shift anatomy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, InputError, one_line
from ..geometry import Volume, lps_to_ras
from ..limits import check_enough_slices
from ..warning_codes import LabelWarning
from .dicom_files import read_dicom
from .dicom_pixels import PIXEL_KEYWORDS, DicomSlice, check_sizes, read_pixels, shown
from .dicom_repair import fill_missing, grid_index, invert_monochrome1, missing_slices_warning
from .dicom_stacks import PER_FRAME, STACK_KEYWORDS, as_text, choose_stack, has_duplicates
from .nifti import is_nifti_path

#: Largest difference between direction cosines still counted as one orientation.
ORIENTATION_TOL = 1e-3
#: The ImageType value of scout images (PS3.3 C.7.6.1.1.2, C.8.3.1.1.1): never a series to label or train on.
LOCALIZER = "LOCALIZER"
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
        float32 with the rescale applied (:func:`.dicom_pixels.read_pixels`). MONOCHROME1
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
    check_sizes(ordered, affine_lps, where, int(grid[-1]) + 1)  # from the headers, before any pixel is allocated
    return _read_volume(ordered, affine_lps, grid, uid), _series_info(uid, ordered, warnings)


def _read_volume(ordered: list[DicomSlice], affine_lps: np.ndarray, grid: np.ndarray, uid: str) -> Volume:
    """The slices' pixels as a Volume: in displayed polarity, missing slices filled in (:mod:`.dicom_repair`)."""
    data, rescale = read_pixels(ordered)
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
    """The dataset of a DICOM file (large values deferred), or None when it is not DICOM."""
    from pydicom.errors import InvalidDicomError

    try:
        return read_dicom(path, defer_size=1024)
    except InvalidDicomError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {one_line(exc)}") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"corrupt DICOM file {path}: {one_line(exc)}") from exc


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in PIXEL_KEYWORDS)


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
        series_uid = series_uid.strip()  # pasted with a space or a line end from a viewer's tag list
        if series_uid not in groups:
            raise InputError(f"series {series_uid} not found in {where}; available: {listing}")
        return series_uid, []
    if len(groups) == 1:
        return next(iter(groups)), []
    sagittal = [uid for uid, members in groups.items() if _is_sagittal_stack(members)]
    if len(sagittal) != 1:
        raise InputError(f"{len(groups)} image series in {where}; choose one with --series UID: {listing}")
    others = "; ".join(summary for uid, summary in summaries.items() if uid != sagittal[0])
    return sagittal[0], [
        LabelWarning(
            "series-chosen",
            f"{len(groups)} image series in {where}: labeled the only sagittal one, "
            f"{summaries[sagittal[0]]} (others: {others}; --series UID picks another)",
        )
    ]


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


def _slices_of(path: Path, ds: Any) -> list[DicomSlice]:
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
        DicomSlice(
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


def _frames_of(path: Path, ds: Any) -> list[DicomSlice]:
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
            DicomSlice(
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


def _stack_value(s: DicomSlice, keyword: str) -> str:
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
        raise InputError(f"{path}: malformed DICOM tag {keyword}: {shown(value)} (expected a number)") from None
    if not np.isfinite(out):
        raise InputError(f"{path}: malformed DICOM tag {keyword}: {shown(value)} (expected a finite number)")
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
    slices: list[DicomSlice], uid: str, stack: str | None = None
) -> tuple[list[DicomSlice], np.ndarray, np.ndarray, list[LabelWarning]]:
    """Keep one stack, sort its slices along their normal and build the voxel -> LPS affine.

    Returns
    -------
    ordered : list of DicomSlice
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
    slices: list[DicomSlice], positions: np.ndarray, uid: str, stack: str | None = None
) -> tuple[list[DicomSlice], list[LabelWarning]]:
    """The slices of one stack where several share the positions (``dicom_stacks.choose_stack``), and warnings.

    ``positions``: each slice's position along the normal (mm). The header
    values that tell stacks apart are read only when two slices share one.
    """
    if not has_duplicates(positions, DUPLICATE_TOL_MM):
        return slices, []
    values = {k: [_stack_value(s, k) for s in slices] for k in STACK_KEYWORDS}
    keep, warnings = choose_stack(positions, values, uid, DUPLICATE_TOL_MM, stack)
    return [slices[i] for i in keep], warnings


def _check_consistent(slices: list[DicomSlice], uid: str) -> None:
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


def _direction_cosines(s: DicomSlice) -> tuple[np.ndarray, np.ndarray]:
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
        warnings.append(
            LabelWarning(
                "irregular-spacing",
                f"irregular slice spacing: steps from {steps.min():.3g} to {steps.max():.3g} mm; "
                f"using the median {median:.3g} mm (positions of some slices are approximate)",
            )
        )
    in_plane = float(np.linalg.norm(step - (step @ normal) * normal))
    if in_plane > 0.01 * median:
        warnings.append(
            LabelWarning(
                "sheared-grid",
                f"slices are offset in-plane by {in_plane:.3g} mm per slice (gantry tilt?): sheared grid",
            )
        )
    return warnings


# ----------------------------------------------------------------------------
# series identity


def _series_info(uid: str, ordered: list[DicomSlice], warnings: list[LabelWarning]) -> DicomSeriesInfo:
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
