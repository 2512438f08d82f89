"""The warnings and the confidence ceiling of a chosen labeling, as pure functions (``labeling_warnings``)."""

import numpy as np

from spinelabel.labeling_params import LabeledVertebra, LabelingParams
from spinelabel.labeling_warnings import (
    anchor_rivals,
    capped,
    direction_check,
    end_warnings,
    gap_warnings,
    labeling_warnings,
)
from spinelabel.warning_codes import LabelWarning, codes, count_at_risk

LUMBAR = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


def _named(labels: list[str], confidence: float = 0.8) -> list[LabeledVertebra]:
    return [LabeledVertebra(lv, i, np.array([0.0, 0.0, -30.0 * i]), confidence) for i, lv in enumerate(labels)]


def test_a_skipped_level_is_named():
    assert gap_warnings(["L2", "L4", "L5"], LUMBAR) == [
        LabelWarning("missed-level", "missed detection: no vertebra found at L3 (between L2 and L4)")
    ]
    assert gap_warnings(["L2", "L3"], LUMBAR) == []


def test_levels_missed_beyond_the_ends_are_named_on_their_side_but_not_c1():
    vertebrae = _named(["C2", "C3", "C4", "C5", "C6", "C7"])
    (below,) = end_warnings(vertebrae, ["C1"], ["T1"])
    assert below.code == "missed-at-end"
    assert below.text.startswith("missed detection: no vertebra found at T1 below C7")
    (above,) = end_warnings(_named(["L1", "L2"]), ["T12"], [])
    assert "T12 above L1" in above.text and above.text.endswith("look above")
    assert end_warnings(vertebrae, ["C1"], []) == []
    assert end_warnings([], ["T12"], ["S1"]) == []


def test_no_name_is_surer_than_the_ceiling_without_an_anchor():
    params = LabelingParams()
    unanchored = capped(_named(["L2", "L3", "L4"]), ("S1",), params)
    assert [v.confidence for v in unanchored] == [params.unanchored_confidence] * 3
    anchored = capped(_named(["L4", "L5", "S1"]), ("S1",), params)
    assert [v.confidence for v in anchored] == [0.8] * 3
    off = LabelingParams(unanchored_confidence=None)  # the region survey's setting
    assert [v.confidence for v in capped(_named(["L2", "L3"]), ("S1",), off)] == [0.8, 0.8]


def test_the_warnings_say_what_the_count_rests_on():
    params = LabelingParams()
    vertebrae = _named(["L3", "L4", "L5", "S1"])
    assert labeling_warnings(vertebrae, 4, params, ("S1",), [0.9], (LUMBAR, (), 0.0)) == []
    unconfirmed = labeling_warnings(vertebrae, 4, params, ("S1",), [0.3], (LUMBAR, (), 0.0))
    assert codes(unconfirmed) == ["anchor-unconfirmed"]
    assert "anchor detector does not confirm it (probability 0.30" in unconfirmed[0].text
    shifted = labeling_warnings(vertebrae, 4, params, ("S1",), [0.9], (LUMBAR, (), -params.offset_warning_levels))
    assert codes(shifted) == ["level-offset"] and "read 1.0 level(s) above the names" in shifted[0].text
    variant = labeling_warnings(vertebrae, 4, params, ("S1",), [0.9], (LUMBAR, ("L6",), 0.0))
    assert variant == [LabelWarning("transitional", "transitional anatomy: L6 labeled — verify counting (T13 gives the same "
                                    "count of vertebrae above the sacrum: the ribs tell them apart)")]
    assert codes(labeling_warnings([], 0, params)) == ["no-candidates", "few-vertebrae"]
    unanchored = labeling_warnings(_named(["L2", "L3", "L4"], 0.49), 3, params, ("S1",), [], (LUMBAR, (), 0.0))
    assert codes(unanchored) == ["no-anchor", "low-confidence"] and count_at_risk(unanchored)
    low = labeling_warnings(_named(["L4", "L5", "S1"], 0.4), 3, params, ("S1",), [0.9], (LUMBAR, (), 0.0))
    assert codes(low) == ["low-confidence"] and not count_at_risk(low)


def test_a_left_out_detection_rated_a_better_anchor_is_a_rival():
    params = LabelingParams()
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -35.0], [0.0, -10.0, -70.0]])
    score = np.array([0.9, 0.9, params.anchor_rival_score + 0.1])
    anchor = np.array([0.01, 0.6, 0.9])  # the left-out candidate below the named S1 looks more like one
    named = {0: "L5", 1: "S1"}
    (warning,) = anchor_rivals(named, pos, score, anchor, ("S1",), params)
    assert warning.code == "anchor-rival" and warning.text.startswith("S1 named on a candidate of anchor probability 0.60, but a detection below it")
    weak = score.copy()
    weak[2] = params.anchor_rival_score - 0.1
    assert anchor_rivals(named, pos, weak, anchor, ("S1",), params) == []


def test_names_that_move_without_the_directions_are_listed():
    vertebrae = _named(["L4", "L5", "S1"])
    assert direction_check(vertebrae, {0: "L4", 1: "L5", 2: "S1"}) == []
    (warning,) = direction_check(vertebrae, {0: "L3", 1: "L4", 2: "L5"})
    assert warning.code == "direction-dependent" and "they would be L4 (L3), L5 (L4), S1 (L5)" in warning.text


def test_the_orientation_is_questioned_only_for_a_sure_labeling_without_a_count_warning():
    from spinelabel.labeling_warnings import orientation_in_question

    params = LabelingParams()
    sure, unsure = _named(["L3", "L4", "L5"]), _named(["L3", "L4", "L5"], confidence=params.low_confidence - 0.01)
    count = LabelWarning("level-offset", "the level estimates disagree")
    detection = LabelWarning("missed-level", "missed detection")
    assert orientation_in_question(sure, [], params)
    assert orientation_in_question(sure, [detection], params)  # a missed body says nothing about the count
    assert not orientation_in_question(sure, [count], params)  # the reader already counts
    assert not orientation_in_question(unsure, [], params)
    assert not orientation_in_question([], [], params)
    edge = _named(["L4"], confidence=params.low_confidence)  # exactly at the threshold is sure
    assert orientation_in_question(edge, [], params)


def test_an_image_named_more_surely_turned_head_to_foot_is_warned_as_upside_down():
    from spinelabel.labeling_warnings import ORIENTATION_MARGIN, orientation_check

    given = _named(["L3", "L4", "L5", "S1"], confidence=0.8)  # summed 3.2
    assert orientation_check(given, _named(["L2", "L3", "L4"], confidence=0.9)) == []  # 2.7: upright wins
    (warning,) = orientation_check(given, _named(["L2", "L3", "L4", "L5"], confidence=0.85))  # 3.4
    assert warning.code == "upside-down" and count_at_risk([warning])
    assert "3.4 against 3.2" in warning.text and "upside down" in warning.text
    # a tie warns (ORIENTATION_MARGIN 0): the turned image is as sure as the header's
    assert ORIENTATION_MARGIN == 0.0
    assert codes(orientation_check(given, _named(["L1", "L2", "L3", "L4"], confidence=0.8))) == ["upside-down"]
    assert orientation_check(given, []) == []  # nothing named turned
