"""The benchmarks' "confidence as a flag" counts: what a reader is asked to check, right and wrong."""

import numpy as np

from benchmarks.lumbar import flag_counts, flag_stats, warning_code_rows
from spinelabel.annotations import ScanAnnotation
from spinelabel.evaluation import evaluate
from spinelabel.results import LOW_CONFIDENCE


def _points(levels: list[str], start: float = 0.0) -> dict[str, np.ndarray]:
    return {lv: np.array([0.0, 0.0, start - 35.0 * i]) for i, lv in enumerate(levels)}


def test_flag_counts_separate_low_confidence_from_warnings_and_count_right_names_in_warned_scans():
    truth = [ScanAnnotation("right", None, _points(["L1", "L2", "L3"])),
             ScanAnnotation("shifted", None, _points(["L1", "L2", "L3"]))]
    preds = {"right": list(_points(["L1", "L2", "L3"]).items()),
             "shifted": list(_points(["T12", "L1", "L2"]).items())}  # every name one level high
    conf = {"right": {"L1": 0.9, "L2": 0.4, "L3": 0.9},  # one right name below 0.5
            "shifted": {"T12": 0.3, "L1": 0.8, "L2": 0.8}}  # one wrong name below 0.5
    rep = evaluate(preds, truth)
    n = flag_counts(rep, conf)
    assert (n["right"], n["wrong"], n["right_flagged"], n["wrong_flagged"]) == (3, 3, 1, 1)
    # a warning on the shifted scan flags all its names; the right scan has none
    n = flag_counts(rep, conf, warned={"shifted"})
    assert (n["wrong_warned"], n["right_warned"]) == (3, 1)
    # a warning on the right scan: its right names count as the price of the warning
    n = flag_counts(rep, conf, warned={"right"})
    assert (n["wrong_warned"], n["right_warned"]) == (1, 3)
    assert flag_stats(rep, conf, warned={"shifted"}).startswith("1/3 wrong labels flagged (confidence < 0.5); 1/3 right")


def test_warning_code_rows_count_scans_per_code_and_the_wrong_ones_the_count_codes_miss():
    scans = [(["no-anchor", "low-confidence"], False), (["no-anchor"], True), (["low-confidence"], False),
             ([], True), ([], False)]
    rows = warning_code_rows(scans)
    assert rows == [
        "| `no-anchor` | count | 2 | 1 (50 %) | 1/3 |",
        "| `low-confidence` | detection | 2 | 2 (100 %) | 2/3 |",
        "| any `count` code | count | 2 | 1 (50 %) | 1/3 |",
        "| no `count` code | — | 3 | 2 (67 %) | 2/3 |",
        "| no warning at all | — | 2 | 1 (50 %) | 1/3 |",
    ]


def test_reliability_rows_band_names_by_confidence_and_count_the_unwarned_wrong_ones():
    from benchmarks.lumbar import confidence_records, reliability_rows

    truth = [ScanAnnotation("right", None, _points(["L1", "L2", "L3"])),
             ScanAnnotation("shifted", None, _points(["L1", "L2", "L3"]))]
    preds = {"right": list(_points(["L1", "L2", "L3"]).items()),
             "shifted": list(_points(["T12", "L1", "L2"]).items())}
    conf = {"right": {"L1": 1.0, "L2": 0.5, "L3": 0.29},  # the top edge belongs to the last band, 0.5 above the flag
            "shifted": {"T12": 0.3, "L1": 0.85}}  # L2 has no confidence: taken as 1.0, as flag_counts takes it
    records = confidence_records(evaluate(preds, truth), conf, warned={"shifted"})
    assert sorted(records) == [(0.29, True, False), (0.3, False, True), (0.5, True, False), (0.85, False, True),
                               (1.0, False, True), (1.0, True, False)]
    rows = reliability_rows(records)
    assert rows[0] == "| 0.0-0.3 | 1 | 1 | 100.0 % | 0 | 0 |"
    assert rows[1] == "| 0.3-0.5 | 1 | 0 | 0.0 % | 1 | 0 |"
    assert rows[2] == "| 0.5-0.6 | 1 | 1 | 100.0 % | 0 | 0 |"
    assert rows[3] == "| 0.6-0.7 | 0 | 0 | — | 0 | 0 |"
    assert rows[5] == "| 0.8-0.9 | 1 | 0 | 0.0 % | 1 | 0 |"
    assert rows[6] == "| 0.9-1.0 | 2 | 1 | 50.0 % | 1 | 0 |"
    assert rows[4] == "| 0.7-0.8 | 0 | 0 | — | 0 | 0 |" and len(rows) == 7
    # the same wrong names in a scan without a warning are the ones a reader would take as they stand
    records = confidence_records(evaluate(preds, truth), conf, warned=set())
    rows = reliability_rows(records)
    assert rows[5].endswith("| 1 | 1 |") and rows[6].endswith("| 1 | 1 |")
    # ... as many as flag_counts finds neither below the flag threshold nor warned
    counts = flag_counts(evaluate(preds, truth), conf, warned=set())
    sure = [r for r in rows if float(r.split("|")[1].split("-")[0]) >= LOW_CONFIDENCE]
    assert sum(int(r.split("|")[6]) for r in sure) == counts["wrong"] - counts["wrong_warned"] == 2


def test_reliability_bands_start_at_the_flag_threshold_and_refuse_a_confidence_in_no_band():
    import pytest

    from benchmarks.lumbar import CONFIDENCE_EDGES, reliability_rows

    assert LOW_CONFIDENCE in CONFIDENCE_EDGES
    for bad in (1.2, -0.1, float("nan")):
        with pytest.raises(ValueError, match="outside"):
            reliability_rows([(0.7, True, False), (bad, False, False)])
