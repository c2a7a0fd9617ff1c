"""A small convolutional autoencoder (the foundation's reconstruction baseline)."""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


class ConvAutoencoder(nn.Module):
    """Conv AE for inputs whose sides divide by 4: two conv+pool stages down to a
    ``bottleneck``-channel map at 1/4 resolution, mirrored by upsampling stages,
    sigmoid output in [0, 1]."""

    def __init__(self, channels: int = 1, width: int = 32, bottleneck: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            _block(channels, width), nn.MaxPool2d(2),
            _block(width, 2 * width), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, bottleneck, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _block(bottleneck, 2 * width),
            nn.Upsample(scale_factor=2, mode="nearest"), _block(2 * width, width),
            nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
