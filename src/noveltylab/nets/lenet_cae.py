"""Deep SVDD's LeNet-type CIFAR-10 network and autoencoder (Ruff et al., 2018),
the baseline CAE of paper 003.

Encoder: 3 x [Conv 5x5 (32, 64, 128 filters, padding 2, no bias) ->
BatchNorm (eps 1e-4, no affine parameters) -> LeakyReLU(0.1) -> MaxPool 2],
flatten, Dense -> 128 (no bias). Like Ruff et al.'s code, the autoencoder adds
a BatchNorm1d (eps 1e-4, no affine) on the 128-d code; the Deep SVDD network
(``LeNetEncoder(code_bn=False)``) has none, so it has no bias terms at all.

Decoder (autoencoder only), mirroring Ruff et al.: the 128-d code is reshaped
to (128 / 16, 4, 4) for 32x32 inputs, LeakyReLU, then 3 x [ConvTranspose 5x5
(128, 64, 32; no bias) -> BN -> LeakyReLU -> Upsample 2] and a final
ConvTranspose 5x5 to C channels + sigmoid. Inputs must have H, W divisible by 8
(callers zero-pad: MNIST 28x28 -> 32x32). For sizes other than 32x32 the code
is mapped to (8, H/8, W/8) by an extra bias-free dense layer, since the
reshape only fits the 4x4 grid (an adaptation; not in Ruff et al.).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNetEncoder(nn.Module):
    """Bias-free LeNet-type encoder to a ``rep_dim``-d code."""

    def __init__(self, channels: int, height: int, width: int, rep_dim: int = 128, code_bn: bool = False) -> None:
        super().__init__()
        if height % 8 or width % 8:
            raise ValueError(f"LeNet CAE needs H and W divisible by 8, got {(height, width)}")
        self.rep_dim = rep_dim
        self.conv1 = nn.Conv2d(channels, 32, 5, bias=False, padding=2)
        self.bn1 = nn.BatchNorm2d(32, eps=1e-4, affine=False)
        self.conv2 = nn.Conv2d(32, 64, 5, bias=False, padding=2)
        self.bn2 = nn.BatchNorm2d(64, eps=1e-4, affine=False)
        self.conv3 = nn.Conv2d(64, 128, 5, bias=False, padding=2)
        self.bn3 = nn.BatchNorm2d(128, eps=1e-4, affine=False)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(128 * (height // 8) * (width // 8), rep_dim, bias=False)
        self.code_bn = nn.BatchNorm1d(rep_dim, eps=1e-4, affine=False) if code_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.leaky_relu(self.bn1(self.conv1(x)), 0.1))
        x = self.pool(F.leaky_relu(self.bn2(self.conv2(x)), 0.1))
        x = self.pool(F.leaky_relu(self.bn3(self.conv3(x)), 0.1))
        x = self.fc1(x.flatten(1))
        return self.code_bn(x) if self.code_bn is not None else x


class LeNetDecoder(nn.Module):
    def __init__(self, channels: int, height: int, width: int, rep_dim: int = 128) -> None:
        super().__init__()
        self.grid = (height // 8, width // 8)
        self.c0 = 8  # Ruff et al.: the 128-d code viewed as 8 x 4 x 4 for 32x32 inputs
        self.fc = None
        if rep_dim != self.c0 * self.grid[0] * self.grid[1]:
            self.fc = nn.Linear(rep_dim, self.c0 * self.grid[0] * self.grid[1], bias=False)
        self.deconv1 = nn.ConvTranspose2d(self.c0, 128, 5, bias=False, padding=2)
        self.bn1 = nn.BatchNorm2d(128, eps=1e-4, affine=False)
        self.deconv2 = nn.ConvTranspose2d(128, 64, 5, bias=False, padding=2)
        self.bn2 = nn.BatchNorm2d(64, eps=1e-4, affine=False)
        self.deconv3 = nn.ConvTranspose2d(64, 32, 5, bias=False, padding=2)
        self.bn3 = nn.BatchNorm2d(32, eps=1e-4, affine=False)
        self.deconv4 = nn.ConvTranspose2d(32, channels, 5, bias=False, padding=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.fc is not None:
            z = self.fc(z)
        x = F.leaky_relu(z.view(z.shape[0], self.c0, *self.grid), 0.1)
        x = F.interpolate(F.leaky_relu(self.bn1(self.deconv1(x)), 0.1), scale_factor=2)
        x = F.interpolate(F.leaky_relu(self.bn2(self.deconv2(x)), 0.1), scale_factor=2)
        x = F.interpolate(F.leaky_relu(self.bn3(self.deconv3(x)), 0.1), scale_factor=2)
        return torch.sigmoid(self.deconv4(x))


class LeNetCAE(nn.Module):
    """Ruff et al.'s CIFAR-10 LeNet autoencoder; ``embed`` = the 128-d code."""

    multiple = 8

    def __init__(self, channels: int = 1, height: int = 32, width: int = 32, rep_dim: int = 128) -> None:
        super().__init__()
        self.rep_dim = rep_dim
        self.encoder = LeNetEncoder(channels, height, width, rep_dim, code_bn=True)
        self.decoder = LeNetDecoder(channels, height, width, rep_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
