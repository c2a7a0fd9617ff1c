"""Checks that a trained representation is usable before a detector scores with it.

Fine-tuning or contrastive training can collapse every normal image onto (nearly) one
point, or diverge to non-finite values; kNN or similarity scores on such features are
constant or meaningless. Detectors call :func:`features_collapsed` after training and
say so (a warning, a ``collapsed_`` flag, and ``diagnostics()["fallback"]``) instead of
returning silently wrong scores.
"""
from __future__ import annotations

import numpy as np


def features_collapsed(feats: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether features are non-finite or (nearly) identical for every image (relative to
    their scale: an untrained network's features are small but not constant)."""
    feats = np.asarray(feats)
    if not np.isfinite(feats).all():
        return True
    scale = float(np.abs(feats).max()) if feats.size else 0.0
    if scale == 0.0:
        return True
    return len(feats) > 1 and float(feats.std(0).max()) <= tol * scale
