"""spinelabel review without a browser: edit operations, the session (labeling, worklist, saving), the server's safety rules."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pydicom
import pytest

from spinelabel.annotations import load_annotations
from spinelabel.cli import main
from spinelabel.errors import InputError
from spinelabel.io.dicom_write import write_dicom_series
from spinelabel.io.nifti import save_nifti
from spinelabel.review import MAX_BODY_BYTES, ReviewRequestError, ReviewSession, make_server, prepare_scans
from spinelabel.review.edits import DisplayGrid, apply_ops
from spinelabel.testing.dummy import blob_spine
from spinelabel.testing.review import request as _request, blob_series_volume, dummy_labeler, serving, session_for

# ----------------------------------------------------------------- edit operations

GRID = DisplayGrid(to_world=lambda ijk: np.asarray(ijk, float) * 2.0, to_input_voxel=lambda xyz: np.asarray(xyz) / 2.0,
                   shape=(10, 100, 100))
VERTS = [{"label": "L1", "verse_id": 20, "position_mm": [0.0, 0.0, 0.0], "voxel": [0.0, 0.0, 0.0], "confidence": 0.3},
         {"label": "L2", "verse_id": 21, "position_mm": [2.0, 2.0, 2.0], "voxel": [1.0, 1.0, 1.0], "confidence": 0.9}]


def test_apply_ops_moves_renames_adds_and_deletes():
    ops = [{"op": "move", "label": "L1", "slice": 1, "row": 2, "col": 3}, {"op": "rename", "label": "l2", "to": "L3"},
           {"op": "add", "label": "T12", "slice": 4, "row": 5, "col": 6}, {"op": "delete", "label": "L1"}]
    verts, changes = apply_ops(VERTS, ops, GRID)
    assert [v["label"] for v in verts] == ["T12", "L3"]  # cranial to caudal
    assert verts[0]["position_mm"] == [8.0, 10.0, 12.0] and verts[0]["voxel"] == [4.0, 5.0, 6.0]
    assert verts[1]["verse_id"] == 22 and verts[1]["confidence"] == 1.0
    assert [c["op"] for c in changes] == ["move", "rename", "add", "delete"]
    assert changes[0]["from_mm"] == [0.0, 0.0, 0.0] and changes[0]["to_mm"] == [2.0, 4.0, 6.0]
    assert VERTS[0]["label"] == "L1" and VERTS[0]["position_mm"] == [0.0, 0.0, 0.0]  # input untouched


@pytest.mark.parametrize("ops, message", [
    ([{"op": "move", "label": "L4", "slice": 1, "row": 1, "col": 1}], "no label L4"),
    ([{"op": "move", "label": "L1", "slice": 1, "row": 1, "col": 100}], "outside the image"),
    ([{"op": "move", "label": "L1", "slice": "nan", "row": 1, "col": 1}], "finite"),
    ([{"op": "rename", "label": "L1", "to": "L2"}], "already labeled"),
    ([{"op": "rename", "label": "L1", "to": "X9"}], "unknown vertebra label"),
    ([{"op": "add", "label": "L2", "slice": 1, "row": 1, "col": 1}], "already labeled"),
    ([{"op": "shift", "label": "L1"}], "unknown operation"),
    ("move", "must be a list"),
    ([{"op": "delete", "label": "L1"}] * 1001, "too many"),
])
def test_apply_ops_refuses_bad_operations(ops, message):
    with pytest.raises(ReviewRequestError, match=message):
        apply_ops(VERTS, ops, GRID)


# ----------------------------------------------------------------- session


@pytest.fixture
def nifti_scans(tmp_path):
    """Two NIfTI blob spines: a full one and one cut short (fewer labels)."""
    full, _ = blob_spine(n=5)
    short, _ = blob_spine(n=3, margin_mm=30.0)
    paths = [tmp_path / "full.nii.gz", tmp_path / "short.nii.gz"]
    save_nifti(full, paths[0])
    save_nifti(short, paths[1])
    return paths


def test_session_labels_orders_and_saves(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    session = session_for(nifti_scans, labels)
    assert sorted(p.name for p in labels.iterdir()) == ["full.json", "short.json"]  # labeled results written
    work = session.worklist()
    assert work["total"] == 2 and work["reviewed"] == 0
    # (the order of the worklist: test_a_scan_whose_count_is_in_doubt_comes_first_with_its_warnings_coded)
    meta = session.meta(0)
    doc = json.loads((labels / "full.json").read_text())
    label = meta["labels"][0]
    assert label["label"] == doc["vertebrae"][0]["label"]
    assert len(session.slice_bytes(0, meta["start_slice"])) == 2 * meta["shape"][1] * meta["shape"][2]
    with pytest.raises(ReviewRequestError, match="no slice"):
        session.slice_bytes(0, meta["shape"][0])
    with pytest.raises(ReviewRequestError, match="no scan 2"):
        session.meta(2)
    target = {"slice": label["slice"], "row": label["row"] + 10.0, "col": label["col"]}
    session.review(0, [{"op": "move", "label": label["label"], **target}])
    saved = json.loads((labels / "full.json").read_text())
    assert saved["review"]["status"] == "corrected" and saved["review"]["events"][0]["reviewer"] == "tester"
    assert saved["review"]["image"] == str(nifti_scans[0].resolve())
    moved = np.array(saved["vertebrae"][0]["position_mm"]) - np.array(doc["vertebrae"][0]["position_mm"])
    assert np.linalg.norm(moved) == pytest.approx(10.0 * meta["spacing_mm"][1], abs=0.02)  # 10 rows at 1 mm
    session.review(1, [])
    assert json.loads((labels / "short.json").read_text())["review"]["status"] == "accepted"
    assert session.worklist()["reviewed"] == 2


def test_existing_results_are_loaded_without_labeling(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    session_for(nifti_scans, labels).review(0, [])

    def no_model():
        raise AssertionError("the labeler must not be loaded when every result exists")

    scans, _, failures = prepare_scans(nifti_scans, ["full", "short"], labels, no_model)
    assert not failures and [s.doc.get("review", {}).get("status") for s in scans] == ["accepted", None]


def _rewrite(path, **fields):
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_a_scan_whose_count_is_in_doubt_comes_first_with_its_warnings_coded(nifti_scans, tmp_path):
    """Order: count warnings, then other warnings, then the lowest confidence; codes and concerns reach the viewer."""
    labels = tmp_path / "labels"
    session_for(nifti_scans, labels)
    _rewrite(labels / "full.json", warnings=["no anchor vertebra (S1) labeled"], warning_codes=["no-anchor"])
    _rewrite(labels / "short.json", warnings=["low confidence for L2", "slices offset"],
             warning_codes=["low-confidence", "sheared-grid"])
    session = session_for(nifti_scans, labels)
    names = [(e["name"], e["count_warned"], e["n_warnings"]) for e in session.worklist()["scans"]]
    assert names == [("full", True, 1), ("short", False, 2)]
    assert session.meta(1)["warnings"] == [
        {"code": "low-confidence", "concern": "detection", "text": "low confidence for L2"},
        {"code": "sheared-grid", "concern": "input", "text": "slices offset"},
    ]
    old = {k: v for k, v in json.loads((labels / "full.json").read_text()).items() if k != "warning_codes"}
    (labels / "full.json").write_text(json.dumps({**old, "warnings": ["an old warning"]}))  # written before codes
    session = session_for(nifti_scans, labels)
    assert [e["name"] for e in session.worklist()["scans"]] == ["short", "full"]  # then by warnings, confidence
    assert session.meta(0)["warnings"] == [{"code": "unspecified", "concern": "detection", "text": "an old warning"}]


def test_warning_codes_that_do_not_match_the_warnings_are_a_failure(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    session_for(nifti_scans, labels)
    _rewrite(labels / "short.json", warnings=["one", "two"], warning_codes=["no-anchor"])
    scans, _, failures = prepare_scans(nifti_scans, ["full", "short"], labels, dummy_labeler)
    assert [s.name for s in scans] == ["full"] and [p.name for p, _ in failures] == ["short.nii.gz"]
    assert "warning_codes" in failures[0][1]


def test_bad_inputs_and_results_are_failures(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "short.json").write_text("{not json")
    scans, _, failures = prepare_scans([nifti_scans[1], tmp_path / "missing.nii.gz"], ["short", "missing"], labels,
                                       dummy_labeler)
    assert not scans and [str(p.name) for p, _ in failures] == ["short.nii.gz", "missing.nii.gz"]
    assert "not valid JSON" in failures[0][1] and "no such file" in failures[1][1]


def test_dicom_review_writes_sr_and_gsps_that_read_back(tmp_path):
    from spinelabel.io.dicom_label_read import import_dicom_annotations

    volume, _ = blob_series_volume((96, 96, 9), (2.0, 2.0, 4.0))
    series = tmp_path / "series"
    write_dicom_series(volume, series)
    labels = tmp_path / "labels"
    session_for([series], labels)
    doc = json.loads((labels / "series.json").read_text())
    doc["vertebrae"][-1]["confidence"] = 0.3  # a name the model was unsure of, left as it is by the reviewer
    _rewrite(labels / "series.json", vertebrae=doc["vertebrae"], warnings=["no anchor"],
             warning_codes=["no-anchor"])  # and the count in doubt
    session = session_for([series], labels)
    meta = session.meta(0)
    first = meta["labels"][0]
    session.review(0, [{"op": "rename", "label": first["label"], "to": "T13"}])
    assert (labels / "series.sr.dcm").is_file() and (labels / "series.gsps.dcm").is_file()
    gsps = pydicom.dcmread(labels / "series.gsps.dcm")
    texts = [a.TextObjectSequence[0].UnformattedTextValue for a in gsps.GraphicAnnotationSequence]
    assert "T13" in texts and len(texts) == len(doc["vertebrae"])
    assert not [t for t in texts if t.endswith("?")]  # every name seen and confirmed: no doubt marks
    assert not [p for p in labels.iterdir() if p.name.startswith(".")]  # no temporary left behind
    saved = json.loads((labels / "series.json").read_text())
    imported = import_dicom_annotations([series, labels / "series.sr.dcm"])
    points = imported.annotations[0].points
    assert set(points) == {v["label"] for v in saved["vertebrae"]} and "T13" in points
    for v in saved["vertebrae"]:
        assert np.allclose(points[v["label"]], v["position_mm"], atol=0.05)


def test_check_order_names_the_labels_off_the_head_to_foot_run():
    from spinelabel.review.edits import ReviewOrderError, check_order

    def verts(zs):
        return [{"label": lv, "position_mm": [0.0, 0.0, z]} for lv, z in zip(("L1", "L2", "L3", "L4"), zs)]

    check_order(verts([0.0, -35.0, -70.0, -105.0]))
    check_order(verts([0.0])[:1])
    with pytest.raises(ReviewOrderError, match=r"out of order from head to foot: L2, L3 "):
        check_order(verts([0.0, -70.0, -35.0, -105.0]))  # L2 and L3 swapped
    with pytest.raises(ReviewOrderError, match=r": L4 "):
        check_order(verts([0.0, -35.0, -70.0, 20.0]))  # L4 renamed on a body above L1


def test_a_save_out_of_head_to_foot_order_needs_confirming(nifti_scans, tmp_path):
    """A rename that slipped (the second body named T12 below L-something) is refused until the reviewer confirms."""
    from spinelabel.review import ReviewOrderError

    labels = tmp_path / "labels"
    session = session_for(nifti_scans[:1], labels)
    before = (labels / "full.json").read_bytes()
    names = [lab["label"] for lab in session.meta(0)["labels"]]
    ops = [{"op": "rename", "label": names[-1], "to": "C1"}]  # the lowest body named the highest level
    with pytest.raises(ReviewOrderError, match=r"out of order from head to foot: C1"):
        session.review(0, ops)
    with pytest.raises(ReviewRequestError, match="keep_order must be true or false"):
        session.review(0, ops, keep_order="yes")
    assert (labels / "full.json").read_bytes() == before  # nothing saved
    with serving(session) as server:
        body = json.dumps({"ops": ops}).encode()
        ok = {"Content-Type": "application/json"}
        response, answer = _request(server, "POST", "/api/scans/0/review", body, ok)
        assert response.status == 422 and "out of order" in json.loads(answer)["error"]
        body = json.dumps({"ops": ops, "keep_order": True}).encode()
        assert _request(server, "POST", "/api/scans/0/review", body, ok)[0].status == 200
    saved = json.loads((labels / "full.json").read_text())
    assert saved["review"]["status"] == "corrected" and saved["vertebrae"][0]["label"] == "C1"
    assert saved["review"]["events"][-1]["order_confirmed"] is True  # the reviewer's confirmation is on record


# ----------------------------------------------------------------- training from reviewed results


def test_train_reads_only_reviewed_results(nifti_scans, tmp_path):
    labels = tmp_path / "labels"
    session = session_for(nifti_scans, labels)
    problems: list[str] = []
    with pytest.raises(InputError, match="no reviewed result"):
        load_annotations([labels], on_problem=problems.append)
    session.review(0, [])
    anns = load_annotations([labels], on_problem=problems.append)
    assert [a.scan_id for a in anns] == ["full"] and anns[0].image == nifti_scans[0].resolve()
    assert any("short.json: not reviewed yet" in p for p in problems)
    doc = json.loads((labels / "full.json").read_text())
    assert np.allclose(anns[0].points[doc["vertebrae"][0]["label"]], doc["vertebrae"][0]["position_mm"])
    with pytest.raises(InputError, match="not reviewed yet"):
        load_annotations([labels / "short.json"])


def test_training_scans_come_from_a_reviewed_dicom_folder(tmp_path):
    from spinelabel.training.data import load_training_scans

    volume, _ = blob_series_volume((96, 96, 9), (2.0, 2.0, 4.0))
    write_dicom_series(volume, tmp_path / "series")
    labels = tmp_path / "labels"
    session = session_for([tmp_path / "series"], labels)
    session.review(0, [{"op": "delete", "label": session.meta(0)["labels"][0]["label"]}])
    scans, points = load_training_scans([labels])  # the folder also holds the SR and GSPS
    saved = json.loads((labels / "series.json").read_text())
    assert [s.scan_id for s in scans] == ["series"] and list(points[0]) == [v["label"] for v in saved["vertebrae"]]


# ----------------------------------------------------------------- server


@pytest.fixture
def served(nifti_scans, tmp_path):
    with serving(session_for(nifti_scans[:1], tmp_path / "labels")) as server:
        yield server


def test_server_serves_page_assets_and_api(served):
    response, page = _request(served, "GET", "/")
    assert response.status == 200 and b"app.js" in page
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")
    response, js = _request(served, "GET", "/static/app.js")
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/javascript")
    assert json.loads(_request(served, "GET", "/api/worklist")[1])["total"] == 1
    meta = json.loads(_request(served, "GET", "/api/scans/0/meta")[1])
    response, data = _request(served, "GET", f"/api/scans/0/slices/{meta['start_slice']}")
    assert response.status == 200 and len(data) == 2 * meta["shape"][1] * meta["shape"][2]


@pytest.mark.parametrize("path, status", [
    ("/static/../session.py", 400), ("/static/%2e%2e/session.py", 400), ("/static/..%2fsession.py", 400),
    ("/static/session.py", 404), ("/etc/passwd", 404), ("/api/scans/1/meta", 400), ("/api/scans/0/slices/99999", 400),
    ("/api/scans/-1/meta", 404), ("/api/scans/0/review", 405),
])
def test_server_refuses_paths_outside_its_routes(served, path, status):
    response, body = _request(served, "GET", path)
    assert response.status == status and "error" in json.loads(body)


def test_server_refuses_bad_posts(served):
    ok = {"Content-Type": "application/json"}
    assert _request(served, "POST", "/api/scans/0/review", b'{"ops": []}', {"Content-Type": "text/plain"})[0].status == 415
    big = {**ok, "Content-Length": str(MAX_BODY_BYTES + 1)}
    assert _request(served, "POST", "/api/scans/0/review", b"{}", big)[0].status == 413
    evil = {**ok, "Origin": "http://evil.example"}
    assert _request(served, "POST", "/api/scans/0/review", b'{"ops": []}', evil)[0].status == 403
    assert _request(served, "POST", "/api/scans/0/review", b"[1", ok)[0].status == 400
    response, body = _request(served, "POST", "/api/scans/0/review", b'{"ops": [{"op": "delete", "label": "C1"}]}', ok)
    assert response.status == 400 and "no label C1" in json.loads(body)["error"]
    response, body = _request(served, "POST", "/api/scans/0/review", b'{"ops": []}', ok)
    assert response.status == 200 and json.loads(body)["status"] == "accepted"


def test_loopback_server_refuses_other_host_names(served):
    response, _ = _request(served, "GET", "/api/worklist", headers={"Host": "attacker.example:80"})
    assert response.status == 403


@pytest.mark.parametrize("host", [None, "127.0.0.1"])
def test_made_servers_require_a_token_on_loopback_too(host):
    """Every account of the machine can connect to the loopback address: the token printed at start is required."""
    servers = [make_server(ReviewSession([], "x"), host, 0) for _ in range(2)]
    try:
        tokens = [parse_qs(urlsplit(s.url).query)["token"][0] for s in servers]
        assert [s.token for s in servers] == tokens and all(len(t) >= 32 for t in tokens)
        assert tokens[0] != tokens[1] and servers[0].server_address[0] == "127.0.0.1"
    finally:
        for server in servers:
            server.server_close()


def test_token_is_required(nifti_scans, tmp_path):
    session = session_for(nifti_scans[:1], tmp_path / "labels")
    with serving(session, token="s3cret-token") as server:
        assert server.url.endswith("/?token=s3cret-token")
        assert _request(server, "GET", "/api/worklist", token=False)[0].status == 401
        assert _request(server, "GET", "/?token=wrong", token=False)[0].status == 401
        response, _ = _request(server, "GET", "/?token=s3cret-token", token=False)
        cookie = response.getheader("Set-Cookie")
        assert response.status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert cookie.startswith(f"spinelabel_token_{server.server_address[1]}=s3cret-token;")
        pair = cookie.split(";")[0]
        assert _request(server, "GET", "/api/worklist", headers={"Cookie": pair}, token=False)[0].status == 200
        # another program's cookie that the standard library's parser gives up on does not hide ours
        odd = f'other="a\\"b; {pair}; x=y'
        assert _request(server, "GET", "/api/worklist", headers={"Cookie": odd}, token=False)[0].status == 200


def test_two_reviews_on_one_machine_keep_their_own_cookies(nifti_scans, tmp_path):
    """Cookies are shared by every port of a host: a second review's token must not lock the first one's tab out."""
    with serving(session_for(nifti_scans[:1], tmp_path / "a"), token="first") as one, \
            serving(session_for(nifti_scans[:1], tmp_path / "b"), token="second") as two:
        pairs = [_request(s, "GET", f"/?token={s.token}", token=False)[0].getheader("Set-Cookie").split(";")[0]
                 for s in (one, two)]
        both = "; ".join(pairs)  # what a browser sends to either port once both tabs are open
        for server in (one, two):
            assert _request(server, "GET", "/api/worklist", headers={"Cookie": both}, token=False)[0].status == 200
        assert _request(one, "GET", "/api/worklist", headers={"Cookie": pairs[1]}, token=False)[0].status == 401


def test_cli_review_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["review", str(tmp_path / "missing.nii.gz"), "--labels", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "failed:" in err and "no scan to review" in err and "Traceback" not in err


def test_cli_review_reports_a_taken_port(nifti_scans, tmp_path, capsys):
    labels = tmp_path / "labels"
    session_for(nifti_scans[:1], labels)  # results exist: no model is loaded
    with serving(ReviewSession([], "x")) as other:
        port = other.server_address[1]
        code = main(["review", str(nifti_scans[0]), "--labels", str(labels), "--port", str(port), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot serve on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.parametrize("host", ["\u00e9..x", "\u00e9" + "a" * 70])
def test_cli_review_reports_a_host_name_the_socket_cannot_take(nifti_scans, tmp_path, capsys, host):
    """A name IDNA cannot encode made socketserver raise TypeError: a traceback, not one line."""
    labels = tmp_path / "labels"
    session_for(nifti_scans[:1], labels)
    code = main(["review", str(nifti_scans[0]), "--labels", str(labels), "--port", "0", "--host", host, "-q"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and f"cannot serve on {host}:0" in lines[0] and "Traceback" not in err, err


def test_a_reviewed_document_keeps_the_weights_checksum_for_its_sr():
    """The SR and GSPS of a review are written from the document: the checksum of the weights that labeled it goes on."""
    from spinelabel.review.edits import result_of

    doc = {"region": "lumbar", "model": {"name": "spinelabel-lumbar", "version": "1", "sha256": "ef" * 32},
           "vertebrae": [{"label": "L1", "position_mm": [0, 0, 0], "voxel": [1, 2, 3], "confidence": 0.9}],
           "warnings": [], "warning_codes": []}
    assert result_of(doc).model_sha256 == "ef" * 32
    del doc["model"]["sha256"]  # written before the checksum was recorded
    assert result_of(doc).model_sha256 == ""
