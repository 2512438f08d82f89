"""DICOMweb access to a PACS: find, retrieve and harvest spine series, store results.

A thin layer on `dicomweb-client <https://dicomweb-client.readthedocs.io>`_:

- :func:`find_studies` / :func:`find_series` (QIDO-RS): MR studies, and their
  sagittal MR series. A series counts as sagittal when the normal of its
  ImageOrientationPatient (from QIDO, else from the WADO-RS metadata of one
  instance) points mostly left-right; when the server gives no orientation,
  its SeriesDescription decides ("SAG", "sagittal", ...).
- :func:`retrieve_series` (WADO-RS): one series into a local folder, written
  atomically (a hidden temporary folder renamed when complete, so a half
  retrieved series never looks like a whole one).
- :func:`harvest`: the sagittal MR series of many studies plus their
  annotation objects (SR and presentation states, modality SR / PR, of the
  same study) into the folder layout that ``spinelabel annotations import``
  reads (see :data:`LAYOUT`).
- :func:`store` (STOW-RS): our DICOM SR / GSPS back to the server.
- :func:`label_study`: retrieve a study's sagittal series, label it, write
  the result JSON, SR and GSPS, and optionally store them.

Connection settings come from arguments or the environment
(:data:`ENV_URL`, :data:`ENV_USER`, :data:`ENV_PASSWORD`,
:data:`ENV_CA_BUNDLE`), never from code. Every server problem (unreachable,
TLS, timeout, HTTP 4xx/5xx) is a :class:`~spinelabel.errors.PacsError`
with a one-line message; batch functions record it per item and go on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .errors import PacsError, SpinelabelError

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

    from .pipeline import AutoLabeler, Labeler

__all__ = [
    "ENV_CA_BUNDLE",
    "ENV_PASSWORD",
    "ENV_URL",
    "ENV_USER",
    "LAYOUT",
    "HarvestReport",
    "LabeledSeries",
    "PacsConfig",
    "SeriesInfo",
    "StudyInfo",
    "connect",
    "find_series",
    "find_studies",
    "harvest",
    "label_study",
    "pacs_config",
    "retrieve_series",
    "store",
]

ENV_URL = "SPINELABEL_DICOMWEB_URL"
ENV_USER = "SPINELABEL_DICOMWEB_USER"
ENV_PASSWORD = "SPINELABEL_DICOMWEB_PASSWORD"
#: A CA bundle (PEM file) to verify the server's TLS certificate against.
ENV_CA_BUNDLE = "SPINELABEL_DICOMWEB_CA_BUNDLE"

#: Seconds to wait for a connection and for each answer. Retrieving a clinical
#: sagittal series (20-30 images) takes about a second on a hospital network;
#: 60 s tolerates a busy archive without letting one request hang a batch.
DEFAULT_TIMEOUT_S = 60.0
#: Attempts for answers that say "try again" (:data:`RETRY_STATUS`), waiting
#: RETRY_WAIT_S, then twice that: a short overload is bridged, a dead server is
#: reported within seconds. Connection errors are not retried (a refused
#: connection will be refused again; each item of a batch reports it at once).
RETRY_ATTEMPTS = 3
RETRY_WAIT_S = 1.0
#: HTTP statuses that mean "try again later": timeout, too many requests, unavailable, gateway timeout.
RETRY_STATUS = (408, 429, 503, 504)

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

LAYOUT = """\
OUT_DIR/
  harvest.json                      what was harvested, and every failure
  <StudyInstanceUID>/
    <SeriesInstanceUID>/            one folder per series: sagittal MR images,
      <SOPInstanceUID>.dcm          or the SR / PR annotation objects of a series
"""

T = TypeVar("T")


# ----------------------------------------------------------------- connection


@dataclass(frozen=True)
class PacsConfig:
    """How to reach a DICOMweb server.

    Attributes
    ----------
    url : str
        DICOMweb root, e.g. ``https://pacs.example.org/dicom-web``.
    username, password : str or None
        HTTP basic authentication (both or neither).
    verify : bool or str
        Verify the server's TLS certificate (True), against a CA bundle file
        (str), or not at all (False; test servers only).
    timeout_s : float
        Connect and read timeout per request.
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout_s: float = DEFAULT_TIMEOUT_S


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user:password@, user, password)``: credentials never travel inside a printed URL.

    >>> split_credentials("https://ann:s3cret@pacs.example.org/dicom-web")
    ('https://pacs.example.org/dicom-web', 'ann', 's3cret')
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        user, password, host = parts.username, parts.password, parts.hostname
        port = parts.port
    except ValueError:
        return re.sub(r"//[^/@\s]*@", "//", url), None, None  # unparsable: drop anything that looks like user:pass@
    if user is None and password is None:
        return url, None, None
    netloc = (host or "") + (f":{port}" if port is not None else "")
    if host and ":" in host:  # IPv6 literal
        netloc = f"[{host}]" + (f":{port}" if port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) if user else None, unquote(password) if password else None


def pacs_config(
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    *,
    ca_bundle: str | Path | None = None,
    insecure: bool = False,
    timeout_s: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> PacsConfig:
    """Connection settings from arguments, falling back to the environment.

    Raises
    ------
    PacsError
        No URL, a URL that is not http(s), a user without a password (or the
        reverse), a missing CA bundle, or ``insecure`` with a CA bundle.
    """
    env = os.environ if environ is None else environ
    url = (url or env.get(ENV_URL) or "").strip()
    if not url:
        raise PacsError(f"no DICOMweb server given: use --url or set {ENV_URL}")
    url, url_user, url_password = split_credentials(url)
    if not re.match(r"^https?://[^/\s]+", url):
        raise PacsError(f"malformed DICOMweb URL {url!r} (expected http(s)://host[:port]/path)")
    username = username if username is not None else url_user or env.get(ENV_USER) or None
    password = password if password is not None else url_password or env.get(ENV_PASSWORD) or None
    if (username is None) != (password is None):
        missing = "password" if password is None else "user name"
        raise PacsError(f"DICOMweb {missing} missing: give both --user and --password (or {ENV_USER} and {ENV_PASSWORD})")
    bundle = ca_bundle if ca_bundle is not None else env.get(ENV_CA_BUNDLE) or None
    if bundle is not None and insecure:
        raise PacsError("--insecure and a CA bundle contradict each other: choose one")
    if bundle is not None and not Path(bundle).is_file():
        raise PacsError(f"CA bundle not found: {bundle}")
    verify: bool | str = False if insecure else (str(bundle) if bundle is not None else True)
    timeout = DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    if timeout <= 0:
        raise PacsError(f"timeout must be positive, got {timeout}")
    return PacsConfig(url.rstrip("/"), username, password, verify, timeout)


def _session_class(requests):
    """A requests.Session whose explicit ``verify`` (a CA bundle, or off) beats the environment.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a
    session's ``verify`` for every request that does not pass its own, which
    is how dicomweb-client calls it: on a machine with those variables set
    (common in hospitals), ``--ca-bundle`` would be silently ignored.
    """

    class _Session(requests.Session):
        explicit_verify = False

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.explicit_verify:
                settings["verify"] = self.verify
            return settings

    return _Session


def connect(config: PacsConfig) -> DICOMwebClient:
    """A DICOMweb client with the config's authentication, TLS verification and timeout."""
    import requests
    from dicomweb_client import DICOMwebClient

    session = _session_class(requests)()
    session.explicit_verify = config.verify is not True
    if config.username is not None:
        session.auth = (config.username, config.password or "")
    session.verify = config.verify
    try:
        client = DICOMwebClient(config.url, session=session, timeout=config.timeout_s)
    except ValueError as exc:
        raise PacsError(f"malformed DICOMweb URL {config.url!r}: {exc}") from None
    client.set_http_retry_params(retry=False)  # retries are ours (_call): HTTP statuses only, no exceptions
    return client


def _base_url(client: DICOMwebClient) -> str:
    return str(getattr(client, "base_url", "the DICOMweb server"))


def _short(exc: BaseException) -> str:
    """The most telling part of a requests/urllib3 error, on one line."""
    text = str(exc)
    for needle, say in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("Temporary failure in name resolution", "host name cannot be resolved"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("certificate verify failed", "certificate verify failed"),
        ("RemoteDisconnected", "the server closed the connection"),
        ("Connection reset", "connection reset"),
    ):
        if needle in text:
            return say
    return " ".join(text.split())[:200] or type(exc).__name__


def _http_message(what: str, url: str, response: Any) -> str:
    code = getattr(response, "status_code", "?")
    reason = getattr(response, "reason", "") or ""
    status = f"HTTP {code} {reason}".strip()
    if code in (401, 403):
        return (
            f"the DICOMweb server at {url} refused to {what} ({status}): check the user name and password "
            f"(--user/--password or {ENV_USER}/{ENV_PASSWORD})"
        )
    if code == 404:
        return f"cannot {what}: not found on the DICOMweb server at {url} ({status})"
    if isinstance(code, int) and code >= 500:
        return f"the DICOMweb server at {url} failed to {what} ({status})"
    return f"the DICOMweb server at {url} rejected the request to {what} ({status})"


def _call(client: DICOMwebClient, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one client call; turn every transport or HTTP problem into a one-line PacsError.

    ``what`` completes "cannot ..." / "failed to ...", e.g. "search for studies".
    """
    import time

    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return _call_once(client, what, fn, *args, **kwargs)
        except _Retry as retry:
            if attempt == RETRY_ATTEMPTS:
                raise PacsError(retry.message) from None
            time.sleep(RETRY_WAIT_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


class _Retry(Exception):
    """An HTTP answer that says "try again later"."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _call_once(client: DICOMwebClient, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    import requests

    url = _base_url(client)
    try:
        return fn(*args, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise PacsError(
            f"TLS verification failed for {url} ({_short(exc)}): give the server's CA with --ca-bundle or {ENV_CA_BUNDLE}"
        ) from None
    except requests.exceptions.Timeout:
        raise PacsError(f"the DICOMweb server at {url} did not answer in time (cannot {what})") from None
    except requests.exceptions.ConnectionError as exc:
        raise PacsError(f"cannot reach the DICOMweb server at {url} ({_short(exc)}; cannot {what})") from None
    except requests.exceptions.HTTPError as exc:
        message = _http_message(what, url, exc.response)
        if getattr(exc.response, "status_code", None) in RETRY_STATUS:
            raise _Retry(message) from None
        raise PacsError(message) from None
    except requests.exceptions.RequestException as exc:
        raise PacsError(f"cannot {what} on {url}: {_short(exc)}") from None
    except ValueError as exc:  # malformed answer (JSON, multipart) or an invalid UID
        raise PacsError(f"cannot {what} on {url}: unexpected answer ({_short(exc)})") from None


# ----------------------------------------------------------------- DICOM JSON


def _tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def _values(item: Mapping[str, Any], keyword: str) -> list[Any]:
    """The values of an attribute in a DICOM JSON object ([] when absent)."""
    element = item.get(_tag(keyword)) or {}
    return list(element.get("Value") or [])


def _text(item: Mapping[str, Any], keyword: str) -> str:
    values = _values(item, keyword)
    if not values:
        return ""
    v = values[0]
    if isinstance(v, dict):  # PN: {"Alphabetic": "..."}
        return str(v.get("Alphabetic", ""))
    return str(v)


def _int(item: Mapping[str, Any], keyword: str) -> int | None:
    try:
        return int(_text(item, keyword))
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
    #: "sagittal", "coronal", "axial", or "unknown" (not an image series / no orientation).
    orientation: str = "unknown"

    @property
    def is_sagittal_mr(self) -> bool:
        return self.modality == "MR" and self.orientation == "sagittal"

    @property
    def is_annotation(self) -> bool:
        return self.modality in ANNOTATION_MODALITIES


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
        items += _search_all(client, "search for studies", client.search_for_studies, limit, search_filters=query, fields=fields)
    studies = [
        StudyInfo(
            study_uid=_text(it, "StudyInstanceUID"),
            patient_id=_text(it, "PatientID"),
            patient_name=_text(it, "PatientName"),
            study_date=_text(it, "StudyDate"),
            description=_text(it, "StudyDescription"),
            modalities=tuple(str(v) for v in _values(it, "ModalitiesInStudy")),
        )
        for it in items
    ]
    studies = [s for s in studies if s.study_uid]
    return studies[:limit] if limit is not None else studies


def _search_all(
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
        items = _json_objects(_call(client, what, fn, limit=page, offset=len(out), **kwargs), what, client)
        keys = [json.dumps(it, sort_keys=True) for it in items]
        new = [it for it, k in zip(items, keys) if k not in seen]
        seen.update(keys)
        out.extend(new)
        if len(items) < page or not new:
            return out
    else:
        raise PacsError(
            f"cannot {what} on {_base_url(client)}: still more results after {MAX_QIDO_PAGES} pages "
            f"({len(out)} items); narrow the query or give a limit"
        )
    return out


def _json_objects(items: Any, what: str, client: DICOMwebClient) -> list[dict[str, Any]]:
    """A QIDO answer checked to be a list of DICOM JSON objects (tag -> {"vr", "Value"})."""
    ok = isinstance(items, list) and all(
        isinstance(it, dict) and all(isinstance(v, dict) and isinstance(v.get("Value", []), list) for v in it.values())
        for it in items
    )
    if not ok:
        raise PacsError(f"cannot {what} on {_base_url(client)}: unexpected answer (not a list of DICOM JSON objects)")
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
    """The plane of an image series: QIDO instance field, WADO metadata, or the description."""
    what = f"query an instance of series {series_uid}"
    items = _json_objects(_call(
        client, what, client.search_for_instances,
        study_instance_uid=study_uid, series_instance_uid=series_uid,
        fields=["ImageOrientationPatient"], limit=1,
    ), what, client)
    if items:
        iop = _values(items[0], "ImageOrientationPatient")
        if len(iop) == 6:
            return orientation_of(iop)
        sop = _text(items[0], "SOPInstanceUID")
        if sop:
            try:
                meta = _call(
                    client, f"read the metadata of instance {sop}", client.retrieve_instance_metadata,
                    study_instance_uid=study_uid, series_instance_uid=series_uid, sop_instance_uid=sop,
                )
            except PacsError:
                meta = None  # no WADO-RS metadata here: the description decides
            meta = meta[0] if isinstance(meta, list) and meta else meta
            if isinstance(meta, dict) and all(isinstance(v, dict) for v in meta.values()):
                iop = _values(meta, "ImageOrientationPatient")
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
    items = _json_objects(_call(client, what, client.search_for_series, study_instance_uid=study_uid, fields=fields),
                          what, client)
    out = []
    for it in items:
        info = SeriesInfo(
            study_uid=study_uid,
            series_uid=_text(it, "SeriesInstanceUID"),
            modality=_text(it, "Modality").upper(),
            description=_text(it, "SeriesDescription"),
            number=_int(it, "SeriesNumber"),
            n_instances=_int(it, "NumberOfSeriesRelatedInstances"),
        )
        if not info.series_uid:
            continue
        if info.modality == "MR":
            info = SeriesInfo(**{**asdict(info), "orientation": _series_orientation(client, study_uid, info.series_uid, info.description)})
        keep = info.is_sagittal_mr or not sagittal_only and info.modality not in ANNOTATION_MODALITIES
        if keep or annotations and info.is_annotation:
            out.append(info)
    return sorted(out, key=lambda s: (s.number is None, s.number or 0, s.series_uid))


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
    datasets = _call(
        client, f"retrieve series {series_uid}", client.retrieve_series,
        study_instance_uid=study_uid, series_instance_uid=series_uid,
    )
    if not datasets:
        raise PacsError(f"series {series_uid} of study {study_uid} has no instances on {_base_url(client)}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".partial"))
    except OSError as exc:
        raise PacsError(f"cannot write series {series_uid} to {folder}: {exc.strerror or exc}") from None
    try:
        for ds in datasets:
            _save_dataset(ds, tmp / f"{_safe_name(str(ds.SOPInstanceUID))}.dcm")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except (OSError, ValueError) as exc:  # disk full, permissions; a dataset pydicom cannot write
        shutil.rmtree(tmp, ignore_errors=True)
        raise PacsError(f"cannot write series {series_uid} to {folder}: {_short(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(folder.glob("*.dcm"))


def store(client: DICOMwebClient, paths: Iterable[str | Path]) -> list[str]:
    """Store DICOM files on the server (STOW-RS), one request per file.

    Returns
    -------
    list of str
        SOP Instance UIDs stored.

    Raises
    ------
    PacsError
        A file cannot be read, or the server refused or failed to store it
        (the message names the file; files before it were stored).
    """
    import pydicom

    stored = []
    for path in paths:
        path = Path(path)
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise PacsError(f"cannot read {path} to store it: {_short(exc)}") from None
        answer = _call(client, f"store {path.name}", client.store_instances, datasets=[ds])
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"the DICOMweb server at {_base_url(client)} did not store {path.name} (failure reason {reason})")
        stored.append(str(ds.SOPInstanceUID))
    return stored


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
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    _write_json(out_dir / "harvest.json", report.to_dict())
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
class LabeledSeries:
    """The outputs of labeling one retrieved series."""

    series_uid: str
    json_path: Path
    sr_path: Path
    gsps_path: Path
    n_vertebrae: int
    stored: tuple[str, ...] = ()


def label_study(
    client: DICOMwebClient,
    study_uid: str,
    labeler: Labeler | AutoLabeler,
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    do_store: bool = False,
    failures: list[str] | None = None,
) -> list[LabeledSeries]:
    """Label the sagittal MR series of a study; write JSON, SR and GSPS; optionally STOW them.

    Each series is retrieved into a temporary folder (removed afterwards).
    Outputs go to ``out_dir/<SeriesInstanceUID>.json|.sr.dcm|.gsps.dcm``.

    Raises
    ------
    PacsError
        The study has no sagittal MR series (or not ``series_uid``), or every
        series failed. A failing series among several is appended to
        ``failures`` and the others go on.
    """
    from .io import load_image
    from .io.dicom_annotations import write_gsps, write_sr
    from .io.outputs import write_json
    from .pipeline import label_loaded

    failures = [] if failures is None else failures
    series = [s for s in find_series(client, study_uid, sagittal_only=True) if series_uid in (None, s.series_uid)]
    if not series:
        which = f"series {series_uid}" if series_uid else "sagittal MR series"
        raise PacsError(f"study {study_uid}: no {which} on {_base_url(client)}")
    out_dir = Path(out_dir)
    done = []
    for s in series:
        try:
            with tempfile.TemporaryDirectory(prefix="spinelabel-pacs-") as tmp:
                retrieve_series(client, study_uid, s.series_uid, Path(tmp) / "series")
                loaded = load_image([Path(tmp) / "series"])
                result = label_loaded(labeler, loaded)
                base = out_dir / _safe_name(s.series_uid)
                json_path, sr_path, gsps_path = (base.with_name(base.name + ext) for ext in (".json", ".sr.dcm", ".gsps.dcm"))
                write_json(result, loaded.source, json_path)
                write_sr(result, loaded.dicom, sr_path)
                write_gsps(result, loaded.dicom, gsps_path)
            stored = tuple(store(client, [sr_path, gsps_path])) if do_store else ()
            done.append(LabeledSeries(s.series_uid, json_path, sr_path, gsps_path, len(result.vertebrae), stored))
        except SpinelabelError as exc:
            failures.append(f"series {s.series_uid}: {exc}")
    if not done:
        raise PacsError(f"study {study_uid}: no series could be labeled ({'; '.join(failures)})")
    return done
