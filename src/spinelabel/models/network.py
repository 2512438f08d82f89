"""The detection network: a small 2D U-Net applied to sagittal slices.

Output channels: 0 = vertebral-body-centre heatmap logit, 1 = level regression
(``anatomy.ordinal`` of the vertebra under the pixel), and in models with three
outputs 2 = anchor heatmap logit (the centre of C2 or S1, the two levels whose
shape tells them apart; see ``anatomy.ANCHOR_LEVELS``). Narrow early layers keep
CPU inference fast; deep layers give the receptive field (> 150 px) that the level
regression needs to see the sacrum or the rib cage.
"""

from __future__ import annotations

import torch
from torch import nn

OUT_HEATMAP = 0
OUT_LEVEL = 1
OUT_ANCHOR = 2


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class UNet2D(nn.Module):
    """U-Net for images of shape (B, in_channels, H, W), H and W multiples of 2**(len(channels)-1)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, channels: tuple[int, ...] = (8, 16, 32, 64, 96, 128)):
        super().__init__()
        self.channels = tuple(channels)
        self.down = nn.ModuleList()
        cin = in_channels
        for c in channels:
            self.down.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for c_skip, c_deep in zip(reversed(channels[:-1]), reversed(channels[1:])):
            self.up.append(nn.ConvTranspose2d(c_deep, c_skip, 2, stride=2))
            self.up_blocks.append(_block(2 * c_skip, c_skip))
        self.head = nn.Conv2d(channels[0], out_channels, 1)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.up_blocks):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def fold_batch_norm(net: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d before it, in place (inference only).

    In each ``nn.Sequential`` a ``Conv2d`` directly followed by a
    ``BatchNorm2d`` becomes one ``Conv2d`` with bias (weights ``w * g / s``,
    bias ``(b - m) * g / s + beta``, ``s = sqrt(var + eps)``), and the norm
    an ``nn.Identity``: the same function with one pass over the feature map
    less. The network must be in eval mode (running statistics).

    Returns
    -------
    int
        The number of norms folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if net.training:
        raise ValueError("fold_batch_norm needs a network in eval mode")
    folded = 0
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, norm)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def prepare_for_inference(net: nn.Module) -> nn.Module:
    """The network made fast for CPU inference: eval mode, batch norms folded, channels-last weights.

    channels_last (NHWC) lets oneDNN run the convolutions without reordering
    the feature maps; :func:`spinelabel.detection.predict_heatmaps` feeds it
    channels-last input. Labels and logits are unchanged (logits to float
    rounding; ``benchmarks/throughput.py`` compares them on real scans).
    """
    net.eval()
    fold_batch_norm(net)
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; missing from the stubs
