"""One conversion from whatever the user holds to the float tensor every method uses.

Every detector calls :func:`as_images` (or :func:`iter_image_batches` when
scoring) on its input, so arrays, tensors, image files, folders and
:class:`~noveltylab.data.base.ImageSet` objects are all accepted in the same
way and every bad input fails here, with an :class:`ImageError` that names the
problem, before any training starts. The folder and archive loaders of
:mod:`noveltylab.data` decode files with the same :func:`decode_image` and skip
the same hidden files (:func:`is_hidden`).

Output convention: ``torch.float32`` tensor, shape ``(N, C, H, W)``, values in
``[0, 1]``, in new memory: the caller's array is never written to.

Layout rule (``layout="auto"``), see also README "Inputs and errors":

* 4-D: ``(N, C, H, W)`` when axis 1 has 1 or 3 entries and axis 3 does not;
  ``(N, H, W, C)`` when axis 3 has 1 or 3 entries and axis 1 does not; refused
  when both do (e.g. ``(10, 3, 3, 3)``, ``(10, 3, 20, 1)``) or neither does.
* 3-D: ``(N, H, W)``, a batch of grey images; refused when the last axis has
  3 or 4 entries (looks like one ``(H, W, C)`` colour image) or the first axis
  has 3 (looks like one ``(C, H, W)`` colour image).
* 2-D: refused (one grey image needs ``layout="HW"``).

``layout=`` one of :data:`LAYOUTS` states the axes explicitly; single-image
layouts (``"CHW"``, ``"HWC"``, ``"HW"``) get a batch axis of 1.

Dtypes: ``uint8`` (0..255) and ``uint16`` (0..65535) are scaled by their full
range; floats must already lie in ``[0, 1]``; anything else is refused.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LAYOUTS = ("auto", "NCHW", "NHWC", "NHW", "CHW", "HWC", "HW")
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024  # one image file larger than this is refused before it is read

ImageInput = Any  # ndarray | Tensor | str | Path | Sequence[str | Path] | ImageSet


class ImageError(ValueError):
    """Raised for input that cannot be interpreted as a batch of images."""


# --------------------------------------------------------------------------- files

def is_hidden(parts: Sequence[str]) -> bool:
    """Whether a path (its parts below the folder searched) is hidden: a part starting with ``.``
    or a ``__MACOSX`` folder. Every folder and archive reader skips these."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _to_8bit(im: Any, source: str) -> Any:
    """A Pillow image in a mode every reader treats the same: ``"L"`` (grey) or ``"RGB"``.

    16-bit and 32-bit integer grey (``I;16``, ``I``) are scaled by the 16-bit
    range (value / 257), float grey (``F``) must lie in [0, 1]; grey+alpha and
    1-bit become grey (alpha dropped); everything else becomes RGB (alpha dropped).
    """
    from PIL import Image

    mode = im.mode
    if mode.startswith("I"):
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(f"{source}: integer pixel values {a.min()}..{a.max()} are outside the 16-bit "
                             "range 0..65535")
        return Image.fromarray(np.round(a / 257.0).astype(np.uint8), mode="L")
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ImageError(f"{source}: floating-point image values must be finite and lie in [0, 1]")
        return Image.fromarray(np.round(a * 255.0).astype(np.uint8), mode="L")
    if mode in ("1", "L", "LA", "La"):
        return im.convert("L")
    if mode == "RGB":
        return im
    return im.convert("RGB")


def decode_image(data: bytes, source: str, size: tuple[int, int] | None = None, mask: bool = False,
                 channels: int | None = None) -> np.ndarray:
    """Decode image bytes to uint8 ``(H, W, C)``: the one decoder of every reader.

    C is 1 for grey (also grey+alpha, 16-bit grey) and 3 for colour unless
    ``channels`` (1 or 3) forces it. The EXIF orientation is applied. ``size``
    is ``(height, width)``: bilinear for images, nearest for masks.
    ``mask=True`` returns ``(H, W)`` uint8 with 1 where the pixel is set.
    Unreadable, truncated, oversized (decompression bomb) or unsupported files
    raise :class:`ImageError` naming ``source``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = ImageOps.exif_transpose(im) or im
            im = _to_8bit(im, source)
            if mask:
                im = im.convert("L")
            elif channels is not None:
                if channels not in (1, 3):
                    raise ImageError(f"channels must be 1 or 3, got {channels}")
                im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                rs = getattr(Image, "Resampling", Image)  # Pillow < 9.1 has the constants on Image
                im = im.resize((size[1], size[0]), rs.NEAREST if mask else rs.BILINEAR)
            arr = np.asarray(im)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"cannot decode image {source}: refused as a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"cannot decode image {source}: {exc}") from None
    if mask:
        return (arr > 127).astype(np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_file_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of one image file, refusing files larger than ``limit`` before reading them."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    n = path.stat().st_size
    limit = MAX_IMAGE_FILE_BYTES if limit is None else limit
    if n > limit:
        raise ImageError(f"image file {path} is {n / 2**20:.1f} MiB; files over {limit / 2**20:.0f} MiB are refused")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image file {path}: {exc}") from None


def read_image(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """Read one image file as uint8 ``(H, W, C)`` with :func:`decode_image`."""
    return decode_image(read_file_bytes(path), str(path), channels=channels)


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursively, hidden ones skipped), sorted for repeatability."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p.relative_to(folder).parts)
                  and p.is_file())


def _stack_files(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    arrays = [read_image(p) for p in paths]
    if any(a.shape[2] != arrays[0].shape[2] for a in arrays):
        arrays = [a if a.shape[2] == 3 else np.repeat(a, 3, axis=2) for a in arrays]
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise ImageError(
            f"images have mixed sizes {sorted(shapes)[:4]}; resize them to one size first "
            "(e.g. noveltylab.images.resize)")
    return np.stack(arrays)


# --------------------------------------------------------------------------- arrays

def _layout_error(shape: tuple[int, ...], why: str) -> ImageError:
    return ImageError(f"cannot tell the layout of shape {shape}: {why}; convert with "
                      f"noveltylab.as_images(x, layout=...) using one of {', '.join(LAYOUTS[1:])}")


def _auto_layout(shape: tuple[int, ...]) -> str:
    """The layout the documented rule gives ``shape`` (module docstring), or an ImageError."""
    if len(shape) == 4:
        c1, c3 = shape[1] in (1, 3), shape[3] in (1, 3)
        if c1 and c3:
            raise _layout_error(shape, "both axis 1 and axis 3 could be the channel axis")
        if c1:
            return "NCHW"
        if c3:
            return "NHWC"
        raise ImageError(f"cannot find the channel axis in shape {shape}: expected 1 or 3 channels at axis 1 "
                         "(NCHW) or axis 3 (NHWC)")
    if len(shape) == 3:
        if shape[2] in (3, 4):
            raise _layout_error(shape, "it looks like one (H, W, C) colour image; use layout='HWC', or "
                                       "layout='NHW' for grey images of width 3 or 4")
        if shape[0] == 3:
            raise _layout_error(shape, "it could be one (C, H, W) colour image or 3 grey images; use "
                                       "layout='CHW' or layout='NHW'")
        return "NHW"
    if len(shape) == 2:
        raise ImageError(f"got a 2-D array of shape {shape}; pass a batch: (N, H, W), (N, C, H, W) or "
                         "(N, H, W, C), or layout='HW' for one grey image")
    raise ImageError(f"expected a 3-D or 4-D image batch, got {len(shape)}-D shape {shape}")


_LAYOUT_NDIM = {"NCHW": 4, "NHWC": 4, "NHW": 3, "CHW": 3, "HWC": 3, "HW": 2}


def _to_nchw(t: torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """A view of ``t`` with axes (N, C, H, W), following ``layout`` (no copy)."""
    if layout not in LAYOUTS:
        raise ImageError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    shape = tuple(int(s) for s in t.shape)
    if layout == "auto":
        layout = _auto_layout(shape)
    elif t.ndim != _LAYOUT_NDIM[layout]:
        raise ImageError(f"layout={layout!r} needs a {_LAYOUT_NDIM[layout]}-D array, got shape {shape}")
    if layout in ("CHW", "HWC", "HW"):
        t, layout = t[None], "N" + layout
    if layout == "NHW":
        t = t[:, None]
    elif layout == "NHWC":
        t = t.permute(0, 3, 1, 2)
    if t.shape[1] not in (1, 3):
        raise ImageError(f"images need 1 or 3 channels, got {t.shape[1]} (layout {layout}, shape {shape}); "
                         "drop an alpha channel first")
    return t


def _as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as a tensor sharing its memory where possible (it is copied later, never written)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise ImageError(f"{name}: cannot use an array of dtype {x.dtype} as images (mixed shapes, strings or "
                         "objects?); pass numbers: uint8, uint16 or floats in [0, 1]")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if any(s < 0 for s in x.strides):
        x = np.ascontiguousarray(x)
    if not x.flags.writeable:
        with warnings.catch_warnings():  # shared read-only memory is never written here (copied later)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(x)
    return torch.from_numpy(x)


def _raw(x: ImageInput, name: str, layout: str) -> torch.Tensor | list[Path]:
    """Normalise ``x`` without converting pixels: an (N, C, H, W) tensor view, or a list of image files."""
    from .data.base import ImageSet

    if isinstance(x, ImageSet):
        x = x.images
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if p.is_dir():
            files = list_image_files(p)
            if not files:
                raise ImageError(f"{name}: no image files found in folder {p}")
            return files
        if not p.is_file():
            raise ImageError(f"{name}: image file not found: {p}")
        return [p]
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (str, os.PathLike)) for v in x):
        return [Path(v) for v in x]
    if isinstance(x, (list, tuple)):
        if not x:
            raise ImageError(f"{name}: empty input (0 images)")
        if not all(isinstance(v, (np.ndarray, torch.Tensor)) for v in x):
            kinds = sorted({type(v).__name__ for v in x})
            raise ImageError(f"{name}: a list must hold only image paths or only arrays, got {kinds}")
        try:
            x = np.stack([v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in x])
        except ValueError:
            raise ImageError(f"{name}: images have mixed shapes; resize them to one size first") from None
        if layout in ("CHW", "HWC", "HW"):
            layout = "N" + layout
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ImageError(f"{name}: unsupported input type {type(x).__name__}; pass an array, tensor, "
                         "image path, folder, list of paths or ImageSet")
    t = _to_nchw(_as_tensor(x, name), layout)
    if t.shape[0] == 0:
        raise ImageError(f"{name}: empty input (0 images)")
    if t.shape[2] == 0 or t.shape[3] == 0:
        raise ImageError(f"{name}: images have zero height or width: {tuple(t.shape)}")
    return t


def _convert(t: torch.Tensor, name: str) -> torch.Tensor:
    """(N, C, H, W) uint8/uint16/float -> new float32 tensor in [0, 1]; checks dtype and range."""
    if t.dtype == torch.uint8:
        return t.to(torch.float32).div_(255.0).contiguous()
    if t.dtype == torch.uint16:
        return t.to(torch.float32).div_(65535.0).contiguous()
    if t.dtype == torch.bool:
        raise ImageError(f"{name}: boolean arrays are not images; pass uint8 (0..255) or floats in [0, 1]")
    if not t.is_floating_point():
        raise ImageError(f"{name}: integer images must be uint8 (0..255) or uint16 (0..65535), got {t.dtype}")
    out = t.to(torch.float32, copy=True).contiguous()
    finite = torch.isfinite(out)
    if not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise ImageError(f"{name}: {bad} image(s) contain NaN or infinite pixel values")
    lo, hi = float(out.min()), float(out.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ImageError(
            f"{name}: float pixel values must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]; "
            "divide by 255 or pass uint8 arrays")
    return out.clamp_(0.0, 1.0)


def as_images(x: ImageInput, *, name: str = "images", layout: str = "auto") -> torch.Tensor:
    """Convert ``x`` to a new float32 ``(N, C, H, W)`` tensor in ``[0, 1]``.

    Accepted: uint8 (0..255), uint16 (0..65535) and float ([0, 1]) arrays or
    tensors in the layouts of the module docstring (``layout=`` overrides the
    rule), a path to an image file or a folder of images, a list of paths or of
    arrays, an ``ImageSet``. Raises :class:`ImageError` for empty input,
    NaN/inf, float values outside ``[0, 1]``, undecidable layouts, mixed sizes,
    unreadable files and unknown types. ``x`` itself is never modified.
    """
    raw = _raw(x, name, layout)
    if isinstance(raw, list):
        raw = _to_nchw(torch.from_numpy(_stack_files(raw)), "NHWC")
    return _convert(raw, name)


def iter_image_batches(x: ImageInput, batch_size: int, *, name: str = "images",
                       layout: str = "auto") -> Iterator[torch.Tensor]:
    """:func:`as_images` one batch at a time, so memory does not grow with the number of images.

    Files are read per batch; arrays are sliced before conversion.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    raw = _raw(x, name, layout)
    for i in range(0, len(raw), int(batch_size)):
        chunk = raw[i:i + int(batch_size)]
        if isinstance(chunk, list):
            chunk = _to_nchw(torch.from_numpy(_stack_files(chunk)), "NHWC")
        yield _convert(chunk, name)


def to_uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`as_images` for storage: ``(N, C, H, W)`` float -> uint8 ``(N, H, W, C)``."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad H and W (centred) up to the next multiple, e.g. 28x28 -> 32x32 for ``multiple=8``."""
    h, w = x.shape[-2:]
    # ceil division without negative operands: ONNX integer division truncates, so the exported graph pads right
    H = (h + multiple - 1) // multiple * multiple
    W = (w + multiple - 1) // multiple * multiple
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
