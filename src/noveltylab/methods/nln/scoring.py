"""NLN scoring (paper 000, Eq. 3, 4, 7, 8) for one batch of prepared images.

For a test sample x with code z = f(x) and its K nearest training codes z_k
(FAISS exact search, Euclidean):

* ``recon`` (AE/AAE/VAE, Eq. 4): mean over k and pixels of |x - g(z_k)|;
* ``residual`` (AE-res, Eq. 7): mean over k and h of |q(x) - q(g(z_k))|,
  q = the image discriminator's intermediate (latent) layer;
* ``consistency`` (AE-con, Eq. 8 as the authors' code computes it): mean over
  k and l of |z_k - E2(g(f(x)))|;
* distance term: mean Euclidean distance |z - z_k| over the K neighbours.

Without NLN the same errors use the sample's own reconstruction instead of
its neighbours' (Eq. 3 and the residual / consistency scores): |x - g(f(x))|,
|q(x) - q(g(f(x)))|, |f(x) - E2(g(f(x)))|.

Both NLN terms are min-max normalised with constants measured on normal
validation data (never on the test batch) and combined as
``alpha * error + (1 - alpha) * distance``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...knn import KNNIndex
from .models import NLNNetworks


@dataclass
class Terms:
    """Per-sample error (``(B,)``, or ``(B, H, W)`` pixel maps) and mean latent distance ``(B,)`` or None."""

    error: np.ndarray
    distance: np.ndarray | None


@torch.no_grad()
def batch_terms(nets: NLNNetworks, index: KNNIndex | None, z_train: torch.Tensor | None, x: torch.Tensor,
                k: int, error: str, nln: bool, pixel_maps: bool = False,
                cache: torch.Tensor | None = None) -> Terms:
    """Error and distance terms for a batch ``x`` (already on the model's device).

    ``pixel_maps``: return the error as ``(B, H, W)`` maps (image-space errors
    per pixel, averaged over channels; feature-space errors broadcast over the
    image) instead of one value per sample. ``cache``: the decoded training
    codes g(z_train) (``recon``) or q(g(z_train)) (``residual``), row-aligned
    with ``z_train``, so that neighbour reconstructions are look-ups (as in
    the authors' code) instead of K decodes per sample.
    """
    b, c, h, w = x.shape
    z = nets.encode(x)
    dist = None
    if nln:
        assert index is not None and z_train is not None
        _, idx = index.search(z.detach().cpu().numpy(), k)
        tidx = torch.from_numpy(idx)
        zk = z_train[tidx].to(x.device)                              # (B, K, L)
        # distances recomputed pairwise in float64: FAISS's batched GEMM distances differ in the last
        # bits with the batch size, and a sample's score must not depend on its batch
        dist = (z.detach().double()[:, None] - zk.double()).norm(dim=2).mean(1).cpu().numpy()
        if error in ("recon", "residual"):
            # g(z_k) of training codes: looked up in the cache of decoded training codes when there is one
            if cache is not None:
                xk = cache[tidx].to(x.device).reshape(b * k, *cache.shape[1:])
            elif error == "recon":
                xk = nets.decode(zk.reshape(b * k, -1))              # (B*K, C, H, W)
            else:
                xk = nets.q(nets.decode(zk.reshape(b * k, -1)))      # (B*K, H_q)
            if error == "recon":
                e = (x[:, None] - xk.view(b, k, c, h, w)).abs()       # (B, K, C, H, W)
                err = e.mean(dim=(1, 2)) if pixel_maps else e.flatten(1).mean(1)
            else:
                qk = xk.view(b, k, -1)
                err = (nets.q(x)[:, None] - qk).abs().flatten(1).mean(1)
        elif error == "consistency":
            assert nets.encoder2 is not None
            z2 = nets.encoder2(nets.reconstruct(x))
            err = (zk - z2[:, None]).abs().flatten(1).mean(1)
        else:
            raise ValueError(f"unknown error {error!r}")
    else:
        x_hat = nets.reconstruct(x)
        if error == "recon":
            e = (x - x_hat).abs()
            err = e.mean(1) if pixel_maps else e.flatten(1).mean(1)
        elif error == "residual":
            err = (nets.q(x) - nets.q(x_hat)).abs().mean(1)
        elif error == "consistency":
            assert nets.encoder2 is not None
            err = (z - nets.encoder2(x_hat)).abs().mean(1)
        else:
            raise ValueError(f"unknown error {error!r}")
    if pixel_maps and err.ndim == 1:
        err = err[:, None, None].expand(b, h, w)
    return Terms(err.detach().cpu().double().numpy(), dist)


def concat(terms: list[Terms]) -> Terms:
    err = np.concatenate([t.error for t in terms])
    dist = None if terms[0].distance is None else np.concatenate([t.distance for t in terms])  # type: ignore[misc]
    return Terms(err, dist)


def minmax(values: np.ndarray) -> list[float]:
    """[min, max] of ``values`` (the normalisation constants, from validation data)."""
    return [float(np.min(values)), float(np.max(values))]


def normalise(values: np.ndarray, lohi: list[float]) -> np.ndarray:
    lo, hi = lohi
    scale = hi - lo if hi > lo else 1.0
    return (values - lo) / scale


def combine(terms: Terms, norm: dict, alpha: float, nln: bool) -> np.ndarray:
    """Eq. 4/7/8: ``alpha * norm(error) + (1 - alpha) * norm(distance)``; the raw error without NLN."""
    if not nln:
        return terms.error
    e = normalise(terms.error, norm["error"])
    d = normalise(terms.distance, norm["distance"])  # type: ignore[arg-type]
    if e.ndim == 3:  # pixel maps: the distance of each patch covers its pixels
        d = d[:, None, None]
    return alpha * e + (1.0 - alpha) * d


@torch.no_grad()
def decoded_cache(nets: NLNNetworks, z_train: torch.Tensor, error: str, device: torch.device,
                  batch_size: int = 512) -> torch.Tensor:
    """g(z_train) for ``recon`` or q(g(z_train)) for ``residual``, on the CPU."""
    out = []
    for i in range(0, z_train.shape[0], batch_size):
        xk = nets.decode(z_train[i:i + batch_size].to(device))
        out.append((xk if error == "recon" else nets.q(xk)).cpu())
    return torch.cat(out)
