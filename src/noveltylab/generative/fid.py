"""Frechet distance between two sets of feature vectors (FID when the features are Inception's).

``frechet_distance(a, b) = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
No Inception network exists on these machines, so the extractor is a choice
(:func:`feature_extractor`): the ImageNet MobileNetV2's pooled 1280-d features
(``"mobilenet_v2"``, weights file given or found) or down-sampled pixels
(``"pixels"``). Values are therefore NOT comparable to published Inception
FIDs (the paper's "FID ~ 40"); a target must be chosen per extractor. With few
samples the estimate is biased upwards; keep the sample count fixed when
comparing checkpoints.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Extractor = Callable[[torch.Tensor], np.ndarray]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``a`` and ``b``."""
    from scipy import linalg

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) feature arrays of equal D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 vectors per set")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular covariances (few samples) are expected
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    d = mu1 - mu2
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean), 0.0))


def feature_extractor(kind: str = "mobilenet_v2", weights: str | None = None, input_size: int = 64,
                      batch_size: int = 128, device: str | torch.device = "cpu") -> Extractor:
    """A function NCHW [0, 1] tensor -> (N, D) float array for FID.

    ``"mobilenet_v2"``: pooled features of MobileNetV2 (``weights`` file, or
    random initialisation when None - only for tests); ``"pixels"``: grey
    8x8 thumbnails (64-d), cheap and weight-free.
    """
    from ..train import map_batches

    if kind == "pixels":
        def pix(x: torch.Tensor) -> np.ndarray:
            g = x.float().mean(1, keepdim=True)
            return F.interpolate(g, size=(8, 8), mode="area").flatten(1).numpy()
        return pix
    if kind == "mobilenet_v2":
        from ..nets.mobilenet import MobileNetV2, load_mobilenet_v2

        net = (load_mobilenet_v2(weights, input_size=input_size) if weights
               else MobileNetV2(num_classes=1000, input_size=input_size)).to(device).eval()

        def mnv2(x: torch.Tensor) -> np.ndarray:
            return map_batches(net.embed, x, batch_size=batch_size, device=device).numpy()
        return mnv2
    raise ValueError(f"unknown FID extractor {kind!r}; use 'mobilenet_v2' or 'pixels'")


def fid(real: torch.Tensor, fake: torch.Tensor, extractor: Extractor) -> float:
    """FID-style distance between two image batches (NCHW, [0, 1]) under ``extractor``."""
    return frechet_distance(extractor(real), extractor(fake))


# --- a stopping target on the extractor's own scale ------------------------------------------
#: Paper 002 stops its generator at Inception-FID ~ 40 on CIFAR-10. On the Inception scale two
#: disjoint sets of *real* CIFAR-10 images sit at ~3.2 (train vs test, the usual "real data"
#: FID) and samples of an untrained generator (noise) at ~450 (order of magnitude reported for
#: noise images; an assumption - the fraction moves between 0.067 and 0.106 for 350-550).
#: Where FID 40 lies between those two anchors, (40 - 3.2) / (450 - 3.2) = 0.082, transfers to
#: any extractor and sample size once both anchors are measured with that extractor and size.
INCEPTION_REAL_FLOOR = 3.2
INCEPTION_NOISE_CEILING = 450.0
PAPER_FID = 40.0
PAPER_FID_FRACTION = (PAPER_FID - INCEPTION_REAL_FLOOR) / (INCEPTION_NOISE_CEILING - INCEPTION_REAL_FLOOR)


def relative_fid_target(real_feats: np.ndarray, other_real_feats: np.ndarray, noise_feats: np.ndarray,
                        fraction: float = PAPER_FID_FRACTION) -> dict[str, float]:
    """The FID target ``floor + fraction * (ceiling - floor)`` on the extractor's own scale.

    ``floor``: FID between two disjoint sets of real normal images (``real_feats`` and
    ``other_real_feats``, the latter the size of a generator check); ``ceiling``: FID of the
    untrained generator's samples (``noise_feats``, same size) against ``real_feats``. Both use
    the extractor and sample sizes of the checks, so the bias of small samples cancels.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    floor = frechet_distance(real_feats, other_real_feats)
    ceiling = frechet_distance(real_feats, noise_feats)
    target = floor + float(fraction) * max(ceiling - floor, 0.0)
    return {"floor": floor, "ceiling": ceiling, "fraction": float(fraction), "target": target}
