"""AutoAugOOD (paper 004, Sec. 3.1): weight hard augmentations by how far they push normal
images away from the normal distribution in a pretrained feature space, and sample
negatives from the weighted set.

Weighting (:func:`autoaugood_weights`):
1. take ``n_samples`` normal images (seeded), embed them with the feature extractor,
   and embed each augmented copy ``s_k(x)``;
2. for every augmentation k, project the original and augmented features *jointly*
   with t-SNE (``tsne_dim=1`` as in the paper, ``2`` as in the authors' code), so the
   two point sets share one coordinate system;
3. fit a Gaussian KDE (Scott's bandwidth) to each set and evaluate both densities on a
   common grid (1-D: 512 points; 2-D: 64 x 64), normalised to distributions P, Q_k;
4. divergence ``j_k = KL(P || Q_k) + KL(Q_k || P)`` (``divergence="sym-kl"``, the paper's
   Eq. 7) or ``KL(P || Q_k)`` (``"kl"``) or Jensen-Shannon (``"js"``);
5. weights ``w = softmax(j / temperature)`` (temperature 1 = the paper).

Sampling (:class:`NegativeSampler`): per batch draw ``r ~ U{1, ..., max_compose}``
augmentations without replacement with probabilities proportional to the weights and
apply their sequential composition to the batch (the paper; ``max_compose=1`` is the
authors' code, which drew one augmentation).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..augment import HARD_AUGMENTATIONS, hard_augment

DIVERGENCES = ("sym-kl", "kl", "js")


def parse_weights(spec: str | Mapping[str, float], names: Sequence[str]) -> dict[str, float]:
    """``"rotation:0.7,mixup:0.3"`` or a dict -> normalised weights over ``names`` (others 0)."""
    if isinstance(spec, str):
        out: dict[str, float] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if ":" in part:
                k, v = part.split(":", 1)
                out[k.strip()] = float(v)
            else:
                out[part] = 1.0
    else:
        out = {str(k): float(v) for k, v in dict(spec).items()}
    bad = [k for k in out if k not in HARD_AUGMENTATIONS]
    if bad:
        raise ValueError(f"unknown augmentation(s) {bad} in aug_weights; choose from {', '.join(HARD_AUGMENTATIONS)}")
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise ValueError(f"aug_weights must be non-negative and not all zero, got {out}")
    missing = [k for k, v in out.items() if v > 0 and k not in names]
    if missing:
        raise ValueError(f"aug_weights names {missing}, which are not in the augmentation set {list(names)} "
                         "(mixup needs auxiliary images)")
    tot = sum(out.values())
    return {k: out.get(k, 0.0) / tot for k in names}


def _grid_density(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import gaussian_kde

    both = np.concatenate([P, Q])
    lo, hi = both.min(0), both.max(0)
    pad = 0.1 * (hi - lo + 1e-6)
    lo, hi = lo - pad, hi + pad
    if P.shape[1] == 1:
        grid = np.linspace(lo[0], hi[0], 512)[None]
    else:
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 64), np.linspace(lo[1], hi[1], 64))
        grid = np.stack([gx.ravel(), gy.ravel()])
    p = gaussian_kde(P.T)(grid) + 1e-12
    q = gaussian_kde(Q.T)(grid) + 1e-12
    return p / p.sum(), q / q.sum()


def divergence(P: np.ndarray, Q: np.ndarray, kind: str = "sym-kl") -> float:
    """Divergence between the KDEs of two point sets (n, dim) on a shared grid."""
    if kind not in DIVERGENCES:
        raise ValueError(f"unknown divergence {kind!r}; choose from {DIVERGENCES}")
    p, q = _grid_density(np.asarray(P, np.float64), np.asarray(Q, np.float64))
    kl_pq = float(np.sum(p * np.log(p / q)))
    if kind == "kl":
        return kl_pq
    if kind == "sym-kl":
        return kl_pq + float(np.sum(q * np.log(q / p)))
    m = (p + q) / 2
    return 0.5 * float(np.sum(p * np.log(p / m))) + 0.5 * float(np.sum(q * np.log(q / m)))


def softmax(v: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(v, np.float64) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def autoaugood_weights(x: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor], names: Sequence[str], *,
                       aux: torch.Tensor | None = None, n_samples: int = 200, tsne_dim: int = 1,
                       divergence_kind: str = "sym-kl", temperature: float = 1.0, seed: int = 0,
                       batch_size: int = 64, perplexity: float = 30.0) -> tuple[dict[str, float], dict[str, float]]:
    """AutoAugOOD weights and divergences for augmentations ``names`` on normal images ``x``.

    ``embed`` maps a (n, C, H, W) [0, 1] batch to (n, d) features (no gradients needed).
    Returns ``(weights, divergences)``, both dicts keyed by augmentation name.
    """
    from sklearn.manifold import TSNE

    if tsne_dim not in (1, 2):
        raise ValueError(f"tsne_dim must be 1 (paper) or 2 (authors' code), got {tsne_dim}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    names = list(names)
    if not names:
        raise ValueError("no augmentations to weight")
    if len(x) < 5:
        raise ValueError(f"AutoAugOOD needs at least 5 normal images, got {len(x)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n_samples]
    xs = x[idx]

    def feats(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([embed(batch[i:i + batch_size]).float().cpu()
                              for i in range(0, len(batch), batch_size)]).numpy()

    H = feats(xs)
    divs: dict[str, float] = {}
    for k, name in enumerate(names):
        gk = torch.Generator().manual_seed(seed * 1000 + k + 1)
        Hk = feats(hard_augment(xs, name, gk, aux=aux))
        joint = np.concatenate([H, Hk]).astype(np.float32)
        perp = float(min(perplexity, max(2.0, (len(joint) - 1) / 3.0)))
        Y = TSNE(n_components=tsne_dim, perplexity=perp, init="pca", random_state=seed,
                 method="exact" if tsne_dim > 3 else "barnes_hut").fit_transform(joint)
        divs[name] = divergence(Y[:len(H)], Y[len(H):], divergence_kind)
    w = softmax(np.array([divs[n] for n in names]), temperature)
    return {n: float(v) for n, v in zip(names, w)}, divs


class NegativeSampler:
    """Compose hard augmentations into negatives: per call draw ``r ~ U{1..max_compose}``
    augmentations without replacement, probability proportional to ``weights``, and apply
    them in sequence to the whole batch. Seeded by ``seed`` (own generator)."""

    def __init__(self, weights: Mapping[str, float], aux: torch.Tensor | None = None,
                 max_compose: int | None = None, seed: int = 0) -> None:
        self.names = [k for k, v in weights.items() if v > 0]
        if not self.names:
            raise ValueError("NegativeSampler: every augmentation weight is zero")
        if "mixup" in self.names and (aux is None or len(aux) == 0):
            raise ValueError("NegativeSampler: mixup has a positive weight but no auxiliary images were given")
        self.probs = torch.tensor([float(weights[k]) for k in self.names], dtype=torch.float64)
        self.probs = self.probs / self.probs.sum()
        k = len(self.names)
        self.max_compose = k if max_compose is None else max(1, min(int(max_compose), k))
        self.aux = aux
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> list[str]:
        r = int(torch.randint(1, self.max_compose + 1, (1,), generator=self.generator))
        pick = torch.multinomial(self.probs, r, replacement=False, generator=self.generator)
        return [self.names[i] for i in pick.tolist()]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.draw():
            out = hard_augment(out, name, self.generator, aux=self.aux)
        return out
