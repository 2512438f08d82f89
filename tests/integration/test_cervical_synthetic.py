"""The cervical path end to end on synthetic annotated scans (no ../shared needed).

A hospital trains a cervical model from its own annotated cervical scans with
the same `spinelabel train --region cervical` command; phantoms written by
`spinelabel synth` stand in for that archive here.
"""

import json

import numpy as np

from spinelabel import anatomy
from spinelabel.cli import main


def test_train_cervical_from_annotated_scans_then_label_and_evaluate(tmp_path, capsys):
    data = tmp_path / "archive"
    assert main(["synth", str(data), "--region", "cervical", "--n", "4", "--seed", "7", "-q"]) == 0
    model = tmp_path / "model"
    code = main(["train", str(data), "--region", "cervical", "--out", str(model), "--steps", "3",
                 "--synthetic-fraction", "0.5", "--synthetic-scans", "2", "-q"])
    assert code == 0
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["region"] == "cervical" and cfg["out_channels"] == 3
    assert cfg["training"]["scans"] == [f"synth-cervical-{i:04d}" for i in range(4)]
    # the shape model learned cervical spacings from the annotations, within anatomical range
    spacing = cfg["shape_model"]["spacing"]
    assert "C3-C4" in spacing and "L3-L4" not in spacing
    mean, _ = spacing["C3-C4"]
    assert 0.6 * anatomy.typical_spacing_mm("C3", "C4") < mean < 1.5 * anatomy.typical_spacing_mm("C3", "C4")
    # cervical detection settings: suppression radius below half the cervical spacing
    assert cfg["detection"]["merge_inplane_mm"] < 0.5 * mean
    # a 3-step model labels nothing reliably: the command must say so cleanly or label; never crash
    image = data / "synth-cervical-0000" / "image.nii.gz"
    out = tmp_path / "pred" / "synth-cervical-0000.json"
    code = main(["label", str(image), "--region", "cervical", "--model", str(model), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    if code != 0:  # refused: one line, exit 1, nothing written
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and "no vertebrae found" in lines[0], err
        assert not out.parent.exists() or not any(out.parent.iterdir())
    else:
        doc = json.loads(out.read_text())
        assert doc["region"] == "cervical"
        assert all(v["label"] in anatomy.REGIONS["cervical"].levels for v in doc["vertebrae"])
        assert main(["evaluate", str(out), str(data / "synth-cervical-0000" / "centroids.json"), "--radius", "10"]) == 0


def test_synthetic_cases_evaluate_perfectly_against_themselves(tmp_path, capsys):
    """The evaluation of a prediction equal to the annotation is perfect (radius 10 mm, cervical)."""
    data = tmp_path / "archive"
    assert main(["synth", str(data), "--region", "cervical", "--n", "1", "--seed", "3", "-q"]) == 0
    doc = json.loads((data / "synth-cervical-0000" / "centroids.json").read_text())
    pred = {"schema_version": 1, "input": str(data / "synth-cervical-0000" / "image.nii.gz"), "region": "cervical",
            "vertebrae": [{"label": v["label"], "position_mm": list(np.add(v["world_mm"], 1.0))} for v in doc["vertebrae"]]}
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "p.json").write_text(json.dumps(pred))
    assert main(["evaluate", str(tmp_path / "pred"), str(data), "--radius", "10", "--json", str(tmp_path / "r.json")]) == 0
    o = json.loads((tmp_path / "r.json").read_text())["overall"]
    assert o["sensitivity"] == 1.0 and o["scan_accuracy"] == 1.0
    assert abs(o["error_mm"]["mean"] - np.sqrt(3)) < 1e-3


def test_the_training_seed_is_recorded_and_decides_the_run(tmp_path):
    import torch

    data = tmp_path / "archive"
    assert main(["synth", str(data), "--region", "cervical", "--n", "2", "--seed", "3", "-q"]) == 0
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 5)):
        model = tmp_path / name
        assert main(["train", str(data), "--region", "cervical", "--out", str(model), "--steps", "1",
                     "--seed", str(seed), "--threads", "1", "-q"]) == 0
        assert json.loads((model / "config.json").read_text())["training"]["settings"]["seed"] == seed
        weights[name] = torch.load(model / "weights.pt", weights_only=True)
    same = [torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"]]
    other = [torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"] if weights["a"][k].is_floating_point()]
    assert all(same) and not any(other)
