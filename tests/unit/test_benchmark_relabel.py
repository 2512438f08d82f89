"""benchmarks.relabel: cached candidates named again, with LabelingParams overrides, scored as the benchmarks score."""

import numpy as np
import pytest

from benchmarks.relabel import _parse_sets, score
from spinelabel import anatomy
from spinelabel.annotations import ScanAnnotation
from spinelabel.labeling import Candidate

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


def _scan() -> tuple[list[Candidate], ScanAnnotation]:
    """A clean T12-S1 chain 35 mm apart, level estimates on the truth, S1 confirmed by the anchor output."""
    points = {lv: np.array([0.0, 0.0, -35.0 * i]) for i, lv in enumerate(LEVELS)}
    cands = [Candidate(p, 0.9, anatomy.ordinal(lv), 0.5, anchor=0.9 if lv == "S1" else 0.05) for lv, p in points.items()]
    return cands, ScanAnnotation("clean", None, points)


def test_score_names_cached_candidates_again_and_an_override_changes_the_names():
    cands, truth = _scan()
    cached = {"run": {"model": "lumbar", "candidates": {"clean": cands, "failed": None}, "truth": [truth]}}
    straight = {"use_directions": False}  # a straight synthetic chain has no lumbosacral turn to learn from
    (row,) = score(cached, straight)
    assert (row["right"], row["wrong"], row["refused"]) == (1, 0, ["failed"])
    # no anchor evidence and the level estimates forced one level off: every name shifts, and is flagged
    (shifted,) = score(cached, straight | {"anchor_weight": 0.0, "level_offset_grid": (1.0,), "level_offset_sd": 100.0})
    assert shifted["right"] == 0 and shifted["wrong"] >= 5
    assert shifted["wrong_scans"] == ["clean"]


def test_parse_sets_reads_python_literals_and_refuses_unknown_fields():
    assert _parse_sets(["anchor_weight=0.5", "tilt_grid_deg=(0.0,)"]) == {"anchor_weight": 0.5, "tilt_grid_deg": (0.0,)}
    with pytest.raises(SystemExit):
        _parse_sets(["no_such_field=1"])
    with pytest.raises(SystemExit):
        _parse_sets(["anchor_weight"])


def test_a_bad_cache_or_a_failed_write_is_one_line_and_leaves_no_part_file(tmp_path):
    from benchmarks.relabel import _write_whole, main

    not_a_cache = tmp_path / "notes.txt"
    not_a_cache.write_text("hello")
    with pytest.raises(SystemExit, match="is not a cache of benchmarks.relabel"):
        main(["score", str(not_a_cache)])
    with pytest.raises(SystemExit, match="cannot read"):
        main(["score", str(tmp_path / "missing.pkl")])
    with pytest.raises(SystemExit, match="is not a folder"):
        main(["cache", "heldout", str(tmp_path / "no" / "such" / "out.pkl")])
    blocked = tmp_path / "blocked"
    blocked.mkdir()  # a folder where the cache file should go: the rename fails
    with pytest.raises(SystemExit, match="cannot write"):
        _write_whole(blocked, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "notes.txt"]
