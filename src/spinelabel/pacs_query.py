"""DICOMweb queries (QIDO-RS): MR studies, their series, and which image series are sagittal.

A series counts as sagittal when the normal of its ImageOrientationPatient
(from QIDO, else from the WADO-RS metadata of one instance) points mostly
left-right; when the server gives no orientation, its SeriesDescription
decides ("SAG", "sagittal", ...). Answers of the wrong shape are a one-line
:class:`~spinelabel.errors.PacsError`, and paging is bounded
(:data:`MAX_QIDO_PAGES`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PacsError
from .io.dicom import LOCALIZER
from .pacs_client import base_url, call

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

__all__ = [
    "ANNOTATION_MODALITIES",
    "MAX_QIDO_PAGES",
    "SeriesInfo",
    "StudyInfo",
    "find_series",
    "find_studies",
    "json_text",
    "orientation_from_description",
    "orientation_of",
    "search_all",
]

#: Modalities of annotation objects harvested with the images: structured
#: reports (SR) and presentation states (PR: GSPS, where spine labels are drawn).
ANNOTATION_MODALITIES = ("SR", "PR")
#: A series is sagittal when the largest component of its slice normal is the
#: left-right one: oblique sagittals (tilted along the spine) still count.
SAGITTAL_AXIS = 0

#: QIDO results asked for per request (servers cap pages, often at 100-1000).
QIDO_PAGE = 100
#: At most this many QIDO pages per search: a server that ignores ``offset`` or
#: never stops would otherwise be asked forever (200 pages of QIDO_PAGE results
#: is far beyond one query of a clinical archive).
MAX_QIDO_PAGES = 200

_SAGITTAL_WORDS = re.compile(r"(?<![A-Z])(SAG|SAGITTAL|SAGITAL)(?![A-Z])", re.IGNORECASE)
_OTHER_WORDS = re.compile(r"(?<![A-Z])(AX|AXIAL|TRA|TRANS|TRANSVERSE|COR|CORONAL)(?![A-Z])", re.IGNORECASE)

# ----------------------------------------------------------------- DICOM JSON


def _tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def json_values(item: Mapping[str, Any], keyword: str) -> list[Any]:
    """The values of an attribute in a DICOM JSON object ([] when absent)."""
    element = item.get(_tag(keyword)) or {}
    return list(element.get("Value") or [])


def json_text(item: Mapping[str, Any], keyword: str) -> str:
    values = json_values(item, keyword)
    if not values:
        return ""
    v = values[0]
    if isinstance(v, dict):  # PN: {"Alphabetic": "..."}
        return str(v.get("Alphabetic", ""))
    return str(v)


def json_int(item: Mapping[str, Any], keyword: str) -> int | None:
    try:
        return int(json_text(item, keyword))
    except ValueError:
        return None


# ----------------------------------------------------------------- QIDO


@dataclass(frozen=True)
class StudyInfo:
    """One study as QIDO-RS describes it."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    description: str
    modalities: tuple[str, ...]


@dataclass(frozen=True)
class SeriesInfo:
    """One series as QIDO-RS describes it, with its plane when it is an image series."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    number: int | None
    n_instances: int | None
    #: "sagittal", "coronal", "axial", "localizer" (images typed LOCALIZER: a scout, whatever its plane), or
    #: "unknown" (not an image series / no orientation).
    orientation: str = "unknown"

    @property
    def is_sagittal_mr(self) -> bool:
        return self.modality == "MR" and self.orientation == "sagittal"

    @property
    def is_annotation(self) -> bool:
        return self.modality in ANNOTATION_MODALITIES


#: A UID: numeric components separated by dots, at most 64 characters (PS3.5 9.1). A component with a
#: leading zero, which the standard forbids but some archives hold, is let through: the server decides.
UID_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")
UID_MAX_LENGTH = 64


def check_filters(study_date: str | None = None, study_uids: Sequence[str] | None = None) -> None:
    """InputError for a study date or UID filter the server would take as matching nothing.

    A server answers "2026-12-05" (ISO, not DICOM) or "abc" with no study
    and no error, which would read as an empty archive.
    """
    from .errors import InputError

    if study_date is not None:
        parts = study_date.split("-")  # a DICOM date (DA) or a range: D, D-, -D or D-D
        dates = [d for d in parts if d]
        if len(parts) > 2 or not dates or not all(map(_is_dicom_date, dates)):
            raise InputError(f"--date {study_date!r} is not a DICOM date or range (YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD-, -YYYYMMDD)")
    for uid in study_uids or ():
        if len(uid) > UID_MAX_LENGTH or not UID_SYNTAX.fullmatch(uid):
            raise InputError(f"--study {uid[:80]!r} is not a DICOM UID (digits and dots, at most {UID_MAX_LENGTH} characters)")


def _is_dicom_date(text: str) -> bool:
    """Whether ``text`` is a DICOM date (DA: YYYYMMDD) of the calendar."""
    import datetime

    if len(text) != 8 or not text.isdigit():
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def find_studies(
    client: DICOMwebClient,
    *,
    patient_id: str | None = None,
    study_date: str | None = None,
    modality: str | None = "MR",
    study_uids: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[StudyInfo]:
    """Studies matching the filters (QIDO-RS ``/studies``).

    Parameters
    ----------
    patient_id, study_date : str, optional
        QIDO filters (``study_date`` as DICOM date or range, "20240101-20241231").
    modality : str or None
        Only studies with a series of this modality (ModalitiesInStudy).
    study_uids : sequence of str, optional
        Only these studies.
    limit : int, optional
        At most this many studies.
    """
    filters: dict[str, Any] = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if study_date:
        filters["StudyDate"] = study_date
    if modality:
        filters["ModalitiesInStudy"] = modality
    fields = ["StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy"]
    items = []
    uids: list[str | None] = list(study_uids) if study_uids else [None]
    for uid in uids:  # one query per UID: not every server supports UID lists
        query = filters if uid is None else {**filters, "StudyInstanceUID": uid}
        items += search_all(client, "search for studies", client.search_for_studies, limit, search_filters=query, fields=fields)
    studies = [
        StudyInfo(
            study_uid=json_text(it, "StudyInstanceUID"),
            patient_id=json_text(it, "PatientID"),
            patient_name=json_text(it, "PatientName"),
            study_date=json_text(it, "StudyDate"),
            description=json_text(it, "StudyDescription"),
            modalities=tuple(str(v) for v in json_values(it, "ModalitiesInStudy")),
        )
        for it in items
    ]
    studies = [s for s in studies if s.study_uid]
    return studies[:limit] if limit is not None else studies


def search_all(
    client: DICOMwebClient, what: str, fn: Callable[..., list], limit: int | None, **kwargs: Any
) -> list[dict[str, Any]]:
    """All QIDO results, page by page (servers may cap a page), at most ``limit``.

    Stops at a short page, or at a page that brings nothing new (a server
    that ignores ``offset`` would otherwise be asked forever).
    """
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_QIDO_PAGES):
        if limit is not None and len(out) >= limit:
            break
        page = QIDO_PAGE if limit is None else min(QIDO_PAGE, limit - len(out))
        items = json_objects(call(client, what, fn, limit=page, offset=len(out), **kwargs), what, client)
        keys = [json.dumps(it, sort_keys=True) for it in items]
        new = [it for it, k in zip(items, keys) if k not in seen]
        seen.update(keys)
        out.extend(new)
        if len(items) < page or not new:
            return out
    else:
        raise PacsError(
            f"cannot {what} on {base_url(client)}: still more results after {MAX_QIDO_PAGES} pages "
            f"({len(out)} items); narrow the query or give a limit"
        )
    return out


def json_objects(items: Any, what: str, client: DICOMwebClient) -> list[dict[str, Any]]:
    """A QIDO answer checked to be a list of DICOM JSON objects (tag -> {"vr", "Value"})."""
    ok = isinstance(items, list) and all(
        isinstance(it, dict) and all(isinstance(v, dict) and isinstance(v.get("Value", []), list) for v in it.values())
        for it in items
    )
    if not ok:
        raise PacsError(f"cannot {what} on {base_url(client)}: unexpected answer (not a list of DICOM JSON objects)")
    return items


def orientation_of(iop: Sequence[float] | None) -> str:
    """"sagittal", "coronal" or "axial" from ImageOrientationPatient (6 numbers); "unknown" if invalid."""
    try:
        v = np.array([float(x) for x in (iop or [])], float)
    except (TypeError, ValueError):
        return "unknown"
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        return "unknown"
    normal = np.cross(v[:3], v[3:])
    if np.linalg.norm(normal) < 1e-6:
        return "unknown"
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def orientation_from_description(description: str) -> str:
    """The plane named in a SeriesDescription ("T2 SAG TSE" -> "sagittal"), else "unknown"."""
    if _SAGITTAL_WORDS.search(description):
        return "sagittal"
    m = _OTHER_WORDS.search(description)
    if m:
        return "coronal" if m.group(1).upper().startswith("COR") else "axial"
    return "unknown"


def _series_orientation(client: DICOMwebClient, study_uid: str, series_uid: str, description: str) -> str:
    """The plane of an image series: QIDO instance field, WADO metadata, or the description; "localizer" for scouts."""
    what = f"query an instance of series {series_uid}"
    items = json_objects(call(
        client, what, client.search_for_instances,
        study_instance_uid=study_uid, series_instance_uid=series_uid,
        fields=["ImageOrientationPatient", "ImageType"], limit=1,
    ), what, client)
    if items:
        if LOCALIZER in [str(v).upper() for v in json_values(items[0], "ImageType")]:
            return "localizer"  # a few scout slices far apart: nothing to label or to store results for
        iop = json_values(items[0], "ImageOrientationPatient")
        if len(iop) == 6:
            return orientation_of(iop)
        sop = json_text(items[0], "SOPInstanceUID")
        if sop:
            try:
                meta = call(
                    client, f"read the metadata of instance {sop}", client.retrieve_instance_metadata,
                    study_instance_uid=study_uid, series_instance_uid=series_uid, sop_instance_uid=sop,
                )
            except PacsError:
                meta = None  # no WADO-RS metadata here: the description decides
            meta = meta[0] if isinstance(meta, list) and meta else meta
            if isinstance(meta, dict) and all(isinstance(v, dict) for v in meta.values()):
                iop = json_values(meta, "ImageOrientationPatient")
                if len(iop) == 6:
                    return orientation_of(iop)
    return orientation_from_description(description)


def find_series(
    client: DICOMwebClient, study_uid: str, *, sagittal_only: bool = True, annotations: bool = False
) -> list[SeriesInfo]:
    """Series of a study (QIDO-RS ``/studies/{uid}/series``).

    Parameters
    ----------
    sagittal_only : bool
        Keep only sagittal MR series (each MR series' orientation is looked up).
    annotations : bool
        Also keep the study's annotation series (modality SR / PR).
    """
    fields = ["SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"]
    what = f"search the series of study {study_uid}"
    items = json_objects(call(client, what, client.search_for_series, study_instance_uid=study_uid, fields=fields),
                          what, client)
    out = []
    for it in items:
        info = SeriesInfo(
            study_uid=study_uid,
            series_uid=json_text(it, "SeriesInstanceUID"),
            modality=json_text(it, "Modality").upper(),
            description=json_text(it, "SeriesDescription"),
            number=json_int(it, "SeriesNumber"),
            n_instances=json_int(it, "NumberOfSeriesRelatedInstances"),
        )
        if not info.series_uid:
            continue
        if info.modality == "MR":
            info = SeriesInfo(**{**asdict(info), "orientation": _series_orientation(client, study_uid, info.series_uid, info.description)})
        keep = info.is_sagittal_mr or not sagittal_only and info.modality not in ANNOTATION_MODALITIES
        if keep or annotations and info.is_annotation:
            out.append(info)
    return sorted(out, key=lambda s: (s.number is None, s.number or 0, s.series_uid))
