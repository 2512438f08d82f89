"""Unit tests of the evaluation metrics (synthetic point sets, fast)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spinelabel.annotations import ScanAnnotation
from spinelabel.errors import InputError
from spinelabel.evaluation import (
    EvaluationReport,
    evaluate,
    evaluate_scan,
    format_report,
    load_predictions,
    report_to_dict,
)

LEVELS = ("L1", "L2", "L3", "L4", "L5")
SPACING = 35.0  # mm between adjacent centroids


def chain(levels=LEVELS, start=0, curve=True) -> dict[str, np.ndarray]:
    """GT points cranial to caudal along -z (RAS superior = +z), a gentle lordosis in y."""
    out = {}
    for i, lab in enumerate(levels):
        k = start + i
        out[lab] = np.array([1.0, -200.0 + (3.0 * (k - 2) ** 2 if curve else 0.0), -SPACING * k])
    return out


def as_list(points: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    return [(k, v.copy()) for k, v in points.items()]


def annotation(scan_id: str, points: dict[str, np.ndarray]) -> ScanAnnotation:
    return ScanAnnotation(scan_id, None, points)


# ----------------------------------------------------------------- evaluate_scan


def test_perfect_prediction():
    gt = chain()
    r = evaluate_scan(as_list(gt), gt, "s")
    assert (r.n_gt, r.tp, r.fn, r.fp, r.n_outside) == (5, 5, 0, 0, 0)
    assert r.mean_error_mm == 0.0
    assert r.all_correct
    assert r.identified == LEVELS
    assert r.glocker_identified == LEVELS
    assert r.mislabeled == ()

    rep = evaluate({"s": as_list(gt)}, [annotation("s", gt)])
    assert rep.sensitivity == 1.0 and rep.precision == 1.0
    assert rep.error_mean_mm == 0.0 and rep.error_max_mm == 0.0
    assert rep.identification_rate == 1.0 and rep.glocker_identification_rate == 1.0
    assert rep.scan_accuracy == 1.0 and rep.n_scans_correct == 1
    assert rep.per_level == {lab: (1, 1) for lab in LEVELS}


def test_mapping_and_list_inputs_agree():
    gt = chain()
    a = evaluate_scan(dict(gt), gt, "s")
    b = evaluate_scan(as_list(gt), gt, "s")
    assert a == b


def test_shift_of_3mm_gives_error_3():
    gt = chain()
    pred = as_list(gt)
    pred[2] = ("L3", pred[2][1] + np.array([0.0, 0.0, 3.0]))
    r = evaluate_scan(pred, gt, "s")
    errs = dict((m.gt_label, m.distance_mm) for m in r.matches)
    assert errs["L3"] == pytest.approx(3.0)
    assert r.mean_error_mm == pytest.approx(3.0 / 5)
    assert r.all_correct  # 3 mm is well inside the radius

    rep = evaluate({"s": pred}, [annotation("s", gt)])
    assert rep.error_max_mm == pytest.approx(3.0)
    assert rep.error_median_mm == pytest.approx(0.0)
    assert rep.error_mean_mm == pytest.approx(0.6)
    assert rep.error_p95_mm == pytest.approx(np.percentile([0, 0, 3, 0, 0], 95))


def test_whole_chain_off_by_one_label():
    gt = chain()
    # same positions, every name one level too cranial: L1 called T12, ..., L5 called L4
    pred = [(name, p.copy()) for name, p in zip(("T12", "L1", "L2", "L3", "L4"), gt.values())]
    r = evaluate_scan(pred, gt, "s")
    assert (r.tp, r.fn, r.fp) == (5, 0, 0)
    assert r.identified == ()
    assert r.glocker_identified == ()
    assert r.mislabeled == (("L1", "T12"), ("L2", "L1"), ("L3", "L2"), ("L4", "L3"), ("L5", "L4"))
    assert not r.all_correct

    rep = evaluate({"s": pred}, [annotation("s", gt)])
    assert rep.sensitivity == 1.0 and rep.precision == 1.0
    assert rep.identification_rate == 0.0 and rep.glocker_identification_rate == 0.0
    assert rep.scan_accuracy == 0.0
    assert rep.per_level["L3"] == (0, 1)


def test_missed_vertebra_is_fn():
    gt = chain()
    pred = [(k, v) for k, v in as_list(gt) if k != "L4"]
    r = evaluate_scan(pred, gt, "s")
    assert (r.tp, r.fn, r.fp) == (4, 1, 0)
    assert r.missed == ("L4",)
    assert not r.all_correct
    rep = evaluate({"s": pred}, [annotation("s", gt)])
    assert rep.sensitivity == pytest.approx(4 / 5)
    assert rep.precision == 1.0
    assert rep.identification_rate == pytest.approx(4 / 5)
    assert rep.per_level["L4"] == (0, 1)


def test_extra_prediction_between_vertebrae_is_fp():
    gt = chain()
    mid = (gt["L2"] + gt["L3"]) / 2  # 17.5 mm from each, but both are taken
    pred = as_list(gt) + [("L3", mid)]
    r = evaluate_scan(pred, gt, "s")
    assert (r.tp, r.fn, r.fp, r.n_outside) == (5, 0, 1, 0)
    assert r.mean_error_mm == 0.0  # the exact points are matched, not the extra one
    assert not r.all_correct
    rep = evaluate({"s": pred}, [annotation("s", gt)])
    assert rep.precision == pytest.approx(5 / 6)
    assert rep.scan_accuracy == 0.0
    # a duplicated label is reported, and Glocker uses the prediction nearest the GT point
    assert r.duplicate_pred_labels == ("L3",)
    assert "L3" in r.glocker_identified


def test_far_lateral_prediction_within_range_is_fp():
    gt = chain()
    pred = as_list(gt) + [("L2", gt["L3"] + np.array([60.0, 0.0, 0.0]))]
    r = evaluate_scan(pred, gt, "s")
    assert (r.fp, r.n_outside) == (1, 0)


def test_prediction_cranial_or_caudal_of_annotated_range_is_outside_not_fp():
    gt = chain(start=1)  # L1..L5 at k = 1..5
    t12 = chain(("T12",), start=0)["T12"]  # one spacing (35 mm) above L1
    s1 = chain(("S1",), start=6)["S1"]
    pred = [("T12", t12), *as_list(gt), ("S1", s1)]
    r = evaluate_scan(pred, gt, "s")
    assert (r.tp, r.fn, r.fp) == (5, 0, 0)
    assert r.outside == ("T12", "S1")
    assert r.all_correct
    rep = evaluate({"s": pred}, [annotation("s", gt)])
    assert rep.precision == 1.0 and rep.outside == 2 and rep.scan_accuracy == 1.0


def test_unmatched_prediction_just_beyond_end_but_within_radius_is_fp():
    gt = chain(curve=False)
    # 15 mm caudal of L5 along the axis and 25 mm to the side: too far to match (29 mm),
    # but within match_radius of the bottom along the spine -> inside the extent -> FP
    p = gt["L5"] + np.array([25.0, 0.0, -15.0])
    r = evaluate_scan(as_list(gt) + [("L5", p)], gt, "s")
    assert (r.tp, r.fp, r.n_outside) == (5, 1, 0)
    # 25 mm caudal (beyond the radius) -> outside
    p2 = gt["L5"] + np.array([0.0, 0.0, -25.0 - 1e-6])
    r2 = evaluate_scan(as_list(gt) + [("L5", p2)], gt, "s")
    assert (r2.fp, r2.n_outside) == (0, 1)


def test_s1_posterior_of_l5_is_outside_when_it_matches_no_annotated_point():
    """Lumbosacral angle: S1 lies 34 mm from L5 but only 12 mm beyond it along the spine's axis."""
    gt = chain(curve=False)
    s1 = gt["L5"] + np.array([0.0, -32.0, -12.0])
    r = evaluate_scan(as_list(gt) + [("S1", s1)], gt, "s")
    assert (r.tp, r.fp, r.outside) == (5, 0, ("S1",))
    # the same point named L5 (a level the GT has) stays a false positive
    assert evaluate_scan(as_list(gt) + [("L5", s1)], gt, "s").fp == 1
    # and a point named S1 within the radius of an annotated vertebra is one too
    near = gt["L5"] + np.array([0.0, -5.0, -10.0])
    assert evaluate_scan(as_list(gt) + [("S1", near)], gt, "s").false_positives == ("S1",)


def test_match_radius_is_a_parameter():
    gt = chain()
    pred = [(k, v + np.array([0.0, 0.0, 12.0])) for k, v in gt.items()]
    wide = evaluate_scan(pred, gt, "s", match_radius_mm=20.0)
    narrow = evaluate_scan(pred, gt, "s", match_radius_mm=10.0)
    assert wide.tp == 5 and wide.all_correct
    assert narrow.tp == 0 and narrow.fn == 5
    with pytest.raises(ValueError):
        evaluate_scan(pred, gt, "s", match_radius_mm=0.0)


def test_hungarian_maximises_number_of_matches():
    # greedy nearest matching would pair p0 with g1 (1 mm) and leave g0 unmatched;
    # the assignment must match both within the radius
    gt = {"L1": np.array([0.0, 0.0, 0.0]), "L2": np.array([0.0, 0.0, -19.0])}
    pred = [("L1", np.array([0.0, 0.0, -18.0])), ("L2", np.array([0.0, 0.0, -36.0]))]
    r = evaluate_scan(pred, gt, "s")
    assert r.tp == 2 and r.fn == 0
    assert sorted(m.distance_mm for m in r.matches) == pytest.approx([17.0, 18.0])


def test_glocker_rule_needs_closest_gt():
    gt = {"L1": np.array([0.0, 0.0, 0.0]), "L2": np.array([0.0, 0.0, -30.0])}
    # the prediction named L1 lies 18 mm from L1 but 12 mm from L2: L2's GT is closest
    pred = [("L1", np.array([0.0, 0.0, -18.0]))]
    r = evaluate_scan(pred, gt, "s")
    assert r.glocker_identified == ()
    # Hungarian still matches it to the nearer L2 (wrong name)
    assert r.mislabeled == (("L2", "L1"),)


def test_labels_are_normalised_and_order_of_gt_does_not_matter():
    gt = chain()
    shuffled = {k: gt[k] for k in ("L4", "L1", "L5", "L3", "L2")}
    pred = [(k.lower(), v) for k, v in gt.items()]
    r = evaluate_scan(pred, shuffled, "s")
    assert r.all_correct
    assert tuple(m.gt_label for m in r.matches) == LEVELS


def test_empty_prediction_and_single_gt_point():
    gt = chain()
    r = evaluate_scan([], gt, "s")
    assert (r.tp, r.fn, r.fp) == (0, 5, 0) and r.mean_error_mm is None and not r.all_correct
    one = {"L3": gt["L3"]}
    r1 = evaluate_scan(as_list(gt), one, "s")
    # with one GT point the extent is the match ball: neighbours 35 mm away are outside
    assert (r1.tp, r1.fp, r1.n_outside) == (1, 0, 4)


# ----------------------------------------------------------------- evaluate / report


def test_missing_prediction_counts_as_missed_and_unannotated_reported():
    gt_a, gt_b = chain(), chain(start=1)
    rep = evaluate({"a": as_list(gt_a), "x": as_list(gt_a)}, [annotation("a", gt_a), annotation("b", gt_b)])
    assert rep.missing_predictions == ("b",)
    assert rep.unannotated_predictions == ("x",)
    assert rep.n_scans == 2 and rep.n_gt == 10
    assert rep.tp == 5 and rep.fn == 5
    assert rep.sensitivity == pytest.approx(0.5)
    assert rep.scan_accuracy == pytest.approx(0.5)
    b = rep.per_scan[1]
    assert not b.has_prediction and not b.all_correct


def test_duplicate_annotation_scan_ids_rejected():
    gt = chain()
    with pytest.raises(ValueError, match="more than once"):
        evaluate({}, [annotation("a", gt), annotation("a", gt)])


def test_no_matches_gives_undefined_errors_and_none_rates():
    rep = evaluate({}, [])
    assert rep.sensitivity is None and rep.precision is None and rep.scan_accuracy is None
    assert rep.error_mean_mm is None
    json.dumps(report_to_dict(rep))


def test_per_level_over_scans_and_report_output():
    zukic = chain(("T11", "T12", "L1", "L2", "L3", "L4", "L5"), start=-2)
    myo = chain()
    pred_myo = [(k, v) for k, v in as_list(myo) if k != "L2"]
    preds = {"z": as_list(zukic), "m": pred_myo}
    rep = evaluate(preds, [annotation("z", zukic), annotation("m", myo)])
    assert isinstance(rep, EvaluationReport)
    assert rep.per_level["L1"] == (2, 2)
    assert rep.per_level["L2"] == (1, 2)
    assert rep.per_level["T11"] == (1, 1)
    assert list(rep.per_level) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]

    text = format_report(rep)
    assert "L2 1/2" in text
    assert "missed L2" in text
    assert "sensitivity 91.7% (11/12)" in text
    lines = text.splitlines()
    assert lines[1].split()[0] == "z" and lines[2].split()[0] == "m"

    d = report_to_dict(rep)
    back = json.loads(json.dumps(d))
    assert back["overall"]["tp"] == 11 and back["overall"]["fn"] == 1
    assert back["per_level"]["L2"] == {"identified": 1, "total": 2}
    assert back["per_scan"][1]["missed"] == ["L2"]
    assert back["per_scan"][0]["all_correct"] is True


def test_report_lists_mislabels_and_fp():
    gt = chain()
    pred = [(n, p.copy()) for n, p in zip(("T12", "L1", "L2", "L3", "L4"), gt.values())]
    pred.append(("L4", gt["L2"] + np.array([50.0, 0.0, 0.0])))
    rep = evaluate({"s": pred}, [annotation("s", gt)])
    text = format_report(rep)
    assert "mislabeled L1->T12" in text and "FP L4" in text and " NO " in text
    d = report_to_dict(rep)
    assert d["per_scan"][0]["mislabeled"][0] == {"gt": "L1", "pred": "T12"}
    assert d["per_scan"][0]["false_positives"] == ["L4"]


# ----------------------------------------------------------------- load_predictions


def write_pred(path: Path, verts, **extra) -> Path:
    doc = {
        "schema_version": 1,
        "region": "lumbar",
        "model": {"name": "m", "version": "0"},
        "vertebrae": [{"label": k, "position_mm": list(map(float, v)), "voxel": [0, 0, 0], "confidence": 0.9} for k, v in verts],
        "warnings": [],
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_load_predictions_scan_id_rules(tmp_path):
    pts = as_list(chain())
    # 1. explicit scan_id wins
    write_pred(tmp_path / "out" / "a.json", pts, scan_id="explicit", input="/data/zukic-02/image.nii.gz")
    # 2. parent folder of the input file
    write_pred(tmp_path / "out" / "b.json", pts, input="../shared/data/lumbar-mr/zukic-06/image.nii.gz")
    # 3. DICOM series: the series folder
    write_pred(tmp_path / "out" / "c.json", pts, input="DICOM series 1.2.3 (24 files in /pacs/case-17)")
    # 4. no input: the folder holding the JSON
    write_pred(tmp_path / "out" / "case-x" / "pred.json", pts)
    # 5. input without a folder: the folder holding the JSON
    write_pred(tmp_path / "out" / "case-y" / "pred.json", pts, input="image.nii.gz")
    # annotation files and hidden files in a folder are skipped
    (tmp_path / "out" / "case-x" / "centroids.json").write_text("{}")
    (tmp_path / "out" / ".tmp.json").write_text("{")

    preds = load_predictions([tmp_path / "out"])
    assert set(preds) == {"explicit", "zukic-06", "case-17", "case-x", "case-y"}
    labels = [k for k, _ in preds["zukic-06"]]
    assert labels == list(LEVELS)
    np.testing.assert_allclose(preds["zukic-06"][2][1], chain()["L3"])

    # a single file works too
    single = load_predictions([tmp_path / "out" / "b.json"])
    assert list(single) == ["zukic-06"]


def test_a_dicom_result_takes_the_scan_id_its_series_has_in_the_annotations(tmp_path):
    """``label series/ -o zukic-02.json`` and ``annotations import`` of the same series (scan id P1_3): one scan."""
    pts = as_list(chain())
    write_pred(tmp_path / "out" / "zukic-02.json", pts, input="DICOM series 1.2.3 (19 files in dcm/zukic-02)")
    write_pred(tmp_path / "out" / "other.json", pts, input="DICOM series 9.9 (19 files in dcm/other)")
    preds = load_predictions([tmp_path / "out"], {"1.2.3": "P1_3"})
    assert set(preds) == {"P1_3", "other"}
    assert set(load_predictions([tmp_path / "out"])) == {"zukic-02", "other"}  # without annotations: the folder


def test_load_predictions_keeps_duplicate_labels(tmp_path):
    gt = chain()
    pts = as_list(gt) + [("L3", gt["L3"] + 1.0)]
    p = write_pred(tmp_path / "s1" / "p.json", pts)
    preds = load_predictions([p])
    assert [k for k, _ in preds["s1"]].count("L3") == 2


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "no \"schema_version\""),
        (json.dumps({"schema_version": 2, "vertebrae": []}), "unsupported schema_version 2"),
        (json.dumps({"schema_version": 1}), "no \"vertebrae\" list"),
        (json.dumps({"schema_version": 1, "vertebrae": [{"label": "X9", "position_mm": [0, 0, 0]}]}), "vertebra #1: unknown vertebra label 'X9'"),
        (json.dumps({"schema_version": 1, "vertebrae": [{"label": "L1", "position_mm": [0, "a", 0]}]}), "vertebra #1 (L1): \"position_mm\""),
        (json.dumps({"schema_version": 1, "vertebrae": [{"label": "L1", "position_mm": [0, 0]}]}), "\"position_mm\" must be a list of 3"),
        (json.dumps({"schema_version": 1, "scan_id": "", "vertebrae": []}), "\"scan_id\" must be a non-empty string"),
    ],
)
def test_load_predictions_bad_files(tmp_path, content, message):
    p = tmp_path / "case" / "bad.json"
    p.parent.mkdir()
    p.write_text(content)
    with pytest.raises(InputError) as e:
        load_predictions([p])
    assert message in str(e.value)
    assert str(p) in str(e.value)
    assert "\n" not in str(e.value)


def test_load_predictions_missing_empty_and_clashing(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_predictions([tmp_path / "nope.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no prediction"):
        load_predictions([tmp_path / "empty"])
    pts = as_list(chain())
    write_pred(tmp_path / "flat" / "a.json", pts, input="/scans/a.nii.gz")
    write_pred(tmp_path / "flat" / "b.json", pts, input="/scans/b.nii.gz")
    with pytest.raises(InputError, match="scan id 'scans' also comes from"):
        load_predictions([tmp_path / "flat"])


def test_load_predictions_then_evaluate_end_to_end(tmp_path):
    gt = chain()
    write_pred(tmp_path / "out" / "s.json", as_list(gt), input="/data/s/image.nii.gz")
    rep = evaluate(load_predictions([tmp_path / "out"]), [annotation("s", gt)])
    assert rep.scan_accuracy == 1.0
    assert not math.isnan(rep.error_mean_mm)


def test_evaluate_json_never_replaces_a_result_or_the_annotations(tmp_path, capsys):
    """`evaluate preds gt --json preds/a.json` replaced a reviewed result with the report (exit 0). Now the report
    is written only to a new .json name or over an earlier report; anything else is one line, exit 1, untouched."""
    from spinelabel.cli import main

    gt = chain()
    write_pred(tmp_path / "preds" / "a.json", as_list(gt), input="/data/a/image.nii.gz")
    (tmp_path / "gt" / "a").mkdir(parents=True)
    truth = tmp_path / "gt" / "a" / "centroids.json"
    truth.write_text(json.dumps({"case": "a", "vertebrae": [{"label": k, "world_mm": list(v)} for k, v in gt.items()]}))
    csv = tmp_path / "gt.csv"
    csv.write_text("scan,label,x,y,z\n")
    for target in (tmp_path / "preds" / "a.json", truth, csv, tmp_path / "preds"):
        before = {p: p.read_bytes() for p in (tmp_path / "preds" / "a.json", truth, csv)}
        assert main(["evaluate", str(tmp_path / "preds"), str(tmp_path / "gt"), "--json", str(target)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(target) in err and "Traceback" not in err
        assert {p: p.read_bytes() for p in before} == before
    report = tmp_path / "report.json"
    for _ in range(2):  # a new name, then over the earlier report
        assert main(["evaluate", str(tmp_path / "preds"), str(tmp_path / "gt"), "--json", str(report)]) == 0
        assert json.loads(report.read_text())["overall"]["n_scans"] == 1


def _eval_set(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A result folder with scan a's prediction and a ground-truth folder a/centroids.json (exact points)."""
    gt = chain()
    write_pred(tmp_path / "preds" / "a.json", as_list(gt), input="/data/a/image.nii.gz")
    (tmp_path / "gt" / "a").mkdir(parents=True)
    (tmp_path / "gt" / "a" / "centroids.json").write_text(
        json.dumps({"case": "a", "vertebrae": [{"label": k, "world_mm": list(v)} for k, v in gt.items()]}))
    return tmp_path / "preds", tmp_path / "gt", gt


def test_a_report_or_a_hidden_folder_beside_the_results_is_not_read_as_a_prediction(tmp_path):
    """The second `evaluate results/ gt --json results/report.json` stopped at its own report; an editor's
    `.ipynb_checkpoints/a-checkpoint.json` gave 'scan id a also comes from ...'."""
    from spinelabel.cli import main

    preds, truth, gt = _eval_set(tmp_path)
    write_pred(preds / ".ipynb_checkpoints" / "a-checkpoint.json", as_list(gt), input="/data/a/image.nii.gz")
    for _ in range(2):
        assert main(["evaluate", str(preds), str(truth), "--json", str(preds / "report.json")]) == 0
        assert json.loads((preds / "report.json").read_text())["overall"]["n_scans_correct"] == 1


def test_a_level_given_twice_in_the_ground_truth_leaves_that_scan_out_with_a_warning(tmp_path, capsys):
    """Scoring the first of two L1 points counted a right L1 as a miss and a false positive, without a word."""
    from spinelabel.cli import main

    gt = chain()
    rows = ["scan,label,x,y,z"] + [f"{s},{k},{v[0]},{v[1]},{v[2]}" for s in ("a", "b") for k, v in gt.items()]
    rows.insert(1, f"b,L1,{gt['L1'][0]},{gt['L1'][1]},{gt['L1'][2] + 28.0}")  # b's first L1 is a slip
    (tmp_path / "gt.csv").write_text("\n".join(rows) + "\n")
    for scan in ("a", "b"):
        write_pred(tmp_path / "preds" / f"{scan}.json", as_list(gt), input=f"/data/{scan}/image.nii.gz")
    assert main(["evaluate", str(tmp_path / "preds"), str(tmp_path / "gt.csv"), "--json", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert "scan 'b' gives L1 more than once; left out of the metrics" in err
    overall = json.loads((tmp_path / "r.json").read_text())["overall"]
    assert overall["n_scans"] == 1 and overall["n_scans_correct"] == 1 and overall["fp"] == 0


def test_no_prediction_paired_with_an_annotated_scan_is_one_line_not_a_zero_report(tmp_path, capsys):
    from spinelabel.cli import main

    preds, truth, gt = _eval_set(tmp_path)
    (preds / "a.json").rename(preds / "x.json")
    write_pred(preds / "x.json", as_list(gt), input="/elsewhere/x/image.nii.gz")
    assert main(["evaluate", str(preds), str(truth)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no prediction belongs to an annotated scan (predictions: x; annotations: a)" in err


def test_every_scan_left_out_is_one_line_not_an_empty_report(tmp_path, capsys):
    from spinelabel.cli import main

    gt = chain()
    rows = ["scan,label,x,y,z", "a,L1,0,0,0"] + [f"a,{k},{v[0]},{v[1]},{v[2]}" for k, v in gt.items()]
    (tmp_path / "gt.csv").write_text("\n".join(rows) + "\n")
    write_pred(tmp_path / "preds" / "a.json", as_list(gt), input="/data/a/image.nii.gz")
    assert main(["evaluate", str(tmp_path / "preds"), str(tmp_path / "gt.csv")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("each gives some level more than once")
