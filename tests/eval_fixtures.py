"""Small labelled image folders for the evaluate / report / serve / export tests (issue 15).

Built from scikit-learn's embedded 8x8 digits, so they need no download:
a class-folder test set and an MVTec-AD-layout set whose novel images carry
a bright square with its ground-truth mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _digits():
    from noveltylab.data import load_dataset

    return load_dataset("digits", "train"), load_dataset("digits", "test")


def _up(a: np.ndarray, f: int = 4) -> np.ndarray:
    return np.kron(a[..., 0], np.ones((f, f), np.uint8))


def _save(a: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def class_folders(root: Path) -> dict[str, int]:
    """``root/{train/good, test/good, test/one, test/seven}`` (8x8 digits 0 = normal) plus decoys that must be
    skipped (a ``*_mask.png`` in good/, a hidden folder). Returns the image count per test class."""
    tr, te = _digits()
    for i, a in enumerate(tr.images[tr.labels == 0]):
        _save(a[..., 0], root / "train" / "good" / f"{i:03d}.png")
    counts = {}
    for cls, digit, n in (("good", 0, 40), ("one", 1, 25), ("seven", 7, 20)):
        imgs = te.images[te.labels == digit][:n]
        for i, a in enumerate(imgs):
            _save(a[..., 0], root / "test" / cls / f"{i:03d}.png")
        counts[cls] = len(imgs)
    _save(np.zeros((8, 8), np.uint8), root / "test" / "good" / "000_mask.png")
    _save(np.full((8, 8), 255, np.uint8), root / "test" / ".cache" / "junk.png")
    return counts


def mvtec_folder(root: Path, n_train: int = 80, n_good: int = 30, n_bad: int = 20) -> Path:
    """MVTec-AD layout at 32x32 px: train/good, test/good, test/square + ground_truth/square/*_mask.png."""
    tr, te = _digits()
    rng = np.random.default_rng(0)
    for i, a in enumerate(tr.images[tr.labels == 0][:n_train]):
        _save(_up(a), root / "train" / "good" / f"{i:03d}.png")
    normal = te.images[te.labels == 0]
    for i, a in enumerate(normal[:n_good]):
        _save(_up(a), root / "test" / "good" / f"{i:03d}.png")
    for i in range(n_bad):
        img = _up(normal[i % len(normal)]).copy()
        mask = np.zeros_like(img)
        r, c = rng.integers(0, 24, 2)
        img[r:r + 8, c:c + 8] = 255
        mask[r:r + 8, c:c + 8] = 255
        _save(img, root / "test" / "square" / f"{i:03d}.png")
        _save(mask, root / "ground_truth" / "square" / f"{i:03d}_mask.png")
    return root


def fit_localiser(train_folder: Path):
    """A small, fast localising detector (NLN AE on 8-px patches of 32-px images), calibrated."""
    import noveltylab
    from noveltylab.images import as_images

    x = as_images(train_folder)
    det = noveltylab.create("nln-ae-patch", profile="demo", image_size=32, patch_size=8)
    det.fit(x[:-16])
    return det.calibrate(x[-16:], fpr=0.1)
