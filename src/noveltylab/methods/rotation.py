"""Self-supervised transformation prediction, from scratch: GT and MHRot.

* **GT** (Golan & El-Yaniv, NeurIPS 2018, "geometric transformations"): a
  classifier learns which of ``T`` geometric transformations was applied to a
  normal image. The paper's set has 72 = horizontal flip (2) x translation in
  x (0, +-s) x translation in y (0, +-s) x rotation by 0/90/180/270 degrees (4),
  s = 8 px on 32 px images (``shift=0.25`` of the side here); applied in that
  order (flip, translate with reflection, rotate). Network WRN-16-8, Adam
  (lr 1e-3), batch 128, ``ceil(200 / T)`` epochs over the transformed set
  (``epochs=None``). Score = the paper's simplified normality score, negated:
  ``-sum_t log p(t | T_t(x))`` (``score_type="logp"``); the Dirichlet score of the
  paper is not implemented.
* **MHRot** (Hendrycks, Mazeika, Kadavath & Song, NeurIPS 2019): one network
  with three softmax heads - rotation (4), horizontal translation (3),
  vertical translation (3) - trained with the mean of the three
  cross-entropies on all 36 rotation x translation combinations (the
  authors' code also flips each image at random as augmentation,
  ``flip_augment``); SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed,
  weight decay 5e-4. Score = ``-sum over the 36 combinations of the summed
  log-probabilities of the correct labels of the three heads``
  (``score_type="logp"``, the brief's / paper's form); ``score_type="prob"`` sums
  softmax probabilities instead, as the authors' ImageNet code does.

CPU subsets (the ``cpu`` profiles, documented in ``README_rotation.md``): GT
uses the 8 flip x rotation transformations (``shift=0``) and WRN-10-1; MHRot
trains on all 36 combinations but scores on the 4 rotations at zero
translation (``score_transforms="rotations"``), WRN-10-1, 1 epoch.
Images must be square (rotations by 90 degrees keep the shape).
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..detector import Detector, register
from ..images import ImageError
from ..nets.wrn import WideResNet
from ..train import train_loop

Transform = tuple[int, int, int, int]  # (flip 0/1, tx -1/0/1, ty -1/0/1, rotation k 0..3)


def transform_set(flips: bool, translations: bool, rotations: bool = True) -> list[Transform]:
    """GT's transformation list: flip x tx x ty x rotation (an axis left out keeps only its identity)."""
    fl = (0, 1) if flips else (0,)
    sh = (0, -1, 1) if translations else (0,)
    ro = (0, 1, 2, 3) if rotations else (0,)
    return [(f, a, b, k) for f, a, b, k in itertools.product(fl, sh, sh, ro)]


def apply_transforms(x: torch.Tensor, flip: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, rot: torch.Tensor,
                     shift_px: int) -> torch.Tensor:
    """Per-image flip -> translate by (tx, ty) * shift_px (reflection padding) -> rotate by 90*rot degrees."""
    out = x.clone()
    f = flip.bool()
    if f.any():
        out[f] = out[f].flip(-1)
    moved = (tx != 0) | (ty != 0)
    if shift_px > 0 and moved.any():
        s, (h, w) = shift_px, out.shape[-2:]
        pad = F.pad(out, (s, s, s, s), mode="reflect")
        for a, b in {(int(a), int(b)) for a, b in zip(tx[moved].tolist(), ty[moved].tolist())}:
            sel = (tx == a) & (ty == b)
            out[sel] = pad[sel][:, :, s - b * s:s - b * s + h, s - a * s:s - a * s + w]
    for k in (1, 2, 3):
        sel = rot == k
        if sel.any():
            out[sel] = torch.rot90(out[sel], k, dims=(-2, -1))
    return out


class TransformPrediction(Detector):
    """Shared machinery: a WRN predicts the transformation; score = -sum of log-likelihoods of the truth."""

    heads: tuple[int, ...] = ()

    def __init__(self, depth: int = 16, widen: int = 8, shift: float = 0.25, epochs: int | None = None,
                 optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 train_batch_size: int = 128, score_type: str = "logp", batch_size: int = 256,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.depth = depth
        self.widen = widen
        self.shift = shift
        self.epochs = epochs
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.train_batch_size = train_batch_size
        self.score_type = score_type
        self.batch_size = batch_size

    # -- to be set by subclasses --------------------------------------------------------------
    def _transforms(self) -> list[Transform]:
        raise NotImplementedError

    def _labels(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Per-head target labels for transform indices ``t``."""
        raise NotImplementedError

    def _train_flip(self, n: int) -> torch.Tensor | None:
        """Random flips applied as augmentation (MHRot), or None."""
        return None

    def _score_transforms(self) -> list[int]:
        return list(range(len(self._transforms())))

    # -- checks ---------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if x.shape[-1] != x.shape[-2]:
            raise ImageError(f"{self.name}: images must be square for 90-degree rotations, got "
                             f"{tuple(x.shape[-2:])}; resize them first")
        if self.score_type not in ("logp", "prob"):
            raise ValueError(f"{self.name}: score_type must be 'logp' or 'prob', got {self.score_type!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"{self.name}: optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not 0.0 <= float(self.shift) < 0.5:
            raise ValueError(f"{self.name}: shift must be in [0, 0.5), got {self.shift}")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1 or None, got {self.epochs}")
        if float(self.lr) <= 0 or int(self.train_batch_size) < 1 or int(self.batch_size) < 1:
            raise ValueError(f"{self.name}: lr, train_batch_size and batch_size must be positive")
        WideResNet(self.depth, self.widen, 1, 1)  # validates depth / widen

    # -- pieces -----------------------------------------------------------------------------------
    @property
    def shift_px_(self) -> int:
        return max(1, int(round(float(self.shift) * self.input_shape_[-1]))) if self.shift else 0

    def _build(self) -> WideResNet:
        return WideResNet(self.depth, self.widen, sum(self.heads_), self.input_shape_[0]).to(self.device_)

    def _transformed(self, x: torch.Tensor, t: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
        tr = torch.as_tensor(self._transforms(), device=x.device)[t.to(x.device)]
        f = tr[:, 0] if flip is None else tr[:, 0] ^ flip.to(x.device)
        return apply_transforms(x, f, tr[:, 1], tr[:, 2], tr[:, 3], self.shift_px_) * 2 - 1

    def _log_probs(self, logits: torch.Tensor) -> list[torch.Tensor]:
        return [torch.log_softmax(z, dim=1) for z in torch.split(logits, list(self.heads_), dim=1)]

    def _n_epochs(self, n_transforms: int) -> int:
        return int(self.epochs) if self.epochs is not None else int(math.ceil(200 / n_transforms))

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self.heads_ = tuple(self.heads)
        net = self.net_ = self._build()
        n_t = len(self._transforms())
        epochs = self._n_epochs(n_t)
        items = torch.arange(x.shape[0] * n_t)
        steps = epochs * math.ceil(len(items) / int(self.train_batch_size))
        if self.optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=self.lr,
                                                          weight_decay=self.weight_decay)
            sched = None
        else:
            opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=self.momentum, nesterov=True,
                                  weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda i: 1e-6 / self.lr + (1 - 1e-6 / self.lr) * 0.5 * (1 + math.cos(math.pi * i / steps)))
        xs = x.to(self.device_)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            idx = batch[0]
            img, t = idx // n_t, idx % n_t
            xb = self._transformed(xs[img.to(xs.device)], t, self._train_flip(len(idx)))
            opt.zero_grad()
            lps = self._log_probs(net(xb))
            loss = sum(F.nll_loss(lp, y.to(lp.device)) for lp, y in zip(lps, self._labels(t))) / len(lps)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            return {"ce": loss.detach()}

        hist = train_loop(step, items, modules={"net": net}, epochs=epochs,
                          batch_size=int(self.train_batch_size), device="cpu", seed=self.seed,
                          desc=self.name)
        self.history_ = hist.epochs
        net.eval()

    def _score(self, x: torch.Tensor) -> np.ndarray:
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for t in self._score_transforms():
            for i in range(0, x.shape[0], int(self.batch_size)):
                xb = x[i:i + int(self.batch_size)].to(self.device_)
                tt = torch.full((xb.shape[0],), t, dtype=torch.long)
                lps = self._log_probs(self.net_(self._transformed(xb, tt)))
                ll = sum(lp.gather(1, y.to(lp.device)[:, None])[:, 0] for lp, y in zip(lps, self._labels(tt)))
                if self.score_type == "prob":
                    ll = sum(lp.gather(1, y.to(lp.device)[:, None])[:, 0].exp()
                             for lp, y in zip(lps, self._labels(tt)))
                total[i:i + xb.shape[0]] -= ll.double().cpu()
        return total.numpy()

    def _state(self) -> dict[str, Any]:
        return self._net_state()

    def _meta(self) -> dict[str, Any]:
        return {"history": getattr(self, "history_", [])}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.heads_ = tuple(self.heads)
        self._restore_net(state)
        self.history_ = meta.get("history", [])


@register
class GT(TransformPrediction):
    """GT: classify which of T geometric transformations (flip x translation x rotation) was applied."""

    name = "gt"
    summary = "GT (Golan & El-Yaniv): WRN predicts 72 geometric transformations; score -sum log p(correct)"
    profiles = {
        # cpu subset: 8 transformations (flip x rotation), WRN-10-1, 5 epochs over the 8N images
        "cpu": {"depth": 10, "widen": 1, "flips": True, "shift": 0.0, "epochs": 5},
        "paper": {"depth": 16, "widen": 8, "flips": True, "shift": 0.25, "epochs": None},
        "demo": {"depth": 10, "widen": 1, "flips": True, "shift": 0.0, "epochs": 2},
        "test": {"depth": 10, "widen": 1, "flips": False, "shift": 0.25, "epochs": 2},
    }

    def __init__(self, depth: int = 16, widen: int = 8, flips: bool = True, shift: float = 0.25,
                 epochs: int | None = None, optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, train_batch_size: int = 128, score_type: str = "logp",
                 batch_size: int = 256, seed: int = 0, device: str = "auto") -> None:
        super().__init__(depth=depth, widen=widen, shift=shift, epochs=epochs, optimizer=optimizer, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, train_batch_size=train_batch_size,
                         score_type=score_type, batch_size=batch_size, seed=seed, device=device)
        self.flips = flips

    @property
    def heads(self) -> tuple[int, ...]:  # type: ignore[override]
        return (len(self._transforms()),)

    def _transforms(self) -> list[Transform]:
        return transform_set(bool(self.flips), bool(self.shift))

    def _labels(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t]


@register
class MHRot(TransformPrediction):
    """MHRot: three heads (rotation 4, x-translation 3, y-translation 3) on one WRN."""

    name = "mhrot"
    summary = "MHRot (Hendrycks et al.): WRN with rotation + translation heads; score -sum log p(correct)"
    profiles = {
        # cpu subset: train on all 36 combinations, score on the 4 rotations at zero translation
        "cpu": {"depth": 10, "widen": 1, "epochs": 1, "score_transforms": "rotations"},
        "paper": {"depth": 16, "widen": 4, "epochs": 15, "score_transforms": "all"},
        "demo": {"depth": 10, "widen": 1, "epochs": 2, "score_transforms": "rotations"},
        "test": {"depth": 10, "widen": 1, "epochs": 2, "score_transforms": "all", "lr": 0.05},
    }

    def __init__(self, depth: int = 16, widen: int = 4, shift: float = 0.25, epochs: int | None = 15,
                 optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
                 train_batch_size: int = 128, flip_augment: bool = True, score_transforms: str = "all",
                 score_type: str = "logp", batch_size: int = 256, seed: int = 0, device: str = "auto") -> None:
        super().__init__(depth=depth, widen=widen, shift=shift, epochs=epochs, optimizer=optimizer, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, train_batch_size=train_batch_size,
                         score_type=score_type, batch_size=batch_size, seed=seed, device=device)
        self.flip_augment = flip_augment
        self.score_transforms = score_transforms

    heads = (4, 3, 3)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.score_transforms not in ("all", "rotations"):
            raise ValueError(f"mhrot: score_transforms must be 'all' or 'rotations', got {self.score_transforms!r}")
        if not self.shift:
            raise ValueError("mhrot: shift must be > 0 (the translation heads need translations)")
        super()._check_input(x)

    def _transforms(self) -> list[Transform]:
        return transform_set(False, True)

    def _labels(self, t: torch.Tensor) -> list[torch.Tensor]:
        tr = torch.as_tensor(self._transforms())[t.cpu()]
        return [tr[:, 3], tr[:, 1] + 1, tr[:, 2] + 1]

    def _train_flip(self, n: int) -> torch.Tensor | None:
        return (torch.rand(n) < 0.5).long() if self.flip_augment else None

    def _score_transforms(self) -> list[int]:
        ts = self._transforms()
        if self.score_transforms == "all":
            return list(range(len(ts)))
        return [i for i, (_, a, b, _) in enumerate(ts) if a == 0 and b == 0]
