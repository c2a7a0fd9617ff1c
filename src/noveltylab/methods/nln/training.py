"""Training of the five families through the shared ``train_loop``.

One step structure for every family: reconstruct with BCE, then the family's
extra (adversarial / consistency) updates inside the same step function.

* ``ae``: BCE(x, g(f(x))), Adam ``lr``.
* ``vae``: BCE summed over pixels + KL(q(z|x) || N(0, I)), mean over the batch, Adam ``lr``.
* ``aae`` (authors' ``aae.py``): reconstruction step on f and g (``lr``);
  latent discriminator step, prior N(0, I) samples real vs codes fake
  (``adv_lr``); generator step that moves the encoder to fool it (``adv_lr``).
* ``aeres`` (authors' ``dae.py``): reconstruction step (``lr``); image
  discriminator step, x real vs x_hat fake (``adv_lr``); generator step on
  the decoder (``adv_lr``). ``disc_loss="paper"`` (default): the BCE of
  Eq. 6 on the discriminator's real/fake output (its sigmoid head's logit).
  ``disc_loss="authors-code"``: as the authors' ``dae.py`` does, the BCE is
  taken on the discriminator's *intermediate layer* q (the latent output the
  residual error of Eq. 7 uses), every component read as a probability and
  clipped to [1e-7, 1 - 1e-7] (Keras ``BinaryCrossentropy()`` semantics, no
  gradient where clipped), targets 1 for x and 0 for x_hat; the sigmoid head
  is then never trained.
* ``aecon`` (GANomaly, authors' ``ganomaly.py``): f, g and E2 minimise
  ``recon_weight * BCE + adversarial + |f(x) - E2(x_hat)|`` (``lr``; E2 only
  sees the consistency term); discriminator step with ``adv_lr``.

Speed without changing the updates (bit-identical weights, tested): Adam's
multi-tensor (``foreach``) update; in a generator step the discriminator's
parameters do not require gradients (their gradients were never used: its
optimizer clears them before its own step), and AE-res's generator step runs
the encoder without autograd (only the decoder steps there).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .models import NLNNetworks


DISC_LOSSES = ("paper", "authors-code")
_KERAS_EPS = 1e-7


def _bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _bce_clipped(p: torch.Tensor, target: float) -> torch.Tensor:
    """Keras ``BinaryCrossentropy()`` on values read as probabilities: clip, then mean BCE."""
    p = p.clamp(_KERAS_EPS, 1 - _KERAS_EPS)
    return F.binary_cross_entropy(p, torch.full_like(p, target))


def _adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the multi-tensor (``foreach``) update: the same arithmetic as the per-parameter loop
    (bit-identical weights, tested), about half its cost on CPU, where torch would pick the loop."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters without gradients inside the block (gradients still reach its input)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def make_step(nets: NLNNetworks, lr: float, adv_lr: float, recon_weight: float = 50.0,
              seed: int = 0, disc_loss: str = "paper") -> Callable[[tuple[torch.Tensor, ...]], dict[str, torch.Tensor]]:
    """The ``step(batch)`` for ``train_loop``; builds the family's optimizers. ``disc_loss``
    chooses AE-res's discriminator loss (module docstring)."""
    fam = nets.family
    if disc_loss not in DISC_LOSSES:
        raise ValueError(f"disc_loss must be one of {DISC_LOSSES}, got {disc_loss!r}")
    ae_params = list(nets.encoder.parameters()) + list(nets.decoder.parameters())
    opt_ae = _adam(ae_params, lr=lr)
    gen = torch.Generator().manual_seed(seed + 12345)

    def recon_bce(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, x)

    if fam == "ae":
        def step(batch):
            x = batch[0]
            loss = recon_bce(x, nets.decoder(nets.encode(x), logits=True))
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            return {"recon": loss}
        return step

    if fam == "vae":
        def step(batch):
            x = batch[0]
            mu, logvar = nets.encoder.encode(x)
            eps = torch.randn(mu.shape, generator=gen).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
            logits = nets.decoder(z, logits=True)
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
            loss = rec + kl
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            return {"recon": rec / x[0].numel(), "kl": kl}
        return step

    if fam == "aae":
        assert nets.disc_z is not None
        opt_d = _adam(nets.disc_z.parameters(), lr=adv_lr)
        opt_g = _adam(nets.encoder.parameters(), lr=adv_lr)

        def step(batch):
            x = batch[0]
            loss = recon_bce(x, nets.decoder(nets.encode(x), logits=True))
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            # discriminator: prior samples are real, codes are fake
            z = nets.encode(x)
            prior = torch.randn(z.shape, generator=gen).to(z.device)
            d_loss = _bce_logits(nets.disc_z(prior), 1.0) + _bce_logits(nets.disc_z(z.detach()), 0.0)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            # generator: the encoder learns to fool the discriminator
            with _frozen(nets.disc_z):
                g_loss = _bce_logits(nets.disc_z(z), 1.0)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            return {"recon": loss, "disc": d_loss, "gen": g_loss}
        return step

    if fam == "aeres":
        assert nets.disc_x is not None
        opt_d = _adam(nets.disc_x.parameters(), lr=adv_lr)
        opt_g = _adam(nets.decoder.parameters(), lr=adv_lr)
        if disc_loss == "paper":  # Eq. 6 on the real/fake output
            def adv(v: torch.Tensor, target: float) -> torch.Tensor:
                return _bce_logits(nets.disc_x(v)[1], target)
        else:  # the authors' dae.py: BCE on the intermediate layer q, read as probabilities
            def adv(v: torch.Tensor, target: float) -> torch.Tensor:
                return _bce_clipped(nets.disc_x(v)[0], target)

        def step(batch):
            x = batch[0]
            logits = nets.decoder(nets.encode(x), logits=True)
            loss = recon_bce(x, logits)
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            with torch.no_grad():  # only the decoder steps in the generator update
                z = nets.encode(x)
            x_hat = nets.decoder(z)
            d_loss = adv(x, 1.0) + adv(x_hat.detach(), 0.0)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            with _frozen(nets.disc_x):
                g_loss = adv(x_hat, 1.0)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            return {"recon": loss, "disc": d_loss, "gen": g_loss}
        return step

    if fam == "aecon":
        assert nets.disc_x is not None and nets.encoder2 is not None
        opt_e2 = _adam(nets.encoder2.parameters(), lr=lr)
        opt_d = _adam(nets.disc_x.parameters(), lr=adv_lr)

        def step(batch):
            x = batch[0]
            z = nets.encode(x)
            logits = nets.decoder(z, logits=True)
            x_hat = torch.sigmoid(logits)
            rec = recon_bce(x, logits)
            with _frozen(nets.disc_x):
                adv = _bce_logits(nets.disc_x(x_hat)[1], 1.0)
            con = (z - nets.encoder2(x_hat)).abs().mean()
            total = recon_weight * rec + adv + con
            opt_ae.zero_grad(set_to_none=True)
            opt_e2.zero_grad(set_to_none=True)
            total.backward()
            opt_ae.step()
            opt_e2.step()
            d_loss = _bce_logits(nets.disc_x(x)[1], 1.0) + _bce_logits(nets.disc_x(x_hat.detach())[1], 0.0)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            return {"recon": rec, "adv": adv, "con": con, "disc": d_loss}
        return step

    raise ValueError(f"unknown family {fam!r}")
