"""``TrainSettings.precision``: bf16 trains the same network function faster; fp32 is left exactly as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spinelabel.cli import main
from spinelabel.testing.dummy import blob_spine
from spinelabel.io.nifti import save_nifti
from spinelabel.training.synthetic_data import synthetic_training_scans
from spinelabel.training.train import PRECISIONS, TrainSettings, _precision, sampler_spec, train_network


@pytest.fixture(scope="module")
def phantom():
    scans, _ = synthetic_training_scans(1, {"lumbar": 1.0}, seed=0)
    return scans


def _train(scans, precision: str, steps: int = 2):
    losses: list[float] = []
    settings = TrainSettings(steps=steps, threads=1, precision=precision, channels=(4, 8, 8, 8, 8, 8))
    net = train_network(scans, settings, sampler_spec("lumbar"), progress=lambda step, loss: losses.append(loss))
    return net, losses


def test_bf16_computes_the_fp32_loss_and_returns_a_float32_network(phantom):
    """Same start, same first batch: the first loss (before any update) differs only by bfloat16 rounding, so the
    autocast runs the same function; the returned weights are float32 in the plain layout, finite, and not the fp32
    run's (the autocast was on)."""
    net32, loss32 = _train(phantom, "fp32")
    net16, loss16 = _train(phantom, "bf16")
    assert loss16[0] == pytest.approx(loss32[0], rel=0.02)
    assert loss16[0] != loss32[0]
    for (name, w32), w16 in zip(net32.state_dict().items(), net16.state_dict().values()):
        assert w16.dtype == w32.dtype and w16.is_contiguous() and torch.isfinite(w16).all(), name
    assert any(not torch.equal(a, b) for a, b in zip(net32.state_dict().values(), net16.state_dict().values()))


def test_fp32_is_repeatable_and_leaves_the_memory_order_alone(phantom):
    a, loss_a = _train(phantom, "fp32")
    b, loss_b = _train(phantom, "fp32")
    assert loss_a == loss_b
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    autocast, memory = _precision("fp32", torch.device("cpu"))
    assert memory == torch.contiguous_format and not autocast._enabled


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp16"):
        _precision("fp16", torch.device("cpu"))
    assert PRECISIONS == ("fp32", "bf16")


def test_train_refuses_an_unknown_precision_before_reading_anything(tmp_path, capsys):
    out = tmp_path / "m"
    code = main(["train", str(tmp_path / "missing.csv"), "--out", str(out), "--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--precision fp16" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_train_records_the_precision_in_the_model_config(tmp_path, capsys):
    volume, centres = blob_spine()
    rows = ["scan,label,x,y,z,image"]
    for scan in ("a", "b"):
        save_nifti(volume, tmp_path / f"{scan}.nii.gz")
        rows += [f"{scan},{lv},{x},{y},{z},{scan}.nii.gz" for lv, (x, y, z) in zip(("L1", "L2", "L3", "L4"), centres)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code = main(["train", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "m"), "--steps", "1", "--no-clean",
                 "--precision", "bf16", "--threads", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["training"]["settings"]["precision"] == "bf16"
    assert np.isfinite(config["training"]["seconds"])
