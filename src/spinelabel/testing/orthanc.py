"""Start and stop a private Orthanc DICOM server with the DICOMweb plugin.

Used by the integration tests (``tests/integration/conftest.py``) and by
``benchmarks/pacs.py``. The server listens on a free loopback port, refuses
remote access, requires HTTP basic authentication (so the client's auth is
exercised), keeps its storage and index in a temporary folder, and has its
DICOM (DIMSE) port disabled. The Debian ``orthanc`` package's own service is
never used: the process is started here and stopped by :func:`stop_orthanc`.

Install on Debian/Ubuntu: ``apt-get install orthanc orthanc-dicomweb``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "orthanc",
    "OrthancNotInstalled",
    "OrthancServer",
    "OrthancUnavailable",
    "dicomweb_plugin",
    "orthanc_executable",
    "orthanc_running",
    "start_orthanc",
    "stop_orthanc",
]

#: Where Debian's orthanc-dicomweb (and other distributions) put the plugin.
PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/lib/*/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
)
#: Orthanc starts in about a second; a loaded CI machine may need more.
START_TIMEOUT_S = 60.0
#: Seconds allowed for a clean shutdown before the process is killed.
STOP_TIMEOUT_S = 15.0
#: prctl option: signal sent to a child when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


class OrthancUnavailable(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed, or the server did not start."""


class OrthancNotInstalled(OrthancUnavailable):
    """Orthanc or its DICOMweb plugin is not installed (tests skip; a start failure fails)."""


@dataclass(frozen=True)
class OrthancServer:
    """A running Orthanc process."""

    url: str  # http://127.0.0.1:PORT (Orthanc REST API)
    username: str
    password: str
    workdir: Path
    process: subprocess.Popen

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO/WADO/STOW)."""
        return f"{self.url}/dicom-web"

    @property
    def log(self) -> Path:
        return self.workdir / "orthanc.log"


def orthanc_executable() -> str | None:
    """Path of the Orthanc binary, or None."""
    found = shutil.which("Orthanc")
    if found:
        return found
    return "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None


def dicomweb_plugin() -> Path | None:
    """Path of the DICOMweb plugin library, or None."""
    import glob

    for pattern in PLUGIN_GLOBS:
        for hit in sorted(glob.glob(pattern)):
            if Path(hit).is_file():
                return Path(hit)
    return None


def _die_with_parent() -> None:
    """Linux: have the kernel stop Orthanc if the process that started it dies (no orphans after a crash)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass  # not Linux: stop_orthanc (or the caller's cleanup) must do it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(workdir: Path, http_port: int, username: str, password: str, plugin: Path) -> dict:
    return {
        "Name": "spinelabel-test",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "HttpDescribeErrors": True,
        "DicomServerEnabled": False,  # no DIMSE: DICOMweb only
        "DicomPort": _free_port(),  # unused, but never a clash with a real 4242
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {username: password},
        "Plugins": [str(plugin)],
        "StorageCompression": False,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "StableAge": 1,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }


def orthanc_running(server: OrthancServer) -> bool:
    """True when the server answers ``/system`` with our credentials."""
    import requests

    try:
        r = requests.get(f"{server.url}/system", auth=(server.username, server.password), timeout=2)
    except requests.RequestException:
        return False
    return r.status_code == 200


def start_orthanc(workdir: str | Path, username: str = "spinelabel", password: str | None = None) -> OrthancServer:
    """Start Orthanc in ``workdir`` and wait until it answers.

    Raises
    ------
    OrthancUnavailable
        Orthanc or the DICOMweb plugin is not installed, or the server did not
        come up within START_TIMEOUT_S (the message ends with its log).
    """
    exe, plugin = orthanc_executable(), dicomweb_plugin()
    if exe is None:
        raise OrthancNotInstalled("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    if plugin is None:
        raise OrthancNotInstalled("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_hex(8)
    port = _free_port()
    config = workdir / "orthanc.json"
    config.write_text(json.dumps(_config(workdir, port, username, password, plugin), indent=1))
    log = open(workdir / "orthanc.log", "wb")
    try:
        process = subprocess.Popen(
            [exe, str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
    finally:
        log.close()
    server = OrthancServer(f"http://127.0.0.1:{port}", username, password, workdir, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if orthanc_running(server):
            return server
        time.sleep(0.2)
    stop_orthanc(server)
    tail = server.log.read_text(errors="replace").strip().splitlines()[-5:]
    raise OrthancUnavailable(f"Orthanc did not start (exit {process.returncode}): {' | '.join(tail)}")


def stop_orthanc(server: OrthancServer) -> None:
    """Stop the process (SIGTERM, then SIGKILL after STOP_TIMEOUT_S)."""
    proc = server.process
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def orthanc(workdir: str | Path, username: str = "spinelabel", password: str | None = None) -> Iterator[OrthancServer]:
    """A running Orthanc for the duration of a ``with`` block."""
    server = start_orthanc(workdir, username, password)
    try:
        yield server
    finally:
        stop_orthanc(server)


def orthanc_for_tests(folder: Path) -> Iterator[OrthancServer]:
    """A pytest fixture body: start an Orthanc in ``folder``, yield it, stop it; skip when Orthanc is not installed."""
    import pytest

    try:
        server = start_orthanc(folder)
    except OrthancNotInstalled as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        stop_orthanc(server)

