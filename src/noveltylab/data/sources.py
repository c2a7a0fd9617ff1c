"""Named data sets, image folders and MVTec-AD categories -> :class:`ImageSet`.

``load_dataset(name, split)`` is the one entry point. ``name`` is

* a registered data set (see :data:`DATASETS`): ``digits`` (bundled with
  scikit-learn, no files), ``mnist``, ``fashion-mnist``, ``cifar10``,
  ``cifar100``, ``svhn``, ``cifar10-jpeg``;
* ``folder:<path>``: a folder or ``.tar.gz``/``.tgz``/``.tar``/``.zip`` of one,
  laid out as ``<root>/{train,test}/<class>/<image>`` or ``<root>/<class>/<image>``;
* ``mvtec:<category>`` or ``mvtec:<path>``: the MVTec-AD layout.

Files are looked up in the data directory (:func:`default_data_dir`: the
``data_dir`` argument / ``--data-dir``, else ``$NOVELTYLAB_DATA``, else
``~/.cache/noveltylab/data``), under ``<data_dir>/<name>/``. Nothing is ever
written there except by ``download=True``; decoded JPEG archives are cached
under :func:`default_cache_dir`. Missing files raise
:class:`DatasetNotFoundError` whose message says which files go in which
folder and where to get them.

Splits: the official train/test split wherever one exists. ``digits`` has
none: every third image of each class (in data set order, positions 2, 5, 8,
...) is test, the rest train (1201 / 596). A ``folder:`` without
``train``/``test`` sub-folders is all ``train``; asking it for ``test`` raises
a ``ValueError`` (split it with a protocol instead).

``ImageSet.extra`` holds ``split``, ``source`` and, for image trees, ``files``
(one entry per image, in order); per-image entries describe the whole split
and are not re-indexed by ``ImageSet.subset``.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import ImageSet
from .download import DownloadError, RemoteFile, download_file, verify_file
from .formats import (DataFormatError, TreeFile, cifar_batch, decode_image, is_archive, names_list,
                      open_image_tree, read_archive_members, read_idx, read_svhn_mat, stack_images, str_keys,
                      load_pickle)

ENV_DATA = "NOVELTYLAB_DATA"
ENV_CACHE = "NOVELTYLAB_CACHE"
SPLITS = ("train", "test")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
MVTEC_CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                    "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
MVTEC_FOLDERS = ("mvtec_ad", "mvtec_anomaly_detection", "mvtec", "")
MVTEC_FILE = RemoteFile(
    "mvtec_anomaly_detection.tar.xz",
    ("https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/420938113-1629952094/"
     "mvtec_anomaly_detection.tar.xz",),
    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    note="MVTec AD, https://www.mvtec.com/company/research/datasets/mvtec-ad (CC BY-NC-SA 4.0), 4.9 GiB")

__all__ = ["DATASETS", "DatasetNotFoundError", "DatasetSpec", "DataFormatError", "RemoteFile", "dataset_status",
           "default_cache_dir", "default_data_dir", "load_dataset", "load_folder", "load_mvtec", "verify_dataset"]


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are not in the data directory (and could not be downloaded)."""


class _Missing(Exception):
    """Internal: files of a data set are missing from ``folder``."""

    def __init__(self, folder: Path, files: list[str], looked_in: list[Path], hint: str = "") -> None:
        super().__init__(f"missing {files} in {folder}")
        self.folder, self.files, self.looked_in, self.hint = folder, files, looked_in, hint


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: what it is, which files it needs, where to get them, how to read them.

    ``folders``: sub-folders of the data directory searched in order (``""``
    is the data directory itself); files are downloaded into the first.
    ``locate(spec, data_dir, split)`` returns the file or folder to read (or
    raises an internal "missing" error); ``loader(location, split, **options)``
    reads it.
    """

    name: str
    description: str
    folders: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    locate: Callable[..., Path | None]
    loader: Callable[..., ImageSet]
    options: tuple[str, ...] = ()
    homepage: str = ""
    license: str = ""
    class_names: tuple[str, ...] = ()
    manual: str = ""

    def files_for(self, split: str) -> tuple[RemoteFile, ...]:
        """The official files that ``split`` needs."""
        return tuple(f for f in self.files if f.split in (None, split))

    def find(self, data_dir: Path, split: str) -> Path | None:
        """Where this data set's ``split`` lies under ``data_dir``; raises if its files are missing."""
        return self.locate(self, Path(data_dir), split)


# --------------------------------------------------------------------------- directories

def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$NOVELTYLAB_DATA``, else ``~/.cache/noveltylab/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "noveltylab" / "data"


def _data_dir_origin(data_dir: str | os.PathLike | None) -> str:
    if data_dir is not None and str(data_dir) != "":
        return "given by --data-dir / data_dir"
    if os.environ.get(ENV_DATA):
        return f"from ${ENV_DATA}"
    return f"the default; --data-dir and ${ENV_DATA} are unset"


def default_cache_dir() -> Path:
    """noveltylab's cache folder: ``$NOVELTYLAB_CACHE`` if set, else ``~/.cache/noveltylab``.

    Decoded image archives are kept in its ``decoded/`` sub-folder.
    """
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "noveltylab"


def _candidates(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    out: list[Path] = []
    for f in spec.folders:
        p = data_dir / f if f else data_dir
        if p not in out:
            out.append(p)
    return out


# --------------------------------------------------------------------------- digits (scikit-learn)

def _locate_nothing(spec: DatasetSpec, data_dir: Path, split: str) -> None:
    return None


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., None]
    images.flags.writeable = False
    labels = d.target.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def _load_digits(location: None, split: str) -> ImageSet:
    """scikit-learn's 8x8 digits, 0..16 scaled to 0..255; every third image per class is test."""
    images, labels = _digits_arrays()
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    test = rank % 3 == 2
    keep = test if split == "test" else ~test
    return ImageSet(images[keep], labels[keep], list(DIGIT_CLASSES), name="digits",
                    extra={"split": split, "source": "sklearn.datasets.load_digits", "index": np.flatnonzero(keep)})


# --------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

def _idx_paths(folder: Path, names: list[str]) -> list[Path | None]:
    out = []
    for n in names:
        base = n.removesuffix(".gz")
        out.append(next((folder / c for c in (base + ".gz", base) if (folder / c).is_file()), None))
    return out


def _locate_idx(spec: DatasetSpec, data_dir: Path, split: str) -> Path:
    names = [f.name for f in spec.files_for(split)]
    cands = _candidates(spec, data_dir)
    for folder in cands:
        if all(_idx_paths(folder, names)):
            return folder
    first = cands[0]
    missing = [n for n, p in zip(names, _idx_paths(first, names)) if p is None]
    return _raise_missing(first, missing, cands, "Each file may be gzipped (.gz, as published) or uncompressed.")


def _load_idx(location: Path, split: str, *, name: str, files: dict[str, tuple[str, str]],
              class_names: tuple[str, ...]) -> ImageSet:
    img_name, lab_name = files[split]
    img_path, lab_path = _idx_paths(location, [img_name, lab_name])
    assert img_path is not None and lab_path is not None
    images = read_idx(img_path, ndim=3)
    labels = read_idx(lab_path, ndim=1)
    if images.dtype != np.uint8:
        raise DataFormatError(f"{img_path}: expected unsigned-byte images, got {images.dtype}")
    if len(images) != len(labels):
        raise DataFormatError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataFormatError(f"{lab_path}: labels outside 0..{len(class_names) - 1}")
    return ImageSet(images[..., None], labels.astype(np.int64), list(class_names), name=name,
                    extra={"split": split, "source": str(img_path)})


def _idx_files(base_urls: tuple[str, ...], md5: dict[str, str], payload: dict[str, str]) -> tuple[RemoteFile, ...]:
    out = []
    for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        out.append(RemoteFile(n, tuple(u + n for u in base_urls), md5=md5[n], payload_sha256=payload[n],
                              split="train" if n.startswith("train") else "test"))
    return tuple(out)


_IDX_SPLIT_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

# md5: the published .gz files. payload_sha256: their decompressed content (gzip re-packing, as in
# the shared MNIST/Fashion-MNIST copies, changes the .gz bytes but not these).
_MNIST_FILES = _idx_files(
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
     "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
     "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
     "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    {"train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
     "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
     "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
     "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"})
_FASHION_FILES = _idx_files(
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
     "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
     "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    {"train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
     "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
     "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
     "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"})


# --------------------------------------------------------------------------- CIFAR-10 / CIFAR-100 pickles

def _locate_cifar(spec: DatasetSpec, data_dir: Path, split: str, *, inner: str,
                  members: dict[str, tuple[str, ...]]) -> Path:
    archive = spec.files[0].name
    cands = _candidates(spec, data_dir)
    for folder in cands:
        if all((folder / inner / m).is_file() for m in members[split]):
            return folder / inner
        if (folder / archive).is_file():
            return folder / archive
    return _raise_missing(cands[0], [archive], cands,
                          f"Either the archive itself (read without extracting) or its extracted folder "
                          f"{inner}/ holding {', '.join(members[split])} will do.")


def _load_cifar(location: Path, split: str, *, name: str, inner: str, members: dict[str, tuple[str, ...]],
                meta: str, label_keys: dict[str, tuple[str, str]], default_mode: str,
                label_mode: str | None = None) -> ImageSet:
    mode = label_mode or default_mode
    if mode not in label_keys:
        raise ValueError(f"label_mode must be one of {sorted(label_keys)}, got {label_mode!r}")
    label_key, names_key = label_keys[mode]
    wanted = list(members[split])
    if location.is_dir():
        blobs = {m: (location / m).read_bytes() for m in wanted}
        meta_blob = (location / meta).read_bytes() if (location / meta).is_file() else None
        where = {m: str(location / m) for m in [*wanted, meta]}
    else:
        names = [f"{inner}/{m}" for m in wanted]
        got = read_archive_members(location, names, optional=[f"{inner}/{meta}"])
        blobs = {m: got[f"{inner}/{m}"] for m in wanted}
        meta_blob = got.get(f"{inner}/{meta}")
        where = {m: f"{location}:{inner}/{m}" for m in [*wanted, meta]}
    parts = [cifar_batch(blobs[m], where[m], [label_key]) for m in wanted]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1][label_key] for p in parts])
    if meta_blob is not None:
        meta_d = str_keys(load_pickle(meta_blob, where[meta]), where[meta])
        if names_key not in meta_d:
            raise DataFormatError(f"{where[meta]}: no {names_key!r} (has {sorted(meta_d)})")
        class_names = names_list(meta_d[names_key])
    elif name == "cifar10":
        class_names = list(CIFAR10_CLASSES)
    else:
        raise DataFormatError(f"{location}: the {meta!r} file with the class names is missing")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataFormatError(f"{location}: labels outside 0..{len(class_names) - 1}")
    set_name = name if mode == default_mode else f"{name}-{mode}"
    return ImageSet(images, labels, class_names, name=set_name,
                    extra={"split": split, "source": str(location), "label_mode": mode})


_CIFAR10_MEMBERS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR100_MEMBERS = {"train": ("train",), "test": ("test",)}


# --------------------------------------------------------------------------- SVHN

def _locate_files(spec: DatasetSpec, data_dir: Path, split: str) -> Path:
    names = [f.name for f in spec.files_for(split)]
    cands = _candidates(spec, data_dir)
    for folder in cands:
        if all((folder / n).is_file() for n in names):
            return folder / names[0]
    return _raise_missing(cands[0], [n for n in names if not (cands[0] / n).is_file()], cands)


def _load_svhn(location: Path, split: str) -> ImageSet:
    images, labels = read_svhn_mat(location)
    return ImageSet(images, labels, list(DIGIT_CLASSES), name="svhn", extra={"split": split, "source": str(location)})


# --------------------------------------------------------------------------- image trees: folders, archives

def _split_tree(files: list[TreeFile], root_name: str, where: str) -> dict[str, list[tuple[str, TreeFile]]]:
    """Group tree files by split: ``{"train": [(class, file)], "test": [...]}`` (class layout: train only)."""
    if not files:
        raise DataFormatError(f"{where}: no image files found")
    depth = 0
    while True:  # strip leading folders shared by every file (e.g. the top folder of an archive)
        heads = {f.parts[depth] for f in files}
        if len(heads) == 1 and all(len(f.parts) > depth + 2 for f in files) and next(iter(heads)) not in SPLITS:
            depth += 1
        else:
            break
    rel = [(f.parts[depth:], f) for f in files]
    if any(p[0] in SPLITS and len(p) > 1 for p, _ in rel):
        out: dict[str, list[tuple[str, TreeFile]]] = {s: [] for s in SPLITS}
        for p, f in rel:
            if p[0] not in SPLITS:
                continue  # other top-level folders (val/, extra/) are not part of train/test
            if len(p) < 3:
                raise DataFormatError(f"{where}: {f.source} is not in a class folder; expected "
                                      f"{p[0]}/<class>/<image>")
            out[p[0]].append((p[1], f))
        return out
    lengths = {len(p) for p, _ in rel}
    if lengths == {1}:
        return {"train": [(root_name, f) for _, f in rel]}
    if 1 in lengths:
        loose = next(f.source for p, f in rel if len(p) == 1)
        raise DataFormatError(f"{where}: images both loose (e.g. {loose}) and in class folders; "
                              "put every image in a <class>/ folder")
    return {"train": [(p[0], f) for p, f in rel]}


def _decode_entries(entries: list[tuple[str, TreeFile]], class_names: list[str], where: str,
                    size: tuple[int, int] | None, channels: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    arrays, sources = [], []
    for _, f in entries:
        arrays.append(decode_image(_read(f), f.source, size=size))
        sources.append(f.source)
    images = stack_images(arrays, sources, where, channels=channels)
    labels = np.array([class_names.index(c) for c, _ in entries], dtype=np.int64)
    return images, labels, sources


def _read(f: TreeFile) -> bytes:
    try:
        return f.read()
    except OSError as exc:
        raise DataFormatError(f"cannot read {f.source}: {exc}") from None


def _parse_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _cache_file(location: Path, prefix: str, split: str, opts: str) -> Path | None:
    try:
        st = location.stat()
    except OSError:
        return None
    key = hashlib.sha256(f"{location.resolve()}|{st.st_size}|{st.st_mtime_ns}|{opts}|v1".encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in prefix)
    return default_cache_dir() / "decoded" / f"{safe}-{key}-{split}.npz"


def _cache_load(path: Path | None, prefix: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"images": z["images"], "labels": z["labels"].astype(np.int64),
                    "class_names": [str(c) for c in z["class_names"]], "files": [prefix + s for s in z["files"].tolist()]}
    except Exception as exc:  # a broken cache file is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=3)
        return None


def _cache_save(path: Path | None, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                files: list[str], prefix: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, images=images, labels=labels, class_names=np.array(class_names, dtype=str),
                 files=np.array([f.removeprefix(prefix) for f in files], dtype=str))
        os.replace(tmp, path)
        prefix, split = path.name.rsplit("-", 2)[0], path.name.rsplit("-", 1)[1]
        for old in path.parent.glob(f"{prefix}-*-{split}"):
            if old != path and old.name.rsplit("-", 2)[0] == prefix:
                old.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not write the decoded-image cache {path}: {exc}", stacklevel=3)


def _load_tree(location: Path, split: str, *, name: str, class_names: tuple[str, ...] | None = None,
               size: Any = None, channels: int | None = None, cache: bool = False) -> ImageSet:
    """Read a folder/archive image tree; with ``cache`` (archives only) keep decoded arrays as .npz."""
    hw = _parse_size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    use_cache = cache and location.is_file()
    opts = f"{hw}|{channels}|{class_names}"
    if use_cache:
        hit = _cache_load(_cache_file(location, name, split, opts), f"{location}:")
        if hit is not None:
            return ImageSet(hit["images"], hit["labels"], hit["class_names"], name=name,
                            extra={"split": split, "source": str(location), "files": hit["files"]})
    root_name = location.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if root_name.lower().endswith(suffix):
            root_name = root_name[: -len(suffix)]
    where = str(location)
    with open_image_tree(location) as files:
        groups = _split_tree(files, root_name, where)
        found = sorted({c for entries in groups.values() for c, _ in entries})
        if class_names is not None:
            extra_cls = sorted(set(found) - set(class_names))
            if extra_cls:
                raise DataFormatError(f"{where}: unexpected class folders {extra_cls}; expected {list(class_names)}")
            names = list(class_names)
        else:
            names = found
        if split not in groups:
            raise ValueError(f"{where} has no train/ and test/ folders (layout <class>/<image>), so all of it is "
                             f"split 'train'; split='{split}' is not available. Make a test set with a protocol, "
                             "or arrange the images as train/<class>/... and test/<class>/...")
        if not groups[split]:
            raise DataFormatError(f"{where}: no images in its {split}/ folder")
        todo = [s for s in groups if groups[s]] if use_cache else [split]
        result = None
        for s in todo:
            images, labels, sources = _decode_entries(groups[s], names, f"{where} ({s})", hw, channels)
            if use_cache:
                _cache_save(_cache_file(location, name, s, opts), images, labels, names, sources, f"{location}:")
            if s == split:
                result = ImageSet(images, labels, names, name=name,
                                  extra={"split": split, "source": str(location), "files": sources})
    assert result is not None
    return result


def _resolve_user_path(arg: str, data_dir: Path) -> Path | None:
    p = Path(arg).expanduser()
    if p.exists():
        return p
    if not p.is_absolute() and (data_dir / p).exists():
        return data_dir / p
    return None


def load_folder(path: str | os.PathLike, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                size: Any = None, channels: int | None = None, cache: bool = False,
                name: str | None = None) -> ImageSet:
    """Images from a folder or a .tar.gz/.tgz/.tar/.zip archive of one (read in place, never extracted).

    Layouts: ``<root>/{train,test}/<class>/<image>`` (class names: sorted union
    over both splits), ``<root>/<class>/<image>`` (all of it is ``train``), or
    images directly in ``<root>`` (one class named after the folder). Order is
    sorted by path. ``size`` (int or ``(h, w)``) resizes every image
    (bilinear); without it, mixed sizes raise a :class:`DataFormatError`
    listing them. Grey images become RGB when colours are mixed, unless
    ``channels`` is given. ``cache=True`` keeps decoded arrays of an archive
    under :func:`default_cache_dir`. A relative ``path`` that does not exist
    is also looked up in the data directory.
    """
    split = _check_split(split)
    root = default_data_dir(data_dir)
    location = _resolve_user_path(str(path), root)
    if location is None:
        raise DatasetNotFoundError(
            f"image folder {str(path)!r} not found (looked in {Path(path).expanduser().resolve()} and {root / path}).\n"
            f"Give an existing folder or .tar.gz/.tgz/.tar/.zip file as folder:<path>, or put it in the data "
            f"directory ({root}; change it with --data-dir DIR or the environment variable {ENV_DATA}=DIR).")
    if location.is_file() and not is_archive(location):
        raise ValueError(f"{location} is a file but not a supported archive (.tar.gz, .tgz, .tar, .zip)")
    return _load_tree(location, split, name=name or f"folder:{path}", size=size, channels=channels, cache=cache)


def _locate_tree(spec: DatasetSpec, data_dir: Path, split: str, *, inner: str) -> Path:
    archive = spec.files[0].name
    cands = _candidates(spec, data_dir)
    for folder in cands:
        if (folder / archive).is_file():
            return folder / archive
        if (folder / inner / split).is_dir():
            return folder / inner
    return _raise_missing(cands[0], [archive], cands)


# --------------------------------------------------------------------------- MVTec AD

def _find_mvtec(arg: str, data_dir: Path) -> Path:
    p = Path(arg).expanduser()
    if (p / "train").is_dir() or (p / "test").is_dir():
        return p
    looked = []
    for sub in MVTEC_FOLDERS:
        c = (data_dir / sub / arg) if sub else data_dir / arg
        looked.append(c)
        if (c / "train").is_dir() or (c / "test").is_dir():
            return c
    known = "" if arg in MVTEC_CATEGORIES else \
        f" ({arg!r} is not one of the 15 categories: {', '.join(MVTEC_CATEGORIES)})"
    target = data_dir / MVTEC_FOLDERS[0]
    raise DatasetNotFoundError(
        f"MVTec-AD category {arg!r} not found{known}.\n"
        f"Put the category folder at {target / Path(arg).name}/ with the official layout:\n"
        f"  train/good/*.png, test/<defect>/*.png, ground_truth/<defect>/<name>_mask.png\n"
        f"Get {MVTEC_FILE.name} ({MVTEC_FILE.checksum_text()}) from "
        f"https://www.mvtec.com/company/research/datasets/mvtec-ad (CC BY-NC-SA 4.0; also "
        f"{MVTEC_FILE.urls[0]}) and extract it into {target}/ (it is not downloaded automatically: 4.9 GiB).\n"
        f"Or use another data folder: --data-dir DIR, data_dir=DIR in Python, or the environment variable "
        f"{ENV_DATA}=DIR; or name the category folder directly: mvtec:/path/to/{Path(arg).name}.\n"
        f"Looked in: {', '.join(str(x) for x in looked)}")


def load_mvtec(category: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
               size: Any = None, channels: int | None = None) -> ImageSet:
    """One MVTec-AD category (or a folder in its layout) as an :class:`ImageSet`.

    ``class_names`` is ``["good", <defects sorted>]`` for both splits; train
    images are all ``good`` (label 0) with ``masks=None``; test images carry
    uint8 0/1 masks ``(N, H, W)`` (zeros for good) from
    ``ground_truth/<defect>/<stem>_mask.png``. ``size`` resizes images
    (bilinear) and masks (nearest). Grey categories stay one channel.
    ``extra["files"]`` lists the image files in order.
    """
    split = _check_split(split)
    hw = _parse_size(size)
    root = _find_mvtec(str(category), default_data_dir(data_dir))
    defects = sorted(d.name for d in (root / "test").iterdir() if d.is_dir() and d.name != "good") \
        if (root / "test").is_dir() else []
    class_names = ["good", *defects]
    folder = root / split
    if not folder.is_dir():
        raise DatasetNotFoundError(f"MVTec-AD folder {root} has no {split}/ folder")
    with open_image_tree(folder) as files:
        if split == "train":
            files = [f for f in files if len(f.parts) == 2 and f.parts[0] == "good"]
        else:
            files = [f for f in files if len(f.parts) == 2]
        if not files:
            raise DataFormatError(f"{folder}: no images in {split}/good/" if split == "train"
                                  else f"{folder}: no images in {split}/<defect>/")
        arrays, sources, labels, masks = [], [], [], []
        for f in files:
            img = decode_image(_read(f), f.source, size=hw)
            arrays.append(img)
            sources.append(f.source)
            labels.append(class_names.index(f.parts[0]))
            if split == "test":
                masks.append(_mvtec_mask(root, f, img.shape[:2], hw))
    images = stack_images(arrays, sources, str(folder), channels=channels)
    mask_arr = np.stack(masks) if masks else None
    return ImageSet(images, np.array(labels, dtype=np.int64), class_names, masks=mask_arr,
                    name=f"mvtec:{root.name}",
                    extra={"split": split, "source": str(root), "files": sources})


def _mvtec_mask(root: Path, f: TreeFile, shape: tuple[int, int], hw: tuple[int, int] | None) -> np.ndarray:
    defect, fname = f.parts
    if defect == "good":
        return np.zeros(shape, dtype=np.uint8)
    stem = Path(fname).stem
    folder = root / "ground_truth" / defect
    path = folder / f"{stem}_mask.png"
    if not path.is_file():
        alt = sorted(folder.glob(f"{stem}_mask.*")) if folder.is_dir() else []
        if not alt:
            raise DataFormatError(f"{f.source}: its ground-truth mask {path} is missing")
        path = alt[0]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot read mask {path}: {exc}") from None
    mask = decode_image(data, str(path), size=hw, mask=True)
    if mask.shape != shape:
        raise DataFormatError(f"mask {path} is {mask.shape[0]}x{mask.shape[1]} but its image {f.source} is "
                              f"{shape[0]}x{shape[1]}")
    return mask


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "digits", "scikit-learn's 8x8 handwritten digits (1797 images, 10 classes); bundled, no files needed",
        (), (), _locate_nothing, _load_digits,
        homepage="https://archive.ics.uci.edu/dataset/80", license="CC BY 4.0 (UCI)",
        class_names=DIGIT_CLASSES),
    "mnist": DatasetSpec(
        "mnist", "MNIST handwritten digits, 28x28 grey, 60000 train / 10000 test, 10 classes",
        ("mnist", "MNIST/raw", "MNIST"), _MNIST_FILES, _locate_idx,
        partial(_load_idx, name="mnist", files=_IDX_SPLIT_FILES, class_names=DIGIT_CLASSES),
        homepage="http://yann.lecun.com/exdb/mnist/", license="CC BY-SA 3.0", class_names=DIGIT_CLASSES),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "Fashion-MNIST (Zalando) clothing, 28x28 grey, 60000 train / 10000 test, 10 classes",
        ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"), _FASHION_FILES, _locate_idx,
        partial(_load_idx, name="fashion-mnist", files=_IDX_SPLIT_FILES, class_names=FASHION_MNIST_CLASSES),
        homepage="https://github.com/zalandoresearch/fashion-mnist", license="MIT",
        class_names=FASHION_MNIST_CLASSES),
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR-10 (official python pickles), 32x32 RGB, 50000 train / 10000 test, 10 classes",
        ("cifar10", "cifar-10", ""),
        (RemoteFile("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                    md5="c58f30108f718f92721af3b95e74349a"),),
        partial(_locate_cifar, inner="cifar-10-batches-py", members=_CIFAR10_MEMBERS),
        partial(_load_cifar, name="cifar10", inner="cifar-10-batches-py", members=_CIFAR10_MEMBERS,
                meta="batches.meta", label_keys={"fine": ("labels", "label_names")}, default_mode="fine"),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", license="cite Krizhevsky 2009",
        class_names=CIFAR10_CLASSES),
    "cifar100": DatasetSpec(
        "cifar100", "CIFAR-100 (official python pickles), 32x32 RGB, 50000 / 10000; label_mode='coarse' "
        "(20 superclasses, default) or 'fine' (100 classes)",
        ("cifar100", "cifar-100", ""),
        (RemoteFile("cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                    md5="eb9058c3a382ffc7106e4002c42a8d85"),),
        partial(_locate_cifar, inner="cifar-100-python", members=_CIFAR100_MEMBERS),
        partial(_load_cifar, name="cifar100", inner="cifar-100-python", members=_CIFAR100_MEMBERS, meta="meta",
                label_keys={"coarse": ("coarse_labels", "coarse_label_names"),
                            "fine": ("fine_labels", "fine_label_names")}, default_mode="coarse"),
        options=("label_mode",), homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        license="cite Krizhevsky 2009"),
    "svhn": DatasetSpec(
        "svhn", "SVHN cropped digits (format 2 .mat), 32x32 RGB, 73257 train / 26032 test, 10 classes",
        ("svhn", "SVHN", ""),
        (RemoteFile("train_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
                    md5="e26dedcc434d2e4c54c9b2d4a06d8373", split="train"),
         RemoteFile("test_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
                    md5="eb5a983be6a315427106f1b164d9cef3", split="test")),
        _locate_files, _load_svhn,
        homepage="http://ufldl.stanford.edu/housenumbers/", license="non-commercial use",
        class_names=DIGIT_CLASSES),
    "cifar10-jpeg": DatasetSpec(
        "cifar10-jpeg", "CIFAR-10 re-encoded as JPEG (quality ~75) in an image-folder tar.gz, 50000 / 10000; "
        "decoded once, then cached",
        ("cifar10-jpeg", ""),
        (RemoteFile("cifar10-jpeg.tar.gz",
                    sha256="1f6eacae8cafbd2e54f53210888fddc9731f7d0142cbf118983cdad2f2c56bcd"),),
        partial(_locate_tree, inner="cifar10-jpeg"),
        partial(_load_tree, name="cifar10-jpeg", class_names=CIFAR10_CLASSES, cache=True),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", license="cite Krizhevsky 2009",
        class_names=CIFAR10_CLASSES,
        manual="This archive has no public download: it is the JPEG copy of CIFAR-10 in the project's shared "
               "data folder (shared/data/cifar10-jpeg/). Point --data-dir at that data folder."),
}

ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
           "cifar10_jpeg": "cifar10-jpeg", "sklearn-digits": "digits"}


# --------------------------------------------------------------------------- entry points

def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def _raise_missing(folder: Path, files: list[str], looked_in: list[Path], hint: str = "") -> Any:
    raise _Missing(folder, files, looked_in, hint)


def _resolve_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}, "
                       "folder:<path> (an image folder or archive) and mvtec:<category or path>")
    return key


def _not_found(spec: DatasetSpec, split: str, m: _Missing, data_dir: Path, origin: str,
               download: bool, problem: str = "") -> DatasetNotFoundError:
    lines = [f"data set {spec.name!r} ({split} split) not found: {', '.join(m.files)} missing from {m.folder}/"]
    if problem:
        lines.append(problem)
    files = spec.files_for(split)
    downloadable = [f for f in files if f.urls]
    if downloadable:
        lines.append(f"Put these files in the folder {m.folder}/ :")
        for f in downloadable:
            lines.append(f"  {f.name}   from {f.urls[0]}   ({f.checksum_text()})")
            lines.extend(f"      or {u}" for u in f.urls[1:])
    elif files:
        lines.append(f"Put {', '.join(f.name for f in files)} in the folder {m.folder}/ .")
    if spec.manual:
        lines.append(spec.manual)
    if m.hint:
        lines.append(m.hint)
    lines.append(f"The data directory is {data_dir} ({origin}). To use another, pass --data-dir DIR on the "
                 f"command line (data_dir=DIR in Python) or set the environment variable {ENV_DATA}=DIR; the "
                 f"files then go in DIR/{spec.folders[0]}/.")
    if downloadable and not download:
        lines.append("With internet access, download=True fetches them from the URLs above and checks their "
                     "checksums.")
    lines.append("Looked in: " + ", ".join(str(p) for p in m.looked_in))
    return DatasetNotFoundError("\n".join(lines))


def _download(spec: DatasetSpec, split: str, data_dir: Path) -> None:
    folder = _candidates(spec, data_dir)[0]
    for f in spec.files_for(split):
        if not f.urls:
            raise DownloadError(f"{f.name} has no public download URL")
        if (folder / f.name).is_file() or (folder / f.name.removesuffix(".gz")).is_file():
            continue
        download_file(f, folder)


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                 download: bool = False, **options: Any) -> ImageSet:
    """Load ``split`` ("train" or "test") of a data set as uint8 NHWC images with int64 labels.

    ``name``: a key of :data:`DATASETS` (or an alias such as ``fashion_mnist``),
    ``folder:<path>`` (see :func:`load_folder`) or ``mvtec:<category or path>``
    (see :func:`load_mvtec`). ``options`` are data-set specific, e.g.
    ``label_mode="fine"`` for ``cifar100``, ``size=`` / ``channels=`` for
    folders and MVTec. ``download=True`` fetches missing official files
    (checksum-verified) into ``<data_dir>/<name>/``. Raises
    :class:`DatasetNotFoundError` when files are missing, ``KeyError`` for an
    unknown name, ``ValueError`` for a bad split.
    """
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a string, got {type(name).__name__}")
    split = _check_split(split)
    head, sep, rest = name.partition(":")
    if sep and head.strip().lower() in ("folder", "mvtec") and not rest.strip():
        raise ValueError(f"{name!r} needs a path or category after the colon, e.g. folder:images/ or mvtec:bottle")
    if sep and head.strip().lower() == "folder":
        _check_options(name, options, ("size", "channels", "cache"))
        return load_folder(rest, split, data_dir, **options)
    if sep and head.strip().lower() == "mvtec":
        _check_options(name, options, ("size", "channels"))
        if download:
            warnings.warn("MVTec-AD is not downloaded automatically (4.9 GiB); download=True is ignored",
                          stacklevel=2)
        return load_mvtec(rest, split, data_dir, **options)
    spec = DATASETS[_resolve_name(name)]
    _check_options(spec.name, options, spec.options)
    root = default_data_dir(data_dir)
    try:
        location = spec.find(root, split)
    except _Missing as m:
        if not download:
            raise _not_found(spec, split, m, root, _data_dir_origin(data_dir), download) from None
        try:
            _download(spec, split, root)
            location = spec.find(root, split)
        except DownloadError as exc:
            raise _not_found(spec, split, m, root, _data_dir_origin(data_dir), download,
                             problem=f"Download failed: {exc}") from None
        except _Missing as m2:
            raise _not_found(spec, split, m2, root, _data_dir_origin(data_dir), download) from None
    return spec.loader(location, split, **options)


def _check_options(name: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    bad = sorted(set(options) - set(allowed))
    if bad:
        ok = ", ".join(allowed) if allowed else "none"
        raise TypeError(f"load_dataset({name!r}) got unknown option(s) {bad}; options for it: {ok}")


def _mvtec_rows(data_dir: Path) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for sub in MVTEC_FOLDERS:
        base = data_dir / sub if sub else data_dir
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if not sub and d.name not in MVTEC_CATEGORIES:
                continue
            if d.is_dir() and (d / "train" / "good").is_dir() and d.name not in seen:
                seen.add(d.name)
                rows.append({"name": f"mvtec:{d.name}", "found": True, "path": str(d),
                             "description": f"MVTec-AD category {d.name!r} (train/good, test/<defect>, masks)"})
    if not rows:
        rows.append({"name": "mvtec:<category>", "found": False, "path": str(data_dir / MVTEC_FOLDERS[0]),
                     "description": "MVTec-AD industrial inspection (15 categories, pixel masks); "
                                    "manual download: https://www.mvtec.com/company/research/datasets/mvtec-ad"})
    return rows


def dataset_status(data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per data set: ``name``, ``found`` (both splits present), ``path``, ``description``.

    Also lists MVTec-AD categories found under ``<data_dir>/mvtec_ad/`` (or a
    placeholder row when there are none). Rows carry ``splits``: the splits found.
    """
    root = default_data_dir(data_dir)
    rows = []
    for spec in DATASETS.values():
        found_splits, path = [], None
        for s in SPLITS:
            try:
                loc = spec.find(root, s)
            except _Missing:
                continue
            found_splits.append(s)
            path = path or loc
        if spec.name == "digits":
            shown = "(bundled with scikit-learn)"
        else:
            shown = str(path if path is not None else _candidates(spec, root)[0])
        rows.append({"name": spec.name, "found": len(found_splits) == len(SPLITS), "path": shown,
                     "description": spec.description, "splits": found_splits})
    return rows + _mvtec_rows(root)


def verify_dataset(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, bool | None]:
    """Check the files of a registered data set against their official checksums.

    Returns ``{file name: True | False | None}`` (None: no checksum known) for
    the files present; a ``.gz`` passes when its bytes or its decompressed
    content match, and an uncompressed IDX file when its content matches.
    """
    spec = DATASETS[_resolve_name(name)]
    root = default_data_dir(data_dir)
    out: dict[str, bool | None] = {}
    for f in spec.files:
        for folder in _candidates(spec, root):
            hit = next((folder / n for n in (f.name, f.name.removesuffix(".gz")) if (folder / n).is_file()), None)
            if hit is not None:
                out[f.name] = verify_file(hit, f)
                break
    return out

