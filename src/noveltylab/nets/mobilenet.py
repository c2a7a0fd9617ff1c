"""MobileNetV2 (width 1.0) written out in plain PyTorch, with torchvision's parameter names.

No torchvision here, so the network is spelled out; its ``state_dict`` keys and
shapes are exactly those of ``torchvision.models.mobilenet_v2(num_classes=...)``,
so a torchvision checkpoint (``.safetensors`` or a plain tensor dict) loads as is.

The shared ImageNet weights (``/work/shared/weights/mobilenet_v2_imagenet``)
come from a TensorFlow model, so two things differ from torchvision's recipe:

* every conv uses TF "SAME" padding (``tf_padding=True``): stride-1 convs are
  padded symmetrically as usual; the five stride-2 3x3 convs pad
  ``(total // 2)`` before and the rest after (0 top/left and 1 bottom/right for
  even sizes);
* input pixels are scaled to ``[-1, 1]`` (``x / 127.5 - 1``), not ImageNet
  mean/std.

:meth:`MobileNetV2.embed` applies both: it takes NCHW floats in ``[0, 1]`` of
any size with 1 or 3 channels, repeats grey to RGB, resizes bilinearly to
``input_size`` (224 by default), scales to ``[-1, 1]`` and returns the globally
average-pooled 1280-d features.

BatchNorm: the shared weights have BN folded into the convs (identity BN +
bias).  :meth:`MobileNetV2.train` keeps every BN layer in eval mode when
``freeze_bn`` is true (the default), so fine-tuning never updates running
statistics.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..images import rgb_square

__all__ = ["MobileNetV2", "load_mobilenet_v2", "load_state_file", "load_strict", "TFSamePad"]

# (expand ratio t, channels c, repeats n, first stride s) - torchvision's table
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class TFSamePad(nn.Module):
    """TensorFlow "SAME" padding for a square kernel ``k`` and stride ``s`` (no-op when disabled)."""

    def __init__(self, kernel_size: int, stride: int, enabled: bool = True):
        super().__init__()
        self.k, self.s, self.enabled = kernel_size, stride, enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        h, w = x.shape[-2:]
        ph = max((-(-h // self.s) - 1) * self.s + self.k - h, 0)
        pw = max((-(-w // self.s) - 1) * self.s + self.k - w, 0)
        if ph == 0 and pw == 0:
            return x
        return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class ConvBNReLU(nn.Sequential):
    """conv -> BN -> ReLU6, indexed 0/1/2 like torchvision's ``Conv2dNormActivation``.

    With ``tf_padding`` and stride > 1 the conv gets ``padding=0`` and the
    asymmetric padding is applied by a hook (kept out of the Sequential so the
    parameter names stay torchvision's).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 tf_padding: bool = True, activation: bool = True):
        tf = tf_padding and stride > 1
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, 0 if tf else (kernel_size - 1) // 2,
                            groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if activation:
            layers.append(nn.ReLU6(inplace=False))
        super().__init__(*layers)
        self.pad = TFSamePad(kernel_size, stride, enabled=tf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return super().forward(self.pad(x))

    # nn.Sequential iterates children, and ``pad`` is a child; keep it out of indexing
    def __iter__(self):
        return iter([m for n, m in self._modules.items() if n != "pad"])

    def __len__(self) -> int:
        return len([n for n in self._modules if n != "pad"])


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int, tf_padding: bool = True):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(cin, hidden, 1, tf_padding=tf_padding))
        layers += [
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden, tf_padding=tf_padding),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 with torchvision naming (``features.0`` .. ``features.18``, ``classifier.1``).

    Args:
        num_classes: classifier outputs (1001 for the shared TF weights, whose class 0 is background).
        tf_padding: TF "SAME" padding for the stride-2 convs (needed for the shared weights).
        input_size: side length :meth:`embed` resizes to.
        freeze_bn: keep BatchNorm layers in eval mode even in ``train()``.
        dropout: classifier dropout (torchvision: 0.2).
    """

    feature_dim = 1280

    def __init__(self, num_classes: int = 1001, tf_padding: bool = True, input_size: int = 224,
                 freeze_bn: bool = True, dropout: float = 0.2):
        super().__init__()
        if input_size < 8:
            raise ValueError(f"input_size must be >= 8, got {input_size}")
        self.tf_padding = tf_padding
        self.input_size = int(input_size)
        self.freeze_bn = freeze_bn
        cin = 32
        feats: list[nn.Module] = [ConvBNReLU(3, cin, 3, 2, tf_padding=tf_padding)]
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t, tf_padding=tf_padding))
                cin = c
        feats.append(ConvBNReLU(cin, self.feature_dim, 1, tf_padding=tf_padding))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # -- modes -----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "MobileNetV2":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    @property
    def blocks(self) -> list[nn.Module]:
        """The 19 entries of ``features`` in order (stem, 17 inverted residuals, last 1x1 conv)."""
        return list(self.features)

    # -- forward -------------------------------------------------------------------------
    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """NCHW in [0, 1], 1 or 3 channels, any size -> RGB ``input_size`` square in [-1, 1]."""
        x = rgb_square(x01, self.input_size)
        return x * 2.0 - 1.0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Already-preprocessed input ([-1, 1], RGB) -> pooled (N, 1280) features."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Already-preprocessed input -> logits (torchvision semantics)."""
        return self.classifier(self.forward_features(x))

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        """NCHW floats in [0, 1] (any size, 1 or 3 channels) -> (N, 1280) pooled features."""
        return self.forward_features(self.preprocess(x01))

    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        """NCHW floats in [0, 1] -> classifier logits."""
        return self.classifier(self.embed(x01))


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``.safetensors`` or a torch file (``weights_only``; never pickle objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"weights file {path} is not a readable .safetensors file: {exc}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, EOFError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"weights file {path} is not a tensor dict that loads without unpickling objects "
                         f"(text, a pickle of Python objects, or corrupt?): {first}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a tensor dict")
    return dict(state)


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike, arch: str) -> None:
    """Load ``state`` into ``model`` requiring the same keys and shapes; errors list what differs."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: state dict does not match {arch}: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {arch} at {bad[:5]}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def load_mobilenet_v2(path: str | os.PathLike, tf_padding: bool = True, input_size: int = 224,
                      freeze_bn: bool = True) -> MobileNetV2:
    """Build :class:`MobileNetV2` from a torchvision-named weights file (eval mode, BN frozen).

    ``num_classes`` is read from ``classifier.1.weight`` (1001 for the shared TF weights).
    Missing or unexpected keys raise a ``ValueError`` that lists them.
    """
    state = load_state_file(path)
    if "classifier.1.weight" not in state:
        raise ValueError(f"{path}: no 'classifier.1.weight'; not a torchvision MobileNetV2 state dict")
    num_classes = int(state["classifier.1.weight"].shape[0])
    model = MobileNetV2(num_classes=num_classes, tf_padding=tf_padding, input_size=input_size,
                        freeze_bn=freeze_bn)
    load_strict(model, state, path, "MobileNetV2")
    return model.eval()
