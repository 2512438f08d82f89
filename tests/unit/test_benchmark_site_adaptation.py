"""The site-adaptation benchmark's adaptation sets and fine-tune arguments."""

import json

import pytest

import benchmarks.site_adaptation as adapt


@pytest.fixture
def fake_shared(tmp_path, monkeypatch):
    split = {"train": [f"myoseg-{i:02d}" for i in range(1, 9)] + ["zukic-01"], "validation": ["myoseg-20", "zukic-02"]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    shared = tmp_path / "shared"
    for case in [*split["train"], *split["validation"]]:
        (shared / case).mkdir(parents=True)
        (shared / case / "centroids.json").write_text("{}")
    monkeypatch.setattr(adapt, "SPLIT", tmp_path / "split.json")
    monkeypatch.setattr(adapt, "SHARED", shared)
    return split


def test_adaptation_sets_are_the_hospitals_training_scans_nested_and_drawn_once(fake_shared):
    small, large = adapt.adaptation_scans(3), adapt.adaptation_scans(6)
    assert len(small) == 3 and len(large) == 6
    assert set(small) <= set(large)
    assert set(large) <= {c for c in fake_shared["train"] if c.startswith("myoseg")}
    assert adapt.adaptation_scans(6) == large


def test_more_adaptation_scans_than_the_split_holds_is_one_line_and_exit(fake_shared):
    with pytest.raises(SystemExit, match="at most 8 myoseg training scans, not 9"):
        adapt.adaptation_scans(9)


def test_a_fine_tune_starts_from_the_network_and_trains_on_the_given_scans_only(fake_shared, tmp_path):
    args = adapt.fine_tune_args(tmp_path / "net", ["myoseg-02", "myoseg-05"], tmp_path / "out", 1, 11, tmp_path)
    assert args[args.index("--init") + 1] == str(tmp_path / "net")
    assert args[args.index("--steps") + 1] == str(adapt.FINE_TUNE_STEPS)
    assert args[args.index("--learning-rate") + 1] == adapt.FINE_TUNE_LEARNING_RATE
    assert args[args.index("--seed") + 1] == "11"
    excluded = set(json.loads(open(args[args.index("--exclude") + 1]).read())["validation"])
    everything = {*fake_shared["train"], *fake_shared["validation"]}
    assert excluded == everything - {"myoseg-02", "myoseg-05"}
