"""Score-based generative model: training on normal images, FID early stopping, sampling.

:class:`ScoreModel` bundles a :class:`~.score_net.ScoreUNet` with an SDE. It
works at a fixed square resolution ``size`` (images are bilinearly resized to
it, scaled to [-1, 1]; samples are resized back by the caller).

Training uses the library's ``train_loop`` (denoising score matching:
``t ~ U(eps, 1)``, ``x_t = mean(t) x0 + std(t) z``, loss ``|net(x_t, t) - z|^2``;
Adam). :meth:`ScoreModel.fit_early_stopped` checks the FID of
``fid_samples`` fresh samples against real normal images every
``check_every`` epochs and stops at the first check whose FID is at or
below ``fid_target`` (the paper stops its generator early at FID ~ 40 to get
near-distribution, imperfect samples); when no check reaches the target the
last checkpoint is kept, or with ``restore_best=True`` the check of lowest FID
(``patience`` then also ends training after that many checks without a new
lowest FID, as a run whose FID only rises need not go to the cap). Every check's weights are kept in memory
(``checkpoints_``) and, when ``checkpoint_dir`` is given, also written as
``epoch_XXXX.safetensors`` by ``train_loop``.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..images import resize
from ..train import train_loop
from .sampler import euler_maruyama
from .score_net import ScoreUNet
from .sde import SDE, make_sde

log = logging.getLogger("noveltylab.generative")


class _StopTraining(Exception):
    pass


@dataclass
class Check:
    epoch: int
    fid: float
    loss: float
    state: dict = field(repr=False, default_factory=dict)


class ScoreModel:
    """Score-SDE generator. ``sde``: "vp" or "ve"; ``base``/``mults``/``res_blocks``: U-Net size.

    ``ema``: decay of the exponential moving average of the weights that sampling uses (Song et
    al. sample from an EMA, rate 0.999 / 0.9999; 0 samples from the raw weights). The decay is
    warmed up as ``min(ema, (1 + n) / (10 + n))`` after ``n`` updates, so short runs still move.
    """

    def __init__(self, channels: int, size: int = 32, sde: str = "vp", base: int = 32,
                 mults: tuple[int, ...] = (1, 2, 2), res_blocks: int = 1, lr: float = 2e-4,
                 batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu", ema: float = 0.999):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        mult = 2 ** (len(mults) - 1)
        if size < 4 or size % mult:
            raise ValueError(f"generator size {size} must be >= 4 and divisible by {mult}")
        if lr <= 0 or batch_size < 1:
            raise ValueError("lr must be > 0 and batch_size >= 1")
        if not 0.0 <= float(ema) < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema!r}")
        self.channels, self.size, self.lr, self.batch_size, self.seed = channels, size, lr, batch_size, seed
        self.device = torch.device(device)
        self.sde: SDE = make_sde(sde)
        self.net = ScoreUNet(channels, base, tuple(mults), res_blocks).to(self.device)
        self.ema = float(ema)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False) if self.ema else self.net
        self._ema_updates = 0
        self.checkpoints_: list[Check] = []
        self.stop_epoch_: int | None = None
        self.restored_epoch_: int | None = None
        self.target_reached_: bool = False

    # -- data <-> model space ------------------------------------------------------------
    def to_model(self, x01: torch.Tensor) -> torch.Tensor:
        if x01.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels}-channel images, got {x01.shape[1]}")
        return resize(x01.float(), self.size) * 2.0 - 1.0

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The score of the sampling weights (the EMA when ``ema`` > 0)."""
        _, std = self.sde.marginal(t)
        return -self.ema_net(x, t) / std.view(-1, 1, 1, 1)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_net is self.net:
            return
        self._ema_updates += 1
        n = self._ema_updates
        decay = min(self.ema, (1.0 + n) / (10.0 + n))
        for pe, p in zip(self.ema_net.parameters(), self.net.parameters()):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(self.ema_net.buffers(), self.net.buffers()):
            be.copy_(b)

    # -- training ----------------------------------------------------------------------------
    def _step_fn(self, opt: torch.optim.Optimizer) -> Callable:
        sde = self.sde

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            x0 = batch[0]
            t = torch.rand(x0.shape[0], device=x0.device) * (sde.T - sde.eps) + sde.eps
            mean, std = sde.marginal(t)
            z = torch.randn_like(x0)
            xt = mean.view(-1, 1, 1, 1) * x0 + std.view(-1, 1, 1, 1) * z
            loss = (self.net(xt, t) - z).pow(2).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            opt.step()
            self._update_ema()
            return {"dsm": loss}
        return step

    def _modules(self) -> dict[str, torch.nn.Module]:
        """What a checkpoint holds: the trained weights, and the EMA when it is separate."""
        return {"score_net": self.net} | ({"score_net_ema": self.ema_net} if self.ema_net is not self.net else {})

    def fit(self, x01: torch.Tensor, epochs: int, checkpoint_dir: str | os.PathLike | None = None,
            checkpoint_every: int = 0, on_epoch_end: Callable | None = None) -> "ScoreModel":
        """Plain training for ``epochs`` epochs (no early stopping)."""
        data = self.to_model(x01)
        opt = getattr(self, "_opt", None) or torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self._opt = opt
        self.history_ = train_loop(self._step_fn(opt), data, modules=self._modules(), epochs=epochs,
                                   batch_size=self.batch_size, device=self.device, seed=self.seed,
                                   on_epoch_end=on_epoch_end, checkpoint_dir=checkpoint_dir,
                                   checkpoint_every=checkpoint_every, desc="score-sde")
        return self

    def fit_early_stopped(self, x01: torch.Tensor, real01: torch.Tensor, extractor: Callable, *,
                          max_epochs: int, check_every: int, fid_target: float | None, fid_samples: int = 200,
                          sample_steps: int = 100, checkpoint_dir: str | os.PathLike | None = None,
                          keep_states: bool = True, restore_best: bool = False,
                          patience: int | None = None) -> "ScoreModel":
        """Train, checking FID against ``real01`` every ``check_every`` epochs; stop at ``fid_target``.

        ``fid_target=None`` trains all ``max_epochs`` epochs but still records each check.
        ``restore_best``: when no check reaches ``fid_target``, end with the weights of the check of
        lowest FID (kept in memory even with ``keep_states=False``) instead of the last; its epoch is
        ``restored_epoch_`` (None when the last weights stay); ``target_reached_`` says whether a check
        reached ``fid_target``. ``patience``: with ``restore_best``,
        stop once this many checks in a row bring no new lowest FID.
        """
        if max_epochs < 1 or check_every < 1:
            raise ValueError("max_epochs and check_every must be >= 1")
        if patience is not None and (not restore_best or int(patience) < 1):
            raise ValueError(f"patience needs restore_best=True and must be >= 1, got {patience!r}")
        real_feats = extractor(real01)
        self.checkpoints_ = []
        self.restored_epoch_ = None
        best: dict = {"fid": float("inf"), "epoch": None, "state": None, "since": 0}
        reached = False

        def on_epoch_end(epoch: int, logs: dict) -> None:
            nonlocal reached
            e = epoch + 1
            if e % check_every and e != max_epochs:
                return
            fake = self.sample(fid_samples, steps=sample_steps, seed=self.seed + e)
            from .fid import frechet_distance

            d = frechet_distance(real_feats, extractor(fake))
            state = self.state_dict() if keep_states else {}
            self.checkpoints_.append(Check(e, d, float(logs.get("dsm", float("nan"))), state))
            log.info("score-sde epoch %d: FID %.2f", e, d)
            if fid_target is not None and d <= fid_target:
                reached = True
                raise _StopTraining
            if restore_best:
                if d < best["fid"]:
                    best.update(fid=d, epoch=e, state=state or self.state_dict(), since=0)
                else:
                    best["since"] += 1
                    if patience is not None and best["since"] >= int(patience):
                        log.info("score-sde: no lower FID in %d checks; stopping at epoch %d", best["since"], e)
                        raise _StopTraining

        try:
            self.fit(x01, max_epochs, checkpoint_dir=checkpoint_dir, checkpoint_every=check_every,
                     on_epoch_end=on_epoch_end)
        except _StopTraining:  # train_loop's own checkpointing is skipped by the early exit: write it here
            if checkpoint_dir:
                from pathlib import Path

                from ..train import save_checkpoint

                e = self.checkpoints_[-1].epoch
                save_checkpoint(self._modules(), Path(checkpoint_dir) / f"epoch_{e:04d}.safetensors")
                save_checkpoint(self._modules(), Path(checkpoint_dir) / "last.safetensors")
        self.net.eval()
        self.stop_epoch_ = self.checkpoints_[-1].epoch if self.checkpoints_ else None
        self.target_reached_ = reached
        if restore_best and not reached and best["epoch"] is not None and best["epoch"] != self.stop_epoch_:
            self.load_state_dict(best["state"])
            self.restored_epoch_ = int(best["epoch"])
            log.info("score-sde: FID target not reached; weights of epoch %d (FID %.2f) restored",
                     best["epoch"], best["fid"])
        return self

    def load_check(self, check: Check) -> None:
        """Put the weights of one recorded check back into the network."""
        if not check.state:
            raise ValueError("this check kept no weights (keep_states=False)")
        self.load_state_dict(check.state)

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, steps: int = 100, corrector_steps: int = 0, snr: float = 0.16, seed: int = 0,
               batch_size: int = 256, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """``n`` images in [0, 1], NCHW, at ``out_size`` (default: the model's size)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        was = self.ema_net.training
        self.ema_net.eval()
        gen = torch.Generator().manual_seed(seed)
        outs = []
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            x = euler_maruyama(self.score, self.sde, (m, self.channels, self.size, self.size), steps=steps,
                               corrector_steps=corrector_steps, snr=snr, generator=gen, device=self.device)
            outs.append(((x + 1.0) / 2.0).clamp(0.0, 1.0).cpu())
        self.ema_net.train(was)
        out = torch.cat(outs)
        if out_size is not None and tuple(out_size) != (self.size, self.size):
            out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False).clamp(0, 1)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A copy of the sampling weights (the EMA when ``ema`` > 0)."""
        return copy.deepcopy(self.ema_net.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Put sampling weights back (into both the trained and the EMA network)."""
        self.net.load_state_dict(state)
        if self.ema_net is not self.net:
            self.ema_net.load_state_dict(state)
        self.net.eval()
        self.ema_net.eval()
