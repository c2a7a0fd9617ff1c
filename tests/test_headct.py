"""The Head CT hemorrhage source on a small synthetic tree in its layout, and pixel-level metrics (PRO)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltylab import metrics
from noveltylab.data import load_dataset, one_class
from noveltylab.data.formats import DataFormatError


def make_headct(root: Path, n: int = 12, sub: bool = True, header: str = "id, hemorrhage") -> Path:
    """Kaggle layout: labels.csv + head_ct/000.png ...; ids alternate 0/1, sizes differ."""
    rng = np.random.default_rng(0)
    img_dir = root / "head_ct" if sub else root
    img_dir.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for i in range(n):
        lab = i % 2
        side = 40 + 4 * (i % 3)
        arr = (rng.uniform(0, 80, (side, side)) + 150 * lab).astype(np.uint8)
        Image.fromarray(arr).save(img_dir / f"{i:03d}.png")
        lines.append(f"{i}, {lab}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_headct_layout_split_and_classes(tmp_path):
    make_headct(tmp_path / "head-ct")
    train = load_dataset("head-ct", "train", data_dir=tmp_path, size=32)
    test = load_dataset("headct", "test", data_dir=tmp_path, size=32)  # alias
    assert train.class_names == ["normal", "hemorrhage"]
    assert train.images.shape == (8, 32, 32, 1) and test.images.shape == (4, 32, 32, 1)
    # every third image per class (positions 2, 5, ...) is test: normal ids 0,2,4,6,8,10 -> 4, 10
    assert [Path(f).stem for f in test.extra["files"]] == ["004", "005", "010", "011"]
    np.testing.assert_array_equal(test.labels, [0, 1, 0, 1])
    split = one_class(train, test, "normal")
    assert len(split.train) + len(split.val) == 4 and split.test_labels.tolist() == [0, 1, 0, 1]
    default = load_dataset("head-ct", "train", data_dir=tmp_path)
    assert default.images.shape[1:3] == (256, 256)


def test_headct_pngs_beside_labels_and_errors(tmp_path):
    root = make_headct(tmp_path / "headct", sub=False)
    assert len(load_dataset("head-ct", "train", data_dir=tmp_path, size=16)) == 8
    (root / "003.png").unlink()
    with pytest.raises(DataFormatError, match=r"ids without an image file, e.g. \[3\]"):
        load_dataset("head-ct", "train", data_dir=tmp_path, size=16)
    bad = make_headct(tmp_path / "other" / "head-ct", header="name,label")
    with pytest.raises(DataFormatError, match="lacks the columns 'id' and 'hemorrhage'"):
        load_dataset("head-ct", "train", data_dir=bad.parent, size=16)
    with pytest.raises(Exception, match="head-ct"):
        load_dataset("head-ct", "train", data_dir=tmp_path / "nowhere")


def test_pro_score_values():
    m = np.zeros((3, 32, 32), np.uint8)
    m[0, 4:12, 4:12] = 1
    m[1, 20:24, 2:30] = 1
    rng = np.random.default_rng(0)
    assert metrics.pro_score(m, m + rng.uniform(0, 0.1, m.shape)) > 0.99
    # region 0 half found, region 1 fully; the missed half sits in the normal-pixel noise, so at FPR f
    # its overlap is 0.5 + 0.5 f: PRO(f) = 0.75 + 0.25 f, mean over [0, 0.3] = 0.7875
    a = np.zeros(m.shape)
    a[0, 4:12, 4:8] = 1
    a[1] = m[1]
    assert metrics.pro_score(m, a + rng.uniform(0, 0.01, m.shape)) == pytest.approx(0.7875, abs=0.015)
    big = np.zeros((40, 64, 64), np.uint8)
    big[:, 5:25, 5:25] = 1
    assert metrics.pro_score(big, rng.uniform(size=big.shape)) == pytest.approx(0.15, abs=0.02)  # chance
    with pytest.raises(ValueError, match="both defect pixels and normal pixels"):
        metrics.pro_score(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    s = metrics.pixel_summary(m, m + rng.uniform(0, 0.1, m.shape))
    assert set(s) == {"pixel_auroc", "pro", "iou_youden"} and s["iou_youden"] == 1.0
