"""The faster NLN training path (issue 12.6) keeps the maths: the generator steps that skip unused
gradients, Adam's multi-tensor update and in-place ReLUs give bit-identical weights, the loop's
on-device loss sums give the same history, and channels-last training agrees with the default
layout to float rounding and scores real digits alike."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noveltylab import metrics
from noveltylab.detector import create, load
from noveltylab.methods.nln import training
from noveltylab.methods.nln.models import NLNNetworks
from noveltylab.train import train_loop
from test_nln import SHARED, _one_thread  # noqa: F401  (one torch thread in every test, as test_nln)


def _images(n=96, side=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g)


def _weights(fam, step_factory, x, steps=3, **kw):
    torch.manual_seed(0)
    nets = NLNNetworks(fam, "lenet", 1, x.shape[2], x.shape[3], latent_dim=8, filters=8)
    nets.train()
    step = step_factory(nets, 1e-3, 1e-4, **kw)
    for i in range(steps):
        step((x[32 * i:32 * (i + 1)],))
    return nets.state_dict()


def _reference_aeres(nets, lr, adv_lr, disc_loss="paper"):
    """AE-res step as written before issue 12.6: the generator update through reconstruct(x), with
    gradients for the encoder and the discriminator computed and thrown away."""
    opt_ae = torch.optim.Adam(list(nets.encoder.parameters()) + list(nets.decoder.parameters()), lr=lr)
    opt_d = torch.optim.Adam(nets.disc_x.parameters(), lr=adv_lr)
    opt_g = torch.optim.Adam(nets.decoder.parameters(), lr=adv_lr)

    def adv(v, target):
        if disc_loss == "paper":
            logit = nets.disc_x(v)[1]
            return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))
        q = nets.disc_x(v)[0].clamp(1e-7, 1 - 1e-7)
        return F.binary_cross_entropy(q, torch.full_like(q, target))

    def step(batch):
        x = batch[0]
        loss = F.binary_cross_entropy_with_logits(nets.decoder(nets.encode(x), logits=True), x)
        opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        opt_ae.step()
        x_hat = nets.reconstruct(x)
        d_loss = adv(x, 1.0) + adv(x_hat.detach(), 0.0)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = adv(x_hat, 1.0)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return {"recon": loss}
    return step


@pytest.mark.parametrize("disc_loss", ["paper", "authors-code"])
def test_aeres_generator_step_is_bit_identical(disc_loss):
    x = _images()
    new = _weights("aeres", training.make_step, x, disc_loss=disc_loss)
    old = _weights("aeres", _reference_aeres, x, disc_loss=disc_loss)
    assert new.keys() == old.keys()
    for k in new:
        assert torch.equal(new[k], old[k]), k


@pytest.mark.parametrize("fam", ["aae", "aecon"])
def test_frozen_discriminator_is_bit_identical(fam, monkeypatch):
    x = _images()
    new = _weights(fam, training.make_step, x)
    monkeypatch.setattr(training, "_frozen", lambda module: contextlib.nullcontext())  # gradients kept
    old = _weights(fam, training.make_step, x)
    for k in new:
        assert torch.equal(new[k], old[k]), k


@pytest.mark.parametrize("fam", ["ae", "vae", "aeres"])
def test_inplace_relu_is_bit_identical(fam, monkeypatch):
    x = _images()
    new = _weights(fam, training.make_step, x)

    def out_of_place(nets, *args, **kw):  # the networks as they were: ReLUs not in place
        relus = [m for m in nets.modules() if isinstance(m, nn.ReLU)]
        assert relus and all(m.inplace for m in relus)
        for m in relus:
            m.inplace = False
        return training.make_step(nets, *args, **kw)
    old = _weights(fam, out_of_place, x)
    for k in new:
        assert torch.equal(new[k], old[k]), k


def test_frozen_restores_requires_grad():
    net = nn.Linear(3, 1)
    net.bias.requires_grad_(False)
    with training._frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert net.weight.requires_grad and not net.bias.requires_grad


def _conv_problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    x = _images(64)
    y = x.mean((1, 2, 3))[:, None]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step(batch):
        loss = F.mse_loss(net(batch[0]), batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"mse": loss, "half": 0.5}
    return net, step, (x, y)


def test_loop_history_is_the_per_step_mean():
    net, step, data = _conv_problem()
    seen = []

    def logged(batch):
        out = step(batch)
        seen.append(float(out["mse"].detach()) * batch[0].shape[0])
        return out
    hist = train_loop(logged, data, modules={"net": net}, epochs=1, batch_size=20, progress=False)
    assert hist.epochs[0]["mse"] == sum(seen) / 64  # float64 sums on the device == host sums
    assert hist.epochs[0]["half"] == 0.5


def test_channels_last_matches_default_layout():
    results = []
    for cl in (False, True):
        net, step, data = _conv_problem()
        hist = train_loop(step, data, modules={"net": net}, epochs=1, batch_size=16, progress=False,
                          channels_last=cl)  # 4 steps: rounding differences have not grown yet
        assert net[0].weight.is_contiguous()  # back in the default layout after training
        results.append((net.state_dict(), hist.epochs))
    (a, ha), (b, hb) = results
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=5e-5)
    assert ha[-1]["mse"] == pytest.approx(hb[-1]["mse"], rel=1e-4)


def test_channels_last_parameter_is_checked():
    with pytest.raises(TypeError, match="nln-ae: channels_last must be True or False, got 'yes'"):
        create("nln-ae", channels_last="yes")


def test_channels_last_scores_real_digits_alike(tmp_path):
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"mnist not available in {SHARED}")
    from noveltylab.data import load_dataset, one_class

    sp = one_class(load_dataset("mnist", "train", data_dir=SHARED), load_dataset("mnist", "test", data_dir=SHARED),
                   0, max_train=400, seed=0)
    idx = np.sort(np.random.default_rng(0).choice(len(sp.test), 600, replace=False))
    test, labels = sp.test[idx], sp.test_labels[idx]
    aurocs = []
    for cl in (False, True):
        det = create("nln-ae", profile="test", channels_last=cl, seed=0).fit(sp.train, val=sp.val[:100])
        aurocs.append(metrics.auroc(labels, det.score(test)))
    assert min(aurocs) > 0.85
    assert abs(aurocs[0] - aurocs[1]) < 0.03
    det.save(tmp_path / "m")
    np.testing.assert_allclose(load(tmp_path / "m").score(test[:50]), det.score(test[:50]), rtol=1e-5, atol=1e-6)
