"""The shape model's learned step directions in the sagittal plane, and what they do to the labeling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spinelabel.anatomy import REGIONS, ordinal
from spinelabel.labeling import Candidate, LabelingParams, label_candidates
from spinelabel.shape_model import (
    DIRECTION_MIN_SAMPLES,
    DIRECTION_SD_FLOOR_DEG,
    ShapeModel,
    chain_directions,
    fit_shape_model,
    sagittal_angle,
)

#: Sagittal directions (deg, + posterior) of a supine lumbar spine: lordosis above, the lumbosacral turn below.
TURNS = {"T12-L1": -13.0, "L1-L2": -13.0, "L2-L3": -10.0, "L3-L4": -3.0, "L4-L5": 8.0, "L5-S1": 38.0}
SPACING = {"T12-L1": 34.0, "L1-L2": 36.0, "L2-L3": 37.0, "L3-L4": 38.0, "L4-L5": 38.0, "L5-S1": 36.0}


def lumbar_spine(rng=None, angle_sd=0.0, top=(0.0, 0.0, 0.0)):
    """T12..S1 centres (RAS mm) stepping with ``TURNS`` (+ Gaussian noise of ``angle_sd`` deg)."""
    rng = rng or np.random.default_rng(0)
    pts = {"T12": np.array(top, float)}
    for key, turn in TURNS.items():
        upper, lower = key.split("-")
        t = math.radians(turn + angle_sd * rng.standard_normal())
        pts[lower] = pts[upper] + SPACING[key] * np.array([0.0, -math.sin(t), -math.cos(t)])
    return pts


def test_sagittal_angle_signs_and_ignores_the_lateral_part():
    assert sagittal_angle(np.array([0.0, 0.0, -30.0])) == pytest.approx(0.0)
    assert sagittal_angle(np.array([0.0, -30.0, -30.0])) == pytest.approx(45.0)  # lower point posterior
    assert sagittal_angle(np.array([0.0, 10.0, -30.0])) == pytest.approx(-math.degrees(math.atan(1 / 3)))
    assert sagittal_angle(np.array([25.0, -30.0, -30.0])) == pytest.approx(45.0)
    steps = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])
    assert sagittal_angle(steps).shape == (2,)


def test_fit_learns_directions_from_enough_scans_only():
    rng = np.random.default_rng(3)
    scans = [lumbar_spine(rng, angle_sd=3.0) for _ in range(DIRECTION_MIN_SAMPLES)]
    model = fit_shape_model(scans)
    assert set(model.direction) == set(TURNS)
    for key, turn in TURNS.items():
        mean, sd = model.direction[key]
        assert mean == pytest.approx(turn, abs=3.0)
        assert sd == DIRECTION_SD_FLOOR_DEG  # a 3 deg spread is below the floor
    fewer = fit_shape_model(scans[: DIRECTION_MIN_SAMPLES - 1])
    assert fewer.direction == {} and set(fewer.spacing) == set(TURNS)


def test_fit_direction_sd_follows_a_wide_spread():
    rng = np.random.default_rng(4)
    model = fit_shape_model([lumbar_spine(rng, angle_sd=15.0) for _ in range(60)])
    assert 11.0 < model.direction["L5-S1"][1] < 19.0


def test_direction_round_trip_and_old_configs():
    model = ShapeModel({"L4-L5": (38.0, 3.5)}, {"L4-L5": (8.0, 8.0), "L5-S1": (38.0, 9.5)})
    assert ShapeModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    old = {"spacing": {"L4-L5": [38.0, 3.5]}}  # written before directions were learned
    assert ShapeModel.from_dict(old) == ShapeModel({"L4-L5": (38.0, 3.5)})
    assert "direction" not in ShapeModel({"L4-L5": (38.0, 3.5)}).to_dict()


def test_chain_directions_sum_steps_as_vectors():
    model = ShapeModel({k: (v, 3.0) for k, v in SPACING.items()}, {"L4-L5": (0.0, 8.0), "L5-S1": (90.0, 8.0)})
    levels = ("L3", "L4", "L5", "S1")
    angle, sd = chain_directions(model, levels)
    assert angle[1, 2] == pytest.approx(0.0) and sd[1, 2] == pytest.approx(8.0)
    # 38 mm straight down then 36 mm straight back: atan(36 / 38)
    assert angle[1, 3] == pytest.approx(math.degrees(math.atan2(36.0, 38.0)))
    spread = math.hypot(38.0 * math.radians(8.0), 36.0 * math.radians(8.0)) / math.hypot(38.0, 36.0)
    assert sd[1, 3] == pytest.approx(math.degrees(spread))
    assert np.isinf(sd[0, 1]) and np.isinf(sd[0, 3])  # L3-L4 not learned: no term, also across it
    assert np.isinf(sd[2, 1]) and np.isinf(sd[1, 1])


def test_variant_steps_borrow_the_steps_they_repeat():
    model = ShapeModel({}, {"L4-L5": (8.0, 8.0), "L5-S1": (38.0, 9.0), "T11-T12": (-12.0, 8.0), "T12-L1": (-13.0, 8.0)})
    assert model.step_direction("L5", "L6") == (8.0, 8.0)
    assert model.step_direction("L6", "S1") == (38.0, 9.0)
    assert model.step_direction("T12", "T13") == (-12.0, 8.0)
    assert model.step_direction("T13", "L1") == (-13.0, 8.0)
    assert model.step_direction("L3", "L4") is None


def _detections(pts, shift, anchor):
    """Detector output on the true centres: every level estimate ``shift`` off, a weak anchor response at S1."""
    return [
        Candidate(p, 0.85, ordinal(level) + shift, 1.0, anchor=anchor if level == "S1" else 0.05)
        for level, p in pts.items()
    ]


def test_the_lumbosacral_turn_names_s1_when_level_estimates_lean_a_level_high():
    """The other-hospital failure (issue 11): estimates ~0.8 level low, the anchor head unsure at S1.

    Without directions the chain names S1 "L5" (the estimates win); with them
    the turn of the last step says which step is L5 -> S1, flagged: the
    appearance alone says otherwise.
    """
    rng = np.random.default_rng(9)
    scans = [lumbar_spine(rng, angle_sd=4.0) for _ in range(12)]
    learned = fit_shape_model(scans)
    distances_only = ShapeModel(learned.spacing)
    pts = {k: v for k, v in lumbar_spine(np.random.default_rng(1), angle_sd=2.0).items() if k != "T12"}
    cands = _detections(pts, shift=-0.8, anchor=0.25)
    params = LabelingParams()
    before = label_candidates(cands, REGIONS["lumbar"], distances_only, params)
    after = label_candidates(cands, REGIONS["lumbar"], learned, params)
    truth = list(pts)
    assert [v.label for v in before.vertebrae] == ["T12", "L1", "L2", "L3", "L4", "L5"]  # shifted, S1 named L5
    assert [v.label for v in after.vertebrae] == truth
    assert all(truth[v.candidate_index] == v.label for v in after.vertebrae)
    # the count rests on the curvature alone: not sure (the lower posterior of the two models), and
    # a warning names what the appearance would say
    assert max(v.confidence for v in after.vertebrae) < 0.5
    (warning,) = [w.text for w in after.warnings if w.code == "direction-dependent"]
    assert "S1 (L5)" in warning and "L1 (T12)" in warning
    clear = label_candidates(_detections(pts, shift=0.0, anchor=0.9), REGIONS["lumbar"], learned, params)
    assert [v.label for v in clear.vertebrae] == truth
    assert not any(w.code == "direction-dependent" for w in clear.warnings)
    assert min(v.confidence for v in clear.vertebrae) > 0.7


def test_a_slipped_vertebra_costs_a_few_nats_and_keeps_its_name():
    """A grade-2 slip (13 mm) turns the L4 -> L5 step by ~20 deg: charged, not fatal."""
    model = ShapeModel({k: (v, 3.5) for k, v in SPACING.items()}, {k: (v, 8.0) for k, v in TURNS.items()})
    pts = {k: v for k, v in lumbar_spine().items() if k in ("L2", "L3", "L4", "L5")}
    normal = label_candidates(_detections(pts, 0.0, 0.05), REGIONS["lumbar"], model)
    t = math.radians(TURNS["L4-L5"] + 20.0)
    slipped = dict(pts, L5=pts["L4"] + SPACING["L4-L5"] * np.array([0.0, -math.sin(t), -math.cos(t)]))
    result = label_candidates(_detections(slipped, 0.0, 0.05), REGIONS["lumbar"], model)
    assert [v.label for v in result.vertebrae] == list(pts)
    assert 1.0 < result.cost - normal.cost < 3.5


def test_the_direction_cost_is_a_likelihood_ratio_with_a_heavy_tail():
    from spinelabel.labeling import _heading_costs

    theta, tau = np.array([[0.0]]), np.array([[8.0]])
    cost = _heading_costs(np.array([0.0, 8.0, 16.0, 24.0, 40.0]), theta, tau, 4.0, 120.0)[0, 0]
    assert cost[0] == pytest.approx(-math.log(120.0 * math.gamma(2.5) / (math.gamma(2.0) * math.sqrt(4 * math.pi) * 8.0)))
    assert cost[0] < cost[1] < 0.0 < cost[3]  # fits: a gain; beyond ~2 sd: a cost
    assert cost[4] - cost[0] == pytest.approx(2.5 * math.log(1 + 25 / 4))  # 5 sd: ~5 nats, not a Gaussian's 12.5
    assert _heading_costs(np.array([40.0]), theta, np.array([[np.inf]]), 4.0, 120.0)[0, 0, 0] == 0.0


def test_directions_can_be_switched_off_per_region():
    """``use_directions=False`` (whole-spine labeling) labels as the spacings-only model does."""
    rng = np.random.default_rng(9)
    learned = fit_shape_model([lumbar_spine(rng, angle_sd=4.0) for _ in range(12)])
    pts = {k: v for k, v in lumbar_spine(np.random.default_rng(1), angle_sd=2.0).items() if k != "T12"}
    cands = _detections(pts, shift=-0.8, anchor=0.25)
    off = label_candidates(cands, REGIONS["lumbar"], learned, LabelingParams(use_directions=False))
    plain = label_candidates(cands, REGIONS["lumbar"], ShapeModel(learned.spacing))
    assert [v.label for v in off.vertebrae] == [v.label for v in plain.vertebrae] == ["T12", "L1", "L2", "L3", "L4", "L5"]
    assert [v.confidence for v in off.vertebrae] == [v.confidence for v in plain.vertebrae]
    assert off.warnings == plain.warnings


def test_shipped_models_use_directions_where_they_were_measured():
    """The lumbar model carries learned directions (the lumbosacral turn); whole-spine labeling leaves them out."""
    from spinelabel.models import read_config, resolve_model_dir
    from spinelabel.pipeline import labeling_overrides

    lumbar = read_config(resolve_model_dir("lumbar"))
    turns = ShapeModel.from_dict(lumbar.shape_model).direction
    assert 25.0 < turns["L5-S1"][0] < 45.0 and turns["L4-L5"][0] < 15.0
    assert LabelingParams(**labeling_overrides(lumbar.labeling, "lumbar")).use_directions
    cervical = read_config(resolve_model_dir("cervical"))
    assert not any(key.startswith("C") for key in ShapeModel.from_dict(cervical.shape_model).direction)
    assert LabelingParams(**labeling_overrides(cervical.labeling, "cervical")).use_directions
    assert not LabelingParams(**labeling_overrides(cervical.labeling, "whole")).use_directions


def test_shipped_whole_spine_labeling_trusts_only_the_c2_anchor():
    """The cervical model's S1 output comes from phantoms only: whole-spine labeling trusts C2 alone, without the offset."""
    from spinelabel.models import read_config, resolve_model_dir
    from spinelabel.pipeline import labeling_overrides
    from spinelabel.training.train import REGION_LABELING

    cervical = read_config(resolve_model_dir("cervical"))
    whole = LabelingParams(**labeling_overrides(cervical.labeling, "whole"))
    assert whole.anchor_levels == ("C2",)
    assert whole.level_offset_grid == (0.0,)  # no trusted anchor in a thoracolumbar view: one estimate per candidate
    assert LabelingParams(**labeling_overrides(cervical.labeling, "cervical")).anchor_levels is None
    assert cervical.labeling == REGION_LABELING["cervical"]  # the shipped config is the recipe's


def test_a_fit_on_few_scans_keeps_what_its_prior_learned_where_they_are_too_few():
    """A hospital fine-tuning on a handful of its scans (L1-S1 labels only) kept neither the lumbosacral turn (it
    needs ``DIRECTION_MIN_SAMPLES`` scans) nor the thoracic spacings its labels lack: the prior keeps them."""
    rng = np.random.default_rng(5)
    prior = fit_shape_model([lumbar_spine(rng, angle_sd=3.0) for _ in range(DIRECTION_MIN_SAMPLES)])
    few = [{k: v for k, v in lumbar_spine(rng).items() if k != "T12"} for _ in range(3)]
    for scan in few:  # a population with longer L1-L2 steps
        for level in ("L2", "L3", "L4", "L5", "S1"):
            scan[level] = scan[level] + np.array([0.0, 0.0, -6.0])
    alone, kept = fit_shape_model(few), fit_shape_model(few, prior=prior)
    assert alone.direction == {} and "T12-L1" not in alone.spacing
    assert kept.direction == prior.direction and kept.spacing["T12-L1"] == prior.spacing["T12-L1"]
    assert kept.spacing["L1-L2"] == alone.spacing["L1-L2"] != prior.spacing["L1-L2"]  # what the scans learned wins
    more = [lumbar_spine(rng, angle_sd=3.0, top=(0.0, 0.0, 0.0)) for _ in range(DIRECTION_MIN_SAMPLES)]
    assert fit_shape_model(more, prior=ShapeModel({}, {"L5-S1": (70.0, 8.0)})).direction == fit_shape_model(more).direction
