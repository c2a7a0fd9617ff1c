"""The shared training loop: learning, logging, validation loss, checkpoints, seeding, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from noveltylab.train import load_checkpoint, map_batches, train_loop


def _problem(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return x, y


def _run(tmp_path=None, seed=0, epochs=20):
    x, y = _problem()
    net = nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    seen = []

    def step(batch):
        loss = nn.functional.mse_loss(net(batch[0]), batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"mse": loss}

    def val_step(batch):
        return {"mse": nn.functional.mse_loss(net(batch[0]), batch[1])}

    hist = train_loop(step, (x, y), modules={"net": net}, epochs=epochs, batch_size=32, seed=seed,
                      val_data=(x[:64], y[:64]), val_step=val_step, on_epoch_end=lambda e, logs: seen.append(e),
                      checkpoint_dir=tmp_path, checkpoint_every=5 if tmp_path else 0, progress=False)
    return net, hist, seen


def test_loop_learns_and_logs(tmp_path):
    net, hist, seen = _run(tmp_path)
    assert len(hist.epochs) == 20 and seen == list(range(20))
    assert hist.epochs[-1]["mse"] < 0.01 * hist.epochs[0]["mse"]
    assert "val_mse" in hist.epochs[-1]
    assert (tmp_path / "epoch_0005.safetensors").is_file() and (tmp_path / "last.safetensors").is_file()
    fresh = nn.Linear(4, 1)
    load_checkpoint({"net": fresh}, tmp_path / "last.safetensors")
    torch.testing.assert_close(fresh.weight, net.weight)


def test_loop_is_repeatable():
    a, _, _ = _run(seed=3, epochs=3)
    b, _, _ = _run(seed=3, epochs=3)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)


def test_diverging_loss_is_reported():
    x, y = _problem()
    net = nn.Linear(4, 1)

    def step(batch):
        return {"loss": torch.tensor(float("nan"))}

    with pytest.raises(FloatingPointError, match="loss 'loss' became nan"):
        train_loop(step, (x, y), modules={"net": net}, epochs=1, batch_size=32, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train_loop(step, (x, y), modules={"net": net}, epochs=1, batch_size=0)


def test_map_batches():
    x = torch.arange(10.0).reshape(10, 1)
    torch.testing.assert_close(map_batches(lambda b: b * 2, x, batch_size=3), x * 2)
