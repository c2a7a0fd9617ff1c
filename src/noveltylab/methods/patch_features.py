"""Shared base of the patch-feature detectors (PatchCore, PaDiM): a frozen backbone's mid-level
feature maps, read through :mod:`noveltylab.features` (and its opt-in cache), batch by batch."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..detector import Detector, load_module_state, module_state
from ..features import FeatureMaps, check_layers, default_layers, iter_maps, upsample_blur
from ..nets.weights import resolve_weights


class PatchFeatureDetector(Detector):
    """Base class: parameters ``backbone``, ``weights``, ``input_size``, ``layers``, ``blur_sigma``,
    ``batch_size``; the fitted backbone part lives in ``self.net_`` (saved with the model)."""

    localises = True
    method_key = ""  # "patchcore" / "padim": picks the default layers

    def __init__(self, backbone: str = "mobilenet_v2", weights: str | None = "auto", input_size: int = 224,
                 layers: Sequence | None = None, blur_sigma: float = 4.0, batch_size: int = 32,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.layers = None if layers is None else list(layers)
        self.blur_sigma = blur_sigma
        self.batch_size = batch_size

    # -- parameters ------------------------------------------------------------------
    def _layers(self) -> list:
        return check_layers(self.backbone, default_layers(self.backbone, self.method_key)
                            if self.layers is None else self.layers)

    def _check_common(self) -> None:
        self._layers()
        if int(self.input_size) < 16:
            raise ValueError(f"{self.name}: input_size must be >= 16, got {self.input_size}")
        if int(self.batch_size) < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {self.batch_size}")
        if float(self.blur_sigma) < 0:
            raise ValueError(f"{self.name}: blur_sigma must be >= 0, got {self.blur_sigma}")

    def _check_input(self, x: torch.Tensor) -> None:
        self._check_common()
        self._check_method()
        self._weights_path = resolve_weights(self.backbone, self.weights)

    def _check_method(self) -> None:
        """Method-specific parameter checks (raise ValueError before any work)."""

    # -- backbone --------------------------------------------------------------------------
    def _build(self, path: str | None) -> FeatureMaps:
        return FeatureMaps(self.backbone, path, int(self.input_size), self._layers()).to(self.device_).eval()

    def _start_fit(self) -> None:
        self.net_ = self._build(self._weights_path)

    def _maps(self, x: torch.Tensor) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """``(start, per-layer maps)`` for batches of ``x`` (through the feature cache when one is active)."""
        return iter_maps(self.net_, x, int(self.batch_size), self.device_)

    def _to_image(self, score_maps: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """Patch-grid scores -> input resolution, Gaussian-blurred (``blur_sigma`` px at ``input_size``)."""
        return upsample_blur(score_maps, int(self.input_size), float(self.blur_sigma), out_hw)

    # -- persistence -----------------------------------------------------------------------
    def _backbone_state(self) -> dict[str, Any]:
        return module_state("net", self.net_)

    def _restore_backbone(self, state: dict[str, torch.Tensor]) -> None:
        self.net_ = self._build(None)
        load_module_state("net", self.net_, state)
        self.net_.eval()


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
