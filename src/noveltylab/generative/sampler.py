"""Reverse-time SDE samplers: Euler-Maruyama (predictor) and optional Langevin corrector.

Reverse SDE (Anderson 1982; Song et al. Eq. 6):
``dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar``, integrated from
``t = T`` down to ``t = eps`` in ``steps`` equal steps; the last step returns
the noise-free mean (the "denoise" step of the reference code).
``corrector_steps > 0`` adds Langevin corrector steps with signal-to-noise
ratio ``snr`` after every predictor step (predictor-corrector sampling).
"""
from __future__ import annotations

from typing import Callable

import torch

from .sde import SDE

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def euler_maruyama(score_fn: ScoreFn, sde: SDE, shape: tuple[int, ...], *, steps: int = 100,
                   corrector_steps: int = 0, snr: float = 0.16, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Draw ``shape[0]`` samples; returns the model's data-space output (unclipped)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    def noise(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=gen).to(like.device)

    x = sde.prior_sample(shape, generator=gen, device=device)
    ts = torch.linspace(sde.T, sde.eps, steps, device=device)
    dt = -(sde.T - sde.eps) / steps
    x_mean = x
    for i in range(steps):
        t = ts[i].expand(shape[0])
        for _ in range(corrector_steps):  # Langevin corrector (Song et al. Alg. 4/5)
            grad = score_fn(x, t)
            z = noise(x)
            g_norm = grad.flatten(1).norm(dim=1).mean()
            z_norm = z.flatten(1).norm(dim=1).mean()
            alpha = 1.0
            if sde.name == "vp":
                b = sde.beta(t[:1]) * (sde.T - sde.eps) / steps  # type: ignore[attr-defined]
                alpha = float(1.0 - b)
            step = 2 * alpha * (snr * z_norm / g_norm.clamp_min(1e-12)) ** 2
            x_mean = x + step * grad
            x = x_mean + torch.sqrt(2 * step) * z
        drift, diffusion = sde.sde(x, t)
        g = diffusion.view(-1, *[1] * (x.ndim - 1))
        rev_drift = drift - g ** 2 * score_fn(x, t)
        x_mean = x + rev_drift * dt
        x = x_mean + g * (-dt) ** 0.5 * noise(x)
    return x_mean
