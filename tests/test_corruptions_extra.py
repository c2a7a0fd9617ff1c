"""The published CIFAR-10-C / MNIST-C corruptions without external data: shape, range, seeding,
graded severity, and the corrupted protocol's named sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from noveltylab import augment as A
from noveltylab.corruptions_extra import OPS


def _imgs(c: int, n: int = 16, h: int = 28) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, c, h // 4, h // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, h), mode="bilinear", align_corners=False)
    x[..., :4, :] = 0  # a dark margin, as digits have, so that shifts and zooms move content
    return x


def _change(x: torch.Tensor, name: str, s: int) -> float:
    return float((A.corrupt(x, name, s, torch.Generator().manual_seed(0)) - x).abs().mean())


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("c", [1, 3])
def test_new_corruptions_shape_range_seed_and_graded_severity(name: str, c: int) -> None:
    x = _imgs(c)
    y = A.corrupt(x, name, 3, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, A.corrupt(x, name, 3, torch.Generator().manual_seed(0)))
    assert torch.equal(x, _imgs(c)), "input must not be modified in place"
    if name == "saturate" and c == 1:
        assert torch.equal(y, x)  # saturation does not exist on grey images
        return
    d = [_change(x, name, s) for s in range(1, 6)]
    assert d[0] > 1e-3, f"{name} at severity 1 leaves the images unchanged"
    if name == "saturate":  # CIFAR-10-C: severities 1-2 desaturate (0.3, 0.1), 3-5 oversaturate (2, 5, 20)
        assert d[1] > d[0] and d[2] < d[3] < d[4]
        return
    if name == "glass_blur":  # CIFAR-10-C (sigma, delta, iterations): 1-3 one shuffling pass, 4-5 two
        assert min(d[3], d[4]) > max(d[:3])
        return
    assert d[4] > 1.2 * d[0], f"{name}: severity 5 should change the images clearly more than 1: {d}"
    for lo, hi in zip(d, d[1:]):
        assert hi >= 0.9 * lo, f"{name}: change should grow with severity: {d}"


def test_published_sets_are_implemented() -> None:
    assert len(A.CIFAR10_C) == 17 and len(A.MNIST_C) == 15  # 19 and 15 published; earlier runs' set: no snow
    assert set(A.CIFAR10_C_NOFROST) - set(A.CIFAR10_C) == {"snow"} and len(A.CIFAR10_C_NOFROST) == 18
    assert "frost" not in A.ALL_CORRUPTIONS  # needs the published frost photographs
    x = _imgs(3, n=2)
    for name in A.ALL_CORRUPTIONS:
        assert A.corrupt(x, name, 2, torch.Generator().manual_seed(0)).shape == x.shape
    assert A.CORRUPTIONS == A.CORRUPTION_SETS["mixed"] and len(A.CORRUPTIONS) == 11  # earlier records' set


def test_geometric_ones_are_what_they_say() -> None:
    x = torch.zeros(1, 1, 32, 32)
    x[..., 14:18, 20:24] = 1.0
    moved = A.corrupt(x, "translate", 5, torch.Generator().manual_seed(0))
    assert abs(float(moved.sum()) - float(x.sum())) < 1.0 and not torch.allclose(moved, x, atol=0.1)
    small = A.corrupt(torch.ones(1, 1, 32, 32), "scale", 5, torch.Generator().manual_seed(0))
    assert abs(float(small.mean()) - 0.25) < 0.05  # shrunk to half size: a quarter of the area
    s = A.corrupt(torch.zeros(1, 1, 20, 20), "stripe", 3, torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) == {0.0, 1.0} and int(s[0, 0].amax(0).sum()) == 4  # one 4-px-wide band
    z = A.corrupt(torch.zeros(4, 1, 28, 28), "zigzag", 1, torch.Generator().manual_seed(0))
    assert bool((z.flatten(1).amax(1) == 1).all())
    e = A.corrupt(torch.zeros(1, 1, 28, 28), "canny_edges", 5, torch.Generator().manual_seed(0))
    sq = torch.zeros(1, 1, 28, 28)
    sq[..., 8:20, 8:20] = 1.0
    edges = A.corrupt(sq, "canny_edges", 5, torch.Generator().manual_seed(0))
    assert float(e.sum()) == 0 and float(edges[..., 12:16, 12:16].sum()) == 0 and float(edges.sum()) > 0


@pytest.mark.parametrize("which", ["mnist-c", "cifar10-c", "cifar10-c-nofrost"])
def test_corrupted_protocol_uses_the_named_set(which: str) -> None:
    from noveltylab.data.corrupted import corrupt_images

    imgs = (np.random.default_rng(0).random((60, 28, 28, 1)) * 255).astype(np.uint8)
    out, idx = corrupt_images(imgs, which, 3, seed=0)
    assert out.shape == imgs.shape and out.dtype == np.uint8
    names = A.CORRUPTION_SETS[which]
    assert idx.max() < len(names) and len(np.unique(idx)) > len(names) // 2
    with pytest.raises(ValueError, match="use one of the sets mixed, cifar10-c, mnist-c, cifar10-c-nofrost"):
        corrupt_images(imgs, "frost", 3)
    one, _ = corrupt_images(imgs, "zigzag", 3, seed=0)
    assert not np.array_equal(one, imgs)


def test_snow_adds_bright_falling_streaks() -> None:
    """CIFAR-10-C snow: a brighter image with streaks that run down (angles -135..-45 degrees), not a blur."""
    x = torch.full((8, 3, 32, 32), 0.2)
    y = A.corrupt(x, "snow", 4, torch.Generator().manual_seed(0))
    assert float(y.mean()) > float(x.mean()) + 0.05
    flakes = (y - y.amin((2, 3), keepdim=True))[:, 0]  # snow layer (+ its 180-degree rotation)
    # streaks: neighbours along the columns agree more than along the rows
    vert = float((flakes[:, 1:, :] - flakes[:, :-1, :]).abs().mean())
    horiz = float((flakes[:, :, 1:] - flakes[:, :, :-1]).abs().mean())
    assert vert < 0.8 * horiz
    grey = A.corrupt(torch.zeros(2, 1, 28, 28), "snow", 3, torch.Generator().manual_seed(1))
    assert grey.shape == (2, 1, 28, 28) and 0 < float(grey.mean()) < 0.5
