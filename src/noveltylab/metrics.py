"""Evaluation metrics for novelty scores and anomaly maps.

Convention: ``labels`` are 1 for novel (positive) and 0 for normal; scores are
higher for more novel samples. Built on scikit-learn where it has the metric.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    if not np.isin(y, (0, 1)).all():  # checked before the cast, so 0.5 or NaN is not silently truncated
        raise ValueError("labels must be 0 (normal) or 1 (novel)")
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ValueError("need both normal (0) and novel (1) samples to compute this metric")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return y, s


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve."""
    y, s = _check(labels, scores)
    return float(skm.roc_auc_score(y, s))


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve with novel as the positive class (average precision)."""
    y, s = _check(labels, scores)
    return float(skm.average_precision_score(y, s))


def f1_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """F1 of the novel class when ``score > threshold`` is called novel."""
    y, s = _check(labels, scores)
    return float(skm.f1_score(y, (s > threshold).astype(int), zero_division=0))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Best F1 over all thresholds, and the threshold reaching it (an oracle figure: uses test labels).

    The threshold follows :func:`f1_at`'s rule (``score > threshold`` is novel), so
    ``f1_at(labels, scores, f1_max(labels, scores)[1])`` gives back the best F1: it is
    halfway between the lowest score called novel and the next lower score.
    """
    y, s = _check(labels, scores)
    p, r, t = skm.precision_recall_curve(y, s)  # sklearn calls ``score >= t`` novel
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)[:-1]
    i = int(np.argmax(f))
    below = s[s < t[i]]
    thr = 0.5 * (t[i] + below.max()) if below.size else np.nextafter(t[i], -np.inf)
    if not below.size or not below.max() < thr < t[i]:  # halfway rounds onto an end: nudge just below t[i]
        thr = np.nextafter(t[i], -np.inf)
    return float(f[i]), float(thr)


def fpr_at_tpr(labels: np.ndarray, scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches ``tpr``."""
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    y, s = _check(labels, scores)
    # drop_intermediate=False: the default drops collinear ROC points, which can be the
    # very point where the TPR first reaches ``tpr`` (tied normal/novel scores).
    fpr, tprs, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over all pixels of all images (masks: 1 = anomalous pixel)."""
    m = np.asarray(masks).reshape(-1) > 0
    a = np.asarray(maps, dtype=np.float64).reshape(-1)
    if m.shape != a.shape:
        raise ValueError(f"masks ({np.shape(masks)}) and maps ({np.shape(maps)}) differ in shape")
    return auroc(m.astype(int), a)


def pixel_roc_threshold(masks: np.ndarray, maps: np.ndarray) -> float:
    """Threshold at argmax(TPR - FPR) of the pixel ROC (Youden's J), as paper 000 uses for IoU.

    Compute it on validation data, then apply it to test maps with :func:`iou_at`.
    """
    m = (np.asarray(masks).reshape(-1) > 0).astype(int)
    a = np.asarray(maps, dtype=np.float64).reshape(-1)
    _check(m, a)
    fpr, tpr, thr = skm.roc_curve(m, a)
    return float(thr[int(np.argmax(tpr - fpr))])


def iou_at(masks: np.ndarray, maps: np.ndarray, threshold: float) -> float:
    """Intersection over union of ``maps >= threshold`` with the ground-truth masks (all pixels pooled)."""
    m = np.asarray(masks) > 0
    p = np.asarray(maps) >= threshold
    if m.shape != p.shape:
        raise ValueError(f"masks {m.shape} and maps {p.shape} differ in shape")
    union = np.logical_or(m, p).sum()
    return float(np.logical_and(m, p).sum() / union) if union else 1.0


def per_class_auroc(scores: np.ndarray, test_labels: np.ndarray, test_classes: np.ndarray) -> dict[int, float]:
    """AUROC of normal test images against each novel class separately (one-class test set)."""
    scores = np.asarray(scores)
    normal = test_labels == 0
    out = {}
    for c in np.unique(test_classes[test_labels == 1]):
        sel = normal | (test_classes == c)
        out[int(c)] = float(auroc(test_labels[sel], scores[sel]))
    return out


def bottom1(scores: np.ndarray, test_labels: np.ndarray, test_classes: np.ndarray) -> tuple[int, float]:
    """The bottom-1 class for a detector's scores: the novel class with the lowest AUROC, and that AUROC."""
    per = per_class_auroc(scores, test_labels, test_classes)
    c = min(per, key=per.get)
    return c, per[c]


def summary(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """The image-level metrics a benchmark reports; F1 at ``threshold`` when one is given."""
    out = {
        "auroc": auroc(labels, scores),
        "aupr": aupr(labels, scores),
        "f1_max": f1_max(labels, scores)[0],
        "fpr95": fpr_at_tpr(labels, scores, 0.95),
    }
    if threshold is not None:
        out["f1"] = f1_at(labels, scores, threshold)
    return out


def pro_score(masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3, num_thresholds: int = 200) -> float:
    """Normalised area under the per-region-overlap curve up to ``max_fpr`` (Bergmann et al., MVTec AD).

    Every connected defect region (8-connectivity, per image) counts equally: at
    each threshold its overlap is the fraction of its pixels with ``map > t``;
    PRO(t) is the mean over all regions, FPR(t) the fraction of normal pixels
    above ``t``. Thresholds are the normal-pixel quantiles giving FPR 0 ..
    ``max_fpr`` in ``num_thresholds`` steps; the trapezoid area is divided by
    ``max_fpr`` (1.0 = perfect).
    """
    from scipy import ndimage

    m = np.asarray(masks) > 0
    a = np.asarray(maps, dtype=np.float64)
    if m.shape != a.shape:
        raise ValueError(f"masks {m.shape} and maps {a.shape} differ in shape")
    if m.ndim == 2:
        m, a = m[None], a[None]
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    if not m.any() or m.all():
        raise ValueError("PRO needs both defect pixels and normal pixels")
    if not np.all(np.isfinite(a)):
        raise ValueError("maps contain NaN or infinite values")
    regions = np.zeros(m.shape, np.int64)
    n_reg = 0
    for i in range(len(m)):
        lab, k = ndimage.label(m[i], structure=np.ones((3, 3), bool))
        regions[i] = np.where(lab > 0, lab + n_reg, 0)
        n_reg += k
    normal = np.sort(a[~m])
    fprs = np.linspace(0.0, max_fpr, int(num_thresholds))
    # threshold t_k: the value above which a fraction fprs[k] of normal pixels lies
    thr = np.quantile(normal, 1.0 - fprs, method="higher")
    real_fpr = 1.0 - np.searchsorted(normal, thr, side="right") / normal.size
    reg = regions[m] - 1
    vals = a[m]
    sizes = np.bincount(reg, minlength=n_reg).astype(np.float64)
    # thresholds are non-increasing: a defect pixel exceeds thr[k] exactly for k >= first[pixel]
    first = np.searchsorted(-thr, -vals, side="right")
    counts = np.zeros((n_reg, len(thr) + 1))
    np.add.at(counts, (reg, first), 1.0)
    hit = np.cumsum(counts, axis=1)[:, : len(thr)]  # pixels above thr[k], per region
    pro = (hit / sizes[:, None]).mean(0)
    return float(np.trapezoid(pro, real_fpr) / max_fpr) if hasattr(np, "trapezoid") \
        else float(np.trapz(pro, real_fpr) / max_fpr)


def pixel_summary(masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """Pixel-level localisation metrics on an MVTec-style test set: pixel AUROC, PRO (to FPR 0.3) and
    IoU at the pixel-ROC Youden threshold (an oracle figure like F1-max: the threshold uses the test masks)."""
    return {"pixel_auroc": pixel_auroc(masks, maps), "pro": pro_score(masks, maps),
            "iou_youden": iou_at(masks, maps, pixel_roc_threshold(masks, maps))}
