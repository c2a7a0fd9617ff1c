"""PaDiM (Defard et al., ICPR 2021): a Gaussian per patch position over pretrained features.

Fit: feature maps of three backbone blocks (MobileNetV2 blocks 3, 6, 13 with
the shared weights - the stride-4/8/16 stage ends; ResNet ``layer1..3`` when
such a weights file is given), the deeper ones nearest-upsampled to the first
block's grid and concatenated; ``n_features`` channels kept at random (seeded,
the paper's random dimensionality reduction); per grid position the mean and
covariance of the training images' vectors, ``+ eps * I`` (paper: 0.01),
inverted once.

Score: the Mahalanobis distance of every patch to its position's Gaussian;
``anomaly_map`` = those distances bilinearly upsampled to ``input_size``,
Gaussian-blurred (sigma 4) and resized to the input image; image score = the
maximum of the map (at ``input_size``), as in the paper.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..detector import register
from .patch_features import PatchFeatureDetector, as_numpy


@register
class PaDiM(PatchFeatureDetector):
    """PaDiM. ``n_features``: d', the randomly kept channels (paper: 100 for ResNet-18, 550 for
    WRN-50-2); ``eps``: the covariance regulariser; other parameters: see the module docstring.

    Memory: ``grid positions * n_features^2 * 4`` bytes for the inverse covariances
    (56 x 56 x 100 x 100 x 4 = 125 MB at 224 px with MobileNetV2 block 3 as the first layer).
    """

    name = "padim"
    method_key = "padim"
    summary = "PaDiM: per-position Gaussian of pretrained patch features, Mahalanobis distance map, localises"
    profiles = {
        "cpu": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "n_features": 100},
        "paper": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "n_features": 100},
        "demo": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "n_features": 100},
        "test": {"backbone": "mobilenet_v2", "weights": None, "input_size": 32, "n_features": 40},
    }

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 layers: Sequence | None = None, n_features: int = 100, eps: float = 0.01,
                 blur_sigma: float = 4.0, batch_size: int = 32, seed: int = 0, device: str = "auto") -> None:
        super().__init__(backbone=backbone, weights=weights, input_size=input_size, layers=layers,
                         blur_sigma=blur_sigma, batch_size=batch_size, seed=seed, device=device)
        self.n_features = n_features
        self.eps = eps

    def _check_method(self) -> None:
        if int(self.n_features) < 1:
            raise ValueError(f"padim: n_features must be >= 1, got {self.n_features}")
        if not float(self.eps) > 0:
            raise ValueError(f"padim: eps must be > 0, got {self.eps}")

    # -- features ----------------------------------------------------------------------------
    def _embed(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer maps -> (N, P, d') vectors of the kept channels at every grid position."""
        hw = maps[0].shape[-2:]
        emb = torch.cat([m if m.shape[-2:] == hw else F.interpolate(m, size=hw, mode="nearest") for m in maps], 1)
        emb = emb[:, self.channels_.to(emb.device)]
        return emb.flatten(2).transpose(1, 2).double()

    # -- fit ------------------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self._start_fit()
        n, mean, m2 = 0, None, None
        for _, maps in self._maps(x):
            if mean is None:
                total = sum(int(m.shape[1]) for m in maps)
                if int(self.n_features) > total:
                    raise ValueError(f"padim: n_features={self.n_features} exceeds the {total} channels of "
                                     f"layers {self._layers()}")
                g = torch.Generator().manual_seed(int(self.seed))
                self.channels_ = torch.randperm(total, generator=g)[: int(self.n_features)]
                self.grid_ = tuple(int(s) for s in maps[0].shape[-2:])
            e = self._embed(maps)  # (b, P, d)
            b = e.shape[0]
            bm = e.mean(0)
            c = e - bm
            bm2 = torch.einsum("npd,npe->pde", c, c)
            if mean is None:
                n, mean, m2 = b, bm, bm2
            else:  # Chan et al.'s pairwise merge of (count, mean, scatter): exact in any batch split
                delta = bm - mean
                tot = n + b
                m2 = m2 + bm2 + torch.einsum("pd,pe->pde", delta, delta) * (n * b / tot)
                mean = mean + delta * (b / tot)
                n = tot
        d = int(self.n_features)
        cov = m2 / max(n - 1, 1) + float(self.eps) * torch.eye(d, dtype=torch.float64)
        self.mean_ = mean.float()
        self.inv_cov_ = torch.linalg.inv(cov).float()

    # -- score ------------------------------------------------------------------------------------
    def _distance_maps(self, x: torch.Tensor):
        h, w = self.grid_
        mu, inv = self.mean_.double(), self.inv_cov_.float()
        for _, maps in self._maps(x):
            delta = (self._embed(maps).cpu() - mu).float()
            m = torch.einsum("npd,pde,npe->np", delta, inv, delta).clamp_min_(0).sqrt()
            yield m.reshape(-1, h, w)

    def _score(self, x: torch.Tensor) -> np.ndarray:
        s = int(self.input_size)
        return np.concatenate([as_numpy(self._to_image(m, (s, s)).flatten(1).amax(1)) for m in self._distance_maps(x)])

    def _anomaly_map(self, x: torch.Tensor) -> np.ndarray:
        hw = tuple(int(v) for v in x.shape[-2:])
        return np.concatenate([as_numpy(self._to_image(m, hw)) for m in self._distance_maps(x)])

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {**self._backbone_state(), "mean": self.mean_, "inv_cov": self.inv_cov_, "channels": self.channels_}

    def _meta(self) -> dict[str, Any]:
        return {"grid": list(self.grid_)}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._restore_backbone(state)
        self.mean_, self.inv_cov_, self.channels_ = state["mean"], state["inv_cov"], state["channels"]
        self.grid_ = tuple(meta["grid"])
        d = int(self.n_features)
        if self.inv_cov_.shape[-1] != d or self.channels_.shape[0] != d:
            raise ValueError(f"padim: saved statistics have {self.inv_cov_.shape[-1]} features, "
                             f"the config says n_features={d}")
