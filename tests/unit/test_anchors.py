"""Anchor pseudo-labels: S1 (or C2) added from detector candidates next to the annotated neighbour."""

from __future__ import annotations

import numpy as np
import pytest

from spinelabel.anatomy import REGIONS
from spinelabel.labeling import Candidate
from spinelabel.shape_model import ShapeModel
from spinelabel.training.anchors import complete_anchors, find_anchor

PRIOR = ShapeModel({})


def lumbar_points(spacing=36.0):
    """L1..L5 straight down -z from the origin (RAS mm)."""
    return {lv: np.array([0.0, 0.0, -spacing * k]) for k, lv in enumerate(("L1", "L2", "L3", "L4", "L5"))}


def below_l5(points, dz, dy=0.0, score=0.9):
    return Candidate(points["L5"] + np.array([0.0, dy, -dz]), score)


def test_s1_is_the_strong_candidate_one_spacing_below_l5():
    pts = lumbar_points()
    # lordosis: S1 posterior as well as caudal; a weaker duplicate and S2 further down
    s1 = below_l5(pts, 30.0, dy=-20.0)
    cands = [Candidate(p, 0.95) for p in pts.values()] + [s1, below_l5(pts, 33.0, dy=-18.0, score=0.6), below_l5(pts, 70.0)]
    np.testing.assert_allclose(find_anchor(pts, "S1", cands, PRIOR), s1.position)


@pytest.mark.parametrize(
    "cand",
    [
        Candidate(np.array([0.0, 0.0, -144.0 - 75.0]), 0.9),  # two spacings down: S2, not S1
        Candidate(np.array([0.0, 0.0, -144.0 - 36.0]), 0.3),  # too weak
        Candidate(np.array([0.0, -36.0, -144.0 - 5.0]), 0.9),  # beside L5, not below it
        Candidate(np.array([0.0, 0.0, -144.0 + 36.0]), 0.9),  # above L5 (it is L4)
    ],
)
def test_no_candidate_that_does_not_fit_becomes_s1(cand):
    assert find_anchor(lumbar_points(), "S1", [cand], PRIOR) is None


def test_a_small_patient_scales_the_expected_distance():
    pts = lumbar_points(spacing=28.0)  # ~0.78 of the prior spacings
    near, far = below_l5(pts, 29.0), below_l5(pts, 48.0)
    np.testing.assert_allclose(find_anchor(pts, "S1", [far, near], PRIOR), near.position)


def test_nothing_is_added_when_s1_is_annotated_or_l5_is_not():
    pts = lumbar_points()
    cand = [below_l5(pts, 36.0)]
    assert find_anchor({**pts, "S1": pts["L5"] - [0, 0, 36.0]}, "S1", cand, PRIOR) is None
    assert find_anchor({k: v for k, v in pts.items() if k != "L5"}, "S1", cand, PRIOR) is None
    assert find_anchor(pts, "S1", [], PRIOR) is None


def test_with_l6_annotated_s1_is_looked_for_below_l6():
    pts = {**lumbar_points(), "L6": np.array([0.0, 0.0, -180.0])}
    below_l6 = Candidate(np.array([0.0, 0.0, -216.0]), 0.9)
    below_l5_only = Candidate(np.array([0.0, 0.0, -170.0]), 0.9)  # too close to L6
    np.testing.assert_allclose(find_anchor(pts, "S1", [below_l5_only, below_l6], PRIOR), below_l6.position)


def test_c2_is_completed_above_c3_for_the_cervical_region():
    pts = {lv: np.array([0.0, 0.0, -17.0 * k]) for k, lv in enumerate(("C3", "C4", "C5", "C6"))}
    c2 = Candidate(np.array([0.0, 2.0, 20.0]), 0.8)
    found = complete_anchors(pts, REGIONS["cervical"], [c2, Candidate(np.array([0.0, 0.0, -90.0]), 0.9)], PRIOR)
    assert list(found) == ["C2"]
    np.testing.assert_allclose(found["C2"], c2.position)
    assert complete_anchors(pts, REGIONS["lumbar"], [c2], PRIOR) == {}  # lumbar's anchor is S1


def _l2_l5_archive(tmp_path):
    """A blob scan with five bodies, labeled L2-L5 (S1 unlabeled), as a CSV; returns (csv, centres, finder)."""
    import nibabel as nib

    from spinelabel.pipeline import Labeler
    from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config

    vol, centres = blob_spine(n=5, spacing_mm=36.0)
    nib.save(nib.Nifti1Image(vol.data, vol.affine), tmp_path / "scan.nii.gz")
    rows = ["scan,label,x,y,z,image"] + [
        f"case-1,{lv},{c[0]},{c[1]},{c[2]},scan.nii.gz" for lv, c in zip(("L2", "L3", "L4", "L5"), centres)
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv", centres, Labeler(dummy_config(), BlobNet())


def test_training_scans_get_s1_from_the_detector_and_record_it(tmp_path):
    from spinelabel.training.data import load_training_scans

    labels, centres, finder = _l2_l5_archive(tmp_path)
    scans, points = load_training_scans([labels], anchor_finders={"lumbar": finder})
    assert scans[0].pseudo_levels == ("S1",)
    assert scans[0].levels == ["L2", "L3", "L4", "L5", "S1"]
    np.testing.assert_allclose(points[0]["S1"], centres[4], atol=1.5)
    plain, plain_points = load_training_scans([labels])
    assert plain[0].pseudo_levels == () and "S1" not in plain_points[0]


def test_the_finder_is_chosen_by_the_region_the_labels_cover(tmp_path):
    # a cervical model also serves whole spines, so its training completes
    # lumbar scans with S1 (through the lumbar finder), not with C2
    from spinelabel.training.data import load_training_scans

    labels, _, finder = _l2_l5_archive(tmp_path)
    only_cervical = load_training_scans([labels], anchor_finders={"cervical": finder})[0]
    assert only_cervical[0].pseudo_levels == ()
    both = load_training_scans([labels], anchor_finders={"cervical": finder, "lumbar": finder})[0]
    assert both[0].pseudo_levels == ("S1",)
