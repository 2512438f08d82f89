"""The local OHIF server of spinelabel.testing.ohif, without a browser or OHIF: a fake build and a fake DICOMweb."""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from spinelabel.testing import ohif
from spinelabel.testing.ohif import OhifUnavailable, app_config, install_ohif, installed_ohif, serve_ohif

INDEX = b"<html>OHIF</html>"


class _FakeDicomweb(BaseHTTPRequestHandler):
    """Answers every GET with what it was asked (path, auth, accept), or 401 without the right auth."""

    expected_auth = "Basic " + base64.b64encode(b"user:secret").decode()

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):
        if self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.end_headers()
            return
        body = f"{self.path}|{self.headers.get('Accept')}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDicomweb)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


@pytest.fixture
def dist(tmp_path):
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_bytes(INDEX)
    (folder / "app.js").write_text("console.log(1)")
    (folder / "codec.wasm").write_bytes(b"\0asm")
    (folder / "app-config.js").write_text("window.config = {public: true}")  # replaced by ours
    (tmp_path / "secret.txt").write_text("outside the build")
    return folder


def test_static_files_config_and_single_page_routes(dist, upstream):
    with serve_ohif(dist, upstream, "user", "secret") as base:
        assert requests.get(f"{base}/app.js", timeout=10).headers["Content-Type"] == "text/javascript"
        assert requests.get(f"{base}/codec.wasm", timeout=10).headers["Content-Type"] == "application/wasm"
        config = requests.get(f"{base}/app-config.js", timeout=10).text
        assert config == app_config() and "qidoRoot: '/dicom-web'" in config
        assert requests.get(f"{base}/viewer?StudyInstanceUIDs=1.2.3", timeout=10).content == INDEX
        for path in ("/../secret.txt", "/assets/../../secret.txt"):  # sent as is (requests would normalise them)
            connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
            connection.request("GET", path)
            assert connection.getresponse().read() == INDEX, path  # never a file outside the build
            connection.close()


def test_dicomweb_is_proxied_with_basic_auth(dist, upstream):
    with serve_ohif(dist, upstream, "user", "secret") as base:
        answer = requests.get(f"{base}/dicom-web/studies?limit=5", headers={"Accept": "application/dicom+json"},
                              timeout=10)  # fmt: skip
        assert answer.status_code == 200
        assert answer.text == "/dicom-web/studies?limit=5|application/dicom+json"
        assert answer.headers["Content-Type"] == "application/dicom+json"
    with serve_ohif(dist, upstream, "user", "wrong") as base:
        assert requests.get(f"{base}/dicom-web/studies", timeout=10).status_code == 401


def test_unreachable_dicomweb_is_a_bad_gateway(dist):
    with serve_ohif(dist, "http://127.0.0.1:9/dicom-web", "user", "secret") as base:
        assert requests.get(f"{base}/dicom-web/studies", timeout=30).status_code == 502


def test_install_uses_the_cache_and_refuses_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv(ohif.CACHE_ENV, str(tmp_path))
    assert installed_ohif("9.9.9") is None
    monkeypatch.setattr(ohif.shutil, "which", lambda name: None)
    with pytest.raises(OhifUnavailable, match="npm not found"):
        install_ohif("9.9.9")
    dist = tmp_path / "9.9.9" / "package" / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    assert install_ohif("9.9.9") == dist  # already there: no npm needed
