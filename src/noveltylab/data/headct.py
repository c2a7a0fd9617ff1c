"""Head CT - hemorrhage (Kitamura 2018; Kaggle): 200 head CT slices, 100 with hemorrhage.

Layout (as distributed): a folder holding ``labels.csv`` (columns ``id`` and
``hemorrhage``, 0/1; the header may have spaces, ``id, hemorrhage``) and the
PNGs ``000.png`` .. ``199.png``, either beside ``labels.csv`` or in a
``head_ct/`` sub-folder. Found as ``<data_dir>/head-ct/`` (or ``head_ct/``,
``headct/``), or given directly as ``load_dataset("head-ct", data_dir=...)``.

Classes: ``normal`` (0) and ``hemorrhage`` (1). There is no official split:
as for ``digits``, every third image of each class in id order (positions 2,
5, 8, ...) is ``test``, the rest ``train`` (67 + 33 per class), so the usual
one-class task (normal class ``normal``) trains on 67 normal slices and tests
on 33 normal + 33 hemorrhage. The slices differ in size: they are resized to
``size`` (default 256 x 256, bilinear); grey stays one channel.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from .base import ImageSet
from .formats import DataFormatError, decode_image, stack_images

HEADCT_CLASSES = ("normal", "hemorrhage")
HEADCT_FOLDERS = ("head-ct", "head_ct", "headct", "Head CT", "")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _image_dir(folder: Path) -> Path | None:
    for cand in (folder, folder / "head_ct", folder / "images"):
        if cand.is_dir() and any(p.suffix.lower() in _IMAGE_SUFFIXES for p in cand.iterdir()):
            return cand
    return None


def locate_headct(spec: Any, data_dir: Path, split: str) -> Path:
    """The folder holding ``labels.csv`` (and the PNGs or a ``head_ct/`` folder of them)."""
    from .sources import _candidates, _raise_missing

    cands = _candidates(spec, data_dir)
    for folder in cands:
        if (folder / "labels.csv").is_file() and _image_dir(folder) is not None:
            return folder
    return _raise_missing(cands[0], ["labels.csv", "000.png ... 199.png (or head_ct/*.png)"], cands)


def read_labels(path: Path) -> dict[int, int]:
    """``labels.csv`` -> ``{id: hemorrhage}``; clear errors for a wrong header or values."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataFormatError(f"{path} is empty; expected a header 'id,hemorrhage'")
    header = [h.strip().lower() for h in rows[0]]
    if "id" not in header or "hemorrhage" not in header:
        raise DataFormatError(f"{path}: header {rows[0]} lacks the columns 'id' and 'hemorrhage'")
    i_id, i_lab = header.index("id"), header.index("hemorrhage")
    out: dict[int, int] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            key, lab = int(row[i_id].strip()), int(row[i_lab].strip())
        except (ValueError, IndexError):
            raise DataFormatError(f"{path} line {n}: expected an integer id and hemorrhage 0/1, got {row}") from None
        if lab not in (0, 1):
            raise DataFormatError(f"{path} line {n}: hemorrhage must be 0 or 1, got {lab}")
        if key in out:
            raise DataFormatError(f"{path} line {n}: id {key} appears twice")
        out[key] = lab
    if not out:
        raise DataFormatError(f"{path} lists no images")
    return out


def load_headct(location: Path, split: str, *, size: Any = 256, channels: int | None = None) -> ImageSet:
    """Read the Head CT folder ``location``; see the module docstring for the split rule."""
    from .sources import _parse_size

    hw = _parse_size(size)
    labels = read_labels(location / "labels.csv")
    img_dir = _image_dir(location)
    files = {}
    for p in sorted(img_dir.iterdir()) if img_dir is not None else []:
        if p.suffix.lower() in _IMAGE_SUFFIXES and p.stem.isdigit():
            files.setdefault(int(p.stem), p)
    missing = sorted(set(labels) - set(files))
    if missing:
        raise DataFormatError(f"{location}: labels.csv lists ids without an image file, e.g. "
                              f"{missing[:5]} (expected {img_dir}/{missing[0]:03d}.png)")
    ids = sorted(labels)
    chosen = []
    for cls in (0, 1):
        of_cls = [i for i in ids if labels[i] == cls]
        chosen += [i for k, i in enumerate(of_cls) if (k % 3 == 2) == (split == "test")]
    chosen.sort()
    arrays, sources = [], []
    for i in chosen:
        path = files[i]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataFormatError(f"cannot read {path}: {exc}") from None
        arrays.append(decode_image(data, str(path), size=hw))
        sources.append(str(path))
    if not arrays:
        raise DataFormatError(f"{location}: no images in the {split} split")
    images = stack_images(arrays, sources, str(location), channels=channels)
    return ImageSet(images, np.array([labels[i] for i in chosen], dtype=np.int64), list(HEADCT_CLASSES),
                    name="head-ct", extra={"split": split, "source": str(location), "files": sources})


def register() -> None:
    """Add ``head-ct`` to the registered data sets (called from :mod:`noveltylab.data`)."""
    from .sources import ALIASES, DATASETS, DatasetSpec

    DATASETS.setdefault("head-ct", DatasetSpec(
        "head-ct", "Head CT - hemorrhage (Kitamura 2018), 200 grey CT slices, 100 normal / 100 hemorrhage; "
        "every third image per class is test; resized to 256 px (option size=)",
        HEADCT_FOLDERS, (), locate_headct, load_headct, options=("size", "channels"),
        homepage="https://www.kaggle.com/datasets/felipekitamura/head-ct-hemorrhage", license="see the Kaggle page",
        class_names=HEADCT_CLASSES,
        manual="Head CT has no automatic download: get it from "
               "https://www.kaggle.com/datasets/felipekitamura/head-ct-hemorrhage and put labels.csv and the "
               "PNGs (or their head_ct/ folder) in the folder named above."))
    for alias in ("headct", "head_ct", "head-ct-hemorrhage"):
        ALIASES.setdefault(alias, "head-ct")
