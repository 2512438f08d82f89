"""PACS round trip against a real Orthanc: STOW clinical studies, harvest, import, check, train, label, store.

Five shared lumbar scans from the *training* part of benchmarks/lumbar_split.json
become clinical-style studies (4 mm sagittal series, labels as GSPS text
objects), four of them with one planted fault each. The cleaning report must
find exactly those faults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from spinelabel.cli import main

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "lumbar-mr"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/lumbar-mr not present"),
]

#: case -> planted fault (None: clean; that study is also labeled and stored back).
PLANTED = {
    "myoseg-01": None,
    "myoseg-02": "missing_level",
    "myoseg-03": "duplicate",
    "myoseg-04": "shifted",
    "myoseg-05": "far_from_vertebra",
}
CLEAN_CASE = "myoseg-01"
#: GSPS points lie on the nearest 4 mm slice: at most 2 mm off the true centre, across the body.
GSPS_TOLERANCE_MM = 2.0 + 1e-3


def _conn(server) -> list[str]:
    return ["--url", server.dicomweb_url, "--user", server.username, "--password", server.password]


@pytest.fixture(scope="module")
def world(orthanc_server, tmp_path_factory):
    """The studies written, stored in Orthanc, and harvested with `spinelabel pacs harvest`."""
    from spinelabel.annotations import load_annotations
    from spinelabel.io import load_image
    from spinelabel.pacs import store
    from spinelabel.pacs_client import connect, pacs_config
    from spinelabel.testing.clinical import clinical_series_volume, plant_fault, write_clinical_study

    validation = set(json.loads((REPO / "benchmarks" / "lumbar_split.json").read_text())["validation"])
    assert not validation & set(PLANTED), "never use validation scans here"
    root = tmp_path_factory.mktemp("pacs")
    client = connect(pacs_config(orthanc_server.dicomweb_url, orthanc_server.username, orthanc_server.password))
    studies = {}
    for case, fault in PLANTED.items():
        ann = load_annotations([SHARED / case / "centroids.json"])[0]
        volume = clinical_series_volume(load_image([ann.image]).volume)
        labels = list(ann.points.items()) if fault is None else plant_fault(dict(ann.points), fault)
        study = write_clinical_study(volume, labels, root / "written" / case, patient_id=case)
        store(client, [*study.image_files, study.gsps_file])
        studies[case] = (study, ann)
    harvest_dir = root / "harvest"
    env = {"SPINELABEL_DICOMWEB_URL": orthanc_server.dicomweb_url, "SPINELABEL_DICOMWEB_USER": orthanc_server.username,
           "SPINELABEL_DICOMWEB_PASSWORD": orthanc_server.password}
    with mock.patch.dict(os.environ, env):  # the connection from the environment, as in production
        assert main(["pacs", "harvest", str(harvest_dir), "-q"]) == 0
    return {"root": root, "harvest": harvest_dir, "studies": studies, "client": client}


def test_harvest_fetches_each_sagittal_series_with_its_gsps(world):
    manifest = json.loads((world["harvest"] / "harvest.json").read_text())
    assert manifest["failures"] == []
    by_study = {s["study_uid"]: s for s in manifest["studies"]}
    for case, (study, _) in world["studies"].items():
        entry = by_study[study.study_uid]
        assert [s["series_uid"] for s in entry["images"]] == [study.series_uid], case
        assert len(entry["annotations"]) == 1 and entry["annotations"][0]["modality"] == "PR"
        assert entry["images"][0]["files"] == len(study.image_files)
    assert not list(world["harvest"].rglob("*.partial")), "no half-retrieved series left behind"


def test_import_of_the_harvest_gives_one_scan_per_study(world):
    from spinelabel.annotations import load_annotations

    labels = world["root"] / "labels.csv"
    assert main(["annotations", "import", str(world["harvest"]), "-o", str(labels), "-q"]) == 0
    scans = {_case_of(a.scan_id): a for a in load_annotations([labels])}
    assert set(scans) == set(PLANTED)
    assert all(a.series_uid == world["studies"][case][0].series_uid for case, a in scans.items())


def _case_of(scan_id: str) -> str:
    return scan_id.rsplit("_", 1)[0]  # "<PatientID>_<SeriesNumber>"; PatientID is the case


def test_check_finds_exactly_the_planted_faults(world):
    """Checked straight from the harvested DICOM (an import CSV keeps only the first of duplicated labels)."""
    from spinelabel.annotations import load_annotations

    clean, report = world["root"] / "clean.csv", world["root"] / "report.json"
    assert main(["annotations", "check", str(world["harvest"]), "-o", str(clean), "--report", str(report), "-q"]) == 0
    doc = json.loads(report.read_text())
    found = {(_case_of(f["scan"]), f["kind"]) for f in doc["findings"]}
    assert found == {(case, fault) for case, fault in PLANTED.items() if fault}, doc["findings"]
    assert len(doc["findings"]) == 4
    assert all(s["checks"] == ["geometry", "image", "detector"] for s in doc["scans"])

    cleaned = {_case_of(a.scan_id): a for a in load_annotations([clean])}
    assert "myoseg-04" not in cleaned  # shifted: dropped
    assert list(cleaned["myoseg-03"].points) == ["L1", "L2", "L3", "L4", "L5"]  # duplicate: first point kept
    assert list(cleaned["myoseg-02"].points) == ["L4", "L5"]  # missing L3: longest run (caudal on a tie)
    assert "L3" not in cleaned["myoseg-05"].points  # the label on the disc is gone
    truth = world["studies"][CLEAN_CASE][1].points
    got = cleaned[CLEAN_CASE].points
    assert list(got) == list(truth)
    for level in truth:
        assert np.linalg.norm(got[level] - truth[level]) <= GSPS_TOLERANCE_MM


def test_train_tiny_model_on_cleaned_harvest(world, capsys):
    # 21 steps: OneCycleLR (training.train) fails with <= 20 steps (a zero-length warm-up phase)
    model = world["root"] / "model"
    code = main(["train", str(world["harvest"]), "--out", str(model), "--steps", "21", "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    config = json.loads((model / "config.json").read_text())
    assert (model / "weights.pt").is_file()
    trained = {_case_of(s) for s in config["training"]["scans"]}
    assert trained == set(PLANTED) - {"myoseg-04"}  # the shifted scan was not trained on


def test_pacs_label_stores_sr_that_reads_back(world, orthanc_server, tmp_path):
    from spinelabel.io.dicom_label_read import import_dicom_annotations
    from spinelabel.pacs import retrieve_series

    study = world["studies"][CLEAN_CASE][0]
    out = tmp_path / "out"
    assert main(["pacs", "label", study.study_uid, "--store", "--output-dir", str(out), *_conn(orthanc_server)]) == 0
    result = json.loads((out / f"{study.series_uid}.json").read_text())
    expected = {v["label"]: np.array(v["position_mm"]) for v in result["vertebrae"]}
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(expected)

    client = world["client"]
    prs = client.search_for_series(study.study_uid, search_filters={"Modality": "PR"})
    # labeled and stored again: the same result has the same UIDs, which Orthanc confirms as stored, adding nothing
    assert main(["pacs", "label", study.study_uid, "--store", "--output-dir", str(tmp_path / "again"), *_conn(orthanc_server)]) == 0
    assert len(client.search_for_series(study.study_uid, search_filters={"Modality": "PR"})) == len(prs)
    srs = client.search_for_series(study.study_uid, search_filters={"Modality": "SR"})
    assert len(srs) == 1
    sr_series = srs[0]["0020000E"]["Value"][0]
    retrieve_series(client, study.study_uid, sr_series, tmp_path / "sr")
    images = next(p for p in (world["harvest"]).rglob("*") if p.is_dir() and p.name == study.series_uid)
    back = import_dicom_annotations([images, tmp_path / "sr"], own_outputs=True)  # our own SR, read back
    assert len(back.annotations) == 1, back.problems
    points = back.annotations[0].points
    assert set(points) == set(expected)
    for level, p in expected.items():
        assert np.linalg.norm(points[level] - p) <= 0.5, level
