"""Forward SDEs of Song et al. (2021), "Score-based generative modeling through SDEs".

* :class:`VPSDE` (variance preserving, DDPM's continuous limit):
  ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw``, ``beta(t) = b0 + t (b1 - b0)``,
  ``b0 = 0.1``, ``b1 = 20``; prior N(0, I); sampling stops at ``t = 1e-3``.
* :class:`VESDE` (variance exploding, NCSN's continuous limit):
  ``dx = sqrt(d sigma^2(t) / dt) dw``, ``sigma(t) = s_min (s_max / s_min)^t``;
  prior N(0, s_max^2 I); sampling stops at ``t = 1e-5``.

Both expose the perturbation kernel ``p_t(x | x0) = N(mean(t) x0, std(t)^2 I)``
(``marginal``), drift/diffusion (``sde``) and the prior. Data are scaled to
[-1, 1] by the caller.
"""
from __future__ import annotations

import math

import torch


class SDE:
    T: float = 1.0
    eps: float = 1e-3
    name: str = ""

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``f(x, t)`` and diffusion ``g(t)`` (shape (N,))."""
        raise NotImplementedError

    def marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean coefficient and std of the perturbation kernel at ``t`` (both (N,))."""
        raise NotImplementedError

    def prior_sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError


class VPSDE(SDE):
    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.eps = 1e-3

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def sde(self, x, t):
        b = self.beta(t)
        return -0.5 * b.view(-1, *[1] * (x.ndim - 1)) * x, torch.sqrt(b)

    def marginal(self, t):
        log_mean = -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return torch.exp(log_mean), torch.sqrt(-torch.expm1(2.0 * log_mean))

    def prior_sample(self, shape, generator=None, device="cpu"):
        return torch.randn(shape, generator=generator).to(device)

    def config(self) -> dict:
        return {"sde": "vp", "beta_min": self.beta_min, "beta_max": self.beta_max}


class VESDE(SDE):
    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.eps = 1e-5

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        g = self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def marginal(self, t):
        return torch.ones_like(t), self.sigma(t)

    def prior_sample(self, shape, generator=None, device="cpu"):
        return (torch.randn(shape, generator=generator) * self.sigma_max).to(device)

    def config(self) -> dict:
        return {"sde": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


def make_sde(kind: str, **kw) -> SDE:
    """``"vp"`` or ``"ve"`` (keyword arguments go to the constructor)."""
    if kind == "vp":
        return VPSDE(**kw)
    if kind == "ve":
        return VESDE(**kw)
    raise ValueError(f"unknown SDE {kind!r}; use 'vp' or 've'")
