import pytest

from spinelabel.errors import ModelError
from spinelabel.models import DetectionSettings, ModelConfig, load_model, save_model
from spinelabel.models.network import UNet2D


def _config() -> ModelConfig:
    return ModelConfig(
        name="test", version="0", region="lumbar", axcodes=("R", "I", "P"), inplane_spacing_mm=2.0,
        slice_step_mm=2.0, intensity_percentiles=(1.0, 99.5), channels=(4, 8), level_offset=22.0,
        level_sd=1.0, detection=DetectionSettings(), shape_model={},
    )


def test_save_load_round_trip(tmp_path):
    import torch

    net = UNet2D(channels=(4, 8)).eval()
    save_model(tmp_path, _config(), net)
    config, loaded = load_model(tmp_path)
    assert config.channels == (4, 8) and len(config.sha256) == 64
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(net(x), loaded(x), atol=2e-2)  # float16 storage


def test_corrupt_weights_refused(tmp_path):
    save_model(tmp_path, _config(), UNet2D(channels=(4, 8)))
    with open(tmp_path / "weights.pt", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(tmp_path)


def test_unknown_model():
    with pytest.raises(ModelError, match="no model found"):
        load_model("no-such-region")


def test_three_output_model_round_trip(tmp_path):
    import dataclasses

    import torch

    net = UNet2D(channels=(4, 8), out_channels=3).eval()
    save_model(tmp_path, dataclasses.replace(_config(), out_channels=3), net)
    config, loaded = load_model(tmp_path)
    assert config.out_channels == 3
    with torch.inference_mode():
        assert loaded(torch.rand(1, 1, 32, 32)).shape == (1, 3, 32, 32)
