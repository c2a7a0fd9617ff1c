"""Caltech-256 source and paper 001's caltech-clutter protocol on a small tree in the official layout."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltylab.data import PROTOCOLS, load_dataset, make_splits
from noveltylab.data.caltech import CLUTTER, caltech_clutter, draw_classes
from noveltylab.data.sources import DatasetNotFoundError

# (folder, images, colour): object classes are flat colours + a little noise; clutter is noise
CLASSES = [("001.ak47", 9, (200, 30, 30)), ("002.american-flag", 7, (30, 200, 30)),
           ("003.backpack", 12, (30, 30, 200)), ("004.baseball-bat", 6, (220, 220, 40)),
           ("005.baseball-glove", 8, (40, 220, 220)), ("006.basketball-hoop", 10, (220, 40, 220)),
           (CLUTTER, 30, None)]


def write_tree(root: Path) -> Path:
    """``root/256_ObjectCategories/NNN.name/NNN_XXXX.jpg`` with mixed sizes, one grey image and a stray sub-folder."""
    rng = np.random.default_rng(0)
    top = root / "256_ObjectCategories"
    for name, n, colour in CLASSES:
        d = top / name
        d.mkdir(parents=True)
        num = name.split(".")[0]
        for i in range(n):
            h, w = 40 + 7 * (i % 3), 50 - 5 * (i % 2)
            if colour is None:
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            else:
                arr = np.clip(np.array(colour) + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr)
            if name == "003.backpack" and i == 0:
                img = img.convert("L")  # a grey image, as Caltech-256 has
            img.save(d / f"{num}_{i + 1:04d}.jpg", quality=90)
    stray = top / "001.ak47" / "greg"
    stray.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(stray / "dup.jpg")
    return top


@pytest.fixture()
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVELTYLAB_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    write_tree(data / "caltech256")
    return data


def test_folder_layout_classes_split_and_size(tree):
    tr = load_dataset("caltech256", "train", data_dir=tree, size=32)
    te = load_dataset("caltech-256", "test", data_dir=tree, size=32)
    assert tr.class_names == [c for c, _, _ in CLASSES] == te.class_names
    assert tr.images.shape[1:] == (32, 32, 3) and tr.images.dtype == np.uint8
    for k, (_, n, _) in enumerate(CLASSES):  # every third image (positions 2, 5, 8, ...) is test
        assert np.sum(te.labels == k) == len(range(2, n, 3))
        assert np.sum(tr.labels == k) == n - len(range(2, n, 3))
    assert not any("greg" in f for f in tr.extra["files"] + te.extra["files"])
    assert te.extra["files"][0].endswith("001.ak47/001_0003.jpg")
    assert load_dataset("caltech256", "train", data_dir=tree).images.shape[1:] == (64, 64, 3)  # default size


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_archives_read_in_place_equal_the_folder(tree, kind):
    folder = load_dataset("caltech256", "test", data_dir=tree, size=24)
    arch_dir = tree.parent / f"arch-{kind}" / "caltech256"
    arch_dir.mkdir(parents=True)
    top = tree / "caltech256" / "256_ObjectCategories"
    if kind == "tar":
        with tarfile.open(arch_dir / "256_ObjectCategories.tar", "w") as tf:
            tf.add(top, arcname="256_ObjectCategories")
    else:
        with zipfile.ZipFile(arch_dir / "256_ObjectCategories.zip", "w") as zf:
            for p in sorted(top.rglob("*")):
                zf.write(p, "256_ObjectCategories/" + p.relative_to(top).as_posix())
    for _ in range(2):  # second read comes from the decoded-array cache
        got = load_dataset("caltech256", "test", data_dir=arch_dir.parent, size=24)
        assert got.class_names == folder.class_names
        np.testing.assert_array_equal(got.labels, folder.labels)
        np.testing.assert_array_equal(got.images, folder.images)
    assert list((tree.parent / "cache" / "decoded").glob("caltech256-*-test.npz"))


def test_missing_data_and_wrong_layout_name_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="256_ObjectCategories"):
        load_dataset("caltech256", "train", data_dir=tmp_path)
    bad = tmp_path / "caltech256" / "256_ObjectCategories" / "001.ak47"
    bad.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "a.jpg")
    with pytest.raises(ValueError, match="no 257.clutter/ folder"):
        load_dataset("caltech256", "train", data_dir=tmp_path)


@pytest.mark.parametrize("positives", [1, 3, 5])
def test_protocol_half_outliers_positive_classes_and_clutter(tree, positives):
    tr = load_dataset("caltech256", "train", data_dir=tree, size=16)
    te = load_dataset("caltech256", "test", data_dir=tree, size=16)
    clutter = tr.class_names.index(CLUTTER)
    splits = dict(make_splits("caltech-clutter", tr, te, positives=positives, val_fraction=0.0))
    assert list(splits) == [f"draw{d}" for d in range(20)]  # 20 draws, as the paper repeats
    draws = set()
    for task, s in splits.items():
        normal = s.normal_classes
        assert len(normal) == positives and clutter not in normal
        assert normal == draw_classes(tr, positives, int(task[4:]))
        draws.add(tuple(normal))
        assert s.test_labels.mean() == 0.5  # exactly 50 % outliers
        assert set(s.test_classes[s.test_labels == 1]) == {clutter}
        assert set(s.test_classes[s.test_labels == 0]) <= set(normal)
        assert len(s.train) == int(np.isin(tr.labels, normal).sum())  # every training image of the positives
        assert s.info["positive_classes"] == [tr.class_names[c] for c in normal]
    assert len(draws) > 1 if positives < 6 else True
    again = caltech_clutter(tr, te, "draw3", positives=positives, val_fraction=0.0)
    np.testing.assert_array_equal(again.test, splits["draw3"].test)  # seeded: same draw, same test set


def test_protocol_subsamples_positives_when_clutter_is_short(tree):
    tr = load_dataset("caltech256", "train", data_dir=tree, size=16)
    te = load_dataset("caltech256", "test", data_dir=tree, size=16)
    s = caltech_clutter(tr, te, 0, positives=6, outlier_fraction=0.8)
    assert s.test_labels.mean() == pytest.approx(0.8, abs=0.02)
    assert int(s.test_labels.sum()) <= 30


def test_protocol_errors(tree):
    tr = load_dataset("caltech256", "train", data_dir=tree, size=16)
    te = load_dataset("caltech256", "test", data_dir=tree, size=16)
    with pytest.raises(ValueError, match=r"positives must be an integer in 1..6, got 7"):
        caltech_clutter(tr, te, "draw0", positives=7)
    with pytest.raises(ValueError, match="tasks are draws 'draw0'"):
        caltech_clutter(tr, te, "ak47")
    digits = load_dataset("digits", "train")
    with pytest.raises(ValueError, match="has no '257.clutter' class"):
        caltech_clutter(digits, load_dataset("digits", "test"), "draw0")
    assert "caltech-clutter" in PROTOCOLS


def test_methods_run_on_the_protocol_through_the_bench(tree, tmp_path):
    from noveltylab.bench.runner import run_benchmark

    kw = dict(classes=["draw0", "draw1"], profile="test", protocol_options={"positives": 3}, data_dir=tree,
              out_dir=tmp_path / "out", progress=False, allow_dirty=True, threads=1)
    rec = run_benchmark("raw-nn", "caltech256", "caltech-clutter", **kw)
    assert rec["tasks"] == ["draw0", "draw1"] and rec["protocol_options"]["positives"] == 3
    assert rec["mean"]["auroc"] > 0.95  # flat-colour objects vs noise clutter: separable in pixel space
    rec = run_benchmark("connective", "caltech256", "caltech-clutter", **kw)  # paper 001's method runs on it
    assert rec["per_task"][0]["n_test"] == 2 * rec["per_task"][0]["n_novel"]
    assert 0.0 <= rec["mean"]["auroc"] <= 1.0
