"""Vision Transformer (ViT-B/16 and smaller) in plain PyTorch, with timm's parameter names.

No timm here, so the network is written out; ``state_dict`` keys and shapes are
those of ``timm.create_model("vit_base_patch16_224", ...)`` (``cls_token``,
``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,
mlp.fc1,mlp.fc2}``, ``norm``, optional ``head``), so a timm checkpoint saved as
``.safetensors`` or a plain tensor dict loads as is (:func:`load_vit`).

:meth:`VisionTransformer.embed` takes NCHW floats in ``[0, 1]`` (any size, 1 or
3 channels), repeats grey to RGB, resizes bilinearly to ``img_size``, normalises
with ``mean``/``std`` (0.5/0.5 for the ImageNet-21k ViT-B/16 weights, i.e.
``[-1, 1]``) and returns the CLS token after the final LayerNorm (what FITYMI
uses). Position embeddings are interpolated (bicubic) when ``img_size`` differs
from the checkpoint's grid.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..images import rgb_square
from .mobilenet import load_state_file

__all__ = ["VisionTransformer", "load_vit", "vit_b16", "vit_tiny_test"]


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a CLS token (timm naming). ``num_classes=0``: no ``head`` parameters."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, num_classes: int = 0,
                 mean: float = 0.5, std: float = 0.5, grid_size: int | None = None):
        super().__init__()
        if img_size < patch_size:
            raise ValueError(f"img_size {img_size} is smaller than the patch size {patch_size}")
        self.img_size, self.patch_size, self.embed_dim = int(img_size), int(patch_size), int(embed_dim)
        self.mean, self.std = float(mean), float(std)
        self.feature_dim = self.embed_dim
        g = grid_size or img_size // patch_size  # grid of the stored position embedding
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, g * g + 1, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        nn.init.trunc_normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        x = rgb_square(x01, self.img_size)
        return (x - self.mean) / self.std

    def _pos(self, n_patches: int) -> torch.Tensor:
        pos = self.pos_embed
        if pos.shape[1] == n_patches + 1:
            return pos
        g_old = int(math.isqrt(pos.shape[1] - 1))
        g_new = int(math.isqrt(n_patches))
        grid = pos[:, 1:].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, g_new * g_new, -1)], dim=1)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images -> token sequence (CLS first) with position embeddings."""
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self._pos(t.shape[1] - 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images -> CLS token after the final LayerNorm, (N, embed_dim)."""
        return self.norm(self.blocks(self.tokens(x)))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        """NCHW floats in [0, 1] (any size, 1 or 3 channels) -> CLS features (N, embed_dim)."""
        return self.forward_features(self.preprocess(x01))


def vit_b16(img_size: int = 224, num_classes: int = 0) -> VisionTransformer:
    """ViT-B/16: 12 blocks, width 768, 12 heads (the paper's backbone)."""
    return VisionTransformer(img_size, 16, 768, 12, 12, num_classes=num_classes, grid_size=14)


def vit_tiny_test(img_size: int = 32, num_classes: int = 0) -> VisionTransformer:
    """A tiny ViT for tests: patch 8, width 48, 4 blocks, 3 heads."""
    return VisionTransformer(img_size, 8, 48, 4, 3, num_classes=num_classes)


def load_vit(path: str | os.PathLike, img_size: int | None = None, num_heads: int | None = None,
             mean: float = 0.5, std: float = 0.5) -> VisionTransformer:
    """Build a :class:`VisionTransformer` from a timm-named weights file (eval mode).

    Width, depth, patch size, grid and head size are read from the tensors; the
    number of heads defaults to ``width // 64`` (ViT-B: 12), except for widths
    below 64 (tiny test nets: ``width // 16``). ``img_size`` defaults to the
    checkpoint's grid times the patch size; other sizes interpolate the
    position embedding.
    """
    state = load_state_file(path)
    need = ["patch_embed.proj.weight", "pos_embed", "cls_token", "norm.weight"]
    if any(k not in state for k in need):
        raise ValueError(f"{path}: not a timm ViT state dict (needs {need})")
    # drop keys timm may add that this model does not use (identity fc_norm, empty head)
    state = {k: v for k, v in state.items() if not k.startswith("fc_norm.") or v.numel()}
    dim, _, patch, _ = state["patch_embed.proj.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    grid = int(math.isqrt(state["pos_embed"].shape[1] - 1))
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
    heads = num_heads or (dim // 64 if dim >= 64 else max(1, dim // 16))
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / dim
    model = VisionTransformer(img_size or grid * patch, patch, dim, depth, heads, mlp_ratio, num_classes,
                              mean, std, grid_size=grid)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: state dict does not match the ViT: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
