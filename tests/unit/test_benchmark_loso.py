"""The leave-one-source-out benchmark's training arguments and its summary over several training seeds."""

import json

import pytest

import benchmarks.lumbar_loso as loso


def test_seeds_summary_gives_mean_and_range_per_direction_and_summed():
    right = {(10, "zukic"): 43, (10, "myoseg"): 14, (11, "zukic"): 35, (11, "myoseg"): 17}
    assert loso._seeds_summary(right) == (
        "zukic -> myoseg mean 39.0 (range 35-43); myoseg -> zukic mean 15.5 (range 14-17); "
        "both directions mean 54.5 (range 52-57)"
    )


def test_train_args_keep_one_sources_training_scans_and_pass_seed_and_device(tmp_path, monkeypatch):
    split = {"train": ["zukic-01", "myoseg-01"], "validation": ["zukic-02", "myoseg-02"]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    shared = tmp_path / "shared"
    for case in [*split["train"], *split["validation"]]:
        (shared / case).mkdir(parents=True)
        (shared / case / "centroids.json").write_text("{}")
    monkeypatch.setattr(loso, "SPLIT", tmp_path / "split.json")
    monkeypatch.setattr(loso, "SHARED", shared)
    args = loso._train_args("zukic", tmp_path / "m", 3000, 1, tmp_path, seed=12, device="cuda", precision="bf16")
    assert args[args.index("--seed") + 1] == "12"
    assert args[args.index("--precision") + 1] == "bf16"
    assert args[args.index("--device") + 1] == "cuda"
    assert args[args.index("--steps") + 1] == "3000"
    excluded = json.loads(open(args[args.index("--exclude") + 1]).read())["validation"]
    assert sorted(excluded) == ["myoseg-01", "myoseg-02", "zukic-02"]


def test_another_arithmetic_writes_its_own_section_never_the_fp32_one():
    assert loso._section([10, 11], 0, "fp32") == (", several training seeds", "lumbar-loso-seeds", "seeds 10,11")
    assert loso._section([10, 11], 0, "bf16") == (
        ", several training seeds, bf16 training", "lumbar-loso-seeds-bf16", "seeds 10,11, bf16"
    )
    assert loso._section(None, 0, "fp32")[1] == "lumbar-loso"
    assert loso._section(None, 3, "fp32")[1] == "lumbar-loso-seed3"
    assert loso._section(None, 3, "bf16")[1] == "lumbar-loso-seed3-bf16"


def test_a_reused_model_of_another_arithmetic_is_refused(tmp_path):
    for name, settings in (("old", {}), ("fp32", {"precision": "fp32"}), ("bf16", {"precision": "bf16"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"training": {"settings": settings}}))
    loso._check_reused([tmp_path / "old", tmp_path / "fp32"], "fp32")  # models from before the option are fp32
    loso._check_reused([tmp_path / "bf16"], "bf16")
    with pytest.raises(SystemExit, match="trained in fp32, not bf16"):
        loso._check_reused([tmp_path / "bf16", tmp_path / "old"], "bf16")
    with pytest.raises(SystemExit, match="trained in bf16, not fp32"):
        loso._check_reused([tmp_path / "bf16"], "fp32")


def test_an_unknown_precision_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        loso.main(["--precision", "fp16"])
    assert exc.value.code == 2 and "--precision" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("text", ["abc", "10,x", "10,,11", "10,10"])
def test_a_bad_seed_list_is_a_usage_error_without_a_traceback(text, capsys):
    with pytest.raises(SystemExit) as exc:
        loso.main(["--seeds", text])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and "--seeds" in err.splitlines()[-1]


def test_a_seed_list_is_read_in_order():
    assert loso.seed_list("12,3,40") == [12, 3, 40]


def test_run_cli_gives_minutes_per_run_and_a_failed_run_is_one_line():
    minutes = loso.run_cli([(["--help"], "help"), (["train", "--help"], "train help")], 2)
    assert len(minutes) == 2 and all(m >= 0 for m in minutes)
    with pytest.raises(SystemExit, match="^fine-tune own 5 \\(seed 3\\) failed$"):
        loso.run_cli([(["no-such-command"], "fine-tune own 5 (seed 3)")], 1)


def test_summary_of_one_direction_has_no_sum_of_both():
    right = {(10, "zukic"): 45, (11, "zukic"): 34, (12, "zukic"): 42}
    assert loso._seeds_summary(right) == "zukic -> myoseg mean 40.3 (range 34-45)"


def test_one_direction_writes_its_own_section_never_the_one_of_both():
    both = loso._section([10, 11], 0, "fp32")
    one = loso._section([10, 11], 0, "fp32", ("zukic",))
    assert one == (", several training seeds, trained on zukic only", "lumbar-loso-seeds-zukic-only", "seeds 10,11")
    assert one[1] != both[1]
    assert loso._section([10, 11], 0, "fp32", loso.SOURCES) == both
    assert loso._section(None, 3, "bf16", ("myoseg",))[1] == "lumbar-loso-seed3-bf16-myoseg-only"


def test_trained_on_scores_only_that_direction(tmp_path, monkeypatch):
    for seed in (10, 11):
        model = tmp_path / "models" / f"seed{seed}" / "zukic-only"
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps({"training": {"settings": {"precision": "fp32"}}}))
    scored = []

    def fake_score_all(models, everything, jobs):
        scored.extend(models)
        return [([f"| zukic -> myoseg | row {m.parent.name} |"], 40, [loso.Outcome("myoseg-06", None, False)]) for m, _ in models]

    monkeypatch.setattr(loso, "train_models", lambda todo, *a, **k: {} if not todo else pytest.fail(f"trained {todo}"))
    monkeypatch.setattr(loso, "_score_all", fake_score_all)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    argv = ["--seeds", "10,11", "--models", str(tmp_path / "models"), "--trained-on", "zukic", "--results", str(results)]
    assert loso.main(argv) == 0
    assert [src for _, src in scored] == ["zukic", "zukic"]
    text = results.read_text()
    assert "## Lumbar: leave one source out, several training seeds, trained on zukic only" in text
    assert "zukic -> myoseg mean 40.0 (range 40-40)" in text and "both directions" not in text
    # myoseg-06 has no S1 point (S1 below its image): refused by both models, counted as tested and wrong
    assert "| not marked (below the image edge, or not identifiable) | 2 | 0 (0.0 %) |" in text


def test_scans_right_are_grouped_by_how_much_of_s1_the_image_shows(tmp_path):
    csv_file = tmp_path / "s1.csv"
    csv_file.write_text("scan,label,x,y,z,visibility,note\nm-1,S1,0,0,0,full,\nm-2,S1,0,0,0,partial,cut\n")
    visibility = loso.s1_visibility(csv_file)
    assert visibility == {"m-1": "full", "m-2": "partial"}
    scans = [  # two models: m-1 right twice, m-2 right once, m-3 (no point) refused once and wrong once
        loso.Outcome("m-1", [], True), loso.Outcome("m-2", ["no-anchor"], False), loso.Outcome("m-3", None, False),
        loso.Outcome("m-1", [], True), loso.Outcome("m-2", [], True), loso.Outcome("m-3", ["no-anchor"], False),
    ]
    assert loso.s1_view_rows(scans, visibility) == [
        "| whole in view | 2 | 2 (100.0 %) |",
        "| partly cut by the image edge | 2 | 1 (50.0 %) |",
        "| not marked (below the image edge, or not identifiable) | 2 | 0 (0.0 %) |",
    ]
    assert loso.s1_view_rows(scans[:1], visibility) == ["| whole in view | 1 | 1 (100.0 %) |"]  # empty groups left out


def test_refused_scans_are_left_out_of_the_warning_code_rows():
    scans = [loso.Outcome("a", ["no-anchor"], False), loso.Outcome("b", None, False), loso.Outcome("c", [], True)]
    assert loso.labeled(scans) == [(["no-anchor"], False), ([], True)]


def test_every_shared_scan_without_our_s1_point_is_one_the_annotation_notes_name():
    """The "not marked" group is what docs/annotations.md says it is: S1 below the image edge or not identifiable."""
    if not loso.SHARED.is_dir():
        pytest.skip("../shared not present")
    cases = sorted(p.name for p in loso.SHARED.iterdir() if (p / "centroids.json").is_file())
    unmarked = [c for c in cases if c not in loso.s1_visibility()]
    assert unmarked == ["myoseg-06", "myoseg-32", "myoseg-41", "myoseg-49"]
