"""Networks of Connective novelty detection (paper 001).

* :class:`ResidualDenoisingAE`: the paper's "refined U-Net" reconstructor. It
  has the layout of a U-Net-like Xception encoder/decoder, but **no long skip
  connections** from encoder to decoder: only short (residual) skips inside
  each block, and a dense bottleneck, so that the network cannot copy fine
  detail of out-of-distribution inputs to its output.

  Encoder: Conv 3x3 stride 2 (32), BN, ReLU, Dropout; three residual blocks
  (64, 128, 256 channels), each ``[ReLU, SeparableConv 3x3, BN, ReLU,
  SeparableConv 3x3, BN, MaxPool 3 stride 2, Dropout] + Conv 1x1 stride 2``
  shortcut; Flatten; Dense(latent, ReLU).
  Decoder: Dense (linear) -> (s/16 x s/16 x 256); four stages (256, 128, 64, 32), each
  ``[ReLU, ConvTranspose 3x3, BN, ReLU, ConvTranspose 3x3, BN, Upsample 2,
  Dropout] + (Upsample 2, Conv 1x1)`` shortcut; Conv 3x3 to C channels,
  sigmoid.  The input side ``s`` must be a multiple of 16 (32 in the paper).

* :class:`SmallClassifier`: the binary classifier ``C``: Conv 3x3 (32), ReLU,
  MaxPool 2, Conv 3x3 (64), ReLU, MaxPool 2, Dropout 0.5, Dense 256, Dense 128,
  Dense 2 (logits; index 1 = "negative"/novel).
"""
from __future__ import annotations

import torch
from torch import nn


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 followed by pointwise 1x1 (Keras ``SeparableConv2D``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3) -> None:
        super().__init__(nn.Conv2d(cin, cin, kernel_size, padding=kernel_size // 2, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1))


class DownBlock(nn.Module):
    """Residual encoder block: halves the resolution; short skip = strided 1x1 conv."""

    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), SeparableConv2d(cin, cout), nn.BatchNorm2d(cout),
            nn.ReLU(), SeparableConv2d(cout, cout), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1), nn.Dropout(dropout))
        self.skip = nn.Conv2d(cin, cout, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class UpBlock(nn.Module):
    """Residual decoder block: doubles the resolution; short skip = upsample + 1x1 conv."""

    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
            nn.ReLU(), nn.ConvTranspose2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Dropout(dropout))
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class ResidualDenoisingAE(nn.Module):
    """Short-skip (residual) autoencoder without encoder-decoder long skips.

    ``size``: input side (multiple of 16); ``latent``: dense bottleneck width
    (256 in the paper); ``dropout``: dropout after the stem and in every block
    (0.3 in the paper); ``widths``: encoder block widths (64, 128, 256).
    """

    def __init__(self, channels: int = 1, size: int = 32, latent: int = 256, dropout: float = 0.3,
                 stem: int = 32, widths: tuple[int, ...] = (64, 128, 256)) -> None:
        super().__init__()
        if size % 16 or size < 16:
            raise ValueError(f"ResidualDenoisingAE: size must be a multiple of 16, got {size}")
        if len(widths) != 3:
            raise ValueError(f"ResidualDenoisingAE: widths must have 3 entries, got {widths}")
        self.bottom = size // 16
        self.top = widths[-1]
        self.stem = nn.Sequential(nn.Conv2d(channels, stem, 3, stride=2, padding=1), nn.BatchNorm2d(stem),
                                  nn.ReLU(), nn.Dropout(dropout))
        blocks, cin = [], stem
        for w in widths:
            blocks.append(DownBlock(cin, w, dropout))
            cin = w
        self.down = nn.Sequential(*blocks)
        flat = self.top * self.bottom * self.bottom
        self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(flat, latent), nn.ReLU())
        self.from_latent = nn.Linear(latent, flat)  # Keras Dense default: linear
        ups, cin = [], self.top
        for w in (widths[2], widths[1], widths[0], stem):
            ups.append(UpBlock(cin, w, dropout))
            cin = w
        self.up = nn.Sequential(*ups)
        self.out = nn.Sequential(nn.Conv2d(cin, channels, 3, padding=1), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.down(self.stem(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(z.shape[0], self.top, self.bottom, self.bottom)
        return self.out(self.up(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class SmallClassifier(nn.Module):
    """The paper's small binary CNN; returns 2 logits (0 = positive/normal, 1 = negative/novel)."""

    def __init__(self, channels: int = 1, size: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout))
        side = size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 256), nn.ReLU(),
                                  nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
