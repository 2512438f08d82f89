"""Batches: worker processes, Dask, resumable manifests (spinelabel.batch, spinelabel.archive, `spinelabel batch`)."""

import json

import nibabel as nib
import numpy as np
import pytest

from spinelabel.archive import (
    DONE_NAME, FAILED_NAME, LABELS_DIR, make_runner, read_done, read_failed, read_manifest, run_archive,
)
from spinelabel.batch import LabelerSpec, Outcome, Task, run_here, run_processes, worker_task
from spinelabel.cli import main
from spinelabel.errors import InputError, ModelError
from spinelabel.testing.dummy import blob_spine, silent_model_dir

BLOB = LabelerSpec(factory="spinelabel.testing.dummy:blob_labeler")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Three labelable blob spines (NIfTI, two orientations) and one missing path."""
    from spinelabel.geometry import reorient

    root = tmp_path_factory.mktemp("scans")
    vol, _ = blob_spine()
    paths = []
    for name, codes in (("a", "RAS"), ("b", "PIL"), ("c", "RAS")):
        v = reorient(vol, codes)
        nib.save(nib.Nifti1Image(v.data, v.affine), str(root / f"{name}.nii.gz"))
        paths.append(root / f"{name}.nii.gz")
    return paths, root / "missing.nii.gz"


def _tasks(paths, out):
    return [Task(p.name, (str(p),), json=out / f"{p.name}.json") for p in paths]


def test_worker_processes_label_like_this_process_and_go_on_after_a_bad_item(scans, tmp_path):
    good, missing = scans
    here = {o.key: o for o in run_here(BLOB.load(), _tasks([*good, missing], tmp_path / "here"))}
    pooled = {o.key: o for o in run_processes(BLOB, _tasks([*good, missing], tmp_path / "pool"), jobs=2)}
    assert set(pooled) == set(here) == {p.name for p in [*good, missing]}
    assert "no such file" in pooled[missing.name].error and not (tmp_path / "pool" / f"{missing.name}.json").exists()
    for p in good:
        assert pooled[p.name].ok and pooled[p.name].n_vertebrae == 5
        a = json.loads((tmp_path / "here" / f"{p.name}.json").read_text())
        b = json.loads((tmp_path / "pool" / f"{p.name}.json").read_text())
        assert a["vertebrae"] == b["vertebrae"]


def test_a_worker_that_cannot_load_its_model_stops_the_batch(tmp_path):
    spec = LabelerSpec(model=str(tmp_path / "no-model"))
    outcome = worker_task(spec, Task("x", (str(tmp_path / "x.nii.gz"),)))
    assert outcome.fatal and "no model found" in outcome.error
    with pytest.raises(ModelError, match="could not load the model"):
        list(run_processes(spec, [Task("x", (str(tmp_path / "x.nii.gz"),))], jobs=2))


def test_an_unexpected_exception_fails_only_its_item(scans, tmp_path):
    class Broken:
        def label(self, volume):
            raise ZeroDivisionError("boom")

    from spinelabel.batch import run_task

    outcome = run_task(Broken(), Task("a", (str(scans[0][0]),), json=tmp_path / "a.json"))
    assert not outcome.ok and outcome.error == "unexpected error: ZeroDivisionError: boom"
    assert not (tmp_path / "a.json").exists()


def test_label_jobs_reports_failures_like_one_process(capsys, tmp_path):
    noise = tmp_path / "noise.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((30, 80, 80)).astype(np.float32), np.eye(4)), str(noise))
    model = silent_model_dir(tmp_path / "model")
    args = ["label", str(tmp_path / "missing.nii.gz"), str(noise), "--model", model, "--quiet"]
    for jobs in ("1", "2"):
        code = main([*args, "--output-dir", str(tmp_path / f"out{jobs}"), "--jobs", jobs])
        err = capsys.readouterr().err
        failed = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
        assert code == 1 and len(failed) == 2, err
        assert "missing.nii.gz" in failed[0] and "no vertebrae found" in failed[1]
        assert "Traceback" not in err and not list((tmp_path / f"out{jobs}").glob("*.json"))


# --- manifests -------------------------------------------------------------------------------------------


def test_csv_and_jsonl_manifests(tmp_path):
    (tmp_path / "m.csv").write_text("input,id,series\nscans/a.nii.gz,,\n/abs/b_dir,b2,1.2.3\n\n")
    items = read_manifest(tmp_path / "m.csv")
    assert [(i.id, i.input, i.series) for i in items] == [
        ("a", str(tmp_path / "scans" / "a.nii.gz"), None), ("b2", "/abs/b_dir", "1.2.3"),
    ]
    (tmp_path / "m.jsonl").write_text('{"input": "x/series 1"}\n\n{"input": "y.nii", "id": "y"}\n')
    assert [i.id for i in read_manifest(tmp_path / "m.jsonl")] == ["series_1", "y"]


def test_a_pacs_harvest_report_is_a_manifest_of_its_sagittal_series(tmp_path):
    report = {"out_dir": str(tmp_path), "failures": [], "studies": [
        {"study_uid": "1.2", "images": [{"series_uid": "1.2.3", "folder": "1.2/1.2.3"}, {"series_uid": "1.2.4", "folder": "1.2/1.2.4"}],
         "annotations": [{"series_uid": "1.2.9", "folder": "1.2/1.2.9"}]},
    ]}
    (tmp_path / "harvest.json").write_text(json.dumps(report))
    items = read_manifest(tmp_path / "harvest.json")
    assert [(i.id, i.input) for i in items] == [("1.2.3", str(tmp_path / "1.2/1.2.3")), ("1.2.4", str(tmp_path / "1.2/1.2.4"))]
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(InputError, match="harvest.json"):
        read_manifest(tmp_path / "other.json")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "path\na.nii.gz\n", "'input' column"),
        ("m.csv", "input\n", "lists no items"),
        ("m.csv", "input,id\na.nii.gz,x\nb.nii.gz,x\n", "appears twice"),
        ("m.csv", "input,id\na.nii.gz,../up\n", "must be letters"),
        ("m.jsonl", '{"input": "a"}\nnot json\n', "line 2: not valid JSON"),
        ("m.jsonl", '["a"]\n', "expected an object"),
    ],
)
def test_bad_manifests_are_one_line_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(tmp_path / name)


def test_a_torn_last_line_of_the_done_list_is_not_counted(tmp_path):
    (tmp_path / DONE_NAME).write_text("a\nb\nc")  # killed while writing "c\n"
    assert read_done(tmp_path) == {"a", "b"}


class _Kill(Exception):
    pass


def _manifest(tmp_path, good, missing):
    rows = [*(str(p) for p in good), str(good[0]), str(missing)]
    ids = ["a", "b", "c", "a-again", "bad"]
    path = tmp_path / "manifest.csv"
    path.write_text("id,input\n" + "".join(f"{i},{r}\n" for i, r in zip(ids, rows)))
    return path


def test_a_killed_run_resumes_without_redoing_finished_items(scans, tmp_path):
    good, missing = scans
    manifest, out = read_manifest(_manifest(tmp_path, good, missing)), tmp_path / "out"
    seen: list[list[str]] = []

    def runner(tasks):
        seen.append([t.key for t in tasks])
        return run_here(BLOB.load(), tasks)

    def kill_after_two(_outcome, count=[0]):
        count[0] += 1
        if count[0] == 2:
            raise _Kill

    with pytest.raises(_Kill):
        run_archive(manifest, out, runner, progress=kill_after_two)
    assert read_done(out) == {"a", "b"}
    run = run_archive(manifest, out, runner)
    assert seen[1] == ["c", "a-again", "bad"]  # a and b are not labeled again
    assert (run.done_before, run.labeled, run.attempted, run.total, list(run.failed)) == (2, 2, 3, 5, ["bad"])
    assert read_done(out) == {"a", "b", "c", "a-again"}
    assert sorted(p.name for p in (out / LABELS_DIR).iterdir()) == ["a-again.json", "a.json", "b.json", "c.json"]
    failed = read_failed(out)
    assert list(failed) == ["bad"] and failed["bad"][0] == str(missing) and "no such file" in failed["bad"][1]
    run_archive(manifest, out, runner, skip_failed=True)
    assert seen[2] == []
    run_archive(manifest, out, runner)
    assert seen[3] == ["bad"]  # failures are retried by default


def test_batch_on_a_local_dask_cluster(scans, tmp_path):
    distributed = pytest.importorskip("distributed")
    good, missing = scans
    path, out = _manifest(tmp_path, good, missing), tmp_path / "out"
    manifest = read_manifest(path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            run = run_archive(manifest, out, make_runner(BLOB, client=client))
            assert (run.labeled, list(run.failed)) == (4, ["bad"])
            again = run_archive(manifest, out, make_runner(BLOB, client=client))
            assert (again.done_before, again.labeled, list(again.failed)) == (4, 0, ["bad"])
        doc = json.loads((out / LABELS_DIR / "c.json").read_text())
        assert len(doc["vertebrae"]) == 5
        # the command line, pointed at the same cluster: a model that finds nothing fails every item, listed
        model = silent_model_dir(tmp_path / "model")
        code = main(["batch", str(path), "-o", str(tmp_path / "cli"), "--model", model, "--scheduler", cluster.scheduler_address, "-q"])
    failed = read_failed(tmp_path / "cli")
    assert code == 1 and len(failed) == 5 and "no vertebrae found" in failed["a"][1]
    assert (tmp_path / "cli" / FAILED_NAME).is_file() and read_done(tmp_path / "cli") == set()


def test_batch_command_in_worker_processes(capsys, scans, tmp_path):
    good, missing = scans
    manifest = _manifest(tmp_path, good, missing)
    model = silent_model_dir(tmp_path / "model")
    code = main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--model", model, "--jobs", "2"])
    captured = capsys.readouterr()
    assert code == 1 and "0 of 5 done" in captured.out
    failed = [ln for ln in captured.err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 5 and failed[1].startswith(f"failed: a-again: {good[0]}: no vertebrae found")


def test_outcome_ok():
    assert Outcome("a").ok and not Outcome("a", "bad").ok


def test_batch_command_refuses_a_bad_manifest_in_one_line(capsys, tmp_path):
    (tmp_path / "m.csv").write_text("path\nx.nii.gz\n")
    for manifest, fragment in ((tmp_path / "nope.csv", "cannot read manifest"), (tmp_path / "m.csv", "'input' column")):
        code = main(["batch", str(manifest), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and err.startswith("spinelabel: error: ") and fragment in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("query, expected", [
    (None, {"modality": "MR"}),
    ("StudyDate=20260101-20261231&Modality=MR", {"modality": "MR", "study_date": "20260101-20261231"}),
    ("PatientID=P1&StudyInstanceUID=1.2&StudyInstanceUID=1.3", {"modality": "MR", "patient_id": "P1", "study_uids": ["1.2", "1.3"]}),
])
def test_a_dicomweb_query_becomes_study_filters(query, expected):
    from spinelabel.archive_dicomweb import parse_query

    assert parse_query(query) == expected


@pytest.mark.parametrize("query, message", [
    ("Colour=blue", "unknown key 'Colour'"),
    ("StudyDate", "malformed --query"),
    ("StudyDate=2026&StudyDate=2025", "StudyDate given twice"),
])
def test_a_bad_dicomweb_query_is_one_line(query, message):
    from spinelabel.archive_dicomweb import parse_query

    with pytest.raises(InputError, match=message):
        parse_query(query)


def test_batch_takes_a_manifest_or_a_dicomweb_server(capsys, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("input\na.nii.gz\n")
    for args, message in [
        ([], "give a manifest file or --dicomweb URL"),
        ([str(manifest), "--dicomweb", "http://pacs/dicom-web"], "not both"),
        ([str(manifest), "--query", "PatientID=1"], "--query and --store need --dicomweb URL"),
    ]:
        assert main(["batch", *args, "-o", str(tmp_path / "out")]) == 1
        assert message in capsys.readouterr().err


def test_a_dicomweb_task_can_be_sent_to_a_worker_process():
    import pickle

    from spinelabel.batch import DicomwebSeries
    from spinelabel.pacs_client import pacs_config

    source = DicomwebSeries(pacs_config("http://pacs:8042/dicom-web", "ann", "s3cret", environ={}), "1.2", "1.2.3", store=True)
    task = Task("1.2.3", ("dicomweb:1.2/1.2.3",), None, dicomweb=source)
    assert pickle.loads(pickle.dumps(task)) == task
    assert "s3cret" not in repr(task)
