"""A body whose heat an artefact splits in two: the candidate between its halves (``detection.split_bodies``)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import spinelabel
from spinelabel.anatomy import REGIONS
from spinelabel.detection import Heatmaps, candidates_from_heatmaps, split_bodies
from spinelabel.geometry import Volume
from spinelabel.labeling import Candidate, LabelingParams, label_candidates
from spinelabel.models import DetectionSettings, ModelConfig
from spinelabel.shape_model import ShapeModel
from spinelabel.testing.dummy import dummy_config

SPACING_MM = 2.0
SPACING = np.full(3, SPACING_MM)
RIP_AFFINE = np.array([[SPACING_MM, 0, 0, 0], [0, 0, -SPACING_MM, 0], [0, -SPACING_MM, 0, 0], [0, 0, 0, 1.0]])
LUMBAR_CONFIG = Path(spinelabel.__file__).parent / "models" / "lumbar" / "config.json"


def _halves(gap_rows: int, heights: tuple[float, float] = (0.7, 0.6)) -> Heatmaps:
    """Two blobs ``gap_rows`` rows apart on one column, the upper reading level 3 and anchor 0.1, the lower 4 and 0.3.

    Model frame (R, I, P) at 2 mm: slices run right, rows inferior, columns posterior.
    """
    s, r, c = np.meshgrid(np.arange(9), np.arange(60), np.arange(30), indexing="ij")
    top, bottom = 15, 15 + gap_rows
    heat = sum(h * np.exp(-(((r - row) / 2.0) ** 2 + ((c - 15) / 2.5) ** 2 + ((s - 4) / 2.5) ** 2) / 2)
               for h, row in zip(heights, (top, bottom)))
    middle = (top + bottom) / 2
    level = np.where(r < middle, 3.0, 4.0).astype(np.float32)
    anchor = np.where(r < middle, 0.1, 0.3).astype(np.float32)
    return Heatmaps(Volume(np.zeros(heat.shape, np.float32), RIP_AFFINE), heat.astype(np.float32), level, anchor)


def _config(split_mm: float | None):
    cfg = dummy_config()
    return replace(cfg, detection=replace(cfg.detection, threshold=0.25, split_body_max_mm=split_mm))


def test_off_the_halves_stay_two_candidates():
    cands = candidates_from_heatmaps(_halves(11), _config(None))
    assert len(cands) == 2


def test_on_the_body_between_the_halves_is_proposed_too():
    cands = sorted(candidates_from_heatmaps(_halves(11), _config(26.0)), key=lambda c: -c.position[2])
    assert len(cands) == 3
    upper, body, lower = cands
    w = np.array([upper.score, lower.score]) / (upper.score + lower.score)
    np.testing.assert_allclose(body.position, w[0] * upper.position + w[1] * lower.position, atol=1e-6)
    assert upper.position[2] > body.position[2] > lower.position[2]
    assert body.score == pytest.approx(min(upper.score, lower.score))
    assert body.level_estimate == pytest.approx(w[0] * upper.level_estimate + w[1] * lower.level_estimate)
    assert body.anchor == pytest.approx(w[0] * upper.anchor + w[1] * lower.anchor)
    # it knows the image edges like any candidate: the room above lies between its halves'
    assert upper.room_mm[0] < body.room_mm[0] < lower.room_mm[0]


@pytest.mark.parametrize(
    ("gap_rows", "paired"),
    [(5, False), (6, True), (13, True), (14, False)],  # 10 mm: within the merge distance (12); 12-26 mm; 28 mm: two bodies
)
def test_only_parts_between_the_merge_distance_and_the_limit_are_paired(gap_rows, paired):
    settings = DetectionSettings(threshold=0.25, merge_inplane_mm=12.0, split_body_max_mm=26.0)
    parts = [(np.array([4.0, 15.0, 15.0]), 0.7, 3.0, 0.1), (np.array([4.0, 15.0 + gap_rows, 15.0]), 0.6, 4.0, 0.3)]
    assert len(split_bodies(parts, SPACING, settings)) == int(paired)


def test_parts_side_by_side_or_far_apart_across_the_slices_are_not_one_body():
    settings = DetectionSettings(threshold=0.25, split_body_max_mm=26.0)
    upper = (np.array([4.0, 15.0, 15.0]), 0.7, 3.0, None)
    along = (np.array([4.0, 24.0, 18.0]), 0.6, 4.0, None)  # 18 mm down, 6 mm back: along the spine
    behind = (np.array([4.0, 18.0, 25.0]), 0.6, 4.0, None)  # 20 mm back, 6 mm down: beside it
    lateral = (np.array([10.0, 24.0, 15.0]), 0.6, 4.0, None)  # 12 mm across the slices
    near = (np.array([8.0, 24.0, 15.0]), 0.6, 4.0, None)  # 8 mm across the slices
    assert len(split_bodies([upper, along], SPACING, settings)) == 1
    assert split_bodies([upper, behind], SPACING, settings) == []
    assert split_bodies([upper, lateral], SPACING, settings) == []
    assert len(split_bodies([upper, near], SPACING, settings)) == 1
    body = split_bodies([upper, along], SPACING, settings)[0]
    assert body[3] is None  # no anchor output, no anchor


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf"), "26"])
def test_a_limit_that_is_not_a_positive_distance_is_refused(bad):
    with pytest.raises(ValueError, match="split_body_max_mm"):
        DetectionSettings(split_body_max_mm=bad)


def test_the_setting_survives_the_config_round_trip_and_older_configs_read_as_off():
    cfg = _config(26.0)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).detection.split_body_max_mm == 26.0
    older = cfg.to_dict()
    del older["detection"]["split_body_max_mm"]
    assert ModelConfig.from_dict(older).detection.split_body_max_mm is None


def test_the_shipped_lumbar_model_proposes_split_bodies():
    cfg = ModelConfig.from_dict(json.loads(LUMBAR_CONFIG.read_text()))
    assert cfg.detection.split_body_max_mm is not None
    assert cfg.detection.merge_inplane_mm < cfg.detection.split_body_max_mm


def _spine_with_split_l5(with_body: bool) -> list[Candidate]:
    """L1-S1 candidates 36 mm apart along -z, L5 found only as two halves 22 mm apart (and, if asked, the body)."""
    names = ["L1", "L2", "L3", "L4", "L5", "S1"]
    out = []
    for k, name in enumerate(names):
        z = -36.0 * k
        level = 20 + k if name != "S1" else 25
        anchor = 0.9 if name == "S1" else 0.05
        if name != "L5":
            out.append(Candidate(np.array([0.0, 0.0, z]), 0.9, level_estimate=float(level), level_sd=1.0, anchor=anchor))
            continue
        for dz in (11.0, -11.0):
            out.append(Candidate(np.array([0.0, 0.0, z + dz]), 0.7, level_estimate=float(level), level_sd=1.0, anchor=anchor))
        if with_body:
            out.append(Candidate(np.array([0.0, 0.0, z]), 0.7, level_estimate=float(level), level_sd=1.0, anchor=anchor))
    return out


def test_the_chain_names_the_body_between_the_halves_where_it_skipped_the_level():
    shape = ShapeModel.from_dict(json.loads(LUMBAR_CONFIG.read_text())["shape_model"])
    params = LabelingParams(use_directions=False)
    without = label_candidates(_spine_with_split_l5(False), REGIONS["lumbar"], shape, params)
    assert "L5" not in [v.label for v in without.vertebrae]  # a half named L5 would leave a step of 14 mm
    with_body = label_candidates(_spine_with_split_l5(True), REGIONS["lumbar"], shape, params)
    named = {v.label: v.position for v in with_body.vertebrae}
    assert list(named) == ["L1", "L2", "L3", "L4", "L5", "S1"]
    np.testing.assert_allclose(named["L5"], [0.0, 0.0, -144.0])
