"""A small U-Net score network (DDPM/NCSN++-style residual blocks, time-conditioned).

``ScoreUNet(channels, base, mults, res_blocks)``: input conv, ``len(mults)``
resolution levels of ``res_blocks`` residual blocks (GroupNorm, SiLU, 3x3
convs, additive sinusoidal time embedding) with average-pool downsampling and
nearest-neighbour upsampling with skip connections, output conv initialised to
zero. It predicts the noise ``z`` of ``x_t = mean(t) x0 + std(t) z``; the score
is ``-net(x, t) / std(t)`` (the ``lambda(t) = std(t)^2``-weighted denoising
score matching objective of Song et al.). Side length must be divisible by
``2 ** (len(mults) - 1)``. (diffusers' ``UNet2DModel`` would fit the same
interface; this self-contained net keeps the CPU profile small and adds no
dependency.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _groups(c: int) -> int:
    for g in (8, 4, 2, 1):
        if c % g == 0:
            return g
    return 1


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ScoreUNet(nn.Module):
    def __init__(self, channels: int = 3, base: int = 32, mults: tuple[int, ...] = (1, 2, 2), res_blocks: int = 1):
        super().__init__()
        if base < 1 or not mults or res_blocks < 1:
            raise ValueError("ScoreUNet needs base >= 1, at least one level and res_blocks >= 1")
        self.channels, self.base, self.mults, self.res_blocks = channels, base, tuple(mults), res_blocks
        tdim = base * 4
        self.tmlp = nn.Sequential(nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inc = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        chans = [base]
        c = base
        for lvl, m in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(ResBlock(c, base * m, tdim))
                c = base * m
                chans.append(c)
            if lvl < len(mults) - 1:
                chans.append(c)  # the pooled activation is a skip too
        self.mid = ResBlock(c, c, tdim)
        self.up = nn.ModuleList()
        for m in reversed(mults):
            for _ in range(res_blocks + 1):
                self.up.append(ResBlock(c + chans.pop(), base * m, tdim))
                c = base * m
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.mults) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise ValueError(f"ScoreUNet: image side {tuple(x.shape[-2:])} must be divisible by {self.multiple}")
        temb = self.tmlp(timestep_embedding(t, self.base))
        h = self.inc(x)
        hs = [h]
        i = 0
        for lvl in range(len(self.mults)):
            for _ in range(self.res_blocks):
                h = self.down[i](h, temb)
                i += 1
                hs.append(h)
            if lvl < len(self.mults) - 1:
                h = F.avg_pool2d(h, 2)
                hs.append(h)
        h = self.mid(h, temb)
        i = 0
        for lvl in range(len(self.mults)):
            for _ in range(self.res_blocks + 1):
                skip = hs.pop()
                if skip.shape[-1] != h.shape[-1]:
                    h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
                h = self.up[i](torch.cat([h, skip], dim=1), temb)
                i += 1
        return self.out(F.silu(self.out_norm(h)))
