"""``spinelabel batch --url URL --patient-id ... --date ...`` (no manifest) against a real Orthanc: two series, one bad, resumed, stored back."""

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

#: The PatientID of this test's studies (its own Orthanc, so other tests' harvests never see them).
PATIENT = "BATCH-DICOMWEB"
#: Side (mm) of the bad series: a sagittal field of view too small for a spine (preprocessing.MIN_INPLANE_EXTENT_MM).
BAD_FOV_MM = 30


def _bad_volume():
    """A sagittal noise series of 30 x 30 mm: the labeler refuses it (field of view too small)."""
    from spinelabel.geometry import Volume, reorient

    noise = np.random.default_rng(0).random((5, BAD_FOV_MM, BAD_FOV_MM)).astype(np.float32) * 1000
    return reorient(Volume(noise, np.diag([4.0, 1.0, 1.0, 1.0])), ("P", "I", "L"))


@pytest.fixture(scope="module")
def orthanc_server(tmp_path_factory):
    """A private Orthanc for this module: its studies must not appear in the session server's harvests."""
    from spinelabel.testing.orthanc import orthanc_for_tests

    yield from orthanc_for_tests(tmp_path_factory.mktemp("orthanc-batch"))


@pytest.fixture(scope="module")
def stored(orthanc_server, tmp_path_factory):
    """A good (a shared lumbar scan as a 4 mm sagittal series) and a bad series, each its own study, in Orthanc."""
    from pydicom.uid import generate_uid

    from spinelabel.io import load_image
    from spinelabel.io.dicom_write import write_dicom_series
    from spinelabel.pacs import store
    from spinelabel.pacs_client import connect, pacs_config
    from spinelabel.testing.clinical import clinical_series_volume

    root = tmp_path_factory.mktemp("batch-dicomweb")
    client = connect(pacs_config(orthanc_server.dicomweb_url, orthanc_server.username, orthanc_server.password))
    uids = {}
    volumes = {"good": clinical_series_volume(load_image([SHARED / "myoseg-01" / "image.nii.gz"]).volume), "bad": _bad_volume()}
    for name, volume in volumes.items():
        study_uid, series_uid = generate_uid(), generate_uid()
        files = write_dicom_series(
            volume, root / name, series_description="T2 TSE SAG", patient_id=PATIENT, study_uid=study_uid, series_uid=series_uid,
        )
        store(client, files)
        uids[name] = (study_uid, series_uid)
    env = {"SPINELABEL_DICOMWEB_USER": orthanc_server.username, "SPINELABEL_DICOMWEB_PASSWORD": orthanc_server.password}
    return {"root": root, "client": client, "uids": uids, "env": env, "url": orthanc_server.dicomweb_url}


def test_batch_over_a_dicomweb_query_labels_lists_resumes_and_stores(stored):
    from spinelabel.archive import read_done, read_failed
    from spinelabel.pacs_query import find_series

    out = stored["root"] / "run"
    args = ["batch", "--url", stored["url"], "--patient-id", PATIENT, "--date", "19000101-", "-o", str(out), "-q", "--store"]
    (good_study, good), (_, bad) = stored["uids"]["good"], stored["uids"]["bad"]
    with mock.patch.dict(os.environ, stored["env"]):  # credentials from the environment, as in production
        assert main(args[:-1]) == 1  # labeled only, one item failed
        modalities = {s.modality for s in find_series(stored["client"], good_study, sagittal_only=False, annotations=True)}
        assert not {"SR", "PR"} & modalities
        assert main(args) == 1  # the same with --store: the series only labeled before is labeled and stored now
        assert read_done(out) == {good}
        failed = read_failed(out)
        assert set(failed) == {bad} and "field of view too small" in failed[bad][1]
        doc = json.loads((out / "labels" / f"{good}.json").read_text())
        assert {"L1", "L2", "L3", "L4", "L5"} <= {v["label"] for v in doc["vertebrae"]}
        assert (out / "labels" / f"{good}.sr.dcm").is_file() and (out / "labels" / f"{good}.gsps.dcm").is_file()
        modalities = {s.modality for s in find_series(stored["client"], good_study, sagittal_only=False, annotations=True)}
        assert {"SR", "PR"} <= modalities, "the SR and GSPS were stored back with the series"

        assert main([*args, "--skip-failed"]) == 1  # resumed: nothing left to do but the listed failure
    lines = (out / "done.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [good, good], "the stored series was not labeled again"


def test_a_query_that_finds_no_series_is_one_line(stored, capsys):
    with mock.patch.dict(os.environ, stored["env"]):
        assert main(["batch", "--url", stored["url"], "--patient-id", "NOBODY", "-o", str(stored["root"] / "x")]) == 1
    err = capsys.readouterr().err
    assert "no sagittal MR series" in err and "in the 0 MR studies" in err and err.count("\n") == 1, err


def test_limit_takes_one_study(stored):
    from spinelabel.archive import read_done, read_failed

    out = stored["root"] / "limited"
    with mock.patch.dict(os.environ, stored["env"]):
        main(["batch", "--url", stored["url"], "--patient-id", PATIENT, "--limit", "1", "-o", str(out), "-q"])
    assert len(read_done(out) | set(read_failed(out))) == 1
