"""MSAD - Mean-Shifted Contrastive Loss (Reiss & Hoshen 2023, arXiv 2106.03844).

1. L2-normalised pretrained features ``z = f(x) / ||f(x)||`` of the normal
   training images; the centre ``c`` is their mean, normalised again (the
   angular centre).
2. Fine-tune the backbone's tail (front frozen, BatchNorm statistics frozen;
   the authors' code freezes conv1/bn1/layer1/layer2 and keeps the model in eval
   mode) with the mean-shifted contrastive loss: two augmented views per image,
   ``u = normalise(z - c)``, SimCLR's NT-Xent on ``u`` with temperature 0.25,
   plus (``angular=True``, the paper's best variant) the angular centre loss
   ``||z - c||^2`` of both views. Authors' schedule: SGD lr 1e-5, weight decay
   5e-5, no momentum, batch 64, 20 epochs.
3. Score = kNN (``k = 2``) on the normalised features ``z``: sum of squared
   L2 distances between unit vectors = sum of ``2 - 2 cos``, i.e. the cosine
   distance (as the authors' ``knn_score`` on normalised features).

Augmentations (kornia, at the input resolution, before the backbone's
resize): the authors' MoCo-v2 set - random resized crop (scale 0.2-1),
colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale p = 0.2, Gaussian
blur (sigma 0.1-2 at 224 px, scaled to the image size) with p = 0.5,
horizontal flip. Grey images get brightness/contrast jitter only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..detector import register
from ..train import map_batches, train_loop
from .panda import FinetunedKNN


def mean_shifted_views(size: tuple[int, int], channels: int) -> nn.Module:
    """The authors' MoCo-v2 augmentation on kornia (randomness from torch's global RNG)."""
    import kornia.augmentation as KA

    h = min(size)
    sigma = (0.1 * h / 224, 2.0 * h / 224)
    ksize = max(3, 2 * int(round(3 * sigma[1])) + 1)
    ops: list[nn.Module] = [KA.RandomResizedCrop(size, scale=(0.2, 1.0))]
    if channels == 3:
        ops += [KA.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), KA.RandomGrayscale(p=0.2)]
    else:
        ops += [KA.ColorJitter(0.4, 0.4, 0.0, 0.0, p=0.8)]
    ops += [KA.RandomGaussianBlur((ksize, ksize), sigma, p=0.5), KA.RandomHorizontalFlip()]
    return nn.Sequential(*ops)


def nt_xent(u1: torch.Tensor, u2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over ``2B`` unit vectors (each view's positive is the other view)."""
    out = torch.cat([u1, u2])
    n = u1.shape[0]
    logits = out @ out.t() / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=out.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(out.device)
    return F.cross_entropy(logits, target)


def mean_shifted_loss(z1: torch.Tensor, z2: torch.Tensor, centre: torch.Tensor, temperature: float = 0.25,
                      angular: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(contrastive, angular centre) losses for normalised features ``z1``, ``z2`` of two views."""
    s1, s2 = z1 - centre, z2 - centre
    con = nt_xent(F.normalize(s1, dim=1), F.normalize(s2, dim=1), temperature)
    ang = (s1 ** 2).sum(1).mean() + (s2 ** 2).sum(1).mean() if angular else torch.zeros((), device=z1.device)
    return con, ang


@register
class MSAD(FinetunedKNN):
    """Mean-shifted contrastive fine-tuning (+ angular centre loss) of a pretrained backbone; cosine kNN (k = 2).

    Cost: two augmented forward passes per image per epoch through the whole
    backbone (the front without gradients); ``cpu`` profile ~1-2 min per class
    at 64 px and 300 images.
    """

    name = "msad"
    summary = "MSAD: mean-shifted contrastive + angular centre fine-tuning of pretrained features, cosine kNN"
    profiles = {
        # authors' optimiser and loss at 64 px, 10 epochs (paper: 20 at 224 px)
        "cpu": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "epochs": 10},
        "paper": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "epochs": 20},
        "demo": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "epochs": 2},
        # random-init MobileNetV2 features are nearly constant in direction, so the test profile uses
        # the small random ViT (LayerNorm keeps its features well scaled)
        "test": {"backbone": "vit_tiny", "weights": None, "input_size": 32, "epochs": 1, "lr": 1e-3,
                 "ft_batch_size": 32},
    }

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 frozen_fraction: float = 0.5, epochs: int = 20, lr: float = 1e-5, momentum: float = 0.0,
                 weight_decay: float = 5e-5, ft_batch_size: int = 64, temperature: float = 0.25,
                 angular: bool = True, k: int = 2, index: str = "Flat", batch_size: int = 128,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(backbone=backbone, weights=weights, input_size=input_size,
                         frozen_fraction=frozen_fraction, epochs=epochs, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, ft_batch_size=ft_batch_size, k=k, index=index,
                         batch_size=batch_size, seed=seed, device=device)
        self.temperature = temperature
        self.angular = angular

    def _check_input(self, x: torch.Tensor) -> None:
        if float(self.temperature) <= 0:
            raise ValueError(f"msad: temperature must be > 0, got {self.temperature}")
        if int(self.ft_batch_size) < 2:
            raise ValueError(f"msad: ft_batch_size must be >= 2 (contrastive pairs), got {self.ft_batch_size}")
        super()._check_input(x)

    def _embed(self, x01: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net_.embed(x01), dim=1)

    def _train_tail(self, x: torch.Tensor, params: list[nn.Parameter]) -> None:
        net = self.net_
        with torch.no_grad():
            z0 = map_batches(self._embed, x, batch_size=self.batch_size, device=self.device_)
        centre = F.normalize(z0.mean(0), dim=0).to(self.device_)
        aug = mean_shifted_views(tuple(x.shape[-2:]), x.shape[1]).to(self.device_)
        opt = self._optimizer(params)

        def view(xb: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                h = net.front(aug(xb).clamp(0, 1))
            return F.normalize(net.tail(h), dim=1)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            xb = batch[0]
            opt.zero_grad()
            con, ang = mean_shifted_loss(view(xb), view(xb), centre, float(self.temperature), bool(self.angular))
            loss = con + ang
            loss.backward()
            opt.step()
            return {"contrastive": con.detach(), "angular": ang.detach()}

        hist = train_loop(step, x, modules={"tail": net}, epochs=int(self.epochs),
                          batch_size=int(self.ft_batch_size), device=self.device_, seed=self.seed,
                          desc="msad")
        self.history_ = hist.epochs
