"""Multi-class novelty protocols (paper 004, Table 3): every class of one data set is normal,
the test images of *another* data set are novel.

* ``multiclass-unlabeled``: the normal training images carry no labels.
* ``multiclass-labeled``: the same split, with the class labels of the normal training and
  validation images in ``split.info["train_labels"]`` / ``["val_labels"]`` for methods that
  use them as extra supervision (e.g. ``UNODE.fit(x, labels=...)``).

The task is the name of the novel data set (anything :func:`load_dataset` accepts);
the default tasks are the other built-in real data sets (mnist, fashion-mnist,
cifar10-jpeg). Novel images are resized (bilinear, antialiased) to the normal images'
size and their channels matched (grey repeated to RGB, RGB averaged to grey). Options:
``data_dir`` (where the novel data set lives; default: the usual data directory),
``max_train`` (stratified cap on the normal training set), ``max_novel`` (seeded cap on
novel test images; default: as many as there are normal test images), ``val_fraction``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import ImageSet
from .protocols import PROTOCOLS, Split, cap_per_class, register_protocol

DEFAULT_NOVEL = ("mnist", "fashion-mnist", "cifar10-jpeg")


def match_images(images: np.ndarray, height: int, width: int, channels: int, batch_size: int = 1000) -> np.ndarray:
    """uint8 (N, h, w, c) -> uint8 (N, height, width, channels): bilinear resize, channel matching."""
    out = np.empty((len(images), height, width, channels), np.uint8)
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s:s + batch_size]).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] != channels:
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        if tuple(x.shape[-2:]) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        out[s:s + batch_size] = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def _novel_set(name: str, data_dir: Any) -> ImageSet:
    from .sources import load_dataset

    return load_dataset(name, split="test", data_dir=data_dir)


def multiclass(train: ImageSet, test: ImageSet, novel: str | ImageSet, *, labeled: bool = False,
               data_dir: Any = None, val_fraction: float = 0.1, max_train: int | None = None,
               max_novel: int | None = None, seed: int = 0) -> Split:
    """All classes of ``train`` normal; test = ``test`` (normal) + the test split of ``novel``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    nov = novel if isinstance(novel, ImageSet) else _novel_set(str(novel), data_dir)
    nov_name = nov.name or str(novel)
    if train.name and nov_name == train.name:
        raise ValueError(f"the novel data set must differ from the normal one ({train.name})")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(train))
    n_val = max(1, int(round(len(perm) * val_fraction))) if val_fraction > 0 else 0
    val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    tr_idx = tr_idx[cap_per_class(train.labels[tr_idx], None if max_train is None else int(max_train), seed)]
    if max_train is not None and len(val_idx) > max(1, int(round(int(max_train) * val_fraction))):
        val_idx = np.sort(rng.choice(val_idx, size=max(1, int(round(int(max_train) * val_fraction))), replace=False))
    cap = len(test) if max_novel is None else int(max_novel)
    nidx = np.sort(rng.choice(len(nov), size=min(cap, len(nov)), replace=False))
    _, h, w, c = train.images.shape
    novel_imgs = match_images(nov.images[nidx], h, w, c)
    test_imgs = np.concatenate([test.images, novel_imgs])
    labels = np.concatenate([np.zeros(len(test), np.int64), np.ones(len(novel_imgs), np.int64)])
    classes = np.concatenate([test.labels, np.full(len(novel_imgs), -1, np.int64)])
    info = {"protocol": "multiclass-labeled" if labeled else "multiclass-unlabeled", "novel_dataset": nov_name,
            "max_train": max_train}
    if labeled:
        info["train_labels"] = train.labels[tr_idx].copy()
        info["val_labels"] = train.labels[val_idx].copy()
    return Split(train.images[tr_idx], train.images[val_idx], test_imgs, labels, classes,
                 list(range(train.num_classes)), None, name=f"{train.name}:all-vs-{nov_name}", info=info)


def _default_tasks(d: ImageSet) -> list:
    return [n for n in DEFAULT_NOVEL if n != d.name]


def _unlabeled(train: ImageSet, test: ImageSet, task: object, data_dir: Any = None, **kw: Any) -> Split:
    return multiclass(train, test, task, labeled=False, data_dir=data_dir, **kw)  # type: ignore[arg-type]


def _labeled(train: ImageSet, test: ImageSet, task: object, data_dir: Any = None, **kw: Any) -> Split:
    return multiclass(train, test, task, labeled=True, data_dir=data_dir, **kw)  # type: ignore[arg-type]


if "multiclass-unlabeled" not in PROTOCOLS:
    register_protocol("multiclass-unlabeled", _unlabeled, _default_tasks,
                      "all classes of the data set normal (unlabeled); novel = the test split of another data "
                      "set given as the task (resized/channel-matched); options data_dir=, max_novel=")
if "multiclass-labeled" not in PROTOCOLS:
    register_protocol("multiclass-labeled", _labeled, _default_tasks,
                      "as multiclass-unlabeled, with the normal class labels in split.info['train_labels'] "
                      "for methods that use labels")
