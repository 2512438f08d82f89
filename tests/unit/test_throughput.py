"""Speed-ups that must change no result: folded batch norms, channels-last, fewer copies, one pass for --region auto."""

import numpy as np
import pytest
import torch

from spinelabel.errors import InputError
from spinelabel.geometry import Volume, reorient
from spinelabel.models.network import UNet2D, fold_batch_norm, prepare_for_inference
from spinelabel.pipeline import AutoLabeler, Labeler
from spinelabel.threads import thread_count
from spinelabel.preprocessing import FrameSpec, check_sagittal, to_model_frame
from spinelabel.testing.dummy import BlobNet, blob_spine, dummy_config


def _trained_like_net(seed: int = 0) -> UNet2D:
    """A U-Net whose batch norms have non-trivial statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    net = UNet2D(channels=(4, 8, 16), out_channels=3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_folding_batch_norm_and_channels_last_keep_the_logits():
    net = _trained_like_net()
    x = torch.rand(3, 1, 32, 48)
    with torch.inference_mode():
        before = net(x)
    fast = prepare_for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert fast.head.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        after = fast(x.contiguous(memory_format=torch.channels_last))
    assert after.shape == before.shape
    np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-4, rtol=1e-4)


def test_fold_batch_norm_counts_and_refuses_training_mode():
    net = _trained_like_net()
    assert fold_batch_norm(net) == 2 * (3 + 2)  # two convolutions per block, 3 down and 2 up blocks
    assert fold_batch_norm(net) == 0
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(UNet2D(channels=(4, 8)).train())


def test_thread_count(monkeypatch):
    monkeypatch.delenv("SPINELABEL_THREADS", raising=False)
    assert 1 <= thread_count() <= 4
    assert thread_count(1) == 1
    monkeypatch.setenv("SPINELABEL_THREADS", "3")
    assert thread_count() == 3 and thread_count(2) == 2
    for bad in ("many", "0", "257", "99999999999999999999", "٣"):  # the last an Arabic-Indic 3
        monkeypatch.setenv("SPINELABEL_THREADS", bad)
        with pytest.raises(InputError, match="SPINELABEL_THREADS.*from 1 to 256"):
            thread_count()
    monkeypatch.setenv("SPINELABEL_THREADS", "256")
    assert thread_count() == 256


def test_reorient_without_copy_is_a_view_with_the_same_voxels():
    vol, _ = blob_spine()
    view, copy = reorient(vol, "PIL", copy=False), reorient(vol, "PIL")
    assert np.shares_memory(view.data, vol.data) and not np.shares_memory(copy.data, vol.data)
    assert copy.data.flags.c_contiguous and np.array_equal(view.data, copy.data)
    np.testing.assert_array_equal(view.affine, copy.affine)


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (1.0, 1.0, 1.0)])
def test_model_frame_is_its_own_contiguous_array(spacing):
    data = np.random.default_rng(0).random((30, 60, 70)).astype(np.float32)
    vol = reorient(Volume(data, np.diag([*spacing, 1.0])), "PIL")
    check_sagittal(vol)
    frame = to_model_frame(vol, FrameSpec())
    assert frame.data.dtype == np.float32 and frame.data.flags.c_contiguous
    assert not np.shares_memory(frame.data, vol.data)
    if spacing == (2.0, 2.0, 2.0):  # no resampling: the same voxels, reordered
        np.testing.assert_array_equal(frame.data, reorient(vol, "RIP").data)


class CountingNet(BlobNet):
    """BlobNet whose level channel puts every blob near one level, and that counts the images it sees."""

    def __init__(self, level: str):
        super().__init__()
        from spinelabel.anatomy import ordinal

        self.offset, self.images = ordinal(level) - 22.0, 0

    def forward(self, x):
        self.images += x.shape[0]
        out = super().forward(x)
        return torch.cat([out[:, :1], torch.full_like(x, self.offset)], dim=1)


@pytest.mark.parametrize(("level", "region", "survey_model_chosen"), [("C4", "cervical", True), ("L3", "lumbar", False)])
def test_auto_runs_the_network_once_per_model(level, region, survey_model_chosen):
    """Cervical and whole spine share the survey's model: its candidates are reused, not computed again."""
    spacing = 20.0 if region == "cervical" else 36.0
    vol, _ = blob_spine(n=4, spacing_mm=spacing, margin_mm=0.6 * spacing)
    cfg = dummy_config(level_sd=0.7)
    survey_net, lumbar_net, alone = CountingNet(level), CountingNet(level), CountingNet(level)
    by_region = {r: Labeler(cfg, survey_net, r) for r in ("whole", "cervical")}
    by_region["lumbar"] = Labeler(cfg, lumbar_net, "lumbar")
    Labeler(cfg, alone, region).detect(vol)  # the images of one pass
    result = AutoLabeler(by_region["whole"], by_region).label(vol)
    assert result.region == region
    assert survey_net.images == alone.images
    assert lumbar_net.images == (0 if survey_model_chosen else alone.images)


def test_auto_label_equals_the_chosen_labelers_own_label():
    vol, _ = blob_spine(n=4, spacing_mm=36.0)
    cfg, net = dummy_config(), BlobNet()
    by_region = {r: Labeler(cfg, net, r) for r in ("whole", "cervical", "lumbar")}
    auto = AutoLabeler(by_region["whole"], by_region)
    result = auto.label(vol)
    direct = by_region[result.region].label(vol)
    assert [(v.label, v.confidence) for v in result.vertebrae] == [(v.label, v.confidence) for v in direct.vertebrae]


def test_the_command_line_makes_openmp_threads_sleep_unless_told_otherwise(monkeypatch):
    import os

    from spinelabel.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["--version"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["--version"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
