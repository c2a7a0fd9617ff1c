"""A small convolutional autoencoder (the foundation's reconstruction baseline)."""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


class ConvAutoencoder(nn.Module):
    """Conv AE for inputs whose sides divide by ``2**depth``: ``depth`` conv+pool
    stages (width, 2*width, ...) down to a narrow ``bottleneck``-channel map,
    mirrored by upsampling stages; sigmoid output in [0, 1]. The narrow
    bottleneck is what makes reconstruction error informative."""

    def __init__(self, channels: int = 1, width: int = 32, bottleneck: int = 4, depth: int = 3) -> None:
        super().__init__()
        widths = [width * 2 ** i for i in range(depth)]
        enc: list[nn.Module] = []
        cin = channels
        for w in widths:
            enc += [_block(cin, w), nn.MaxPool2d(2)]
            cin = w
        enc.append(nn.Conv2d(cin, bottleneck, 3, padding=1))
        dec: list[nn.Module] = []
        cin = bottleneck
        for w in reversed(widths):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), _block(cin, w)]
            cin = w
        dec += [nn.Conv2d(cin, channels, 3, padding=1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
