"""DN2 (Bergman, Cohen & Hoshen 2020): pretrained features + k-nearest-neighbour distance.

The baseline FITYMI (paper 002) fine-tunes; here the backbone is used as is.
Also home of :class:`Backbone`, the feature extractor wrapper both detectors share.

Backbones (``backbone=``):

* ``"mobilenet_v2"``: :class:`~noveltylab.nets.mobilenet.MobileNetV2` (torchvision
  naming, TF padding, inputs scaled to [-1, 1]); 19 feature blocks, 1280-d
  pooled features. ``weights="auto"`` loads the shared ImageNet weights
  (``$NOVELTYLAB_WEIGHTS_DIR`` or ``../shared/weights`` next to the repository,
  ``mobilenet_v2_imagenet/mobilenet_v2_imagenet.safetensors``).
* ``"vit_b16"``: ViT-B/16 in timm naming (:mod:`noveltylab.nets.vit`), CLS
  token after the final LayerNorm, 768-d; ``weights=`` a timm-named file
  (no default file exists on these machines).
* ``"vit_tiny"``: a 4-block, 48-wide ViT (patch 8) for tests.

``weights=None`` gives random initialisation (tests only; the features are
then nearly meaningless). Any input size >= 8 with 1 or 3 channels works:
images are repeated to RGB and bilinearly resized to ``input_size``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..detector import Detector, load_module_state, module_state, register
from ..knn import KNNIndex
from ..nets.weights import resolve_weights
from ..train import map_batches

BACKBONES = ("mobilenet_v2", "vit_b16", "vit_tiny")
class Backbone(nn.Module):
    """A pretrained feature extractor split into a frozen front and a trainable tail.

    ``embed(x01)`` = ``tail(front(x01))``; ``front`` covers preprocessing and
    the first ``n_frozen`` blocks. FITYMI freezes the front (paper: the first
    6 of 12 ViT blocks; here by default the first half of the blocks of any
    backbone) and fine-tunes the tail.
    """

    def __init__(self, name: str, weights_path: str | None, input_size: int, frozen_fraction: float = 0.5):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
        if not 0.0 <= frozen_fraction <= 1.0:
            raise ValueError(f"frozen_fraction must be in [0, 1], got {frozen_fraction}")
        self.kind = name
        if name == "mobilenet_v2":
            from ..nets.mobilenet import MobileNetV2, load_mobilenet_v2

            net = (load_mobilenet_v2(weights_path, input_size=input_size) if weights_path
                   else MobileNetV2(num_classes=1000, input_size=input_size))
            net.classifier = nn.Identity()  # features only; keeps the saved state small
            n_blocks = len(net.features)
        else:
            from ..nets.vit import load_vit, vit_b16, vit_tiny_test

            if weights_path:
                net = load_vit(weights_path, img_size=input_size)
            else:
                net = vit_b16(input_size) if name == "vit_b16" else vit_tiny_test(input_size)
            net.head = nn.Identity()
            n_blocks = len(net.blocks)
        self.net = net
        self.input_size = int(input_size)
        self.n_blocks = n_blocks
        self.n_frozen = int(round(n_blocks * frozen_fraction))
        self.dim = int(net.feature_dim)

    # -- split forward --------------------------------------------------------------
    def front(self, x01: torch.Tensor) -> torch.Tensor:
        """Preprocessing + the first ``n_frozen`` blocks."""
        x = self.net.preprocess(x01)
        if self.kind == "mobilenet_v2":
            return self.net.features[:self.n_frozen](x)
        return self.net.blocks[:self.n_frozen](self.net.tokens(x))

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        """The remaining blocks + pooling -> (N, dim) features."""
        if self.kind == "mobilenet_v2":
            return self.net.features[self.n_frozen:](h).mean(dim=(2, 3))
        return self.net.norm(self.net.blocks[self.n_frozen:](h))[:, 0]

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        return self.tail(self.front(x01))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.embed(x01)

    def cache_setting(self, part: str = "pooled") -> dict[str, Any]:
        """Key of this backbone's outputs in the on-disk feature cache (:mod:`noveltylab.features`):
        backbone, SHA-256 of the weights that produce them, input size, output. ``part="pooled"``: the
        features (all weights); ``"front"``: the front's maps (only the front's weights and buffers, so
        a fine-tuned tail does not change the key). Computed from the weights as they are now."""
        from ..features import CACHE_VERSION, module_sha256

        if part not in ("pooled", "front"):
            raise ValueError(f"part must be 'pooled' or 'front', got {part!r}")
        skip = set()
        if part == "front":
            skip = {id(t) for m in self._tail_modules() for t in [*m.parameters(), *m.buffers()]}
        return {"v": CACHE_VERSION, "backbone": self.kind, "weights_sha256": module_sha256(self, skip),
                "input_size": self.input_size, "layer": "pooled" if part == "pooled" else f"front{self.n_frozen}"}

    def _tail_modules(self) -> list[nn.Module]:
        if self.kind == "mobilenet_v2":
            return list(self.net.features[self.n_frozen:])
        return list(self.net.blocks[self.n_frozen:]) + [self.net.norm]

    def freeze_front(self) -> list[nn.Parameter]:
        """Freeze the front (stem/tokens and first blocks); return the trainable tail parameters."""
        for p in self.parameters():
            p.requires_grad_(False)
        params = [p for m in self._tail_modules() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params


class _CachedEmbed:
    """One batch at a time through the active feature cache (key fixed at creation): the pooled
    features (``part="pooled"``), or the front's maps from the cache and the tail computed on them
    (``part="front"``: a fine-tuned tail over the frozen pretrained front)."""

    def __init__(self, net: Backbone, part: str) -> None:
        self.net = net
        self.part = part
        self.input_size = net.input_size  # map_batches caps the batch by the resized size
        self.setting = net.cache_setting(part)

    def front(self, x: torch.Tensor) -> torch.Tensor:
        from ..features import cached_rows

        return cached_rows(self.setting, x, self.net.front)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from ..features import cached_rows

        if self.part == "front":
            return self.net.tail(self.front(x))
        return cached_rows(self.setting, x, self.net.embed)


def cached_features(net: Backbone, x: torch.Tensor, batch_size: int, device: torch.device,
                    part: str = "pooled") -> np.ndarray:
    """Pooled features of ``x``, through the on-disk feature cache when one is active
    (``$NOVELTYLAB_FEATURE_CACHE``): ``part="pooled"`` caches the features themselves (a backbone used
    as it is: DN2), ``part="front"`` caches the frozen front's maps and runs the tail (FITYMI's
    fine-tuned backbone). Each image is then embedded (or its front computed) once per setting;
    values are identical either way."""
    from ..features import active_cache_dir

    fn = net.embed if active_cache_dir() is None else _CachedEmbed(net, part)
    return map_batches(fn, x, batch_size=batch_size, device=device).numpy()


def cached_front(net: Backbone, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """The frozen front's maps of ``x`` (FITYMI's fine-tuning inputs), through the active cache."""
    from ..features import active_cache_dir

    fn = net.front if active_cache_dir() is None else _CachedEmbed(net, "front").front
    return map_batches(fn, x, batch_size=batch_size, device=device)


FEATURE_NORMS = ("none", "l2", "standardise")


class FeatureScaler:
    """Scaling of pooled backbone features before the kNN search (``feature_norm``).

    ``"none"``: the raw pooled features (DN2's and FITYMI's papers); ``"l2"``: each vector
    divided by its L2 norm; ``"standardise"``: each dimension minus the training mean, over the
    training standard deviation (PyOD's embedding detectors do this). The training statistics
    are kept as state so a saved model scales new images the same way.
    """

    def __init__(self, kind: str = "none") -> None:
        if kind not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {kind!r}")
        self.kind = kind
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def fit_transform(self, feats: np.ndarray) -> np.ndarray:
        if self.kind == "standardise":
            self.mean_ = feats.mean(0).astype(np.float32)
            self.std_ = np.maximum(feats.std(0), 1e-6).astype(np.float32)
        return self.transform(feats)

    def transform(self, feats: np.ndarray) -> np.ndarray:
        if self.kind == "l2":
            return (feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        if self.kind == "standardise":
            assert self.mean_ is not None and self.std_ is not None
            return ((feats - self.mean_) / self.std_).astype(np.float32)
        return feats

    def state(self) -> dict[str, np.ndarray]:
        return {} if self.mean_ is None else {"scaler.mean": self.mean_, "scaler.std": self.std_}

    @classmethod
    def from_state(cls, kind: str, state: dict[str, Any]) -> "FeatureScaler":
        sc = cls(kind)
        if kind == "standardise":
            if "scaler.mean" not in state or "scaler.std" not in state:
                raise ValueError("model file lacks the standardisation statistics (scaler.mean / scaler.std)")
            sc.mean_ = np.asarray(state["scaler.mean"], dtype=np.float32)
            sc.std_ = np.asarray(state["scaler.std"], dtype=np.float32)
        return sc


def check_backbone_params(backbone: str, input_size: int, k: int, agg: str, batch_size: int = 1) -> None:
    """Shared parameter checks for dn2 / fitymi (raised before any work)."""
    from ..knn import AGGREGATIONS

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
    if int(input_size) < 8:
        raise ValueError(f"input_size must be >= 8, got {input_size}")
    if backbone.startswith("vit") and int(input_size) % (16 if backbone == "vit_b16" else 8):
        raise ValueError(f"input_size {input_size} must be a multiple of the ViT patch size")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


class FeatureNormScoring:
    """``set_scoring(feature_norm=...)`` for a kNN detector over pooled features (DN2, FITYMI): the raw
    training features of this session's fit (``train_features_``) are kept, so another scaling needs a
    new scaler and index only, no re-embedding (the bench's scoring variants)."""

    name: str
    feature_norm: str
    index: str
    seed: int
    train_features_: np.ndarray | None

    def _fit_index(self) -> None:
        self.scaler_ = FeatureScaler(self.feature_norm)
        self.index_ = KNNIndex(self.index, gpu="auto", seed=self.seed).fit(
            self.scaler_.fit_transform(self.train_features_))

    def set_scoring(self, val: Any = None, **params: Any) -> Any:
        """Change ``feature_norm`` of a fitted model without re-embedding the training images; ``val``
        is unused (kept for the variants' interface). Needs the raw training features of this
        session's fit (a loaded model has only the scaled index)."""
        self._check_fitted()  # type: ignore[attr-defined]
        bad = set(params) - {"feature_norm"}
        if bad:
            raise ValueError(f"{self.name}.set_scoring changes only ['feature_norm'], not {sorted(bad)}")
        if "feature_norm" not in params or params["feature_norm"] == self.feature_norm:
            return self
        FeatureScaler(params["feature_norm"])  # validates
        if getattr(self, "train_features_", None) is None:
            raise ValueError(f"{self.name}.set_scoring needs the training features of a fit in this session; a "
                             "loaded model keeps only its scaled index: refit with the new feature_norm instead")
        self.feature_norm = params["feature_norm"]
        self._fit_index()
        return self


@register
class DN2(FeatureNormScoring, Detector):
    """Pretrained backbone features (no training) + kNN: sum of squared L2 distances to the
    ``k`` nearest normal training features (``agg="sumsq"``; DN2 uses k = 2).

    Cost: one forward pass per image; ``input_size`` sets the resize (224 = the backbone's
    native size and the paper's, the default of every profile but ``test``; 64 px loses about
    20 AUROC points on CIFAR-10). ``feature_norm`` scales the pooled features before the kNN
    search (:class:`FeatureScaler`; the paper: ``"none"``).
    """

    name = "dn2"
    summary = "DN2: frozen pretrained backbone (MobileNetV2 / ViT) features + kNN distance (paper 002 baseline)"
    profiles = {
        "cpu": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224},
        "paper": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "feature_norm": "none"},
        "demo": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64},
        "test": {"backbone": "mobilenet_v2", "weights": None, "input_size": 32},
    }

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 k: int = 2, agg: str = "sumsq", index: str = "Flat", batch_size: int = 128,
                 feature_norm: str = "none", seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.feature_norm = feature_norm
        self.k = k
        self.agg = agg
        self.index = index
        self.batch_size = batch_size

    def _validate_params(self) -> None:
        check_backbone_params(self.backbone, self.input_size, self.k, self.agg, self.batch_size)

    def _check_input(self, x: torch.Tensor) -> None:
        check_backbone_params(self.backbone, self.input_size, self.k, self.agg, self.batch_size)
        if x.shape[0] < self.k:
            raise ValueError(f"dn2: k={self.k} needs at least {self.k} training images, got {x.shape[0]}")
        FeatureScaler(self.feature_norm)
        self._weights_path = resolve_weights(self.backbone, self.weights)

    def _build(self, path: str | None) -> Backbone:
        return Backbone(self.backbone, path, self.input_size).to(self.device_).eval()

    def _features(self, x: torch.Tensor) -> np.ndarray:
        return cached_features(self.net_, x, self.batch_size, self.device_)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self.net_ = self._build(self._weights_path)
        self.train_features_ = self._features(x)  # raw (unscaled): set_scoring re-scales without re-embedding
        self._fit_index()

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return self.index_.score(self.scaler_.transform(self._features(x)), k=self.k, agg=self.agg)  # type: ignore[arg-type]

    def _state(self) -> dict[str, Any]:
        return {**module_state("net", self.net_), **self.index_.state("knn")[0], **self.scaler_.state()}

    def _meta(self) -> dict[str, Any]:
        return self.index_.state("knn")[1]

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.net_ = self._build(None)
        load_module_state("net", self.net_, state)
        self.net_.eval()
        self.index_ = KNNIndex.from_state(state, meta, "knn")
        self.scaler_ = FeatureScaler.from_state(self.feature_norm, state)
        self.train_features_ = None
