"""The near-novelty-detection (near-ND) protocol of paper 002 (FITYMI).

For a normal class ``C_i``, the near anomalies are the test images of the
*closest* other class. Closeness (paper Eq. 2, the CLP criterion): train a
classifier ``P`` on the remaining classes; the closeness of class ``j`` is
``sum_{x in normal train} P(y = j | x)``; the class with the largest sum is
the near class. The classes may come from the same data set (K - 1
remaining classes) or from a second data set (``near_source=``; the paper's
CIFAR-10 vs CIFAR-100: every class of the source is a candidate).

The classifier is fixed and never the detector under test: multinomial
logistic regression (scikit-learn) on pooled features of the shared ImageNet
MobileNetV2 (``clp_features="mobilenet_v2"``, inputs resized to
``clp_input_size``) or on 16x16 grey-level pixels (``"pixels"``, no weights
needed). Each class contributes at most ``clp_per_class`` training images.
The closeness matrix is computed once per data set pair and cached in memory.

The paper's other criterion, bottom-1 (the class on which a given detector
is worst), depends on the detector, so it is not a protocol choice here: run
``one-class`` and read it off the test scores with :func:`per_class_auroc` /
:func:`bottom1` (the FITYMI benchmark records it as an extra metric); a
class chosen that way can then be passed explicitly as ``near=<class>``.

Protocol ``near-nd`` (registered on import), options:
``near`` ("clp" or a class name/index of the near source), ``near_source``
(data set name, default: the same data set), ``data_dir`` (where to load the
source from), ``clp_features``, ``clp_input_size``, ``clp_per_class``,
plus the usual ``val_fraction``, ``max_train``, ``seed``.
Test set = normal test images (label 0) + near-class test images (label 1);
``test_classes`` holds the normal class index for normal images and
``-1 - j`` for near images of source class ``j`` when the source is another
data set.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ..metrics import bottom1, per_class_auroc  # noqa: F401  (re-exported: the bottom-1 near class)
from .base import ImageSet
from .protocols import PROTOCOLS, Split, _resolve, _train_val, register_protocol

__all__ = ["closeness_scores", "closest_class", "near_nd", "per_class_auroc", "bottom1", "clear_cache"]

_FEATURE_CACHE: dict[tuple, np.ndarray] = {}
_CLOSENESS_CACHE: dict[tuple, np.ndarray] = {}


def clear_cache() -> None:
    _FEATURE_CACHE.clear()
    _CLOSENESS_CACHE.clear()


def _fingerprint(data: ImageSet, idx: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(str(data.images.shape).encode())
    h.update(np.ascontiguousarray(idx).tobytes())
    h.update(np.ascontiguousarray(data.images[idx[:64]]).tobytes())
    return h.hexdigest()


def _features(data: ImageSet, idx: np.ndarray, kind: str, input_size: int) -> np.ndarray:
    key = (_fingerprint(data, idx), kind, input_size)
    if key in _FEATURE_CACHE:
        return _FEATURE_CACHE[key]
    import torch

    x = torch.from_numpy(data.images[idx]).permute(0, 3, 1, 2).float() / 255.0
    if kind == "pixels":
        import torch.nn.functional as F

        g = x.mean(1, keepdim=True)
        f = F.interpolate(g, size=(16, 16), mode="bilinear", align_corners=False).flatten(1).numpy()
    elif kind == "mobilenet_v2":
        from ..nets.weights import resolve_weights
        from ..nets.mobilenet import load_mobilenet_v2
        from ..train import map_batches

        net = load_mobilenet_v2(resolve_weights("mobilenet_v2", "auto"), input_size=input_size)
        f = map_batches(net.embed, x, batch_size=128, device="cpu").numpy()
    else:
        raise ValueError(f"clp_features must be 'mobilenet_v2' or 'pixels', got {kind!r}")
    _FEATURE_CACHE[key] = f.astype(np.float32)
    return _FEATURE_CACHE[key]


def _sample(labels: np.ndarray, classes: Sequence[int], per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        out.append(np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)))
    return np.concatenate(out)


def closeness_scores(train: ImageSet, normal: int, source: ImageSet | None = None, *,
                     features: str = "mobilenet_v2", input_size: int = 64, per_class: int = 300,
                     seed: int = 0) -> np.ndarray:
    """Eq. 2 closeness of every candidate class to ``normal`` (length = source classes).

    ``source=None``: candidates are the other classes of ``train`` (the entry of
    ``normal`` itself is ``-inf``). Otherwise every class of ``source``.
    Values are mean probabilities (sum / number of normal images).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if per_class < 2:
        raise ValueError(f"clp_per_class must be >= 2, got {per_class}")
    src = train if source is None else source
    key = (_fingerprint(train, np.flatnonzero(train.labels == normal)), normal,
           None if source is None else _fingerprint(src, np.arange(len(src))), features, input_size,
           per_class, seed)
    if key in _CLOSENESS_CACHE:
        return _CLOSENESS_CACHE[key]
    # one seeded sample of every class, embedded once per data set and reused for every normal class
    all_idx = _sample(src.labels, range(src.num_classes), per_class, seed)
    f_all = _features(src, all_idx, features, input_size)
    keep = np.ones(len(all_idx), bool) if source is not None else src.labels[all_idx] != normal
    cand_idx, fc = all_idx[keep], f_all[keep]
    if source is None:
        fn = f_all[~keep]
    else:
        norm_idx = _sample(train.labels, [normal], per_class, seed + 1)
        fn = _features(train, norm_idx, features, input_size)
    scaler = StandardScaler().fit(fc)
    clf = LogisticRegression(max_iter=300, C=0.1)
    clf.fit(scaler.transform(fc), src.labels[cand_idx])
    p = clf.predict_proba(scaler.transform(fn)).mean(0)
    out = np.full(src.num_classes, -np.inf)
    out[clf.classes_] = p
    _CLOSENESS_CACHE[key] = out
    return out


def closest_class(train: ImageSet, normal: int, source: ImageSet | None = None, **kw: Any) -> int:
    """Index (in the source) of the class with the largest Eq. 2 closeness to ``normal``."""
    return int(np.argmax(closeness_scores(train, normal, source, **kw)))


def near_nd(train: ImageSet, test: ImageSet, normal: int | str, *, near: int | str = "clp",
            near_source: str | None = None, source_train: ImageSet | None = None,
            source_test: ImageSet | None = None, data_dir: str | None = None,
            clp_features: str = "mobilenet_v2", clp_input_size: int = 64, clp_per_class: int = 300,
            val_fraction: float = 0.1, max_train: int | None = None, seed: int = 0) -> Split:
    """Normal class ``normal`` vs its nearest class (Eq. 2, or ``near=<class>`` given explicitly).

    The near class comes from ``near_source`` (a data set name loaded with
    ``load_dataset(..., data_dir=data_dir)``) or from ``source_train`` /
    ``source_test`` ImageSets, else from the same data set.
    """
    normal_id = _resolve(train, normal)[0]
    if isinstance(normal, (list, tuple)) and len(normal) != 1:
        raise ValueError("near-nd takes one normal class per task")
    if near_source is not None and source_train is None:
        from .sources import load_dataset

        source_train = load_dataset(near_source, "train", data_dir=data_dir)
        source_test = load_dataset(near_source, "test", data_dir=data_dir)
    other = source_train is not None
    if other and source_test is None:
        raise ValueError("source_test is needed with source_train")
    src_train = source_train if other else train
    src_test = source_test if other else test
    if other and src_test.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(f"near source images {src_test.images.shape[1:]} differ in shape from the normal "
                         f"data set's {test.images.shape[1:]}; resize them to one size first")
    closeness = None
    if isinstance(near, str) and near == "clp":
        closeness = closeness_scores(train, normal_id, src_train if other else None, features=clp_features,
                                     input_size=clp_input_size, per_class=clp_per_class, seed=seed)
        near_id = int(np.argmax(closeness))
    else:
        near_id = src_train.class_index(near)
        if not other and near_id == normal_id:
            raise ValueError(f"near class {near!r} is the normal class itself")
    tr, va = _train_val(train, [normal_id], val_fraction, max_train, seed)
    n_idx = np.flatnonzero(test.labels == normal_id)
    a_idx = np.flatnonzero(src_test.labels == near_id)
    if len(a_idx) == 0:
        raise ValueError(f"near class {near_id} has no test images")
    images = np.concatenate([test.images[n_idx], src_test.images[a_idx]])
    labels = np.concatenate([np.zeros(len(n_idx), np.int64), np.ones(len(a_idx), np.int64)])
    classes = np.concatenate([test.labels[n_idx], (-1 - src_test.labels[a_idx]) if other
                              else src_test.labels[a_idx]])
    near_name = src_train.class_names[near_id]
    info = {"protocol": "near-nd", "near_class": near_id, "near_class_name": near_name,
            "near_source": near_source or (src_train.name if other else None), "criterion":
            "clp" if closeness is not None else "given", "max_train": max_train}
    if closeness is not None:
        info["closeness"] = {src_train.class_names[i]: float(v) for i, v in enumerate(closeness) if np.isfinite(v)}
    return Split(tr, va, images, labels, classes.astype(np.int64), [normal_id], None,
                 name=f"{train.name}:{train.class_names[normal_id]}-vs-{near_name}", info=info)


def _near_task(train: ImageSet, test: ImageSet, task: object, data_dir: Any = None, **kw: Any) -> Split:
    return near_nd(train, test, task, data_dir=data_dir, **kw)  # type: ignore[arg-type]


if "near-nd" not in PROTOCOLS:
    register_protocol("near-nd", _near_task, lambda d: list(range(d.num_classes)),
                      "each class in turn is normal; novel = test images of its closest class by the Eq. 2 "
                      "closeness score (paper 002); options near=clp|<class>, near_source=<data set>")
