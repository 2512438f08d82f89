"""``spinelabel demo`` without the shared data: the built-in phantom goes through the one label-and-write path."""

from __future__ import annotations

import json

from spinelabel import demo


def test_demo_labels_the_phantom_when_no_shared_data_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "find_shared_data", lambda: None)
    lines = list(demo.run_demo(tmp_path / "out"))
    assert lines[0] == "example: no shared data found; using a synthetic phantom"
    doc = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert doc["input"] == "synthetic phantom (spinelabel.synthetic, seed 0)" and len(doc["vertebrae"]) >= 5
    assert len(doc["warning_codes"]) == len(doc["warnings"])
    assert (tmp_path / "out" / "demo.png").stat().st_size > 0
    assert lines[1] == "labels: " + " ".join(f"{v['label']}({v['confidence']:.2f})" for v in doc["vertebrae"])


def test_the_result_names_the_weights_that_made_it(tmp_path, monkeypatch):
    """Name and version alone cannot tell a hospital's retrained model from ours: the result carries the checksum."""
    from spinelabel.models import WEIGHTS_NAME, resolve_model_dir, sha256_of

    monkeypatch.setattr(demo, "find_shared_data", lambda: None)
    list(demo.run_demo(tmp_path / "out"))
    model = json.loads((tmp_path / "out" / "demo.json").read_text())["model"]
    assert model["sha256"] == sha256_of(resolve_model_dir("lumbar") / WEIGHTS_NAME)
