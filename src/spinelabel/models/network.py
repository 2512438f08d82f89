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
