"""The published CIFAR-10-C and MNIST-C corruptions that :mod:`noveltylab.augment` lacked and that
need no external data (issue 13 item 9). Batched float NCHW in [0, 1], seeded by a ``torch.Generator``;
each takes ``(x, severity 1..5, generator)`` and its strength grows with the severity.

CIFAR-10-C (Hendrycks & Dietterich 2019; their parameters where they are per-pixel or relative):
``speckle_noise``, ``glass_blur``, ``zoom_blur``, ``elastic_transform``, ``saturate``, ``spatter``,
``snow`` (procedural; ImageMagick's motion blur re-implemented). Not ``frost``: it blends in the
published frost photographs (external data).
MNIST-C (Mu & Gilmer 2019): ``rotate``, ``shear``, ``scale``, ``translate``, ``stripe``,
``zigzag``, ``dotted_line``, ``canny_edges``. MNIST-C publishes one strength per corruption; here it
is severity 3 and the others are spread around it. ``spatter`` is a simplified procedural version
(blurred-noise blobs of liquid or, at severities 4-5, mud), not a port of the imagecorruptions code.
Lengths in pixels are given for 32-px images and scaled with the image size.
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _sign(g: torch.Generator, n: int) -> torch.Tensor:
    return torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)


def _scale(h: int, w: int) -> float:
    return max(1.0, max(h, w) / 32)


def _warp(x: torch.Tensor, theta: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Apply per-image 2x3 affine matrices ``theta`` (normalised coordinates, output -> input)."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(2 * math.ceil(3 * sigma) + 1)
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma))


# ------------------------------------------------------------------ CIFAR-10-C extras
def speckle_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Multiplicative Gaussian noise ``x + x * N(0, c)`` (CIFAR-10-C c = .06, .1, .12, .16, .2)."""
    c = (0.06, 0.1, 0.12, 0.16, 0.2)[s - 1]
    return x + x * torch.randn(x.shape, generator=g).to(x.device, x.dtype) * c


def glass_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Gaussian blur, local pixel shuffling (each pixel takes a neighbour within ``delta`` px,
    ``iterations`` times), blur again (CIFAR-10-C (sigma, delta, iterations))."""
    sigma, delta, iters = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[s - 1]
    n, c, h, w = x.shape
    sc = _scale(h, w)
    out = _blur(x, sigma * sc)
    d = max(1, int(round(delta * sc)))
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for _ in range(iters):
        dy = torch.randint(-d, d + 1, (n, h, w), generator=g)
        dx = torch.randint(-d, d + 1, (n, h, w), generator=g)
        iy = (yy[None] + dy).clamp(0, h - 1)
        ix = (xx[None] + dx).clamp(0, w - 1)
        flat = (iy * w + ix).view(n, 1, h * w).expand(n, c, h * w).to(x.device)
        out = out.flatten(2).gather(2, flat).view(n, c, h, w)
    return _blur(out, sigma * sc)


def zoom_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Mean of the image and centre zooms by factors 1.01 .. z (CIFAR-10-C z = 1.06, 1.11, 1.16, 1.21, 1.26)."""
    top = (1.06, 1.11, 1.16, 1.21, 1.26)[s - 1]
    n = x.shape[0]
    out = x.clone()
    zooms = torch.arange(1.01, top, 0.01)
    for z in zooms.tolist():
        theta = torch.tensor([[1 / z, 0.0, 0.0], [0.0, 1 / z, 0.0]]).expand(n, 2, 3)
        out = out + _warp(x, theta, "border")
    return out / (len(zooms) + 1)


def elastic_transform(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Elastic deformation: uniform(-1, 1) displacement fields smoothed by a Gaussian of ``sigma`` px and
    scaled to a mean displacement of ``d`` px (d = 0.5, 0.75, 1, 1.25, 1.5 at 32 px)."""
    from .augment import elastic_flip

    n, _, h, w = x.shape
    sc = _scale(h, w)
    sigma = 3.0 * sc
    # a smoothed uniform(-1, 1) field of this sigma has std ~ 1 / (sqrt(12) * 2 sqrt(pi) sigma)
    alpha = (0.5, 0.75, 1.0, 1.25, 1.5)[s - 1] * sc * math.sqrt(12.0) * 2 * math.sqrt(math.pi) * sigma
    return elastic_flip(x, g, alpha=alpha, sigma=sigma, flip=False)


def saturate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Scale the HSV saturation by ``a`` and add ``b`` (CIFAR-10-C (a, b) = (.3, 0), (.1, 0), (2, 0),
    (5, .1), (20, .2): severities 1-2 desaturate, 3-5 oversaturate). Grey images are unchanged."""
    a, b = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))[s - 1]
    if x.shape[1] != 3:
        return x.clone()
    hsv = kornia.color.rgb_to_hsv(x)
    sat = (hsv[:, 1:2] * a + b).clamp(0, 1)
    return kornia.color.hsv_to_rgb(torch.cat([hsv[:, :1], sat, hsv[:, 2:]], 1))


def spatter(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Blobs of liquid (severities 1-3, pale blue, translucent) or mud (4-5, brown, opaque): thresholded
    blurred noise covering a growing share of the image (simplified; see the module docstring)."""
    cover, alpha = ((0.04, 0.5), (0.08, 0.55), (0.12, 0.6), (0.2, 0.85), (0.3, 0.9))[s - 1]
    n, c, h, w = x.shape
    noise = _blur(torch.randn(n, 1, h, w, generator=g), 1.5 * _scale(h, w))
    thr = torch.quantile(noise.flatten(1), 1 - cover, dim=1).view(n, 1, 1, 1)
    m = (noise > thr).float().to(x.device, x.dtype) * alpha
    rgb = (175 / 255, 238 / 255, 238 / 255) if s <= 3 else (63 / 255, 42 / 255, 20 / 255)
    colour = torch.tensor(rgb, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    if c == 1:
        colour = colour.mean(1, keepdim=True)
    return x * (1 - m) + colour * m


def _clipped_zoom(x: torch.Tensor, z: float) -> torch.Tensor:
    """Centre crop of side ``ceil(h / z)`` bilinearly zoomed by ``z``, centre-trimmed back to ``(h, w)``
    (CIFAR-10-C's ``clipped_zoom``)."""
    _, _, h, w = x.shape
    ch, cw = int(math.ceil(h / z)), int(math.ceil(w / z))
    top, left = (h - ch) // 2, (w - cw) // 2
    oh, ow = max(h, int(round(ch * z))), max(w, int(round(cw * z)))
    big = F.interpolate(x[..., top:top + ch, left:left + cw], size=(oh, ow), mode="bilinear", align_corners=False)
    t, lft = (oh - h) // 2, (ow - w) // 2
    return big[..., t:t + h, lft:lft + w]


def _motion_trail(layer: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick-style motion blur: each pixel is the mean of the ``2 radius + 1`` samples at
    ``i (cos a, sin a)``, i = 0 .. 2 radius, weighted ``exp(-i^2 / (2 sigma^2))`` (one-sided, so bright
    flakes leave a trail), edge pixels repeated; ``angle_deg`` per image."""
    n, _, h, w = layer.shape
    a = torch.deg2rad(angle_deg).view(n, 1, 1)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=layer.dtype), torch.arange(w, dtype=layer.dtype), indexing="ij")
    out = torch.zeros_like(layer)
    total = 0.0
    for i in range(int(2 * math.ceil(radius)) + 1):
        wt = math.exp(-i * i / (2 * sigma * sigma))
        gx = (xs[None] + i * a.cos()) * 2 / max(w - 1, 1) - 1
        gy = (ys[None] + i * a.sin()) * 2 / max(h - 1, 1) - 1
        out = out + wt * F.grid_sample(layer, torch.stack([gx, gy], -1), mode="bilinear",
                                       padding_mode="border", align_corners=True)
        total += wt
    return out / total


def snow(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """CIFAR-10-C snow, procedural (no external data): a Gaussian noise layer (mean, std) zoomed by
    ``z``, thresholded at ``t``, motion-blurred (radius, sigma, angle uniform in -135..-45 degrees:
    falling flakes) and added to the image and its 180-degree rotation, over an image brightened
    towards ``1.5 grey + 0.5`` with weight ``1 - b``. CIFAR-10-C (mean, std, z, t, radius, sigma, b);
    ImageMagick's motion blur is re-implemented here (:func:`_motion_trail`), not called."""
    loc, std, z, thr, radius, sigma, b = ((0.1, 0.2, 1.0, 0.6, 8, 3, 0.95), (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
                                          (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                                          (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))[s - 1]
    n, c, h, w = x.shape
    sc = _scale(h, w)
    layer = loc + std * torch.randn(n, 1, h, w, generator=g)
    layer = _clipped_zoom(layer, z)
    layer = torch.where(layer < thr, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = _motion_trail(layer, radius * sc, sigma * sc, _u(g, n, -135.0, -45.0)).to(x.device, x.dtype)
    grey = x if c == 1 else kornia.color.rgb_to_grayscale(x)
    base = b * x + (1 - b) * torch.maximum(x, grey * 1.5 + 0.5)
    return base + layer + torch.rot90(layer, 2, dims=(2, 3))


# ------------------------------------------------------------------ MNIST-C
def rotate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Rotation by +-angle degrees (10, 20, 30, 40, 50; MNIST-C's strength is severity 3), zero fill."""
    deg = (10.0, 20.0, 30.0, 40.0, 50.0)[s - 1]
    n = x.shape[0]
    a = torch.deg2rad(deg * _sign(g, n))
    theta = torch.stack([torch.stack([a.cos(), -a.sin(), torch.zeros(n)], 1),
                         torch.stack([a.sin(), a.cos(), torch.zeros(n)], 1)], 1)
    return _warp(x, theta)


def shear(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Horizontal shear by +-k (0.1 .. 0.5), zero fill."""
    k = (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1]
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 1] = k * _sign(g, n)
    return _warp(x, theta)


def scale(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Shrink about the centre to a factor f (0.9, 0.8, 0.7, 0.6, 0.5), zero fill."""
    f = (0.9, 0.8, 0.7, 0.6, 0.5)[s - 1]
    theta = torch.tensor([[1 / f, 0.0, 0.0], [0.0, 1 / f, 0.0]]).expand(x.shape[0], 2, 3)
    return _warp(x, theta)


def translate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Shift by t of the image size (0.05 .. 0.25) in a random direction, zero fill."""
    t = (0.05, 0.1, 0.15, 0.2, 0.25)[s - 1]
    n = x.shape[0]
    ang = _u(g, n, 0, 2 * math.pi)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 2 * t * ang.cos()
    theta[:, 1, 2] = 2 * t * ang.sin()
    return _warp(x, theta)


def stripe(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Invert the pixels of a vertical stripe of width f of the image (0.1 .. 0.3) at a random column."""
    f = (0.1, 0.15, 0.2, 0.25, 0.3)[s - 1]
    n, _, h, w = x.shape
    sw = max(1, int(round(f * w)))
    start = torch.randint(0, w - sw + 1, (n,), generator=g)
    cols = torch.arange(w)[None]
    band = ((cols >= start[:, None]) & (cols < (start + sw)[:, None])).float().view(n, 1, 1, w).to(x.device, x.dtype)
    return x * (1 - band) + (1 - x) * band


def _segments(n: int, h: int, w: int, k: int, g: torch.Generator, dotted: bool) -> torch.Tensor:
    """(n, 1, h, w) mask of ``k`` connected random line segments (a zigzag), or of every other
    pixel of ``k`` separate random lines when ``dotted``."""
    if dotted:
        p0 = torch.rand(n, k, 2, generator=g)
        p1 = torch.rand(n, k, 2, generator=g)
    else:
        pts = torch.rand(n, k + 1, 2, generator=g)
        p0, p1 = pts[:, :-1], pts[:, 1:]
    steps = 2 * max(h, w)
    t = torch.linspace(0, 1, steps).view(1, 1, steps, 1)
    pts = p0[:, :, None] + (p1 - p0)[:, :, None] * t                    # (n, k, steps, 2) in [0, 1]
    iy = (pts[..., 0] * (h - 1)).round().long()
    ix = (pts[..., 1] * (w - 1)).round().long()
    keep = torch.ones_like(iy, dtype=torch.bool)
    if dotted:
        keep = ((iy + ix) % 2 == 0)
    mask = torch.zeros(n, h * w)
    b = torch.arange(n).view(n, 1, 1).expand_as(iy)
    mask[b[keep], (iy * w + ix)[keep]] = 1.0
    return mask.view(n, 1, h, w)


def zigzag(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Draw a bright zigzag of k random connected segments (k = 1 .. 5) over the image."""
    n, _, h, w = x.shape
    m = _segments(n, h, w, s, g, dotted=False).to(x.device, x.dtype)
    return torch.maximum(x, m)


def dotted_line(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Draw k bright dotted random lines (k = 1 .. 5) over the image."""
    n, _, h, w = x.shape
    m = _segments(n, h, w, s, g, dotted=True).to(x.device, x.dtype)
    return torch.maximum(x, m)


def canny_edges(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Blend the image towards its Canny edge map (kornia): ``(1 - a) x + a edges``, a = 0.2 .. 1
    (MNIST-C replaces the digit by its edges: a = 1 at severity 5)."""
    a = (0.2, 0.4, 0.6, 0.8, 1.0)[s - 1]
    grey = x if x.shape[1] == 1 else x.mean(1, keepdim=True)
    _, edges = kornia.filters.canny(grey)
    edges = edges.expand_as(x)
    return (1 - a) * x + a * edges


OPS = {"speckle_noise": speckle_noise, "glass_blur": glass_blur, "zoom_blur": zoom_blur,
       "elastic_transform": elastic_transform, "saturate": saturate, "spatter": spatter, "snow": snow,
       "rotate": rotate, "shear": shear, "scale": scale, "translate": translate, "stripe": stripe,
       "zigzag": zigzag, "dotted_line": dotted_line, "canny_edges": canny_edges}
