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


def test_the_measured_fine_tune_is_what_train_init_does_by_default(fake_shared, tmp_path):
    """The benchmark spells its recipe out; ``spinelabel train --init`` without those options must run the same."""
    from spinelabel.cli_train import FINE_TUNE

    args = adapt.fine_tune_args(tmp_path / "net", ["myoseg-02"], tmp_path / "out", 1, 11, tmp_path)
    given = {k: float(args[args.index(k) + 1]) for k in ("--steps", "--learning-rate", "--synthetic-fraction")}
    assert given == {"--steps": FINE_TUNE.steps, "--learning-rate": FINE_TUNE.learning_rate,
                     "--synthetic-fraction": FINE_TUNE.synthetic_fraction}


def test_forgetting_is_measured_on_source_scans_no_arm_trains_on(fake_shared):
    held_out = adapt.source_held_out()
    assert held_out == ["zukic-02"]
    assert not set(held_out) & set(fake_shared["train"])


def test_unreviewed_labels_keep_scans_whose_count_is_not_doubted_under_their_own_ids(fake_shared, tmp_path, monkeypatch):
    import numpy as np

    import spinelabel.io
    import spinelabel.pipeline
    from spinelabel.annotations import load_annotations
    from spinelabel.results import LabelResult, Vertebra
    from spinelabel.warning_codes import LabelWarning

    def vertebrae(z0):
        return [Vertebra(name, np.array([1.0, 2.0, z0 - 30.0 * i]), np.zeros(3), 0.4) for i, name in enumerate(["L4", "L5", "S1"])]

    answers = {  # the network's answer per scan: count doubted, detection warning only, failure
        "myoseg-02": LabelResult("lumbar", "m", "1", vertebrae(0.0), [LabelWarning("no-anchor", "no anchor")]),
        "myoseg-05": LabelResult("lumbar", "m", "1", vertebrae(10.0), [LabelWarning("low-confidence", "low")]),
    }

    class Labeler:
        def label(self, volume):
            if volume not in answers:
                raise ValueError("no vertebrae found")
            return answers[volume]

    monkeypatch.setattr(spinelabel.pipeline, "make_labeler", lambda region, model: Labeler())
    monkeypatch.setattr(spinelabel.io, "load_image", lambda paths: type("Image", (), {"volume": paths[0].parent.name}))
    out = tmp_path / "labels.csv"
    kept = adapt.unreviewed_labels(tmp_path / "net", ["myoseg-02", "myoseg-05", "myoseg-07"], out)
    assert kept == ["myoseg-05"]
    (scan,) = load_annotations([out])
    assert scan.scan_id == "myoseg-05" + adapt.UNREVIEWED_SUFFIX
    assert scan.levels == ("L4", "L5", "S1")
    assert np.allclose(scan.points["S1"], [1.0, 2.0, -50.0])
    assert scan.image == adapt.SHARED / "myoseg-05" / "image.nii.gz"


def test_a_fine_tune_on_unreviewed_labels_reads_their_csv_and_excludes_nothing(fake_shared, tmp_path):
    labels = tmp_path / "labels.csv"
    args = adapt.fine_tune_args(tmp_path / "net", labels, tmp_path / "out", 1, 10, tmp_path)
    assert args[:2] == ["train", str(labels)]
    assert "--exclude" not in args and str(adapt.SHARED) not in args


def test_another_draw_is_another_fixed_set_of_the_hospitals_training_scans(fake_shared):
    first, other = adapt.adaptation_scans(4), adapt.adaptation_scans(4, draw=1)
    assert other == adapt.adaptation_scans(4, draw=1) and other != first
    assert set(adapt.adaptation_scans(2, draw=1)) <= set(other)
    assert set(other) <= {c for c in fake_shared["train"] if c.startswith("myoseg")}


def test_missing_networks_are_trained_before_the_unreviewed_arm_labels_with_them(fake_shared, tmp_path, monkeypatch):
    networks, events = tmp_path / "networks", []

    def train_models(todo, steps, jobs, tmp):
        for seed, source, out in todo:
            events.append(("train", seed))
            out.mkdir(parents=True)
            (out / "config.json").write_text("{}")

    def unreviewed_labels(network, cases, out_csv):
        events.append(("label", (network / "config.json").is_file()))
        out_csv.write_text("scan,label,x,y,z\n")
        return cases[:1]

    monkeypatch.setattr(adapt, "train_models", train_models)
    monkeypatch.setattr(adapt, "unreviewed_labels", unreviewed_labels)
    monkeypatch.setattr(adapt, "run_cli", lambda runs, jobs: events.extend(("fine-tune", what) for _, what in runs))
    monkeypatch.setattr(adapt, "score_model", lambda model, cases: (("row", "row"), 0, []))
    monkeypatch.setattr(adapt, "git_commit", lambda: "abc")
    results = tmp_path / "RESULTS.md"
    argv = ["--networks", str(networks), "--seeds", "3", "--sizes", "2", "--unreviewed", "2", "--models",
            str(tmp_path / "models"), "--results", str(results)]
    assert adapt.main(argv) == 0
    assert events[:2] == [("train", 3), ("label", True)]
    assert ("fine-tune", "fine-tune unreviewed 2 (seed 3)") in events
    assert "seed 3: " in results.read_text() and "lumbar-site-adaptation:start" in results.read_text()


def test_too_many_unreviewed_scans_end_the_benchmark_before_any_training(fake_shared, tmp_path, monkeypatch):
    monkeypatch.setattr(adapt, "train_models", lambda *a: pytest.fail("trained before the options were checked"))
    with pytest.raises(SystemExit, match="at most 8 myoseg training scans, not 9"):
        adapt.main(["--networks", str(tmp_path / "none"), "--sizes", "2", "--unreviewed", "9", "--results", str(tmp_path / "R.md")])
    assert not (tmp_path / "R.md").exists()
