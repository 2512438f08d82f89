"""Heatmaps to candidates: peaks, and the level-split parts of fused blobs."""

from dataclasses import replace

import numpy as np

from spinelabel.detection import Heatmaps, candidates_from_heatmaps
from spinelabel.geometry import Volume
from spinelabel.testing.dummy import dummy_config

SPACING_MM = 2.0


def _ridge_maps(split_row: int = 14) -> Heatmaps:
    """One blob with a single maximum (row 20) and a long cranial shoulder.

    The level map reads 1 above ``split_row`` and 2 below: like C1 over C2,
    two vertebrae whose responses fused into one ridge. Model frame (R, I, P):
    rows run inferior, so smaller rows are cranial.
    """
    s, r, c = np.meshgrid(np.arange(7), np.arange(48), np.arange(30), indexing="ij")
    heat = 0.9 * np.exp(-(((r - 20) / 8.0) ** 2 + ((c - 15) / 3.0) ** 2 + ((s - 3) / 2.5) ** 2) / 2)
    level = np.where(r < split_row, 1.0, 2.0).astype(np.float32)
    frame = Volume(np.zeros(heat.shape, np.float32), np.diag([SPACING_MM] * 3 + [1.0]))
    return Heatmaps(frame, heat.astype(np.float32), level)


def _config(split: bool, **kw):
    cfg = dummy_config()
    return replace(cfg, detection=replace(cfg.detection, split_levels=split, **{"threshold": 0.25, **kw}))


def test_a_fused_ridge_gives_one_peak_without_the_split():
    cands = candidates_from_heatmaps(_ridge_maps(), _config(split=False))
    assert len(cands) == 1
    np.testing.assert_allclose(cands[0].position, [6.0, 40.0, 30.0], atol=0.5)  # row 20 at 2 mm


def test_the_level_map_splits_a_fused_ridge_into_two_candidates():
    maps = _ridge_maps(split_row=14)
    cands = sorted(candidates_from_heatmaps(maps, _config(split=True)), key=lambda c: c.position[1])
    assert len(cands) == 2
    upper, peak = cands
    np.testing.assert_allclose(peak.position, [6.0, 40.0, 30.0], atol=0.5)
    assert round(upper.level_estimate) == 1 and round(peak.level_estimate) == 2
    # the upper candidate is the heat-weighted centre of the level-1 part only
    part = (maps.level < 1.5) & (maps.heat >= 0.25)
    w = maps.heat * part
    expected_row = float((np.indices(w.shape)[1] * w).sum() / w.sum())
    assert expected_row < 14
    np.testing.assert_allclose(upper.position[1], expected_row * SPACING_MM, atol=1e-3)
    np.testing.assert_allclose(upper.position[[0, 2]], [6.0, 30.0], atol=1e-3)
    assert 0.25 <= upper.score < peak.score
    # the new candidate knows the image edges like any other
    assert upper.room_mm[0] < peak.room_mm[0]


def test_a_part_near_the_peak_merges_into_it():
    # split just above the peak: the level-1 part's centre is within the merge distance
    cands = candidates_from_heatmaps(_ridge_maps(split_row=19), _config(split=True, merge_inplane_mm=20.0))
    assert len(cands) == 1


def test_small_parts_are_rim_flicker_and_ignored():
    maps = _ridge_maps(split_row=14)
    part_voxels = int(((maps.level < 1.5) & (maps.heat >= 0.25)).sum())
    too_big = (part_voxels + 1) * SPACING_MM**3
    assert len(candidates_from_heatmaps(maps, _config(split=True, split_min_volume_mm3=too_big))) == 1


def test_a_one_level_blob_is_not_split():
    maps = _ridge_maps()
    one_level = Heatmaps(maps.frame, maps.heat, np.full_like(maps.level, 2.0))
    assert len(candidates_from_heatmaps(one_level, _config(split=True))) == 1
