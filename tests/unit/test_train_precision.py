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


def _loop_before_precision(scans, settings: TrainSettings):
    """``train_network``'s loop as it was before ``precision`` existed: no autocast, no memory-order change."""
    from spinelabel.training.sampling import batch
    from spinelabel.training.train import _initial_network, _losses, _scheduler

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    net = _initial_network(settings)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched = _scheduler(opt, settings)
    net.train()
    for _ in range(settings.steps):
        img, heat, level, level_w, valid, anchor = (torch.from_numpy(a) for a in batch(
            rng, list(scans), sampler_spec("lumbar"), settings.batch_size, None))
        loss = _losses(net(img), heat, level, level_w, valid, anchor, settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def test_fp32_gives_the_weights_of_the_loop_before_the_option(phantom):
    settings = TrainSettings(steps=2, threads=1, channels=(4, 8, 8, 8, 8, 8))
    now, _ = _train(phantom, "fp32")
    before = _loop_before_precision(phantom, settings)
    assert all(torch.equal(x, y) for x, y in zip(now.state_dict().values(), before.state_dict().values()))


def test_a_training_setting_of_unknown_precision_is_refused_at_once():
    with pytest.raises(ValueError, match="fp16"):
        TrainSettings(precision="fp16")


def test_bf16_on_a_gpu_without_bfloat16_is_one_line_before_anything_is_read(tmp_path, capsys, monkeypatch):
    import spinelabel.cli_train as cli_train

    monkeypatch.setattr(cli_train, "_check_device", lambda device: None)  # as if the GPU were here
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    code = main(["train", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m"), "--device", "cuda",
                 "--precision", "bf16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no bfloat16" in err[0]


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
