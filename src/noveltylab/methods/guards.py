"""Checks that a trained representation is usable before a detector scores with it.

Fine-tuning or contrastive training can collapse every normal image onto (nearly) one
point, or diverge to non-finite values; kNN or similarity scores on such features are
constant or meaningless. Detectors call :func:`features_collapsed` after training and
say so (a warning, a ``collapsed_`` flag, and ``diagnostics()["fallback"]``) instead of
returning silently wrong scores.
"""
from __future__ import annotations

import numpy as np


def features_collapsed(feats: np.ndarray, tol: float = 1e-6, spread_tol: float = 1e-3) -> bool:
    """Whether features are non-finite or (nearly) identical for every image, relative to their
    scale (an untrained network's features are small but not constant).

    Two tests: the largest per-dimension spread is at most ``tol`` x the largest magnitude (all
    images at one point), or the mean per-dimension spread is at most ``spread_tol`` x the mean
    magnitude - a network whose ReLUs died maps nearly every image to zero while one saturated
    unit keeps the largest magnitude up (a FITYMI fine-tuning at too large a step: train accuracy
    2/3 = all called normal, 99 % zeros, every normal image scored 0)."""
    feats = np.asarray(feats)
    if not np.isfinite(feats).all():
        return True
    scale = float(np.abs(feats).max()) if feats.size else 0.0
    if scale == 0.0:
        return True
    if len(feats) < 2:
        return False
    spread = feats.std(0)
    return (float(spread.max()) <= tol * scale
            or float(spread.mean()) <= spread_tol * float(np.abs(feats).mean()))
