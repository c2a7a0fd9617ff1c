"""One conversion from whatever the user holds to the float tensor every method uses.

Every detector calls :func:`as_images` on its input, so arrays, tensors, image
files, folders and :class:`~noveltylab.data.base.ImageSet` objects are all
accepted in the same way and every bad input fails here, with a message that
names the problem, before any training starts.

Output convention: ``torch.float32`` tensor, shape ``(N, C, H, W)``, values in
``[0, 1]``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

ImageInput = Any  # ndarray | Tensor | str | Path | Sequence[str | Path] | ImageSet


class ImageError(ValueError):
    """Raised for input that cannot be interpreted as a batch of images."""


def read_image(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """Read one image file as uint8 ``(H, W, C)``; raise :class:`ImageError` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = {1: "L", 3: "RGB"}.get(channels or 0)
            if mode is None:
                mode = "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"cannot read image file {path}: {exc}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursively), sorted for repeatability."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return files


def _stack_files(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    arrays = [read_image(p) for p in paths]
    if any(a.shape[2] != arrays[0].shape[2] for a in arrays):
        arrays = [read_image(p, channels=3) for p in paths]
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise ImageError(
            f"images have mixed sizes {sorted(shapes)[:4]}; resize them to one size first "
            "(e.g. noveltylab.images.resize)")
    return np.stack(arrays)


def _to_nchw(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(arr) if isinstance(arr, np.ndarray) else arr
    if t.ndim == 2:
        raise ImageError(
            f"got a 2-D array of shape {tuple(t.shape)}; pass a batch: (N, H, W), (N, C, H, W) or (N, H, W, C)")
    if t.ndim == 3:
        t = t[:, None]  # (N, H, W) grey batch
    elif t.ndim == 4:
        if t.shape[1] in (1, 3):
            pass
        elif t.shape[3] in (1, 3):
            t = t.permute(0, 3, 1, 2)
        else:
            raise ImageError(
                f"cannot find the channel axis in shape {tuple(t.shape)}: expected 1 or 3 channels "
                "at axis 1 (NCHW) or axis 3 (NHWC)")
    else:
        raise ImageError(f"expected a 3-D or 4-D image batch, got {t.ndim}-D shape {tuple(t.shape)}")
    return t


def as_images(x: ImageInput, *, name: str = "images") -> torch.Tensor:
    """Convert ``x`` to a float32 ``(N, C, H, W)`` tensor in ``[0, 1]``.

    Accepted: uint8 arrays/tensors (0..255), float arrays/tensors already in
    ``[0, 1]``, layouts ``(N, H, W)``, ``(N, C, H, W)``, ``(N, H, W, C)`` with 1 or
    3 channels; a path to an image file or a folder of images; a list of paths;
    an ``ImageSet``. Raises :class:`ImageError` for empty input, NaN/inf, float
    values outside ``[0, 1]``, mixed sizes, unreadable files and unknown types.
    """
    from .data.base import ImageSet

    if isinstance(x, ImageSet):
        x = x.images
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if p.is_dir():
            files = list_image_files(p)
            if not files:
                raise ImageError(f"{name}: no image files found in folder {p}")
            x = _stack_files(files)
        else:
            x = _stack_files([p])
    elif isinstance(x, (list, tuple)) and x and all(isinstance(v, (str, os.PathLike)) for v in x):
        x = _stack_files(list(x))
    elif isinstance(x, (list, tuple)):
        if not x:
            raise ImageError(f"{name}: empty input (0 images)")
        try:
            x = np.stack([np.asarray(v) for v in x])
        except ValueError:
            raise ImageError(f"{name}: images have mixed shapes; resize them to one size first") from None
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ImageError(f"{name}: unsupported input type {type(x).__name__}; pass an array, tensor, "
                         "image path, folder, list of paths or ImageSet")
    if isinstance(x, np.ndarray) and x.dtype == object:
        raise ImageError(f"{name}: object array (mixed shapes?) cannot be used as an image batch")
    t = _to_nchw(x)
    if t.shape[0] == 0:
        raise ImageError(f"{name}: empty input (0 images)")
    if t.shape[2] == 0 or t.shape[3] == 0:
        raise ImageError(f"{name}: images have zero height or width: {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0).contiguous()
    if t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in (torch.int16, torch.int32, torch.int64)):
        raise ImageError(f"{name}: unsupported dtype {t.dtype}")
    if not t.is_floating_point():
        raise ImageError(f"{name}: integer images must be uint8 (0..255), got {t.dtype}")
    t = t.float()
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise ImageError(f"{name}: {bad} image(s) contain NaN or infinite pixel values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ImageError(
            f"{name}: float pixel values must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]; "
            "divide by 255 or pass uint8 arrays")
    return t.clamp_(0.0, 1.0).contiguous()


def to_uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`as_images` for storage: ``(N, C, H, W)`` float -> uint8 ``(N, H, W, C)``."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad H and W (centred) up to the next multiple, e.g. 28x28 -> 32x32 for ``multiple=8``."""
    h, w = x.shape[-2:]
    H = -(-h // multiple) * multiple
    W = -(-w // multiple) * multiple
    if (H, W) == (h, w):
        return x
    top, left = (H - h) // 2, (W - w) // 2
    return F.pad(x, (left, W - w - left, top, H - h - top))


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of an ``(N, C, H, W)`` batch."""
    if isinstance(size, int):
        size = (size, size)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat grey to RGB (or average RGB to grey) when a model needs a fixed channel count."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return x.mean(1, keepdim=True)
    raise ImageError(f"cannot convert {c}-channel images to {channels} channels")


def rgb_square(x01: torch.Tensor, size: int) -> torch.Tensor:
    """Backbone input: NCHW [0, 1] with 1 or 3 channels -> RGB ``size`` x ``size`` (bilinear, no antialias)."""
    if x01.ndim != 4 or x01.shape[1] not in (1, 3):
        raise ValueError(f"expected NCHW images with 1 or 3 channels, got shape {tuple(x01.shape)}")
    x = x01.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return x


def iter_batches(x: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """Yield consecutive slices of ``x`` of at most ``batch_size`` items."""
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size]
