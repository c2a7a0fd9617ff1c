"""Augmentation library: shapes, seeded determinism, every op changes the image, corruptions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from noveltylab import augment as A


def _imgs(c: int = 3, h: int = 32, w: int = 32, n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    # smooth random images (structure, so that warps and crops change them)
    x = torch.rand(n, c, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


AUX = torch.rand(5, 1, 20, 20, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("name", A.HARD_AUGMENTATIONS)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 8, 8), (3, 24, 32)])
def test_hard_shapes_range_and_determinism(name: str, shape: tuple[int, int, int]) -> None:
    x = _imgs(*shape)
    y1 = A.hard_augment(x, name, torch.Generator().manual_seed(0), aux=AUX)
    y2 = A.hard_augment(x, name, torch.Generator().manual_seed(0), aux=AUX)
    y3 = A.hard_augment(x, name, torch.Generator().manual_seed(1), aux=AUX)
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert torch.equal(y1, y2), "same seed must give the same output"
    assert not torch.equal(y1, y3), "another seed should give another output"
    assert float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0
    # every image is changed
    diff = (y1 - x).abs().flatten(1).amax(1)
    assert bool((diff > 1e-3).all()), f"{name} left some images unchanged"
    assert torch.equal(x, _imgs(*shape)), "input must not be modified in place"


def test_rotation_is_exact_rot90() -> None:
    x = _imgs(n=4)
    y = A.rotation(x, torch.Generator().manual_seed(0))
    for i in range(4):
        assert any(torch.equal(y[i], torch.rot90(x[i], k, dims=(-2, -1))) for k in (1, 2, 3))


def test_cut_permutation_keeps_pixels() -> None:
    x = _imgs(n=4)
    y = A.cut_permutation(x, torch.Generator().manual_seed(0))
    assert torch.allclose(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_mixup_needs_aux_and_small_lambda() -> None:
    x = _imgs(n=4)
    with pytest.raises(ValueError, match="auxiliary"):
        A.mixup(x, torch.Generator().manual_seed(0))
    y = A.mixup(x, torch.Generator().manual_seed(0), aux=torch.zeros(3, 3, 32, 32))
    ratio = (y / x.clamp(min=1e-6)).flatten(1).median(1).values  # = 1 - lambda
    assert bool(((ratio > 0.89) & (ratio < 0.99)).all())


def test_unknown_names_raise() -> None:
    x = _imgs(n=2)
    with pytest.raises(ValueError, match="unknown hard augmentation"):
        A.hard_augment(x, "nope")
    with pytest.raises(ValueError, match="unknown corruption"):
        A.corrupt(x, "nope")
    with pytest.raises(ValueError, match="severity"):
        A.corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match="4-D"):
        A.rotation(x[0])


@pytest.mark.parametrize("name", A.CORRUPTIONS)
@pytest.mark.parametrize("c", [1, 3])
def test_corruptions(name: str, c: int) -> None:
    x = _imgs(c=c)
    y = A.corrupt(x, name, 3, torch.Generator().manual_seed(0))
    y2 = A.corrupt(x, name, 3, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(y, y2)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().mean()) > 1e-3
    # graded: severity 5 changes the images at least as much as severity 1 (on average)
    d1 = float((A.corrupt(x, name, 1, torch.Generator().manual_seed(0)) - x).abs().mean())
    d5 = float((A.corrupt(x, name, 5, torch.Generator().manual_seed(0)) - x).abs().mean())
    assert d5 >= d1 * 0.9


def test_positive_views() -> None:
    torch.manual_seed(0)
    for c in (1, 3):
        v = A.PositiveViews((32, 32), c)
        x = _imgs(c=c)
        y = v(x)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        assert not torch.equal(y, x)


def test_corrupt_mixed_assigns_all() -> None:
    x = _imgs(n=40)
    y, which = A.corrupt_mixed(x, 2, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and len(np.unique(which.numpy())) > 5
