"""Inception-like convolutional autoencoder of paper 003 (Sarafijanovic-Djukic & Davis).

Table 1 / Fig. 1 of the paper: an Inception-like layer with ``n`` filters per
branch runs four branches in parallel - 1x1 conv, 3x3 conv, 5x5 conv, and
3x3 max-pooling (stride 1) followed by a 1x1 conv - each branch being
conv -> BatchNorm -> LeakyReLU(0.1); the outputs are concatenated (4n
channels). There are no 1x1 reductions in front of the 3x3/5x5 convs.

Encoder: Inception(8), MaxPool 2, Inception(16), MaxPool 2, Inception(32),
MaxPool 2 -> (H/8, W/8, 128). Decoder: Inception(32), Upsample 2,
Inception(16), Upsample 2, Inception(8), Upsample 2, Conv 3x3 to C channels,
BatchNorm, sigmoid. The representation is the global average pooling (GAP) of
the 128-channel bottleneck. The net takes any H, W that divide by 8 (callers
zero-pad with :func:`noveltylab.images.pad_to_multiple`; MNIST 28x28 -> 32x32).

GAP in training (paper 003, Sec. 4.3): for MNIST and Fashion-MNIST the paper
trains *with* the GAP layer, "to ensure that the bottleneck layer is narrower
than the input layer"; for CIFAR it trains without and applies GAP only at
prediction. With ``gap_in_training`` the decoder sees only the 128-d GAP code.
The paper does not say how its decoder re-expands that code to the 4x4x128 map
the first decoder layer needs; ``gap_expand`` names the two choices:
``"dense"`` (default here: a learned Linear 128 -> 128 x h x w + LeakyReLU(0.1),
so the decoder can place content spatially) and ``"tile"`` (the code copied to
every position, as Keras' Reshape + UpSampling2D would; the decoder then
recovers layout only from zero-padding at the borders).
"""
from __future__ import annotations

import torch
from torch import nn

GAP_EXPANSIONS = ("dense", "tile")


def _branch(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.1))


class InceptionLayer(nn.Module):
    """Four parallel branches (1x1, 3x3, 5x5 conv; 3x3/1 max-pool -> 1x1 conv),
    each conv -> BN -> LeakyReLU(0.1), concatenated: ``4 * filters`` output channels,
    same spatial size."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.filters = filters
        self.b1 = _branch(in_channels, filters, 1)
        self.b3 = _branch(in_channels, filters, 3)
        self.b5 = _branch(in_channels, filters, 5)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.bp = _branch(in_channels, filters, 1)

    @property
    def out_channels(self) -> int:
        return 4 * self.filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(self.pool(x))], dim=1)


class InceptionCAE(nn.Module):
    """Inception-CAE (paper 003, Table 1). ``forward`` returns the reconstruction
    in [0, 1]; ``encode`` the (N, 128, H/8, W/8) bottleneck; ``embed`` its GAP (N, 128)."""

    multiple = 8

    def __init__(self, channels: int = 1, filters: tuple[int, int, int] = (8, 16, 32),
                 gap_in_training: bool = False, gap_expand: str = "dense",
                 code_hw: tuple[int, int] = (4, 4)) -> None:
        super().__init__()
        if gap_expand not in GAP_EXPANSIONS:
            raise ValueError(f"gap_expand must be one of {GAP_EXPANSIONS}, got {gap_expand!r}")
        f1, f2, f3 = filters
        self.gap_in_training = bool(gap_in_training)
        self.gap_expand = gap_expand
        self.code_hw = (int(code_hw[0]), int(code_hw[1]))
        self.encoder = nn.Sequential(
            InceptionLayer(channels, f1), nn.MaxPool2d(2),
            InceptionLayer(4 * f1, f2), nn.MaxPool2d(2),
            InceptionLayer(4 * f2, f3), nn.MaxPool2d(2))
        self.decoder = nn.Sequential(
            InceptionLayer(4 * f3, f3), nn.Upsample(scale_factor=2, mode="nearest"),
            InceptionLayer(4 * f3, f2), nn.Upsample(scale_factor=2, mode="nearest"),
            InceptionLayer(4 * f2, f1), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(4 * f1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.Sigmoid())
        self.rep_dim = 4 * f3
        h, w = self.code_hw
        self.expand = (nn.Sequential(nn.Linear(self.rep_dim, self.rep_dim * h * w), nn.LeakyReLU(0.1))
                       if self.gap_in_training and gap_expand == "dense" else None)

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise ValueError(f"InceptionCAE needs H and W divisible by {self.multiple}, got "
                             f"{tuple(x.shape[-2:])}; zero-pad with pad_to_multiple(x, 8)")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.encoder(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """128-d representation: global average pooling of the bottleneck."""
        return self.encode(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        if self.gap_in_training:
            z = self.reexpand(z.mean(dim=(2, 3)), z.shape[-2:])
        return self.decoder(z)

    def reexpand(self, code: torch.Tensor, hw: tuple[int, int] | torch.Size) -> torch.Tensor:
        """(N, 128) GAP code -> (N, 128, h, w) decoder input (``gap_expand``)."""
        h, w = int(hw[0]), int(hw[1])
        if self.expand is None:  # "tile"
            return code[:, :, None, None].expand(-1, -1, h, w).contiguous()
        if (h, w) != self.code_hw:
            raise ValueError(f"InceptionCAE was built for a {self.code_hw} bottleneck (input "
                             f"{8 * self.code_hw[0]}x{8 * self.code_hw[1]}), got {(h, w)}")
        return self.expand(code).view(-1, self.rep_dim, h, w)
