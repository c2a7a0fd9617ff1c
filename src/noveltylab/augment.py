"""Image augmentations on batched tensors (float32 NCHW in [0, 1]).

Three families, all seeded through an explicit ``torch.Generator`` (the same
generator state gives the same output) and all keeping the batch shape:

* **Hard augmentations** (UNODE / paper 004, set S), used to craft negative
  samples: :func:`rotation`, :func:`cut_permutation`, :func:`cutout`,
  :func:`cutpaste` (normal), :func:`cutpaste_scar`, :func:`elastic_flip`
  (elastic deformation followed by a horizontal flip) and :func:`mixup` with
  auxiliary images given by the caller. Defaults are the authors' parameters
  where the paper/code fixes them (rot90 k in {1,2,3}; quadrant jigsaw;
  cutout sides H/6..H/4; elastic alpha 200, sigma 7; mixup lambda ~ U(0.02,
  0.1) as the weight of the auxiliary image). CutPaste sizes follow Li et al.
  2021 as fractions of the image (patch area 2-15 %, aspect ratio 0.3-3.3;
  scar width W/32..W/8, height H/8..H/3, rotation +-45 degrees) so that they
  stay visible on 28-32 px images.
* **Positive views** (:class:`PositiveViews`): SimCLR's random resized crop
  (scale 0.08-1), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1) with
  p=0.8 and grayscale p=0.2, built from ``kornia.augmentation``.
* **Common corruptions** (:func:`corrupt`, Hendrycks & Dietterich 2019, with
  the CIFAR-10-C parameters, severities 1-5): gaussian/shot/impulse noise,
  defocus/motion/gaussian blur, fog (plasma-fractal-like haze), brightness,
  contrast, JPEG, pixelate.

kornia supplies the filters, geometric warps, colour operations and the JPEG
codec; the random parameters are drawn here from the generator.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import kornia
import kornia.augmentation as KA
import torch
import torch.nn.functional as F

HARD_AUGMENTATIONS = ("rotation", "cut_permutation", "cutout", "cutpaste", "cutpaste_scar", "elastic_flip", "mixup")
# the corruptions ``corruption="mixed"`` draws from (kept as first implemented, so earlier records reproduce)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur", "gaussian_blur",
               "fog", "brightness", "contrast", "jpeg", "pixelate")
# the published sets, restricted to what needs no external data (CIFAR-10-C: not snow, frost; see
# README_unode.md for the table); names as published, ``jpeg`` = jpeg_compression
CIFAR10_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
             "zoom_blur", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg",
             "speckle_noise", "gaussian_blur", "spatter", "saturate")
MNIST_C = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate", "brightness",
           "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges")
# every CIFAR-10-C type but frost (the published frost photographs are external data): "cifar10-c" plus the
# procedural snow of corruptions_extra; a separate name so that "cifar10-c" keeps its meaning in earlier runs
CIFAR10_C_NOFROST = CIFAR10_C + ("snow",)
CORRUPTION_SETS = {"mixed": CORRUPTIONS, "cifar10-c": CIFAR10_C, "mnist-c": MNIST_C, "cifar10-c-nofrost": CIFAR10_C_NOFROST}
ALL_CORRUPTIONS = tuple(dict.fromkeys(CORRUPTIONS + CIFAR10_C_NOFROST + MNIST_C))


def _gen(generator: torch.Generator | None, seed: int | None = None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    if seed is not None:
        g.manual_seed(int(seed))
    else:
        g.seed()
    return g


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"augmentations need a 4-D (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[-1] < 4 or x.shape[-2] < 4:
        raise ValueError(f"images must be at least 4x4 for augmentations, got {tuple(x.shape[-2:])}")


def _rand(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _randint(g: torch.Generator, n: int, lo: int, hi: int) -> torch.Tensor:
    """Integers in [lo, hi] inclusive."""
    return torch.randint(int(lo), int(hi) + 1, (n,), generator=g)


# --------------------------------------------------------------------------------------------
# hard augmentations (negatives)
# --------------------------------------------------------------------------------------------
def rotation(x: torch.Tensor, generator: torch.Generator | None = None, ks: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
    """Rotate each image by 90*k degrees, k drawn from ``ks`` (square images use exact rot90,
    others kornia's rotate with zero fill so the shape is kept)."""
    _check(x)
    g = _gen(generator)
    ks_t = torch.as_tensor(list(ks))
    k = ks_t[torch.randint(0, len(ks_t), (x.shape[0],), generator=g)]
    out = x.clone()
    for kk in k.unique().tolist():
        sel = k == kk
        if x.shape[-1] == x.shape[-2]:
            out[sel] = torch.rot90(x[sel], int(kk), dims=(-2, -1))
        else:
            ang = torch.full((int(sel.sum()),), 90.0 * kk, dtype=x.dtype, device=x.device)
            out[sel] = kornia.geometry.transform.rotate(x[sel], ang)
    return out


_PERMS = None


def cut_permutation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Quadrant jigsaw: split the (even part of the) image into 2x2 tiles and apply a random
    non-identity permutation of the four tiles (CSI's CutPerm family)."""
    global _PERMS
    _check(x)
    g = _gen(generator)
    if _PERMS is None:
        import itertools
        _PERMS = torch.tensor([p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)])
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    core = x[:, :, :2 * h2, :2 * w2]
    tiles = torch.stack([core[:, :, :h2, :w2], core[:, :, :h2, w2:], core[:, :, h2:, :w2], core[:, :, h2:, w2:]], 1)
    perm = _PERMS[torch.randint(0, len(_PERMS), (n,), generator=g)].to(x.device)
    tiles = tiles[torch.arange(n, device=x.device)[:, None], perm]
    top = torch.cat([tiles[:, 0], tiles[:, 1]], -1)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], -1)
    out = x.clone()
    out[:, :, :2 * h2, :2 * w2] = torch.cat([top, bottom], -2)
    return out


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, size: tuple[float, float] = (1 / 6, 1 / 4),
           fill: float = 0.0) -> torch.Tensor:
    """Fill one random rectangle per image (sides ``size`` fractions of H and W) with ``fill``."""
    _check(x)
    g = _gen(generator)
    n, _, h, w = x.shape
    rh = torch.clamp((_rand(g, n, *size) * h).round(), min=1).long()
    rw = torch.clamp((_rand(g, n, *size) * w).round(), min=1).long()
    top = (torch.rand(n, generator=g) * (h - rh + 1).float()).long()
    left = (torch.rand(n, generator=g) * (w - rw + 1).float()).long()
    yy = torch.arange(h)[None, :, None]
    xx = torch.arange(w)[None, None, :]
    mask = ((yy >= top[:, None, None]) & (yy < (top + rh)[:, None, None]) &
            (xx >= left[:, None, None]) & (xx < (left + rw)[:, None, None])).to(x.device)
    return torch.where(mask[:, None], torch.full_like(x, fill), x)


def _paste(x: torch.Tensor, g: torch.Generator, ph: torch.Tensor, pw: torch.Tensor, angle: torch.Tensor,
           jitter: float) -> torch.Tensor:
    """Copy a (ph x pw) patch, rotated by ``angle`` degrees, from a random source location to a
    different random destination of the same image (nearest-neighbour sampling)."""
    n, c, h, w = x.shape
    dev = x.device
    # centres chosen so that the unrotated patch lies inside the image
    def centre(size: torch.Tensor, full: int) -> torch.Tensor:
        half = size.float() / 2
        return half + torch.rand(n, generator=g) * (full - size.float()).clamp(min=0)
    cy_s, cx_s = centre(ph, h), centre(pw, w)
    cy_d, cx_d = centre(ph, h), centre(pw, w)
    src = x
    if jitter > 0:
        b = 1 + (torch.rand(n, generator=g) * 2 - 1) * jitter
        ct = 1 + (torch.rand(n, generator=g) * 2 - 1) * jitter
        src = kornia.enhance.adjust_brightness(src, (b - 1).to(dev))
        src = kornia.enhance.adjust_contrast(src, ct.to(dev))
    th = torch.deg2rad(angle.float())
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    dy = yy[None] - cy_d[:, None, None]
    dx = xx[None] - cx_d[:, None, None]
    cos, sin = torch.cos(th)[:, None, None], torch.sin(th)[:, None, None]
    u = cos * dx + sin * dy      # patch frame (rotate by -angle)
    v = -sin * dx + cos * dy
    inside = (u.abs() < pw[:, None, None] / 2) & (v.abs() < ph[:, None, None] / 2)
    sx = (cx_s[:, None, None] + u).clamp(0, w - 1e-3)
    sy = (cy_s[:, None, None] + v).clamp(0, h - 1e-3)
    grid = torch.stack([sx / w * 2 - 1, sy / h * 2 - 1], -1).to(dev, x.dtype)
    patch = F.grid_sample(src, grid, mode="nearest", padding_mode="border", align_corners=False)
    return torch.where(inside[:, None].to(dev), patch, x).clamp(0, 1)


def cutpaste(x: torch.Tensor, generator: torch.Generator | None = None, area: tuple[float, float] = (0.02, 0.15),
             aspect: tuple[float, float] = (0.3, 3.3), jitter: float = 0.1) -> torch.Tensor:
    """CutPaste (normal): a rectangle of ``area`` x image area and log-uniform aspect ratio is cut,
    colour-jittered by +-``jitter`` and pasted at another location."""
    _check(x)
    g = _gen(generator)
    n, _, h, w = x.shape
    a = _rand(g, n, *area) * h * w
    logr = _rand(g, n, math.log(aspect[0]), math.log(aspect[1]))
    r = torch.exp(logr)
    pw = torch.sqrt(a * r).round().clamp(1, w).long()
    ph = torch.sqrt(a / r).round().clamp(1, h).long()
    return _paste(x, g, ph, pw, torch.zeros(n), jitter)


def cutpaste_scar(x: torch.Tensor, generator: torch.Generator | None = None,
                  width: tuple[float, float] = (1 / 32, 1 / 8), height: tuple[float, float] = (1 / 8, 1 / 3),
                  rotation_deg: tuple[float, float] = (-45.0, 45.0), jitter: float = 0.1) -> torch.Tensor:
    """CutPaste-scar: a thin rotated rectangle (``width`` x W by ``height`` x H, at least 1 px wide)
    cut, jittered and pasted elsewhere."""
    _check(x)
    g = _gen(generator)
    n, _, h, w = x.shape
    pw = (_rand(g, n, *width) * w).round().clamp(min=1).long()
    ph = (_rand(g, n, *height) * h).round().clamp(min=2).long()
    ang = _rand(g, n, *rotation_deg)
    return _paste(x, g, ph, pw, ang, jitter)


def elastic_flip(x: torch.Tensor, generator: torch.Generator | None = None, alpha: float = 200.0,
                 sigma: float = 7.0, flip: bool = True) -> torch.Tensor:
    """Elastic deformation (Simard et al.: uniform(-1, 1) displacement fields smoothed by a Gaussian
    of ``sigma`` px and scaled by ``alpha`` px, kornia's Gaussian blur) followed by a horizontal flip."""
    _check(x)
    g = _gen(generator)
    n, c, h, w = x.shape
    noise = (torch.rand(n, 2, h, w, generator=g) * 2 - 1).to(x.device, x.dtype)
    k = int(2 * round(3 * sigma) + 1)
    disp = kornia.filters.gaussian_blur2d(noise, (k, k), (sigma, sigma), border_type="constant") * alpha
    disp = disp.permute(0, 2, 3, 1)                                   # (n, h, w, 2) in pixels (dx, dy)
    disp = disp * torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=x.dtype)
    ident = F.affine_grid(torch.eye(2, 3, device=x.device, dtype=x.dtype)[None].expand(n, 2, 3), [n, c, h, w],
                          align_corners=False)
    out = F.grid_sample(x, ident + disp, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.flip(-1) if flip else out


def mixup(x: torch.Tensor, generator: torch.Generator | None = None, aux: torch.Tensor | None = None,
          lam: tuple[float, float] = (0.02, 0.1)) -> torch.Tensor:
    """Blend each image with a random auxiliary image: ``(1 - l) * x + l * a``, l ~ U(lam).
    ``aux`` (M, C', H', W') is resized/channel-matched to ``x``; without ``aux`` this is an error."""
    _check(x)
    if aux is None or len(aux) == 0:
        raise ValueError("mixup needs auxiliary images (aux=...); without them leave mixup out of the set")
    g = _gen(generator)
    n, c, h, w = x.shape
    a = aux[torch.randint(0, len(aux), (n,), generator=g)]
    a = _fit_images(a.to(x.device, x.dtype), c, h, w)
    lam_t = _rand(g, n, *lam).to(x.device, x.dtype)[:, None, None, None]
    return (1 - lam_t) * x + lam_t * a


def _fit_images(a: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    if a.shape[1] != c:
        a = a.expand(-1, 3, -1, -1) if a.shape[1] == 1 else a.mean(1, keepdim=True)
    if tuple(a.shape[-2:]) != (h, w):
        a = F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return a


HARD_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "rotation": rotation, "cut_permutation": cut_permutation, "cutout": cutout, "cutpaste": cutpaste,
    "cutpaste_scar": cutpaste_scar, "elastic_flip": elastic_flip, "mixup": mixup,
}


def hard_augment(x: torch.Tensor, name: str, generator: torch.Generator | None = None,
                 aux: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the hard augmentation ``name`` (one of :data:`HARD_AUGMENTATIONS`) to a batch."""
    if name not in HARD_OPS:
        raise ValueError(f"unknown hard augmentation {name!r}; choose from {', '.join(HARD_AUGMENTATIONS)}")
    if name == "mixup":
        return mixup(x, generator, aux=aux)
    return HARD_OPS[name](x, generator)


# --------------------------------------------------------------------------------------------
# positive views (SimCLR)
# --------------------------------------------------------------------------------------------
class PositiveViews(torch.nn.Module):
    """SimCLR view generator on kornia: random resized crop (scale ``crop_scale``), horizontal flip,
    colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8 and grayscale p=0.2. Grey (1-channel) inputs get
    only brightness/contrast jitter and no grayscale step. Randomness comes from torch's global RNG
    (seeded by the training loop)."""

    def __init__(self, size: tuple[int, int], channels: int, crop_scale: tuple[float, float] = (0.08, 1.0),
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1), jitter_p: float = 0.8,
                 gray_p: float = 0.2) -> None:
        super().__init__()
        ops: list[torch.nn.Module] = [KA.RandomResizedCrop(size, scale=crop_scale), KA.RandomHorizontalFlip()]
        if channels == 3:
            ops.append(KA.ColorJitter(*jitter, p=jitter_p))
            ops.append(KA.RandomGrayscale(p=gray_p))
        else:
            ops.append(KA.ColorJitter(jitter[0], jitter[1], 0.0, 0.0, p=jitter_p))
        self.seq = torch.nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x).clamp(0, 1)


# --------------------------------------------------------------------------------------------
# common corruptions (test-time distribution shift)
# --------------------------------------------------------------------------------------------
_SEV = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [0.3, 0.4, 0.5, 1.0, 1.5],
    "motion_blur": [(5, 1.0), (5, 1.5), (7, 2.0), (7, 2.5), (9, 3.0)],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "fog": [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "jpeg": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
}


def _disk_kernel(radius: float) -> torch.Tensor:
    r = max(radius, 0.5)
    L = int(math.ceil(r)) * 2 + 1
    ax = torch.arange(L, dtype=torch.float32) - L // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    k = ((xx ** 2 + yy ** 2) <= r ** 2).float()
    return (k / k.sum())[None]


def _plasma(n: int, h: int, w: int, g: torch.Generator, decay: float) -> torch.Tensor:
    """Fractal-like haze in [0, 1]: sum of upsampled random noise octaves, amplitude ``decay**-i``."""
    size = max(h, w)
    out = torch.zeros(n, 1, h, w)
    amp, total, res = 1.0, 0.0, 2
    while res <= 2 * size:
        layer = torch.rand(n, 1, res, res, generator=g)
        out += amp * F.interpolate(layer, size=(h, w), mode="bicubic", align_corners=False)
        total += amp
        amp /= decay
        res *= 2
    out = out / total
    mn = out.amin((1, 2, 3), keepdim=True)
    mx = out.amax((1, 2, 3), keepdim=True)
    return (out - mn) / (mx - mn + 1e-8)


def corrupt(x: torch.Tensor, name: str, severity: int = 3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the common corruption ``name`` (one of :data:`ALL_CORRUPTIONS`) at ``severity`` 1..5
    (CIFAR-10-C parameters; MNIST-C ones in :mod:`noveltylab.corruptions_extra`) to a batch; the
    output stays in [0, 1]."""
    from .corruptions_extra import OPS

    _check(x)
    if name not in _SEV and name not in OPS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(ALL_CORRUPTIONS)}")
    if not isinstance(severity, (int,)) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer 1..5, got {severity!r}")
    g = _gen(generator)
    if name in OPS:
        return OPS[name](x, severity, g).clamp(0, 1)
    c = _SEV[name][severity - 1]
    n, ch, h, w = x.shape
    dev, dt = x.device, x.dtype
    if name == "gaussian_noise":
        out = x + torch.randn(x.shape, generator=g).to(dev, dt) * c
    elif name == "shot_noise":
        out = torch.poisson((x * c).cpu(), generator=g).to(dev, dt) / c
    elif name == "impulse_noise":
        u = torch.rand(x.shape, generator=g).to(dev)
        salt = torch.rand(x.shape, generator=g).to(dev) < 0.5
        out = torch.where(u < c, salt.to(dt), x)
    elif name == "defocus_blur":
        k = _disk_kernel(c * max(1.0, max(h, w) / 32)).to(dev, dt)
        out = kornia.filters.filter2d(x, k, border_type="reflect")
        s = 0.5
        kk = int(2 * math.ceil(2 * s) + 1)
        out = kornia.filters.gaussian_blur2d(out, (kk, kk), (s, s))
    elif name == "motion_blur":
        size, sig = c
        size = int(size * max(1.0, max(h, w) / 32)) | 1
        ang = (_rand(g, n, -45, 45)).to(dev, dt)
        out = kornia.filters.motion_blur(x, max(3, size), ang, torch.zeros(n, device=dev, dtype=dt))
    elif name == "gaussian_blur":
        s = c * max(1.0, max(h, w) / 32)
        kk = int(2 * math.ceil(3 * s) + 1)
        out = kornia.filters.gaussian_blur2d(x, (kk, kk), (s, s))
    elif name == "fog":
        amount, decay = c
        haze = _plasma(n, h, w, g, decay).to(dev, dt)
        mx = x.amax((1, 2, 3), keepdim=True)
        out = (x + amount * haze) * mx / (mx + amount)
    elif name == "brightness":
        if ch == 3:
            hsv = kornia.color.rgb_to_hsv(x)
            v = (hsv[:, 2:3] + c).clamp(0, 1)
            out = kornia.color.hsv_to_rgb(torch.cat([hsv[:, :2], v], 1))
        else:
            out = x + c
    elif name == "contrast":
        m = x.mean((1, 2, 3), keepdim=True)
        out = (x - m) * c + m
    elif name == "jpeg":
        xr = x if ch == 3 else x.expand(-1, 3, -1, -1)
        ph, pw = (-h) % 16, (-w) % 16
        xr = F.pad(xr, (0, pw, 0, ph), mode="replicate")
        q = torch.full((n,), float(c), device=dev, dtype=dt)
        out = kornia.enhance.jpeg_codec_differentiable(xr.contiguous(), q)[:, :, :h, :w]
        if ch == 1:
            out = out.mean(1, keepdim=True)
    elif name == "pixelate":
        sh, sw = max(1, int(round(h * c))), max(1, int(round(w * c)))
        out = F.interpolate(F.interpolate(x, size=(sh, sw), mode="area"), size=(h, w), mode="nearest")
    return out.clamp(0, 1)


def corrupt_mixed(x: torch.Tensor, severity: int = 3, names: Sequence[str] = CORRUPTIONS,
                  generator: torch.Generator | None = None, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every image one corruption drawn uniformly from ``names`` (seeded) at ``severity``.
    Returns (corrupted images, index into ``names`` per image)."""
    _check(x)
    g = _gen(generator)
    which = torch.randint(0, len(names), (x.shape[0],), generator=g)
    out = x.clone()
    for i, nm in enumerate(names):
        idx = torch.nonzero(which == i).flatten()
        for s in range(0, len(idx), batch_size):
            part = idx[s:s + batch_size]
            out[part] = corrupt(x[part], nm, severity, generator=g)
    return out, which
