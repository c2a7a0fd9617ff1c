"""PANDA (Reiss, Cohen, Bergman & Hoshen, CVPR 2021): pretrained features adapted with a compactness loss.

1. Features of the normal training images from an ImageNet-pretrained backbone
   (here :class:`~noveltylab.methods.dn2.Backbone`, MobileNetV2 with the shared
   weights); their mean is the centre ``c``.
2. Fine-tune the backbone's tail (the front is frozen, as the authors' code
   freezes conv1/bn1/layer1/layer2 of the ResNet; BatchNorm statistics stay
   frozen: MobileNetV2 keeps BN in eval mode) to minimise the compactness loss
   ``mean_i ||f(x_i) - c||^2 / d`` (the authors' ``CompactnessLoss``).
   Protection against feature collapse (``protection=``):

   * ``"early-stopping"`` (paper + code default): a short fixed schedule
     (code: 15 epochs, SGD lr 1e-2, momentum 0.9, weight decay 5e-5, batch 32,
     gradient norm clipped to 1e-3);
   * ``"ewc"``: elastic weight consolidation, ``lambda/2 * sum F (theta - theta0)^2``
     with lambda = 1e4, 50 epochs (code). The authors' Fisher diagonal comes
     from ImageNet, which is not available here; ``fisher=`` says how it is
     approximated: ``"model"`` (default) = the true Fisher of the pretrained
     ImageNet classifier evaluated on the *normal training images* (labels
     drawn from the classifier's own predictive distribution, per-sample
     squared gradients averaged over ``fisher_samples`` images), ``"uniform"``
     = F = 1 everywhere (an L2-SP penalty towards the pretrained weights);
   * ``"none"``: no protection (the collapse ablation).
3. Score = sum of squared L2 distances to the ``k = 2`` nearest fine-tuned
   training features (``KNNIndex``, exact).

:class:`FinetunedKNN` is the part PANDA and MSAD (``methods/msad.py``) share:
backbone, frozen front, centre, feature extraction, kNN index, persistence.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..detector import Detector, load_module_state, module_state, register
from ..knn import KNNIndex
from ..train import map_batches, train_loop
from .dn2 import Backbone, check_backbone_params, resolve_weights

PROTECTIONS = ("early-stopping", "ewc", "none")
FISHERS = ("model", "uniform")


class FinetunedKNN(Detector):
    """Base for detectors that fine-tune a pretrained backbone's tail on normal images and score by kNN.

    Subclasses implement :meth:`_train_tail` (the loss) and may override
    :meth:`_embed` (e.g. L2-normalised features for MSAD).
    """

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 frozen_fraction: float = 0.5, epochs: int = 15, lr: float = 1e-2, momentum: float = 0.9,
                 weight_decay: float = 5e-5, ft_batch_size: int = 32, k: int = 2, index: str = "Flat",
                 batch_size: int = 128, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.frozen_fraction = frozen_fraction
        self.epochs = epochs
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.ft_batch_size = ft_batch_size
        self.k = k
        self.index = index
        self.batch_size = batch_size

    # -- checks ---------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        check_backbone_params(self.backbone, self.input_size, self.k, "sumsq", self.batch_size)
        if x.shape[0] < self.k:
            raise ValueError(f"{self.name}: k={self.k} needs at least {self.k} training images, got {x.shape[0]}")
        if int(self.epochs) < 0:
            raise ValueError(f"{self.name}: epochs must be >= 0, got {self.epochs}")
        if float(self.lr) <= 0 or float(self.weight_decay) < 0 or float(self.momentum) < 0:
            raise ValueError(f"{self.name}: lr must be > 0, weight_decay and momentum >= 0")
        if int(self.ft_batch_size) < 1:
            raise ValueError(f"{self.name}: ft_batch_size must be >= 1, got {self.ft_batch_size}")
        self._weights_path = resolve_weights(self.backbone, self.weights)

    # -- shared pieces ----------------------------------------------------------------------
    def _build(self, path: str | None) -> Backbone:
        return Backbone(self.backbone, path, self.input_size, self.frozen_fraction).to(self.device_).eval()

    def _embed(self, x01: torch.Tensor) -> torch.Tensor:
        """Scoring features of a batch (subclasses may normalise)."""
        return self.net_.embed(x01)

    def _features(self, x: torch.Tensor) -> np.ndarray:
        return map_batches(self._embed, x, batch_size=self.batch_size, device=self.device_).numpy()

    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def _train_tail(self, x: torch.Tensor, params: list[nn.Parameter]) -> None:
        raise NotImplementedError

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self.net_ = self._build(self._weights_path)
        params = self.net_.freeze_front()
        if self.epochs > 0:
            self._train_tail(x, params)
        self.net_.eval()
        for p in self.net_.parameters():
            p.requires_grad_(False)
        self.index_ = KNNIndex(self.index, gpu="auto", seed=self.seed).fit(self._features(x))

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return self.index_.score(self._features(x), k=self.k, agg="sumsq")

    def _state(self) -> dict[str, Any]:
        return {**module_state("net", self.net_), **self.index_.state("knn")[0]}

    def _meta(self) -> dict[str, Any]:
        return {**self.index_.state("knn")[1], "history": getattr(self, "history_", [])}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.net_ = self._build(None)
        load_module_state("net", self.net_, state)
        self.net_.eval()
        self.index_ = KNNIndex.from_state(state, meta, "knn")
        self.history_ = meta.get("history", [])


def compactness_loss(features: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """PANDA's compactness loss: mean over the batch of ``||f - c||^2 / d``."""
    return ((features - centre) ** 2).sum(dim=1).div(features.shape[1]).mean()


@register
class PANDA(FinetunedKNN):
    """Compactness-loss fine-tuning of a pretrained backbone (early stopping or EWC) + kNN (k = 2).

    Cost (``cpu`` profile, MobileNetV2 at 64 px, 300 images): the frozen front
    runs once, then only the tail trains: well under a minute per class.
    """

    name = "panda"
    summary = "PANDA: pretrained features fine-tuned with the compactness loss (early stopping / EWC) + kNN"
    profiles = {
        # the authors' early-stopping schedule (15 epochs) at 64 px, like dn2's cpu profile
        "cpu": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "epochs": 15,
                "protection": "early-stopping"},
        # the authors' code: 224 px, SGD 1e-2 / 0.9 / 5e-5, batch 32, clip 1e-3, 15 epochs
        "paper": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "epochs": 15,
                  "protection": "early-stopping"},
        # the authors' EWC command: 50 epochs, lambda 1e4 (Fisher: see module docstring)
        "paper-ewc": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "epochs": 50,
                      "protection": "ewc"},
        "cpu-ewc": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "epochs": 50,
                    "protection": "ewc"},
        "demo": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "epochs": 5},
        "test": {"backbone": "mobilenet_v2", "weights": None, "input_size": 32, "epochs": 2,
                 "protection": "ewc", "fisher_samples": 8, "lr": 1e-1, "grad_clip": 1.0},
    }

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 frozen_fraction: float = 0.5, epochs: int = 15, lr: float = 1e-2, momentum: float = 0.9,
                 weight_decay: float = 5e-5, ft_batch_size: int = 32, grad_clip: float | None = 1e-3,
                 protection: str = "early-stopping", ewc_lambda: float = 1e4, fisher: str = "model",
                 fisher_samples: int = 200, k: int = 2, index: str = "Flat", batch_size: int = 128,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(backbone=backbone, weights=weights, input_size=input_size,
                         frozen_fraction=frozen_fraction, epochs=epochs, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, ft_batch_size=ft_batch_size, k=k, index=index,
                         batch_size=batch_size, seed=seed, device=device)
        self.grad_clip = grad_clip
        self.protection = protection
        self.ewc_lambda = ewc_lambda
        self.fisher = fisher
        self.fisher_samples = fisher_samples

    def _check_input(self, x: torch.Tensor) -> None:
        if self.protection not in PROTECTIONS:
            raise ValueError(f"panda: protection must be one of {PROTECTIONS}, got {self.protection!r}")
        if self.fisher not in FISHERS:
            raise ValueError(f"panda: fisher must be one of {FISHERS}, got {self.fisher!r}")
        if self.grad_clip is not None and float(self.grad_clip) <= 0:
            raise ValueError(f"panda: grad_clip must be > 0 or None, got {self.grad_clip}")
        if float(self.ewc_lambda) < 0 or int(self.fisher_samples) < 1:
            raise ValueError("panda: ewc_lambda must be >= 0 and fisher_samples >= 1")
        super()._check_input(x)

    # -- EWC ------------------------------------------------------------------------------------
    def _classifier(self) -> nn.Linear:
        """The pretrained ImageNet classifier (random when there are no weights: tests only)."""
        from ..nets.mobilenet import load_state_file

        head = nn.Linear(self.net_.dim, 1001)
        if self._weights_path and self.backbone == "mobilenet_v2":
            state = load_state_file(self._weights_path)
            w, b = state["classifier.1.weight"], state["classifier.1.bias"]
            head = nn.Linear(w.shape[1], w.shape[0])
            head.load_state_dict({"weight": w, "bias": b})
        elif self._weights_path:
            raise ValueError("panda: fisher='model' needs a MobileNetV2 weights file with its classifier; "
                             "use fisher='uniform' for other backbones")
        return head.to(self.device_).eval()

    def _fisher_diagonal(self, hidden: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
        """Diagonal Fisher of the tail parameters (see the module docstring)."""
        if self.fisher == "uniform":
            return [torch.ones_like(p) for p in params]
        head = self._classifier()
        g = torch.Generator().manual_seed(self.seed + 17)
        n = min(int(self.fisher_samples), hidden.shape[0])
        idx = torch.randperm(hidden.shape[0], generator=g)[:n]
        fisher = [torch.zeros_like(p) for p in params]
        for i in idx.tolist():
            logp = torch.log_softmax(head(self.net_.tail(hidden[i:i + 1].to(self.device_))), dim=1)
            y = torch.multinomial(logp.detach().exp().cpu()[0], 1, generator=g).item()
            grads = torch.autograd.grad(logp[0, y], params, allow_unused=True)
            for f, gr in zip(fisher, grads):
                if gr is not None:
                    f += gr.detach() ** 2
        return [f / n for f in fisher]

    # -- training ---------------------------------------------------------------------------------
    def _train_tail(self, x: torch.Tensor, params: list[nn.Parameter]) -> None:
        net = self.net_
        hidden = map_batches(net.front, x, batch_size=self.batch_size, device=self.device_)
        with torch.no_grad():
            centre = map_batches(net.tail, hidden, batch_size=self.batch_size, device=self.device_).mean(0)
        centre = centre.to(self.device_)
        penalty = None
        if self.protection == "ewc":
            fisher = self._fisher_diagonal(hidden, params)
            theta0 = [p.detach().clone() for p in params]

            def penalty() -> torch.Tensor:
                return self.ewc_lambda / 2 * sum(((f * (p - p0) ** 2).sum() for f, p, p0 in
                                                 zip(fisher, params, theta0)), torch.zeros((), device=self.device_))
        opt = self._optimizer(params)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            opt.zero_grad()
            loss = compactness_loss(net.tail(batch[0]), centre)
            logs = {"compactness": loss.detach()}
            if penalty is not None:
                reg = penalty()
                loss = loss + reg
                logs["ewc"] = reg.detach()
            loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, float(self.grad_clip))
            opt.step()
            return logs

        hist = train_loop(step, hidden, modules={"tail": net}, epochs=int(self.epochs),
                          batch_size=int(self.ft_batch_size), device=self.device_, seed=self.seed,
                          desc="panda")
        self.history_ = hist.epochs
