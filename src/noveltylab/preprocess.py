"""The input transform that travels with a model: raw images of any size -> the model's input.

A :class:`Transform` (``size``, ``mode``, ``channels``) is chosen at ``fit``
time, stored in the model's ``config.json`` and applied again by ``score`` and
``anomaly_map``, so a saved model accepts image files of any size (mixed sizes
in one folder work). Maps are mapped back to each image's original resolution
by :meth:`Transform.invert_map`.

Modes (``size`` is the side of the square model input):

* ``resize``: both sides scaled to ``size`` (aspect ratio not kept);
* ``centre-crop``: shorter side scaled to ``size``, the centred square kept
  (borders outside it are not seen; their map values are the map's minimum);
* ``pad``: longer side scaled to ``size``, centred on a black square
  (nothing lost, aspect ratio kept).

Channels: ``1`` (grey: RGB averaged), ``3`` (RGB: grey repeated) or ``None``
at fit time = decided from the training images: 3 if any of them is colour,
else 1. Decoding (16-bit scaling, EXIF orientation, RGBA -> RGB) is
:func:`noveltylab.images.read_image`'s job; this module only resizes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .images import ImageError, ImageInput, as_images, match_channels, read_image
from .progress import bar, track

MODES = ("resize", "centre-crop", "pad")
_MODE_ALIASES = {"center-crop": "centre-crop", "crop": "centre-crop", "centre_crop": "centre-crop",
                 "center_crop": "centre-crop"}
log = logging.getLogger("noveltylab.preprocess")
DEFAULT_SIZE = 32          # methods without a size parameter: the 28-32 px scale their papers use
PRETRAINED_SIZE = 224      # pretrained backbones (ImageNet resolution)
# float32 pixels one model batch may hold (16 MiB of input): 224-px RGB -> 27 images, 64-px RGB -> 341
BATCH_PIXEL_BUDGET = 4 * 2 ** 20


@dataclass(frozen=True)
class Transform:
    """Resize rule from raw images to the model input: ``size`` x ``size`` px, ``mode``, ``channels``."""

    size: int
    mode: str = "resize"
    channels: int | None = None

    def __post_init__(self) -> None:
        mode = _MODE_ALIASES.get(self.mode, self.mode)
        object.__setattr__(self, "mode", mode)
        if mode not in MODES:
            raise ValueError(f"resize mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or not 4 <= self.size <= 4096:
            raise ValueError(f"transform size must be an integer between 4 and 4096 px, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 (grey), 3 (RGB) or None (from the training images), "
                             f"got {self.channels!r}")

    # --- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Transform":
        unknown = set(d) - {"size", "mode", "channels"}
        if unknown:
            raise ValueError(f"unknown transform field(s) {sorted(unknown)}")
        return cls(**d)

    # --- forward -------------------------------------------------------------
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` float [0, 1] batch of one size -> ``(N, channels, size, size)``."""
        if self.channels is not None:
            x = match_channels(x, self.channels)
        h, w = x.shape[-2:]
        s = self.size
        if self.mode == "resize":
            return _resize(x, s, s)
        if self.mode == "centre-crop":
            rh, rw = _scaled(h, w, s / min(h, w))
            x = _resize(x, rh, rw)
            top, left = (rh - s) // 2, (rw - s) // 2
            return x[..., top:top + s, left:left + s].contiguous()
        rh, rw = _scaled(h, w, s / max(h, w))
        x = _resize(x, rh, rw)
        top, left = (s - rh) // 2, (s - rw) // 2
        return F.pad(x, (left, s - rw - left, top, s - rh - top))

    # --- inverse for maps -------------------------------------------------------
    def invert_map(self, m: np.ndarray, height: int, width: int) -> np.ndarray:
        """A ``(h, w)`` map over the model input -> ``(height, width)`` over the original image."""
        s = self.size
        t = torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None]
        t = _resize(t, s, s, clamp=False)
        if self.mode == "centre-crop":
            rh, rw = _scaled(height, width, s / min(height, width))
            full = torch.full((1, 1, rh, rw), float(t.min()))
            top, left = (rh - s) // 2, (rw - s) // 2
            full[..., top:top + s, left:left + s] = t
            t = full
        elif self.mode == "pad":
            rh, rw = _scaled(height, width, s / max(height, width))
            top, left = (s - rh) // 2, (s - rw) // 2
            t = t[..., top:top + rh, left:left + rw]
        return _resize(t, height, width, clamp=False)[0, 0].numpy()


def _scaled(h: int, w: int, f: float) -> tuple[int, int]:
    return max(1, int(round(h * f))), max(1, int(round(w * f)))


def _resize(x: torch.Tensor, h: int, w: int, clamp: bool = True) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (h, w):
        return x
    down = h < x.shape[-2] or w < x.shape[-1]
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=down)
    return y.clamp_(0, 1) if clamp else y


def as_transform(t: "Transform | dict[str, Any] | int | None") -> Transform | None:
    """Accept a Transform, a dict (config.json), an int (size, resize mode) or None."""
    if t is None or isinstance(t, Transform):
        return t
    if isinstance(t, dict):
        return Transform.from_dict(t)
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        return Transform(int(t))
    raise TypeError(f"transform must be a Transform, dict, int size or None, got {type(t).__name__}")


def native_size(det: Any) -> int:
    """The input size a detector really works at: its ``input_size`` (pretrained backbones,
    224 px by default) or ``image_size`` parameter, else :data:`DEFAULT_SIZE`."""
    for attr in ("input_size", "image_size"):
        v = getattr(det, attr, None)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0:
            return int(v)
    return DEFAULT_SIZE


def default_transform(det: Any, mode: str = "resize", channels: int | None = None) -> Transform:
    """The documented default for a detector: its :func:`native_size`, ``resize``, channels from the data."""
    return Transform(native_size(det), mode, channels)


# --- loading raw images ---------------------------------------------------------------


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder as :func:`noveltylab.ingest.scan_folder` keeps them (mask files and
    hidden folders skipped; what was skipped is logged)."""
    from .ingest import scan_folder

    scan = scan_folder(folder)
    if not scan.files:
        raise ImageError(f"no image files found in folder {folder}")
    if any(scan.skipped.get(k) for k in ("mask files", "hidden files/folders")):
        log.info(scan.summary())
    return scan.files


def _items(images: ImageInput) -> list[Any] | None:
    """The images as a list of single items (paths or arrays) when they may differ in size, else None."""
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        return folder_files(p) if p.is_dir() else [p]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageError("empty input (0 images)")
        return list(images)
    return None


def _one(item: Any) -> torch.Tensor:
    """One image (a file, or an ``(H, W)`` / ``(H, W, C)`` / ``(C, H, W)`` array) -> ``(1, C, H, W)``."""
    if isinstance(item, (str, os.PathLike)):
        arr = read_image(item)  # read-only from PIL: copied so torch does not warn about it
        return as_images(arr if arr.flags.writeable else arr.copy(), name=str(item), layout="HWC")
    arr = item if isinstance(item, (np.ndarray, torch.Tensor)) else np.asarray(item)
    if arr.ndim == 2:
        return as_images(arr, name="image", layout="HW")
    if arr.ndim == 3:
        chw = arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4)
        return as_images(arr, name="image", layout="CHW" if chw else "HWC")
    return as_images(arr, name="image")


def mixed_sizes(images: ImageInput) -> bool:
    """Whether ``images`` are several items (files, a folder, a list of arrays) of different sizes.
    Files are only opened for their header, not decoded."""
    items = _items(images)
    if items is None or len(items) < 2:
        return False
    seen = set()
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            from PIL import Image

            try:
                with Image.open(item) as im:
                    seen.add(tuple(im.size))
            except OSError:
                return False  # let the decoder raise its clear error
        else:
            seen.add(tuple(np.shape(item))[:2] if np.ndim(item) == 3 and np.shape(item)[-1] in (1, 3, 4)
                     else tuple(np.shape(item))[-2:])
        if len(seen) > 1:
            return True
    return False


def load_transformed(images: ImageInput, transform: Transform | None, *, desc: str = "loading",
                     progress: bool | None = None
                     ) -> tuple[torch.Tensor, list[tuple[int, int]], Transform | None]:
    """Decode ``images`` one at a time and apply ``transform``.

    Returns the model-input batch, each image's original ``(height, width)`` and the transform
    with ``channels`` fixed (``None`` -> 3 if any image is colour, else 1). Files are decoded and
    resized one by one, so a folder of large photographs never sits in memory at full resolution.
    Without a transform the images must share one size (as before).
    """
    items = _items(images)
    if items is None or transform is None:
        x = as_images(items if isinstance(images, (str, os.PathLike)) else images)
        sizes = [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0]
        if transform is not None:
            if transform.channels is None:
                transform = Transform(transform.size, transform.mode, int(x.shape[1]))
            x = transform.apply(x)
        return x, sizes, transform
    outs: list[torch.Tensor] = []
    sizes: list[tuple[int, int]] = []
    for item in track(items, desc, unit="img", progress=progress if len(items) > 1 else False):
        t = _one(item)
        sizes += [(int(t.shape[-2]), int(t.shape[-1]))] * t.shape[0]
        outs.append(transform.apply(t))
    if transform.channels is None:
        c = 3 if any(o.shape[1] == 3 for o in outs) else 1
        transform = Transform(transform.size, transform.mode, c)
        outs = [match_channels(o, c) for o in outs]
    return torch.cat(outs), sizes, transform


def batch_size_for(shape: Sequence[int], requested: int, budget: int = BATCH_PIXEL_BUDGET) -> int:
    """``requested`` capped so that one batch of ``(C, H, W)`` images holds at most ``budget``
    float pixels: a 224-px RGB run uses ~110-image batches instead of a profile's 32-px 512."""
    per_image = max(1, int(np.prod([int(s) for s in shape])))
    return max(1, min(int(requested), budget // per_image))


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices covering ``range(n)`` in pieces of at most ``size``."""
    return [slice(i, min(n, i + size)) for i in range(0, n, max(1, size))]


SCORE_CHUNK_PIXELS = 16 * BATCH_PIXEL_BUDGET  # input pixels handed to a method's _score at once
# and at most this many images: methods resize/pad tiny inputs (8x8 -> 32x32 RGB), so a pixel budget alone
# would hand 200,000 8x8 images to one _score call and memory would grow with N (issue 17)
SCORE_CHUNK_IMAGES = 2048


def score_step(shape: Sequence[int], n: int) -> int:
    """Images per ``_score`` / ``_anomaly_map`` call: bounded by input pixels and by count."""
    return min(SCORE_CHUNK_IMAGES, batch_size_for(shape, n, SCORE_CHUNK_PIXELS))


def score_in_chunks(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, desc: str = "scoring") -> np.ndarray:
    """``fn`` (a method's ``_score``) over ``x`` in image-size-bounded chunks, with progress.
    Scores do not depend on batch composition (the Detector contract), so chunking is exact."""
    step = score_step(x.shape[1:], x.shape[0])
    parts = chunks(x.shape[0], step)
    b = bar(x.shape[0], desc, unit="img", progress=None if len(parts) > 1 else False)
    out = []
    try:
        for sl in parts:
            out.append(np.asarray(fn(x[sl]), dtype=np.float64).reshape(-1))
            b.update(sl.stop - sl.start)
    finally:
        b.close()
    return np.concatenate(out)


def maps_in_chunks(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, sizes: Sequence[tuple[int, int]],
                   transform: Transform | None, desc: str = "maps") -> np.ndarray | list[np.ndarray]:
    """``fn`` (a method's ``_anomaly_map``) in chunks; maps back at each image's original size
    (an array when all sizes agree, else a list)."""
    step = score_step(x.shape[1:], x.shape[0])
    parts = chunks(x.shape[0], step)
    b = bar(x.shape[0], desc, unit="img", progress=None if len(parts) > 1 else False)
    maps: list[np.ndarray] = []
    try:
        for sl in parts:
            m = np.asarray(fn(x[sl]), dtype=np.float32)
            for j, i in enumerate(range(sl.start, sl.stop)):
                h, w = sizes[i]
                if transform is not None:
                    maps.append(transform.invert_map(m[j], h, w))
                elif m[j].shape != (h, w):
                    maps.append(_resize(torch.as_tensor(m[j])[None, None], h, w, clamp=False)[0, 0].numpy())
                else:
                    maps.append(m[j])
            b.update(sl.stop - sl.start)
    finally:
        b.close()
    if len({mm.shape for mm in maps}) == 1:
        return np.stack(maps).astype(np.float32)
    return [mm.astype(np.float32) for mm in maps]
