"""Patch handling for the localising NLN models (MVTec-AD style images).

Images are resized to ``image_size`` x ``image_size`` and cut into
non-overlapping ``patch_size`` patches (row-major); training adds random crops
of the same size, each rotated by a random multiple of 90 degrees (the
crop + rot90 augmentation the paper takes from Bergmann et al.). Maps computed
per patch are stitched back in the same order.
"""
from __future__ import annotations

import torch


def grid_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, S, S) -> (N * g * g, C, patch, patch), row-major per image, g = S // patch."""
    n, c, s, _ = x.shape
    g = s // patch
    p = x.unfold(2, patch, patch).unfold(3, patch, patch)        # (N, C, g, g, P, P)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(n * g * g, c, patch, patch).contiguous()


def stitch(maps: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """(N * g * g, P, P) patch maps -> (N, S, S) image maps (inverse of :func:`grid_patches`)."""
    patch = maps.shape[-1]
    g = size // patch
    m = maps.reshape(n, g, g, patch, patch).permute(0, 1, 3, 2, 4)
    return m.reshape(n, g * patch, g * patch)


def augmented_crops(x: torch.Tensor, patch: int, per_image: int, rot90: bool, seed: int) -> torch.Tensor:
    """``per_image`` random ``patch`` crops of every image, each rotated by k * 90 degrees (k random when ``rot90``)."""
    n, c, s, _ = x.shape
    if per_image <= 0:
        return x.new_zeros((0, c, patch, patch))
    gen = torch.Generator().manual_seed(seed)
    top = torch.randint(0, s - patch + 1, (n, per_image), generator=gen)
    left = torch.randint(0, s - patch + 1, (n, per_image), generator=gen)
    rots = torch.randint(0, 4, (n, per_image), generator=gen) if rot90 else torch.zeros((n, per_image), dtype=torch.long)
    out = []
    for i in range(n):
        for j in range(per_image):
            t, l_ = int(top[i, j]), int(left[i, j])
            crop = x[i, :, t:t + patch, l_:l_ + patch]
            out.append(torch.rot90(crop, int(rots[i, j]), dims=(1, 2)))
    return torch.stack(out)
