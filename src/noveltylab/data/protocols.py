"""Evaluation protocols: turn a labelled train/test pair of ImageSets into
novelty-detection splits. A protocol never knows which method will run.

Every protocol returns a :class:`Split` with normal training images, a
normal validation split carved from the training images (for early
stopping, normalisation constants and thresholds: never test data), test
images with labels (1 = novel) and, where the source has them, pixel masks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .base import ImageSet


@dataclass
class Split:
    """One novelty-detection task."""

    train: np.ndarray            # uint8 (N, H, W, C), normal only
    val: np.ndarray              # uint8, normal only, disjoint from train
    test: np.ndarray             # uint8, normal and novel
    test_labels: np.ndarray      # int64, 1 = novel, 0 = normal
    test_classes: np.ndarray     # original class label of each test image
    normal_classes: list[int]
    test_masks: np.ndarray | None = None   # uint8 (N, H, W), 1 = anomalous pixel
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.train) == 0:
            raise ValueError(f"split {self.name!r}: no normal training images")
        if len(np.unique(self.test_labels)) < 2:
            raise ValueError(f"split {self.name!r}: the test set needs both normal and novel images")


def _resolve(data: ImageSet, classes: int | str | Sequence[int | str]) -> list[int]:
    if isinstance(classes, (int, str, np.integer)):
        classes = [classes]
    out = sorted({data.class_index(c) for c in classes})
    if not out:
        raise ValueError("no normal class given")
    for c in out:
        if not np.any(data.labels == c):
            raise ValueError(f"class {c} ({data.class_names[c]}) has no images in {data.name or 'the data set'}")
    return out


def cap_per_class(labels: np.ndarray, max_total: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a seeded, stratified subset of at most ``max_total`` items.

    Each class keeps a share proportional to its size (at least one item), so
    capped training sets for the CPU profiles keep the class balance.
    """
    idx = np.arange(len(labels))
    if max_total is None or max_total >= len(labels):
        return idx
    if max_total < 1:
        raise ValueError(f"max_train must be >= 1, got {max_total}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * max_total)).astype(int)
    short = max_total - quota.sum()
    for i in np.argsort(-(counts / counts.sum() * max_total - quota))[:max(short, 0)]:
        quota[i] += 1
    keep = [rng.choice(idx[labels == c], size=min(q, n), replace=False) for c, q, n in zip(classes, quota, counts)]
    return np.sort(np.concatenate(keep))


def _train_val(train: ImageSet, normal: list[int], val_fraction: float, max_train: int | None,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    sel = np.flatnonzero(np.isin(train.labels, normal))
    perm = rng.permutation(sel)
    n_val = int(round(len(perm) * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = max(1, n_val)
    val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    tr_idx = tr_idx[cap_per_class(train.labels[tr_idx], max_train, seed)]
    if max_train is not None and len(val_idx) > max(1, int(round(max_train * val_fraction))):
        val_idx = np.sort(rng.choice(val_idx, size=max(1, int(round(max_train * val_fraction))), replace=False))
    return train.images[tr_idx], train.images[val_idx]


def normal_train_val(train: ImageSet, normal: int | str | Sequence[int | str], *, val_fraction: float = 0.1,
                     max_train: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal training and validation images of the ``normal`` class(es) (used by ``noveltylab fit``)."""
    return _train_val(train, _resolve(train, normal), val_fraction, max_train, seed)


def one_class(train: ImageSet, test: ImageSet, normal: int | str | Sequence[int | str], *,
              val_fraction: float = 0.1, max_train: int | None = None, seed: int = 0) -> Split:
    """One-class / SIMO: ``normal`` class(es) are normal, every other class is novel.

    Several normal classes at once are given as a list. The full test set is used.
    """
    normal_ids = _resolve(train, normal)
    tr, va = _train_val(train, normal_ids, val_fraction, max_train, seed)
    labels = (~np.isin(test.labels, normal_ids)).astype(np.int64)
    names = "+".join(train.class_names[c] for c in normal_ids)
    return Split(tr, va, test.images, labels, test.labels.copy(), normal_ids, test.masks,
                 name=f"{train.name}:{names}", info={"protocol": "one-class", "max_train": max_train})


def leave_one_out(train: ImageSet, test: ImageSet, novel: int | str, *, val_fraction: float = 0.1,
                  max_train: int | None = None, seed: int = 0) -> Split:
    """Leave-one-class-out / MISO: every class but ``novel`` is normal; AUROC on the full test set.

    ``max_train`` caps the (large) multi-class training set, stratified by class.
    """
    novel_id = train.class_index(novel)
    normal_ids = [c for c in range(train.num_classes) if c != novel_id]
    split = one_class(train, test, normal_ids, val_fraction=val_fraction, max_train=max_train, seed=seed)
    split.name = f"{train.name}:not-{train.class_names[novel_id]}"
    split.info["protocol"] = "leave-one-out"
    return split


def outlier_fraction(train: ImageSet, test: ImageSet, normal: int | str | Sequence[int | str], fraction: float,
                     *, val_fraction: float = 0.1, max_train: int | None = None, seed: int = 0) -> Split:
    """All normal test images plus a seeded random sample of novel ones so that
    novel images make up ``fraction`` of the test set (paper 001: 10-50 %)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"outlier fraction must be in (0, 1), got {fraction}")
    split = one_class(train, test, normal, val_fraction=val_fraction, max_train=max_train, seed=seed)
    rng = np.random.default_rng(seed + 7919)
    normal_idx = np.flatnonzero(split.test_labels == 0)
    novel_idx = np.flatnonzero(split.test_labels == 1)
    n_out = int(round(len(normal_idx) * fraction / (1.0 - fraction)))
    if n_out > len(novel_idx):
        raise ValueError(f"only {len(novel_idx)} novel test images, {n_out} needed for fraction {fraction}")
    keep = np.sort(np.concatenate([normal_idx, rng.choice(novel_idx, size=n_out, replace=False)]))
    split.test, split.test_labels, split.test_classes = split.test[keep], split.test_labels[keep], split.test_classes[keep]
    if split.test_masks is not None:
        split.test_masks = split.test_masks[keep]
    split.name += f"@{int(round(fraction * 100))}%"
    split.info.update(protocol="outlier-fraction", fraction=fraction)
    return split


def _one_class_task(train: ImageSet, test: ImageSet, task: object, **kw) -> Split:
    return one_class(train, test, task, **kw)  # type: ignore[arg-type]


def _loo_task(train: ImageSet, test: ImageSet, task: object, **kw) -> Split:
    return leave_one_out(train, test, task, **kw)  # type: ignore[arg-type]


def _fraction_task(train: ImageSet, test: ImageSet, task: object, *, fraction: float = 0.1, **kw) -> Split:
    return outlier_fraction(train, test, task, fraction, **kw)  # type: ignore[arg-type]


def classes_with_images(train: ImageSet) -> list[int]:
    """Default tasks: the classes that have training images (MVTec-style sets train only ``good``)."""
    return [c for c in range(train.num_classes) if np.any(train.labels == c)]


# name -> (builder(train, test, task, **kw), default tasks(train) , help)
PROTOCOLS: dict[str, tuple[Callable[..., Split], Callable[[ImageSet], list], str]] = {
    "one-class": (_one_class_task, classes_with_images,
                  "each class in turn is normal, all other classes novel (SIMO)"),
    "leave-one-out": (_loo_task, classes_with_images,
                      "each class in turn is novel, all other classes normal (MISO)"),
    "outlier-fraction": (_fraction_task, classes_with_images,
                         "one class normal; test set with a fixed fraction of novel images (option fraction=)"),
}


def register_protocol(name: str, builder: Callable[..., Split], default_tasks: Callable[[ImageSet], list],
                      help: str) -> None:
    """Add a protocol: ``builder(train, test, task, **options) -> Split``; ``default_tasks(train)``
    lists the tasks (usually every class) the benchmark runs when none are given."""
    if name in PROTOCOLS:
        raise ValueError(f"protocol {name!r} registered twice")
    PROTOCOLS[name] = (builder, default_tasks, help)


def make_splits(protocol: str, train: ImageSet, test: ImageSet, tasks: Sequence | None = None,
                **options) -> Iterator[tuple[object, Split]]:
    """Yield ``(task, split)`` for each task (class, or list of classes) of ``protocol``.

    Tasks default to every class that has training images. A task may be a list of classes for the
    several-normal-classes setting of ``one-class``.
    """
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    build, default_tasks, _ = PROTOCOLS[protocol]
    for task in (default_tasks(train) if tasks is None else tasks):
        yield task, build(train, test, task, **options)
