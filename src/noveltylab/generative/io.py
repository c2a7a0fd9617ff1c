"""Writing generated images (for CLIs and benchmark scripts, never for detectors).

``save_image_folder(images, root, class_name)`` writes ``root/<class_name>/NNNNN.png``
so ``load_dataset("folder:<root>")`` (or ``as_images(root)``) reads the set back,
e.g. as the anomalies of a CIFAR-10-FSDE-style test. ``save_grid`` writes one
PNG mosaic.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected NCHW images with 1 or 3 channels, got {tuple(x.shape)}")
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_image_folder(images: torch.Tensor, root: str | os.PathLike, class_name: str = "fake") -> Path:
    from PIL import Image

    folder = Path(root) / class_name
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(_to_uint8(images)):
        Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(folder / f"{i:05d}.png")
    return folder


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> np.ndarray:
    a = _to_uint8(images)
    n, h, w, c = a.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = a[i]
    return grid


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8, scale: int = 1) -> Path:
    from PIL import Image

    g = make_grid(images, nrow)
    im = Image.fromarray(g[..., 0] if g.shape[2] == 1 else g)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
