"""PANDA and MSAD (paper 004 Table 1 baselines): losses, collapse protection, real-data floors, persistence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import noveltylab
from noveltylab.metrics import auroc
from noveltylab.methods.msad import mean_shifted_loss, nt_xent
from noveltylab.methods.panda import compactness_loss


def test_compactness_loss_matches_the_authors_definition():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    c = torch.tensor([1.0, 1.0])
    # (||(0,1)||^2 / 2 + ||(2,3)||^2 / 2) / 2 = (0.5 + 6.5) / 2
    assert compactness_loss(f, c).item() == pytest.approx(3.5)


def _authors_nt_xent(o1: torch.Tensor, o2: torch.Tensor, temp: float) -> torch.Tensor:
    """The MSAD repository's contrastive_loss, written out independently."""
    o1, o2 = F.normalize(o1, dim=-1), F.normalize(o2, dim=-1)
    out = torch.cat([o1, o2])
    sim = torch.exp(out @ out.t() / temp)
    mask = ~torch.eye(2 * len(o1), dtype=torch.bool)
    sim = sim.masked_select(mask).view(2 * len(o1), -1)
    pos = torch.exp((o1 * o2).sum(-1) / temp)
    pos = torch.cat([pos, pos])
    return (-torch.log(pos / sim.sum(-1))).mean()


def test_nt_xent_and_angular_loss():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    u1, u2 = F.normalize(a, dim=1), F.normalize(b, dim=1)
    assert nt_xent(u1, u2, 0.25).item() == pytest.approx(_authors_nt_xent(a, b, 0.25).item(), rel=1e-5)
    c = F.normalize(torch.ones(5), dim=0)
    con, ang = mean_shifted_loss(u1, u2, c, 0.25, angular=True)
    assert con.item() == pytest.approx(_authors_nt_xent(u1 - c, u2 - c, 0.25).item(), rel=1e-5)
    assert ang.item() == pytest.approx((((u1 - c) ** 2).sum(1).mean() + ((u2 - c) ** 2).sum(1).mean()).item(),
                                       rel=1e-6)
    assert mean_shifted_loss(u1, u2, c, 0.25, angular=False)[1].item() == 0.0


def test_bad_options_name_the_parameter(digits_split):
    with pytest.raises(ValueError, match="protection"):
        noveltylab.create("panda", profile="test", protection="weight-decay").fit(digits_split.train)
    with pytest.raises(ValueError, match="fisher"):
        noveltylab.create("panda", profile="test", fisher="imagenet").fit(digits_split.train)


@pytest.fixture(scope="module")
def weights():
    from noveltylab.nets.weights import resolve_weights

    try:
        return resolve_weights("mobilenet_v2", "auto")
    except FileNotFoundError:
        pytest.skip("shared MobileNetV2 weights not found")


def _tail_drift(det) -> float:
    ref = noveltylab.create("dn2", input_size=det.input_size, device="cpu").fit(np.zeros((2, 8, 8), np.float32))
    ref_state = dict(ref.net_.named_parameters())
    return float(sum(((p - ref_state[n]).detach() ** 2).sum() for n, p in det.net_.named_parameters()))


def test_ewc_keeps_the_weights_near_the_pretrained_ones(weights, digits_split):
    common = dict(input_size=32, epochs=3, lr=1e-2, grad_clip=None, device="cpu", seed=0)
    free = noveltylab.create("panda", protection="none", **common).fit(digits_split.train)
    ewc = noveltylab.create("panda", protection="ewc", ewc_lambda=50.0, fisher="uniform", **common)
    ewc.fit(digits_split.train)
    model = noveltylab.create("panda", protection="ewc", fisher_samples=16, input_size=32, epochs=2,
                              device="cpu").fit(digits_split.train)  # the authors' lambda 1e4 and clip 1e-3
    assert _tail_drift(free) > 0
    assert _tail_drift(ewc) < 0.5 * _tail_drift(free)
    assert "ewc" in model.history_[-1] and model.history_[-1]["ewc"] >= 0


@pytest.fixture(scope="module")
def fmnist_split(shared_data):
    from noveltylab.data import load_dataset, one_class

    tr = load_dataset("fashion-mnist", "train", data_dir=shared_data)
    te = load_dataset("fashion-mnist", "test", data_dir=shared_data)
    s = one_class(tr, te, 1, max_train=200, seed=0)  # trouser normal
    return s, s.test[::10], s.test_labels[::10]


@pytest.mark.parametrize("name,floor", [("panda", 0.7), ("msad", 0.7)])  # MobileNetV2 at 64 px: DN2 gets 0.81
def test_auroc_floor_fashion_mnist_and_round_trip(name, floor, weights, fmnist_split, tmp_path):
    """cpu profile (3 epochs) on Fashion-MNIST trouser vs the rest: 200 training, 1,000 test images."""
    split, test, labels = fmnist_split
    det = noveltylab.create(name, profile="cpu", epochs=3, device="cpu", seed=0).fit(split.train)
    scores = det.score(test)
    assert auroc(labels, scores) > floor
    det.save(tmp_path / name)
    back = noveltylab.load(tmp_path / name)
    np.testing.assert_allclose(back.score(test[:50]), scores[:50], rtol=1e-5, atol=1e-6)
