"""DSEBM (Zhai et al., ICML 2016): deep structured energy-based model trained by
denoising score matching; paper 003's baseline with its network shaped like the
baseline (LeNet-type) CAE encoder.

Energy: E(x) = 1/2 ||x - b||^2 - sum_j softplus(f_j(x)), with b a learned
image-shaped bias and f = the LeNet-type encoder (conv 5x5 32/64/128, LeakyReLU
0.1, max-pool 2, dense 128) followed by a dense 128 -> 128 layer. Unlike the
CAE, the energy network has no BatchNorm: BN would make each image's energy
(and its input gradient) depend on the rest of the batch.
Training (denoising score matching): x~ = x + N(0, noise_std^2);
reconstruction r(x~) = x~ - dE/dx(x~); minimise mean ||x - r(x~)||^2 (double
back-propagation). Two-phase Adam schedule as the CAEs. Score = energy E(x)
(the paper's "energy score"). Inputs are zero-padded to a multiple of 8.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..detector import register
from ..train import map_batches
from .inception_pq import CAE_PROFILES, MULTIPLE, CAEDetector, prepare, two_phase_fit


class EnergyNet(nn.Module):
    """E(x) = 0.5 ||x - b||^2 - sum softplus(f(x)), per image."""

    def __init__(self, channels: int, height: int, width: int, rep_dim: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 5, padding=2), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128 * (height // 8) * (width // 8), rep_dim), nn.LeakyReLU(0.1),
            nn.Linear(rep_dim, rep_dim))
        self.b = nn.Parameter(torch.zeros(1, channels, height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quad = 0.5 * (x - self.b).pow(2).flatten(1).sum(1)
        return quad - F.softplus(self.features(x)).sum(1)


@register
class DSEBM(CAEDetector):
    """Deep structured energy-based model, denoising score matching, energy score."""

    name = "dsebm"
    summary = "Deep structured energy-based model (denoising score matching, energy score) (003 baseline)"
    profiles = CAE_PROFILES

    def __init__(self, noise_std: float = 0.1, epochs: int = 8, fine_tune_epochs: int = 2, lr: float = 1e-3,
                 fine_tune_lr: float = 1e-4, batch_size: int = 50, weight_decay: float = 1e-6, seed: int = 0,
                 device: str = "auto") -> None:
        super().__init__(epochs=epochs, fine_tune_epochs=fine_tune_epochs, lr=lr, fine_tune_lr=fine_tune_lr,
                         batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=device)
        self.noise_std = noise_std

    def _check_head(self) -> None:
        if not float(self.noise_std) > 0:
            raise ValueError(f"dsebm: noise_std must be > 0, got {self.noise_std!r}")

    def _build(self) -> nn.Module:
        c, h, w = self.input_shape_
        H, W = -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE
        return EnergyNet(c, H, W).to(self.device_)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self.net_ = self._build()
        net, sigma = self.net_, float(self.noise_std)

        def dsm_loss(b: torch.Tensor) -> torch.Tensor:
            noisy = (b + sigma * torch.randn_like(b)).requires_grad_(True)
            with torch.enable_grad():
                energy = net(noisy).sum()
                grad, = torch.autograd.grad(energy, noisy, create_graph=net.training)
            return (b - (noisy - grad)).pow(2).flatten(1).sum(1).mean()

        self.history_ = two_phase_fit(
            dsm_loss, prepare(x), None if val is None else prepare(val), modules={"net": net},
            params=list(net.parameters()), epochs=self.epochs, fine_tune_epochs=self.fine_tune_epochs, lr=self.lr,
            fine_tune_lr=self.fine_tune_lr, batch_size=self.batch_size, weight_decay=self.weight_decay,
            device=self.device_, seed=self.seed, desc="dsebm")
        net.eval()

    def _score(self, x: torch.Tensor) -> np.ndarray:
        self.net_.eval()
        return map_batches(self.net_, prepare(x), batch_size=256, device=self.device_).numpy()

    def _state(self) -> dict[str, Any]:
        return self._net_state()

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._restore_net(state)
