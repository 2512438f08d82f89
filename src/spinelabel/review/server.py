"""The review page's HTTP server (standard library ``http.server``), safe by default.

- Every request must carry the session token (``?token=`` once, after which a
  same-site cookie named for the port carries it), compared in constant time;
  on loopback too, where every account of the machine can connect. The token
  is printed once, to the reviewer's terminal.
- It listens on the loopback address unless a host is given. On loopback, a
  request whose ``Host`` header is not the loopback address is refused (a web
  page cannot reach the server through DNS rebinding).
- Routes are fixed: the page, a closed list of assets inside the package,
  and the API, which names scans and slices by index only. A path with
  ``..``, a backslash or a NUL is refused before routing.
- A POST must be ``application/json``, from the page's own origin, with a
  ``Content-Length`` of at most :data:`MAX_BODY_BYTES`, arriving within
  :data:`REQUEST_TIMEOUT_S`.
- A save whose names are out of head-to-foot order is a 422 until the page
  sends it again with ``keep_order`` (the reviewer confirmed it).
- Every answer, errors included, is JSON (but the page and its assets) and
  carries :data:`SECURITY_HEADERS`; another method than a route's is 405.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ServeError, SpinelabelError
from .edits import ReviewOrderError, ReviewRequestError
from .session import NO_VERSION, ReviewConflictError, ReviewSession

#: Largest request body accepted: a save of MAX_OPS (1000) operations is about 100 kB.
MAX_BODY_BYTES = 1 << 20
#: Seconds a connection may stay silent (a body shorter than its Content-Length, an idle keep-alive) before it is
#: closed: a page's request arrives in well under a second, so this only ends connections that hold a thread.
REQUEST_TIMEOUT_S = 30.0
#: Port when none is given (unassigned by IANA; ``--port 0`` picks a free one).
DEFAULT_PORT = 8765
#: The address served when no host is given.
LOOPBACK = "127.0.0.1"
#: Names by which a browser on this machine reaches the loopback address.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: Addresses that mean "every interface": the printed address names the machine instead.
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")
#: Random bytes of a session token (32 URL-safe characters).
TOKEN_BYTES = 24
#: Cookie that carries the token after the first request, followed by the port: cookies are shared by every port of
#: a host, and a second review on this machine must not replace the first one's token in the browser.
TOKEN_COOKIE = "spinelabel_token"
#: The assets of the page, all inside the package (no CDN), and their types.
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
#: Headers of every response: no sniffing, no framing, no referrer (it could carry the token), no caching.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
}

#: Where the page carries its first data (worklist and first scan's meta), saving two round trips.
#: A JSON data block is not a script: the Content-Security-Policy still allows no inline code.
BOOT_PLACEHOLDER = b'<script type="application/json" id="boot">null</script>'

_ROUTES = {
    ("GET", re.compile(r"/")): "page",
    ("GET", re.compile(r"/static/(app\.js|style\.css)")): "asset",
    ("GET", re.compile(r"/api/worklist")): "worklist",
    ("GET", re.compile(r"/api/scans/([0-9]{1,6})/meta")): "meta",
    ("GET", re.compile(r"/api/scans/([0-9]{1,6})/slices/([0-9]{1,5})")): "slice",
    ("POST", re.compile(r"/api/scans/([0-9]{1,6})/review")): "review",
}


class _HttpError(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class ReviewServer(ThreadingHTTPServer):
    """Serves one :class:`ReviewSession` to requests that carry ``token``; ``url`` is the address to open.

    The port is bound when the server is made; ``session`` may be replaced
    until ``serve_forever`` starts (``spinelabel review`` binds first, so that a
    taken port is reported before any labeling).
    """

    daemon_threads = True

    def __init__(self, session: ReviewSession, host: str, port: int, token: str):
        try:
            super().__init__((host, port), _Handler)
        except (OSError, TypeError, UnicodeError) as exc:  # a host name the socket cannot encode: TypeError
            raise ServeError(f"cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
        self.session, self.token = session, token
        self.assets = {name: (resources.files(__package__) / "static" / name).read_bytes() for name in ASSETS}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: requests answer their own errors; what is left is a client gone away (library code does not print)."""

    @property
    def url(self) -> str:
        """The address to open: ``http://host:port/?token=...``."""
        host, port = str(self.server_address[0]), int(self.server_address[1])
        if host in WILDCARD_ADDRESSES:  # every address of this machine: name one that others can open
            host = socket.gethostname()
        return f"http://{host}:{port}/?token={self.token}"

    @property
    def cookie_name(self) -> str:
        """The token's cookie for this server's port."""
        return f"{TOKEN_COOKIE}_{int(self.server_address[1])}"


def make_server(session: ReviewSession, host: str | None = None, port: int = DEFAULT_PORT) -> ReviewServer:
    """A server for ``session`` on loopback or ``host``, with a new random token.

    Raises
    ------
    ServeError
        The address cannot be bound (port taken, not an address of this machine).
    """
    return ReviewServer(session, LOOPBACK if host is None else host, port, secrets.token_urlsafe(TOKEN_BYTES))


def _cookie(header: str, name: str) -> str:
    """The value of cookie ``name`` in a ``Cookie`` header, or ``""``.

    Split by hand: ``http.cookies.SimpleCookie`` stops at the first cookie it
    cannot parse, and other programs on this host may set such cookies.
    """
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"')
    return ""


def _json(payload: Any) -> tuple[str, bytes]:
    """A JSON answer; NaN or infinity (not JSON: the page could not read it) is a ValueError, not a broken answer."""
    return "application/json", json.dumps(payload, allow_nan=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not after a delayed ACK
    timeout = REQUEST_TIMEOUT_S  # socketserver sets it on the connection: a stalled request cannot hold a thread

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silent: library code does not print."""

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        """Answer a GET (the page, an asset, the API)."""
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        """Answer a POST (a review save)."""
        self._handle("POST")

    def _other_method(self) -> None:
        """Answer another standard method: 405 on a route, 404 elsewhere (JSON, like every answer)."""
        self._handle(self.command)

    do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _other_method  # noqa: N815 - the base class's names

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (a malformed request line, an unknown method): JSON, usual headers."""
        self.close_connection = True
        try:
            reason = message or HTTPStatus(code).phrase
        except ValueError:
            reason = "error"
        self._send(code, *_json({"error": reason}))

    def _handle(self, method: str) -> None:
        cookie = None
        self.close_connection = True  # until the request succeeds: an unread body must not become the next request
        try:
            path, query = self._target()
            self._check_host()
            cookie = self._check_token(query)
            ctype, body = self._route(method, path)
            self.close_connection = False
            self._send(HTTPStatus.OK, ctype, body, cookie)
        except _HttpError as exc:
            self._send(exc.status, *_json({"error": str(exc)}), headers=exc.headers)
        except ReviewOrderError as exc:  # the page asks the reviewer, who may save again with keep_order
            self._send(HTTPStatus.UNPROCESSABLE_ENTITY, *_json({"error": str(exc)}))
        except ReviewRequestError as exc:
            self._send(HTTPStatus.BAD_REQUEST, *_json({"error": str(exc)}))
        except ReviewConflictError as exc:  # the file changed on disk: nothing saved, the page says why
            self._send(HTTPStatus.CONFLICT, *_json({"error": str(exc)}))
        except SpinelabelError as exc:  # an unreadable image, a failed write: the page shows the line
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, *_json({"error": str(exc)}))
        except Exception as exc:  # a bug: shown on the page, never a traceback on the terminal
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, *_json({"error": f"internal error: {type(exc).__name__}: {exc}"}))

    def _target(self) -> tuple[str, dict[str, list[str]]]:
        """The request's path and query, refusing traversal attempts."""
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if ".." in path.split("/") or "\\" in path or "\x00" in path or "//" in path:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "invalid path")
        return path, parse_qs(parts.query)

    def _check_host(self) -> None:
        """On loopback, the Host header must name the loopback address (no DNS rebinding)."""
        if str(self.server.server_address[0]) != LOOPBACK:
            return
        port = self.server.server_address[1]
        if self.headers.get("Host", "") not in {f"{name}:{port}" for name in LOOPBACK_NAMES}:
            raise _HttpError(HTTPStatus.FORBIDDEN, "wrong Host header")

    def _check_token(self, query: dict[str, list[str]]) -> str | None:
        """Refuse a request without the token; returns the cookie to set when it came in the query."""
        token, name = self.server.token, self.server.cookie_name
        if hmac.compare_digest(_cookie(self.headers.get("Cookie", ""), name).encode(), token.encode()):
            return None
        given = query.get("token", [""])[0] or self.headers.get("X-Spinelabel-Token", "")
        if hmac.compare_digest(given.encode(), token.encode()):
            return f"{name}={token}; HttpOnly; SameSite=Strict; Path=/"
        raise _HttpError(HTTPStatus.UNAUTHORIZED, "a valid token is required (open the address printed at start)")

    def _route(self, method: str, path: str) -> tuple[str, bytes]:
        allowed = []
        for (m, pattern), name in _ROUTES.items():
            match = pattern.fullmatch(path)
            if match and m == method:
                return self._dispatch(name, [int(g) if g.isdigit() else g for g in match.groups()])
            if match:
                allowed.append(m)
        if allowed:
            allow = {"Allow": ", ".join(allowed)}
            raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here", allow)
        raise _HttpError(HTTPStatus.NOT_FOUND, "not found")

    def _dispatch(self, name: str, args: list[Any]) -> tuple[str, bytes]:
        session = self.server.session
        if name == "page":
            return ASSETS["index.html"], self._page()
        if name == "asset":
            return ASSETS[args[0]], self.server.assets[args[0]]
        if name == "worklist":
            return _json(session.worklist())
        if name == "meta":
            return _json(session.meta(args[0]))
        if name == "slice":
            return "application/octet-stream", session.slice_bytes(args[0], args[1])
        body = self._json_body()
        return _json(session.review(args[0], body.get("ops"), body.get("version", NO_VERSION),
                                    body.get("keep_order", False)))

    def _page(self) -> bytes:
        """The page with the worklist and the first scan's meta in its boot block."""
        session = self.server.session
        worklist = session.worklist()
        first = worklist["scans"][0]["index"] if worklist["scans"] else None
        try:
            meta = session.meta(first) if first is not None else None
        except Exception:  # an unreadable image, a result of another scan, a bug: the page asks again, shows the line
            meta = None
        boot = {"worklist": worklist, "meta": meta}
        data = json.dumps(boot).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        tag = BOOT_PLACEHOLDER.replace(b"null", data.encode())
        return self.server.assets["index.html"].replace(BOOT_PLACEHOLDER, tag)

    def _json_body(self) -> dict[str, Any]:
        """The JSON object of a POST, within the size limit, from the page's own origin."""
        origin, host = self.headers.get("Origin"), self.headers.get("Host", "")
        if origin is not None and origin != f"http://{host}":
            raise _HttpError(HTTPStatus.FORBIDDEN, "cross-origin request")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise _HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        if int(length) > MAX_BODY_BYTES:  # refused unread (the connection is closed)
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes")
        try:
            payload = self.rfile.read(int(length))
        except TimeoutError:
            late = f"the body did not arrive within {REQUEST_TIMEOUT_S:g} s"
            raise _HttpError(HTTPStatus.REQUEST_TIMEOUT, late) from None
        try:
            body = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
        except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
            raise _HttpError(HTTPStatus.BAD_REQUEST, "the body holds a number too long to read") from None
        except RecursionError:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "the body is not valid JSON (nested too deeply)") from None
        if not isinstance(body, dict):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _send(
        self, status: int, ctype: str, body: bytes, cookie: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """One answer with the headers of every answer (no body to a HEAD)."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(key, value)
            if cookie is not None:
                self.send_header("Set-Cookie", cookie)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page was closed or reloaded meanwhile
            self.close_connection = True


__all__ = ["DEFAULT_PORT", "MAX_BODY_BYTES", "REQUEST_TIMEOUT_S", "ReviewServer", "make_server"]
