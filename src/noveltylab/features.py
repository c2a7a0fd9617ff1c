"""Mid-level feature maps of pretrained backbones, and the shared on-disk feature cache.

Patch-feature methods (PatchCore, PaDiM) read feature *maps* from a few
intermediate blocks of an ImageNet backbone instead of one pooled vector:

* ``"mobilenet_v2"`` (:mod:`noveltylab.nets.mobilenet`, the shared TF-converted
  weights): ``layers`` are indices into its 19 ``features`` blocks. Block 3 ends
  the stride-4 stage (24 channels), block 6 the stride-8 stage (32 ch.), block
  13 the stride-16 stage (96 ch.), block 16 the stride-32 stage (160 ch.): the
  same stage ends timm's ``features_only`` MobileNetV2 returns, and the
  counterparts of a ResNet's ``layer1``/``layer2``/``layer3``/``layer4``.
* ``"resnet18"``, ``"resnet50"``, ``"wide_resnet50_2"`` (:mod:`noveltylab.nets.resnet`,
  a torchvision-named weights file you give): ``layers`` are ``"layer1"`` ..
  ``"layer4"``; inputs are normalised with the ImageNet mean / std.

Only the blocks up to the deepest requested layer are kept, so a saved model
holds just that part of the backbone.

The feature cache
-----------------
Benchmarks score the same test set once per normal class; the cache lets each
image set be embedded once per setting. It is **opt-in**: it is used only
inside ``with feature_cache(DIR):`` or when ``$NOVELTYLAB_FEATURE_CACHE`` names
a folder (the bench runner and the command line set it; detectors never
choose a folder themselves). An entry is one batch of images and one layer,
keyed by backbone, a SHA-256 of the (truncated) backbone weights, input size,
layer, and a SHA-256 of the batch's pixels; values are the exact float32 maps,
so cached and uncached runs give identical scores. This module is the only
place the patch-feature detectors touch files. :func:`cached_rows` serves the
pooled features of DN2 (and FITYMI's pretrained fallback) the same way, one entry per image.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .images import rgb_square

ENV_FEATURE_CACHE = "NOVELTYLAB_FEATURE_CACHE"
MAP_BACKBONES = ("mobilenet_v2", "resnet18", "resnet50", "wide_resnet50_2")
_RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_VERSION = 1

__all__ = ["FeatureMaps", "MAP_BACKBONES", "default_layers", "check_layers", "feature_cache", "active_cache_dir",
           "extract_maps", "iter_maps", "cached_rows", "module_sha256", "upsample_blur", "ENV_FEATURE_CACHE"]


def default_layers(backbone: str, method: str) -> list:
    """The two (PatchCore) or three (PaDiM) mid-level layers each paper uses, per backbone."""
    if backbone == "mobilenet_v2":
        return [6, 13] if method == "patchcore" else [3, 6, 13]
    return ["layer2", "layer3"] if method == "patchcore" else ["layer1", "layer2", "layer3"]


def check_layers(backbone: str, layers: Sequence) -> list:
    """Validate ``layers`` for ``backbone``; returns them as a list (clear error otherwise)."""
    if backbone not in MAP_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {MAP_BACKBONES}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one backbone block")
    if backbone == "mobilenet_v2":
        bad = [v for v in layers if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 18]
        if bad:
            raise ValueError(f"mobilenet_v2 layers are block indices 0..18 (e.g. [6, 13]), got {bad}")
        layers = [int(v) for v in layers]
    else:
        bad = [v for v in layers if v not in _RESNET_LAYERS]
        if bad:
            raise ValueError(f"{backbone} layers are names from {_RESNET_LAYERS}, got {bad}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must not repeat, got {layers}")
    return layers


class FeatureMaps(nn.Module):
    """Frozen backbone returning the feature maps of ``layers`` (NCHW, in the order given).

    ``forward(x01)`` takes NCHW floats in ``[0, 1]`` with 1 or 3 channels, any
    size; images are made RGB and bilinearly resized to ``input_size``.
    ``weights_path=None`` gives a randomly initialised backbone (tests only).
    """

    def __init__(self, backbone: str, weights_path: str | None, input_size: int, layers: Sequence) -> None:
        super().__init__()
        self.layers = check_layers(backbone, layers)
        if int(input_size) < 16:
            raise ValueError(f"input_size must be >= 16 for feature maps, got {input_size}")
        self.backbone = backbone
        self.input_size = int(input_size)
        if backbone == "mobilenet_v2":
            from .nets.mobilenet import MobileNetV2, load_mobilenet_v2

            net = (load_mobilenet_v2(weights_path, input_size=self.input_size) if weights_path
                   else MobileNetV2(num_classes=1000, input_size=self.input_size))
            self.blocks = nn.ModuleList(list(net.features)[:max(self.layers) + 1])
            self._names = list(range(len(self.blocks)))
        else:
            from .nets.resnet import ARCHS, load_resnet

            net = load_resnet(backbone, weights_path) if weights_path else ARCHS[backbone]()
            last = max(_RESNET_LAYERS.index(v) for v in self.layers)
            stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
            self.blocks = nn.ModuleList([stem] + [getattr(net, n) for n in _RESNET_LAYERS[:last + 1]])
            self._names = ["stem", *_RESNET_LAYERS[:last + 1]]
            self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()
        fuse_conv_bn(self)
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(memory_format=torch.channels_last)  # ~25 % faster depthwise convs on CPU
        self._weights_sha: str | None = None

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        x = rgb_square(x01, self.input_size).contiguous(memory_format=torch.channels_last)
        if self.backbone == "mobilenet_v2":
            return x * 2.0 - 1.0  # the shared TF weights expect [-1, 1]
        return (x - self.mean) / self.std

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        h = self.preprocess(x01)
        out: dict = {}
        for name, block in zip(self._names, self.blocks):
            h = block(h)
            if name in self.layers:
                out[name] = h
        return [out[v].contiguous() for v in self.layers]

    def weights_sha256(self) -> str:
        """SHA-256 over the kept backbone tensors (names, shapes, values): the cache's weights key."""
        if self._weights_sha is None:
            self._weights_sha = module_sha256(self)
        return self._weights_sha

    def setting(self, layer) -> dict:
        """What determines one layer's maps (the cache key apart from the images)."""
        return {"v": CACHE_VERSION, "backbone": self.backbone, "weights_sha256": self.weights_sha256(),
                "input_size": self.input_size, "layer": layer}


def module_sha256(module: nn.Module, skip: frozenset[int] | set[int] = frozenset()) -> str:
    """SHA-256 over a module's state (names, shapes, values): the cache's weights key. ``skip``: ids of
    tensors left out (e.g. a fine-tuned part that does not affect the cached output)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict(keep_vars=True).items()):
        if id(v) in skip:
            continue
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fuse_conv_bn(module: nn.Module) -> None:
    """Fold every eval-mode BatchNorm into the convolution before it (in place): the frozen
    backbone then skips the BN pass. Pairs: consecutive entries of a Sequential, and
    ``convK`` / ``bnK`` attributes (ResNet blocks, ``conv1`` / ``bn1`` stems)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(module.modules()):
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = nn.Identity()
        for a in names:
            if a.startswith("conv") and "bn" + a[4:] in parent._modules:
                conv, bn = parent._modules[a], parent._modules["bn" + a[4:]]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                    parent._modules["bn" + a[4:]] = nn.Identity()


# --------------------------------------------------------------------------- cache
_ACTIVE: list[Path | None] = []


@contextlib.contextmanager
def feature_cache(path: str | os.PathLike | None) -> Iterator[Path | None]:
    """Within the block, feature maps are read from / written to folder ``path`` (None: no cache)."""
    p = None if path is None else Path(path).expanduser()
    _ACTIVE.append(p)
    try:
        yield p
    finally:
        _ACTIVE.pop()


def active_cache_dir() -> Path | None:
    """The folder set by the innermost :func:`feature_cache`, else ``$NOVELTYLAB_FEATURE_CACHE``, else None."""
    if _ACTIVE:
        return _ACTIVE[-1]
    env = os.environ.get(ENV_FEATURE_CACHE)
    return Path(env).expanduser() if env else None


def _images_sha256(x: torch.Tensor) -> str:
    a = x.detach().cpu().float().contiguous().numpy()
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _entry(root: Path, setting: dict, images_sha: str) -> Path:
    key = hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:24]
    return root / "features" / key / f"{images_sha[:40]}.npy"


def _read_entry(path: Path, n: int, ndim: int | None = 4) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable feature-cache file {path}: {exc}", stacklevel=4)
        return None
    if a.dtype != np.float32 or (ndim is not None and a.ndim != ndim) or a.ndim < 1 or a.shape[0] != n:
        warnings.warn(f"ignoring feature-cache file {path} with unexpected shape {a.shape}", stacklevel=4)
        return None
    return a


def _write_entry(path: Path, setting: dict, a: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        info = path.parent / "setting.json"
        if not info.exists():
            info.write_text(json.dumps(setting, indent=1))
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, a, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not write the feature cache {path}: {exc}", stacklevel=4)


def extract_maps(extractor: FeatureMaps, x: torch.Tensor, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Feature maps of one batch ``x`` (float NCHW in [0, 1]) on ``device``, through the active cache."""
    root = active_cache_dir()
    if root is None:
        with torch.no_grad():
            return extractor(x.to(device))
    sha = _images_sha256(x)
    paths = [_entry(root, extractor.setting(layer), sha) for layer in extractor.layers]
    hits = [_read_entry(p, x.shape[0]) for p in paths]
    if all(h is not None for h in hits):
        return [torch.from_numpy(h).to(device) for h in hits]
    with torch.no_grad():
        maps = extractor(x.to(device))
    for layer, path, hit, m in zip(extractor.layers, paths, hits, maps):
        if hit is None:
            _write_entry(path, extractor.setting(layer), m.detach().cpu().float().contiguous().numpy())
    return maps


def cached_rows(setting: dict, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``compute(x)`` (float32, one row per image) through the active cache, **one entry per image**
    (keyed by ``setting`` and the image's pixel SHA-256), so any subset or order of cached images is
    served from disk (e.g. the near-ND test set, a subset of the one-class one); only the missing
    images are computed, as one batch. ``setting`` names everything but the pixels that determines
    the output (``v`` = :data:`CACHE_VERSION`, backbone, weights SHA-256, input size, output name).
    Pooled-feature detectors (DN2) use it as the feature-map detectors use :func:`extract_maps`."""
    root = active_cache_dir()
    if root is None:
        with torch.no_grad():
            return compute(x)
    paths = [_entry(root, setting, _images_sha256(x[i:i + 1])) for i in range(x.shape[0])]
    rows: list[np.ndarray | None] = [_read_entry(p, 1, ndim=None) for p in paths]
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        with torch.no_grad():
            out = compute(x if len(missing) == x.shape[0] else x[missing])
        out_np = out.detach().cpu().float().contiguous().numpy()
        for j, i in enumerate(missing):
            rows[i] = out_np[j:j + 1]
            _write_entry(paths[i], setting, rows[i])
        if len(missing) == x.shape[0]:
            return out
    return torch.from_numpy(np.concatenate(rows)).to(x.device)


def iter_maps(extractor: FeatureMaps, x: torch.Tensor, batch_size: int,
              device: torch.device | str = "cpu") -> Iterator[tuple[int, list[torch.Tensor]]]:
    """``(start, maps)`` for consecutive batches of ``x``: bounded memory for large image sets."""
    for i in range(0, x.shape[0], batch_size):
        yield i, extract_maps(extractor, x[i:i + batch_size], device)


# --------------------------------------------------------------------------- map post-processing
def gaussian_kernel_size(sigma: float) -> int:
    """Odd kernel width covering +-4 sigma (the convention of the PatchCore / PaDiM reference code)."""
    return 2 * int(4.0 * sigma + 0.5) + 1


def upsample_blur(score_maps: torch.Tensor, input_size: int, sigma: float, out_hw: tuple[int, int]) -> torch.Tensor:
    """Patch-level maps ``(N, h, w)`` -> bilinear to ``input_size``, Gaussian blur (``sigma`` in pixels
    of the ``input_size`` image, 0 = none) -> bilinear to the original ``out_hw``; returns ``(N, H, W)``."""
    m = F.interpolate(score_maps[:, None].float(), size=(input_size, input_size), mode="bilinear",
                      align_corners=False)
    if sigma > 0:
        from kornia.filters import gaussian_blur2d

        k = gaussian_kernel_size(sigma)
        m = gaussian_blur2d(m, (k, k), (float(sigma), float(sigma)), border_type="reflect")
    if tuple(out_hw) != (input_size, input_size):
        m = F.interpolate(m, size=tuple(out_hw), mode="bilinear", align_corners=False)
    return m[:, 0]
