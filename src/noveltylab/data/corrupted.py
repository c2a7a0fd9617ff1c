"""Corrupted one-class protocol (paper 004, Table 2: MNIST-C, FMNIST-C, CIFAR-10-C style).

``one-class-corrupted``: train exactly as ``one-class`` (clean normal images), then
apply common corruptions (:func:`noveltylab.augment.corrupt`, CIFAR-10-C parameters)
to *every* test image, normal and novel alike, so that only the test distribution
shifts. Options:

* ``corruption``: a name from :data:`noveltylab.augment.ALL_CORRUPTIONS`, or a set:
  ``"mixed"`` (default; the 11 corruptions of :data:`~noveltylab.augment.CORRUPTIONS`),
  ``"cifar10-c"`` or ``"mnist-c"`` (the published lists, without the ones that need external
  data), ``"cifar10-c-nofrost"`` (``cifar10-c`` plus the procedural snow: every CIFAR-10-C type
  but frost): each test image gets one corruption of the set drawn uniformly at random (seeded);
* ``severity``: 1..5 (default 3);
* ``corruption_seed``: seed of the corruption noise (default 0; independent of the
  training seed so that every seed sees the same corrupted test set).

The corrupted test set is cached per (test set, corruption, severity, seed), so
running all ten classes corrupts the test images once.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import ImageSet
from .protocols import PROTOCOLS, Split, one_class, register_protocol

_CACHE: dict[tuple, np.ndarray] = {}


def corrupt_images(images: np.ndarray, corruption: str = "mixed", severity: int = 3, seed: int = 0,
                   batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W, C) -> corrupted uint8 images and the corruption index of each image
    (into the set's tuple, :data:`~noveltylab.augment.CORRUPTION_SETS`; for one named corruption
    into :data:`~noveltylab.augment.CORRUPTIONS` when it is there, else 0)."""
    from ..augment import ALL_CORRUPTIONS, CORRUPTION_SETS, CORRUPTIONS, corrupt

    severity = int(severity)
    if corruption not in CORRUPTION_SETS and corruption not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; use one of the sets {', '.join(CORRUPTION_SETS)} "
                         f"or one of {', '.join(ALL_CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    g = torch.Generator().manual_seed(int(seed))
    n = len(images)
    names = CORRUPTION_SETS.get(corruption) or (CORRUPTIONS if corruption in CORRUPTIONS else (corruption,))
    which = (torch.randint(0, len(names), (n,), generator=g) if corruption in CORRUPTION_SETS
             else torch.full((n,), names.index(corruption))).numpy()
    out = np.empty_like(images)
    for ci, name in enumerate(names):
        idx = np.flatnonzero(which == ci)
        for s in range(0, len(idx), batch_size):
            part = idx[s:s + batch_size]
            x = torch.from_numpy(images[part]).permute(0, 3, 1, 2).float() / 255.0
            y = corrupt(x, name, severity, generator=g)
            out[part] = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out, which


def one_class_corrupted(train: ImageSet, test: ImageSet, normal: Any, *, corruption: str = "mixed",
                        severity: int = 3, corruption_seed: int = 0, **kw: Any) -> Split:
    """``one-class`` with every test image corrupted (see the module docstring)."""
    severity = int(severity)
    split = one_class(train, test, normal, **kw)
    key = (id(test), len(test), test.name, corruption, severity, int(corruption_seed))
    if key not in _CACHE:
        if len(_CACHE) > 4:
            _CACHE.clear()
        _CACHE[key] = corrupt_images(test.images, corruption, severity, int(corruption_seed))[0]
    split.test = _CACHE[key]
    split.name += f"[{corruption}@{severity}]"
    split.info.update(protocol="one-class-corrupted", corruption=corruption, severity=severity,
                      corruption_seed=int(corruption_seed))
    return split


def _task(train: ImageSet, test: ImageSet, task: object, **kw: Any) -> Split:
    return one_class_corrupted(train, test, task, **kw)


if "one-class-corrupted" not in PROTOCOLS:
    register_protocol("one-class-corrupted", _task, lambda d: list(range(d.num_classes)),
                      "one-class with every test image (normal and novel) corrupted by common corruptions "
                      "(options corruption=mixed|cifar10-c|cifar10-c-nofrost|mnist-c|<name>, severity=1..5, "
                      "corruption_seed=0)")
