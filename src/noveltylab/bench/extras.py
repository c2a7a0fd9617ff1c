"""Named extra per-task metrics a spec entry can ask for (``extras = ["near_clp", "bottom1"]``).

Each is computed from the test scores the task already has (no second scoring pass)
with the library's metric and protocol functions, so a study that needs them stays a
spec entry. ``near_clp``: AUROC of the normal class against its Eq. 2 closest class
(equals the ``near-nd`` protocol's AUROC on the same model); ``bottom1``: the other
class this detector separates worst, and that AUROC (paper 002's bottom-1).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import metrics
from ..data.protocols import Split


def _one_normal(split: Split) -> int | None:
    ok = split.info.get("protocol", "one-class") == "one-class" and len(split.normal_classes) == 1
    return split.normal_classes[0] if ok else None


def near_clp(det: Any, split: Split, scores: np.ndarray, train: Any) -> dict[str, float]:
    from ..data.near_nd import closest_class

    normal = _one_normal(split)
    if normal is None:
        return {}
    near = closest_class(train, normal)
    per = metrics.per_class_auroc(scores, split.test_labels, split.test_classes)
    return {"near_clp_auroc": per[near], "near_clp_class": float(near)}


def bottom1(det: Any, split: Split, scores: np.ndarray, train: Any) -> dict[str, float]:
    if _one_normal(split) is None:
        return {}
    cls, value = metrics.bottom1(scores, split.test_labels, split.test_classes)
    return {"bottom1_auroc": value, "bottom1_class": float(cls)}


EXTRAS: dict[str, Callable[..., dict[str, float]]] = {"near_clp": near_clp, "bottom1": bottom1}


def combined(names: list[str], train: Any) -> Callable[[Any, Split, np.ndarray], dict[str, float]] | None:
    """One ``extra_metrics(det, split, scores)`` function computing every named extra."""
    unknown = [n for n in names if n not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown extra metric(s) {unknown}; available: {', '.join(EXTRAS)}")
    if not names:
        return None

    def extra(det: Any, split: Split, scores: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        for n in names:
            out.update(EXTRAS[n](det, split, scores, train))
        return out
    return extra
