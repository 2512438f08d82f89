"""A body whose heat an artefact splits in two: the body between its halves, looked for where the chain skips a level."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import spinelabel
from spinelabel.anatomy import REGIONS
from spinelabel.detection import split_bodies
from spinelabel.labeling import Candidate, LabeledVertebra, LabelingParams, LabelingResult, label_candidates
from spinelabel.labeling_warnings import ASSEMBLED_BODY_CONFIDENCE, gap_filled
from spinelabel.models import DetectionSettings, ModelConfig
from spinelabel.pipeline import Labeler, skipped_spans
from spinelabel.shape_model import ShapeModel
from spinelabel.warning_codes import LabelWarning
from spinelabel.testing.dummy import dummy_config

LUMBAR_CONFIG = Path(spinelabel.__file__).parent / "models" / "lumbar" / "config.json"
SETTINGS = DetectionSettings(threshold=0.25, merge_inplane_mm=12.0, split_body_max_mm=26.0)


def _cand(x, y, z, score=0.7, level=23.0, anchor=0.1, room=(100.0, 50.0)):
    return Candidate(np.array([x, y, z], float), score, level_estimate=level, level_sd=1.0, anchor=anchor, room_mm=room)


def test_the_body_between_two_halves_is_their_score_weighted_mean_with_the_weaker_score():
    upper = _cand(0.0, 0.0, 0.0, score=0.8, level=23.4, anchor=0.1, room=(100.0, 60.0))
    lower = _cand(2.0, -4.0, -20.0, score=0.6, level=24.1, anchor=0.4, room=(120.0, 40.0))
    (body,) = split_bodies([upper, lower], SETTINGS)
    w = 0.8 / 1.4
    np.testing.assert_allclose(body.position, w * upper.position + (1 - w) * lower.position)
    assert body.score == pytest.approx(0.6)
    assert body.level_estimate == pytest.approx(w * 23.4 + (1 - w) * 24.1)
    assert body.anchor == pytest.approx(w * 0.1 + (1 - w) * 0.4)
    np.testing.assert_allclose(body.room_mm, (w * 100 + (1 - w) * 120, w * 60 + (1 - w) * 40))
    assert body.level_sd == upper.level_sd


def test_what_a_half_lacks_the_body_lacks():
    upper = _cand(0.0, 0.0, 0.0, anchor=None, room=None)
    lower = _cand(0.0, 0.0, -20.0, level=None)
    (body,) = split_bodies([upper, lower], SETTINGS)
    assert body.anchor is None and body.room_mm is None and body.level_estimate is None


@pytest.mark.parametrize(
    ("gap_mm", "paired"),
    [(10.0, False), (12.0, True), (26.0, True), (28.0, False)],  # within the merge distance; 12-26 mm; two bodies
)
def test_only_parts_between_the_merge_distance_and_the_limit_are_paired(gap_mm, paired):
    assert len(split_bodies([_cand(0, 0, 0), _cand(0, 0, -gap_mm)], SETTINGS)) == int(paired)


def test_parts_side_by_side_or_apart_across_the_slices_are_not_one_body():
    upper = _cand(0.0, 0.0, 0.0)
    assert len(split_bodies([upper, _cand(0.0, -6.0, -18.0)], SETTINGS)) == 1  # along the spine, a little back
    assert split_bodies([upper, _cand(0.0, -20.0, -6.0)], SETTINGS) == []  # behind it
    assert split_bodies([upper, _cand(12.0, 0.0, -18.0)], SETTINGS) == []  # 12 mm across the slices
    assert len(split_bodies([upper, _cand(8.0, 0.0, -18.0)], SETTINGS)) == 1  # 8 mm


def test_off_nothing_is_proposed():
    assert split_bodies([_cand(0, 0, 0), _cand(0, 0, -20)], replace(SETTINGS, split_body_max_mm=None)) == []


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf"), "26"])
def test_a_limit_that_is_not_a_positive_distance_is_refused(bad):
    with pytest.raises(ValueError, match="split_body_max_mm"):
        DetectionSettings(split_body_max_mm=bad)


def test_the_setting_survives_the_config_round_trip_and_older_configs_read_as_off():
    cfg = replace(dummy_config(), detection=SETTINGS)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).detection.split_body_max_mm == 26.0
    older = cfg.to_dict()
    del older["detection"]["split_body_max_mm"]
    assert ModelConfig.from_dict(older).detection.split_body_max_mm is None


# ------------------------------------------------------------ the chain's gaps


def _named(label, z):
    return LabeledVertebra(label, 0, np.array([0.0, 0.0, z]), 1.0)


def test_skipped_spans_are_the_gaps_between_levels_that_are_not_neighbours():
    named = [_named("L3", -72.0), _named("S1", -180.0), _named("L4", -108.0), _named("L2", -36.0)]
    assert skipped_spans(named) == [(-180.0, -108.0)]  # L4 -> S1 skips L5
    assert skipped_spans([_named("L5", -144.0), _named("L6", -170.0), _named("S1", -200.0)]) == []
    assert skipped_spans([_named("T12", 0.0), _named("L2", -70.0)]) == [(-70.0, 0.0)]
    assert skipped_spans([]) == []


def _spine_with_split_l5() -> list[Candidate]:
    """L1-S1 36 mm apart along -z, L5 found only as two halves 22 mm apart."""
    out = []
    for k, name in enumerate(["L1", "L2", "L3", "L4", "L5", "S1"]):
        level, anchor, z = (20 + k if name != "S1" else 25), (0.9 if name == "S1" else 0.05), -36.0 * k
        for dz in (11.0, -11.0) if name == "L5" else (0.0,):
            out.append(Candidate(np.array([0.0, 0.0, z + dz]), 0.9 if name != "L5" else 0.7, float(level), 1.0, anchor))
    return out


def test_the_chain_names_the_body_between_the_halves_where_it_skipped_the_level():
    shape = ShapeModel.from_dict(json.loads(LUMBAR_CONFIG.read_text())["shape_model"])
    params = LabelingParams(use_directions=False)
    cands = _spine_with_split_l5()
    without = label_candidates(cands, REGIONS["lumbar"], shape, params)
    assert "L5" not in [v.label for v in without.vertebrae]  # a half named L5 would leave a step of 14 mm
    bodies = split_bodies(cands, SETTINGS)  # the halves' body, and each half with its neighbour (25 mm apart)
    assert len(bodies) == 3 and any(abs(b.position[2] + 144.0) < 1e-9 for b in bodies)
    named = {v.label: v.position for v in label_candidates([*cands, *bodies], REGIONS["lumbar"], shape, params).vertebrae}
    assert list(named) == ["L1", "L2", "L3", "L4", "L5", "S1"]
    np.testing.assert_allclose(named["L5"], [0.0, 0.0, -144.0])


def _labeler(split_mm):
    config = dummy_config(level_sd=1.0)
    config = replace(config, detection=replace(config.detection, split_body_max_mm=split_mm),
                     shape_model=json.loads(LUMBAR_CONFIG.read_text())["shape_model"], labeling={"use_directions": False})
    return Labeler(config, net=None, check_orientation=False)


def test_the_labeler_looks_between_only_where_the_chain_skips_a_level():
    cands = _spine_with_split_l5()
    labeler = _labeler(26.0)
    first = labeler.name(cands)
    assert skipped_spans(first.vertebrae)  # the plain chain skips L5
    more, result = labeler._look_between(cands, first)
    assert len(more) == len(cands) + 1  # only the halves lie in the gap between L4 and S1
    assert [v.label for v in result.vertebrae] == ["L1", "L2", "L3", "L4", "L5", "S1"]
    # the body fills the gap; no name is surer for it, its own is flagged and the count warned
    was = {v.candidate_index: v.confidence for v in first.vertebrae}
    assert all(v.confidence <= was[v.candidate_index] for v in result.vertebrae if v.label != "L5")
    assert [v.confidence <= ASSEMBLED_BODY_CONFIDENCE for v in result.vertebrae if v.label == "L5"] == [True]
    assert "assembled-body" in [w.code for w in result.warnings] and "missed-level" in [w.code for w in first.warnings]
    assert "missed-level" not in [w.code for w in result.warnings]
    # off, the gap stays
    same, unchanged = _labeler(None)._look_between(cands, first)
    assert same is cands and unchanged is first
    # a chain without a gap is left alone, even with halves-like pairs in it
    whole = [c for c in cands if abs(c.position[2] + 144.0) > 5] + [Candidate(np.array([0.0, 0.0, -144.0]), 0.7, 24.0, 1.0, 0.05)]
    plain = labeler.name(whole)
    assert not skipped_spans(plain.vertebrae)
    kept, again = labeler._look_between(whole, plain)
    assert kept is whole and again is plain


# ------------------------------------------------- what a filled gap may change


def _labeling(names, confidences, variant=(), warnings=()):
    """Vertebra k of ``names`` from candidate index k (or the index given as ``(name, index)``)."""
    out = []
    for k, (name, conf) in enumerate(zip(names, confidences)):
        label, index = name if isinstance(name, tuple) else (name, k)
        out.append(LabeledVertebra(label, index, np.array([0.0, 0.0, -36.0 * k]), conf))
    return LabelingResult(out, variant, 1.0, 0.0, list(warnings))


GAP = LabelWarning("missed-level", "missed detection: no vertebra found at L5 (between L4 and S1)")
LOW = LabelWarning("low-confidence", "low confidence for L3 (0.40)")
ANCHOR = LabelWarning("anchor-unconfirmed", "S1 labeled, but ...")
PLAIN = _labeling(["L3", "L4", ("S1", 2)], [0.40, 0.80, 0.90], warnings=[ANCHOR, GAP, LOW])


def test_a_filled_gap_keeps_every_name_no_surer_and_flags_the_body():
    filled = _labeling(["L3", "L4", ("L5", 5), ("S1", 2)], [0.55, 0.70, 0.80, 0.95])
    out = gap_filled(PLAIN, filled, first_assembled=5, params=LabelingParams())
    assert [(v.label, v.candidate_index) for v in out.vertebrae] == [("L3", 0), ("L4", 1), ("L5", 5), ("S1", 2)]
    assert [v.confidence for v in out.vertebrae] == [0.40, 0.70, ASSEMBLED_BODY_CONFIDENCE, 0.90]
    codes = [w.code for w in out.warnings]
    assert codes == ["anchor-unconfirmed", "assembled-body", "low-confidence"]  # the gap is filled: no missed-level
    assert "L5" in out.warnings[1].text and "L3 (0.40), L5 (0.49)" in out.warnings[2].text


def test_a_filled_gap_that_leaves_another_gap_keeps_its_warning():
    plain = _labeling(["L1", "L4", ("S1", 2)], [0.6, 0.8, 0.9], warnings=[GAP, GAP])
    other = LabelWarning("missed-level", "missed detection: no vertebra found at L2, L3 (between L1 and L4)")
    filled = _labeling(["L1", "L4", ("L5", 3), ("S1", 2)], [0.6, 0.8, 0.7, 0.9], warnings=[other])
    warnings = gap_filled(plain, filled, 3, LabelingParams()).warnings
    assert [w.code for w in warnings] == ["missed-level", "assembled-body", "low-confidence"]
    assert warnings[0] is other  # the filled chain's own gaps, not the plain chain's


@pytest.mark.parametrize(
    "filled",
    [
        _labeling(["L4", "L5", ("L5", 5), ("S1", 2)], [0.6, 0.6, 0.6, 0.9]),  # a name of the plain chain moved
        _labeling(["L3", "L4", ("S1", 5)], [0.6, 0.6, 0.6]),  # the body took a plain vertebra's place
        _labeling(["L3", ("L4", 4), ("L5", 5), ("S1", 2)], [0.6, 0.6, 0.6, 0.9]),  # L4 dropped for a body
        _labeling(["L3", "L4", ("L5", 3), ("S1", 2)], [0.6, 0.6, 0.6, 0.9]),  # a detection, not a body, newly named
        _labeling(["L3", "L4", ("L5", 5), ("L6", 6), ("S1", 2)], [0.6] * 5, variant=("L6",)),  # a variant appears
        _labeling(["L3", "L4", ("S1", 2)], [0.9, 0.9, 0.9]),  # nothing added
    ],
    ids=["renamed", "replaced", "dropped", "detection", "variant", "nothing"],
)
def test_a_body_that_would_change_the_count_is_not_taken(filled):
    assert gap_filled(PLAIN, filled, first_assembled=5, params=LabelingParams()) is PLAIN
