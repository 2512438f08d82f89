"""spinelabel review keeps every result with its own scan: results checked at load and against their image,
saves that never overwrite another session's nor leave half a set of files, and reviewed folders that say what
they skip."""

from __future__ import annotations

import json
import os
import shutil
import socket

import numpy as np
import pytest

from spinelabel.annotations import load_annotations
from spinelabel.cli import main
from spinelabel.errors import InputError, OutputError, SpinelabelError
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.io.nifti import save_nifti
from spinelabel.review import ReviewSession, prepare_scans
from spinelabel.review.edits import DisplayGrid, apply_ops
from spinelabel.review.server import SECURITY_HEADERS
from spinelabel.review.edits import ReviewRequestError
from spinelabel.review.session import ReviewConflictError
from spinelabel.testing.dummy import blob_spine
from spinelabel.testing.review import request as _request, blob_series_volume, dummy_labeler, serving, session_for

#: UIDs of the two series written into one folder.
UID_A, UID_B = "1.2.826.0.1.3680043.10.1001.1", "1.2.826.0.1.3680043.10.1001.2"


def _no_model():
    raise AssertionError("no scan should need labeling here")


@pytest.fixture
def nifti_scans(tmp_path):
    """Two NIfTI blob spines on different grids: a full one and one cut short (cropped: another origin)."""
    paths = [tmp_path / "full.nii.gz", tmp_path / "short.nii.gz"]
    save_nifti(blob_spine(n=5)[0], paths[0])
    save_nifti(blob_spine(n=3, margin_mm=30.0)[0], paths[1])
    return paths


def _series(folder, uid: str | None = None, n: int = 5, prefix: str = "IM"):
    volume, _ = blob_series_volume((96, 96, 9), (2.0, 2.0, 4.0), n=n)
    write_dicom_series(volume, folder, series_uid=uid, file_prefix=prefix)
    return folder


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ----------------------------------------------------------------- F1: a result is the result of its own scan


def test_a_result_of_another_series_of_the_folder_fails_at_start_and_the_others_go_on(tmp_path):
    folder = _series(tmp_path / "two", UID_A, prefix="A")
    _series(folder, UID_B, n=4, prefix="B")
    other = _series(tmp_path / "other", UID_B, n=4)
    labels = tmp_path / "labels"
    scans, _, failures = prepare_scans([folder, other], ["two", "other"], labels, dummy_labeler, series=UID_A)
    assert [p.name for p, _ in failures] == ["other"] and (labels / "two.json").is_file()  # no series A in other/
    prepare_scans([other], ["other"], labels, dummy_labeler)
    scans, _, failures = prepare_scans([folder, other], ["two", "other"], labels, _no_model, series=UID_B)
    assert [p.name for p, _ in failures] == ["two"] and [s.name for s in scans] == ["other"]
    assert f"two.json holds the labels of DICOM series {UID_A}, not of series {UID_B}" in failures[0][1]
    assert "--labels" in failures[0][1] and "\n" not in failures[0][1]


def test_a_result_of_another_dicom_series_is_refused_on_the_page_and_nothing_is_saved(tmp_path):
    labels = tmp_path / "labels"
    session_for([_series(tmp_path / "a", UID_A)], labels)
    shutil.copy(labels / "a.json", labels / "b.json")
    session = session_for([_series(tmp_path / "b", UID_B)], labels)  # no --series: only the image tells
    with pytest.raises(InputError, match=f"b.json holds the labels of DICOM series {UID_A}, not of series {UID_B}"):
        session.meta(0)
    before = _files(labels)
    with pytest.raises(InputError, match="holds the labels of DICOM series"):
        session.review(0, [])
    assert _files(labels) == before  # no SR, no GSPS, the JSON as it was


def test_a_result_of_another_nifti_grid_is_refused_on_the_page_and_nothing_is_saved(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    session_for(nifti_scans, labels)
    shutil.copy(labels / "full.json", labels / "short.json")  # the name given to another scan before
    session = session_for(nifti_scans[1:], labels)
    with pytest.raises(InputError, match="short.json does not fit the image .*short.nii.gz .* labels of another image"):
        session.meta(0)
    with serving(session) as server:
        response, page = _request(server, "GET", "/")
        assert response.status == 200 and b'"meta": null' in page  # the page asks again and shows the line
        response, body = _request(server, "GET", "/api/scans/0/meta")
        assert response.status == 500 and "labels of another image" in json.loads(body)["error"]
        response, body = _request(
            server, "POST", "/api/scans/0/review", b'{"ops": []}', {"Content-Type": "application/json"}
        )
        assert response.status == 500 and "labels of another image" in json.loads(body)["error"]
    assert json.loads((labels / "short.json").read_text()) == json.loads((labels / "full.json").read_text())


# ----------------------------------------------------------------- F2, F5: a malformed result fails alone


def _set(path, step):
    doc = json.loads(path.read_text())
    step(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["vertebrae"][0].update(confidence=float("nan")), "not valid JSON"),
        (lambda d: d["vertebrae"][0].update(confidence=float("inf")), "not valid JSON"),
        (lambda d: d["vertebrae"][0].update(confidence=True), "confidence"),
        (lambda d: d["vertebrae"][0].update(confidence=1.5), "confidence"),
        (lambda d: d["vertebrae"][0].update(position_mm=[None, 1, 2]), "position_mm"),
        (lambda d: d["vertebrae"][0].update(position_mm=["a", "b", "c"]), "position_mm"),
        (lambda d: d["vertebrae"][0].update(voxel=["a", 2.0, 3.0]), "voxel"),
        (lambda d: d["vertebrae"].append(dict(d["vertebrae"][1])), "labeled twice"),
        (lambda d: d.update(review={"status": "accepted", "image": "/x", "events": "oops"}), "events"),
        (lambda d: d.update(review="accepted"), "must be an object"),
        (lambda d: d.update(review={"status": "accepted", "series_uid": 5}), "series_uid"),
        (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
    ],
)
def test_a_malformed_result_fails_alone_with_one_line(nifti_scans, tmp_path, change, message):
    labels = tmp_path / "labels"
    session_for(nifti_scans, labels)
    _set(labels / "full.json", change)
    scans, _, failures = prepare_scans(nifti_scans, ["full", "short"], labels, _no_model)
    assert [s.name for s in scans] == ["short"] and [p.name for p, _ in failures] == ["full.nii.gz"]
    assert message in failures[0][1] and "full.json" in failures[0][1] and "\n" not in failures[0][1]


def test_the_page_opens_even_when_a_scan_fails_for_an_unforeseen_reason(nifti_scans, tmp_path, monkeypatch):
    session = session_for(nifti_scans[:1], tmp_path / "labels")

    def broken(index):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(session, "meta", broken)
    with serving(session) as server:
        response, page = _request(server, "GET", "/")
        assert response.status == 200 and b'"meta": null' in page
        assert json.loads(_request(server, "GET", "/api/worklist")[1])["total"] == 1


# ----------------------------------------------------------------- F3: two sessions on one folder


def test_a_save_over_a_result_changed_on_disk_is_refused_and_shows_the_saved_version(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    alice, bob = session_for(nifti_scans[:1], labels, "alice"), session_for(nifti_scans[:1], labels, "bob")
    gone = alice.meta(0)["labels"][0]["label"]
    alice.review(0, [{"op": "delete", "label": gone}])
    saved = (labels / "full.json").read_bytes()
    with serving(bob) as server:
        response, body = _request(
            server, "POST", "/api/scans/0/review", b'{"ops": []}', {"Content-Type": "application/json"}
        )
        assert response.status == 409
        assert "full.json was changed on disk since this page loaded it" in json.loads(body)["error"]
        assert (labels / "full.json").read_bytes() == saved  # alice's correction stands
        assert gone not in [
            lab["label"] for lab in json.loads(_request(server, "GET", "/api/scans/0/meta")[1])["labels"]
        ]
    bob.review(0, [])  # now on the saved version
    events = json.loads((labels / "full.json").read_text())["review"]["events"]
    assert [e["reviewer"] for e in events] == ["alice", "bob"] and events[0]["changes"][0]["label"] == gone


def test_a_page_showing_an_older_version_cannot_save_over_a_newer_one(nifti_scans, tmp_path):
    """Two tabs (or two reviewers of one --host server) on one scan: the stale page's edits were applied by name to
    the corrected file (two labels on one vertebra). Each page now sends the version it shows."""
    labels = tmp_path / "labels"
    session = session_for(nifti_scans[:1], labels, "alice")
    shown = session.meta(0)
    first = shown["labels"][0]["label"]
    session.review(0, [{"op": "delete", "label": first}], shown["version"])  # tab A saves
    saved = (labels / "full.json").read_bytes()
    with pytest.raises(ReviewConflictError, match="saved since this page showed it .another tab or reviewer"):
        session.review(0, [], shown["version"])  # tab B, still showing the old version
    assert (labels / "full.json").read_bytes() == saved
    newer = session.meta(0)["version"]
    assert newer != shown["version"] and session.review(0, [], newer)["version"] != newer  # saved on the newer one


def test_a_page_version_of_null_is_a_version_and_a_malformed_one_is_refused(nifti_scans, tmp_path):
    """A scan with no result file yet has no version (null): two pages both sending null skipped the check."""
    labels = tmp_path / "labels"
    session = session_for(nifti_scans[:1], labels)
    (labels / "full.json").unlink()
    session.scans[0].digest = None  # as for a scan whose result was never written
    session.review(0, [], None)  # the first page saves
    with pytest.raises(ReviewConflictError, match="saved since this page showed it"):
        session.review(0, [], None)  # the second, still showing "no result yet"
    with pytest.raises(ReviewRequestError, match="version must be the text the page was given, not int"):
        session.review(0, [], 5)


def test_a_dicom_review_that_keeps_no_vertebra_is_refused_in_words(tmp_path):
    """Deleting every label of a DICOM scan gave HTTP 500 from the SR writer; now a 400 that says why."""
    volume, _ = blob_series_volume((96, 96, 9), (2.0, 2.0, 4.0))
    write_dicom_series(volume, tmp_path / "series")
    session = session_for([tmp_path / "series"], tmp_path / "labels")
    before = (tmp_path / "labels" / "series.json").read_bytes()
    ops = [{"op": "delete", "label": lab["label"]} for lab in session.meta(0)["labels"]]
    with serving(session) as server:
        body = json.dumps({"ops": ops}).encode()
        response, answer = _request(server, "POST", "/api/scans/0/review", body, {"Content-Type": "application/json"})
        assert response.status == 400 and "must keep at least one vertebra" in json.loads(answer)["error"]
        huge = b'{"ops": [], "version": ' + b"9" * 5000 + b"}"  # more digits than Python converts
        response, answer = _request(server, "POST", "/api/scans/0/review", huge, {"Content-Type": "application/json"})
        assert response.status == 400 and "too long" in json.loads(answer)["error"]
    assert (tmp_path / "labels" / "series.json").read_bytes() == before


def test_a_result_removed_on_disk_is_written_afresh_and_a_broken_one_is_not_overwritten(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    session = session_for(nifti_scans[:1], labels)
    (labels / "full.json").unlink()
    session.review(0, [])
    assert json.loads((labels / "full.json").read_text())["review"]["status"] == "accepted"
    (labels / "full.json").write_text("{cut sho")
    with pytest.raises(SpinelabelError, match="changed on disk .* not valid JSON"):
        session.review(0, [])
    assert (labels / "full.json").read_text() == "{cut sho"


# ----------------------------------------------------------------- F4: all three files, or none


def test_a_review_saved_while_a_scan_is_labeled_is_not_replaced_by_the_new_labeling(nifti_scans, tmp_path):
    """The page's labeling goes through the one read-label-write path: another session's review that lands while
    the network runs stays on disk, and the scan is reported, not shown with the replaced result."""
    labels = tmp_path / "labels"
    reviewed = {"schema_version": 1, "input": str(nifti_scans[0]), "vertebrae": [],
                "review": {"status": "accepted", "reviewer": "other session"}}

    class SavesMeanwhile:
        def __init__(self):
            self.inner = dummy_labeler()

        def label(self, volume):
            (labels / "full.json").write_text(json.dumps(reviewed))  # the other session saves while this one labels
            return self.inner.label(volume)

    labels.mkdir()
    scans, _, failures = prepare_scans(nifti_scans[:1], ["full"], labels, SavesMeanwhile)
    assert scans == [] and len(failures) == 1 and "holds a reviewed result" in failures[0][1]
    assert json.loads((labels / "full.json").read_text()) == reviewed
    assert sorted(p.name for p in labels.iterdir()) == ["full.json"]  # no staging folder or other file left


def test_a_failed_json_write_leaves_the_previous_sr_gsps_and_json(tmp_path, monkeypatch):
    labels = tmp_path / "labels"
    session = session_for([_series(tmp_path / "one")], labels)
    session.review(0, [])
    before = _files(labels)
    assert set(before) == {"one.json", "one.sr.dcm", "one.gsps.dcm"}
    replace = os.replace

    def json_refused(src, dst):  # as a file made immutable (chattr +i): the JSON cannot be replaced
        if os.fspath(dst) == os.fspath(labels / "one.json"):
            raise PermissionError(1, "Operation not permitted")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", json_refused)
    first = session.meta(0)["labels"][0]["label"]
    with pytest.raises(OutputError, match="Operation not permitted"):
        session.review(0, [{"op": "rename", "label": first, "to": "T13"}])
    assert _files(labels) == before  # no hidden temporary left either
    monkeypatch.setattr(os, "replace", replace)
    assert session.meta(0)["labels"][0]["label"] == first
    session.review(0, [{"op": "rename", "label": first, "to": "T13"}])
    assert all(_files(labels)[name] != before[name] for name in before)


# ----------------------------------------------------------------- F6: reviewed folders say what they skip


def _result(review=None):
    vertebrae = [
        {"label": lv, "verse_id": 0, "position_mm": [0.0, 0.0, z], "voxel": [0, 0, 0], "confidence": 0.9}
        for lv, z in (("L3", 0.0), ("L4", -36.0))
    ]
    doc = {"schema_version": 1, "input": "x", "region": "lumbar", "vertebrae": vertebrae, "warnings": []}
    return {**doc, "review": review} if review else doc


def test_a_reviewed_folder_reports_each_result_it_cannot_use(tmp_path):
    folder = tmp_path / "reviewed"
    (folder / ".spinelabel-x" / "new").mkdir(parents=True)
    accepted = _result({"status": "accepted", "image": "done.nii.gz"})
    (folder / "done.json").write_text(json.dumps(accepted))
    (folder / "cut.json").write_text(json.dumps(accepted)[:-40])
    (folder / "v2.json").write_text(json.dumps({**accepted, "schema_version": 2}))
    bad = {**accepted, "vertebrae": [{**accepted["vertebrae"][0], "position_mm": [None, 0, 0]}]}
    (folder / "bad.json").write_text(json.dumps(bad))
    (folder / "empty.json").write_text(json.dumps({**accepted, "vertebrae": []}))  # every label removed
    (folder / "other.json").write_text(json.dumps({"viewer": "settings"}))  # not a result: not mentioned
    (folder / ".spinelabel-x" / "new" / "left.json").write_text(json.dumps(accepted))  # an interrupted save's
    problems: list[str] = []
    assert [a.scan_id for a in load_annotations([folder], on_problem=problems.append)] == ["done"]
    assert len(problems) == 4 and all(p.endswith("; skipped") for p in problems)
    assert "bad.json: vertebra #1" in problems[0] and "cut.json: not valid JSON" in problems[1]
    assert "empty.json: reviewed (accepted) with no vertebra: nothing to train on" in problems[2]
    assert "v2.json: schema_version 2 is not supported" in problems[3]
    with pytest.raises(InputError, match="empty.json: reviewed .accepted. with no vertebra"):
        load_annotations([folder / "empty.json"])
    with pytest.raises(InputError, match="v2.json: schema_version 2 is not supported"):
        load_annotations([folder / "v2.json"])


def test_annotations_check_warns_about_a_cut_result_in_a_folder(tmp_path, capsys):
    folder = tmp_path / "reviewed"
    folder.mkdir()
    accepted = _result({"status": "accepted", "image": "done.nii.gz"})
    (folder / "done.json").write_text(json.dumps(accepted))
    (folder / "cut.json").write_text(json.dumps(accepted)[:-40])
    code = main(["annotations", "check", str(folder), "-o", str(tmp_path / "clean.csv"), "--no-images"])
    err = capsys.readouterr().err
    assert code == 0 and "warning: " in err and "cut.json: not valid JSON" in err and "Traceback" not in err


# ----------------------------------------------------------------- F7: a rename to its own name


def test_a_rename_to_the_same_name_changes_nothing(nifti_scans, tmp_path):
    verts = [
        {"label": "L1", "verse_id": 20, "position_mm": [0.0, 0.0, 0.0], "voxel": [0.0, 0.0, 0.0], "confidence": 0.3}
    ]
    grid = DisplayGrid(to_world=lambda ijk: np.asarray(ijk, float), to_input_voxel=lambda xyz: xyz, shape=(9, 9, 9))
    assert apply_ops(verts, [{"op": "rename", "label": "L1", "to": "l1"}], grid) == (verts, [])
    labels = tmp_path / "labels"
    session = session_for(nifti_scans[:1], labels)
    label = session.meta(0)["labels"][0]
    meta = session.review(0, [{"op": "rename", "label": label["label"], "to": label["label"]}])
    assert meta["status"] == "accepted" and meta["labels"][0]["confidence"] == label["confidence"]
    assert json.loads((labels / "full.json").read_text())["review"]["events"][0]["changes"] == []


# ----------------------------------------------------------------- F8: HTTP edges


@pytest.fixture
def served(nifti_scans, tmp_path):
    with serving(session_for(nifti_scans[:1], tmp_path / "labels")) as server:
        yield server


def _add(coordinate: bytes) -> bytes:
    return b'{"ops": [{"op": "add", "label": "C1", "slice": ' + coordinate + b', "row": 1, "col": 1}]}'


@pytest.mark.parametrize(
    "body, message",
    [
        (_add(b"1" + b"0" * 400), "finite numbers"),
        (_add(b'"5"'), "finite numbers"),
        (_add(b"true"), "finite numbers"),
        (b'{"ops": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
def test_server_answers_400_to_odd_coordinates_and_deep_json(served, body, message):
    response, data = _request(served, "POST", "/api/scans/0/review", body, {"Content-Type": "application/json"})
    assert response.status == 400 and message in json.loads(data)["error"]


def test_scan_and_slice_numbers_are_ascii_digits(served):
    """An Arabic-Indic zero (U+0660) passed for scan 0: ``\\d`` matches any Unicode digit and ``int`` reads it."""
    assert _request(served, "GET", "/api/scans/0/meta")[0].status == 200
    for path in ("/api/scans/%D9%A0/meta", "/api/scans/0/slices/%D9%A0"):
        assert _request(served, "GET", path)[0].status == 404


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"])
def test_other_methods_get_json_with_the_security_headers(served, method):
    response, data = _request(served, method, "/api/scans/0/review")
    assert response.status == (501 if method == "BREW" else 405)
    assert all(response.getheader(k) == v for k, v in SECURITY_HEADERS.items())
    assert response.getheader("Content-Type") == "application/json"
    assert data == b"" if method == "HEAD" else "error" in json.loads(data)


def test_a_body_that_never_arrives_times_out(served, monkeypatch):
    from spinelabel.review import server as server_module

    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
    host, port = served.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(
            f"POST /api/scans/0/review HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"X-Spinelabel-Token: {served.token}\r\n"
            "Content-Length: 100\r\n\r\n{}".encode()
        )
        answer = b""
        while chunk := s.recv(65536):  # until the server closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive" in answer


# ----------------------------------------------------------------- F9: a taken port before any labeling


def test_a_taken_port_is_reported_before_any_labeling(nifti_scans, tmp_path, capsys, monkeypatch):
    import spinelabel.pipeline

    made: list[str] = []
    monkeypatch.setattr(spinelabel.pipeline, "make_labeler", lambda *a: made.append("labeler") or dummy_labeler())
    with serving(ReviewSession([], "x")) as other:
        port = other.server_address[1]
        code = main(["review", str(nifti_scans[0]), "--labels", str(tmp_path / "labels"), "--port", str(port), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot serve on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert made == [] and not (tmp_path / "labels" / "full.json").exists()



def test_closing_waits_for_a_save_in_progress_and_refuses_later_ones(nifti_scans, tmp_path, monkeypatch):
    """Ctrl+C while a save was renaming its files (a slow share) left the SR saying one thing and the JSON another:
    the server's threads were killed with the process. Closing the session now waits for the save."""
    import threading
    import time

    from spinelabel.review import session as session_module
    from spinelabel.review.session import ReviewRequestError

    session = session_for(nifti_scans[:1], tmp_path / "labels")
    real_save = session_module.save_review
    finished: list[float] = []
    started = threading.Event()

    def slow_save(*args, **kwargs):
        started.set()  # inside the save, under the session's lock
        time.sleep(0.5)
        out = real_save(*args, **kwargs)
        finished.append(time.monotonic())
        return out

    monkeypatch.setattr(session_module, "save_review", slow_save)
    saving = threading.Thread(target=session.review, args=(0, []))
    saving.start()
    assert started.wait(30)
    session.close()
    closed_at = time.monotonic()
    saving.join()
    assert finished and finished[0] <= closed_at  # close() returned only after the save had finished
    with pytest.raises(ReviewRequestError, match="stopping"):
        session.review(0, [])
