"""NLN AE-res discriminator loss: Eq. 6 on the real/fake output (paper, default) vs the authors'
code (BCE on the intermediate layer q, Keras-clipped probabilities)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab.data import load_dataset
from noveltylab.methods.nln.models import NLNNetworks
from noveltylab.methods.nln.training import _bce_clipped, make_step


def test_keras_clipped_bce() -> None:
    p = torch.tensor([-1.0, 0.3, 2.0])
    got = _bce_clipped(p, 1.0)
    want = -(math.log(1e-7) + math.log(0.3) + math.log(1 - 1e-7)) / 3
    assert abs(float(got) - want) < 1e-4
    p.requires_grad_(True)
    _bce_clipped(p, 1.0).backward()
    assert p.grad[0] == 0 and p.grad[2] == 0 and p.grad[1] < 0  # no gradient where clipped


def _step_changes(disc_loss: str) -> tuple[bool, bool]:
    torch.manual_seed(0)
    nets = NLNNetworks("aeres", "lenet", 1, 16, 16, 8, 8)
    head0 = nets.disc_x.head.weight.detach().clone()
    feat0 = [p.detach().clone() for p in nets.disc_x.features.parameters()]
    step = make_step(nets, 1e-3, 1e-2, disc_loss=disc_loss)
    x = torch.rand(16, 1, 16, 16)
    out = step((x,))
    assert all(torch.isfinite(v) for v in out.values())
    head_moved = not torch.equal(nets.disc_x.head.weight, head0)
    feat_moved = any(not torch.equal(a, b) for a, b in zip(nets.disc_x.features.parameters(), feat0))
    return head_moved, feat_moved


def test_paper_trains_the_real_fake_head_authors_code_trains_q_only() -> None:
    assert _step_changes("paper") == (True, True)
    assert _step_changes("authors-code") == (False, True)  # the loss never reaches the sigmoid head


def test_option_validation_and_default() -> None:
    assert noveltylab.create("nln-aeres").disc_loss == "paper"
    with pytest.raises(ValueError, match="disc_loss must be one of"):
        noveltylab.create("nln-aeres", disc_loss="latent")
    with pytest.raises(ValueError, match="has no such variant"):
        noveltylab.create("nln-ae", disc_loss="authors-code")
    with pytest.raises(ValueError, match="disc_loss must be one of"):
        make_step(NLNNetworks("aeres", "lenet", 1, 16, 16, 8, 8), 1e-3, 1e-3, disc_loss="x")


def test_authors_code_variant_fits_scores_and_round_trips(tmp_path) -> None:
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    det = noveltylab.create("nln-aeres", profile="test", disc_loss="authors-code", seed=0)
    det.fit(tr.images[tr.labels == 0])
    s = det.score(te.images[:30])
    assert s.shape == (30,) and np.all(np.isfinite(s))
    det.save(tmp_path / "m")
    back = noveltylab.load(tmp_path / "m")
    assert back.disc_loss == "authors-code"
    np.testing.assert_allclose(back.score(te.images[:30]), s, rtol=1e-5, atol=1e-7)
