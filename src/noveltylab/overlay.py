"""Heat-map overlays: an anomaly map blended over its image, as PNG bytes.

One drawing routine for the three places that show maps (``score --maps``,
the HTML report and the service), so they all look the same. Colours come
from matplotlib's colormaps (no figure, no backend needed).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np


def _rgb_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` from a uint8/float ``(H, W)``, ``(H, W, 1|3)`` or ``(1|3, H, W)`` image."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"cannot draw an image of shape {np.shape(image)}")
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """uint8 ``(H, W, 3)``: ``amap`` coloured with 'jet' over ``image``.

    The map is resized (bilinear) to the image when the sizes differ. ``vmin`` /
    ``vmax`` fix the colour range (e.g. one range for a whole set, so colours
    compare across images); by default the map's own range is used.
    """
    from matplotlib import colormaps
    from PIL import Image

    rgb = _rgb_uint8(image)
    m = np.asarray(amap, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"anomaly map must be 2-D (H, W), got shape {m.shape}")
    if m.shape != rgb.shape[:2]:
        m = np.asarray(Image.fromarray(m, mode="F").resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR))
    lo = float(np.min(m)) if vmin is None else vmin
    hi = float(np.max(m)) if vmax is None else vmax
    norm = np.clip((m - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(m)
    heat = colormaps["jet"](norm)[..., :3] * 255.0
    return np.clip((1 - alpha) * rgb + alpha * heat, 0, 255).round().astype(np.uint8)


def png_bytes(rgb_or_grey: np.ndarray) -> bytes:
    """Encode an image (any layout :func:`overlay` accepts) as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_rgb_uint8(rgb_or_grey)).save(buf, format="PNG")
    return buf.getvalue()


def overlay_png(image: np.ndarray, amap: np.ndarray, **kwargs: float | None) -> bytes:
    """PNG bytes of :func:`overlay`."""
    return png_bytes(overlay(image, amap, **kwargs))  # type: ignore[arg-type]


def save_overlays(det: Any, paths: list[Any], folder: str | os.PathLike, used: set[str] | None = None) -> list[Path]:
    """Write ``<stem>.png`` (anomaly map over the image) into ``folder`` for each image file in ``paths``.

    ``det`` must localise. Names that repeat (same stem in two folders) get
    ``_2``, ``_3`` ... ; pass the same ``used`` set across calls to keep names unique.
    """
    from .images import read_image

    if not det.localises:
        raise ValueError(f"method {det.name!r} does not localise: it has no anomaly maps to draw")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    used = set() if used is None else used
    maps = det.anomaly_map(list(paths))
    written = []
    for p, amap in zip(paths, maps):
        stem, n = Path(p).stem, 1
        name = f"{stem}.png"
        while name in used:
            n += 1
            name = f"{stem}_{n}.png"
        used.add(name)
        (out / name).write_bytes(overlay_png(read_image(p), np.asarray(amap)))
        written.append(out / name)
    return written
