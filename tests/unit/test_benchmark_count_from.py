"""benchmarks.count_from: the cut keeps world positions, and the scoring counts wrong and missed names."""

import numpy as np

from benchmarks.count_from import cut, score
from spinelabel.geometry import Volume, reorient
from spinelabel.results import LabelResult, Vertebra


def test_a_cut_keeps_every_voxel_where_it_was_in_the_world():
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = (-10.0, 5.0, -40.0)
    data = np.arange(10 * 12 * 40, dtype=np.float32).reshape(10, 12, 40)
    for codes in ("RAS", "PIL", "IPR"):
        volume = reorient(Volume(data, affine), codes)
        slab = cut(volume, -10.0, 20.0)  # world z from -10 to 20 mm: 16 of the 40 slices
        assert slab.data.size == 10 * 12 * 16
        voxels = np.argwhere(np.ones(slab.data.shape, bool))[::97]
        world = slab.voxel_to_world(voxels)
        assert np.all((world[:, 2] >= -10.0 - 1e-6) & (world[:, 2] <= 20.0 + 1e-6))
        back = np.rint(volume.world_to_voxel(world)).astype(int)
        np.testing.assert_array_equal(volume.data[tuple(back.T)], slab.data[tuple(voxels.T)])


def test_score_counts_wrong_names_and_missed_vertebrae_inside_the_slab():
    points = {lv: np.array([0.0, 0.0, -35.0 * k]) for k, lv in enumerate(("L1", "L2", "L3", "L4", "L5"))}

    def result(*named):
        return LabelResult("lumbar", "m", "1", [Vertebra(lv, points[at] + 3.0, np.zeros(3), 0.9) for lv, at in named])

    assert score(result(("L1", "L1"), ("L2", "L2"), ("L3", "L3")), points, -80.0, 10.0) == ([], [])
    assert score(result(("L2", "L1"), ("L3", "L2")), points, -80.0, 10.0) == (["L2->L1", "L3->L2"], ["L3"])
    assert score(result(("L1", "L1")), points, -1.0, 10.0) == ([], [])  # only L1's centre lies in the slab


def test_the_study_benchmark_names_changes_of_the_robustness_benchmark_that_keep_the_patient_in_place(tmp_path):
    """Every series of ``benchmarks.count_from_study`` is a change ``benchmarks.robustness`` makes, one that keeps
    the annotated points where they are (the counting series' positions carry over only then)."""
    from benchmarks.count_from_study import SERIES, Counted
    from benchmarks.robustness import conditions

    changes = conditions(tmp_path, 0)
    assert set(SERIES) <= set(changes)
    volume = Volume(np.random.default_rng(0).random((8, 40, 40), dtype=np.float32), np.diag([4.0, 1.0, 1.0, 1.0]))
    points = {"L3": np.array([10.0, 20.0, 20.0])}
    for name in SERIES:
        _, moved = changes[name](volume, dict(points), f"case-{name}")
        assert set(moved) == set(points) and np.array_equal(moved["L3"], points["L3"]), name

    class Echo:
        def label(self, volume, counting=None):
            return volume, counting

    assert Counted(Echo(), "the count").label("v") == ("v", "the count")
