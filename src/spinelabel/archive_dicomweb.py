"""A DICOMweb query as a batch manifest: ``spinelabel batch --url URL --date ...`` (no manifest file).

The studies matching the filters (QIDO-RS, :func:`spinelabel.pacs_query.find_studies`:
the same filters and server options as ``spinelabel pacs find``) are listed with
their sagittal MR series (:func:`spinelabel.pacs_query.find_series`); each series
becomes one :class:`~spinelabel.archive.ManifestItem` whose id is its
SeriesInstanceUID. A worker retrieves, labels and optionally stores the series
when it labels the item (``batch.label_task`` -> :func:`spinelabel.pacs.label_series`,
the path of ``spinelabel pacs label``), so a run is resumable like one over
files: the query is asked again, and the series in ``done.txt`` are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .archive import ID_PATTERN, STORED_SUFFIX, ManifestItem
from .batch import DicomwebSeries
from .errors import InputError

if TYPE_CHECKING:
    from .pacs_client import PacsConfig

__all__ = ["dicomweb_items"]


def dicomweb_items(config: PacsConfig, store: bool = False, **find: Any) -> list[ManifestItem]:
    """One item per sagittal MR series of the MR studies that ``find`` finds; id = SeriesInstanceUID.

    Parameters
    ----------
    config : PacsConfig
        The server; it travels with each item to the worker that labels it.
    store : bool
        Each item stores its SR and GSPS back on the server after labeling;
        its input ends in ``archive.STORED_SUFFIX`` (so a resumed run that
        stores does not skip items an earlier run only labeled).
    **find
        ``pacs_query.find_studies`` filters: ``patient_id``, ``study_date``,
        ``study_uids``, ``limit`` (at most this many studies).

    Raises
    ------
    InputError
        No sagittal MR series found.
    PacsError
        The server cannot be reached or answers wrongly.
    """
    from .pacs_client import connect
    from .pacs_query import find_series, find_studies

    client = connect(config)
    studies = find_studies(client, **find)
    items: list[ManifestItem] = []
    seen: set[str] = set()
    for study in studies:
        for series in find_series(client, study.study_uid, sagittal_only=True):
            if not ID_PATTERN.fullmatch(series.series_uid) or series.series_uid in seen:
                continue  # not a usable file name, or listed twice
            seen.add(series.series_uid)
            source = DicomwebSeries(config, study.study_uid, series.series_uid, store)
            described = f"dicomweb:{study.study_uid}/{series.series_uid}" + (STORED_SUFFIX if store else "")
            items.append(ManifestItem(series.series_uid, described, None, source))
    if not items:
        given = ", ".join(f"{k}={v}" for k, v in find.items() if v not in (None, (), [], "")) or "none"
        raise InputError(f"no sagittal MR series on {config.url} in the {len(studies)} MR studies that match the filters ({given})")
    return items
