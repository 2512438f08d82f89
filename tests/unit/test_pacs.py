"""DICOMweb client wrapper: configuration, one-line errors, QIDO parsing, per-item failures (no real PACS)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from spinelabel import pacs, pacs_client, pacs_query
from spinelabel.cli import main
from spinelabel.errors import PacsError
from spinelabel.pacs import harvest, retrieve_series, store
from spinelabel.pacs_client import ENV_PASSWORD, ENV_URL, ENV_USER, connect, pacs_config
from spinelabel.pacs_query import (
    SeriesInfo,
    StudyInfo,
    find_series,
    find_studies,
    orientation_from_description,
    orientation_of,
)

SAG = [0, 1, 0, 0, 0, -1]  # rows along A-P, columns head-feet: normal left-right
AX = [1, 0, 0, 0, 1, 0]


class _Handler(BaseHTTPRequestHandler):
    """Answers GETs from ``server.routes``: path -> (status, JSON body, or bytes sent as they are); records the requests."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        time.sleep(self.server.delay)
        status, body = self.server.routes.get(urlsplit(self.path).path, (404, None))
        payload = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (timeout test) is not news


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests, httpd.delay = {}, [], 0.0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _client(url: str, **kw):
    return connect(pacs_config(url, environ={}, **kw))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _item(**values) -> dict:
    """A DICOM JSON object from keyword=value pairs."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    out = {}
    for keyword, value in values.items():
        tag = tag_for_keyword(keyword)
        out[f"{tag:08X}"] = {"vr": dictionary_VR(tag), "Value": value if isinstance(value, list) else [value]}
    return out


# ----------------------------------------------------------------- configuration


def test_config_from_environment_and_options():
    env = {ENV_URL: "https://pacs.example.org/dicom-web/", ENV_USER: "reader", ENV_PASSWORD: "s3cret"}
    cfg = pacs_config(environ=env)
    assert (cfg.url, cfg.username, cfg.password, cfg.verify) == ("https://pacs.example.org/dicom-web", "reader", "s3cret", True)
    assert "s3cret" not in repr(cfg)
    cfg = pacs_config("http://other:8042/dicom-web", "u", "p", insecure=True, timeout_s=5, environ=env)
    assert (cfg.url, cfg.username, cfg.verify, cfg.timeout_s) == ("http://other:8042/dicom-web", "u", False, 5.0)


def test_ca_bundle_option(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert pacs_config("https://h/dw", ca_bundle=bundle, environ={}).verify == str(bundle)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "no DICOMweb server given"),
        ({"url": "ftp://pacs/dicom-web"}, "malformed DICOMweb URL"),
        ({"url": "http://h/dw", "username": "u"}, "password missing"),
        ({"url": "http://h/dw", "password": "p"}, "user name missing"),
        ({"url": "http://h/dw", "ca_bundle": "/nonexistent/ca.pem"}, "CA bundle not found"),
        ({"url": "http://h/dw", "ca_bundle": __file__, "insecure": True}, "contradict"),
        ({"url": "http://h/dw", "timeout_s": 0}, "timeout must be positive"),
        ({"url": "http://h/dw", "timeout_s": 1e10}, r"timeout of 1e\+10 s is beyond the limit of 86400 s"),
        ({"url": "http://h/dw", "retrieve_timeout_s": 86401}, "retrieve timeout of 86401 s is beyond the limit"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(PacsError, match=message):
        pacs_config(environ={}, **kwargs)


def test_a_timeout_beyond_what_a_timer_can_wait_is_one_line(capsys):
    """``--timeout 1e10`` passed the check and failed in the deadline timer's thread: two tracebacks."""
    from spinelabel.cli import main

    assert main(["pacs", "find", "--url", f"http://127.0.0.1:{_closed_port()}/dicom-web", "--timeout", "1e10"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "beyond the limit of 86400 s" in err, err


# ----------------------------------------------------------------- transport errors


def test_closed_port_is_one_clear_line():
    client = _client(f"http://127.0.0.1:{_closed_port()}/dicom-web", timeout_s=5)
    with pytest.raises(PacsError) as exc:
        find_studies(client)
    msg = str(exc.value)
    assert "cannot reach the DICOMweb server" in msg and "connection refused" in msg and "\n" not in msg


def test_server_error_500(server):
    server.routes["/dicom-web/studies"] = (500, {"error": "boom"})
    with pytest.raises(PacsError, match=r"failed to search for studies \(HTTP 500"):
        find_studies(_client(server.url))


def test_unauthorized_401_names_the_credentials_and_basic_auth_is_sent(server):
    server.routes["/dicom-web/studies"] = (401, None)
    with pytest.raises(PacsError, match="check the user name and password") as exc:
        find_studies(_client(server.url, username="reader", password="pw"))
    assert ENV_USER in str(exc.value)
    assert server.requests[0][1] == "Basic " + base64.b64encode(b"reader:pw").decode()


def test_unavailable_503_is_retried_then_reported(server, monkeypatch):
    monkeypatch.setattr(pacs_client, "RETRY_WAIT_S", 0.01)
    server.routes["/dicom-web/studies"] = (503, None)
    with pytest.raises(PacsError, match="HTTP 503"):
        find_studies(_client(server.url))
    assert len(server.requests) == pacs_client.RETRY_ATTEMPTS


def test_slow_server_times_out(server):
    server.delay = 1.0
    with pytest.raises(PacsError, match="did not answer in time"):
        find_studies(_client(server.url, timeout_s=0.2))


def test_cli_errors_are_one_line(capsys, monkeypatch, server):
    monkeypatch.delenv(ENV_URL, raising=False)
    assert main(["pacs", "find"]) == 1
    assert capsys.readouterr().err.strip() == f"spinelabel: error: no DICOMweb server given: use --url or set {ENV_URL}"
    assert main(["pacs", "harvest", "out", "--url", f"http://127.0.0.1:{_closed_port()}/dw"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spinelabel: error: cannot reach") and err.count("\n") == 1
    server.routes["/dicom-web/studies/1.2.3/series"] = (500, None)
    monkeypatch.setenv(ENV_URL, server.url)
    assert main(["pacs", "label", "1.2.3"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "Traceback" not in err and err.count("\n") == 1


# ----------------------------------------------------------------- QIDO


def test_orientation_from_iop_and_description():
    assert orientation_of(SAG) == "sagittal"
    assert orientation_of(AX) == "axial"
    assert orientation_of([1, 0, 0, 0, 0, -1]) == "coronal"
    assert orientation_of([0, 0.96, 0.28, 0, -0.28, -0.96]) == "sagittal"  # oblique sagittal
    assert orientation_of([1, 0, 0]) == "unknown" and orientation_of(None) == "unknown"
    assert orientation_from_description("T2_TSE_SAG") == "sagittal"
    assert orientation_from_description("t1 sagittal 4mm") == "sagittal"
    assert orientation_from_description("T2 TRA") == "axial"
    assert orientation_from_description("STIR COR") == "coronal"
    assert orientation_from_description("localizer") == "unknown"
    assert orientation_from_description("MASSAGE") == "unknown"


def test_find_series_keeps_sagittal_mr_and_annotations(server):
    base = "/dicom-web/studies/1.2.3/series"
    server.routes[base] = (200, [
        _item(SeriesInstanceUID="1.1", Modality="MR", SeriesDescription="T2 sag", SeriesNumber=3),
        _item(SeriesInstanceUID="1.2", Modality="MR", SeriesDescription="T2 ax", SeriesNumber=4),
        _item(SeriesInstanceUID="1.3", Modality="MR", SeriesDescription="T1 SAG", SeriesNumber=2),
        _item(SeriesInstanceUID="1.4", Modality="PR", SeriesNumber=99),
        _item(SeriesInstanceUID="1.5", Modality="SR", SeriesNumber=98),
        _item(SeriesInstanceUID="1.6", Modality="CT", SeriesNumber=1),
        _item(SeriesInstanceUID="1.7", Modality="MR", SeriesDescription="survey", SeriesNumber=1),
    ])
    server.routes[f"{base}/1.1/instances"] = (200, [_item(SOPInstanceUID="9.1", ImageOrientationPatient=SAG)])
    # a sagittal scout (3 slices 30 mm apart was labeled and given an SR and GSPS): not a series to label
    server.routes[f"{base}/1.7/instances"] = (200, [_item(SOPInstanceUID="9.7", ImageOrientationPatient=SAG,
                                                          ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])])
    server.routes[f"{base}/1.2/instances"] = (200, [_item(SOPInstanceUID="9.2", ImageOrientationPatient=AX)])
    server.routes[f"{base}/1.3/instances"] = (200, [_item(SOPInstanceUID="9.3")])  # no IOP, no metadata: description
    client = _client(server.url)
    found = find_series(client, "1.2.3")
    assert [(s.series_uid, s.orientation) for s in found] == [("1.3", "sagittal"), ("1.1", "sagittal")]
    with_notes = find_series(client, "1.2.3", annotations=True)
    assert [s.series_uid for s in with_notes] == ["1.3", "1.1", "1.5", "1.4"]
    everything = find_series(client, "1.2.3", sagittal_only=False)
    assert {s.series_uid for s in everything} == {"1.1", "1.2", "1.3", "1.6", "1.7"}
    assert next(s.orientation for s in everything if s.series_uid == "1.7") == "localizer"


def test_find_studies_parses_and_survives_a_server_ignoring_offset(server, monkeypatch):
    study = _item(StudyInstanceUID="1.2.3", PatientID="P1", PatientName={"Alphabetic": "DOE^J"},
                  StudyDate="20240102", ModalitiesInStudy=["MR", "PR"])
    server.routes["/dicom-web/studies"] = (200, [study])
    monkeypatch.setattr(pacs_query, "QIDO_PAGE", 1)  # every page is "full": only the no-new-results guard stops
    found = find_studies(_client(server.url))
    assert found == [StudyInfo("1.2.3", "P1", "DOE^J", "20240102", "", ("MR", "PR"))]
    assert "ModalitiesInStudy=MR" in server.requests[0][0]


# ----------------------------------------------------------------- WADO, STOW, harvest


def _dataset(uid: str, study: str = "1", series: str = "2"):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality = "MR"
    return ds


class _FakeClient:
    base_url = "http://fake/dicom-web"

    def __init__(self, datasets):
        self.datasets = datasets

    def retrieve_series(self, study_instance_uid, series_instance_uid):
        return self.datasets


def test_retrieve_series_writes_files_atomically(tmp_path):
    folder = tmp_path / "study" / "series"
    files = retrieve_series(_FakeClient([_dataset("1.2.1"), _dataset("1.2.2")]), "1", "2", folder)
    assert [f.name for f in files] == ["1.2.1.dcm", "1.2.2.dcm"]
    import pydicom

    assert pydicom.dcmread(files[0]).SOPInstanceUID == "1.2.1"
    # an existing folder is a finished retrieval: kept as it is
    assert retrieve_series(_FakeClient([]), "1", "2", folder) == files
    # a failure half-way leaves nothing behind
    broken = tmp_path / "study" / "broken"
    with pytest.raises(PacsError, match="instance 2 of the answer from http://fake/dicom-web is damaged"):
        retrieve_series(_FakeClient([_dataset("1.3.1", series="3"), object()]), "1", "3", broken)
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["series"]


def test_a_retrieve_answered_with_another_series_is_refused(tmp_path):
    """A server (or proxy) that answers with another study's series: refused, nothing written (it was labeled and
    stored under the UIDs asked for, into the other patient's study)."""
    for study, series in [("9", "2"), ("1", "9")]:
        answer = [_dataset("1.2.1"), _dataset("1.2.2", study=study, series=series)]
        with pytest.raises(PacsError, match=f"answered with series {series} of study {study} .instance 2.: nothing"):
            retrieve_series(_FakeClient(answer), "1", "2", tmp_path / "s")
        assert not any(tmp_path.iterdir())


def test_a_retrieved_instance_that_cannot_be_written_is_one_line(tmp_path):
    """A truncated multipart answer gives datasets whose elements cannot be encoded: pydicom raised a TypeError whose
    message carries a traceback; it is one line naming the instance now, and nothing is left behind."""
    broken = _dataset("1.2.2")
    broken.add_new(0x00091010, "UN", None)
    broken[0x00091010]._value = object()  # an element pydicom cannot encode
    with pytest.raises(PacsError) as info:
        retrieve_series(_FakeClient([_dataset("1.2.1"), broken]), "1", "2", tmp_path / "s")
    assert "instance 2 of the answer from http://fake/dicom-web is damaged" in str(info.value)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert not any(tmp_path.iterdir())


def test_retrieve_empty_series_is_an_error(tmp_path):
    with pytest.raises(PacsError, match="no instances"):
        retrieve_series(_FakeClient([]), "1", "2", tmp_path / "s")


class _StowAnswers:
    """STOW-RS answers in turn (a dict each, or "echo": the instance listed as stored)."""

    base_url = "http://fake/dicom-web"

    def __init__(self, *answers):
        self.answers, self.stored = list(answers), []

    def store_instances(self, datasets):
        answer = self.answers.pop(0)
        uid = str(datasets[0].SOPInstanceUID)
        if answer == "echo":
            self.stored.append(uid)
            return {"ReferencedSOPSequence": [{"ReferencedSOPInstanceUID": uid}]}
        return answer


def _files(tmp_path, *uids):
    import pydicom

    paths = []
    for uid in uids:
        ds = _dataset(uid)
        paths.append(tmp_path / f"{uid}.dcm")
        pacs._save_dataset(ds, paths[-1])
        assert pydicom.dcmread(paths[-1]).SOPInstanceUID == uid
    return paths


@pytest.mark.parametrize("answer", [{}, {"ReferencedSOPSequence": []}, {"ReferencedSOPSequence": [{"ReferencedSOPInstanceUID": "7.7"}]}])
def test_a_stow_answer_that_does_not_list_the_instance_is_not_a_success(tmp_path, answer):
    """An HTML page, an empty body or ``{}`` with status 200 (dicomweb-client returns an empty dataset) stored nothing."""
    with pytest.raises(PacsError, match="did not confirm storing 1.5.dcm"):
        store(_StowAnswers(answer), _files(tmp_path, "1.5"))


def test_a_store_that_fails_after_a_stored_file_says_which_was_stored(tmp_path):
    client = _StowAnswers("echo", {"FailedSOPSequence": [{"FailureReason": 272}]})
    with pytest.raises(PacsError, match=r"did not store 1.6.dcm \(failure reason 272\) \(stored before it: 1.5.dcm\)"):
        store(client, _files(tmp_path, "1.5", "1.6"))
    assert client.stored == ["1.5"]
    assert store(_StowAnswers("echo", "echo"), _files(tmp_path, "1.5", "1.6")) == ["1.5", "1.6"]


def test_store_refuses_unreadable_file(tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"not dicom")
    with pytest.raises(PacsError, match="cannot read .*x.dcm"):
        store(_FakeClient([]), [bad])


def test_harvest_goes_on_after_a_failing_series(tmp_path, monkeypatch):
    studies = [StudyInfo(uid, "P", "P", "", "", ("MR",)) for uid in ("1.1", "1.2", "1.3", "1.4")]

    def fake_find_series(client, study_uid, sagittal_only=True, annotations=False):
        if study_uid == "1.3":
            raise PacsError("the DICOMweb server at x failed to search the series of study 1.3 (HTTP 500)")
        out = [SeriesInfo(study_uid, f"{study_uid}.7", "MR", "T2 SAG", 7, 20, "sagittal")]
        if study_uid != "1.4":  # 1.4 has no labels: skipped
            out.append(SeriesInfo(study_uid, f"{study_uid}.99", "PR", "", 99, 1))
        return out

    def fake_retrieve(client, study_uid, series_uid, folder):
        if series_uid == "1.2.7":
            raise PacsError("cannot retrieve series 1.2.7: not found (HTTP 404)")
        folder.mkdir(parents=True)
        (folder / "a.dcm").write_bytes(b"")
        return [folder / "a.dcm"]

    monkeypatch.setattr(pacs, "find_series", fake_find_series)
    monkeypatch.setattr(pacs, "retrieve_series", fake_retrieve)
    report = harvest(object(), tmp_path / "h", studies=studies)
    assert [s["study_uid"] for s in report.studies] == ["1.1", "1.2"]
    assert report.n_series == 1 and report.n_annotations == 2
    assert len(report.failures) == 2 and "1.2.7" in report.failures[0] and "study 1.3" in report.failures[1]
    manifest = json.loads((tmp_path / "h" / "harvest.json").read_text())
    assert manifest["failures"] == report.failures
    assert manifest["studies"][0]["images"][0]["folder"] == str(Path("1.1") / "1.1.7")


# ----------------------------------------------------------------- TLS


@pytest.fixture
def tls_server(tmp_path):
    """The same fake server behind HTTPS with a fresh self-signed certificate for 127.0.0.1."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests, httpd.delay = {}, [], 0.0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"https://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    httpd.cert = cert
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_tls_server_is_refused_without_its_ca_and_used_with_it(tls_server):
    tls_server.routes["/dicom-web/studies"] = (200, [_item(StudyInstanceUID="1.2.3", ModalitiesInStudy=["MR"])])
    with pytest.raises(PacsError, match="TLS verification failed"):
        find_studies(_client(tls_server.url))
    studies = find_studies(_client(tls_server.url, ca_bundle=tls_server.cert, username="reader", password="pw"))
    assert [s.study_uid for s in studies] == ["1.2.3"]
    # basic auth travels inside the TLS connection
    expected = "Basic " + base64.b64encode(b"reader:pw").decode()
    assert tls_server.requests[-1][1] == expected
    # --insecure skips verification (also when REQUESTS_CA_BUNDLE is set in the environment)
    with pytest.warns(Warning, match="Unverified HTTPS"):  # urllib3 says so on every insecure request
        assert [s.study_uid for s in find_studies(_client(tls_server.url, insecure=True))] == ["1.2.3"]


def test_explicit_ca_bundle_beats_the_environment_bundle(tls_server, monkeypatch):
    """requests would let REQUESTS_CA_BUNDLE override the session's CA bundle; ours must win."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    tls_server.routes["/dicom-web/studies"] = (200, [])
    assert find_studies(_client(tls_server.url, ca_bundle=tls_server.cert)) == []


def test_a_password_inside_the_url_becomes_basic_auth_and_is_never_shown():
    cfg = pacs_config("https://ann:s%40cret@pacs.example.org:8443/dicom-web", environ={})
    assert cfg.url == "https://pacs.example.org:8443/dicom-web"
    assert (cfg.username, cfg.password) == ("ann", "s@cret")
    assert "cret" not in repr(cfg)
    with pytest.raises(PacsError) as info:
        pacs_config("ftp://ann:topsecret@pacs.example.org/x", environ={})
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize(
    "body",
    [{"not": "a list"}, ["a string, not an object"], [{"0020000D": "not an element"}], [{"0020000D": {"Value": "x"}}]],
)
def test_answers_of_the_wrong_json_shape_are_one_pacs_error(server, body):
    server.routes["/dicom-web/studies"] = (200, body)
    with pytest.raises(PacsError, match="unexpected answer"):
        find_studies(_client(server.url))


def test_an_answer_nested_too_deeply_is_one_pacs_error(server):
    """The client decodes the answer itself: its RecursionError passed every ``except ValueError`` (a traceback)."""
    server.routes["/dicom-web/studies"] = (200, b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(PacsError, match="unexpected answer .JSON nested too deeply"):
        find_studies(_client(server.url))


def test_a_server_that_pages_forever_is_stopped(server, monkeypatch):
    class Endless:
        """Every page full and new: a server that ignores offset and makes up results."""

        def __init__(self):
            self.calls = 0

        def __call__(self, limit=None, offset=0, **kwargs):
            self.calls += 1
            return [_item(StudyInstanceUID=f"1.2.{self.calls}.{k}") for k in range(limit)]

    endless = Endless()
    monkeypatch.setattr(pacs_query, "MAX_QIDO_PAGES", 5)
    with pytest.raises(PacsError, match="still more results after 5 pages"):
        pacs_query.search_all(_client(server.url), "search for studies", endless, None)
    assert endless.calls == 5


# ----------------------------------------------------------------- spinelabel batch: the same options


def _two_studies(server) -> None:
    """Two MR studies with one sagittal MR series each; retrieving a series answers 404."""
    server.routes["/dicom-web/studies"] = (200, [_item(StudyInstanceUID=f"1.2.{k}", ModalitiesInStudy=["MR"]) for k in (1, 2)])
    for k in (1, 2):
        base = f"/dicom-web/studies/1.2.{k}/series"
        server.routes[base] = (200, [_item(SeriesInstanceUID=f"1.2.{k}.7", Modality="MR", SeriesDescription="T2 SAG")])
        server.routes[f"{base}/1.2.{k}.7/instances"] = (200, [_item(SOPInstanceUID=f"9.{k}", ImageOrientationPatient=SAG)])


def _batch(tmp_path, *args) -> tuple[int, dict]:
    from spinelabel.archive import read_failed

    out = tmp_path / "run"
    code = main(["batch", "-o", str(out), "-q", *map(str, args)])
    return code, read_failed(out) if out.is_dir() else {}


@pytest.fixture
def no_model(monkeypatch):
    """``spinelabel batch`` loads no model: these items fail at retrieval, before any labeling."""
    from spinelabel.batch import LabelerSpec

    monkeypatch.setattr(LabelerSpec, "load", lambda self: object())
    monkeypatch.delenv(ENV_URL, raising=False)


def test_batch_limit_and_study_filters_are_the_pacs_ones(server, tmp_path, no_model):
    _two_studies(server)
    code, failed = _batch(tmp_path, "--url", server.url, "--limit", 1, "--patient-id", "P1", "--date", "20260101-")
    assert code == 1 and set(failed) == {"1.2.1.7"}, failed  # one study, its series tried (and not found)
    assert "HTTP 404" in failed["1.2.1.7"][1]
    query = next(path for path, _ in server.requests if urlsplit(path).path == "/dicom-web/studies")
    assert "limit=1" in query and "PatientID=P1" in query and "StudyDate=20260101-" in query
    assert not any(path.startswith("/dicom-web/studies/1.2.2") for path, _ in server.requests)


def test_batch_timeout_is_the_pacs_one(server, tmp_path, no_model, capsys):
    _two_studies(server)
    server.delay = 1.0
    code, _ = _batch(tmp_path, "--url", server.url, "--timeout", 0.2)
    err = capsys.readouterr().err
    assert code == 1 and "did not answer in time" in err and err.count("\n") == 1, err


def test_batch_ca_bundle_and_insecure_reach_the_query_and_the_workers(tls_server, tmp_path, no_model, capsys):
    _two_studies(tls_server)
    code, failed = _batch(tmp_path, "--url", tls_server.url)
    err = capsys.readouterr().err
    assert code == 1 and "TLS verification failed" in err and err.count("\n") == 1 and not failed, err
    # --ca-bundle in two worker processes (the settings travel with each item), --insecure in this one
    for option in (["--ca-bundle", tls_server.cert, "--jobs", 2], ["--insecure"]):
        tls_server.requests.clear()
        code, failed = _batch(tmp_path / option[0].strip("-"), "--url", tls_server.url, *option)
        assert code == 1 and set(failed) == {"1.2.1.7", "1.2.2.7"}, failed
        # the workers' retrieves got through TLS too: the server answered them (404)
        assert all("HTTP 404" in reason for _, reason in failed.values()), failed
        assert {p for p, _ in tls_server.requests if p.endswith(".7")} == {f"/dicom-web/studies/1.2.{k}/series/1.2.{k}.7" for k in (1, 2)}
    code, _ = _batch(tmp_path / "both", "--url", tls_server.url, "--insecure", "--ca-bundle", tls_server.cert)
    assert code == 1 and "contradict" in capsys.readouterr().err


def test_harvest_into_a_file_or_an_unwritable_report_is_one_line(tmp_path, monkeypatch, capsys):
    """A file as the output folder gave a FileExistsError traceback; a failed harvest.json hid the failures before it."""
    from spinelabel.errors import OutputError

    afile = tmp_path / "afile"
    afile.write_text("hi")
    with pytest.raises(OutputError, match="cannot write into .*afile"):
        harvest(object(), afile, studies=[])
    monkeypatch.setenv(ENV_URL, f"http://127.0.0.1:{_closed_port()}/dicom-web")
    assert main(["pacs", "harvest", str(afile), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spinelabel: error: cannot write into") and "is a file" in err and err.count("\n") == 1

    def fake_find_series(client, study_uid, sagittal_only=True, annotations=False):
        return [SeriesInfo(study_uid, "1.1.7", "MR", "T2 SAG", 7, 20, "sagittal"), SeriesInfo(study_uid, "1.1.9", "PR", "", 9, 1)]

    def no_space(client, study_uid, series_uid, folder):
        raise PacsError(f"cannot write series {series_uid} to {folder}: No space left on device")

    def full_disk(path, payload):
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(pacs, "find_series", fake_find_series)
    monkeypatch.setattr(pacs, "retrieve_series", no_space)
    monkeypatch.setattr("spinelabel.io.outputs.atomic_write_bytes", full_disk)
    with pytest.raises(OutputError) as info:
        harvest(object(), tmp_path / "h", studies=[StudyInfo("1.1", "P", "P", "", "", ("MR",))])
    message = str(info.value)
    assert "harvest.json: No space left on device; 2 item(s) had failed before it, first: study 1.1 series 1.1.7" in message


@pytest.mark.parametrize(("args", "message"), [
    (["--date", "2026-12-05"], "is not a DICOM date or range"),
    (["--date", "notadate"], "is not a DICOM date or range"),
    (["--date", "20261305"], "is not a DICOM date or range"),  # month 13
    (["--date", "20240101-20241231-"], "is not a DICOM date or range"),
    (["--date", "-"], "is not a DICOM date or range"),
    (["--study", "abc;<>"], "is not a DICOM UID"),
    (["--study", "1..2"], "is not a DICOM UID"),
    (["--study", "1." + "2" * 70], "is not a DICOM UID"),
])  # fmt: skip
def test_a_malformed_study_filter_is_refused_before_asking_the_server(server, capsys, monkeypatch, args, message):
    """A server answers an ISO date or a malformed UID with no study (exit 0, "0 studies"): an empty archive."""
    monkeypatch.setenv(ENV_URL, server.url)
    assert main(["pacs", "find", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert server.requests == []


@pytest.mark.parametrize("date", ["20240101", "20240101-", "-20241231", "20240101-20241231", "20240229"])
def test_dicom_dates_and_ranges_pass_the_filter_check(date):
    pacs_query.check_filters(date, ["1.2.840.10008.1", "0.1", "1.02.3"])  # a leading zero: the server decides


def test_https_to_a_plain_http_server_says_so(server):
    """The TLS message advised --ca-bundle, which cannot help: the server speaks plain HTTP."""
    url = server.url.replace("http://", "https://")
    for insecure in (False, True):
        with pytest.raises(PacsError, match=r"does not answer in TLS \(HTTPS\): is its address http://\?"):
            find_studies(_client(url, insecure=insecure))


def test_ctrl_c_is_one_line_and_exit_130(server, capsys, monkeypatch):
    """Ctrl+C during a command ended it with exit 130 and nothing on stderr."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setenv(ENV_URL, server.url)
    monkeypatch.setattr(pacs_query, "find_studies", interrupted)
    assert main(["pacs", "find"]) == 130
    assert capsys.readouterr().err == "spinelabel: interrupted\n"


def test_a_reviewed_result_in_the_way_is_refused_before_the_series_is_retrieved(tmp_path, monkeypatch):
    """`pacs label` into a folder holding a person's reviewed result of that series: one failure, no retrieval
    (a series is hundreds of MB over a hospital network), the review left as it was."""
    from spinelabel.errors import OutputError
    from spinelabel.pacs import SeriesOutputs, label_series

    reviewed = tmp_path / "1.2.7.json"
    reviewed.write_text(json.dumps({"schema_version": 1, "vertebrae": [], "review": {"status": "corrected"}}))
    before = reviewed.read_bytes()
    retrieved = []
    monkeypatch.setattr(pacs, "retrieve_series", lambda *args: retrieved.append(args))
    with pytest.raises(OutputError, match="reviewed result"):
        label_series(object(), "1.2", "1.2.7", object(), SeriesOutputs.beside(reviewed))
    assert retrieved == [] and reviewed.read_bytes() == before


def test_a_study_is_counted_through_the_series_that_took_the_count(monkeypatch, tmp_path):
    """``label_study`` with a counting series: a series it does not reach is counted from one that took its count
    (neck -> thoracic -> lumbar); the counting series and a series nothing reaches are named on their own (the
    latter with a note); a failing series is not tried again; no series is counted from a chain through itself."""
    import numpy as np

    from spinelabel.carried_count import CountingSeries
    from spinelabel.errors import CountNotReachedError, InputError
    from spinelabel.pacs_query import SeriesInfo

    reaches = {"neck": {"thoracic"}, "thoracic": {"lumbar", "neck"}, "lumbar": {"thoracic"}}
    calls = []

    def find(client, study_uid, sagittal_only=True):
        return [SeriesInfo(study_uid, uid, "MR", uid, k, 10, "sagittal")
                for k, uid in enumerate(("lumbar", "thoracic", "neck", "other", "broken"))]

    def label(client, study_uid, series_uid, labeler, outputs, *, do_store=False, stack=None, counts=()):
        calls.append((series_uid, tuple(c.series_uid for c in counts)))
        if series_uid == "broken":
            raise InputError("broken series")
        if counts and not any(series_uid in reaches.get(c.series_uid, set()) for c in counts):
            raise CountNotReachedError("not reached")
        carried = CountingSeries(series_uid, ("T1",), np.zeros((1, 3)), series_uid=series_uid) if counts else None
        return pacs.LabeledSeries(series_uid, outputs, 5, counting=carried)

    monkeypatch.setattr(pacs, "find_series", find)
    monkeypatch.setattr(pacs, "label_series", label)
    neck = CountingSeries("neck", ("C2", "C3", "C4"), np.zeros((3, 3)), series_uid="neck")
    failures, notes = [], []
    done = pacs.label_study(None, "1.2", None, tmp_path, counting=neck, failures=failures, notes=notes)
    assert [d.series_uid for d in done] == ["lumbar", "thoracic", "neck", "other"]
    assert calls == [
        # round 1: the neck's count, and the thoracic station's as soon as it took it (one retrieval, two counts)
        ("lumbar", ("neck",)), ("thoracic", ("neck",)), ("other", ("neck", "thoracic")), ("broken", ("neck", "thoracic")),
        ("lumbar", ("thoracic",)),  # round 2: the series not yet tried with the thoracic station's count
        ("other", ("lumbar",)),  # round 3: the lumbar series' count, taken from the thoracic one
        ("neck", ()), ("other", ()),  # on their own: the counting series, and the series none reaches
    ]
    assert [d.counting is not None for d in done] == [True, True, False, False]
    assert notes == ["series other: no count carried in the study reaches a vertebra named in it: counted on its own"]
    assert failures == ["series broken: broken series"]
