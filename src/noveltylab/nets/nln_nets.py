"""Networks of paper 000 (NLN, Mesarcik et al.): LeNet-type encoder/decoder and
discriminators for small images (28/32 px), and the strided patch network the
authors use on 128x128 MVTec-AD patches.

LeNet-type (base ``filters`` = 32, inputs whose sides divide by 4):

* :class:`LeNetEncoder`: 3 x [Conv 2x2 ``same``, ReLU, MaxPool 2 (first two
  only), BatchNorm] -> Flatten -> Dense(L) linear. With ``vae=True`` the head
  is Dense(filters, ReLU) -> Dense(L) mean and Dense(L) log-variance.
* :class:`LeNetDecoder`: Dense(H/4 * W/4 * filters, ReLU) -> reshape -> 2 x
  [ConvTranspose 2x2 ``same``, ReLU, Upsample 2, BatchNorm] -> ConvTranspose
  2x2 to C channels, sigmoid. A stride-1 "same" transposed 2x2 convolution is
  a 2x2 convolution with a flipped kernel, so it is written as a 2x2
  ``Conv2d`` after TensorFlow's ``same`` zero padding (same function class).
* :class:`LatentDiscriminator` (AAE): Dense 64 -> 128 -> 256, each LeakyReLU +
  Dropout 0.3, Dense(1) logit.
* :class:`ImageDiscriminator` (AE-res, AE-con): an encoder of the same layout
  whose L-dim output is the "intermediate layer" q of Eq. 7, plus a Dense(1)
  logit head.

Patch network (:class:`PatchEncoder` / :class:`PatchDecoder`, patch sides
``8 * 2**n``): 4x4 stride-2 convolutions down to 8x8 (128 -> 64 -> 32 -> 16 ->
8 for 128 px), 3x3 convolutions, and a final 8x8 ``valid`` convolution to L
(1x1); LeakyReLU 0.2 everywhere; the decoder mirrors it (8x8 transposed conv
from 1x1, 3x3 convs, 4x4 stride-2 transposed convs up to the patch size,
sigmoid output).

The LeNet-type ReLUs work in place (they follow a convolution or a linear layer, whose
backward does not need its output): the same values, one activation buffer fewer per layer,
bit-identical training (tested) and faster on CPU (issue 12.6).

Every network returns logits where a loss needs them (``logits=True``) so the
losses use ``binary_cross_entropy_with_logits`` (numerically safe).
"""
from __future__ import annotations

import math

import torch
from torch import nn


# --- LeNet-type networks for 28/32 px --------------------------------------------------
def _conv2_same(cin: int, cout: int) -> nn.Sequential:
    """2x2 convolution with TensorFlow's ``same`` padding (one zero row/column after the image)."""
    return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(cin, cout, 2))


class LeNetEncoder(nn.Module):
    """Encoder f: (N, C, H, W) -> (N, L); ``H`` and ``W`` must divide by 4."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int = 32, filters: int = 32,
                 vae: bool = False) -> None:
        super().__init__()
        if height % 4 or width % 4:
            raise ValueError(f"LeNetEncoder needs sides divisible by 4, got {height}x{width}")
        layers: list[nn.Module] = []
        cin = channels
        for i in range(3):
            layers += [_conv2_same(cin, filters), nn.ReLU(inplace=True)]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            layers.append(nn.BatchNorm2d(filters))
            cin = filters
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = filters * (height // 4) * (width // 4)
        self.vae = vae
        if vae:
            self.hidden = nn.Sequential(nn.Linear(flat, filters), nn.ReLU(inplace=True))
            self.mean = nn.Linear(filters, latent_dim)
            self.logvar = nn.Linear(filters, latent_dim)
        else:
            self.dense = nn.Linear(flat, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code (the mean for a VAE encoder)."""
        return self.encode(x)[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean or code, log-variance or None)."""
        h = self.features(x)
        if self.vae:
            h = self.hidden(h)
            return self.mean(h), self.logvar(h)
        return self.dense(h), None


class LeNetDecoder(nn.Module):
    """Decoder g: (N, L) -> (N, C, H, W) in [0, 1] (or logits)."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int = 32, filters: int = 32) -> None:
        super().__init__()
        self.shape = (filters, height // 4, width // 4)
        self.dense = nn.Sequential(nn.Linear(latent_dim, filters * (height // 4) * (width // 4)), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [_conv2_same(filters, filters), nn.ReLU(inplace=True), nn.Upsample(scale_factor=2),
                       nn.BatchNorm2d(filters)]
        layers.append(_conv2_same(filters, channels))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, logits: bool = False) -> torch.Tensor:
        out = self.body(self.dense(z).view(z.shape[0], *self.shape))
        return out if logits else torch.sigmoid(out)


class LatentDiscriminator(nn.Module):
    """AAE discriminator on latent codes: Dense 64 -> 128 -> 256 (LeakyReLU, Dropout 0.3) -> logit."""

    def __init__(self, latent_dim: int = 32, base: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = latent_dim
        for w in (base, 2 * base, 4 * base):
            layers += [nn.Linear(cin, w), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            cin = w
        layers.append(nn.Linear(cin, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


class ImageDiscriminator(nn.Module):
    """d_x: an encoder-shaped network whose L-dim output q(x) is the intermediate
    layer of Eq. 7, followed by a Dense(1) logit head. ``forward`` returns (q, logit)."""

    def __init__(self, encoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.features = encoder
        self.head = nn.Linear(latent_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.features(x)
        return q, self.head(q).squeeze(1)


# --- the 128x128 patch network (MVTec-AD) ------------------------------------------------
def _n_down(patch: int) -> int:
    n = math.log2(patch / 8) if patch >= 8 else -1
    if n < 0 or n != int(n):
        raise ValueError(f"patch size must be 8 * 2**n (8, 16, 32, 64, 128, ...), got {patch}")
    return int(n)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


class PatchEncoder(nn.Module):
    """Strided 4x4 convs down to 8x8, 3x3 convs, final 8x8 valid conv to L (1x1)."""

    def __init__(self, channels: int, patch: int = 128, latent_dim: int = 128, filters: int = 32,
                 vae: bool = False) -> None:
        super().__init__()
        n = _n_down(patch)
        f = filters
        layers: list[nn.Module] = []
        cin = channels
        for _ in range(max(n - 1, 0)):
            layers += [nn.Conv2d(cin, f, 4, stride=2, padding=1), _lrelu()]
            cin = f
        layers += [nn.Conv2d(cin, f, 3, padding=1), _lrelu()]
        if n >= 1:
            layers += [nn.Conv2d(f, 2 * f, 4, stride=2, padding=1), _lrelu()]
        else:
            layers += [nn.Conv2d(f, 2 * f, 3, padding=1), _lrelu()]
        layers += [nn.Conv2d(2 * f, 2 * f, 3, padding=1), _lrelu(), nn.Conv2d(2 * f, f, 3, padding=1), _lrelu()]
        self.features = nn.Sequential(*layers)
        self.vae = vae
        if vae:
            self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(f * 64, f), nn.ReLU())
            self.mean = nn.Linear(f, latent_dim)
            self.logvar = nn.Linear(f, latent_dim)
        else:
            self.out = nn.Conv2d(f, latent_dim, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.features(x)
        if self.vae:
            h = self.hidden(h)
            return self.mean(h), self.logvar(h)
        return self.out(h).flatten(1), None


class PatchDecoder(nn.Module):
    """Mirror of :class:`PatchEncoder`: 8x8 transposed conv from 1x1, 3x3 convs,
    4x4 stride-2 transposed convs up to the patch size, sigmoid."""

    def __init__(self, channels: int, patch: int = 128, latent_dim: int = 128, filters: int = 32) -> None:
        super().__init__()
        n = _n_down(patch)
        f = filters
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, f, 8), _lrelu(),
                                   nn.Conv2d(f, 2 * f, 3, padding=1), _lrelu(),
                                   nn.Conv2d(2 * f, 2 * f, 3, padding=1), _lrelu()]
        cin = 2 * f
        for _ in range(max(n - 1, 0)):
            layers += [nn.ConvTranspose2d(cin, f, 4, stride=2, padding=1), _lrelu()]
            cin = f
        if n >= 1:
            layers.append(nn.ConvTranspose2d(cin, channels, 4, stride=2, padding=1))
        else:
            layers.append(nn.Conv2d(cin, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor, logits: bool = False) -> torch.Tensor:
        out = self.body(z.view(z.shape[0], self.latent_dim, 1, 1))
        return out if logits else torch.sigmoid(out)
