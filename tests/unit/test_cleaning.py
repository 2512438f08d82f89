"""Cleaning clinical labels: every check finds its planted fault and leaves clean scans alone."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from spinelabel import anatomy
from spinelabel.annotations import ScanAnnotation, load_annotations, save_annotations_csv
from spinelabel.cleaning import (
    CleaningParams,
    ImageEvidence,
    check_scan,
    inside_as_lps,
    clean_annotations,
)
from spinelabel.cleaning_geometry import out_of_order, spine_axis
from spinelabel.cleaning_evidence import check_annotations, gather_evidence
from spinelabel.cleaning_report import report_to_dict, write_report
from spinelabel.cli import main
from spinelabel.errors import InputError
from spinelabel.shape_model import ShapeModel

SHAPE = ShapeModel()  # anatomical prior spacings
LUMBAR = ("T12", "L1", "L2", "L3", "L4", "L5")


def spine(levels=LUMBAR, x: float = 2.0, lordosis_deg: float = 4.0) -> dict[str, np.ndarray]:
    """Body centres at the prior spacings, curving anteriorly by ``lordosis_deg`` per level."""
    points, p, angle = {}, np.array([x, 10.0, 100.0]), 0.0
    for i, level in enumerate(levels):
        if i:
            d = anatomy.typical_spacing_mm(levels[i - 1], level)
            angle += np.deg2rad(lordosis_deg)
            p = p + d * np.array([0.0, np.sin(angle), -np.cos(angle)])
        points[level] = p.copy()
    return points


def scan(points: dict[str, np.ndarray], scan_id: str = "s1", **kw) -> ScanAnnotation:
    ordered = dict(sorted(points.items(), key=lambda kv: anatomy.ordinal(kv[0])))
    return ScanAnnotation(scan_id, kw.pop("image", None), ordered, **kw)


def kinds(findings) -> list[tuple[str, str]]:
    return [(f.label, f.kind) for f in findings]


def evidence_for(points: dict[str, np.ndarray], **kw) -> ImageEvidence:
    """What a perfect detector would report for a spine with these true centres."""
    pos = np.array(list(points.values()))
    predicted = {lv: (p, 0.95) for lv, p in points.items()}
    return ImageEvidence(candidates=pos, predicted=predicted, midline_x=float(np.median(pos[:, 0])), **kw)


# ----------------------------------------------------------------- clean scans


def test_clean_scan_has_no_findings_and_is_kept_whole():
    pts = spine()
    findings, outcome = check_scan(scan(pts), SHAPE)
    assert findings == []
    assert outcome.levels_out == LUMBAR and not outcome.dropped
    for lv in LUMBAR:
        np.testing.assert_array_equal(outcome.cleaned.points[lv], pts[lv])


def test_clean_scan_with_image_evidence_and_sloppy_clicks_has_no_findings():
    """Clicks 6 mm off-centre and on a para-sagittal slice 12 mm lateral are not faults."""
    truth = spine()
    clicks = {lv: p + np.array([12.0, 4.0, -4.5]) for lv, p in truth.items()}
    findings, outcome = check_scan(scan(clicks), SHAPE, evidence_for(truth))
    assert findings == [] and outcome.checks == ("geometry", "image", "detector")


def test_patient_size_is_absorbed_by_the_scale_factor():
    big = {lv: p * 1.2 for lv, p in spine().items()}
    assert check_scan(scan(big), SHAPE)[0] == []


# ----------------------------------------------------------------- duplicates, order


def test_duplicate_is_reported_and_first_point_kept():
    findings, outcome = check_scan(scan(spine(), duplicates=("L2",)), SHAPE)
    assert kinds(findings) == [("L2", "duplicate")]
    assert outcome.levels_out == LUMBAR and outcome.cleaned.duplicates == ()


def test_point_displaced_past_its_neighbours_is_out_of_order():
    pts = spine()
    pts["L3"] = pts["T12"] + np.array([0, 0, 20.0])  # above T12
    findings, outcome = check_scan(scan(pts), SHAPE)
    assert kinds(findings)[0] == ("L3", "out_of_order")
    assert "cranial to T12" in findings[0].reason
    assert "L3" not in outcome.levels_out


def test_swapped_pair_flags_both():
    pts = spine()
    pts["L2"], pts["L3"] = pts["L3"].copy(), pts["L2"].copy()
    findings, _ = check_scan(scan(pts), SHAPE)
    assert sorted(lv for lv, k in kinds(findings) if k == "out_of_order") == ["L2", "L3"]


def test_upside_down_labels_drop_the_scan():
    pts = spine()
    flipped = dict(zip(pts, reversed(list(pts.values()))))
    findings, outcome = check_scan(scan(flipped), SHAPE)
    assert kinds(findings) == [("", "out_of_order")] and outcome.dropped


def test_out_of_order_function():
    assert out_of_order([0, 1, 2, 3]) == []
    assert out_of_order([0, 1, -5, 3, 4]) == [2]
    assert out_of_order([0, 2, 1, 3]) == [1, 2]
    assert out_of_order([5.0]) == []


def test_spine_axis_points_caudally_and_falls_back_to_si():
    pts = np.array(list(spine().values()))
    axis = spine_axis(pts)
    assert axis[2] < -0.9 and np.isclose(np.linalg.norm(axis), 1)
    np.testing.assert_array_equal(spine_axis(pts[:2]), [0, 0, -1])
    sideways = np.array([[0, 0, 0], [40.0, 0, 1], [80.0, 0, -1]])  # principal axis left-right
    np.testing.assert_array_equal(spine_axis(sideways), [0, 0, -1])


# ----------------------------------------------------------------- off the vertebra


def test_label_on_a_disc_is_found_by_geometry():
    pts = spine()
    pts["L3"] = (pts["L3"] + pts["L4"]) / 2
    findings, outcome = check_scan(scan(pts), SHAPE)
    assert kinds(findings) == [("L3", "far_from_vertebra")]
    assert "off the line of L2 and L4" in findings[0].reason
    assert outcome.levels_out == ("T12", "L1", "L2")  # the longest run left around the gap


def test_labels_of_another_scan_drop_the_scan():
    """Labels on the wrong image: most lie off every detection. Each interior one is on the line of its
    neighbours (as a body the detector missed would be), yet together they do not fit the image."""
    truth = spine()
    labels = {lv: p + np.array([0.0, 10.0, 85.0]) for lv, p in truth.items()}  # another patient's spine, higher up
    findings, outcome = check_scan(scan(labels), SHAPE, evidence_for(truth))
    assert kinds(findings) == [("", "far_from_vertebra")] and findings[0].action == "scan dropped"
    assert "labels lie off every detected vertebra" in findings[0].reason and outcome.cleaned is None
    one_off = dict(truth)
    one_off["L3"] = truth["L3"] + np.array([0.0, 40.0, 0.0])  # one interior label off every body: a point, not the scan
    findings, outcome = check_scan(scan(one_off), SHAPE, evidence_for(truth))
    assert kinds(findings) == [("L3", "far_from_vertebra")] and findings[0].action == "point dropped"
    assert outcome.cleaned is not None and outcome.levels_out == ("T12", "L1", "L2")  # the longest run left


def test_label_in_the_canal_is_found_by_geometry():
    pts = spine()
    pts["L2"] = pts["L2"] + np.array([0, -28.0, 0])  # posterior, in the spinal canal
    assert kinds(check_scan(scan(pts), SHAPE)[0]) == [("L2", "far_from_vertebra")]


def test_label_on_a_disc_is_found_by_the_detector():
    truth = spine()
    pts = dict(truth)
    pts["L5"] = (truth["L4"] + truth["L5"]) / 2 + np.array([0, 0, -4.0])  # an end point: geometry cannot tell
    findings, outcome = check_scan(scan(pts), SHAPE, evidence_for(truth))
    assert kinds(findings) == [("L5", "far_from_vertebra")]
    assert "from the nearest detected vertebra" in findings[0].reason
    assert outcome.levels_out == LUMBAR[:-1]


def test_label_beside_the_spine_is_found_by_the_detector():
    truth = spine()
    pts = dict(truth)
    pts["L1"] = truth["L1"] + np.array([32.0, 0, 0])
    findings, _ = check_scan(scan(pts), SHAPE, evidence_for(truth))
    assert kinds(findings) == [("L1", "far_from_vertebra")] and "beside the spine" in findings[0].reason


def test_body_the_detector_missed_keeps_its_label():
    truth = spine(LUMBAR + ("S1",))
    seen = {lv: p for lv, p in truth.items() if lv not in ("L2", "L3")}  # two dim bodies without a detection
    findings, outcome = check_scan(scan(truth), SHAPE, evidence_for(seen))
    assert findings == []
    assert outcome.levels_out == LUMBAR + ("S1",)
    assert any("no detection near L2, L3" in n and "kept" in n for n in outcome.notes)


def test_label_on_a_disc_is_dropped_when_detector_and_geometry_agree():
    truth = spine()
    pts = dict(truth)
    pts["L3"] = (truth["L3"] + truth["L4"]) / 2  # interior: off the line of L2 and L4 as well
    findings, outcome = check_scan(scan(pts), SHAPE, evidence_for(truth))
    assert kinds(findings) == [("L3", "far_from_vertebra")]
    assert "from the nearest detected vertebra" in findings[0].reason
    assert outcome.levels_out == ("T12", "L1", "L2")


def test_missed_end_body_is_still_the_detectors_call():
    truth = spine()
    seen = {lv: p for lv, p in truth.items() if lv != "L5"}  # an end label: no second neighbour to agree
    findings, _ = check_scan(scan(truth), SHAPE, evidence_for(seen))
    assert kinds(findings) == [("L5", "far_from_vertebra")]


def test_too_few_detections_fall_back_to_geometry():
    truth = spine()
    pts = dict(truth)
    pts["L3"] = (truth["L3"] + truth["L4"]) / 2
    ev = replace(evidence_for(truth), candidates=np.array([truth["L1"]]))
    findings, outcome = check_scan(scan(pts), SHAPE, ev)
    assert kinds(findings) == [("L3", "far_from_vertebra")] and "off the line" in findings[0].reason
    assert any("only 1 vertebrae" in n for n in outcome.notes)


# ----------------------------------------------------------------- spacing and gaps


def test_end_point_too_far_breaks_the_spacing():
    pts = spine()
    pts["L5"] = pts["L5"] + np.array([0, 0, -20.0])
    findings, outcome = check_scan(scan(pts), SHAPE)
    assert kinds(findings) == [("L4-L5", "spacing")]
    assert "z = +" in findings[0].reason
    assert outcome.levels_out == LUMBAR[:-1]


def test_missing_level_is_reported_and_splits_the_chain():
    pts = spine()
    del pts["L2"]
    findings, outcome = check_scan(scan(pts), SHAPE)
    assert kinds(findings) == [("L2", "missing_level")]
    assert outcome.levels_out == ("L3", "L4", "L5")


def test_skipped_name_is_a_spacing_fault_not_a_missing_level():
    """Five consecutive vertebrae named T12 L1 L3 L4 L5: L1-L3 are one spacing apart, not two."""
    true = spine()
    names = ["T12", "L1", "L3", "L4", "L5"]
    pts = {n: true[t] for n, t in zip(names, LUMBAR[:5])}
    findings, outcome = check_scan(scan(pts), SHAPE)
    assert kinds(findings) == [("L1-L3", "spacing")]
    assert outcome.levels_out == ("L3", "L4", "L5")


def test_two_point_scan_uses_the_size_prior():
    pts = {k: v for k, v in spine().items() if k in ("L1", "L2")}
    assert check_scan(scan(pts), SHAPE)[0] == []
    pts["L2"] = pts["L1"] + np.array([0, 0, -60.0])
    assert kinds(check_scan(scan(pts), SHAPE)[0]) == [("L1-L2", "spacing")]


def test_scan_left_with_one_point_is_dropped():
    pts = {k: v for k, v in spine().items() if k in ("L1", "L2", "L3")}
    pts["L2"] = pts["L1"] + np.array([0, 0, -70.0])  # both pairs bad
    _, outcome = check_scan(scan(pts), SHAPE)
    assert outcome.dropped and any("fewer than 2" in n for n in outcome.notes)


# ----------------------------------------------------------------- shifted, orientation


def _shifted(points: dict[str, np.ndarray], by: int) -> dict[str, np.ndarray]:
    chain = anatomy.STANDARD_LEVELS
    return {chain[chain.index(lv) + by]: p for lv, p in points.items()}


def test_whole_sequence_shifted_by_one_is_dropped():
    truth = spine()
    findings, outcome = check_scan(scan(_shifted(truth, -1)), SHAPE, evidence_for(truth))
    assert kinds(findings) == [("", "shifted")] and outcome.dropped
    assert "annotated T11 where the model sees T12" in findings[0].reason


def test_shifted_scan_can_be_relabeled():
    truth = spine()
    params = CleaningParams(shifted="relabel")
    findings, outcome = check_scan(scan(_shifted(truth, 1)), SHAPE, evidence_for(truth), params)
    assert kinds(findings) == [("", "shifted")] and "relabeled by -1" in findings[0].action
    assert outcome.levels_out == LUMBAR
    np.testing.assert_array_equal(outcome.cleaned.points["L3"], truth["L3"])


def test_agreeing_or_mixed_labels_are_not_shifted():
    truth = spine()
    assert check_scan(scan(truth), SHAPE, evidence_for(truth))[0] == []
    mixed = dict(truth)
    ev = evidence_for(truth)
    ev.predicted.update({"L1": (truth["L2"], 0.9), "L2": (truth["L1"], 0.9)})  # two of six disagree
    assert check_scan(scan(mixed), SHAPE, ev)[0] == []
    low = evidence_for(_shifted(truth, 1))
    low.predicted.update({k: (p, 0.3) for k, (p, _) in low.predicted.items()})  # unsure model: no reference
    assert check_scan(scan(truth), SHAPE, low)[0] == []


def test_non_sagittal_image_drops_the_scan():
    ev = ImageEvidence(sagittal_error="not a sagittal series: slices are axial")
    findings, outcome = check_scan(scan(spine()), SHAPE, ev)
    assert kinds(findings) == [("", "non_sagittal")] and outcome.dropped


def test_labels_outside_the_image_are_dropped_and_most_of_them_drop_the_scan():
    truth = spine()
    outside = dict.fromkeys(truth, 0.0) | {"T12": 30.0, "L1": 12.0}  # L1: within half a body of the edge
    findings, outcome = check_scan(scan(truth), SHAPE, ImageEvidence(outside_mm=outside))
    assert kinds(findings) == [("T12", "outside_image")] and "30 mm outside the image" in findings[0].reason
    assert outcome.levels_out == ("L1", "L2", "L3", "L4", "L5")
    most = dict.fromkeys(truth, 40.0) | {"L5": 0.0}
    findings, outcome = check_scan(scan(truth), SHAPE, ImageEvidence(outside_mm=most))
    assert kinds(findings) == [("", "outside_image")] and outcome.dropped
    assert "wrong image" in findings[0].reason


def test_labels_outside_the_image_are_found_when_only_the_detector_failed():
    truth = spine()
    ev = ImageEvidence(error="detector failed: out of memory", outside_mm=dict.fromkeys(truth, 0.0) | {"T12": 30.0})
    findings, outcome = check_scan(scan(truth), SHAPE, ev)
    assert kinds(findings) == [("T12", "outside_image")] and "detector failed" in outcome.notes[0]


def test_check_annotations_measures_the_labels_against_their_image(tmp_path):
    sagittal = np.zeros((12, 80, 200), np.float32)  # x -2..46, y -0.5..79.5, z -120.5..79.5 mm
    affine = np.diag([4.0, 1.0, 1.0, 1.0])
    affine[2, 3] = -120.0
    nib.save(nib.Nifti1Image(sagittal, affine), str(tmp_path / "sag.nii.gz"))
    points = spine(x=20.0)  # T12 at z = 100 lies above the image, L1 (z = 67.6) to L5 (-74.5) inside
    ev = gather_evidence(tmp_path / "sag.nii.gz", points=points)
    assert ev.outside_mm["T12"] == pytest.approx(100.0 - 79.5)
    assert ev.outside_mm["L5"] == 0.0
    report = check_annotations([scan(points, image=tmp_path / "sag.nii.gz")], model=None, use_detector=False)
    assert [(f.label, f.kind) for f in report.findings] == [("T12", "outside_image")]
    assert report.scans[0].levels_out == ("L1", "L2", "L3", "L4", "L5")


def test_labels_in_dicom_lps_read_as_ras_are_named_as_such(tmp_path):
    """LPS numbers in a CSV without a frame column lie outside the image; read as LPS they lie inside it."""
    sagittal = np.zeros((12, 80, 200), np.float32)  # x -2..46, y -0.5..79.5, z -120.5..79.5 mm
    affine = np.diag([4.0, 1.0, 1.0, 1.0])
    affine[2, 3] = -120.0
    nib.save(nib.Nifti1Image(sagittal, affine), str(tmp_path / "sag.nii.gz"))
    ras = {lv: p + np.array([0.0, 50.0, -60.0]) for lv, p in spine(levels=LUMBAR[1:], x=20.0).items()}
    assert not inside_as_lps(affine, sagittal.shape, np.array(list(ras.values())))  # inside as read: nothing to say
    as_lps = {lv: p * np.array([-1.0, -1.0, 1.0]) for lv, p in ras.items()}
    assert inside_as_lps(affine, sagittal.shape, np.array(list(as_lps.values())))
    far = {lv: p + np.array([0.0, 0.0, 500.0]) for lv, p in as_lps.items()}  # outside either way: another image
    assert not inside_as_lps(affine, sagittal.shape, np.array(list(far.values())))

    rows = [f"s1,{lv},{x},{y},{z},sag.nii.gz" for lv, (x, y, z) in as_lps.items()]
    (tmp_path / "plain.csv").write_text("scan,label,x,y,z,image\n" + "\n".join(rows) + "\n")
    (tmp_path / "lps.csv").write_text("scan,label,x,y,z,image,frame\n" + "\n".join(r + ",LPS" for r in rows) + "\n")
    report = check_annotations(load_annotations([tmp_path / "plain.csv"]), model=None, use_detector=False)
    assert [(f.label, f.kind) for f in report.findings] == [("", "outside_image")] and report.scans[0].dropped
    assert "read as RAS? Add a CSV column frame=LPS" in report.findings[0].reason
    report = check_annotations(load_annotations([tmp_path / "lps.csv"]), model=None, use_detector=False)
    assert report.findings == [] and report.scans[0].levels_out == LUMBAR[1:]


def test_unreadable_image_skips_image_checks_with_a_note():
    findings, outcome = check_scan(scan(spine()), SHAPE, ImageEvidence(error="no such file"))
    assert findings == [] and outcome.checks == ("geometry",) and "no such file" in outcome.notes[0]


def test_gather_evidence_on_real_files(tmp_path):
    axial = np.zeros((80, 80, 12), np.float32)
    nib.save(nib.Nifti1Image(axial, np.diag([1.0, 1.0, 5.0, 1.0])), str(tmp_path / "axial.nii.gz"))
    sagittal = np.zeros((12, 80, 80), np.float32)
    nib.save(nib.Nifti1Image(sagittal, np.diag([4.0, 1.0, 1.0, 1.0])), str(tmp_path / "sag.nii.gz"))
    assert "not a sagittal series" in gather_evidence(tmp_path / "axial.nii.gz").sagittal_error
    assert gather_evidence(tmp_path / "sag.nii.gz") == ImageEvidence()
    assert "no such file" in gather_evidence(tmp_path / "missing.nii.gz").error
    ann = scan(spine(), image=tmp_path / "axial.nii.gz")
    report = check_annotations([ann], model=None, use_detector=False)
    assert kinds(report.findings) == [("", "non_sagittal")]


def test_each_scan_is_checked_by_the_labeler_chosen_for_it(tmp_path):
    """``labeler_for`` picks the detector per scan (train: a lumbar scan of a cervical set gets the lumbar model)."""
    from spinelabel.io.nifti import save_nifti
    from spinelabel.pipeline import Labeler
    from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config

    vol, centres = blob_spine()
    save_nifti(vol, tmp_path / "spine.nii.gz")
    points = dict(zip(["T12", "L1", "L2", "L3", "L4"], centres))
    anns = [scan(points, name, image=tmp_path / "spine.nii.gz") for name in ("seen", "unseen")]
    seeing = Labeler(dummy_config(), BlobNet(), "lumbar")
    asked = []

    def labeler_for(ann):
        asked.append(ann.scan_id)
        return seeing if ann.scan_id == "seen" else None

    report = check_annotations(anns, model=None, labeler=seeing, labeler_for=labeler_for)
    assert asked == ["seen", "unseen"]
    checks = {o.scan: o.checks for o in report.scans}
    assert "detector" in checks["seen"] and "detector" not in checks["unseen"]
    assert report.findings == []  # the labels sit on the blobs the detector found


def test_annotations_check_with_a_shipped_region_checks_each_scan_with_the_model_its_labels_show(tmp_path, monkeypatch):
    """As train's cleaning: a lumbar scan of a set checked with --model cervical is read by the lumbar model."""
    from spinelabel import cleaning_evidence
    from spinelabel.io.nifti import save_nifti
    from spinelabel.pipeline import Labeler
    from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config

    vol, centres = blob_spine()
    save_nifti(vol, tmp_path / "spine.nii.gz")
    anns = [scan(dict(zip(["L1", "L2", "L3", "L4", "L5"], centres)), "low-back", image=tmp_path / "spine.nii.gz"),
            scan(dict(zip(["C3", "C4", "C5", "C6", "C7"], centres)), "neck", image=tmp_path / "spine.nii.gz")]
    save_annotations_csv(anns, tmp_path / "labels.csv")
    loaded: list[tuple[str, str]] = []

    def load(model, region=None, threads=None, check_orientation=True):
        loaded.append((str(model), str(region)))
        return Labeler(dummy_config(region=str(region)), BlobNet(), region)

    checked: dict[str, str] = {}
    real_gather = cleaning_evidence.gather_evidence

    def gather(image, labeler=None, series_uid=None, points=None):
        checked[str(len(checked))] = labeler.region.name
        return real_gather(image, labeler, series_uid, points)

    monkeypatch.setattr(Labeler, "load", staticmethod(load))
    monkeypatch.setattr(cleaning_evidence, "gather_evidence", gather)
    assert main(["annotations", "check", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "out.csv"),
                 "--model", "cervical", "-q"]) == 0
    assert sorted(loaded) == [("cervical", "cervical"), ("lumbar", "lumbar")]  # each model once
    assert checked == {"0": "lumbar", "1": "cervical"}


# ----------------------------------------------------------------- sets and reports


def _faulty_set() -> list[ScanAnnotation]:
    a = spine()
    b = spine()
    del b["L3"]
    c = spine()
    c["L2"] = (c["L2"] + c["L3"]) / 2
    return [scan(a, "clean"), scan(b, "gap"), scan(c, "disc"), scan(spine(), "dup", duplicates=("L4",))]


def test_report_dict_and_files(tmp_path):
    report = clean_annotations(_faulty_set(), SHAPE)
    d = report_to_dict(report)
    assert d["summary"]["findings_by_kind"] == {"duplicate": 1, "far_from_vertebra": 1, "missing_level": 1}
    assert d["summary"]["scans"] == 4 and d["summary"]["scans_dropped"] == 0
    assert [s["scan"] for s in d["scans"]] == ["clean", "gap", "disc", "dup"]
    write_report(report, tmp_path / "r.json")
    write_report(report, tmp_path / "r.csv")
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(d))
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [(r["scan"], r["kind"]) for r in rows] == [("gap", "missing_level"), ("disc", "far_from_vertebra"), ("dup", "duplicate")]
    with pytest.raises(InputError, match="json or .csv"):
        write_report(report, tmp_path / "r.txt")


def test_cli_check_geometry_only(tmp_path, capsys):
    src = tmp_path / "labels.csv"
    save_annotations_csv(_faulty_set(), src)
    out, rep = tmp_path / "clean.csv", tmp_path / "report.json"
    code = main(["annotations", "check", str(src), "-o", str(out), "--report", str(rep), "--no-images"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 findings in 2 scans" in captured.out and "disc L2 far_from_vertebra" in captured.out
    doc = json.loads(rep.read_text())
    assert {f["scan"] for f in doc["findings"]} == {"gap", "disc"}  # a CSV holds no duplicates
    rows = list(csv.DictReader(open(out)))
    assert {r["scan"] for r in rows} == {"clean", "gap", "disc", "dup"}


def test_cli_check_errors_are_one_line(tmp_path, capsys):
    code = main(["annotations", "check", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv"), "--no-images"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no such file" in err
    src = tmp_path / "labels.csv"
    save_annotations_csv(_faulty_set(), src)
    code = main(["annotations", "check", str(src), "-o", str(tmp_path / "o.csv"), "--report", str(tmp_path / "r.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len([ln for ln in err.splitlines() if "Error:" in ln]) == 1, err
    assert "r.txt: must end in .json or .csv" in err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "r.txt").exists()


def test_cli_check_never_writes_over_the_labels_it_reads(tmp_path, capsys):
    """`--report in.csv` replaced the input with the findings table, and `--report case/centroids.json` a ground
    truth file inside a folder given as source (exit 0). Now one line, exit 1, every input as it was."""
    src = tmp_path / "labels.csv"
    save_annotations_csv(_faulty_set(), src)
    folder = tmp_path / "truth" / "case-1"
    folder.mkdir(parents=True)
    truth = folder / "centroids.json"
    truth.write_text(json.dumps({"case": "case-1", "vertebrae": [
        {"label": lv, "world_mm": [0.0, 0.0, -30.0 * i]} for i, lv in enumerate(["L1", "L2", "L3"])]}))
    before = {p: p.read_bytes() for p in (src, truth)}
    for source, options in (
        (src, ["-o", str(tmp_path / "o.csv"), "--report", str(src)]),
        (src, ["-o", str(src)]),
        (tmp_path / "truth", ["-o", str(tmp_path / "o.csv"), "--report", str(truth)]),
    ):
        code = main(["annotations", "check", str(source), *options, "--no-images"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "is an input of this run" in err, err
        assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "o.csv").exists()


def test_the_cleaned_csv_names_images_from_its_own_folder(tmp_path):
    """The cleaned set was staged in a hidden folder and its relative image paths computed from there: every path
    got two extra "../", and `train cleaned.csv` found no image."""
    sagittal = np.zeros((12, 80, 200), np.float32)
    affine = np.diag([4.0, 1.0, 1.0, 1.0])
    affine[2, 3] = -120.0
    (tmp_path / "scans").mkdir()
    nib.save(nib.Nifti1Image(sagittal, affine), str(tmp_path / "scans" / "sag.nii.gz"))
    points = {lv: p + np.array([18.0, 50.0, -60.0]) for lv, p in spine(levels=LUMBAR[1:]).items()}
    save_annotations_csv([scan(points, image=tmp_path / "scans" / "sag.nii.gz")], tmp_path / "labels.csv")
    out = tmp_path / "checked" / "cleaned.csv"
    assert main(["annotations", "check", str(tmp_path / "labels.csv"), "-o", str(out), "--no-images", "-q"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["image"] for r in rows} == {"../scans/sag.nii.gz"}
    (again,) = load_annotations([out])
    assert again.image == tmp_path / "scans" / "sag.nii.gz" and list(again.points) == list(points)
