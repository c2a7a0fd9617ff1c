"""GT and MHRot (paper 004 Table 1 baselines): transformations, losses, scores, persistence, real-data floors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab import ImageError
from noveltylab.metrics import auroc
from noveltylab.methods.rotation import apply_transforms, transform_set
from noveltylab.nets.wrn import WideResNet


def test_transform_sets_have_the_papers_sizes():
    assert len(transform_set(True, True)) == 72  # GT: flip x tx x ty x rot90
    assert len(transform_set(True, False)) == 8  # the cpu subset
    assert len(set(transform_set(True, True))) == 72
    gt = noveltylab.create("gt", profile="paper")
    assert len(gt._transforms()) == 72 and gt.heads == (72,)
    mh = noveltylab.create("mhrot", profile="paper")
    assert len(mh._transforms()) == 36 and mh.heads == (4, 3, 3)


def test_apply_transforms_flip_shift_rotate():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    z = torch.zeros(2, dtype=torch.long)
    one = torch.ones(2, dtype=torch.long)
    assert torch.equal(apply_transforms(x, z, z, z, z, 2), x)
    assert torch.equal(apply_transforms(x, one, z, z, z, 2), x.flip(-1))
    assert torch.equal(apply_transforms(x, z, z, z, one * 3, 2), torch.rot90(x, 3, dims=(-2, -1)))
    right = apply_transforms(x, z, one, z, z, 2)  # content moves 2 px right, reflection on the left
    assert torch.equal(right[..., 2:], x[..., :-2])
    assert torch.equal(right[..., 0], x[..., 2]) and torch.equal(right[..., 1], x[..., 1])
    down = apply_transforms(x, z, z, -one, z, 2)  # ty = -1: content moves 2 px up
    assert torch.equal(down[..., :-2, :], x[..., 2:, :])
    # flip happens before the rotation (GT's order)
    both = apply_transforms(x, one, z, z, one, 2)
    assert torch.equal(both, torch.rot90(x.flip(-1), 1, dims=(-2, -1)))


def test_wrn_shapes_and_bad_depth():
    net = WideResNet(10, 1, 7, 1)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 7)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(12, 1, 7, 1)


def test_non_square_images_and_bad_options_are_rejected():
    x = np.random.default_rng(0).random((10, 8, 12)).astype(np.float32)
    with pytest.raises(ImageError, match="square"):
        noveltylab.create("gt", profile="test").fit(x)
    sq = np.random.default_rng(0).random((10, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="score_type"):
        noveltylab.create("gt", profile="test", score_type="dirichlet").fit(sq)
    with pytest.raises(ValueError, match="score_transforms"):
        noveltylab.create("mhrot", profile="test", score_transforms="some").fit(sq)


def test_score_is_sum_of_negative_log_likelihoods(digits_split):
    det = noveltylab.create("gt", profile="test", device="cpu").fit(digits_split.train)
    x = torch.as_tensor(noveltylab.images.as_images(digits_split.test[:5]))
    want = torch.zeros(5, dtype=torch.float64)
    with torch.no_grad():
        for t in range(len(det._transforms())):
            tt = torch.full((5,), t)
            lp = torch.log_softmax(det.net_(det._transformed(x, tt)), 1)
            want -= lp[torch.arange(5), t].double()
    np.testing.assert_allclose(det.score(digits_split.test[:5]), want.numpy(), rtol=1e-5)
    prob = noveltylab.create("gt", profile="test", device="cpu", score_type="prob").fit(digits_split.train)
    assert np.all(prob.score(digits_split.test[:5]) >= -len(det._transforms()) - 1e-6)


@pytest.fixture(scope="module")
def mnist_split(shared_data):
    from noveltylab.data import load_dataset, one_class

    tr, te = load_dataset("mnist", "train", data_dir=shared_data), load_dataset("mnist", "test", data_dir=shared_data)
    s = one_class(tr, te, 1, max_train=200, seed=0)
    return s, s.test[::10], s.test_labels[::10]


@pytest.mark.parametrize("name,floor", [("gt", 0.9), ("mhrot", 0.75)])  # digit 1: 180-degree symmetric
def test_auroc_floor_mnist_and_round_trip(name, floor, mnist_split, tmp_path):
    """cpu profile (shortened to 1 epoch) on MNIST digit 1 vs the rest, 200 training images, 1,000 test images."""
    split, test, labels = mnist_split
    det = noveltylab.create(name, profile="cpu", epochs=1, device="cpu", seed=0).fit(split.train)
    scores = det.score(test)
    assert auroc(labels, scores) > floor
    det.save(tmp_path / name)
    back = noveltylab.load(tmp_path / name)
    np.testing.assert_allclose(back.score(test[:50]), scores[:50], rtol=1e-6)
