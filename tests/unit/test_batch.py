"""Batches: worker processes, Dask, resumable manifests (spinelabel.batch, spinelabel.archive, `spinelabel batch`)."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinelabel.archive import (
    DONE_NAME, FAILED_NAME, LABELS_DIR, WORKLIST_NAME, ManifestItem, make_runner, read_done, read_failed, read_manifest,
    run_archive, worklist_row, write_worklist,
)
from spinelabel.batch import (
    WORKER_PEAK_BYTES, LabelerSpec, Outcome, Task, check_jobs, memory_bytes, run_here, run_processes, worker_task,
)
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


def test_more_jobs_than_memory_holds_are_refused():
    check_jobs(4, memory=4 * WORKER_PEAK_BYTES)
    check_jobs(1, memory=WORKER_PEAK_BYTES // 2)  # this process alone: no worker to refuse
    with pytest.raises(InputError, match=r"--jobs 5: .* use at most --jobs 4"):
        check_jobs(5, memory=4 * WORKER_PEAK_BYTES + WORKER_PEAK_BYTES // 2)
    if __import__("os").name == "posix":  # this machine's memory is known, and more than one worker's
        assert memory_bytes() > WORKER_PEAK_BYTES


@pytest.mark.parametrize("command", ["label", "batch"])
def test_cli_refuses_too_many_jobs_before_any_output(command, scans, tmp_path, monkeypatch, capsys):
    from spinelabel import batch

    monkeypatch.setattr(batch, "memory_bytes", lambda: 2 * WORKER_PEAK_BYTES)
    paths, _ = scans
    out = tmp_path / "out"
    if command == "label":
        args = ["label", *map(str, paths), "--output-dir", str(out), "--jobs", "3"]
    else:
        (tmp_path / "m.csv").write_text("input\n" + "\n".join(map(str, paths)) + "\n")
        args = ["batch", str(tmp_path / "m.csv"), "-o", str(out), "--jobs", "3"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "use at most --jobs 2" in err and len(err.strip().splitlines()) == 1 and not out.exists()


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


def test_manifest_default_ids_tell_one_folder_per_scan_apart(tmp_path):
    """``a/image.nii.gz``, ``b/image.nii.gz`` (the shared data's layout) without ids: ``a_image``, ``b_image``."""
    (tmp_path / "m.csv").write_text("input\na/image.nii.gz\nb/image.nii.gz\nc/other.nii.gz\nd/脊椎.nii.gz\n")
    assert [i.id for i in read_manifest(tmp_path / "m.csv")] == ["a_image", "b_image", "other", "item-4"]
    (tmp_path / "given.csv").write_text("input,id\na/image.nii.gz,x\nb/image.nii.gz,x\n")
    with pytest.raises(InputError, match="id 'x' appears twice"):  # ids the user gave are kept as given
        read_manifest(tmp_path / "given.csv")


def test_a_semicolon_separated_manifest_is_read(tmp_path):
    (tmp_path / "m.csv").write_text("id;input;series\nk1;a.nii.gz;\nk2;b/;1.2.3\n")
    items = read_manifest(tmp_path / "m.csv")
    assert [(i.id, Path(i.input).name, i.series) for i in items] == [("k1", "a.nii.gz", None), ("k2", "b", "1.2.3")]


def test_a_torn_last_line_of_the_done_list_is_not_counted(tmp_path):
    (tmp_path / DONE_NAME).write_text("a\nb\nc")  # killed while writing "c\n"
    assert read_done(tmp_path) == {"a", "b"}


def test_an_item_whose_input_changed_is_labeled_again(scans, tmp_path):
    """An id pointed at another scan since it was labeled: its old result is not kept for the new input."""
    good, _ = scans
    out, labeled = tmp_path / "out", []

    def runner(tasks):
        labeled.append([(t.key, t.inputs[0]) for t in tasks])
        return run_here(BLOB.load(), tasks)

    first = tmp_path / "m1.csv"
    first.write_text(f"id,input\np1,{good[0]}\np2,{good[1]}\n")
    run_archive(read_manifest(first), out, runner)
    second = tmp_path / "m2.csv"
    second.write_text(f"id,input\np1,{good[2]}\np2,{good[1]}\n")
    run_archive(read_manifest(second), out, runner)
    assert labeled[1] == [("p1", str(good[2]))]  # p2 unchanged: skipped
    run_archive(read_manifest(second), out, runner)
    assert labeled[2] == []
    (out / DONE_NAME).write_text("p1\np2\n")  # a done list of an older run, without inputs: trusted as it is
    run_archive(read_manifest(first), out, runner)
    assert labeled[3] == []


def test_a_run_that_stores_does_not_skip_items_an_earlier_run_only_labeled(tmp_path):
    """``batch --study X`` then ``batch --study X --store`` said "labeled 0 items" and stored nothing: done.txt did not
    tell a stored item from a labeled one. A stored item also counts as done for a run that only labels."""
    from spinelabel.archive import STORED_SUFFIX, ManifestItem

    out, labeled = tmp_path / "out", []

    def runner(tasks):
        labeled.append([t.key for t in tasks])
        return iter([Outcome(t.key, None, 5) for t in tasks])

    def items(store: bool) -> list[ManifestItem]:
        return [ManifestItem(uid, f"dicomweb:1.2/{uid}" + (STORED_SUFFIX if store else "")) for uid in ("1.2.3", "1.2.4")]

    run_archive(items(False), out, runner)
    run_archive(items(True), out, runner)
    run_archive(items(True), out, runner)
    run_archive(items(False), out, runner)
    assert labeled == [["1.2.3", "1.2.4"], ["1.2.3", "1.2.4"], [], []]


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


class _DoubtsPil:
    """The blob labeler, with a ``no-anchor`` warning on images stored in PIL order."""

    def __init__(self):
        self.inner = BLOB.load()

    def label(self, volume):
        from dataclasses import replace

        from spinelabel.warning_codes import LabelWarning

        result = self.inner.label(volume)
        extra = [LabelWarning("no-anchor", "no anchor")] if "".join(volume.axcodes) == "PIL" else []
        return replace(result, warnings=[*result.warnings, *extra])


def test_a_run_counts_the_results_whose_count_a_warning_doubts(scans, tmp_path):
    from spinelabel.cli import _doubt_line

    good, missing = scans
    out = tmp_path / "out"
    run = run_archive(read_manifest(_manifest(tmp_path, good, missing)), out, lambda tasks: run_here(_DoubtsPil(), tasks))
    assert (run.labeled, run.count_in_doubt) == (4, 1)  # b is the PIL one
    doubted = [p.stem for p in (out / LABELS_DIR).glob("*.json") if "no-anchor" in json.loads(p.read_text())["warning_codes"]]
    assert doubted == ["b"]
    assert _doubt_line(run.count_in_doubt, run.labeled).startswith("1 of the 4 labeled carry a warning that the level count")
    rows = list(csv.DictReader((out / WORKLIST_NAME).open()))
    assert [(r["id"], r["check"]) for r in rows][0] == ("b", "count")  # what to check first, first
    assert sorted(r["id"] for r in rows) == ["a", "a-again", "b", "c"]  # every item done; "bad" failed
    assert rows[0]["warning_codes"].split() == ["low-confidence", "no-anchor"] and rows[0]["labels"].split()[-1] == "S1"
    assert {r["check"] for r in rows[1:]} == {"names"}  # the blob labeler's names are below 0.5
    (out / LABELS_DIR / "c.json").write_text("{broken")
    write_worklist(out, read_manifest(tmp_path / "manifest.csv")[:3])
    rows = list(csv.DictReader((out / WORKLIST_NAME).open()))
    assert [(r["id"], r["check"]) for r in rows] == [("b", "count"), ("a", "names"), ("c", "result unreadable")]


def test_a_vertebra_left_without_a_name_asks_for_a_look_after_doubtful_names():
    item = ManifestItem("x", "/data/x")
    sure = [{"label": lv, "confidence": 0.9} for lv in ("C2", "C3", "C7")]

    def check(codes, vertebrae=sure):
        return worklist_row(item, {"vertebrae": vertebrae, "warnings": [f"w{k}" for k in range(len(codes))],
                                   "warning_codes": codes})["check"]

    assert check(["missed-at-end"]) == check(["missed-level"]) == "missed"
    assert check(["missed-at-end", "no-anchor"]) == "count"
    assert check(["missed-at-end"], [*sure, {"label": "T1", "confidence": 0.3}]) == "names"
    assert check(["sheared-grid"]) == ""


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
    assert "labeled 0 items; 0 of 5" in captured.out  # no rate of nothing ("1676.8 items/min")
    failed = [ln for ln in captured.err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 5 and failed[1].startswith(f"failed: a-again: {good[0]}: no vertebrae found")


@pytest.mark.parametrize("stack, reason", [(None, "name one with --stack"), ("W", "no vertebrae found")])
def test_batch_command_reads_the_stack_named_for_every_item(capsys, tmp_path, write_two_stacks, stack, reason):
    """``spinelabel batch --stack`` reaches each manifest item: a two-stack series is refused as such without it,
    and read (the silent network then finds nothing) with ``W``."""
    write_two_stacks(tmp_path / "dixon")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"id,input\ndixon,{tmp_path / 'dixon'}\n")
    model = silent_model_dir(tmp_path / "model")
    args = ["batch", str(manifest), "-o", str(tmp_path / "out"), "--model", model, "-q"]
    code = main(args + (["--stack", stack] if stack else []))
    err = capsys.readouterr().err
    (failed,) = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert code == 1 and reason in failed and "Traceback" not in err


def test_outcome_ok():
    assert Outcome("a").ok and not Outcome("a", "bad").ok


def test_batch_command_refuses_a_bad_manifest_in_one_line(capsys, tmp_path):
    (tmp_path / "m.csv").write_text("path\nx.nii.gz\n")
    for manifest, fragment in ((tmp_path / "nope.csv", "cannot read manifest"), (tmp_path / "m.csv", "'input' column")):
        code = main(["batch", str(manifest), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and err.startswith("spinelabel: error: ") and fragment in err, err
    assert not (tmp_path / "out").exists()


def test_batch_takes_a_manifest_or_a_dicomweb_server(capsys, tmp_path, monkeypatch):
    from spinelabel.pacs_client import ENV_URL

    monkeypatch.delenv(ENV_URL, raising=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text("input\na.nii.gz\n")
    for args, message in [
        ([], f"give a manifest file, or a DICOMweb server (--url or {ENV_URL})"),
        ([str(manifest), "--url", "http://pacs/dicom-web"], "--url is an option of a DICOMweb batch"),
        ([str(manifest), "--date", "20260101-"], "--date is an option of a DICOMweb batch"),
        ([str(manifest), "--limit", "3"], "--limit is an option of a DICOMweb batch"),
        ([str(manifest), "--insecure"], "--insecure is an option of a DICOMweb batch"),
        ([str(manifest), "--store"], "--store is an option of a DICOMweb batch"),
    ]:
        assert main(["batch", *args, "-o", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(ENV_URL, "http://pacs/dicom-web")  # a server in the environment does not contradict a manifest
    manifest.write_text("path\na.nii.gz\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out")]) == 1
    assert "'input' column" in capsys.readouterr().err  # the manifest was read


class _StowClient:
    """A DICOMweb client whose STOW-RS answers like a server that stores (or, ``fail``: refuses) every object."""

    base_url = "http://pacs.example/dicom-web"

    def __init__(self, fail: bool = False):
        self.fail, self.stored = fail, []

    def store_instances(self, datasets):
        self.stored += [str(ds.Modality) for ds in datasets]
        if self.fail:
            return {"FailedSOPSequence": [{"FailureReason": 272}]}
        return {"ReferencedSOPSequence": [{"ReferencedSOPInstanceUID": str(ds.SOPInstanceUID)} for ds in datasets]}


@pytest.mark.parametrize("fail", [False, True])
def test_a_dicomweb_item_is_retrieved_labeled_and_stored_through_pacs_label_series(tmp_path, monkeypatch, fail):
    """The batch item takes ``pacs.label_series``: outputs beside the JSON, a failed store fails the item."""
    from spinelabel import pacs, pacs_client
    from spinelabel.batch import DicomwebSeries, run_task
    from spinelabel.geometry import reorient
    from spinelabel.io.dicom_write import write_dicom_series
    from spinelabel.pacs_client import pacs_config

    client = _StowClient(fail)
    retrieved = []

    def retrieve(client_, study_uid, series_uid, folder, **kwargs):
        retrieved.append((client_, study_uid, series_uid))
        return write_dicom_series(reorient(blob_spine()[0], "PIL"), folder)

    monkeypatch.setattr(pacs, "retrieve_series", retrieve)
    monkeypatch.setattr(pacs_client, "connect", lambda config: client)
    source = DicomwebSeries(pacs_config("http://pacs.example/dicom-web", environ={}), "1.2", "1.2.3", store=True)
    labels = tmp_path / LABELS_DIR
    labels.mkdir()  # as archive.prepare_output does
    outcome = run_task(BLOB.load(), Task("1.2.3", ("dicomweb:1.2/1.2.3",), None, labels / "1.2.3.json", dicomweb=source))
    assert retrieved == [(client, "1.2", "1.2.3")]
    assert sorted(p.name for p in labels.iterdir()) == ["1.2.3.gsps.dcm", "1.2.3.json", "1.2.3.sr.dcm"]
    assert sorted(client.stored) == (["PR", "SR"] if not fail else ["SR"])  # a refused SR stops before the GSPS
    if fail:
        assert not outcome.ok and outcome.error.startswith(f"labeled ({labels / '1.2.3.json'}) but not stored on the server")
        assert "failure reason 272" in outcome.error
    else:
        assert outcome.ok and outcome.n_vertebrae == 5


@pytest.mark.parametrize("stack", [None, "W"])
def test_a_dicomweb_item_reads_the_stack_of_its_task(tmp_path, monkeypatch, write_two_stacks, stack):
    """``Task.stack`` reaches the retrieved series of a DICOMweb item (it was dropped before ``pacs.label_series``)."""
    from spinelabel import pacs, pacs_client
    from spinelabel.batch import DicomwebSeries, run_task
    from spinelabel.pacs_client import pacs_config

    monkeypatch.setattr(pacs, "retrieve_series", lambda client, study, series, folder, **kw: write_two_stacks(folder))
    monkeypatch.setattr(pacs_client, "connect", lambda config: _StowClient(False))
    source = DicomwebSeries(pacs_config("http://pacs.example/dicom-web", environ={}), "1.2", "1.2.3")
    json_path = tmp_path / "1.2.3.json"
    outcome = run_task(BLOB.load(), Task("1.2.3", ("dicomweb:1.2/1.2.3",), None, json_path, dicomweb=source, stack=stack))
    if stack is None:
        assert "name one with --stack" in outcome.error and not json_path.exists()
    else:  # the water stack alone was read, and the result says so
        assert outcome.ok, outcome.error
        doc = json.loads(json_path.read_text())
        assert "stack-chosen" in doc["warning_codes"] and "(5 files in" in doc["input"]
        assert any("DERIVED\\PRIMARY\\W was read (--stack W)" in w for w in doc["warnings"]), doc["warnings"]


def test_a_dicomweb_task_can_be_sent_to_a_worker_process():
    import pickle

    from spinelabel.batch import DicomwebSeries
    from spinelabel.pacs_client import pacs_config

    source = DicomwebSeries(pacs_config("http://pacs:8042/dicom-web", "ann", "s3cret", environ={}), "1.2", "1.2.3", store=True)
    task = Task("1.2.3", ("dicomweb:1.2/1.2.3",), None, dicomweb=source)
    assert pickle.loads(pickle.dumps(task)) == task
    assert "s3cret" not in repr(task)


def test_failed_csv_cells_are_text_to_a_spreadsheet_and_read_back_unchanged(tmp_path):
    import csv

    from spinelabel.archive import _write_failed

    failed = {"a": ("=HYPERLINK(\"http://x\")", "=1+2 cannot read"), "b": ("+b.nii.gz", "@SUM(A1)"), "c": ("c.nii", "-1 slices")}
    _write_failed(tmp_path, failed)
    with open(tmp_path / FAILED_NAME, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "input", "reason"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows[1:] for cell in row)
    assert rows[1] == ["a", "'=HYPERLINK(\"http://x\")", "'=1+2 cannot read"]
    assert read_failed(tmp_path) == failed


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGKILL"])
def test_sigterm_stops_a_pooled_batch_and_its_workers(scans, tmp_path, signame):
    """``kill`` (SIGTERM) on ``batch --jobs 2``: exit 143, the worker processes end with it, no temporary files.
    ``kill -9`` (no clean-up in the batch): the workers, each holding a model, leave within seconds too (they
    stayed, idle, until killed by hand)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    paths, _ = scans
    manifest = tmp_path / "manifest.csv"  # far more items than the run gets to before it is stopped
    manifest.write_text("id,input\n" + "".join(f"s{k},{paths[k % 2]}\n" for k in range(2000)))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "spinelabel.cli", "batch", str(manifest), "-o", str(out), "--jobs", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # until the worker processes exist
        time.sleep(2.0)
        workers = _children(proc.pid)
        assert proc.poll() is None and len(workers) >= 2, "the batch ended or never started its workers"
        proc.send_signal(getattr(signal, signame))
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if os.path.exists(f"/proc/{w}")], "worker processes outlived the batch"
        if signame == "SIGKILL":
            return
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "spinelabel: terminated", err
        from spinelabel.archive import LOCK_NAME

        assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != LOCK_NAME]  # nothing temporary
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the outcome, leave no process of the test behind
        except ProcessLookupError:
            pass
        proc.communicate()


def _interruptible() -> None:
    """In the child before exec: Ctrl+C handled as by default, whatever the test runner inherited. A runner started
    in the background by a non-interactive shell (``cmd &``) ignores SIGINT, and an ignored signal stays ignored
    across exec, so the batch under test never saw the Ctrl+C this test sends (all four cases hung so once)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("after_s", [0.0, 0.5, 1.0, 2.0])  # while the workers load their model, and after
def test_a_double_ctrl_c_to_the_process_group_ends_a_pooled_batch(scans, tmp_path, after_s):
    """Ctrl+C reaches the whole process group; a second one 20 ms later (an impatient user, ``timeout -s INT``)
    left ``--jobs 2`` printing "interrupted" and waiting forever on its workers (4 of 13 runs): the workers took
    the first in their loop and died, the batch started a new pool, and the second cut its shutdown short."""
    import os
    import signal
    import subprocess
    import sys
    import time

    paths, _ = scans
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,input\n" + "".join(f"s{k},{paths[k % 2]}\n" for k in range(2000)))
    proc = subprocess.Popen([sys.executable, "-m", "spinelabel.cli", "batch", str(manifest), "-o", str(tmp_path / "run"),
                             "--jobs", "2", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_interruptible)
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(after_s)
        workers = _children(proc.pid)
        assert proc.poll() is None and len(workers) >= 2, "the batch ended or never started its workers"
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if os.path.exists(f"/proc/{w}")], "worker processes outlived the batch"
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 130 and err.strip().splitlines()[-1] == "spinelabel: interrupted", err
        assert "Traceback" not in err
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


# ----------------------------------------------------------------- red team (thirty-seventh session)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input,id\r\n/x.nii.gz,a\r\n/y.nii.gz,b,extra\r\n", "line 3: more cells than the header names \\('extra'\\)"),
        ('input,id\n"/a.nii.gz,a\n/b.nii.gz,b\n/c.nii.gz,c\n', "line 2: a line break inside a cell"),
        ('input,id,series\n/a.nii.gz,a,"1.2.3\n/b.nii.gz,b,\n/c.nii.gz,c,\n', "line 2: a line break inside a cell"),
    ],
)
def test_spreadsheet_slips_in_a_manifest_are_one_line_errors(tmp_path, text, message):
    """A cell beyond the header gave an AttributeError traceback; a stray quote folded the rows after it into one
    item (with a three-line error) and the others vanished from the count."""
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "ok.csv").write_text("input,id\r\n/x.nii.gz,a\r\n,,\r\n/y.nii.gz,b,\r\n")  # empty cells: fine
    assert [i.id for i in read_manifest(tmp_path / "ok.csv")] == ["a", "b"]


def test_relative_inputs_are_absolute_so_a_run_from_another_folder_skips_what_is_done(scans, tmp_path, monkeypatch):
    """Run from the manifest's parent, then from elsewhere: the second run relabeled every item (done.txt recorded
    the inputs as typed, relative to where each run started)."""
    good, _ = scans
    (tmp_path / "rel" / "scans").mkdir(parents=True)
    (tmp_path / "rel" / "scans" / "a.nii.gz").write_bytes(good[0].read_bytes())
    (tmp_path / "rel" / "m.csv").write_text("input,id\nscans/a.nii.gz,a\n")
    labeled: list[list[str]] = []

    def runner(tasks):
        labeled.append([t.key for t in tasks])
        return run_here(BLOB.load(), tasks)

    monkeypatch.chdir(tmp_path)
    run_archive(read_manifest(Path("rel/m.csv")), tmp_path / "out", runner)
    monkeypatch.chdir(tmp_path / "rel")
    assert read_manifest(Path("m.csv"))[0].input == str(tmp_path / "rel" / "scans" / "a.nii.gz")
    run_archive(read_manifest(Path("m.csv")), tmp_path / "out", runner)
    assert labeled == [["a"], []]


def test_an_item_labeled_again_gets_a_new_overlay_beside_its_new_result(scans, tmp_path):
    """day 1 labels case7 with --overlays, day 2 points case7 at another scan without: case7.png stayed the
    first scan's picture beside the second scan's result."""
    good, _ = scans
    img = nib.load(str(good[0]))
    other = tmp_path / "other.nii.gz"  # another patient: the same spine 12 voxels higher
    nib.save(nib.Nifti1Image(np.roll(np.asarray(img.dataobj), 12, axis=2), img.affine), str(other))
    out = tmp_path / "out"
    (tmp_path / "d1.csv").write_text(f"id,input\ncase7,{good[0]}\n")
    (tmp_path / "d2.csv").write_text(f"id,input\ncase7,{other}\n")
    run_archive(read_manifest(tmp_path / "d1.csv"), out, lambda t: run_here(BLOB.load(), t), overlays=True)
    png = out / LABELS_DIR / "case7.png"
    first = png.read_bytes()
    run_archive(read_manifest(tmp_path / "d2.csv"), out, lambda t: run_here(BLOB.load(), t), overlays=False)
    assert json.loads((out / LABELS_DIR / "case7.json").read_text())["input"] == str(other)
    assert png.read_bytes() != first


def test_a_done_list_the_disk_cuts_short_keeps_whole_lines_only(tmp_path, monkeypatch):
    """Disk full while appending to done.txt: a traceback, or half a line that the next append ran into."""
    from spinelabel import archive
    from spinelabel.errors import OutputError

    (tmp_path / DONE_NAME).write_bytes(b"a\t/x/a.nii.gz\nb\t/x/b.nii")  # a half line left by an older version
    done = archive._DoneList(tmp_path)
    assert (tmp_path / DONE_NAME).read_bytes() == b"a\t/x/a.nii.gz\n"
    real_write = archive.os.write
    monkeypatch.setattr(archive.os, "write", lambda fd, data: real_write(fd, data[:5]))  # the disk takes 5 bytes
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / DONE_NAME}: No space left on device"):
        done.add("c", "/x/c.nii.gz")
    monkeypatch.setattr(archive.os, "write", real_write)
    done.add("d", "/x/d.nii.gz")
    done.close()
    assert (tmp_path / DONE_NAME).read_bytes() == b"a\t/x/a.nii.gz\nd\t/x/d.nii.gz\n"


@pytest.mark.parametrize("name", [DONE_NAME, FAILED_NAME])
def test_a_done_or_failed_list_saved_by_a_spreadsheet_is_one_line(tmp_path, name):
    """A cp1252 byte gave a UnicodeDecodeError traceback; a BOM made failed.csv's ids unreadable (skip ignored)."""
    (tmp_path / name).write_bytes(b"id,input,reason\nb\xe9,/x,y\n")
    with pytest.raises(InputError, match="not UTF-8 text any more"):
        (read_done if name == DONE_NAME else read_failed)(tmp_path)
    (tmp_path / FAILED_NAME).write_bytes("\ufeffid,input,reason\nb,/x,gone\n".encode())
    assert read_failed(tmp_path) == {"b": ("/x", "gone")}


def test_a_mixed_manifest_gives_stack_to_its_dicom_series_only(scans, tmp_path):
    """`batch --stack W` failed every NIfTI item of a mixed manifest on every run (label gives it to series only)."""
    from spinelabel.archive import pending_tasks

    good, _ = scans
    items = [ManifestItem("n", str(good[0])), ManifestItem("d", str(tmp_path))]
    tasks = {t.key: t for t in pending_tasks(items, tmp_path / "out", overlays=False, skip=set(), stack="W")}
    assert tasks["n"].stack is None and tasks["d"].stack == "W"


def test_a_worker_killed_on_one_item_fails_that_item_and_the_batch_goes_on(scans, tmp_path):
    """One worker's death (the kernel's out-of-memory killer) stopped the whole batch, and since no item was named
    failed, every resume stopped at the same scan. Now that item fails alone and every other is labeled."""
    from spinelabel.testing.dummy import DYING_MARK

    good, _ = scans
    img = nib.load(str(good[0]))
    data = np.asarray(img.dataobj, dtype=np.float32)
    killer = tmp_path / "killer.nii.gz"
    nib.save(nib.Nifti1Image(data * (DYING_MARK / data.max()), img.affine), str(killer))
    spec = LabelerSpec(factory="spinelabel.testing.dummy:dying_labeler")
    tasks = _tasks([killer, good[0], good[1], good[2], good[0]], tmp_path / "out")  # first: nothing finished yet
    tasks[-1] = Task("again", tasks[-1].inputs, json=tmp_path / "out" / "again.json")
    outcomes = {o.key: o for o in run_processes(spec, tasks, jobs=2)}
    assert set(outcomes) == {"a.nii.gz", "killer.nii.gz", "b.nii.gz", "c.nii.gz", "again"}
    assert "died twice" in outcomes["killer.nii.gz"].error
    assert all(o.ok and o.n_vertebrae == 5 for k, o in outcomes.items() if k != "killer.nii.gz")


def test_workers_that_die_before_any_item_finishes_stop_the_batch(scans, tmp_path):
    from spinelabel.testing.dummy import DYING_MARK

    good, _ = scans
    img = nib.load(str(good[0]))
    data = np.asarray(img.dataobj, dtype=np.float32)
    killers = []
    for i in range(3):
        killers.append(tmp_path / f"k{i}.nii.gz")
        nib.save(nib.Nifti1Image(data * (DYING_MARK / data.max()), img.affine), str(killers[-1]))
    spec = LabelerSpec(factory="spinelabel.testing.dummy:dying_labeler")
    with pytest.raises(ModelError, match="die before they finish any item"):
        list(run_processes(spec, _tasks(killers, tmp_path / "out"), jobs=2))


def test_a_second_batch_into_a_folder_in_use_stops_before_labeling(scans, tmp_path, capsys):
    """Two runs into one folder labeled the same items twice, and each rewrote failed.csv without the other's
    failures. The folder is locked by the run in it; the lock goes with the run (however it ends)."""
    import subprocess
    import sys

    good, _ = scans
    (tmp_path / "m.csv").write_text(f"id,input\na,{good[0]}\n")
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import contextlib, sys, time; from pathlib import Path; "
         "from spinelabel.archive import _only_run\n"
         "with _only_run(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["batch", str(tmp_path / "m.csv"), "-o", str(out), "-q"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"spinelabel: error: another spinelabel batch is writing into {out}: wait for it to end, " \
                      "or give this one another output folder"
        assert not (out / LABELS_DIR / "a.json").exists()
    finally:
        holder.kill()
        holder.wait()
    main(["batch", str(tmp_path / "m.csv"), "-o", str(out), "-q"])  # the holder is gone, and so is its lock:
    assert "another spinelabel batch" not in capsys.readouterr().err
    # this run took the item (labeled or failed, whatever the shipped model makes of a blob phantom)
    assert read_done(out) | set(read_failed(out)) == {"a"}


def test_thousands_of_failures_rewrite_failed_csv_a_few_times_and_list_every_one(tmp_path, monkeypatch):
    """failed.csv was rewritten whole after each failure: 5000 missing inputs spent 35 s on it (quadratic)."""
    from spinelabel import archive

    (tmp_path / "m.csv").write_text("id,input\n" + "".join(f"s{k},/gone/{k}.nii.gz\n" for k in range(3000)))
    writes = []
    real = archive._write_failed
    monkeypatch.setattr(archive, "_write_failed", lambda out, failed: (writes.append(len(failed)), real(out, failed)))
    run = run_archive(read_manifest(tmp_path / "m.csv"), tmp_path / "run",
                      lambda tasks: (Outcome(t.key, "no such file") for t in tasks))
    assert len(run.failed) == 3000 and len(writes) <= 5 and writes[-1] == 3000
    assert len(read_failed(tmp_path / "run")) == 3000


def test_a_done_list_saved_with_windows_line_ends_still_matches(tmp_path):
    """A trailing carriage return would make every recorded input differ: every item labeled again (reviewed ones
    failed). The list is read as text with universal newlines, so it does not (review of the session's diff)."""
    from spinelabel.archive import read_done_inputs

    (tmp_path / DONE_NAME).write_bytes(b"a\t/x/a.nii.gz\r\nb\t/x/b.nii.gz\r\n")
    assert read_done_inputs(tmp_path) == {"a": "/x/a.nii.gz", "b": "/x/b.nii.gz"}


@pytest.mark.parametrize(("code", "runs"), [("ENOLCK", True), ("EIO", False)])
def test_a_folder_that_cannot_be_locked_runs_unguarded_and_other_lock_errors_are_one_line(tmp_path, monkeypatch,
                                                                                       code, runs):
    """NFS without its lock daemon (ENOLCK) was reported as 'another spinelabel batch is writing'."""
    import errno
    import fcntl

    from spinelabel.errors import OutputError

    def refuse(fd, op):
        raise OSError(getattr(errno, code), "refused")

    monkeypatch.setattr(fcntl, "flock", refuse)
    (tmp_path / "m.csv").write_text("id,input\na,/gone/a.nii.gz\n")
    go = lambda: run_archive(read_manifest(tmp_path / "m.csv"), tmp_path / "run",  # noqa: E731
                             lambda tasks: (Outcome(t.key, "no such file") for t in tasks))
    if runs:
        assert go().failed == {"a": ("/gone/a.nii.gz", "no such file")}
    else:
        with pytest.raises(OutputError, match="cannot lock .*: refused"):
            go()


def test_the_pool_initializer_loads_the_model_before_the_first_task(monkeypatch):
    """The model load fell out of the initializer once (``_submit`` was written into it): each worker then loaded
    its model during its first task, and a batch's first items took the load's time."""
    import signal

    from spinelabel import batch

    loaded = []
    monkeypatch.setattr(batch, "cached_labeler", loaded.append)
    monkeypatch.setattr(batch, "_exit_with_parent", lambda: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # this test process keeps its own Ctrl+C
    batch._warm_worker(BLOB)
    assert loaded == [BLOB]


def test_a_stray_quote_in_a_long_csv_manifest_is_one_line(tmp_path, capsys):
    """The quote takes the rest of the file into one cell, past the csv module's field size limit (a traceback)."""
    rows = ["id,input"] + [f"a{k},/scans/{k}.nii.gz" for k in range(8000)]
    rows[3] = 'a2,"/scans/2.nii.gz'
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "m.csv, line 4: a cell longer than" in err and "(a quote opened and never closed?)" in err, err
    assert not (tmp_path / "out").exists()


def test_a_failed_list_edited_past_the_csv_limit_is_one_line(tmp_path):
    (tmp_path / FAILED_NAME).write_text("id,input,reason\na,/x.nii.gz," + "r" * 200_000 + "\n")
    with pytest.raises(InputError, match="is no longer a failed list of ours"):
        read_failed(tmp_path)


@pytest.mark.parametrize("model, says", [("", "--model is empty"), ("no-such-model", "no model found")])
def test_batch_with_a_model_it_cannot_find_is_one_line_and_makes_no_folder(capsys, scans, tmp_path, model, says):
    good, missing = scans
    out = tmp_path / "out"
    code = main(["batch", str(_manifest(tmp_path, good, missing)), "-o", str(out), "--model", model, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and says in err[0], err
    assert not out.exists()
