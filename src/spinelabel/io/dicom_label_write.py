"""Spine labels to DICOM: write a result as an SR (TID 1500) and as a GSPS.

Both reference the sagittal slice nearest each vertebra (by the distance of
the point to each slice plane) with the point projected onto that slice in
pixel coordinates. The SR also stores the exact world point (SCOORD3D), so
it re-imports to the same 3D point; a GSPS can only hold in-plane points, so
it re-imports to the projection of the point onto its slice (out of plane by
at most half the slice spacing). Pixel coordinates follow
:mod:`spinelabel.io.dicom_label_common`.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, one_line
from ..geometry import lps_to_ras
from ..results import UPSIDE_DOWN_SKIPPED
from ..warning_codes import COUNT, DETECTION, LabelWarning, count_at_risk
from .dicom_files import read_dicom
from .dicom_label_common import SOFTWARE_NAME, ImagePlane, plane_of, snomed_levels
from .dicom_repair import MONOCHROME1

if TYPE_CHECKING:
    from ..results import LabelResult
    from .dicom import DicomSeriesInfo

__all__ = ["write_gsps", "write_sr"]

#: series (numbered from 1, rarely above a few hundred) in PACS series lists.
SR_SERIES_NUMBER = 9901
GSPS_SERIES_NUMBER = 9902
#: Size (mm) of the text box written beside each point in a GSPS, and its gap from the point.
TEXT_BOX_MM = (24.0, 8.0)
TEXT_GAP_MM = 6.0
#: GSPS content label (a DICOM code string: capitals, digits, '_' and ' ').
GSPS_CONTENT_LABEL = "SPINE_LABELS"
GRAPHIC_LAYER = "VERTEBRAE"
#: Graphic layer of the GSPS's warning lines: fixed to the screen (DISPLAY units) on every image, above the labels.
WARNING_LAYER = "WARNINGS"
#: Concerns whose warnings the images show: what the reader must check (``input`` warnings, how the
#: image was read, stay in the SR and the JSON).
SHOWN_CONCERNS = (COUNT, DETECTION)
#: Height of one warning line and the margin from the displayed area's edges, as fractions of that area.
WARNING_LINE_HEIGHT = 0.04
WARNING_MARGIN = 0.01
#: The most warning lines drawn: a result rarely has more, and the rest are in the SR and the JSON.
MAX_WARNING_LINES = 6
#: Local code for the labeller's confidence (local coding schemes begin with "99").
CONFIDENCE_CODE = ("LABELCONF", "99SPINELABEL", "Vertebra label confidence")
#: Local code naming each of the result's warnings (a TEXT item: the sentence and its code, ``LabelWarning.line``).
WARNING_CODE = ("LABELWARN", "99SPINELABEL", "Vertebra labeling warning")
#: TID 1500's container of document-level qualitative evaluations, which takes TEXT items.
QUALITATIVE_EVALUATIONS = ("C0034375", "UMLS", "Qualitative Evaluations")
#: Typography of our warning sentences that the SR's character set (the source's, often Latin-1) may lack.
SR_TEXT_PLAIN = str.maketrans({"\u2014": "-", "\u2013": "-"})
LOCAL_SCHEME_NAME = "spinelabel local codes"
#: Finding sites of levels without a vertebra code in pydicom's SNOMED CT table: S1 is part of the sacrum.
SITE_OF_LEVEL = {"S1": ("54735007", "SCT", "Sacrum")}
#: Smallest window width DICOM allows for a LINEAR VOI function (PS3.3 C.11.2.1.2.1).
MIN_WINDOW_WIDTH = 1.0
#: Body Part Examined (PS3.16 CID 4031 defined terms) of the GSPS series, per labelling region.
#: Spine is unpaired, so with it no Laterality is needed (General Series Type 2C).
BODY_PART = {"cervical": "CSPINE", "lumbar": "LSPINE"}
BODY_PART_DEFAULT = "SPINE"
#: What every source image must hold for an SR or GSPS to reference it (Type 1 in the image IODs);
#: an export that dropped one is refused in one line.
REFERENCE_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
#: The SR also reads each source image's Modality (highdicom checks that it is an image's).
SR_SOURCE_KEYWORDS = (*REFERENCE_KEYWORDS, "Modality")
#: Specific Character Set: the default repertoire's name as a code-extension set. A source may leave a first
#: value empty for it (``\\ISO 2022 IR 87``, Japanese), which highdicom does not take (PS3.3 C.12.1.1.2).
DEFAULT_REPERTOIRE_EXTENDED = "ISO 2022 IR 6"
#: Code-extension sets that need the default repertoire named before them when a source gives them alone.
MULTI_BYTE_EXTENSIONS = ("ISO 2022 IR 87", "ISO 2022 IR 159", "ISO 2022 IR 149", "ISO 2022 IR 58")


#: Person names that highdicom copies from the source images (patient and study modules). Each has VM 1, but
#: exports with a backslash in a name (two values) exist; highdicom refuses them with a TypeError.
COPIED_PERSON_NAMES = ("PatientName", "ReferringPhysicianName")


@dataclass
class _SeriesHeaders:
    """Headers of the slices read of a loaded series, and each slice's plane (in order along the normal).

    ``source_names``: the first header's multi-valued person names as the
    source has them (the headers hold their first values, which highdicom
    takes); :func:`_with_source_names` puts them back into what we write, so
    the SR and GSPS name the patient exactly as the images do.
    """

    headers: list[Any]  # one per slice (a multi-frame file repeats)
    frames: list[int | None]
    planes: list[ImagePlane]
    source_names: dict[str, list[Any]] = field(default_factory=dict)

    def unique_headers(self) -> list[Any]:
        seen, out = set(), []
        for h in self.headers:
            if id(h) not in seen:
                seen.add(id(h))
                out.append(h)
        return out


def _series_headers(
    info: DicomSeriesInfo | None, what: str, required: tuple[str, ...] = REFERENCE_KEYWORDS
) -> _SeriesHeaders:
    """Read the headers of the series behind a result.

    InputError for a non-DICOM input, and for a source image without one of
    the ``required`` attributes (named in the message).
    """

    if info is None or not info.files:
        raise InputError(f"{what} needs a DICOM input (the image was not read from a DICOM series)")
    cache: dict[Path, Any] = {}
    headers, planes = [], []
    source_names: dict[str, list[Any]] = {}
    frames: list[int | None] = list(info.frame_numbers) if info.frame_numbers else [None] * len(info.files)
    for path, frame in zip(info.files, frames):
        if path not in cache:
            try:
                cache[path] = read_dicom(path, stop_before_pixels=True)
            except Exception as exc:  # moved or damaged since it was loaded
                raise InputError(f"cannot read {path} to write {what}: {one_line(exc)}") from None
            missing = [k for k in required if not cache[path].get(k)]
            if missing:
                raise InputError(f"cannot write {what}: {path} has no {missing[0]} (a required DICOM attribute)")
            _fill_type2(cache[path])
            names = _single_valued_names(cache[path])
            if len(cache) == 1:  # the first header's: highdicom copies the patient and study from it
                source_names = names
        headers.append(cache[path])
        planes.append(plane_of(path, cache[path], frame))
    return _SeriesHeaders(headers, frames, planes, source_names)


def _single_valued_names(header: Any) -> dict[str, list[Any]]:
    """Replace each multi-valued :data:`COPIED_PERSON_NAMES` of ``header`` by its first value; return the originals."""
    from pydicom.multival import MultiValue

    originals = {}
    for keyword in COPIED_PERSON_NAMES:
        value = header.get(keyword)
        if isinstance(value, MultiValue):
            originals[keyword] = list(value)
            setattr(header, keyword, value[0] if len(value) else "")
    return originals


def _with_source_names(dataset: Any, series: _SeriesHeaders) -> Any:
    """``dataset`` with the person names of the source as they were (see :class:`_SeriesHeaders`)."""
    for keyword, values in series.source_names.items():
        setattr(dataset, keyword, values)
    return dataset


def _fill_type2(header: Any) -> None:
    """Add empty Type 2 patient/study attributes that some images lack (highdicom copies them)."""
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                    "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName"):
        if keyword not in header:
            setattr(header, keyword, "")


@dataclass(frozen=True)
class _Placed:
    """A vertebra placed on its nearest slice: slice index, pixel point (2,), exact LPS (3,)."""

    label: str
    confidence: float
    k: int
    col_row: np.ndarray
    lps: np.ndarray


def _place(result: LabelResult, series: _SeriesHeaders) -> list[_Placed]:
    """Each vertebra on the slice whose plane is nearest to it, projected in pixel coordinates."""
    out = []
    for v in result.vertebrae:
        lps = lps_to_ras(np.asarray(v.position_mm, float))  # RAS -> LPS: the flip is its own inverse
        distances = [abs(float(p.to_pixel(lps)[1][0])) for p in series.planes]
        k = int(np.argmin(distances))
        plane = series.planes[k]
        col_row = plane.to_pixel(lps)[0][0]
        col_row = np.clip(col_row, 0.0, np.array(plane.size, float))  # DICOM pixel coordinates lie on the image
        out.append(_Placed(v.label, float(v.confidence), k, col_row, lps))
    return out


@contextlib.contextmanager
def _quiet_highdicom() -> Iterator[None]:
    """Hide highdicom's advice on the source's PatientName format (the source's, not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name", category=UserWarning)
        yield


def _save(dataset: Any, path: str | Path) -> None:
    """Write a dataset as a DICOM Part 10 file, atomically."""
    from pydicom import dcmwrite

    from .outputs import atomic_write_bytes

    buf = io.BytesIO()
    dcmwrite(buf, dataset, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())


def _output_uids(kind: str, result: LabelResult, series: _SeriesHeaders, confirmed: bool = False) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of an SR or GSPS (``kind``), derived from what the object says.

    The same labels of the same images by the same software give the same
    UIDs, so storing a result again (a repeated or retried ``pacs label
    --store``, a batch resumed after a store was cut off) adds nothing to the
    PACS, which already holds that object; other names, positions,
    confidences, warnings, model or software, or a review, give other UIDs.
    pydicom's ``generate_uid`` hashes the content into its UID root.
    """
    from pydicom.uid import generate_uid

    name, version = _software()
    content = json.dumps({
        "kind": kind, "confirmed": confirmed, "software": [name, version], "region": result.region,
        # the checksum only where known: a document written before it was recorded keeps its UIDs when stored again
        "model": [result.model_name, result.model_version, *([result.model_sha256] if result.model_sha256 else [])],
        "images": [[str(h.SOPInstanceUID), f] for h, f in zip(series.headers, series.frames)],
        "vertebrae": [[v.label, [round(float(x), 2) for x in v.position_mm], round(float(v.confidence), 3)]
                      for v in result.vertebrae],
        "warnings": [[w.code, w.text] for w in result.warnings],
        # a skipped check only where the SR says so: every other object keeps the UIDs it got before
        **({"upside_down_check": UPSIDE_DOWN_SKIPPED} if kind == "sr" and result.upside_down_check == UPSIDE_DOWN_SKIPPED else {}),
    }, sort_keys=True)
    return generate_uid(entropy_srcs=[content, "series"]), generate_uid(entropy_srcs=[content, "instance"])


def _software() -> tuple[str, str]:
    from .. import __version__

    return SOFTWARE_NAME, str(__version__)


def write_sr(
    result: LabelResult, dicom_info: DicomSeriesInfo | None, path: str | Path, reviewer: str | None = None
) -> None:
    """Write the labels as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

    One TID 1410 measurement group per vertebra: tracking identifier = the
    level name ("L3"); finding "Vertebra" with the SNOMED CT finding site of
    the level (C1..L5; other levels are named by the tracking identifier
    only); the labeller's confidence as a NUM (local code
    :data:`CONFIDENCE_CODE`, no units); the image region: a SCOORD POINT on
    the nearest slice (what viewers draw), plus a SCOORD3D POINT (DCM
    111010 "Center", the exact world LPS point; TID 1410 is extensible).
    The result's warnings, if any, follow as TID 1500 "Qualitative
    Evaluations": one TEXT item each (local code :data:`WARNING_CODE`),
    the sentence ending in its warning code, ``... [no-anchor]``.
    Patient and study come from the source images, which are listed as
    evidence and in the image library.

    Parameters
    ----------
    result : LabelResult
        Positions in world RAS mm.
    dicom_info : DicomSeriesInfo or None
        ``LoadedImage.dicom`` of the labelled series; None (NIfTI) is an error.
    path : str or Path
        The .dcm file to write (atomically).
    reviewer : str, optional
        The person who confirmed the labels (``spinelabel review``): the SR
        is then VERIFIED by them (Verifying Observer), which is what lets
        ``annotations import`` read it as a person's labels.

    Raises
    ------
    InputError
        Not a DICOM input, the series files are no longer readable, or the
        object cannot be built from them.
    """
    series = _series_headers(dicom_info, "--dicom-sr", SR_SOURCE_KEYWORDS)
    try:
        with _quiet_highdicom():
            dataset = _build_sr(result, dicom_info, series)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:  # highdicom refuses a value taken from the source headers
        raise InputError(f"cannot write the DICOM SR: {one_line(exc)}") from exc
    if reviewer is not None:
        _verified_by(dataset, reviewer, series)
    _save(_with_source_names(dataset, series), path)


def reviewer_name(reviewer: str) -> str:
    """A reviewer's name as a DICOM person name (PN): at most 64 characters, no VR delimiters; "reviewer" when empty."""
    cleaned = " ".join("".join(" " if ch in "\\=" or not ch.isprintable() else ch for ch in reviewer).split())
    return cleaned[:64].strip() or "reviewer"


def _verified_by(dataset: Any, reviewer: str, series: _SeriesHeaders) -> None:
    """Mark an SR as verified (attested) by ``reviewer`` now (SR Document General module, Verifying Observer)."""
    from datetime import datetime, timezone

    from pydicom.dataset import Dataset

    observer = Dataset()
    observer.VerifyingObserverName = reviewer_name(reviewer)
    observer.VerifyingOrganization = str(series.headers[0].get("InstitutionName", "") or "unknown")[:64]
    observer.VerificationDateTime = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")  # UTC, said so
    observer.VerifyingObserverIdentificationCodeSequence = []
    dataset.VerificationFlag = "VERIFIED"
    dataset.VerifyingObserverSequence = [observer]


def _observer(result: LabelResult) -> Any:
    """TID 1002 observation context: spinelabel as the observing device."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    name, _ = _software()
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(), name=name, manufacturer_name=name,
                model_name=f"{result.model_name} {result.model_version}",
            ),
        )
    )


def _measurement_group(placed: _Placed, series: _SeriesHeaders, info: DicomSeriesInfo, algorithm: Any) -> Any:
    """One TID 1410 group: tracking identifiers, finding, finding site, confidence, SCOORD (+ SCOORD3D)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    site = _finding_site(placed.label)
    header, frame = series.headers[placed.k], series.frames[placed.k]
    source = hd.sr.SourceImageForRegion.from_source_image(header, referenced_frame_numbers=[frame] if frame else None)
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT,
                               graphic_data=placed.col_row.reshape(1, 2), source_image=source)
    confidence = hd.sr.Measurement(name=hd.sr.CodedConcept(*CONFIDENCE_CODE), value=placed.confidence,
                                   unit=codes.UCUM.NoUnits)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=placed.label),
        referenced_region=region, finding_type=codes.SCT.Vertebra, finding_sites=[site] if site is not None else None,
        algorithm_id=algorithm, measurements=[confidence],
    )
    if info.frame_of_reference_uid:
        group[0].ContentSequence.append(hd.sr.Scoord3DContentItem(
            name=codes.DCM.Center, graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=placed.lps.reshape(1, 3), frame_of_reference_uid=info.frame_of_reference_uid,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ))
    return group


def _finding_site(level: str) -> Any:
    """TID 1410 finding site of a level: its SNOMED CT vertebra code, the sacrum for S1, else None.

    OHIF shows the finding site's meaning beside each point (it does not show
    the tracking identifier), so every level with a code gets one; L6 and T13
    have none and are named by the tracking identifier only.
    """
    import highdicom as hd

    snomed = {level: code for (scheme, code), level in snomed_levels().items()}
    if level in snomed:
        return hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept(snomed[level], "SCT", f"{level} vertebra"))
    if level in SITE_OF_LEVEL:
        return hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept(*SITE_OF_LEVEL[level]))
    return None


def _warnings_container(result: LabelResult) -> Any:
    """TID 1500 "Qualitative Evaluations" holding one TEXT item per warning (``text [code]``)."""
    import highdicom as hd

    container = hd.sr.ContainerContentItem(
        name=hd.sr.CodedConcept(*QUALITATIVE_EVALUATIONS), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence([
        hd.sr.TextContentItem(name=hd.sr.CodedConcept(*WARNING_CODE), value=_plain_line(w),
                              relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        for w in result.warnings
    ])
    return container


def _plain_line(warning: LabelWarning) -> str:
    """``warning.line()`` in the characters of the source's character set (:data:`SR_TEXT_PLAIN`), for SR and GSPS text."""
    return warning.line().translate(SR_TEXT_PLAIN)


def _local_coding_scheme() -> Any:
    """Coding Scheme Identification item describing the local scheme of :data:`CONFIDENCE_CODE`."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = CONFIDENCE_CODE[1]
    item.CodingSchemeName = LOCAL_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = _software()[0]
    return item


def output_character_set(value: Any) -> str | list[str] | None:
    """The source's Specific Character Set as our SR and GSPS declare it: the same text, in a form highdicom takes.

    An empty first value (the default repertoire) is written out as
    :data:`DEFAULT_REPERTOIRE_EXTENDED`; a single-byte code-extension set
    given alone (``ISO 2022 IR 100``) becomes its plain term (``ISO_IR 100``),
    and a multi-byte one given alone gets the default repertoire before it.
    """
    if value is None:
        return None
    values = [str(v).strip() for v in ([value] if isinstance(value, str) else value)]
    if not any(values):
        return None
    if len(values) > 1:
        return [v or DEFAULT_REPERTOIRE_EXTENDED for v in values]
    (only,) = values
    if only in MULTI_BYTE_EXTENSIONS:
        return [DEFAULT_REPERTOIRE_EXTENDED, only]
    if only == DEFAULT_REPERTOIRE_EXTENDED:
        return None
    if only.startswith("ISO 2022 IR "):
        return "ISO_IR " + only.removeprefix("ISO 2022 IR ")
    return only


#: Character set declared when the source declares none but its text is not ASCII (the bytes of an
#: undeclared Latin-1 export, which pydicom reads as Latin-1): UTF-8 holds whatever was read.
UNDECLARED_NON_ASCII = "ISO_IR 192"
#: Value representations of text that our SR and GSPS copy from the source (patient, study, series).
TEXT_VRS = ("PN", "LO", "SH", "ST", "LT", "UT")


def _declared_character_set(header: Any) -> str | list[str] | None:
    """The character set our SR and GSPS declare for a source: :func:`output_character_set` of the source's, or
    :data:`UNDECLARED_NON_ASCII` where it declares none and yet holds non-ASCII text (else the copies are invalid)."""
    source = header.get("SpecificCharacterSet")
    if source:  # declared (an empty value declares nothing)
        return output_character_set(source)
    texts = (str(e.value) for e in header if e.VR in TEXT_VRS and e.value is not None)
    return UNDECLARED_NON_ASCII if any(not t.isascii() for t in texts) else None


def _has_thickness(header: Any) -> bool:
    """Whether an image header holds a SliceThickness value (Type 2: it may be absent or empty)."""
    return isinstance(header.get("SliceThickness"), (int, float))


#: The SR's algorithm parameter that says so: in PACS, where the JSON result is not read, a skipped check must not
#: pass for a passed one (an image stored upside down is then named in reverse without a warning).
SKIPPED_CHECK_PARAMETER = "upside-down check skipped (--trust-orientation)"


def _algorithm_parameters(result: LabelResult) -> list[str]:
    """The SR's algorithm parameters: the weights' checksum where known, and a skipped upside-down check."""
    return [*([f"weights SHA-256 {result.model_sha256}"] if result.model_sha256 else []),
            *([SKIPPED_CHECK_PARAMETER] if result.upside_down_check == UPSIDE_DOWN_SKIPPED else [])]


def _build_sr(result: LabelResult, info: DicomSeriesInfo, series: _SeriesHeaders) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    name, version = _software()
    series_uid, instance_uid = _output_uids("sr", result, series)
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"{name} {result.model_name}", version=result.model_version, parameters=_algorithm_parameters(result) or None,
    )
    placed = _place(result, series)
    groups = [_measurement_group(p, series, info, algorithm) for p in placed]
    used = {id(series.headers[p.k]): series.headers[p.k] for p in placed}
    procedure = codes.cid100.MRIUnspecifiedBodyRegion if info.modality == "MR" else codes.SCT.ImagingProcedure
    # highdicom's image library reads the plane attributes of single-frame images only, SliceThickness (Type 2,
    # may be empty) among them; the library is optional in TID 1500, so it is left out where they are not all there
    single_frame = all(frame is None for frame in series.frames)
    library = list(used.values()) if used and single_frame and all(map(_has_thickness, used.values())) else None
    report = hd.sr.MeasurementReport(observation_context=_observer(result), procedure_reported=procedure,
                                     imaging_measurements=groups, referenced_images=library)
    if result.warnings:
        report[0].ContentSequence.append(_warnings_container(result))
    dataset = hd.sr.Comprehensive3DSR(
        evidence=series.unique_headers(), content=report, series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER, sop_instance_uid=instance_uid, instance_number=1,
        manufacturer=name, is_complete=True, is_final=False, is_verified=False,
        series_description="spinelabel vertebra labels (SR)", software_versions=version,
        manufacturer_model_name=name,
        specific_character_set=_declared_character_set(series.headers[0]),
    )
    dataset.CodingSchemeIdentificationSequence = [_local_coding_scheme()]
    return dataset


def write_gsps(
    result: LabelResult, dicom_info: DicomSeriesInfo | None, path: str | Path, confirmed: bool = False,
    reviewer: str | None = None,
) -> None:
    """Write the labels as a Grayscale Softcopy Presentation State for the source series.

    Per vertebra, on the slice nearest to it: a POINT graphic and a text
    object (the level name, with "?" appended below
    :data:`spinelabel.results.LOW_CONFIDENCE`, and on every name when a
    warning says the count itself may be off, ``warning_codes.count_at_risk``:
    the viewer's only sign that the names need checking) anchored at the
    point, its box beside it; the result's ``count`` and ``detection``
    warnings as screen-fixed lines on every image (:func:`warning_lines`,
    layer :data:`WARNING_LAYER`). The presentation state applies to every image of the
    series (window and rescale taken from the images), so a PACS viewer
    shows the labels while scrolling. Points are the projection of each
    vertebra onto its slice (out of plane by at most half the slice spacing).

    Parameters
    ----------
    result : LabelResult
    dicom_info : DicomSeriesInfo or None
        ``LoadedImage.dicom``; None (NIfTI) is an error.
    path : str or Path
        The .dcm file to write (atomically).
    confirmed : bool
        A reviewer has confirmed every name (``spinelabel review``): no "?"
        marks, whatever the model's confidences.
    reviewer : str, optional
        Who confirmed them: the GSPS's Content Creator's Name (what lets
        ``annotations import`` read it as a person's labels).

    Raises
    ------
    InputError
        As :func:`write_sr`.
    """
    series = _series_headers(dicom_info, "--gsps")
    try:
        with _quiet_highdicom():
            dataset = _build_gsps(result, series, confirmed)
    except (ValueError, TypeError) as exc:  # highdicom refuses a value taken from the source headers
        raise InputError(f"cannot write the GSPS: {one_line(exc)}") from exc
    if reviewer is not None:
        dataset.ContentCreatorName = reviewer_name(reviewer)
    _save(_with_source_names(dataset, series), path)


def _text_box(plane: ImagePlane, col_row: np.ndarray) -> tuple[float, float, float, float]:
    """[left, top, right, bottom] pixel box beside a point (right of it, else left), inside the image."""
    size = np.array(TEXT_BOX_MM) / plane.spacing
    gap = TEXT_GAP_MM / plane.spacing[0]
    limit = np.array(plane.size, float)
    left = col_row[0] + gap
    if left + size[0] > limit[0]:
        left = col_row[0] - gap - size[0]
    top = col_row[1] - size[1] / 2
    lo = np.clip([left, top], 0.0, np.maximum(limit - size, 0.0))
    hi = np.minimum(lo + size, limit)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _build_gsps(result: LabelResult, series: _SeriesHeaders, confirmed: bool = False) -> Any:
    import highdicom as hd

    from ..results import LOW_CONFIDENCE

    name, version = _software()
    series_uid, instance_uid = _output_uids("gsps", result, series, confirmed)
    doubt = count_at_risk(result.warnings)
    layer = hd.pr.GraphicLayer(layer_name=GRAPHIC_LAYER, order=1, description="vertebra labels")
    annotations = []
    for placed in _place(result, series):
        header, frame, plane = series.headers[placed.k], series.frames[placed.k], series.planes[placed.k]
        sure = confirmed or (placed.confidence >= LOW_CONFIDENCE and not doubt)
        text = placed.label if sure else f"{placed.label}?"
        point = (float(placed.col_row[0]), float(placed.col_row[1]))
        annotations.append(hd.pr.GraphicAnnotation(
            referenced_images=[header], graphic_layer=layer, referenced_frame_number=frame,
            graphic_objects=[hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POINT,
                                                 graphic_data=placed.col_row.reshape(1, 2),
                                                 units=hd.pr.AnnotationUnitsValues.PIXEL)],
            text_objects=[hd.pr.TextObject(text_value=text, units=hd.pr.AnnotationUnitsValues.PIXEL,
                                           anchor_point=point, bounding_box=_text_box(plane, placed.col_row),
                                           text_justification=hd.pr.TextJustificationValues.LEFT)],
        ))
    layers = [layer]
    banner = _warning_banner(result, series)
    if banner is not None:
        annotations.append(banner[0])
        layers.append(banner[1])
    modality_lut, windows = _rescale_and_windows(series.unique_headers())
    dataset = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=series.unique_headers(), series_instance_uid=series_uid,
        series_number=GSPS_SERIES_NUMBER, sop_instance_uid=instance_uid, instance_number=1,
        manufacturer=name, manufacturer_model_name=name, software_versions=version, device_serial_number="0",
        content_label=GSPS_CONTENT_LABEL, content_description=f"vertebra labels by {name} {result.model_name}",
        graphic_annotations=annotations or None, graphic_layers=layers,
        series_description="spinelabel vertebra labels (GSPS)",
        modality_lut_transformation=modality_lut, voi_lut_transformations=windows,
        presentation_lut_transformation=_presentation_lut(series.headers[0]),
        specific_character_set=_declared_character_set(series.headers[0]),
    )
    _make_conformant(dataset, result.region)
    return dataset


def warning_lines(result: LabelResult) -> list[str]:
    """The lines a GSPS shows on every image: each warning of a :data:`SHOWN_CONCERNS` concern, with its code.

    At most :data:`MAX_WARNING_LINES`; plain dashes (:data:`SR_TEXT_PLAIN`).
    """
    shown = [w for w in result.warnings if w.concern in SHOWN_CONCERNS]
    return [f"spinelabel: {_plain_line(w)}" for w in shown[:MAX_WARNING_LINES]]


def _warning_banner(result: LabelResult, series: _SeriesHeaders) -> tuple[Any, Any] | None:
    """One graphic annotation on every image of the series, and its layer: :func:`warning_lines`, one per line
    from the top of the displayed area (DISPLAY units, so it stays in view while zooming); None without lines.

    A viewer shows why names carry a "?" (a ``count`` warning) and where to look
    (``missed-at-end``: "look below C7"). The graphic layer is :data:`WARNING_LAYER`,
    which a viewer may switch off; our GSPS importer passes over screen-fixed text.
    """
    import highdicom as hd

    lines = warning_lines(result)
    if not lines:
        return None
    layer = hd.pr.GraphicLayer(layer_name=WARNING_LAYER, order=2, description="what to check (spinelabel warnings)")
    texts = []
    for k, line in enumerate(lines):
        top = WARNING_MARGIN + k * WARNING_LINE_HEIGHT
        box = (WARNING_MARGIN, top, 1.0 - WARNING_MARGIN, top + WARNING_LINE_HEIGHT)
        texts.append(hd.pr.TextObject(text_value=line, units=hd.pr.AnnotationUnitsValues.DISPLAY, bounding_box=box,
                                      text_justification=hd.pr.TextJustificationValues.LEFT))
    return hd.pr.GraphicAnnotation(referenced_images=series.unique_headers(), graphic_layer=layer, text_objects=texts), layer


def _make_conformant(dataset: Any, region: str) -> None:
    """Fix what the source images pass on to a GSPS that the GSPS IOD does not allow.

    The body part is the spine (an unpaired structure, so no Laterality is
    required); a window narrower than :data:`MIN_WINDOW_WIDTH` (images with
    values in [0, 1]) is widened to it, about the same centre.
    """
    dataset.BodyPartExamined = BODY_PART.get(region, BODY_PART_DEFAULT)
    for item in dataset.get("SoftcopyVOILUTSequence", []) or []:
        if "WindowWidth" not in item:
            continue
        widths = item.WindowWidth if item["WindowWidth"].VM > 1 else [item.WindowWidth]
        fixed = [max(float(w), MIN_WINDOW_WIDTH) for w in widths]
        item.WindowWidth = fixed if len(fixed) > 1 else fixed[0]


def _presentation_lut(header: Any) -> Any:
    """INVERSE for MONOCHROME1 images (the lowest value white, as without the GSPS), else IDENTITY."""
    import highdicom as hd

    inverse = str(header.get("PhotometricInterpretation", "")).strip().upper() == MONOCHROME1
    shape = hd.PresentationLUTShapeValues.INVERSE if inverse else hd.PresentationLUTShapeValues.IDENTITY
    return hd.PresentationLUTTransformation(presentation_lut_shape=shape)


def _rescale_and_windows(headers: list[Any]) -> tuple[Any, list[Any] | None]:
    """The GSPS modality LUT and, where the images' rescales differ, their windows in stored values.

    One GSPS modality LUT serves every image it references. When the images
    share one rescale it is that rescale, and highdicom copies each image's
    window (None here). When they do not (Philips writes a slope per slice),
    the LUT is the identity and each image's window is given in its own
    stored values, ``(centre - intercept) / slope`` and ``width / slope``, so
    every slice is shown as its own header says.
    """
    import highdicom as hd

    def rescale(h: Any) -> tuple[float, float]:
        return float(h.get("RescaleSlope", 1.0) or 1.0), float(h.get("RescaleIntercept", 0.0) or 0.0)

    if len({rescale(h) for h in headers}) <= 1 or any("PerFrameFunctionalGroupsSequence" in h for h in headers):
        return _modality_lut(headers[0]), None
    groups: dict[tuple[float, float], list[Any]] = {}
    for h in headers:
        if h.get("WindowCenter") is not None and h.get("WindowWidth") is not None:
            (slope, intercept), centre, width = rescale(h), _first(h.WindowCenter), _first(h.WindowWidth)
            groups.setdefault(((centre - intercept) / slope, max(width / slope, MIN_WINDOW_WIDTH)), []).append(h)
    windows = [hd.pr.SoftcopyVOILUTTransformation(window_center=c, window_width=w,
                                               referenced_images=hd.ReferencedImageSequence(referenced_images=group))
               for (c, w), group in groups.items()]
    identity = hd.ModalityLUTTransformation(rescale_intercept=0.0, rescale_slope=1.0, rescale_type="US")
    return identity, windows or None


def _first(value: Any) -> float:
    """The first of a multi-valued DS (a window's first setting), or the value."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, MultiValue) else float(value)


def _modality_lut(header: Any) -> Any:
    """The source's rescale as the GSPS modality LUT, type "US" (unspecified, as MR has no units).

    highdicom derives it itself for classic images but, for enhanced
    multi-frame ones with a Pixel Value Transformation group, asks for a
    rescale type that MR images do not carry.
    """
    import highdicom as hd

    groups = header.get("SharedFunctionalGroupsSequence") or [header]
    transform = (groups[0].get("PixelValueTransformationSequence") or [header])[0]
    slope = float(transform.get("RescaleSlope", header.get("RescaleSlope", 1.0)))
    intercept = float(transform.get("RescaleIntercept", header.get("RescaleIntercept", 0.0)))
    return hd.ModalityLUTTransformation(rescale_intercept=intercept, rescale_slope=slope, rescale_type="US")
