"""PatchCore (Roth et al., CVPR 2022): a coreset memory bank of locally aware patch features.

Fit: feature maps of two mid-level backbone blocks (MobileNetV2 blocks 6 and
13 with the shared weights; ResNet / WideResNet-50-2 ``layer2`` + ``layer3``
when such a weights file is given) -> 3x3 local average pooling of each map
(the paper's neighbourhood aggregation) -> the deeper map bilinearly upsampled
to the shallower one's grid and concatenated -> optional channel reduction by
adaptive average pooling (``feature_dim``; the paper's 1024 for WRN-50) ->
greedy k-center coreset of ``coreset_ratio`` of all training patches, chosen
on a random linear projection to ``projection_dim`` dimensions -> the memory
bank in the library's FAISS index (``index="Flat"`` exact, ``"PQ32x4fs"`` /
``"PQ16x8"`` ... product quantization).

Score: per test patch the Euclidean distance to its nearest memory patch; the
image score is the largest one, re-weighted as in the paper's Eq. 7
(``reweight="paper"``: ``s = (1 - softmax(||m* - m||, m in N_b(m*))[m*]) * s*``
over the ``num_neighbors`` memory neighbours of the nearest memory patch m*)
or taken as is (``reweight="none"``, what the authors' released code does).
``anomaly_map``: the patch distances bilinearly upsampled to ``input_size``,
Gaussian-blurred (sigma 4), resized to the input image.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..detector import register
from ..knn import KNNIndex
from .patch_features import PatchFeatureDetector, as_numpy

REWEIGHT = ("paper", "none")


def greedy_coreset(x: torch.Tensor, n: int, projection_dim: int | None, seed: int) -> np.ndarray:
    """Indices of ``n`` rows of ``x`` chosen by greedy k-center selection (Sener & Savarese), computed on a
    seeded Gaussian random projection to ``projection_dim`` dims (None or >= d: no projection)."""
    g = torch.Generator().manual_seed(int(seed))
    x = x.float()
    if projection_dim is not None and int(projection_dim) < x.shape[1]:
        proj = torch.randn(x.shape[1], int(projection_dim), generator=g) / math.sqrt(int(projection_dim))
        x = x @ proj
    n = max(1, min(int(n), x.shape[0]))
    x = x.contiguous()
    sq = (x * x).sum(1)
    i = int(torch.randint(x.shape[0], (1,), generator=g))
    sel = [i]
    mind = torch.empty_like(sq)
    tmp = torch.empty_like(sq)

    def dist_to(j: int, out: torch.Tensor) -> torch.Tensor:  # squared distances to row j, no allocations
        torch.mv(x, x[j], out=out)
        return out.mul_(-2.0).add_(sq).add_(sq[j]).clamp_min_(0)

    dist_to(i, mind)
    for _ in range(n - 1):
        i = int(torch.argmax(mind))
        sel.append(i)
        torch.minimum(mind, dist_to(i, tmp), out=mind)
    return np.asarray(sel, dtype=np.int64)


@register
class PatchCore(PatchFeatureDetector):
    """PatchCore. ``coreset_ratio``: fraction of training patches kept (paper: 0.1 and 0.01);
    ``num_neighbors``: b of the re-weighting; other parameters: see the module docstring.

    Cost (``cpu`` profile, 224 px, MobileNetV2, 1 % coreset): fit on 200 images and scoring
    are measured in ``README_patchcore.md``.
    """

    name = "patchcore"
    method_key = "patchcore"
    summary = "PatchCore: coreset memory bank of pretrained mid-level patch features + NN distance, localises"
    profiles = {
        "cpu": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "coreset_ratio": 0.01,
                "projection_dim": 64},
        "paper": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "coreset_ratio": 0.1},
        "demo": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "coreset_ratio": 0.1},
        "test": {"backbone": "mobilenet_v2", "weights": None, "input_size": 32, "coreset_ratio": 0.25},
    }

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 layers: Sequence | None = None, patch_size: int = 3, feature_dim: int | None = None,
                 coreset_ratio: float = 0.1, projection_dim: int | None = 128, num_neighbors: int = 9,
                 reweight: str = "paper", index: str = "Flat", blur_sigma: float = 4.0, batch_size: int = 32,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(backbone=backbone, weights=weights, input_size=input_size, layers=layers,
                         blur_sigma=blur_sigma, batch_size=batch_size, seed=seed, device=device)
        self.patch_size = patch_size
        self.feature_dim = feature_dim
        self.coreset_ratio = coreset_ratio
        self.projection_dim = projection_dim
        self.num_neighbors = num_neighbors
        self.reweight = reweight
        self.index = index

    def _check_method(self) -> None:
        if int(self.patch_size) < 1 or int(self.patch_size) % 2 == 0:
            raise ValueError(f"patchcore: patch_size must be an odd integer >= 1, got {self.patch_size}")
        if not 0.0 < float(self.coreset_ratio) <= 1.0:
            raise ValueError(f"patchcore: coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if self.feature_dim is not None and int(self.feature_dim) < 1:
            raise ValueError(f"patchcore: feature_dim must be >= 1 or None, got {self.feature_dim}")
        if self.projection_dim is not None and int(self.projection_dim) < 1:
            raise ValueError(f"patchcore: projection_dim must be >= 1 or None, got {self.projection_dim}")
        if int(self.num_neighbors) < 1:
            raise ValueError(f"patchcore: num_neighbors must be >= 1, got {self.num_neighbors}")
        if self.reweight not in REWEIGHT:
            raise ValueError(f"patchcore: reweight must be one of {REWEIGHT}, got {self.reweight!r}")

    # -- features ----------------------------------------------------------------------------
    def _embed(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer maps -> (N, h, w, C) locally aggregated patch features on the first layer's grid."""
        k = int(self.patch_size)
        hw = maps[0].shape[-2:]
        parts = []
        for m in maps:
            if k > 1:
                m = F.avg_pool2d(m, k, stride=1, padding=k // 2)
            if m.shape[-2:] != hw:
                m = F.interpolate(m, size=hw, mode="bilinear", align_corners=False)
            parts.append(m)
        emb = torch.cat(parts, 1).permute(0, 2, 3, 1)
        if self.feature_dim is not None and emb.shape[-1] > int(self.feature_dim):
            n, h, w, c = emb.shape
            emb = F.adaptive_avg_pool1d(emb.reshape(-1, 1, c), int(self.feature_dim)).reshape(n, h, w, -1)
        return emb.contiguous()

    def _patches(self, x: torch.Tensor):
        for start, maps in self._maps(x):
            yield start, self._embed(maps)

    # -- fit ------------------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self._start_fit()
        feats = []
        for _, emb in self._patches(x):
            self.grid_ = tuple(int(s) for s in emb.shape[1:3])
            feats.append(emb.reshape(-1, emb.shape[-1]).cpu())
        allf = torch.cat(feats)
        n_keep = max(1, int(math.ceil(float(self.coreset_ratio) * allf.shape[0])))
        idx = greedy_coreset(allf, n_keep, self.projection_dim, self.seed) if n_keep < allf.shape[0] \
            else np.arange(allf.shape[0])
        bank = as_numpy(allf[torch.from_numpy(idx)]).astype(np.float32)
        self.index_ = KNNIndex(self.index, gpu="auto", seed=self.seed).fit(bank)
        self.n_train_patches_ = int(allf.shape[0])
        b = min(int(self.num_neighbors), bank.shape[0])
        self.bank_nn_ = self.index_.search(self._bank_vectors(np.arange(bank.shape[0])), k=b)[1]

    def reindex(self, index: str) -> "PatchCore":
        """Put the fitted memory bank into another FAISS index (e.g. exact ``"Flat"`` -> ``"PQ32x4fs"``)
        without refitting: the same coreset, compressed; sets ``self.index`` to match."""
        self._check_fitted()
        bank = self._bank_vectors(np.arange(self.bank_size_))
        self.index = index
        self.index_ = KNNIndex(index, gpu="auto", seed=self.seed).fit(bank)
        self.bank_nn_ = self.index_.search(self._bank_vectors(np.arange(len(bank))), k=self.bank_nn_.shape[1])[1]
        return self

    def _bank_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Memory-bank vectors as the index stores them (decoded codes for PQ)."""
        out = self.index_.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        return np.asarray(out, dtype=np.float32)[:, : self.index_.dim]

    @property
    def bank_size_(self) -> int:
        return self.index_.ntotal

    @property
    def bytes_per_patch_(self) -> float:
        """Memory-bank storage per patch (4 * dim for Flat, the code size for PQ)."""
        return self.index_.bytes_per_vector

    # -- score ------------------------------------------------------------------------------------
    def _patch_scores(self, x: torch.Tensor):
        """Yield ``(start, dist (n, h, w), nn ids (n, h*w), embeddings (n, h*w, C))`` per batch."""
        for start, emb in self._patches(x):
            n, h, w, c = emb.shape
            q = as_numpy(emb.reshape(-1, c)).astype(np.float32)
            d2, ids = self.index_.search(q, k=1)
            dist = np.sqrt(d2[:, 0]).reshape(n, h, w)
            yield start, dist, ids[:, 0].reshape(n, h * w), q.reshape(n, h * w, c)

    def _image_scores(self, dist: np.ndarray, ids: np.ndarray, q: np.ndarray) -> np.ndarray:
        flat = dist.reshape(dist.shape[0], -1).astype(np.float64)
        star = flat.argmax(1)
        s = flat[np.arange(len(flat)), star]
        if self.reweight == "none" or self.bank_nn_.shape[1] < 2:
            return s
        out = np.empty_like(s)
        for i, p in enumerate(star):
            nbrs = self.bank_nn_[ids[i, p]]
            d = np.linalg.norm(self._bank_vectors(nbrs).astype(np.float64) - q[i, p].astype(np.float64), axis=1)
            d[0] = s[i]  # N_b(m*) starts with m* itself: its distance is s*
            e = np.exp(d - d.max())
            out[i] = (1.0 - e[0] / e.sum()) * s[i]
        return out

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return np.concatenate([self._image_scores(d, i, q) for _, d, i, q in self._patch_scores(x)])

    def _anomaly_map(self, x: torch.Tensor) -> np.ndarray:
        hw = tuple(int(s) for s in x.shape[-2:])
        return np.concatenate([as_numpy(self._to_image(torch.from_numpy(d), hw))
                               for _, d, _, _ in self._patch_scores(x)])

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        arrays, _ = self.index_.state("knn")
        return {**self._backbone_state(), **arrays, "bank_nn": self.bank_nn_}

    def _meta(self) -> dict[str, Any]:
        return {"knn": self.index_.state("knn")[1], "grid": list(self.grid_),
                "n_train_patches": self.n_train_patches_}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._restore_backbone(state)
        self.index_ = KNNIndex.from_state(state, meta["knn"], "knn")
        self.bank_nn_ = state["bank_nn"].numpy()
        self.grid_ = tuple(meta["grid"])
        self.n_train_patches_ = int(meta["n_train_patches"])
