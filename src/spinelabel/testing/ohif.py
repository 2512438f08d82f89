"""The OHIF web viewer, served locally against a test Orthanc, for checking that it shows our SR.

OHIF's npm package ``@ohif/app`` ships a prebuilt, offline build (``dist/``).
:func:`install_ohif` fetches it with ``npm pack`` into a cache folder outside
the repository (``$SPINELABEL_OHIF_DIR``, default ``~/.cache/spinelabel-ohif``);
nothing is installed into the source tree. :func:`serve_ohif` serves that
build on a loopback port together with a proxy to Orthanc's DICOMweb (so the
viewer and the data share one origin, and the proxy adds Orthanc's basic
auth), with an ``app-config.js`` pointing OHIF at the proxy.

Used by ``tests/integration/test_ohif.py``. ``python -m spinelabel.testing.ohif``
installs the build (``.ci/run`` does this).
"""

from __future__ import annotations

import base64
import mimetypes
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["OHIF_VERSION", "OhifUnavailable", "app_config", "install_ohif", "installed_ohif", "serve_ohif"]

#: The OHIF release tested (its prebuilt ``dist/`` is about 200 MB unpacked).
OHIF_VERSION = "3.13.2"
OHIF_PACKAGE = "@ohif/app"
#: Environment variable naming the cache folder; default below.
CACHE_ENV = "SPINELABEL_OHIF_DIR"
DEFAULT_CACHE = Path.home() / ".cache" / "spinelabel-ohif"
#: ``npm pack`` downloads about 50 MB.
NPM_TIMEOUT_S = 600.0
#: Where the proxy serves Orthanc's DICOMweb root on the viewer's origin.
DICOMWEB_PATH = "/dicom-web"
#: Seconds the proxy waits for Orthanc.
PROXY_TIMEOUT_S = 60.0
#: Headers passed from the browser to Orthanc, and back.
REQUEST_HEADERS = ("Accept", "Content-Type", "Range")
RESPONSE_HEADERS = ("Content-Type", "Content-Range")
#: Content types Python's table may lack; wasm must be served as such to be compiled.
EXTRA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript", ".woff2": "font/woff2"}


class OhifUnavailable(RuntimeError):
    """The OHIF build is not installed and cannot be (no npm, no network)."""


def cache_dir() -> Path:
    """The folder holding OHIF builds, one subfolder per version."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def installed_ohif(version: str = OHIF_VERSION) -> Path | None:
    """The ``dist`` folder of an installed build, or None."""
    dist = cache_dir() / version / "package" / "dist"
    return dist if (dist / "index.html").is_file() else None


def install_ohif(version: str = OHIF_VERSION) -> Path:
    """Fetch ``@ohif/app`` with ``npm pack`` and unpack it into the cache (once).

    Returns
    -------
    Path
        The build's ``dist`` folder.

    Raises
    ------
    OhifUnavailable
        npm is missing or the download fails.
    """
    dist = installed_ohif(version)
    if dist is not None:
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise OhifUnavailable("npm not found (apt-get install npm) to fetch the OHIF viewer")
    target = cache_dir() / version
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        run = subprocess.run([npm, "pack", "--silent", f"{OHIF_PACKAGE}@{version}"], cwd=tmp, capture_output=True,
                             text=True, timeout=NPM_TIMEOUT_S, check=False)  # fmt: skip
        tarballs = list(Path(tmp).glob("*.tgz"))
        if run.returncode != 0 or len(tarballs) != 1:
            detail = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
            raise OhifUnavailable(f"npm pack {OHIF_PACKAGE}@{version} failed: {detail}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(Path(tmp) / "unpacked", filter="data")
        shutil.rmtree(target, ignore_errors=True)
        (Path(tmp) / "unpacked").rename(target)
    dist = installed_ohif(version)
    if dist is None:
        raise OhifUnavailable(f"{OHIF_PACKAGE}@{version} has no prebuilt dist/index.html")
    return dist


def app_config(dicomweb_path: str = DICOMWEB_PATH) -> str:
    """OHIF's ``app-config.js``: one DICOMweb data source at ``dicomweb_path`` on the viewer's own origin."""
    return f"""window.config = {{
  routerBasename: '/',
  showStudyList: true,
  extensions: [],
  modes: [],
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  investigationalUseDialog: {{ option: 'never' }},
  defaultDataSourceName: 'orthanc',
  dataSources: [{{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {{
      friendlyName: 'spinelabel test Orthanc',
      name: 'orthanc',
      qidoRoot: '{dicomweb_path}',
      wadoRoot: '{dicomweb_path}',
      wadoUriRoot: '{dicomweb_path}',
      qidoSupportsIncludeField: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      omitQuotationForMultipartRequest: true,
      bulkDataURI: {{ enabled: true }},
    }},
  }}],
}};
"""


def _handler(dist: Path, upstream: str, auth: str, config: bytes) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``dist``, ``/app-config.js`` and the DICOMweb proxy."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            """Quiet: tests read the viewer, not the access log."""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == DICOMWEB_PATH or path.startswith(DICOMWEB_PATH + "/"):
                self._proxy()
            elif path == "/app-config.js":
                self._send(200, config, "text/javascript")
            else:
                self._static(path)

        def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _static(self, path: str) -> None:
            file = (dist / path.lstrip("/")).resolve()
            if not file.is_relative_to(dist.resolve()) or not file.is_file():
                file = dist / "index.html"  # a route of the single-page app
            kind = EXTRA_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(200, file.read_bytes(), kind)

        def _proxy(self) -> None:
            request = urllib.request.Request(upstream + self.path[len(DICOMWEB_PATH):])
            request.add_header("Authorization", auth)
            for key in REQUEST_HEADERS:
                if self.headers.get(key):
                    request.add_header(key, self.headers[key])
            try:
                with urllib.request.urlopen(request, timeout=PROXY_TIMEOUT_S) as answer:
                    status, body, headers = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as exc:
                status, body, headers = exc.code, exc.read(), exc.headers
            except OSError as exc:
                self._send(502, str(exc).encode(), "text/plain")
                return
            kept = {k: headers[k] for k in RESPONSE_HEADERS if headers.get(k) and k != "Content-Type"}
            self._send(status, body, headers.get("Content-Type", "application/octet-stream"), kept)

    return Handler


@contextmanager
def serve_ohif(dist: Path, dicomweb_url: str, username: str, password: str) -> Iterator[str]:
    """Serve the OHIF build and a DICOMweb proxy on 127.0.0.1 (a free port) while the block runs.

    Parameters
    ----------
    dist : Path
        The build's ``dist`` folder (:func:`install_ohif`).
    dicomweb_url : str
        The DICOMweb root to proxy (e.g. ``OrthancServer.dicomweb_url``).
    username, password : str
        Basic auth the proxy adds to every request.

    Yields
    ------
    str
        The viewer's base URL, ``http://127.0.0.1:PORT``.
    """
    auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    handler = _handler(Path(dist), dicomweb_url.rstrip("/"), auth, app_config().encode())
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> int:
    """Install the OHIF build (``python -m spinelabel.testing.ohif``); one line, exit 1 on failure."""
    try:
        dist = install_ohif()
    except (OhifUnavailable, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"OHIF {OHIF_VERSION}: {dist}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
