"""Data sources: every format on small files written here in the official layout, plus the real shared data."""
from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import struct
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltylab.data import formats, sources
from noveltylab.data.download import DownloadError, RemoteFile, download_file, file_digest
from noveltylab.data.formats import DataFormatError, UnsafePickleError, load_pickle
from noveltylab.data.sources import (DATASETS, DatasetNotFoundError, dataset_status, default_data_dir,
                                     load_dataset, verify_dataset)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --------------------------------------------------------------------------- writers for the official formats

def write_idx(path: Path, arr: np.ndarray) -> Path:
    """An IDX file (unsigned bytes), gzipped when ``path`` ends in .gz."""
    arr = np.asarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def make_mnist(folder: Path, n_train: int = 30, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = {"train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
            "test": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))}
    ext = ".gz" if gz else ""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", data[split][0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", data[split][1])
    return data


class Py2Pickler(pickle._Pickler):
    """Writes pickles the way the official (Python 2, numpy 1.x) CIFAR files are: str as 8-bit strings."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_str8(self, obj):
        if isinstance(obj, str):
            obj = obj.encode("latin1")
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def to_rows(images: np.ndarray) -> np.ndarray:
    """NHWC -> the official (N, 3072) layout: 1024 red, then green, then blue values, row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def make_cifar10(root: Path, per_batch: int = 4) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {"train": [], "test": []}
    for i, member in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = cifar_images(per_batch, i)
        y = [(i + j) % 10 for j in range(per_batch)]
        (folder / member).write_bytes(py2_pickle({b"batch_label": member.encode(), b"labels": y,
                                                  b"data": to_rows(x), b"filenames": [b"a.png"] * per_batch}))
        out["test" if member == "test_batch" else "train"].append((x, np.array(y)))
    (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": [c.encode() for c in sources.CIFAR10_CLASSES],
                                                      b"num_cases_per_batch": per_batch, b"num_vis": 3072}))
    return {s: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) for s, v in out.items()}


def make_cifar100(root: Path, n: int = 12) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for i, split in enumerate(("train", "test")):
        x = cifar_images(n, 10 + i)
        fine = np.arange(n) * 7 % 100
        coarse = fine % 20
        (folder / split).write_bytes(py2_pickle({b"data": to_rows(x), b"fine_labels": fine.tolist(),
                                                 b"coarse_labels": coarse.tolist(), b"filenames": [b"x"] * n}))
        out[split] = (x, fine, coarse)
    (folder / "meta").write_bytes(py2_pickle({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                              b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}))
    return out


def tar_gz(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    return dest


def zip_dir(src: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, p.relative_to(src.parent).as_posix())
    return dest


def save_image(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze() if arr.ndim == 3 and arr.shape[2] == 1 else arr).save(path)
    return path


def make_image_tree(root: Path, with_splits: bool = True, size: int = 8) -> Path:
    """root/{train,test}/{cat,dog}/NNN.png (or root/{cat,dog}/NNN.png), pixel value encodes the file."""
    rng = np.random.default_rng(3)
    for split in (("train", "test") if with_splits else ("",)):
        for c, cls in enumerate(("cat", "dog")):
            for k in range(3 if split != "test" else 2):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                save_image(root / split / cls / f"{k:03d}.png", arr)
    return root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("NOVELTYLAB_CACHE", str(d))
    return d


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- API basics

def test_default_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("NOVELTYLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "noveltylab" / "data"
    monkeypatch.setenv("NOVELTYLAB_DATA", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    assert default_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert default_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_registry_and_bad_arguments():
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "cifar10-jpeg"} <= set(DATASETS)
    for spec in DATASETS.values():
        assert spec.description and callable(spec.loader)
        for f in spec.files:
            assert f.md5 or f.sha256, f"{spec.name}/{f.name} has no checksum"
    with pytest.raises(KeyError, match="available: digits, mnist"):
        load_dataset("imagenet-42")
    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        load_dataset("digits", split="validation")
    with pytest.raises(TypeError, match="label_mode"):
        load_dataset("digits", label_mode="fine")
    with pytest.raises(ValueError, match="needs a path"):
        load_dataset("folder:")


def test_digits_split_is_stratified_and_deterministic():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (8, 8, 1)
    assert train.labels.dtype == np.int64 and train.name == "digits"
    assert len(train) + len(test) == 1797 and 0.3 < len(test) / 1797 < 0.35
    assert train.images.max() == 255 and train.images.min() == 0
    assert not set(train.extra["index"]) & set(test.extra["index"])
    counts_train, counts_test = np.bincount(train.labels), np.bincount(test.labels)
    assert np.all(np.abs(counts_test / (counts_train + counts_test) - 1 / 3) < 0.02)
    again = load_dataset("Digits", "test")
    assert np.array_equal(again.images, test.images) and np.array_equal(again.labels, test.labels)
    from sklearn.datasets import load_digits
    raw = load_digits().images[test.extra["index"][0]]
    assert np.array_equal(test.images[0, :, :, 0], np.round(raw * 255 / 16).astype(np.uint8))


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_loader(tmp_path, gz):
    data = make_mnist(tmp_path / "mnist", gz=gz)
    for split in ("train", "test"):
        s = load_dataset("mnist", split, data_dir=tmp_path)
        assert s.images.shape == (len(data[split][0]), 28, 28, 1) and s.images.dtype == np.uint8
        assert np.array_equal(s.images[..., 0], data[split][0]) and np.array_equal(s.labels, data[split][1])
        assert s.class_names == [str(i) for i in range(10)] and s.name == "mnist"
    make_mnist(tmp_path / "fashion-mnist", gz=gz)
    f = load_dataset("fashion_mnist", "test", data_dir=tmp_path)
    assert f.name == "fashion-mnist" and f.class_names[0] == "T-shirt/top" and f.class_names[9] == "Ankle boot"


def test_idx_corrupt_files_give_clear_errors(tmp_path):
    folder = tmp_path / "mnist"
    make_mnist(folder, gz=True)
    good = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])  # truncated gzip stream
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz.*(truncated|corrupt)"):
        load_dataset("mnist", data_dir=tmp_path)
    raw = gzip.decompress(good)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))  # truncated payload
    with pytest.raises(DataFormatError, match="truncated IDX file.*only"):
        load_dataset("mnist", data_dir=tmp_path)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x1f\x8b\x08\x03" + raw[4:]))
    with pytest.raises(DataFormatError, match="not an IDX file"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)))  # 5 images, 30 labels
    with pytest.raises(DataFormatError, match="5 images but .* 30 labels"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(DataFormatError, match="3 dimensions, expected 1"):
        formats.parse_idx(bytes([0, 0, 8, 3]) + struct.pack(">3I", 1, 1, 1) + b"\0", "x", ndim=1)


def test_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYLAB_DATA", raising=False)
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", "train", data_dir=tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz missing" not in msg
    assert str(tmp_path / "mnist") in msg
    assert "--data-dir" in msg and "NOVELTYLAB_DATA" in msg
    assert "https://" in msg and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg
    for name in ("cifar10", "cifar100", "svhn", "cifar10-jpeg"):
        with pytest.raises(DatasetNotFoundError, match="NOVELTYLAB_DATA") as err:
            load_dataset(name, "test", data_dir=tmp_path)
        assert str(tmp_path / DATASETS[name].folders[0]) in str(err.value)
        assert DATASETS[name].files_for("test")[0].name in str(err.value)


def test_download_failure_gives_manual_instructions(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("svhn", "test", data_dir=tmp_path, download=True)
    msg = str(err.value)
    assert "Download failed" in msg and "no network here" in msg
    assert "test_32x32.mat" in msg and "http://ufldl.stanford.edu/housenumbers/test_32x32.mat" in msg
    assert str(tmp_path / "svhn") in msg and "--data-dir" in msg
    assert not list(tmp_path.rglob("*.mat")) and not list(tmp_path.rglob("*.part"))


def test_download_verifies_checksums(tmp_path, monkeypatch):
    served = tmp_path / "server"
    data = make_mnist(served, gz=True)
    files = tuple(dataclasses.replace(f, urls=(f"file://{tmp_path}/nowhere/{f.name}", (served / f.name).as_uri()),
                                      md5=file_digest(served / f.name, "md5"), payload_sha256=None)
                  for f in DATASETS["mnist"].files)
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], files=files))
    s = load_dataset("mnist", "test", data_dir=tmp_path / "data", download=True)
    assert np.array_equal(s.labels, data["test"][1])
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                              "t10k-labels-idx1-ubyte.gz"]
    bad = RemoteFile("x.gz", ((served / "train-labels-idx1-ubyte.gz").as_uri(),), md5="0" * 32)
    with pytest.raises(DownloadError, match="checksum"):
        download_file(bad, tmp_path / "dl", progress=False)
    assert not list((tmp_path / "dl").iterdir())


def test_dataset_status(tmp_path):
    make_mnist(tmp_path / "mnist")
    rows = {r["name"]: r for r in dataset_status(tmp_path)}
    assert set(DATASETS) <= set(rows)
    for r in rows.values():
        assert {"name", "found", "path", "description"} <= set(r)
    assert rows["digits"]["found"] and rows["mnist"]["found"] and rows["mnist"]["path"] == str(tmp_path / "mnist")
    assert not rows["cifar10"]["found"] and rows["cifar10"]["path"] == str(tmp_path / "cifar10")
    assert not rows["mvtec:<category>"]["found"]


# --------------------------------------------------------------------------- CIFAR pickles

def test_cifar10_folder_and_archive(tmp_path):
    want = make_cifar10(tmp_path / "a" / "cifar10")
    tar_gz(tmp_path / "a" / "cifar10" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    (tmp_path / "b").mkdir()
    os.replace(tmp_path / "cifar-10-python.tar.gz", tmp_path / "b" / "cifar-10-python.tar.gz")  # data_dir directly
    for root in (tmp_path / "a", tmp_path / "b"):
        for split in ("train", "test"):
            s = load_dataset("cifar10", split, data_dir=root)
            assert s.images.shape == want[split][0].shape and s.images.dtype == np.uint8
            assert np.array_equal(s.images, want[split][0]) and np.array_equal(s.labels, want[split][1])
            assert s.class_names == list(sources.CIFAR10_CLASSES) and s.name == "cifar10"
    assert len(load_dataset("cifar10", "train", data_dir=tmp_path / "a")) == 20


def test_cifar100_label_modes(tmp_path):
    want = make_cifar100(tmp_path / "cifar100")
    coarse = load_dataset("cifar100", "test", data_dir=tmp_path)
    assert np.array_equal(coarse.images, want["test"][0]) and np.array_equal(coarse.labels, want["test"][2])
    assert coarse.num_classes == 20 and coarse.class_names[3] == "coarse3" and coarse.name == "cifar100"
    fine = load_dataset("cifar100", "train", data_dir=tmp_path, label_mode="fine")
    assert np.array_equal(fine.labels, want["train"][1]) and fine.num_classes == 100 and fine.name == "cifar100-fine"
    tar_gz(tmp_path / "cifar100" / "cifar-100-python", tmp_path / "x.tar.gz")
    (tmp_path / "z" / "cifar100").mkdir(parents=True)
    os.replace(tmp_path / "x.tar.gz", tmp_path / "z" / "cifar100" / "cifar-100-python.tar.gz")
    from_archive = load_dataset("cifar100", "test", data_dir=tmp_path / "z", label_mode="fine")
    assert np.array_equal(from_archive.labels, want["test"][1])
    with pytest.raises(ValueError, match="label_mode"):
        load_dataset("cifar100", data_dir=tmp_path, label_mode="superfine")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_globals(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=4)
    with pytest.raises(UnsafePickleError, match="system"):
        load_pickle(evil, "evil.pkl")
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_pickle(b"\x80\x02cbuiltins\neval\nX\x06\x00\x00\x001+1+1\x85R.", "eval.pkl")
    # the same pickle in place of an official batch: refused with the file named, nothing executed
    make_cifar10(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(UnsafePickleError, match="test_batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(py2_pickle({b"data": 1})[:-5])
    with pytest.raises(DataFormatError, match="test_batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert load_pickle(pickle.dumps({"a": np.arange(3)}, protocol=4), "p4")["a"].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- SVHN

def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    want = {}
    (tmp_path / "svhn").mkdir()
    for split, n in (("train", 7), ("test", 5)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4], [5], [6]][:n], dtype=np.uint8)
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": x, "y": y})
        want[split] = (x.transpose(3, 0, 1, 2), y.ravel() % 10)
    for split in ("train", "test"):
        s = load_dataset("svhn", split, data_dir=tmp_path)
        assert s.images.shape == (len(want[split][1]), 32, 32, 3) and s.images.dtype == np.uint8
        assert np.array_equal(s.images, want[split][0]) and s.labels.tolist() == want[split][1].tolist()
        assert s.labels[0] == 0  # label 10 is digit 0
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataFormatError, match="test_32x32.mat"):
        load_dataset("svhn", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------- image folders and archives

def test_folder_dir_and_archives_agree(tmp_path, cache_dir):
    root = make_image_tree(tmp_path / "pets")
    before = snapshot(tmp_path)
    tgz, zp = tmp_path / "arch" / "pets.tar.gz", tmp_path / "arch" / "pets.zip"
    tgz.parent.mkdir()
    tar_gz(root, tgz)
    zip_dir(root, zp)
    ref = {s: load_dataset(f"folder:{root}", s) for s in ("train", "test")}
    assert ref["train"].class_names == ["cat", "dog"] and ref["train"].labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ref["test"].images.shape == (4, 8, 8, 3)
    assert np.array_equal(ref["train"].images[0], np.asarray(Image.open(root / "train" / "cat" / "000.png")))
    for arch in (tgz, zp):
        for s in ("train", "test"):
            got = load_dataset(f"folder:{arch}", s)
            assert np.array_equal(got.images, ref[s].images) and np.array_equal(got.labels, ref[s].labels)
            assert got.class_names == ref[s].class_names
    # relative names are looked up in the data directory as well
    assert len(load_dataset("folder:pets", "train", data_dir=tmp_path)) == 6
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before  # nothing written in place
    assert not (tmp_path / "pets").joinpath("noveltylab").exists()


def test_folder_class_layout_and_options(tmp_path, cache_dir):
    root = make_image_tree(tmp_path / "flatpets", with_splits=False, size=10)
    s = load_dataset(f"folder:{root}", "train")
    assert len(s) == 6 and s.class_names == ["cat", "dog"]
    with pytest.raises(ValueError, match="no train/ and test/ folders"):
        load_dataset(f"folder:{root}", "test")
    small = load_dataset(f"folder:{root}", "train", size=4)
    assert small.images.shape == (6, 4, 4, 3)
    grey = load_dataset(f"folder:{root}", "train", channels=1, size=(4, 6))
    assert grey.images.shape == (6, 4, 6, 1)
    loose = tmp_path / "loose"
    for k in range(3):
        save_image(loose / f"{k}.png", np.full((5, 5), k * 40, np.uint8))
    s = load_dataset(f"folder:{loose}")
    assert s.class_names == ["loose"] and s.images.shape == (3, 5, 5, 1) and s.images[2, 0, 0, 0] == 80
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(TypeError, match="unknown option"):
        load_dataset(f"folder:{root}", labels="x")


def test_folder_bad_images(tmp_path, cache_dir):
    root = make_image_tree(tmp_path / "pets")
    save_image(root / "train" / "dog" / "big.png", np.zeros((12, 9, 3), np.uint8))
    with pytest.raises(DataFormatError, match=r"mixed sizes.*8x8 \(6 file.*12x9 \(1 file.*big.png"):
        load_dataset(f"folder:{root}", "train")
    assert load_dataset(f"folder:{root}", "train", size=8).images.shape == (7, 8, 8, 3)
    (root / "train" / "dog" / "big.png").unlink()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "test" / "cat" / "broken.jpg").write_bytes(buf.getvalue()[:300])
    with pytest.raises(DataFormatError, match=r"test/cat/broken\.jpg"):
        load_dataset(f"folder:{root}", "test")
    tgz = tar_gz(root, tmp_path / "pets.tgz")
    with pytest.raises(DataFormatError, match=r"pets\.tgz:pets/test/cat/broken\.jpg"):
        load_dataset(f"folder:{tgz}", "test")
    assert len(load_dataset(f"folder:{tgz}", "train")) == 6  # only the requested split is decoded
    (root / "test" / "cat" / "broken.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataFormatError, match="broken.jpg"):
        load_dataset(f"folder:{root}", "test")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tgz.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="cut.tar.gz"):
        load_dataset(f"folder:{cut}", "train")


def test_archive_cache(tmp_path, cache_dir, monkeypatch):
    root = make_image_tree(tmp_path / "pets")
    tgz = tar_gz(root, tmp_path / "pets.tar.gz")
    first = load_dataset(f"folder:{tgz}", "test", cache=True)
    assert len(list((cache_dir / "decoded").glob("*.npz"))) == 2  # both splits cached in one pass

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(sources, "decode_image", no_decoding)
    for split in ("train", "test"):
        again = load_dataset(f"folder:{tgz}", split, cache=True)
        assert again.images.dtype == np.uint8 and again.labels.dtype == np.int64
    assert np.array_equal(again.images, first.images) and again.class_names == first.class_names
    assert again.extra["files"] == first.extra["files"]
    os.utime(tgz, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed archive is decoded again
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(f"folder:{tgz}", "test", cache=True)


# --------------------------------------------------------------------------- MVTec AD

def make_mvtec(root: Path, grey: bool = False, size: int = 16) -> Path:
    rng = np.random.default_rng(5)
    shape = (size, size) if grey else (size, size, 3)
    for k in range(3):
        save_image(root / "train" / "good" / f"{k:03d}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    save_image(root / "test" / "good" / "000.png", rng.integers(0, 256, shape, dtype=np.uint8))
    for defect in ("scratch", "crack"):
        for k in range(2):
            save_image(root / "test" / defect / f"{k:03d}.png", rng.integers(0, 256, shape, dtype=np.uint8))
            mask = np.zeros((size, size), np.uint8)
            mask[2:6, 3 + k:9] = 255
            save_image(root / "ground_truth" / defect / f"{k:03d}_mask.png", mask)
    return root


def test_mvtec_layout(tmp_path):
    make_mvtec(tmp_path / "mvtec_ad" / "bottle")
    train = load_dataset("mvtec:bottle", "train", data_dir=tmp_path)
    assert train.images.shape == (3, 16, 16, 3) and train.labels.tolist() == [0, 0, 0] and train.masks is None
    assert train.class_names == ["good", "crack", "scratch"] and train.name == "mvtec:bottle"
    test = load_dataset("mvtec:bottle", "test", data_dir=tmp_path)
    assert test.class_names == ["good", "crack", "scratch"]
    assert test.labels.tolist() == [1, 1, 0, 2, 2]  # sorted by path: crack/, good/, scratch/
    assert test.masks.shape == (5, 16, 16) and test.masks.dtype == np.uint8
    assert set(np.unique(test.masks)) == {0, 1} and test.masks[2].sum() == 0
    assert test.masks[0].sum() == 4 * 6 and test.extra["files"][3].endswith("scratch/000.png")
    small = load_dataset("mvtec:bottle", "test", data_dir=tmp_path, size=8)
    assert small.images.shape == (5, 8, 8, 3) and small.masks.shape == (5, 8, 8)
    assert set(np.unique(small.masks)) == {0, 1}
    grey = make_mvtec(tmp_path / "elsewhere" / "screw", grey=True)
    g = load_dataset(f"mvtec:{grey}", "test")
    assert g.images.shape == (5, 16, 16, 1) and g.name == "mvtec:screw"
    (grey / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataFormatError, match="001_mask.png"):
        load_dataset(f"mvtec:{grey}", "test")
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mvtec:carpet", "train", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mvtec_ad" / "carpet") in msg and "--data-dir" in msg and "NOVELTYLAB_DATA" in msg
    assert "train/good" in msg and "mvtec.com" in msg
    rows = {r["name"]: r for r in dataset_status(tmp_path)}
    assert rows["mvtec:bottle"]["found"]


# --------------------------------------------------------------------------- the real data in ../shared/data

def _shared(sub: str) -> Path:
    if not (SHARED_DATA / sub).is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA / sub}")
    return SHARED_DATA


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_data(name):
    data_dir = _shared(name)
    train, test = load_dataset(name, "train", data_dir=data_dir), load_dataset(name, "test", data_dir=data_dir)
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.num_classes == 10 and set(np.unique(train.labels)) == set(range(10))
    assert np.bincount(test.labels).min() >= 800 and np.bincount(train.labels).sum() == 60000
    if name == "fashion-mnist":
        assert np.all(np.bincount(train.labels) == 6000) and np.all(np.bincount(test.labels) == 1000)
    else:
        assert np.bincount(train.labels).tolist()[:2] == [5923, 6742]
    assert all(v is True for v in verify_dataset(name, data_dir).values())  # official checksums


@pytest.mark.slow
def test_real_cifar10_jpeg(monkeypatch):
    data_dir = _shared("cifar10-jpeg")
    before = snapshot(data_dir / "cifar10-jpeg")
    train = load_dataset("cifar10-jpeg", "train", data_dir=data_dir)  # decodes once (slow), then cached
    test = load_dataset("cifar10-jpeg", "test", data_dir=data_dir)
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.class_names == list(sources.CIFAR10_CLASSES)
    assert np.all(np.bincount(train.labels) == 5000) and np.all(np.bincount(test.labels) == 1000)
    assert 100 < train.images.mean() < 140
    assert snapshot(data_dir / "cifar10-jpeg") == before  # the data folder is only read

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(sources, "decode_image", no_decoding)
    again = load_dataset("cifar10-jpeg", "train", data_dir=data_dir)
    assert np.array_equal(again.images[::997], train.images[::997])
