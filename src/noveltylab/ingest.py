"""Safe folder ingestion: which files of a folder are training images, and importers to MVTec-AD.

:func:`scan_folder` lists image files under a folder with ``include`` /
``exclude`` globs and, by default, skips what is not a normal image:

* mask files: a name containing ``_mask`` (``img_mask.png``, ``img_mask_1.png``),
  anything under a ``ground_truth/`` (or ``masks/``) folder, and a PNG beside a
  JPEG of the same stem (``001.jpg`` + ``001.png``: the PNG is taken for its mask);
* hidden files and folders (names starting with ``.``, e.g. ``.ipynb_checkpoints``, and ``__MACOSX``;
  the same rule as :func:`noveltylab.images.is_hidden`).

Every skipped file is counted by reason and the kept files by extension, so the
CLI can print what it took and what it left. ``max_train`` is applied to the
file list (seeded sample) before any image is decoded.

Importers (:func:`import_mask_pairs`, :func:`import_labels_csv`) copy a
folder into the MVTec-AD layout that ``mvtec:<category>`` and
``noveltylab evaluate`` read::

    ROOT/train/good/*.png
    ROOT/test/good/*.png
    ROOT/test/<defect>/*.png
    ROOT/ground_truth/<defect>/<name>_mask.png
"""
from __future__ import annotations

import csv
import fnmatch
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from .images import IMAGE_EXTENSIONS, is_hidden

MASK_FOLDERS = ("ground_truth", "masks", "mask")
_JPEG = (".jpg", ".jpeg")


@dataclass
class Scan:
    """Result of :func:`scan_folder`: the kept files, counts per extension, skipped files by reason."""

    root: Path
    files: list[Path]
    counts: Counter = field(default_factory=Counter)
    skipped: dict[str, list[Path]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per fact, for the CLI: kept counts per extension, skipped counts per reason."""
        kept = ", ".join(f"{n} {ext}" for ext, n in sorted(self.counts.items())) or "none"
        lines = [f"{self.root}: {len(self.files)} image files kept ({kept})"]
        for reason, paths in sorted(self.skipped.items()):
            if paths:
                example = ", ".join(str(p.relative_to(self.root)) for p in paths[:3])
                lines.append(f"  skipped {len(paths)} {reason} (e.g. {example})")
        return "\n".join(lines)


def is_mask_name(rel: PurePosixPath) -> bool:
    """A mask by its name or folder: ``*_mask*`` or under ``ground_truth/`` / ``masks/``."""
    return "_mask" in rel.stem.lower() or any(p.lower() in MASK_FOLDERS for p in rel.parts[:-1])


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def scan_folder(root: str | os.PathLike, include: Sequence[str] | None = None,
                exclude: Sequence[str] | None = None, *, skip_masks: bool = True, skip_hidden: bool = True,
                max_files: int | None = None, seed: int = 0) -> Scan:
    """Image files under ``root`` (recursive, sorted), filtered as the module docstring says.

    ``include`` / ``exclude``: glob patterns matched against the path relative to ``root``
    (``good/*.png``) and against the file name (``*.png``). ``max_files``: a seeded random
    subset of that size (sorted again), taken before anything is decoded.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    skipped: dict[str, list[Path]] = {"hidden files/folders": [], "mask files": [], "excluded by --exclude": [],
                                      "not matching --include": [], "not image files": []}
    candidates: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if skip_hidden:
            for d in [d for d in dirnames if is_hidden((d,))]:
                skipped["hidden files/folders"].append(Path(dirpath) / d)
            dirnames[:] = sorted(d for d in dirnames if not is_hidden((d,)))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            rel = PurePosixPath((rel_dir / fn).as_posix())
            if skip_hidden and is_hidden((fn,)):
                skipped["hidden files/folders"].append(p)
            elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped["not image files"].append(p)
            elif include and not _matches(str(rel), include):
                skipped["not matching --include"].append(p)
            elif exclude and _matches(str(rel), exclude):
                skipped["excluded by --exclude"].append(p)
            elif skip_masks and is_mask_name(rel):
                skipped["mask files"].append(p)
            else:
                candidates.append(p)
    if skip_masks:
        jpeg_stems = {(p.parent, p.stem) for p in candidates if p.suffix.lower() in _JPEG}
        masks = [p for p in candidates if p.suffix.lower() == ".png" and (p.parent, p.stem) in jpeg_stems]
        skipped["mask files"] += masks
        drop = set(masks)
        candidates = [p for p in candidates if p not in drop]
    candidates.sort()
    if max_files is not None and len(candidates) > max_files:
        if max_files < 1:
            raise ValueError(f"max_files must be >= 1, got {max_files}")
        pick = np.random.default_rng(seed).choice(len(candidates), size=max_files, replace=False)
        candidates = [candidates[i] for i in sorted(pick)]
    counts = Counter(p.suffix.lower() for p in candidates)
    return Scan(root, candidates, counts, {k: sorted(v) for k, v in skipped.items()})


def split_files(files: Sequence[Path], fractions: Sequence[float], seed: int = 0) -> list[list[Path]]:
    """Seeded disjoint split of ``files``: one list per fraction (the first takes what is left)."""
    files = list(files)
    order = np.random.default_rng(seed).permutation(len(files))
    sizes = [int(round(f * len(files))) for f in fractions[1:]]
    out, start = [], sum(sizes)
    head = [files[i] for i in order[:start]]
    out.append(sorted(files[i] for i in order[start:]))
    pos = 0
    for n in sizes:
        out.append(sorted(head[pos:pos + n]))
        pos += n
    return out


# --- importers into the MVTec-AD layout ---------------------------------------------------
def _copy(src: Path, dst: Path, overwrite: bool) -> None:
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _mask_for(img: Path) -> Path | None:
    for cand in (img.with_name(f"{img.stem}_mask.png"), img.with_name(f"{img.stem}_mask{img.suffix}")):
        if cand.is_file():
            return cand
    if img.suffix.lower() != ".png" and img.with_suffix(".png").is_file():
        return img.with_suffix(".png")
    return None


def _mask_has_defect(path: Path) -> bool:
    from .images import read_image

    return bool(np.asarray(read_image(path)).max() > 0)


def import_mask_pairs(src: str | os.PathLike, dest: str | os.PathLike, *, test_fraction: float = 0.2,
                      defect_name: str = "defect", seed: int = 0, overwrite: bool = False) -> dict[str, int]:
    """"image + same-named mask" folder -> MVTec-AD layout.

    An image whose mask (``NAME_mask.png`` or, beside a JPEG, ``NAME.png``) has any non-zero
    pixel is a defect (``test/<defect_name>`` + ``ground_truth/<defect_name>/NAME_mask.png``);
    images without a mask or with an empty mask are normal: ``test_fraction`` of them (seeded)
    go to ``test/good``, the rest to ``train/good``. Returns counts per destination.
    """
    src, dest = Path(src), Path(dest)
    scan = scan_folder(src)
    normal, defect = [], []
    for img in scan.files:
        m = _mask_for(img)
        (defect if m is not None and _mask_has_defect(m) else normal).append((img, m))
    if not normal:
        raise ValueError(f"{src}: no normal images (every image has a non-empty mask)")
    train, test = split_files([i for i, _ in normal], [1 - test_fraction, test_fraction], seed)
    counts: Counter = Counter()
    for img in train:
        _copy(img, dest / "train" / "good" / _flat(img, src), overwrite)
        counts["train/good"] += 1
    for img in test:
        _copy(img, dest / "test" / "good" / _flat(img, src), overwrite)
        counts["test/good"] += 1
    for img, m in defect:
        name = _flat(img, src)
        _copy(img, dest / "test" / defect_name / name, overwrite)
        _copy(m, dest / "ground_truth" / defect_name / f"{Path(name).stem}_mask{m.suffix}", overwrite)
        counts[f"test/{defect_name}"] += 1
    return dict(counts)


def _flat(img: Path, root: Path) -> str:
    """A unique flat file name for ``img`` (sub-folders joined by ``_``)."""
    return "_".join(img.relative_to(root).parts)


def import_labels_csv(src: str | os.PathLike, labels: str | os.PathLike, dest: str | os.PathLike, *,
                      normal_label: str = "good", test_fraction: float = 0.2, seed: int = 0,
                      overwrite: bool = False) -> dict[str, int]:
    """"folder + labels.csv" -> MVTec-AD layout.

    ``labels``: a CSV with a header and columns ``path`` (relative to ``src``) and ``label``;
    rows with ``normal_label`` (also ``normal``, ``0``, ``ok``) are normal, every other label
    is a defect class (``test/<label>``; no masks). ``test_fraction`` of the normal images go
    to ``test/good``, the rest to ``train/good``.
    """
    src, dest = Path(src), Path(dest)
    with open(labels, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise ValueError(f"{labels}: needs a header with columns 'path' and 'label', got {reader.fieldnames}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    normal_names = {normal_label.lower(), "good", "normal", "0", "ok"}
    normal, defect = [], []
    for r in rows:
        p = src / r["path"]
        if not p.is_file():
            raise FileNotFoundError(f"{labels}: listed image not found: {p}")
        (normal if r["label"].lower() in normal_names else defect).append((p, r["label"]))
    if not normal:
        raise ValueError(f"{labels}: no row has the normal label {normal_label!r}")
    train, test = split_files([p for p, _ in normal], [1 - test_fraction, test_fraction], seed)
    counts: Counter = Counter()
    for sub, group in (("train/good", train), ("test/good", test)):
        for p in group:
            _copy(p, dest / sub / _flat(p, src), overwrite)
            counts[sub] += 1
    for p, label in defect:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label) or "defect"
        _copy(p, dest / "test" / safe / _flat(p, src), overwrite)
        counts[f"test/{safe}"] += 1
    return dict(counts)
