"""DICOMweb connection: settings, one client per server, and one-line errors with a deadline per request.

Connection settings come from arguments or the environment
(:data:`ENV_URL`, :data:`ENV_USER`, :data:`ENV_PASSWORD`,
:data:`ENV_CA_BUNDLE`), never from code. Every server call goes through
:func:`call`, which turns every problem (unreachable, TLS, HTTP 4xx/5xx,
an answer that does not arrive within the deadline) into a
:class:`~spinelabel.errors.PacsError` with a one-line message in which the
password never appears.

The deadline covers a whole request (connect, send, and read the whole
answer), not each read: requests' own timeout restarts with every byte, so
a server that drips one byte per second would hold a request forever. A
timer closes the request's sockets when the deadline passes.
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import PacsError, one_line

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

__all__ = [
    "DEFAULT_RETRIEVE_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "ENV_CA_BUNDLE",
    "ENV_PASSWORD",
    "ENV_URL",
    "ENV_USER",
    "PacsConfig",
    "base_url",
    "call",
    "connect",
    "pacs_config",
    "short_error",
    "split_credentials",
]

ENV_URL = "SPINELABEL_DICOMWEB_URL"
ENV_USER = "SPINELABEL_DICOMWEB_USER"
ENV_PASSWORD = "SPINELABEL_DICOMWEB_PASSWORD"
#: A CA bundle (PEM file) to verify the server's TLS certificate against.
ENV_CA_BUNDLE = "SPINELABEL_DICOMWEB_CA_BUNDLE"

#: Deadline (s) of one request: connect, send, and read the whole answer. A
#: QIDO query or a STOW of one SR takes well under a second on a hospital
#: network; 60 s tolerates a busy archive without letting one request (or a
#: server that drips its answer a byte at a time) hang a batch.
DEFAULT_TIMEOUT_S = 60.0
#: Deadline (s) of retrieving one whole series (WADO-RS). A clinical sagittal
#: series (20-30 images, ~10 MB) takes about a second; a thin 3D series can be
#: 500 images and 250 MB, about 20 s at 100 Mbit/s. Ten minutes leaves room
#: for a slow archive and a slow link.
DEFAULT_RETRIEVE_TIMEOUT_S = 600.0
#: The longest timeout taken (s): a day, far beyond any retrieval, and far below what a deadline timer can wait
#: (``threading.TIMEOUT_MAX``; a value beyond it failed in the timer's thread with a traceback).
MAX_TIMEOUT_S = 86400.0
#: Attempts for answers that say "try again" (:data:`RETRY_STATUS`), waiting
#: RETRY_WAIT_S, then twice that: a short overload is bridged, a dead server is
#: reported within seconds. Connection errors are not retried (a refused
#: connection will be refused again; each item of a batch reports it at once).
RETRY_ATTEMPTS = 3
RETRY_WAIT_S = 1.0
#: HTTP statuses that mean "try again later": timeout, too many requests, unavailable, gateway timeout.
RETRY_STATUS = (408, 429, 503, 504)

#: What OpenSSL says when the other end answers a TLS handshake in plain HTTP (an https:// URL for an http:// server).
NOT_TLS_SIGNS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "http request")

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
        Deadline (s) of each request: connecting, sending and reading the
        whole answer (also the connect and per-read timeout).
    retrieve_timeout_s : float
        Deadline (s) of each retrieve of a whole series (WADO-RS), which can
        be hundreds of MB.
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    retrieve_timeout_s: float = DEFAULT_RETRIEVE_TIMEOUT_S


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
    retrieve_timeout_s: float | None = None,
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
    timeout = _positive(DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s, "timeout")
    retrieve = _positive(
        DEFAULT_RETRIEVE_TIMEOUT_S if retrieve_timeout_s is None else retrieve_timeout_s, "retrieve timeout"
    )
    return PacsConfig(url.rstrip("/"), username, password, verify, timeout, retrieve)


def _positive(value: float, name: str) -> float:
    """``value`` as a positive float of at most :data:`MAX_TIMEOUT_S`, else PacsError."""
    seconds = float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise PacsError(f"{name} must be positive, got {value}")
    if seconds > MAX_TIMEOUT_S:
        raise PacsError(f"{name} of {seconds:g} s is beyond the limit of {MAX_TIMEOUT_S:.0f} s (a day)")
    return seconds


def _session_class(requests: Any) -> Any:
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
    """A DICOMweb client with the config's authentication, TLS verification and deadlines (see :func:`call`)."""
    import requests
    from dicomweb_client import DICOMwebClient

    session = _session_class(requests)()
    transport = _Transport(config)
    adapter = _tracking_adapter(transport.connections)  # its sockets can be shut down when a deadline passes
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter())
    session.explicit_verify = config.verify is not True
    if config.username is not None:
        session.auth = (config.username, config.password or "")
    session.verify = config.verify
    try:
        client = DICOMwebClient(config.url, session=session, timeout=config.timeout_s)
    except ValueError as exc:
        raise PacsError(f"malformed DICOMweb URL {config.url!r}: {exc}") from None
    client.set_http_retry_params(retry=False)  # retries are ours (call): HTTP statuses only, no exceptions
    _TRANSPORTS[client] = transport
    return client


# ----------------------------------------------------------------- deadline


class _Transport:
    """What :func:`call` needs of a client: its deadlines, its open connections, the secrets to hide."""

    def __init__(self, config: PacsConfig):
        self.timeout_s = config.timeout_s
        self.retrieve_timeout_s = config.retrieve_timeout_s
        self.secrets = tuple(s for s in (config.password,) if s)
        #: The sockets this client opened (weak: dropped ones fall out). Sockets, not
        #: connections: http.client hands an HTTP/1.0 connection's socket to its response.
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()


#: The transport of each client made by :func:`connect` (weak: a dropped client frees its entry).
_TRANSPORTS: weakref.WeakKeyDictionary[Any, _Transport] = weakref.WeakKeyDictionary()


def _tracking_adapter(connections: weakref.WeakSet[Any]) -> Any:
    """A requests HTTPAdapter class whose connections register their socket in ``connections`` when they connect."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _Connection(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            connections.add(self.sock)

    class _TLSConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            connections.add(self.sock)

    class _Pool(HTTPConnectionPool):
        ConnectionCls = _Connection

    class _TLSPool(HTTPSConnectionPool):
        ConnectionCls = _TLSConnection

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    return _Adapter


class _Deadline:
    """Set when the deadline of a request passed; its sockets were then shut down."""

    def __init__(self, seconds: float, connections: weakref.WeakSet[Any]):
        self.seconds, self.connections, self.expired = seconds, connections, False

    def expire(self) -> None:
        """Shut down every open socket of the client: a blocked read returns at once."""
        self.expired = True
        for sock in list(self.connections):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


@contextmanager
def _deadline(seconds: float | None, connections: weakref.WeakSet[Any]) -> Iterator[_Deadline | None]:
    """A timer that expires the request after ``seconds`` (None: no deadline, e.g. a test double)."""
    if seconds is None:
        yield None
        return
    state = _Deadline(seconds, connections)
    timer = threading.Timer(seconds, state.expire)
    timer.daemon = True
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret (a password) replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# ----------------------------------------------------------------- errors


def base_url(client: DICOMwebClient) -> str:
    """The server's URL for messages (never with credentials: :func:`split_credentials` removed them)."""
    return str(getattr(client, "base_url", "the DICOMweb server"))


def short_error(exc: BaseException) -> str:
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
    return one_line(exc)


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


def call(
    client: DICOMwebClient, what: str, fn: Callable[..., T], *args: Any, retrieve: bool = False, **kwargs: Any
) -> T:
    """Run one client call within its deadline; turn every problem into a one-line PacsError.

    ``what`` completes "cannot ..." / "failed to ...", e.g. "search for studies".
    ``retrieve`` gives the call the deadline of a series retrieve
    (:attr:`PacsConfig.retrieve_timeout_s`) instead of :attr:`PacsConfig.timeout_s`.
    Answers that say "try again" are retried (:data:`RETRY_ATTEMPTS`), each
    attempt with its own deadline. Clients not made by :func:`connect` (test
    doubles) have no deadline.
    """
    import time

    transport = _TRANSPORTS.get(client)
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return _call_once(client, what, transport, retrieve, fn, *args, **kwargs)
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


def _call_once(
    client: DICOMwebClient, what: str, transport: _Transport | None, retrieve: bool, fn: Callable[..., T], *args: Any,
    **kwargs: Any,
) -> T:
    """One attempt of :func:`call`: the call under its deadline, its problems as one line (password hidden)."""
    seconds = None if transport is None else transport.retrieve_timeout_s if retrieve else transport.timeout_s
    connections = transport.connections if transport is not None else weakref.WeakSet()
    secrets = transport.secrets if transport is not None else ()
    try:
        return _translated(client, what, _within(seconds, connections, fn), *args, **kwargs)
    except PacsError as exc:
        raise PacsError(redact(str(exc), secrets)) from None
    except _Retry as retry:
        raise _Retry(redact(retry.message, secrets)) from None


def _within(seconds: float | None, connections: weakref.WeakSet[Any], fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` run under a deadline of ``seconds``: raises :class:`_Late` when the deadline cut it off."""

    def run(*args: Any, **kwargs: Any) -> T:
        with _deadline(seconds, connections) as deadline:
            try:
                return fn(*args, **kwargs)
            except Exception:
                if deadline is not None and deadline.expired:
                    raise _Late(deadline.seconds) from None
                raise

    return run


class _Late(Exception):
    """The deadline of a request passed (its sockets were shut down)."""

    def __init__(self, seconds: float):
        super().__init__(f"{seconds:g} s")
        self.seconds = seconds


def _translated(client: DICOMwebClient, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, with every transport or HTTP problem as a PacsError or _Retry."""
    import requests

    url = base_url(client)
    try:
        return fn(*args, **kwargs)
    except _Late as late:
        raise PacsError(
            f"the DICOMweb server at {url} did not answer in time (deadline {late}; cannot {what})"
        ) from None
    except requests.exceptions.SSLError as exc:
        if any(sign in str(exc) for sign in NOT_TLS_SIGNS):
            raise PacsError(f"the server at {url} does not answer in TLS (HTTPS): is its address http://? (cannot {what})") from None
        raise PacsError(
            f"TLS verification failed for {url} ({short_error(exc)}): give the server's CA with --ca-bundle or {ENV_CA_BUNDLE}"
        ) from None
    except requests.exceptions.Timeout:
        raise PacsError(f"the DICOMweb server at {url} did not answer in time (cannot {what})") from None
    except requests.exceptions.ConnectionError as exc:
        raise PacsError(f"cannot reach the DICOMweb server at {url} ({short_error(exc)}; cannot {what})") from None
    except requests.exceptions.HTTPError as exc:
        message = _http_message(what, url, exc.response)
        if getattr(exc.response, "status_code", None) in RETRY_STATUS:
            raise _Retry(message) from None
        raise PacsError(message) from None
    except requests.exceptions.RequestException as exc:
        raise PacsError(f"cannot {what} on {url}: {short_error(exc)}") from None
    except ValueError as exc:  # malformed answer (JSON, multipart) or an invalid UID
        raise PacsError(f"cannot {what} on {url}: unexpected answer ({short_error(exc)})") from None
    except RecursionError:  # JSON nested deeper than the parser goes (the server's answer, decoded by the client)
        raise PacsError(f"cannot {what} on {url}: unexpected answer (JSON nested too deeply)") from None
