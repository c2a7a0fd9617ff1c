"""Caltech-256 (Griffin, Holub, Perona 2007) and paper 001's Table 1 protocol.

Source ``caltech256``: the official layout ``256_ObjectCategories/NNN.name/*.jpg``
(256 object classes ``001.ak47`` .. ``256.toad`` plus ``257.clutter``), as the
folder itself or the published ``256_ObjectCategories.tar`` (``.tar.gz``/``.zip``
of it also work; read in place, never extracted; decoded arrays of an archive are
cached like ``cifar10-jpeg``). Found under ``<data_dir>/caltech256/`` (or
``caltech-256/``, ``Caltech256/``, the data directory itself). Only images directly
inside a class folder count (the official copy has a stray ``056.dog/greg/``
duplicate folder). Class names are the folder names. Images differ in size and a
few are grey: all are resized to ``size`` x ``size`` (default 64, bilinear) and
made RGB. There is no official split: as for ``digits``, every third image of
each class in file order (positions 2, 5, 8, ...) is ``test``, the rest ``train``.

Protocol ``caltech-clutter`` (paper 001, Sec. 4.2 / Table 1, after the setting of
ALOCC and R-graph): ``positives`` (1, 3 or 5) classes drawn at random from the
256 object classes are normal; the test set is their test images plus as many
``257.clutter`` images (drawn from both splits: clutter is never trained on), so
each test set holds exactly 50 % outliers; if there are fewer clutter images
than positive test images, the positives are subsampled to match. The task is a
draw, ``draw0`` .. ``draw19`` (the paper repeats 20 times); draw ``d`` picks its
classes with ``numpy.random.default_rng([draw_seed, positives, d])``, so every
method sees the same 20 draws. Options: ``positives`` (default 1), ``draw_seed``
(0), ``outlier_fraction`` (0.5), ``val_fraction``, ``max_train``, ``seed``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .base import ImageSet
from .formats import DataFormatError, open_image_tree
from .protocols import PROTOCOLS, Split, _train_val, register_protocol

CLUTTER = "257.clutter"
ARCHIVES = ("256_ObjectCategories.tar", "256_ObjectCategories.tar.gz", "256_ObjectCategories.tgz",
            "256_ObjectCategories.zip")
FOLDERS = ("caltech256", "caltech-256", "Caltech256", "caltech_256", "")
N_DRAWS = 20
_CLASS_DIR = re.compile(r"^\d{3}\.\S+$")


def locate_caltech(spec: Any, data_dir: Path, split: str) -> Path:
    """The ``256_ObjectCategories`` folder or archive under one of :data:`FOLDERS`."""
    from .sources import _candidates, _raise_missing

    cands = _candidates(spec, data_dir)
    for folder in cands:
        if (folder / "256_ObjectCategories").is_dir():
            return folder / "256_ObjectCategories"
        for a in ARCHIVES:
            if (folder / a).is_file():
                return folder / a
    return _raise_missing(cands[0], ["256_ObjectCategories/ (or 256_ObjectCategories.tar)"], cands,
                          "Layout: 256_ObjectCategories/001.ak47/001_0001.jpg ... 257.clutter/257_0827.jpg.")


def _class_files(files: list, where: str) -> dict[str, list]:
    """``{class folder: [files directly inside it]}``; the class folder is the ``NNN.name`` part."""
    out: dict[str, list] = {}
    for f in files:
        for i, part in enumerate(f.parts[:-1]):
            if _CLASS_DIR.match(part):
                if i == len(f.parts) - 2:  # directly inside the class folder (skips e.g. 056.dog/greg/)
                    out.setdefault(part, []).append(f)
                break
    if not out:
        raise DataFormatError(f"{where}: no class folders named like 001.ak47/ holding images "
                              "(expected the Caltech-256 layout 256_ObjectCategories/NNN.name/*.jpg)")
    if CLUTTER not in out:
        raise DataFormatError(f"{where}: no {CLUTTER}/ folder; the Caltech-256 protocol needs the clutter class")
    return out


def load_caltech(location: Path, split: str, *, size: Any = 64, cache: bool = True) -> ImageSet:
    """Read Caltech-256 at ``location`` (folder or archive); see the module docstring for the split rule."""
    from .sources import _cache_file, _cache_load, _cache_save, _decode_entries, _parse_size

    hw = _parse_size(size)
    if hw is None:
        raise ValueError("caltech256: size must be given (its images differ in size)")
    use_cache = cache and location.is_file()
    opts = f"{hw}|caltech|v1"
    if use_cache:
        hit = _cache_load(_cache_file(location, "caltech256", split, opts), f"{location}:")
        if hit is not None:
            return ImageSet(hit["images"], hit["labels"], hit["class_names"], name="caltech256",
                            extra={"split": split, "source": str(location), "files": hit["files"]})
    where = str(location)
    result = None
    with open_image_tree(location) as files:
        by_class = _class_files(files, where)
        names = sorted(by_class)
        groups: dict[str, list] = {"train": [], "test": []}
        for c in names:
            for k, f in enumerate(by_class[c]):
                groups["test" if k % 3 == 2 else "train"].append((c, f))
        for s in (("train", "test") if use_cache else (split,)):
            images, labels, sources = _decode_entries(groups[s], names, f"{where} ({s})", hw, 3)
            if use_cache:
                _cache_save(_cache_file(location, "caltech256", s, opts), images, labels, names, sources,
                            f"{location}:")
            if s == split:
                result = ImageSet(images, labels, names, name="caltech256",
                                  extra={"split": split, "source": where, "files": sources})
    assert result is not None
    return result


# --------------------------------------------------------------------------- protocol

def draw_classes(data: ImageSet, positives: int, draw: int, draw_seed: int = 0) -> list[int]:
    """The ``positives`` normal classes of draw ``draw`` (seeded; never the clutter class)."""
    if CLUTTER not in data.class_names:
        raise ValueError(f"{data.name or 'data set'} has no {CLUTTER!r} class; caltech-clutter needs Caltech-256")
    clutter = data.class_names.index(CLUTTER)
    pool = [c for c in range(data.num_classes) if c != clutter and np.any(data.labels == c)]
    if not isinstance(positives, (int, np.integer)) or not 1 <= positives <= len(pool):
        raise ValueError(f"positives must be an integer in 1..{len(pool)}, got {positives!r}")
    rng = np.random.default_rng([int(draw_seed), int(positives), int(draw)])
    return sorted(int(c) for c in rng.choice(pool, size=int(positives), replace=False))


def _draw_index(task: object) -> int:
    text = str(task)
    num = text[4:] if text.startswith("draw") else text
    if not num.isdigit():
        raise ValueError(f"caltech-clutter tasks are draws 'draw0'..'draw{N_DRAWS - 1}' (or their numbers), "
                         f"got {task!r}")
    return int(num)


def caltech_clutter(train: ImageSet, test: ImageSet, task: object, *, positives: int = 1, draw_seed: int = 0,
                    outlier_fraction: float = 0.5, val_fraction: float = 0.1, max_train: int | None = None,
                    seed: int = 0) -> Split:
    """Paper 001 Table 1: ``positives`` drawn classes normal vs ``257.clutter`` outliers (module docstring)."""
    if not 0.0 < outlier_fraction < 1.0:
        raise ValueError(f"outlier_fraction must be in (0, 1), got {outlier_fraction}")
    draw = _draw_index(task)
    normal = draw_classes(train, int(positives), draw, draw_seed)
    clutter = train.class_names.index(CLUTTER)
    if test.class_names != train.class_names:
        raise ValueError("caltech-clutter: train and test sets have different class lists")
    tr, va = _train_val(train, normal, val_fraction, max_train, seed)
    rng = np.random.default_rng([int(draw_seed), int(positives), draw, int(seed), 1])
    pos_idx = np.flatnonzero(np.isin(test.labels, normal))
    pool = np.concatenate([test.images[test.labels == clutter], train.images[train.labels == clutter]])
    ratio = outlier_fraction / (1.0 - outlier_fraction)
    n_pos = len(pos_idx)
    if int(round(n_pos * ratio)) > len(pool):
        n_pos = int(len(pool) / ratio)
        pos_idx = np.sort(rng.choice(pos_idx, size=n_pos, replace=False))
    n_out = int(round(n_pos * ratio))
    if n_pos == 0 or n_out == 0:
        raise ValueError(f"caltech-clutter draw {draw}: no positive test images or no clutter images")
    outliers = pool[np.sort(rng.choice(len(pool), size=n_out, replace=False))]
    images = np.concatenate([test.images[pos_idx], outliers])
    labels = np.concatenate([np.zeros(n_pos, np.int64), np.ones(n_out, np.int64)])
    classes = np.concatenate([test.labels[pos_idx], np.full(n_out, clutter, np.int64)])
    names = [train.class_names[c] for c in normal]
    return Split(tr, va, images, labels, classes, normal, None, name=f"{train.name}:draw{draw}:{'+'.join(names)}",
                 info={"protocol": "caltech-clutter", "positives": int(positives), "draw": draw,
                       "draw_seed": int(draw_seed), "positive_classes": names, "max_train": max_train,
                       "outlier_fraction": float(outlier_fraction)})


def _default_draws(train: ImageSet) -> list[str]:
    return [f"draw{d}" for d in range(N_DRAWS)]


def register() -> None:
    """Add the ``caltech256`` source and the ``caltech-clutter`` protocol (called from :mod:`noveltylab.data`)."""
    from .sources import ALIASES, DATASETS, DatasetSpec

    DATASETS.setdefault("caltech256", DatasetSpec(
        "caltech256", "Caltech-256 (256 object classes + 257.clutter, 30607 images), official "
        "256_ObjectCategories layout; every third image per class is test; resized to 64 px RGB (option size=)",
        FOLDERS, (), locate_caltech, load_caltech, options=("size", "cache"),
        homepage="https://data.caltech.edu/records/nyy15-4j048", license="see the Caltech data page",
        manual="Caltech-256 has no automatic download here: get 256_ObjectCategories.tar from "
               "https://data.caltech.edu/records/nyy15-4j048 and put it (or its extracted "
               "256_ObjectCategories/ folder) in the folder named above."))
    for alias in ("caltech-256", "caltech_256", "256_objectcategories"):
        ALIASES.setdefault(alias, "caltech256")
    if "caltech-clutter" not in PROTOCOLS:
        register_protocol("caltech-clutter", lambda tr, te, task, **kw: caltech_clutter(tr, te, task, **kw),
                          _default_draws,
                          "paper 001 Table 1: positives=1|3|5 random Caltech-256 classes normal vs 257.clutter, "
                          "50 % outliers; tasks draw0..draw19 (option draw_seed=)")
