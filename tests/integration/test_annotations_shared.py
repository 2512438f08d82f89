"""The shared lumbar MR annotations load completely and score perfectly against themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from spinelabel.annotations import load_annotations, save_annotations_csv
from spinelabel.evaluation import evaluate

pytestmark = pytest.mark.integration

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
LUMBAR = SHARED / "lumbar-mr"


@pytest.fixture(scope="module")
def annotations():
    if not LUMBAR.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return load_annotations([LUMBAR])


@pytest.fixture(scope="module")
def cases() -> dict[str, list[str]]:
    with open(LUMBAR / "cases.csv", newline="") as f:
        return {row["case"]: row["levels"].split() for row in csv.DictReader(f)}


def test_every_scan_of_cases_csv_with_its_levels(annotations, cases):
    # 52 scans until 2026-12, when 15 more MyoSegmenTUM scans (L1-L5) were added to ../shared
    assert len(cases) >= 52
    assert len(annotations) == len(cases)
    by_id = {a.scan_id: a for a in annotations}
    assert set(by_id) == set(cases)
    for case, levels in cases.items():
        ann = by_id[case]
        assert list(ann.points) == levels, case
        assert ann.duplicates == ()
        assert ann.image is not None and ann.image.name == "image.nii.gz" and ann.image.is_file()
    n_zukic = sum(case.startswith("zukic-") for case in cases)
    assert n_zukic == 17
    assert sum(len(a.points) for a in annotations) == n_zukic * 7 + (len(cases) - n_zukic) * 5


def test_gt_against_itself_is_perfect(annotations):
    preds = {a.scan_id: list(a.points.items()) for a in annotations}
    rep = evaluate(preds, annotations)
    n = len(annotations)
    assert rep.n_scans == n and rep.n_gt == sum(len(a.points) for a in annotations) == 17 * 7 + (n - 17) * 5
    assert rep.sensitivity == 1.0 and rep.precision == 1.0
    assert rep.error_max_mm == 0.0
    assert rep.identification_rate == 1.0 and rep.glocker_identification_rate == 1.0
    assert rep.scan_accuracy == 1.0
    assert rep.outside == 0 and rep.missing_predictions == ()
    assert rep.per_level["L3"] == (n, n) and rep.per_level["T11"] == (17, 17)


def test_real_off_by_one_is_caught(annotations):
    """Renaming every level one step cranially keeps detection perfect but fails identification."""
    shift = {"T11": "T10", "T12": "T11", "L1": "T12", "L2": "L1", "L3": "L2", "L4": "L3", "L5": "L4"}
    preds = {a.scan_id: [(shift[k], p) for k, p in a.points.items()] for a in annotations}
    rep = evaluate(preds, annotations)
    assert rep.sensitivity == 1.0 and rep.precision == 1.0
    assert rep.identification_rate == 0.0 and rep.scan_accuracy == 0.0


def test_csv_round_trip_of_shared_annotations(annotations, tmp_path):
    out = tmp_path / "all.csv"
    save_annotations_csv(annotations, out)
    back = load_annotations([out])
    assert [a.scan_id for a in back] == [a.scan_id for a in annotations]
    for a, b in zip(annotations, back):
        assert list(a.points) == list(b.points)
        assert b.image is not None and b.image.resolve() == a.image.resolve()
