"""DICOMweb access to a PACS: retrieve and harvest spine series, label a study, store results.

A thin layer on `dicomweb-client <https://dicomweb-client.readthedocs.io>`_,
in three modules:

- :mod:`spinelabel.pacs_client`: connection settings (arguments or the
  environment), :func:`~spinelabel.pacs_client.connect`, and
  :func:`~spinelabel.pacs_client.call`, which gives every request a deadline
  and turns every server problem into a one-line
  :class:`~spinelabel.errors.PacsError` (password never shown);
- :mod:`spinelabel.pacs_query` (QIDO-RS): MR studies, and their sagittal
  MR series;
- this module:

  - :func:`retrieve_series` (WADO-RS): one series into a local folder, written
    atomically (a hidden temporary folder renamed when complete, so a half
    retrieved series never looks like a whole one);
  - :func:`harvest`: the sagittal MR series of many studies plus their
    annotation objects (SR and presentation states, modality SR / PR, of the
    same study) into the folder layout that ``spinelabel annotations import``
    reads (see :data:`LAYOUT`);
  - :func:`store` (STOW-RS): our DICOM SR / GSPS back to the server;
  - :func:`label_series`: retrieve one series, label it, write its outputs
    and optionally store the SR and GSPS (the one path of ``spinelabel pacs
    label`` and of ``spinelabel batch``'s DICOMweb items);
    :func:`label_study`: that for each sagittal series of a study.

Batch functions record a failing item and go on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CountNotReachedError, OutputError, PacsError, SpinelabelError, one_line
from .pacs_client import base_url, call, short_error
from .pacs_query import StudyInfo, find_series, find_studies
from .warning_codes import LabelWarning

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

    from .io import LoadedImage
    from .results import LabelResult

    from .carried_count import CountingSeries
    from .pipeline import AutoLabeler, Labeler

__all__ = [
    "LAYOUT", "HarvestReport", "LabeledSeries", "NotStoredError", "SeriesOutputs", "harvest", "label_series", "label_study",
    "find_counting_series", "read_counting_series", "retrieve_series", "store",
]

LAYOUT = """\
OUT_DIR/
  harvest.json                      what was harvested, and every failure
  <StudyInstanceUID>/
    <SeriesInstanceUID>/            one folder per series: sagittal MR images,
      <SOPInstanceUID>.dcm          or the SR / PR annotation objects of a series
"""

# ----------------------------------------------------------------- WADO / STOW


def _save_dataset(ds: Any, path: Path) -> None:
    """Write a retrieved dataset as a DICOM Part 10 file."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = FileMetaDataset() if meta is None else meta
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def _check_retrieved(datasets: Sequence[Any], study_uid: str, series_uid: str, url: str) -> None:
    """PacsError unless every retrieved instance belongs to the study and series asked for.

    A server (or a proxy in front of it) that answers with another series
    would otherwise have that series labeled, and the result written and
    stored under the UIDs that were asked for: another patient's labels.
    """
    for n, ds in enumerate(datasets, start=1):
        try:
            got = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        except Exception as exc:  # a damaged part of the answer: pydicom parses elements on access
            raise PacsError(f"series {series_uid}: instance {n} of the answer from {url} is damaged ({_first_line(exc)})") from None
        if got[:2] != (study_uid, series_uid):
            raise PacsError(
                f"asked {url} for series {series_uid} of study {study_uid}, it answered with series {got[1]} of study "
                f"{got[0]} (instance {n}): nothing labeled or stored"
            )


def _save_retrieved(ds: Any, path: Path, n: int, series_uid: str, url: str) -> None:
    """:func:`_save_dataset`, a dataset that cannot be written (a damaged answer) as PacsError; OSError passes."""
    try:
        _save_dataset(ds, path)
    except OSError:
        raise
    except Exception as exc:  # pydicom raises many types for elements it cannot encode (a truncated answer)
        raise PacsError(f"series {series_uid}: instance {n} of the answer from {url} is damaged ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of a pydicom error (its message goes on with the traceback of the error it wraps)."""
    lines = str(exc).strip().splitlines()
    return one_line(lines[0] if lines else type(exc).__name__)


def _safe_name(uid: str) -> str:
    """A UID as a file or folder name (UIDs are digits and dots; anything else is replaced)."""
    return re.sub(r"[^0-9A-Za-z.\-]", "_", uid) or "_"


def retrieve_series(
    client: DICOMwebClient, study_uid: str, series_uid: str, folder: str | Path, *, overwrite: bool = False
) -> list[Path]:
    """Retrieve a whole series (WADO-RS) into ``folder``, one ``<SOPInstanceUID>.dcm`` per instance.

    The files are written to a hidden temporary folder beside ``folder``,
    which is renamed to ``folder`` only when every instance is written. An
    existing ``folder`` is kept as it is (a finished earlier retrieval)
    unless ``overwrite``.

    Returns
    -------
    list of Path
        The files, sorted by name.
    """
    folder = Path(folder)
    if folder.is_dir() and not overwrite:
        return sorted(folder.glob("*.dcm"))
    datasets = call(
        client, f"retrieve series {series_uid}", client.retrieve_series,
        study_instance_uid=study_uid, series_instance_uid=series_uid, retrieve=True,
    )
    if not datasets:
        raise PacsError(f"series {series_uid} of study {study_uid} has no instances on {base_url(client)}")
    _check_retrieved(datasets, study_uid, series_uid, base_url(client))
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".partial"))
    except OSError as exc:
        raise PacsError(f"cannot write series {series_uid} to {folder}: {exc.strerror or exc}") from None
    try:
        for n, ds in enumerate(datasets, start=1):
            _save_retrieved(ds, tmp / f"{_safe_name(str(ds.SOPInstanceUID))}.dcm", n, series_uid, base_url(client))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as exc:  # disk full, permissions
        shutil.rmtree(tmp, ignore_errors=True)
        raise PacsError(f"cannot write series {series_uid} to {folder}: {short_error(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(folder.glob("*.dcm"))


def store(client: DICOMwebClient, paths: Iterable[str | Path]) -> list[str]:
    """Store DICOM files on the server (STOW-RS), one request per file.

    A file counts as stored only when the server's answer lists its SOP
    Instance UID among the stored instances (Referenced SOP Sequence); an
    answer that does not (an HTML page, an empty body with status 200) is a
    failure, not a success.

    Returns
    -------
    list of str
        SOP Instance UIDs stored.

    Raises
    ------
    PacsError
        A file cannot be read, or the server refused, failed or did not
        confirm storing it (the message names the file and the files stored
        before it).
    """
    import pydicom

    stored: list[str] = []
    names: list[str] = []
    for path in paths:
        path = Path(path)
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise PacsError(f"cannot read {path} to store it{_before(names)}: {short_error(exc)}") from None
        try:
            answer = call(client, f"store {path.name}", client.store_instances, datasets=[ds])
            _check_stored(answer, str(ds.SOPInstanceUID), path.name, base_url(client))
        except PacsError as exc:
            raise PacsError(f"{exc}{_before(names)}") from None
        stored.append(str(ds.SOPInstanceUID))
        names.append(path.name)
    return stored


def _check_stored(answer: Any, sop_uid: str, name: str, url: str) -> None:
    """PacsError unless a STOW-RS answer lists ``sop_uid`` as stored and not as failed."""
    failed = answer.get("FailedSOPSequence") if answer is not None else None
    if failed:
        reason = failed[0].get("FailureReason", "?")
        raise PacsError(f"the DICOMweb server at {url} did not store {name} (failure reason {reason})")
    referenced = (answer.get("ReferencedSOPSequence") if answer is not None else None) or []
    if not any(str(item.get("ReferencedSOPInstanceUID", "")) == sop_uid for item in referenced):
        raise PacsError(
            f"the DICOMweb server at {url} did not confirm storing {name} (its answer lists no such stored instance)"
        )


def _before(names: list[str]) -> str:
    """What a store message adds about the files stored before the one that failed."""
    return f" (stored before it: {', '.join(names)})" if names else ""


# ----------------------------------------------------------------- harvest


@dataclass
class HarvestReport:
    """What :func:`harvest` fetched, and what failed (one line per item)."""

    out_dir: Path
    studies: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def n_series(self) -> int:
        return sum(len(s["images"]) for s in self.studies)

    @property
    def n_annotations(self) -> int:
        return sum(len(s["annotations"]) for s in self.studies)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "studies": self.studies, "failures": self.failures}


def harvest(
    client: DICOMwebClient,
    out_dir: str | Path,
    *,
    studies: Sequence[StudyInfo] | None = None,
    annotated_only: bool = True,
    progress: Callable[[str], None] | None = None,
    **find: Any,
) -> HarvestReport:
    """Fetch sagittal MR series and their studies' annotation objects into ``out_dir``.

    Parameters
    ----------
    studies : sequence of StudyInfo, optional
        Studies to harvest; by default :func:`find_studies` with ``**find``.
    annotated_only : bool
        Skip studies without an SR or PR series (nothing to train from).
    progress : callable, optional
        Called with each study UID.

    Returns
    -------
    HarvestReport
        Also written to ``out_dir/harvest.json``. The layout is :data:`LAYOUT`.

    Raises
    ------
    PacsError
        Only when the study search itself fails; a failing study or series is
        recorded in ``failures`` and the harvest goes on.
    OutputError
        ``out_dir`` or its ``harvest.json`` cannot be written (the message
        names the first failure recorded before, if any).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write into {out_dir}: {exc.strerror or exc}") from None
    if studies is None:
        studies = find_studies(client, **find)
    report = HarvestReport(out_dir)
    for study in studies:
        if progress is not None:
            progress(study.study_uid)
        try:
            entry = _harvest_study(client, study, out_dir, annotated_only, report.failures)
        except PacsError as exc:
            report.failures.append(f"study {study.study_uid}: {exc}")
            continue
        if entry is not None:
            report.studies.append(entry)
    try:
        _write_json(out_dir / "harvest.json", report.to_dict())
    except OutputError as exc:  # the failures would be lost with the report: name them in the one line
        failed = f"; {len(report.failures)} item(s) had failed before it, first: {report.failures[0]}" if report.failures else ""
        raise OutputError(f"{exc}{failed}") from None
    return report


def _harvest_study(
    client: DICOMwebClient, study: StudyInfo, out_dir: Path, annotated_only: bool, failures: list[str]
) -> dict[str, Any] | None:
    """Fetch one study's sagittal MR and annotation series; None when there is nothing to take."""
    series = find_series(client, study.study_uid, sagittal_only=True, annotations=True)
    images = [s for s in series if s.is_sagittal_mr]
    notes = [s for s in series if s.is_annotation]
    if not images or (annotated_only and not notes):
        return None
    entry: dict[str, Any] = {"study_uid": study.study_uid, "patient_id": study.patient_id, "images": [], "annotations": []}
    study_dir = out_dir / _safe_name(study.study_uid)
    for s in images + notes:
        try:
            files = retrieve_series(client, study.study_uid, s.series_uid, study_dir / _safe_name(s.series_uid))
        except PacsError as exc:
            failures.append(f"study {study.study_uid} series {s.series_uid}: {exc}")
            continue
        record = {
            "series_uid": s.series_uid, "modality": s.modality, "description": s.description,
            "folder": str(files[0].parent.relative_to(out_dir)) if files else "", "files": len(files),
        }
        entry["images" if s.is_sagittal_mr else "annotations"].append(record)
    return entry


def _write_json(path: Path, doc: Any) -> None:
    from .io.outputs import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())


# ----------------------------------------------------------------- label


@dataclass(frozen=True)
class SeriesOutputs:
    """Where labeling one series writes: the result JSON and, optionally, the DICOM SR, the GSPS and an overlay PNG."""

    json: Path
    sr: Path | None = None
    gsps: Path | None = None
    overlay: Path | None = None

    @classmethod
    def beside(cls, json: Path, *, overlay: Path | None = None) -> SeriesOutputs:
        """``json`` (``NAME.json``) with ``NAME.sr.dcm`` and ``NAME.gsps.dcm`` in its folder."""
        name = json.name.removesuffix(".json")
        return cls(json, json.with_name(f"{name}.sr.dcm"), json.with_name(f"{name}.gsps.dcm"), overlay)


@dataclass(frozen=True)
class LabeledSeries:
    """The outputs of labeling one retrieved series."""

    series_uid: str
    outputs: SeriesOutputs
    n_vertebrae: int
    stored: tuple[str, ...] = ()
    #: The reader's and the labeler's warnings (stderr and the JSON ``warnings``).
    warnings: tuple[LabelWarning, ...] = ()
    #: The count it may carry on to another series of the study: a series that took a count carried from another
    #: (``carried_count.counting_series``); None when it was counted on its own or cannot carry the count on.
    counting: CountingSeries | None = None


class NotStoredError(PacsError):
    """A series was labeled and its outputs written, but the server did not store them (``labeled``: what was written)."""

    def __init__(self, labeled: LabeledSeries, reason: str) -> None:
        super().__init__(f"labeled ({labeled.outputs.json}) but not stored on the server: {reason}")
        self.labeled, self.reason = labeled, reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.labeled, self.reason)


def label_study(
    client: DICOMwebClient,
    study_uid: str,
    labeler: Labeler | AutoLabeler,
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    do_store: bool = False,
    failures: list[str] | None = None,
    stack: str | None = None,
    counting: CountingSeries | None = None,
    notes: list[str] | None = None,
) -> list[LabeledSeries]:
    """Label the sagittal MR series of a study; write JSON, SR and GSPS; optionally STOW them.

    Each series goes through :func:`label_series`; its outputs are
    ``out_dir/<SeriesInstanceUID>.json|.sr.dcm|.gsps.dcm``, all three or none.
    ``counting`` (:func:`read_counting_series`): every other series is named with the count carried from it; one
    it does not reach is counted from a series that took the count and reaches it (the stations of a whole-spine
    study), else named on its own, and ``notes`` gets a line saying so.

    Raises
    ------
    PacsError
        The study has no sagittal MR series (or not ``series_uid``), or no
        series could be labeled. A failing series among several is appended
        to ``failures`` and the others go on; so is a labeled series whose
        outputs the server did not store (it is still returned, with
        ``stored`` empty).
    """
    failures = [] if failures is None else failures
    series = [s.series_uid for s in find_series(client, study_uid, sagittal_only=True) if series_uid in (None, s.series_uid)]
    if not series:
        which = f"series {series_uid}" if series_uid else "sagittal MR series"
        raise PacsError(f"study {study_uid}: no {which} on {base_url(client)}")
    carriers: list[CountingSeries] = [counting] if counting is not None else []
    tried = dict.fromkeys(series, 0)  # how many of ``carriers`` each series has been tried with
    done: dict[str, LabeledSeries] = {}
    failed: set[str] = set()
    root = {counting.series_uid} if counting is not None else set()  # on its own: every carrier counts from it
    while pending := [uid for uid in series if uid not in done.keys() | failed | root and tried[uid] < len(carriers)]:
        for uid in pending:  # a round: each series tried with the counts carried since its last try
            fresh = carriers[tried[uid]:]
            tried[uid] = len(carriers)
            if _record(uid, lambda: label_series(client, study_uid, uid, labeler, _outputs(out_dir, uid),
                                                 do_store=do_store, stack=stack, counts=fresh), done, failed, failures):
                carriers += [c for c in (done[uid].counting,) if c is not None]
    for uid in series:  # on its own: without a counting series, the counting series, or a series none reaches
        if uid in done.keys() | failed:
            continue
        labeled = _record(uid, lambda: label_series(client, study_uid, uid, labeler, _outputs(out_dir, uid),
                                                    do_store=do_store, stack=stack), done, failed, failures)
        if labeled and counting is not None and uid != counting.series_uid and notes is not None:
            alone = " (with --series, no other series of the study is labeled to pass the count on)" if series_uid else ""
            notes.append(f"series {uid}: no count carried in the study reaches a vertebra named in it{alone}: "
                         "counted on its own")
    if not done:
        raise PacsError(f"study {study_uid}: no series could be labeled ({'; '.join(failures)})")
    return [done[uid] for uid in series if uid in done]


def _record(
    uid: str, attempt: Callable[[], LabeledSeries], done: dict[str, LabeledSeries], failed: set[str],
    failures: list[str],
) -> bool:
    """Run ``attempt`` (labeling series ``uid``) into ``done``, or ``failed`` and ``failures``; whether it was labeled.

    A count that reaches none of its vertebrae (``CountNotReachedError``) is no failure: nothing was written, and
    the series may be counted otherwise. A series labeled but not stored is both labeled and a failure.
    """
    try:
        done[uid] = attempt()
        return True
    except CountNotReachedError:
        return False
    except NotStoredError as exc:
        failures.append(f"series {uid}: {exc}")
        done[uid] = exc.labeled
        return True
    except SpinelabelError as exc:
        failures.append(f"series {uid}: {exc}")
        failed.add(uid)
        return False


def read_counting_series(
    client: DICOMwebClient, study_uid: str, series_uid: str, stack: str | None = None, *, check_orientation: bool = True,
) -> CountingSeries:
    """Retrieve a series of a study and read it as the series to carry a count from (``pipeline.read_counting_series``).

    Raises
    ------
    SpinelabelError
        It cannot be retrieved, read or labeled, or its count is not sure enough to carry (the message names it).
    """
    from .pipeline import read_counting_series as read

    with tempfile.TemporaryDirectory(prefix="spinelabel-pacs-") as tmp:
        folder = Path(tmp) / "series"
        try:
            retrieve_series(client, study_uid, series_uid, folder)
        except SpinelabelError as exc:
            raise type(exc)(f"counting series {series_uid}: {exc}") from None
        return read([folder], stack=stack, check_orientation=check_orientation, name=series_uid)


def _outputs(out_dir: str | Path, series_uid: str) -> SeriesOutputs:
    """Where :func:`label_study` writes a series' outputs: ``out_dir/<SeriesInstanceUID>.json|.sr.dcm|.gsps.dcm``."""
    return SeriesOutputs.beside(Path(out_dir) / f"{_safe_name(series_uid)}.json")


def find_counting_series(
    client: DICOMwebClient, study_uid: str, stack: str | None = None, *, check_orientation: bool = True,
) -> tuple[CountingSeries | None, list[str]]:
    """The sagittal series of a study to carry a count from (:func:`read_counting_series`), and why each series
    tried may not (``UID: reason``); None when none may.

    The first that counts from C2; where none does, the first that counts from S1 (``carried_count.COUNT_ANCHORS``:
    a count from C2 reaches what a lumbar series' cannot). Each series is retrieved and labeled once for this, up to
    every sagittal series of the study where none counts from C2: a study of four sagittal series costs up to four
    network passes more than labeling it.
    """
    from .carried_count import COUNT_ANCHORS
    from .errors import InputError, NothingFoundError

    refused: list[str] = []
    found: CountingSeries | None = None
    for s in find_series(client, study_uid, sagittal_only=True):
        try:
            counting = read_counting_series(client, study_uid, s.series_uid, stack, check_orientation=check_orientation)
        except (InputError, NothingFoundError) as exc:  # a server that fails is no refusal: it stops the command
            refused.append(one_line(str(exc)))
            continue
        if counting.anchor == COUNT_ANCHORS[0]:
            return counting, refused
        found = found or counting
    return found, refused


def label_series(
    client: DICOMwebClient, study_uid: str, series_uid: str, labeler: Labeler | AutoLabeler, outputs: SeriesOutputs,
    *, do_store: bool = False, stack: str | None = None, counts: Sequence[CountingSeries] = (),
) -> LabeledSeries:
    """Retrieve one series into a temporary folder, label it, write ``outputs``; with ``do_store`` store its SR and GSPS.

    The one retrieve-label-store path: :func:`label_study` (``spinelabel
    pacs label``) and the DICOMweb items of ``spinelabel batch``
    (``batch.label_task``) both go through it. The outputs are written all or
    none (``io.load_image``, which reads ``stack`` of a series holding
    several, then ``pipeline.label_loaded_to_files``, as
    ``pipeline.label_to_files`` composes them); the temporary folder is
    removed. ``counts``: counts carried from other series, tried in turn on
    the one image retrieved: the series is named with the first that reaches
    it (none given: on its own).

    Returns
    -------
    LabeledSeries
        ``stored``: the SOP Instance UIDs the server stored (empty without ``do_store``); ``counting``: the count it
        may carry on, when it took one of ``counts``.

    Raises
    ------
    CountNotReachedError
        None of ``counts`` reaches a vertebra named in it (nothing written).
    NotStoredError
        With ``do_store``: the outputs were written, the server did not store them.
    SpinelabelError
        The series cannot be retrieved, read or labeled, or an output cannot
        be written (none is left behind).
    ValueError
        ``do_store`` with no SR or no GSPS among ``outputs``.
    """
    from .io.outputs import check_scan_outputs
    from .io import load_image
    from .pipeline import label_loaded_to_files

    if do_store and (outputs.sr is None or outputs.gsps is None):
        raise ValueError("storing a labeled series needs its SR and GSPS outputs")
    # refused before the series travels: a reviewed result in the way, a name the system will not take
    check_scan_outputs(outputs.json, outputs.overlay, outputs.sr, outputs.gsps)
    with tempfile.TemporaryDirectory(prefix="spinelabel-pacs-") as tmp:
        folder = Path(tmp) / "series"
        retrieve_series(client, study_uid, series_uid, folder)
        # the folder holds this one series (several would be refused as such)
        loaded = load_image([folder], stack=stack)
        for k, counting in enumerate(counts or [None]):
            try:
                result = label_loaded_to_files(labeler, loaded, outputs.json, outputs.overlay, outputs.sr, outputs.gsps,
                                               counting=counting)
                break
            except CountNotReachedError:  # nothing written: the next count, if any
                if k == len(counts) - 1:
                    raise
    labeled = LabeledSeries(series_uid, outputs, len(result.vertebrae), warnings=tuple(result.warnings),
                            counting=_carried_on(result, replace(loaded, source=series_uid), counting))
    return _store_outputs(client, labeled) if do_store else labeled


def _carried_on(result: LabelResult, loaded: LoadedImage, counting: CountingSeries | None) -> CountingSeries | None:
    """The count a series (``loaded``, labeled ``result``) counted from ``counting`` may carry on to another series of
    its study (``carried_count.counting_series``), or None."""
    from .carried_count import counting_series
    from .errors import InputError

    if counting is None:
        return None
    try:
        return counting_series(result, loaded, counting)
    except InputError:
        return None


def _store_outputs(client: DICOMwebClient, labeled: LabeledSeries) -> LabeledSeries:
    """``labeled`` with the UIDs the server stored of its SR and GSPS; NotStoredError when it did not."""
    paths = [p for p in (labeled.outputs.sr, labeled.outputs.gsps) if p is not None]
    try:
        return replace(labeled, stored=tuple(store(client, paths)))
    except PacsError as exc:
        raise NotStoredError(labeled, str(exc)) from None
