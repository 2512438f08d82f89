"""Heatmaps to candidates: peaks, and the level-split parts of fused blobs."""

from dataclasses import replace

import numpy as np
import pytest

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


# ------------------------------------------------- looking beyond the chain's end


def test_a_turn_of_the_slices_moves_a_pixel_about_the_centre_and_back():
    from spinelabel.detection import turn_slices

    stack = np.zeros((2, 41, 41), np.float32)
    stack[:, 20, 30] = 1.0  # 10 pixels posterior of the centre (20, 20)
    turned = turn_slices(stack, 90.0, (20.0, 20.0))
    assert np.unravel_index(np.argmax(turned[1]), turned[1].shape) == (10, 20)  # a quarter turn: 10 pixels cranial
    smooth = np.random.default_rng(0).normal(size=(2, 41, 41)).astype(np.float32)
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(smooth, (0, 6, 6))
    back = turn_slices(turn_slices(smooth, 17.0, (15.0, 25.0)), -17.0, (15.0, 25.0))
    inner = (slice(None), slice(12, 29), slice(12, 29))  # covered by the turned grid, away from its corners
    np.testing.assert_allclose(back[inner], smooth[inner], atol=0.05 * float(np.abs(smooth).max()))


def _turn_config():
    cfg = dummy_config()
    return replace(cfg, detection=replace(cfg.detection, caudal_turns_deg=(-20.0, 20.0)))


def test_candidates_beyond_the_chain_end_come_back_to_their_place_without_level_or_anchor():
    from spinelabel.detection import candidates_beyond, model_frame_image
    from spinelabel.testing.dummy import BlobNet, blob_spine
    from spinelabel.pipeline import Labeler

    vol, centres = blob_spine(5)
    labeler = Labeler(_turn_config(), BlobNet())
    plain = labeler.detect(vol)
    known = [c for c in plain if c.position[2] >= centres[1, 2] - 5]  # the chain found the top two only
    frame = model_frame_image(vol, labeler.config)
    extra = candidates_beyond(frame, labeler.config, labeler.net, centres[1], known)
    pos = np.array([c.position for c in extra])
    assert len(extra) == 3  # the three bodies below, once each (two turns, no duplicates)
    np.testing.assert_allclose(pos[np.argsort(-pos[:, 2])], centres[2:], atol=1.5)
    assert all(c.level_estimate is None and c.anchor is None for c in extra)
    assert candidates_beyond(frame, labeler.config, labeler.net, centres[1], plain) == []  # all known already


def test_the_labeler_continues_a_chain_with_the_bodies_found_beyond_its_end():
    from spinelabel.pipeline import Labeler
    from spinelabel.testing.dummy import BlobNet, blob_spine

    vol, centres = blob_spine(5)
    top = [c for c in Labeler(dummy_config(), BlobNet()).detect(vol) if c.position[2] >= centres[1, 2] - 5]
    plain = Labeler(dummy_config(), BlobNet()).label(vol, top)
    turned = Labeler(_turn_config(), BlobNet()).label(vol, top)
    assert len(plain.vertebrae) == 2
    assert len(turned.vertebrae) == 5
    np.testing.assert_allclose([v.position_mm for v in turned.vertebrae], centres, atol=1.5)
    whole = Labeler(dummy_config(), BlobNet()).label(vol)  # every body found in the plain pass
    assert [v.label for v in turned.vertebrae] == [v.label for v in whole.vertebrae]


def _blob_maps(centres: list[tuple[float, float, float, float]], n_slices: int = 7) -> Heatmaps:
    """Gaussian blobs (in-plane sd 2.5 px, the training target's) on a stack of slices.

    ``centres``: (slice, row, col, amplitude) per slice-blob; a blob is drawn on
    one slice only, so a body seen by several slices is several entries.
    """
    r, c = np.meshgrid(np.arange(48), np.arange(30), indexing="ij")
    heat = np.zeros((n_slices, 48, 30), np.float32)
    for s, r0, c0, amp in centres:
        heat[int(s)] = np.maximum(heat[int(s)], amp * np.exp(-((r - r0) ** 2 + (c - c0) ** 2) / (2 * 2.5**2)))
    frame = Volume(np.zeros(heat.shape, np.float32), np.diag([SPACING_MM] * 3 + [1.0]))
    return Heatmaps(frame, heat, np.ones_like(heat))


def test_a_sub_pixel_centre_is_recovered():
    maps = _blob_maps([(s, 20.3, 15.6, 0.8) for s in range(2, 5)])
    (cand,) = candidates_from_heatmaps(maps, _config(split=False))
    np.testing.assert_allclose(cand.position, [3.0 * SPACING_MM, 20.3 * SPACING_MM, 15.6 * SPACING_MM], atol=0.3)


def test_every_slice_through_the_body_places_its_centre_not_the_peak_slice_alone():
    # five slices see the body at row 20; the brightest one is off by a pixel
    blobs = [(s, 20.0, 15.0, 0.8) for s in (1, 2, 4, 5)] + [(3, 21.0, 15.0, 0.9)]
    (cand,) = candidates_from_heatmaps(_blob_maps(blobs), _config(split=False))
    assert abs(cand.position[1] / SPACING_MM - 20.0) < 0.45  # the peak slice alone says 21


def test_a_neighbour_seven_pixels_away_does_not_pull_the_centre():
    # two bodies 14 mm apart (a short cervical step) on the same slices
    blobs = [(s, r, 15.0, 0.8) for s in range(2, 5) for r in (17.0, 24.0)]
    cands = sorted(candidates_from_heatmaps(_blob_maps(blobs), _config(split=False, merge_inplane_mm=8.0)),
                   key=lambda c: c.position[1])
    assert len(cands) == 2
    np.testing.assert_allclose([c.position[1] / SPACING_MM for c in cands], [17.0, 24.0], atol=0.3)


def test_a_body_whose_heat_sags_on_one_side_is_placed_at_its_middle():
    # a body through slices 2-20 (middle 11): slices 2-7 answer 0.35, below half the peak, 8-20 answer 0.8
    blobs = [(s, 20.0, 15.0, 0.35 if s < 8 else 0.8) for s in range(2, 21)]
    (cand,) = candidates_from_heatmaps(_blob_maps(blobs, n_slices=23), _config(split=False))
    # the run above half the peak alone says 14; with the shoulders, weighted less than the plateau, 12.9
    assert 11.0 <= cand.position[0] / SPACING_MM < 13.0


def test_a_symmetric_body_is_placed_at_its_middle_across_the_slices():
    shoulders = {2: 0.3, 3: 0.5, 9: 0.5, 10: 0.3}
    blobs = [(s, 20.0, 15.0, shoulders.get(s, 0.8)) for s in range(2, 11)]
    (cand,) = candidates_from_heatmaps(_blob_maps(blobs, n_slices=13), _config(split=False))
    assert cand.position[0] / SPACING_MM == pytest.approx(6.0, abs=0.05)
