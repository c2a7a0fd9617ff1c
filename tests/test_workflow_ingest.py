"""Issue 15 point 2: safe folder ingestion and the importers into the MVTec-AD layout."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from noveltylab.ingest import import_labels_csv, import_mask_pairs, scan_folder


def _img(path, h=20, w=24, value=120, rgb=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((h, w), value, np.uint8)
    Image.fromarray(np.stack([a] * 3, -1) if rgb else a).save(path)
    return path


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "data"
    for i in range(6):
        _img(root / f"a{i}.png")
    _img(root / "a0_mask.png", value=0)                    # *_mask*
    _img(root / "b.jpg", rgb=True)
    _img(root / "b.png", value=0)                          # same-named PNG beside a JPEG
    _img(root / "ground_truth" / "bad" / "x.png")          # ground_truth/ folder
    _img(root / ".ipynb_checkpoints" / "c.png")            # hidden folder
    _img(root / ".hidden.png")                             # hidden file
    (root / "readme.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"not a png at all")   # listed, never decoded by the scan
    return root


def test_scan_skips_masks_and_hidden_and_counts(messy):
    scan = scan_folder(messy)
    names = sorted(p.name for p in scan.files)
    assert names == ["a0.png", "a1.png", "a2.png", "a3.png", "a4.png", "a5.png", "b.jpg", "broken.png"]
    assert dict(scan.counts) == {".png": 7, ".jpg": 1}
    assert sorted(p.name for p in scan.skipped["mask files"]) == ["a0_mask.png", "b.png", "x.png"]
    assert len(scan.skipped["hidden files/folders"]) == 2
    text = scan.summary()
    assert "8 image files kept (1 .jpg, 7 .png)" in text and "skipped 3 mask files" in text


def test_scan_keep_masks_include_exclude(messy):
    assert len(scan_folder(messy, skip_masks=False).files) == 11
    inc = scan_folder(messy, include=["a*.png"])
    assert sorted(p.name for p in inc.files) == [f"a{i}.png" for i in range(6)]
    exc = scan_folder(messy, exclude=["a[0-2].png", "broken*"])
    assert sorted(p.name for p in exc.files) == ["a3.png", "a4.png", "a5.png", "b.jpg"]
    assert len(exc.skipped["excluded by --exclude"]) == 4


def test_max_files_is_a_seeded_subset_taken_before_decoding(messy):
    a = scan_folder(messy, max_files=3, seed=1)
    b = scan_folder(messy, max_files=3, seed=1)
    assert len(a.files) == 3 and a.files == b.files


def test_import_mask_pairs(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        _img(src / f"n{i}.jpg", rgb=True)
    for i in range(3):
        _img(src / f"d{i}.jpg", rgb=True)
        m = np.zeros((20, 24), np.uint8)
        m[5:9, 5:9] = 255
        Image.fromarray(m).save(src / f"d{i}_mask.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(src / "n0_mask.png")   # empty mask = normal
    counts = import_mask_pairs(src, tmp_path / "out", test_fraction=0.2)
    assert counts == {"train/good": 8, "test/good": 2, "test/defect": 3}
    assert sorted(p.name for p in (tmp_path / "out" / "ground_truth" / "defect").iterdir()) == \
        ["d0_mask.png", "d1_mask.png", "d2_mask.png"]
    with pytest.raises(FileExistsError, match="overwrite"):
        import_mask_pairs(src, tmp_path / "out")


def test_import_labels_csv(tmp_path):
    src = tmp_path / "src"
    rows = []
    for i in range(5):
        _img(src / f"ok{i}.png")
        rows.append((f"ok{i}.png", "good"))
    _img(src / "s.png")
    rows.append(("s.png", "scratch"))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    counts = import_labels_csv(src, tmp_path / "labels.csv", tmp_path / "out", test_fraction=0.4)
    assert counts == {"train/good": 3, "test/good": 2, "test/scratch": 1}
    (tmp_path / "bad.csv").write_text("file,class\nok0.png,good\n")
    with pytest.raises(ValueError, match="columns 'path' and 'label'"):
        import_labels_csv(src, tmp_path / "bad.csv", tmp_path / "out2")
