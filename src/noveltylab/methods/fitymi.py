"""FITYMI - "Fake It Till You Make It" (Mirzaei et al., paper 002).

1. Train a score-based generative model (Song et al.'s SDE; VP or VE) on the
   normal images only and stop it early, when the FID between its samples and
   real normal images first reaches the target (paper: Inception-FID ~40 at low
   resolution). ``fid_rule="relative"`` (default) transfers that target to our
   extractor and sample size: ``floor + fid_fraction * (ceiling - floor)`` with the
   real-vs-real floor and the untrained generator's ceiling measured the same way
   as the checks (fraction 0.082 derived from the Inception scale, see
   :mod:`noveltylab.generative.fid`); ``"absolute"`` stops at ``fid_target`` as is.
   Real images enter the FID at the generator's resolution (``fid_resolution``). When no check
   reaches the target, ``gen_fallback="last"`` (default; the paper names no fallback) keeps the
   weights of the epoch cap, ``"best"`` those of the check of lowest FID, and ``gen_patience``
   then ends training after that many checks without a new lowest FID. Its samples - imperfect, near-distribution images - are the
   fake anomalies (``n_fakes``; paper: as many as normal training images).
2. Fine-tune a pretrained backbone with a zero-initialised 2-way linear head
   on normal (0) vs fake (1) with cross-entropy; the first half of the blocks
   stays frozen (paper: first 6 of 12 ViT-B/16 blocks; SGD lr 4e-4, weight
   decay 5e-5, no momentum, batch 16, 30 epochs, resize/crop/flip).
3. Store the fine-tuned features of the normal training images in an exact
   FAISS index; score = sum of squared L2 distances to the ``k = 2`` nearest.

Without step 1-2 this is :class:`~noveltylab.methods.dn2.DN2` (the paper's
"Before" rows). Backbones, weights and resizing: see ``dn2``. The generator
works at ``gen_size`` x ``gen_size`` (images bilinearly resized, [-1, 1]);
fakes are resized back to the input size. FID uses MobileNetV2 features
(``fid_extractor="mobilenet_v2"``, the shared ImageNet weights; values are not
Inception FIDs) or grey thumbnails (``"pixels"``).

The generated fakes are kept as ``fakes_`` (and saved with the model) so
scripts can write them out as an image folder / sample grid
(:mod:`noveltylab.generative.io`). :meth:`FITYMI.fit_with_fakes` skips the
generator and fine-tunes on a given fake set (stopping-point studies, or the
authors' pre-generated sets).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..detector import Detector, load_module_state, module_state, register
from ..images import ImageError, as_images, resize
from ..knn import KNNIndex
from ..train import map_batches, train_loop
from .guards import features_collapsed
from .dn2 import (Backbone, FeatureNormScoring, FeatureScaler, cached_features, cached_front, check_backbone_params,
                  resolve_weights)


FID_RULES = ("relative", "absolute")
# the resolution at which real images enter the FID (anchors and checks): "generator" - resized to the
# generator's gen_size first, so a generator that works below the data resolution (the cpu profile:
# 16 px for 28 / 32-px data) is compared like with like; "data" - as they are. The paper's generator
# works at the data resolution, where both are the same.
FID_RESOLUTIONS = ("generator", "data")
# the generator's weights when no FID check reaches the target: those of the epoch cap, or of the check
# of lowest FID (on CIFAR-10 at the cpu budget FID is lowest at epoch 10-20 and then rises, README_fitymi)
GEN_FALLBACKS = ("last", "best")
# where the fake anomalies come from: the early-stopped score-SDE (the paper), or the control of
# issue 13.3 - blurred and noised normal images (no generative model) at the same budget
FAKES = ("generator", "blur-noise")
BLUR_SIGMA = (1.0, 2.0)    # Gaussian blur sigma range, pixels of a 32-px image (scaled with the size)
NOISE_STD = (0.05, 0.15)   # additive Gaussian noise std range (images in [0, 1])


def blur_noise_fakes(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` non-generative fakes from the normal images ``x`` (float NCHW in [0, 1]): each is a normal
    image (a seeded permutation, cycled when ``n > len(x)``) blurred with a Gaussian of sigma drawn from
    :data:`BLUR_SIGMA` (kornia) and then given Gaussian noise of std drawn from :data:`NOISE_STD`,
    clipped to [0, 1]. The ranges were fixed in advance (visible but not destructive at 28-32 px)."""
    from kornia.filters import gaussian_blur2d

    g = torch.Generator().manual_seed(int(seed))
    idx = torch.cat([torch.randperm(len(x), generator=g) for _ in range(-(-n // len(x)))])[:n]
    src = x[idx].float()
    side_scale = max(1.0, max(x.shape[-2:]) / 32)
    lo, hi = BLUR_SIGMA
    sigma = (lo + (hi - lo) * torch.rand(n, generator=g)) * side_scale
    k = 2 * int(math.ceil(3 * float(sigma.max()))) + 1
    blurred = gaussian_blur2d(src, (k, k), sigma[:, None].expand(n, 2).contiguous(), border_type="reflect")
    lo, hi = NOISE_STD
    std = (lo + (hi - lo) * torch.rand(n, generator=g)).view(n, 1, 1, 1)
    return (blurred + std * torch.randn(src.shape, generator=g)).clamp(0, 1).to(x.dtype)


@register
class FITYMI(FeatureNormScoring, Detector):
    """Early-stopped score-SDE fakes -> fine-tuned backbone (normal vs fake) -> kNN (k=2, sum of squares)."""

    name = "fitymi"
    summary = ("FITYMI: early-stopped score-SDE fake near-anomalies, backbone fine-tuned normal-vs-fake, "
               "kNN on features (paper 002)")
    profiles = {
        # CPU: tiny generator at 16x16 on <= 500 normal images, EMA weights, FID checked every 10
        # epochs (relative rule at the generator's resolution) up to a cap of 100 epochs, 500 fakes
        # from 200 Euler-Maruyama steps (50 steps left FID ~800 where 200 reach the target - measured
        # on normal images only, Fashion-MNIST T-shirt: stop at epoch 50), MobileNetV2 at its native
        # 224 px fine-tuned 5 epochs on cached frozen-front features with the paper's optimiser
        # (SGD 4e-4, no momentum; lr 3e-3 with momentum 0.9, the 64-px setting, killed the ReLUs of
        # the tail at 224 px on Fashion-MNIST T-shirt: train accuracy 2/3, 99 % zero features).
        "cpu": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 224, "gen_size": 16,
                "gen_width": 16, "gen_levels": 2, "gen_epochs": 100, "gen_check_every": 10, "gen_lr": 2e-3,
                "gen_max_images": 500, "fid_target": 40.0, "fid_samples": 100, "sample_steps": 200,
                "n_fakes": 500, "ft_epochs": 5, "ft_lr": 4e-4, "ft_momentum": 0.0, "ft_batch_size": 32,
                "augment": False},
        # The paper: ViT-B/16 (ImageNet-21k; pass weights=<timm-named file>), 224 px, NCSN++-size
        # generator at 32x32 stopped at FID 40, as many fakes as normal images, SGD 4e-4 30 epochs.
        "paper": {"backbone": "vit_b16", "weights": "auto", "input_size": 224, "gen_size": 32,
                  "gen_width": 128, "gen_levels": 4, "gen_res_blocks": 2, "gen_epochs": 2000,
                  "gen_check_every": 50, "gen_lr": 2e-4, "gen_max_images": None, "fid_target": 40.0,
                  "fid_samples": 1000, "sample_steps": 1000, "n_fakes": None, "ft_epochs": 30,
                  "ft_lr": 4e-4, "ft_momentum": 0.0, "ft_batch_size": 16, "augment": True},
        "demo": {"backbone": "mobilenet_v2", "weights": "auto", "input_size": 64, "gen_size": 8,
                 "gen_width": 8, "gen_levels": 2, "gen_epochs": 2, "gen_check_every": 2, "gen_lr": 2e-3,
                 "fid_extractor": "pixels", "fid_target": None, "fid_samples": 32, "sample_steps": 10,
                 "n_fakes": 64, "ft_epochs": 2, "ft_lr": 3e-3, "ft_momentum": 0.9, "ft_batch_size": 32,
                 "augment": False},
        "test": {"backbone": "mobilenet_v2", "weights": None, "input_size": 32, "gen_size": 8, "gen_width": 8,
                 "gen_levels": 2, "gen_epochs": 1, "gen_check_every": 1, "gen_lr": 2e-3,
                 "fid_extractor": "pixels", "fid_target": None, "fid_samples": 16, "sample_steps": 5,
                 "n_fakes": 32, "ft_epochs": 1, "ft_lr": 3e-3, "ft_momentum": 0.9, "ft_batch_size": 32,
                 "augment": False},
    }

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 frozen_fraction: float = 0.5,
                 sde: str = "vp", gen_size: int = 32, gen_width: int = 32, gen_levels: int = 3,
                 gen_res_blocks: int = 1, gen_epochs: int = 100, gen_check_every: int = 10,
                 gen_lr: float = 2e-4, gen_batch_size: int = 64, gen_max_images: int | None = None,
                 gen_ema: float = 0.999, gen_fallback: str = "last", gen_patience: int | None = None,
                 fid_extractor: str = "mobilenet_v2", fid_rule: str = "relative", fid_fraction: float | None = None,
                 fid_target: float | None = 40.0, fid_samples: int = 200, fid_resolution: str = "generator",
                 sample_steps: int = 100, corrector_steps: int = 0, n_fakes: int | None = None,
                 ft_epochs: int = 30, ft_lr: float = 4e-4, ft_weight_decay: float = 5e-5,
                 ft_momentum: float = 0.0, ft_batch_size: int = 16, augment: bool = True,
                 k: int = 2, agg: str = "sumsq", index: str = "Flat", batch_size: int = 128,
                 feature_norm: str = "none", fakes: str = "generator", seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.feature_norm = feature_norm
        self.fakes = fakes
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.frozen_fraction = frozen_fraction
        self.sde = sde
        self.gen_size = gen_size
        self.gen_width = gen_width
        self.gen_levels = gen_levels
        self.gen_res_blocks = gen_res_blocks
        self.gen_epochs = gen_epochs
        self.gen_check_every = gen_check_every
        self.gen_lr = gen_lr
        self.gen_batch_size = gen_batch_size
        self.gen_max_images = gen_max_images
        self.gen_ema = gen_ema
        self.gen_fallback = gen_fallback
        self.gen_patience = gen_patience
        self.fid_extractor = fid_extractor
        self.fid_rule = fid_rule
        self.fid_fraction = fid_fraction
        self.fid_target = fid_target
        self.fid_samples = fid_samples
        self.fid_resolution = fid_resolution
        self.sample_steps = sample_steps
        self.corrector_steps = corrector_steps
        self.n_fakes = n_fakes
        self.ft_epochs = ft_epochs
        self.ft_lr = ft_lr
        self.ft_weight_decay = ft_weight_decay
        self.ft_momentum = ft_momentum
        self.ft_batch_size = ft_batch_size
        self.augment = augment
        self.k = k
        self.agg = agg
        self.index = index
        self.batch_size = batch_size

    # -- checks -----------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.fakes not in FAKES:
            raise ValueError(f"fitymi: fakes must be one of {FAKES}, got {self.fakes!r}")

    def _check_input(self, x: torch.Tensor) -> None:
        check_backbone_params(self.backbone, self.input_size, self.k, self.agg, self.batch_size)
        if x.shape[0] < self.k:
            raise ValueError(f"fitymi: k={self.k} needs at least {self.k} training images, got {x.shape[0]}")
        FeatureScaler(self.feature_norm)
        if self.sde not in ("vp", "ve"):
            raise ValueError(f"sde must be 'vp' or 've', got {self.sde!r}")
        if self.gen_levels < 1 or self.gen_width < 1 or self.gen_res_blocks < 1:
            raise ValueError("gen_levels, gen_width and gen_res_blocks must be >= 1")
        mult = 2 ** (self.gen_levels - 1)
        if self.gen_size < 4 or self.gen_size % mult:
            raise ValueError(f"gen_size {self.gen_size} must be >= 4 and divisible by 2**(gen_levels-1) = {mult}")
        for n in ("gen_epochs", "gen_check_every", "gen_batch_size", "fid_samples", "sample_steps",
                  "ft_batch_size"):
            if int(getattr(self, n)) < 1:
                raise ValueError(f"{n} must be >= 1, got {getattr(self, n)}")
        if self.fid_samples < 2:
            raise ValueError("fid_samples must be >= 2")
        if self.ft_epochs < 0 or self.corrector_steps < 0:
            raise ValueError("ft_epochs and corrector_steps must be >= 0")
        if self.n_fakes is not None and int(self.n_fakes) < 1:
            raise ValueError(f"n_fakes must be >= 1 or None, got {self.n_fakes}")
        if self.gen_max_images is not None and int(self.gen_max_images) < 2:
            raise ValueError(f"gen_max_images must be >= 2 or None, got {self.gen_max_images}")
        if self.gen_fallback not in GEN_FALLBACKS:
            raise ValueError(f"gen_fallback must be one of {GEN_FALLBACKS}, got {self.gen_fallback!r}")
        if self.gen_patience is not None and (self.gen_fallback != "best" or int(self.gen_patience) < 1):
            raise ValueError(f"gen_patience needs gen_fallback='best' and must be >= 1, got {self.gen_patience!r}")
        if self.fid_rule not in FID_RULES:
            raise ValueError(f"fid_rule must be one of {FID_RULES}, got {self.fid_rule!r}")
        if self.fid_resolution not in FID_RESOLUTIONS:
            raise ValueError(f"fid_resolution must be one of {FID_RESOLUTIONS}, got {self.fid_resolution!r}")
        if self.fid_fraction is not None and not 0.0 < float(self.fid_fraction) < 1.0:
            raise ValueError(f"fid_fraction must be in (0, 1) or None, got {self.fid_fraction!r}")
        if self.fid_extractor not in ("mobilenet_v2", "pixels"):
            raise ValueError(f"fid_extractor must be 'mobilenet_v2' or 'pixels', got {self.fid_extractor!r}")
        if not 0.0 <= float(self.gen_ema) < 1.0:
            raise ValueError(f"gen_ema must be in [0, 1), got {self.gen_ema!r}")
        if self.ft_lr <= 0 or self.gen_lr <= 0:
            raise ValueError("learning rates must be > 0")
        self._weights_path = resolve_weights(self.backbone, self.weights)
        self._fid_weights = None
        if (self.fid_extractor == "mobilenet_v2" and getattr(self, "_given_fakes", None) is None
                and self.fakes == "generator"):
            self._fid_weights = (self._weights_path if self.backbone == "mobilenet_v2"
                                 else resolve_weights("mobilenet_v2", "auto" if self.weights else None))

    # -- public extra -------------------------------------------------------------------------
    def fit_with_fakes(self, images: Any, fakes: Any, val: Any = None) -> "FITYMI":
        """Fit with a given fake-anomaly set instead of training the generator."""
        f = as_images(fakes, name="fake images")
        self._given_fakes = f
        try:
            self.fit(images, val)
        finally:
            self._given_fakes = None
        return self

    # -- generator ----------------------------------------------------------------------------
    def _generate(self, x: torch.Tensor, val: torch.Tensor | None) -> torch.Tensor:
        from ..generative import ScoreModel, feature_extractor

        g = torch.Generator().manual_seed(self.seed)
        xg = x
        if self.gen_max_images is not None and len(x) > self.gen_max_images:
            xg = x[torch.randperm(len(x), generator=g)[: self.gen_max_images].sort().values]
        real = val if val is not None and len(val) >= 2 else x
        if len(real) > 1000:
            real = real[torch.randperm(len(real), generator=g)[:1000].sort().values]
        ext = feature_extractor(self.fid_extractor, self._fid_weights, input_size=64, device=self.device_)
        mults = tuple([1] + [2] * (self.gen_levels - 1))
        gen = ScoreModel(x.shape[1], self.gen_size, self.sde, self.gen_width, mults, self.gen_res_blocks,
                         self.gen_lr, self.gen_batch_size, self.seed, self.device_, ema=self.gen_ema)
        target = self.fid_target
        self.fid_rule_info_: dict[str, Any] = {"rule": self.fid_rule, "resolution": self._fid_size(x)}
        if self.fid_rule == "relative" and self.fid_target is not None:
            self.fid_rule_info_.update(self._relative_target(gen, x, real, val is None or len(val) < 2, ext, g))
            target = self.fid_rule_info_["target"]
        else:
            self.fid_rule_info_["target"] = target
        gen.fit_early_stopped(xg, self._fid_view(real), ext, max_epochs=self.gen_epochs, check_every=self.gen_check_every,
                              fid_target=target, fid_samples=self.fid_samples,
                              sample_steps=self.sample_steps, keep_states=False,
                              restore_best=self.gen_fallback == "best", patience=self.gen_patience)
        self.gen_checks_ = [{"epoch": c.epoch, "fid": c.fid, "loss": c.loss} for c in gen.checkpoints_]
        self.gen_stop_epoch_ = gen.stop_epoch_
        self.fid_rule_info_["stopped_early"] = bool(self.gen_stop_epoch_ is not None
                                                    and self.gen_stop_epoch_ < self.gen_epochs)
        self.fid_rule_info_["target_reached"] = bool(gen.target_reached_)
        self.fid_rule_info_["fallback"] = self.gen_fallback
        self.fid_rule_info_["restored_epoch"] = gen.restored_epoch_
        self.generator_ = gen
        n = int(self.n_fakes) if self.n_fakes is not None else len(x)
        return gen.sample(n, steps=self.sample_steps, corrector_steps=self.corrector_steps,
                          seed=self.seed + 1, out_size=tuple(x.shape[-2:]))

    def _fid_size(self, x: torch.Tensor) -> int:
        """Side length (pixels) at which real images enter the FID (see ``FID_RESOLUTIONS``)."""
        return int(self.gen_size) if self.fid_resolution == "generator" else int(x.shape[-1])

    def _fid_view(self, x: torch.Tensor) -> torch.Tensor:
        """Real images as the FID sees them: at the generator's size with ``fid_resolution="generator"``
        (antialiased bilinear, as the generator's own training images), else unchanged."""
        return resize(x.float(), self._fid_size(x))

    def _relative_target(self, gen: Any, x: torch.Tensor, real: torch.Tensor, real_is_train: bool, ext: Any,
                         g: torch.Generator) -> dict[str, float]:
        """Anchors of the relative FID rule, measured with the checks' extractor and sizes: the
        real-vs-real floor (``fid_samples`` normal images not in ``real`` against ``real``) and
        the untrained generator's ceiling (:func:`~noveltylab.generative.fid.relative_fid_target`)."""
        from ..generative.fid import PAPER_FID_FRACTION, relative_fid_target

        n = int(self.fid_samples)
        if real_is_train:  # no validation set: split the normal images into two disjoint halves
            perm = torch.randperm(len(x), generator=g)
            half = len(x) // 2
            real, other = x[perm[:half]], x[perm[half:]][:n]
        else:
            other = x[torch.randperm(len(x), generator=g)[:n]]
        noise = gen.sample(n, steps=self.sample_steps, seed=self.seed + 10_000)
        frac = PAPER_FID_FRACTION if self.fid_fraction is None else float(self.fid_fraction)
        info = relative_fid_target(ext(self._fid_view(real)), ext(self._fid_view(other)), ext(noise), frac)
        info["samples"] = n
        return info

    # -- fine-tuning ---------------------------------------------------------------------------
    def _build(self, path: str | None) -> Backbone:
        return Backbone(self.backbone, path, self.input_size, self.frozen_fraction).to(self.device_)

    def _augmenter(self, size: tuple[int, int]) -> nn.Module:
        import kornia.augmentation as K

        # paper: resize 256 / random crop 224 / flip -> crop keeping (224/256)^2 of the area
        return nn.Sequential(K.RandomResizedCrop(size, scale=(0.766, 0.766), ratio=(1.0, 1.0)),
                             K.RandomHorizontalFlip())

    def _finetune(self, x: torch.Tensor, fakes: torch.Tensor) -> None:
        net = self.net_
        params = net.freeze_front()
        head = nn.Linear(net.dim, 2).to(self.device_)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.head_ = head
        opt = torch.optim.SGD(params + list(head.parameters()), lr=self.ft_lr, momentum=self.ft_momentum,
                              weight_decay=self.ft_weight_decay)
        data = torch.cat([x, fakes.to(x.dtype)])
        y = torch.cat([torch.zeros(len(x), dtype=torch.long), torch.ones(len(fakes), dtype=torch.long)])
        modules = {"tail": net, "head": head}
        if self.augment:
            aug = self._augmenter(tuple(x.shape[-2:])).to(self.device_)

            def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
                xb, yb = batch
                with torch.no_grad():
                    h = net.front(aug(xb))
                logits = head(net.tail(h))
                return _update(opt, logits, yb)

            inputs: tuple[torch.Tensor, ...] = (data, y)
        else:  # frozen front computed once (normal images through the feature cache): only the tail runs per step
            net.eval()
            hidden = torch.cat([cached_front(net, x, self.batch_size, self.device_),
                                map_batches(net.front, fakes.to(x.dtype), batch_size=self.batch_size,
                                            device=self.device_)])

            def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
                hb, yb = batch
                return _update(opt, head(net.tail(hb)), yb)

            inputs = (hidden, y)
        self.ft_history_ = train_loop(step, inputs, modules=modules, epochs=self.ft_epochs,
                                      batch_size=self.ft_batch_size, device=self.device_, seed=self.seed,
                                      desc="fitymi-finetune")
        net.eval()
        head.eval()
        for p in net.parameters():
            p.requires_grad_(False)

    # -- Detector hooks ----------------------------------------------------------------------
    def _features(self, x: torch.Tensor) -> np.ndarray:
        """Pooled features through the feature cache when one is active: the collapse fallback's
        pretrained backbone caches DN2's features; the fine-tuned one caches only its frozen front's
        maps (unchanged pretrained weights; the tail runs on them)."""
        part = "pooled" if self.ft_collapsed_ else "front"
        return cached_features(self.net_, x, self.batch_size, self.device_, part=part)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        given = getattr(self, "_given_fakes", None)
        if given is not None:
            if tuple(given.shape[1:]) != tuple(x.shape[1:]):
                raise ImageError(f"fake images have shape {tuple(given.shape[1:])}, normal images "
                                 f"{tuple(x.shape[1:])}")
            fakes = given
            self.gen_checks_, self.gen_stop_epoch_ = [], None
            self.fid_rule_info_ = {"rule": "given fakes (no generator)"}
        elif self.fakes == "blur-noise":
            fakes = blur_noise_fakes(x, int(self.n_fakes) if self.n_fakes is not None else len(x), self.seed + 1)
            self.gen_checks_, self.gen_stop_epoch_ = [], None
            self.fid_rule_info_ = {"rule": "blur-noise fakes (no generator)"}
        else:
            fakes = self._generate(x, val)
        self.fakes_ = fakes
        self.ft_collapsed_ = False
        self.net_ = self._build(self._weights_path)
        self._finetune(x, fakes)
        feats = self._features(x)
        self.ft_collapsed_ = features_collapsed(feats)
        if self.ft_collapsed_:
            # every normal image maps to (nearly) the same feature: kNN scores would be constant, so
            # keep the pretrained features (= DN2) and say so, rather than return meaningless scores
            acc = self.ft_history_.epochs[-1]["acc"] if self.ft_history_.epochs else float("nan")
            warnings.warn(f"fitymi: fine-tuning collapsed the features (final train accuracy {acc:.3f}); "
                          "using the pretrained backbone's features instead (a lower ft_lr may help)",
                          RuntimeWarning, stacklevel=3)
            self.net_ = self._build(self._weights_path).eval().requires_grad_(False)
            feats = self._features(x)
        self.train_features_ = feats  # raw: set_scoring(feature_norm=...) re-scales without re-embedding
        self._fit_index()

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return self.index_.score(self.scaler_.transform(self._features(x)), k=self.k, agg=self.agg)  # type: ignore[arg-type]

    def diagnostics(self) -> dict[str, Any]:
        """What a benchmark record keeps about this fit: the generator's FID per check, its stop
        epoch and stopping rule, and whether the fine-tuning collapsed (then the model scores
        with the pretrained features, i.e. it is DN2, and ``fallback`` says so)."""
        self._check_fitted()
        return {"gen_checks": list(self.gen_checks_), "gen_stop_epoch": self.gen_stop_epoch_,
                "fid_rule": getattr(self, "fid_rule_info_", None), "ft_collapsed": bool(self.ft_collapsed_),
                "fallback": "pretrained features (dn2)" if self.ft_collapsed_ else None}

    def fake_probability(self, images: Any) -> np.ndarray:
        """The fine-tuning head's P(fake | image) (diagnostic; not the novelty score)."""
        x = self._prepare(images)
        with torch.no_grad():
            p = map_batches(lambda b: F.softmax(self.head_(self.net_.embed(b)), 1)[:, 1], x,
                            batch_size=self.batch_size, device=self.device_)
        return p.numpy()

    def _state(self) -> dict[str, Any]:
        fakes = (self.fakes_.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return {**module_state("net", self.net_), **module_state("head", self.head_),
                **self.index_.state("knn")[0], **self.scaler_.state(), "fakes": fakes}

    def _meta(self) -> dict[str, Any]:
        return {**self.index_.state("knn")[1], "gen_checks": self.gen_checks_,
                "gen_stop_epoch": self.gen_stop_epoch_, "ft_collapsed": bool(self.ft_collapsed_),
                "fid_rule_info": getattr(self, "fid_rule_info_", None)}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.net_ = self._build(None)
        load_module_state("net", self.net_, state)
        self.net_.eval()
        self.head_ = nn.Linear(self.net_.dim, 2).to(self.device_)
        load_module_state("head", self.head_, state)
        self.head_.eval()
        self.index_ = KNNIndex.from_state(state, meta, "knn")
        self.scaler_ = FeatureScaler.from_state(self.feature_norm, state)
        self.train_features_ = None
        self.fakes_ = state["fakes"].float() / 255.0
        self.gen_checks_ = meta.get("gen_checks", [])
        self.gen_stop_epoch_ = meta.get("gen_stop_epoch")
        self.ft_collapsed_ = bool(meta.get("ft_collapsed", False))
        self.fid_rule_info_ = meta.get("fid_rule_info")


def _update(opt: torch.optim.Optimizer, logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    acc = (logits.argmax(1) == y).float().mean()
    return {"ce": loss, "acc": acc}
