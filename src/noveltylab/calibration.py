"""Thresholds that hold: conformal thresholds and p-values from held-out normal scores.

With ``n`` calibration scores from normal images the model never saw, a new
normal image's score is exchangeable with them, so

* the ``k = ceil((n + 1)(1 - fpr))``-th smallest calibration score is a
  threshold whose expected false-positive rate on new normal images is at
  most ``fpr`` (exactly ``(n + 1 - k)/(n + 1)`` without ties);
* ``p = (1 + #{calibration scores >= s}) / (n + 1)`` is a valid p-value:
  for normal images ``P(p <= a) <= a``.

The finest rate ``n`` images can resolve is ``1/(n + 1)``: with fewer than
about ``1/fpr`` images the threshold falls back to the largest calibration
score and a warning says so. The realised rate of one calibration draw still
scatters around the target (Beta-distributed); ``benchmarks/calibration_fpr.py``
measures how much for several set sizes.
"""
from __future__ import annotations

import math

import numpy as np


def min_calibration_size(fpr: float) -> int:
    """Fewest calibration images that can resolve ``fpr``: ``ceil(1/fpr)``."""
    return int(math.ceil(1.0 / fpr - 1e-9))


def finest_rate(n: int) -> float:
    """Smallest false-positive rate ``n`` calibration images can resolve: ``1/(n + 1)``."""
    return 1.0 / (n + 1)


def conformal_threshold(scores: np.ndarray, fpr: float) -> tuple[float, str | None]:
    """(threshold, warning or None) for calibration ``scores`` and target ``fpr``; flag ``score > threshold``."""
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    n = s.shape[0]
    if n == 0:
        raise ValueError("calibration needs at least 1 normal image, got 0")
    k = int(math.ceil((n + 1) * (1.0 - fpr) - 1e-9))
    warning = None
    if n < min_calibration_size(fpr):
        warning = (f"calibration set of {n} normal images cannot resolve a false-positive rate of {fpr:g} "
                   f"(needs at least {min_calibration_size(fpr)}); the finest rate it can resolve is "
                   f"1/(n+1) = {finest_rate(n):.3g}, so the threshold is the largest calibration score and "
                   f"about {100 * finest_rate(n):.3g} % of normal images will be flagged. Use more held-out "
                   f"normal images (--calib DIR) or a larger --fpr.")
    return float(s[min(k, n) - 1]), warning


def conformal_p_values(calibration_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(1 + #{calibration >= s}) / (n + 1)`` for each score ``s`` (in ``(0, 1]``)."""
    cal = np.sort(np.asarray(calibration_scores, dtype=np.float64).reshape(-1))
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_ge = cal.shape[0] - np.searchsorted(cal, s, side="left")
    return (1.0 + n_ge) / (cal.shape[0] + 1.0)


def expected_fpr(n: int, fpr: float) -> float:
    """Expected flagged fraction of new normal images for the conformal threshold (continuous scores)."""
    k = min(int(math.ceil((n + 1) * (1.0 - fpr) - 1e-9)), n)
    return (n + 1 - k) / (n + 1)
