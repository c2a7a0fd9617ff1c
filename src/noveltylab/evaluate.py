"""Evaluate a fitted detector on a labelled test set: image, per-class and pixel metrics.

Test sets come as a folder or as a :class:`~noveltylab.data.protocols.Split`:

* a folder with one sub-folder per class: ``good`` or ``normal`` (any case)
  holds normal images, every other sub-folder is a novel class;
* the MVTec-AD layout (a category folder with ``test/`` and ``ground_truth/``,
  or its ``test/`` folder itself): masks ``ground_truth/<defect>/<stem>_mask.*``
  give pixel labels; ``good`` images have empty masks.

Mask files (``*_mask*``) and hidden files or folders inside the class folders
are never scored. All figures come from :mod:`noveltylab.metrics`; the
threshold is the model's own (``threshold_`` from calibration), never one
tuned on these labels, except the pixel IoU, which is marked as an oracle.
"""
from __future__ import annotations

import csv
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import metrics
from .detector import Detector, json_default
from .images import IMAGE_EXTENSIONS, ImageError, read_image

NORMAL_NAMES = ("good", "normal")
EVAL_FILE = "evaluation.json"
SCORES_FILE = "scores.csv"
FORMAT = "noveltylab-evaluation"
PIXEL_MAX_SIDE = 256  # maps and masks are compared at most this size on the longer side (memory)


@dataclass
class TestSet:
    """What :func:`evaluate` scores: images (paths or an array), labels, class names, optional masks."""

    images: Sequence[Path] | np.ndarray
    labels: np.ndarray          # 1 = novel
    classes: list[str]          # class name per image
    masks: list[Path | None] | np.ndarray | None = None
    source: str = ""

    @property
    def paths(self) -> list[str]:
        if isinstance(self.images, np.ndarray):
            return [f"{self.source or 'test'}[{i}]" for i in range(len(self.images))]
        return [str(p) for p in self.images]


def _visible_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` without hidden parts and without mask files, sorted."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(s.startswith(".") for s in rel)
                and "_mask" not in p.stem.lower()):
            out.append(p)
    return out


def _mvtec_roots(root: Path) -> tuple[Path, Path | None]:
    """(folder holding the class folders, ground_truth folder or None)."""
    if (root / "test").is_dir() and (root / "ground_truth").is_dir():
        return root / "test", root / "ground_truth"
    if (root / "ground_truth").is_dir():
        return root, root / "ground_truth"
    if (root.parent / "ground_truth").is_dir() and root.name == "test":
        return root, root.parent / "ground_truth"
    if (root / "test").is_dir() and not any(d.name.lower() in NORMAL_NAMES for d in root.iterdir() if d.is_dir()):
        return root / "test", None
    return root, None


def _mask_for(gt: Path, cls: str, image: Path) -> Path:
    found = sorted((gt / cls).glob(f"{image.stem}_mask.*")) if (gt / cls).is_dir() else []
    if not found:
        raise ImageError(f"ground-truth mask for {image} not found: expected {gt / cls / (image.stem + '_mask.png')}")
    return found[0]


def load_test_folder(root: str | os.PathLike) -> TestSet:
    """Read a labelled test folder (class sub-folders or the MVTec-AD layout); see the module docstring."""
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"test folder not found: {root}")
    base, gt = _mvtec_roots(root)
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")
                        and d.name != "ground_truth")
    if not class_dirs:
        raise ImageError(f"{base}: no class folders; expected {base}/good/ (normal) and one folder per novel "
                         "class, or the MVTec-AD layout (test/ and ground_truth/)")
    paths: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    masks: list[Path | None] = []
    for d in class_dirs:
        files = _visible_images(d)
        normal = d.name.lower() in NORMAL_NAMES
        for f in files:
            paths.append(f)
            labels.append(0 if normal else 1)
            classes.append(d.name)
            masks.append(None if (gt is None or normal) else _mask_for(gt, d.name, f))
    names = [d.name for d in class_dirs]
    if not any(n.lower() in NORMAL_NAMES for n in names):
        raise ImageError(f"{base}: no normal folder; name the folder of normal test images 'good' or 'normal' "
                         f"(found {names})")
    if 0 not in labels or 1 not in labels:
        raise ImageError(f"{base}: need normal ('good'/'normal') and novel images to evaluate; found "
                         f"{labels.count(0)} normal and {labels.count(1)} novel image files in {names}")
    return TestSet(paths, np.array(labels, dtype=np.int64), classes, masks if gt is not None else None, str(root))


def _from_split(split: Any) -> TestSet:
    names = [str(c) for c in split.test_classes]
    return TestSet(np.asarray(split.test), np.asarray(split.test_labels, dtype=np.int64), names,
                   None if split.test_masks is None else np.asarray(split.test_masks), split.name or "split")


def _batch(ts: TestSet, idx: Sequence[int]) -> Any:
    if isinstance(ts.images, np.ndarray):
        return ts.images[list(idx)]
    return [ts.images[i] for i in idx]


def _display_image(ts: TestSet, i: int) -> np.ndarray:
    if isinstance(ts.images, np.ndarray):
        return np.asarray(ts.images[i])
    return read_image(ts.images[i])


def _mask(ts: TestSet, i: int) -> np.ndarray | None:
    if ts.masks is None:
        return None
    m = ts.masks[i]
    if m is None:  # a normal image: no anomalous pixel; shape fixed later
        return None
    if isinstance(m, np.ndarray):
        return (m > 0).astype(np.uint8)
    return (read_image(m, channels=1)[:, :, 0] > 0).astype(np.uint8)


def _pixel_pair(amap: np.ndarray, mask: np.ndarray | None, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map and mask at one common size: the image's, shrunk to at most PIXEL_MAX_SIDE on the long side."""
    from PIL import Image

    h, w = image_hw if mask is None else mask.shape
    s = min(1.0, PIXEL_MAX_SIDE / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    m = np.zeros((size[1], size[0]), np.uint8) if mask is None else \
        np.asarray(Image.fromarray(mask * 255).resize(size, Image.NEAREST)) > 0
    a = np.asarray(Image.fromarray(np.asarray(amap, np.float32), mode="F").resize(size, Image.BILINEAR))
    return a, np.asarray(m, np.uint8)


def _maps(det: Detector, batch: Any) -> list[np.ndarray]:
    out = det.anomaly_map(batch)
    return [np.asarray(m, np.float32) for m in out]


def _rates(labels: np.ndarray, scores: np.ndarray, thr: float | None) -> dict[str, float] | None:
    if thr is None:
        return None
    flagged = scores > thr
    tp = int(np.sum(flagged & (labels == 1)))
    fp = int(np.sum(flagged & (labels == 0)))
    return {"threshold": float(thr), "fpr": fp / max(1, int(np.sum(labels == 0))),
            "recall": tp / max(1, int(np.sum(labels == 1))),
            "precision": tp / (tp + fp) if tp + fp else 0.0, "f1": metrics.f1_at(labels, scores, thr),
            "n_flagged": int(flagged.sum())}


def _pixel_metrics(maps: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, Any]:
    a = np.concatenate([m.reshape(-1) for m in maps])
    g = np.concatenate([m.reshape(-1) for m in masks])
    out: dict[str, Any] = {"auroc": metrics.pixel_auroc(g, a), "pixels": int(g.size),
                           "anomalous_fraction": float(g.mean())}
    thr = metrics.pixel_roc_threshold(g, a)
    out["iou_oracle"] = metrics.iou_at(g, a, thr)
    out["iou_oracle_threshold"] = thr
    pro = getattr(metrics, "pro_score", None)  # PRO to FPR 0.3 (MVTec AD), where metrics.py has it
    if pro is not None and len({m.shape for m in maps}) == 1:
        try:
            out["pro"] = float(pro(np.stack(masks), np.stack(maps)))
        except (TypeError, ValueError):
            pass
    return out


def evaluate(det: Detector, root_or_split: Any, *, out_dir: str | os.PathLike | None = None,
             batch_size: int = 64, top_k: int = 12, model: str | None = None,
             command: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a labelled test set with ``det`` and return (and with ``out_dir``, write) the evaluation.

    ``root_or_split``: a test folder (see :func:`load_test_folder`), a
    :class:`TestSet` or a protocol ``Split``. Returns a JSON-able dict with
    image AUROC / AUPR / F1-max / FPR@95 %TPR, AUROC per novel class, FPR and
    recall at the model's threshold, pixel AUROC (+ oracle IoU) for
    localising methods on data with masks, and one row per image. With
    ``out_dir`` it writes ``evaluation.json``, ``scores.csv`` and the
    ``top_k`` most novel images (with heat maps when the method localises)
    under ``top/``, which ``noveltylab report`` turns into HTML. ``model`` and
    ``command`` (argv) are recorded with the git commit of the code.
    """
    if isinstance(root_or_split, TestSet):
        ts = root_or_split
    elif isinstance(root_or_split, (str, os.PathLike)):
        ts = load_test_folder(root_or_split)
    elif hasattr(root_or_split, "test_labels"):
        ts = _from_split(root_or_split)
    else:
        raise TypeError(f"evaluate: expected a test folder, TestSet or Split, got {type(root_or_split).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(ts.labels)
    want_pixels = det.localises and ts.masks is not None
    scores = np.empty(n, dtype=np.float64)
    pix_maps: list[np.ndarray] = []
    pix_masks: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        batch = _batch(ts, idx)
        scores[idx] = det.score(batch)
        if want_pixels:
            for i, amap in zip(idx, _maps(det, batch)):
                a, m = _pixel_pair(amap, _mask(ts, i), amap.shape)
                pix_maps.append(a)
                pix_masks.append(m)
    labels = ts.labels
    thr = getattr(det, "threshold_", None)
    per_class = {}
    for c in sorted(set(ts.classes)):
        sel = np.array([k == c for k in ts.classes])
        if labels[sel][0] == 1:
            both = sel | (labels == 0)
            per_class[c] = {"n": int(sel.sum()), "auroc": metrics.auroc(labels[both], scores[both]),
                            "recall": None if thr is None else float(np.mean(scores[sel] > thr))}
        else:
            per_class[c] = {"n": int(sel.sum()), "auroc": None,
                            "fpr": None if thr is None else float(np.mean(scores[sel] > thr))}
    result: dict[str, Any] = {
        "format": FORMAT, "version": 1, "method": det.name, "params": det.get_params(),
        "model": model, "test_root": ts.source, "localises": bool(det.localises),
        "n_images": n, "n_normal": int((labels == 0).sum()), "n_novel": int((labels == 1).sum()),
        "image": metrics.summary(labels, scores), "per_class": per_class,
        "at_threshold": _rates(labels, scores, thr),
        "pixel": _pixel_metrics(pix_maps, pix_masks) if want_pixels and any(m.any() for m in pix_masks) else None,
        "images": [{"path": p, "class": c, "label": int(y), "score": float(s),
                    "novel": None if thr is None else int(s > thr)}
                   for p, c, y, s in zip(ts.paths, ts.classes, labels, scores)],
    }
    if result["pixel"] is not None:
        result["pixel"]["max_side"] = PIXEL_MAX_SIDE
    from datetime import datetime, timezone

    from .bench.provenance import git_commit

    result["git_commit"] = git_commit()  # which code made these figures, and how
    result["command"] = shlex.join(command) if command else None
    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if out_dir is not None:
        write_evaluation(result, out_dir, det, ts, top_k)
    return result


def write_evaluation(result: dict[str, Any], out_dir: str | os.PathLike, det: Detector, ts: TestSet,
                     top_k: int = 12) -> Path:
    """Write ``evaluation.json``, ``scores.csv`` and ``top/NN.png`` (the most novel images) into ``out_dir``."""
    from .overlay import overlay, png_bytes

    out = Path(out_dir)
    (out / "top").mkdir(parents=True, exist_ok=True)
    scores = np.array([r["score"] for r in result["images"]])
    order = np.argsort(-scores, kind="stable")[:max(0, top_k)]
    top = []
    for rank, i in enumerate(order):
        img = _display_image(ts, int(i))
        if det.localises:
            amap = _maps(det, _batch(ts, [int(i)]))[0]
            pic = overlay(img, amap)
        else:
            pic = img
        name = f"top/{rank:02d}.png"
        (out / name).write_bytes(png_bytes(pic))
        row = result["images"][int(i)]
        top.append({"rank": rank, "file": name, "path": row["path"], "class": row["class"],
                    "label": row["label"], "score": row["score"], "heatmap": bool(det.localises)})
    result["top"] = top
    with open(out / SCORES_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "class", "label", "score", "novel"])
        for r in result["images"]:
            w.writerow([r["path"], r["class"], r["label"], f"{r['score']:.8g}", "" if r["novel"] is None else r["novel"]])
    (out / EVAL_FILE).write_text(json.dumps(result, indent=1, default=json_default))
    return out / EVAL_FILE


def summary_text(result: dict[str, Any]) -> str:
    """A few lines for the terminal: the headline figures of an evaluation."""
    im = result["image"]
    lines = [f"{result['method']} on {result['test_root']}: {result['n_images']} images "
             f"({result['n_normal']} normal, {result['n_novel']} novel)",
             f"  image AUROC {100 * im['auroc']:.2f}  AUPR {100 * im['aupr']:.2f}  F1-max {100 * im['f1_max']:.2f}  "
             f"FPR@95%TPR {100 * im['fpr95']:.2f}"]
    t = result.get("at_threshold")
    if t:
        lines.append(f"  at the model's threshold {t['threshold']:.6g}: FPR {100 * t['fpr']:.1f} %, "
                     f"recall {100 * t['recall']:.1f} %, precision {100 * t['precision']:.1f} %")
    else:
        lines.append("  no threshold in the model (not calibrated): FPR / recall not computed")
    for c, r in result["per_class"].items():
        if r["auroc"] is not None:
            lines.append(f"  class {c:<20} n={r['n']:<5} AUROC {100 * r['auroc']:.2f}")
    p = result.get("pixel")
    if p:
        lines.append(f"  pixel AUROC {100 * p['auroc']:.2f}  IoU (oracle threshold) {100 * p['iou_oracle']:.2f}"
                     + (f"  PRO {100 * p['pro']:.2f}" if "pro" in p else ""))
    return "\n".join(lines)
