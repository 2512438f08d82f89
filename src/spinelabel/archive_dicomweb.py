"""A DICOMweb query as a batch manifest: ``spinelabel batch --dicomweb URL --query "StudyDate=..."``.

The studies matching the query (QIDO-RS, :func:`spinelabel.pacs_query.find_studies`)
are listed with their sagittal MR series (:func:`spinelabel.pacs_query.find_series`);
each series becomes one :class:`~spinelabel.archive.ManifestItem` whose id is its
SeriesInstanceUID. A worker retrieves the series (WADO-RS) when it labels the
item (:func:`spinelabel.batch.label_dicomweb_series`), so a run is resumable like
one over files: the query is asked again, and the series in ``done.txt`` are
skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .archive import ID_PATTERN, ManifestItem, read_manifest
from .batch import DicomwebSeries
from .errors import InputError

if TYPE_CHECKING:
    from .pacs_client import PacsConfig

__all__ = ["QUERY_KEYS", "batch_items", "dicomweb_items", "parse_query"]

#: Query keys (DICOM keywords of the QIDO-RS study level) and the ``find_studies`` argument each sets.
QUERY_KEYS = {
    "StudyDate": "study_date",
    "PatientID": "patient_id",
    "StudyInstanceUID": "study_uids",
    "ModalitiesInStudy": "modality",
    "Modality": "modality",
}


def parse_query(text: str | None) -> dict[str, Any]:
    """``find_studies`` keyword arguments from ``"Key=value&Key=value"`` (URL query syntax).

    ``StudyInstanceUID`` may repeat; the modality defaults to MR. An empty
    query matches every MR study.

    Raises
    ------
    InputError
        A part without ``=``, an unknown key, or a key other than
        StudyInstanceUID given twice.
    """
    try:
        pairs = parse_qsl(text or "", keep_blank_values=False, strict_parsing=bool(text))
    except ValueError:
        raise InputError(f"malformed --query {text!r}: expected Key=value&Key=value") from None
    kwargs: dict[str, Any] = {"modality": "MR"}
    uids: list[str] = []
    seen: set[str] = set()
    for key, value in pairs:
        if key not in QUERY_KEYS:
            raise InputError(f"--query: unknown key {key!r}; use {', '.join(QUERY_KEYS)}")
        if key == "StudyInstanceUID":
            uids.append(value)
            continue
        if QUERY_KEYS[key] in seen:
            raise InputError(f"--query: {key} given twice")
        seen.add(QUERY_KEYS[key])
        kwargs[QUERY_KEYS[key]] = value
    if uids:
        kwargs["study_uids"] = uids
    return kwargs


def dicomweb_items(config: PacsConfig, query: str | None, store: bool = False) -> list[ManifestItem]:
    """One item per sagittal MR series of the studies matching ``query``; id = SeriesInstanceUID.

    Parameters
    ----------
    config : PacsConfig
    store : bool
        Each item stores its SR and GSPS back on the server after labeling.

    Raises
    ------
    InputError
        A malformed query, or no sagittal MR series found.
    PacsError
        The server cannot be reached or answers wrongly.
    """
    from .pacs_client import connect
    from .pacs_query import find_series, find_studies

    kwargs = parse_query(query)
    client = connect(config)
    items: list[ManifestItem] = []
    seen: set[str] = set()
    for study in find_studies(client, **kwargs):
        for series in find_series(client, study.study_uid, sagittal_only=True):
            if not ID_PATTERN.fullmatch(series.series_uid) or series.series_uid in seen:
                continue  # not a usable file name, or listed twice
            seen.add(series.series_uid)
            source = DicomwebSeries(config, study.study_uid, series.series_uid, store)
            items.append(ManifestItem(series.series_uid, f"dicomweb:{study.study_uid}/{series.series_uid}", None, source))
    if not items:
        raise InputError(f"no sagittal MR series on {config.url} match the query {query or '(none)'!r}")
    return items


def batch_items(manifest: Path | None, url: str | None, query: str | None, store: bool) -> list[ManifestItem]:
    """The items of ``spinelabel batch``: a manifest file, or a DICOMweb query (credentials from the environment).

    Raises
    ------
    InputError
        Both or neither of a manifest and ``url``; ``query`` or ``store``
        without ``url``; see :func:`read_manifest` and :func:`dicomweb_items`.
    PacsError
        The server settings are incomplete, or the server cannot be queried.
    """
    if manifest is not None and url is not None:
        raise InputError("give a manifest file or --dicomweb URL, not both")
    if url is None:
        if manifest is None:
            raise InputError("give a manifest file or --dicomweb URL")
        if query is not None or store:
            raise InputError("--query and --store need --dicomweb URL")
        return read_manifest(manifest)
    from .pacs_client import pacs_config

    return dicomweb_items(pacs_config(url), query, store)
