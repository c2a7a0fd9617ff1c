"""The foundation's two baselines.

* ``raw-nn``: nearest-neighbour distance on raw pixels, exact or product
  quantized ("Raw NN-EED / NN-QED" of paper 003): images are zero-padded to a
  multiple of 8 (28x28 -> 32x32, as the paper does), flattened, and scored by
  the squared Euclidean distance to the nearest training image.
* ``cae-re``: a small convolutional autoencoder scored by its reconstruction
  error (mean squared error per image).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..detector import Detector, register
from ..images import ImageError, pad_to_multiple
from ..knn import KNNIndex
from ..nets.conv_ae import ConvAutoencoder
from ..train import map_batches, train_loop


@register
class RawNN(Detector):
    """k-NN distance on raw pixels. ``index``: FAISS factory string ("Flat" =
    exact NN-EED, "PQ32x4fs" = product-quantized NN-QED); ``k``/``agg``: which
    neighbours and how they are combined (see ``KNNIndex.score``)."""

    name = "raw-nn"
    summary = "Raw-pixel nearest-neighbour distance (exact or PQ), paper 003's Raw NN-EED/QED"
    profiles = {"cpu": {}, "paper": {"index": "PQ32x4"}, "demo": {}, "test": {}}

    def __init__(self, index: str = "Flat", k: int = 1, agg: str = "kth", pad_multiple: int = 8,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.index = index
        self.k = k
        self.agg = agg
        self.pad_multiple = pad_multiple

    def _vectors(self, x: torch.Tensor) -> np.ndarray:
        return pad_to_multiple(x, self.pad_multiple).flatten(1).numpy()

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        if x.shape[0] < self.k:
            raise ImageError(f"raw-nn: k={self.k} needs at least {self.k} training images, got {x.shape[0]}")
        self.index_ = KNNIndex(self.index, gpu="auto", seed=self.seed).fit(self._vectors(x))

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return self.index_.score(self._vectors(x), k=self.k, agg=self.agg)  # type: ignore[arg-type]

    def _state(self) -> dict[str, Any]:
        return self.index_.state("knn")[0]

    def _meta(self) -> dict[str, Any]:
        return self.index_.state("knn")[1]

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.index_ = KNNIndex.from_state(state, meta, "knn")


@register
class ConvAEReconstruction(Detector):
    """Small convolutional autoencoder; score = mean squared reconstruction error.

    Inputs are zero-padded to a multiple of ``2**depth``. Adam, MSE loss, fixed epochs
    (no checkpoint selection)."""

    name = "cae-re"
    summary = "Small convolutional autoencoder scored by reconstruction error"
    profiles = {"cpu": {"epochs": 15}, "paper": {"epochs": 100}, "demo": {"epochs": 10, "batch_size": 32},
                "test": {"epochs": 2, "batch_size": 32}}

    def __init__(self, epochs: int = 15, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-6,
                 width: int = 32, bottleneck: int = 4, depth: int = 3, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.width = width
        self.bottleneck = bottleneck
        self.depth = depth

    @property
    def _multiple(self) -> int:
        return 2 ** self.depth

    def _build(self) -> ConvAutoencoder:
        return ConvAutoencoder(self.input_shape_[0], self.width, self.bottleneck, self.depth).to(self.device_)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self.net_ = self._build()
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xp = pad_to_multiple(x, self._multiple)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            loss = F.mse_loss(self.net_(batch[0]), batch[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"mse": loss}

        def val_step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            return {"mse": F.mse_loss(self.net_(batch[0]), batch[0])}

        self.history_ = train_loop(step, xp, modules={"net": self.net_}, epochs=self.epochs,
                                   batch_size=self.batch_size, device=self.device_, seed=self.seed,
                                   val_data=None if val is None else pad_to_multiple(val, self._multiple),
                                   val_step=val_step, desc="cae-re")

    def _score(self, x: torch.Tensor) -> np.ndarray:
        self.net_.eval()
        err = map_batches(lambda b: (self.net_(b) - b).pow(2).flatten(1).mean(1), pad_to_multiple(x, self._multiple),
                          device=self.device_)
        return err.numpy()

    def _state(self) -> dict[str, Any]:
        return self._net_state()

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._restore_net(state)
