"""Deep SVDD (Ruff et al., ICML 2018), one-class objective, as paper 003's baseline.

Network: the bias-free LeNet-type CIFAR-10 encoder of Ruff et al.
(``nets/lenet_cae.py``: conv 5x5 32/64/128, BN without affine terms,
LeakyReLU 0.1, max-pool, dense 128 without bias) - paper 003 uses this
architecture for every data set. Training, as Ruff et al.'s code:
1. pre-train the LeNet autoencoder with MSE (two-phase Adam schedule);
2. copy its encoder weights into the Deep SVDD network;
3. centre c = mean of the network outputs over the training images (one
   initial forward pass, eval mode); coordinates with |c_j| < eps (0.1) are
   pushed to +-eps so that the trivial zero solution is not reached by chance;
4. minimise mean ||phi(x) - c||^2 with Adam + weight decay (two-phase lr).
Score = ||phi(x) - c||^2. Inputs are zero-padded to a multiple of 8.
``preprocess="gcn"`` (set by the ``paper`` profiles; default ``"none"``) applies
Ruff et al.'s preprocessing first: global contrast normalisation (l1) per image,
then min-max scaling with the minimum and maximum over the GCN'd training images.

Profiles: ``paper`` = Ruff et al.'s MNIST-style schedule as used in paper 003
(pre-training 100 + 50 epochs, Deep SVDD 100 + 50, Adam 1e-4 then 1e-5, batch
200, weight decay 1e-6); ``paper-cifar`` 250 + 100 / 150 + 100 (Ruff's CIFAR-10);
``cpu``: 8 + 2 pre-training and 8 + 2 Deep SVDD epochs at lr 1e-3 then 1e-4,
batch 50 (about as costly as ``cae-nn`` times two).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..detector import load_module_state, module_state, register
from ..nets.lenet_cae import LeNetEncoder
from ..train import map_batches
from .inception_pq import CAE_PROFILES, MULTIPLE, CAEDetector, prepare, two_phase_fit


def _svdd_profile(name: str) -> dict[str, Any]:
    p = dict(CAE_PROFILES[name])
    if name.startswith("paper"):
        p["preprocess"] = "gcn"
    p["svdd_epochs"], p["svdd_fine_tune_epochs"] = {
        "paper": (100, 50), "paper-cifar": (150, 100), "cpu": (8, 2), "demo": (4, 1), "test": (2, 1)}[name]
    return p


@register
class DeepSVDD(CAEDetector):
    """One-class Deep SVDD with autoencoder pre-training on the bias-free LeNet network."""

    name = "deep-svdd"
    summary = "Deep SVDD (one-class objective, bias-free LeNet, AE pre-training) (003 baseline)"
    arch = "lenet"
    profiles = {k: _svdd_profile(k) for k in CAE_PROFILES}

    def __init__(self, svdd_epochs: int = 8, svdd_fine_tune_epochs: int = 2, eps: float = 0.1,
                 preprocess: str = "none", epochs: int = 8,
                 fine_tune_epochs: int = 2, lr: float = 1e-3, fine_tune_lr: float = 1e-4, batch_size: int = 50,
                 weight_decay: float = 1e-6, seed: int = 0, device: str = "auto") -> None:
        super().__init__(epochs=epochs, fine_tune_epochs=fine_tune_epochs, lr=lr, fine_tune_lr=fine_tune_lr,
                         batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=device)
        self.svdd_epochs = svdd_epochs
        self.svdd_fine_tune_epochs = svdd_fine_tune_epochs
        self.eps = eps
        self.preprocess = preprocess

    def _check_head(self) -> None:
        for name in ("svdd_epochs", "svdd_fine_tune_epochs"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"deep-svdd: {name} must be an integer >= 0, got {v!r}")
        if self.svdd_epochs + self.svdd_fine_tune_epochs < 1:
            raise ValueError("deep-svdd: svdd_epochs + svdd_fine_tune_epochs must be >= 1")
        if not float(self.eps) >= 0:
            raise ValueError(f"deep-svdd: eps must be >= 0, got {self.eps!r}")
        if self.preprocess not in ("none", "gcn"):
            raise ValueError(f"deep-svdd: preprocess must be 'none' or 'gcn', got {self.preprocess!r}")

    @staticmethod
    def _gcn(x: torch.Tensor) -> torch.Tensor:
        """Global contrast normalisation, l1 scale (Ruff et al.): per image, subtract the mean
        and divide by the mean absolute deviation."""
        x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        return x / x.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess == "gcn":
            x = ((self._gcn(x) - self.gcn_min_) / max(self.gcn_max_ - self.gcn_min_, 1e-12))
        return prepare(x)

    def _encoder(self) -> LeNetEncoder:
        c, h, w = self.input_shape_
        H, W = -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE
        return LeNetEncoder(c, H, W, 128, code_bn=False).to(self.device_)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        if self.preprocess == "gcn":  # min-max constants of the GCN'd training images (Ruff et al.)
            g = self._gcn(x)
            self.gcn_min_, self.gcn_max_ = float(g.min()), float(g.max())
        if self.epochs + self.fine_tune_epochs > 0:
            self._train_cae(x, val)  # autoencoder pre-training
        self.phi_ = self._encoder()
        if self.epochs + self.fine_tune_epochs > 0:
            ae = {k: v for k, v in self.net_.encoder.state_dict().items() if not k.startswith("code_bn.")}
            self.phi_.load_state_dict(ae, strict=True)
        del self.net_
        xp = self._transform(x)
        self.phi_.eval()
        with torch.no_grad():
            c = map_batches(self.phi_, xp, batch_size=256, device=self.device_).mean(0)
        eps = float(self.eps)
        c[(c.abs() < eps) & (c < 0)] = -eps
        c[(c.abs() < eps) & (c >= 0)] = eps
        self.center_ = c.to(self.device_)
        phi, center = self.phi_, self.center_
        self.svdd_history_ = two_phase_fit(
            lambda b: (phi(b) - center).pow(2).sum(1).mean(), xp, None if val is None else self._transform(val),
            modules={"phi": phi}, params=list(phi.parameters()), epochs=self.svdd_epochs,
            fine_tune_epochs=self.svdd_fine_tune_epochs, lr=self.lr, fine_tune_lr=self.fine_tune_lr,
            batch_size=self.batch_size, weight_decay=self.weight_decay, device=self.device_,
            seed=self.seed + 1, desc="deep-svdd")
        self.phi_.eval()

    def _score(self, x: torch.Tensor) -> np.ndarray:
        self.phi_.eval()
        c = self.center_
        return map_batches(lambda b: (self.phi_(b) - c).pow(2).sum(1), self._transform(x), batch_size=256,
                           device=self.device_).numpy()

    def _state(self) -> dict[str, Any]:
        return {**module_state("phi", self.phi_), "center": self.center_.cpu()}

    def _meta(self) -> dict[str, Any]:
        return {"gcn_min": getattr(self, "gcn_min_", None), "gcn_max": getattr(self, "gcn_max_", None)}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.phi_ = self._encoder()
        load_module_state("phi", self.phi_, {k: v for k, v in state.items() if k.startswith("phi.")})
        self.phi_.eval()
        self.center_ = state["center"].to(self.device_)
        if meta.get("gcn_min") is not None:
            self.gcn_min_, self.gcn_max_ = float(meta["gcn_min"]), float(meta["gcn_max"])
