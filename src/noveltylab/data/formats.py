"""Readers for the on-disk formats of the data sets: IDX, CIFAR pickles, SVHN .mat, image trees.

Every reader turns a bad file into a :class:`DataFormatError` whose message
names the file and what is wrong with it. Nothing here knows about data set
names, folders or downloads (that is :mod:`noveltylab.data.sources`).
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..images import IMAGE_EXTENSIONS, ImageError, is_hidden
from ..images import decode_image as _decode

# A member whose declared (uncompressed) size exceeds these caps is refused before it is read, so a small
# archive cannot expand into a huge allocation. Image files vs data-set payloads (CIFAR-100 train: 155 MB).
MAX_IMAGE_MEMBER_BYTES = 64 * 1024 * 1024
MAX_DATA_MEMBER_BYTES = 200 * 1024 * 1024

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class DataFormatError(ValueError):
    """A data file exists but its content is corrupt, truncated or not in the expected format."""


class UnsafePickleError(DataFormatError, pickle.UnpicklingError):
    """A pickle asked for a Python object outside the small allow-list of plain numpy types."""


# --------------------------------------------------------------------------- raw bytes

def read_maybe_gzip(path: Path) -> bytes:
    """The content of ``path``, decompressed when it ends in ``.gz``."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFormatError(f"{path}: corrupt or truncated gzip file ({exc}); "
                              "delete it and put a fresh copy there") from None


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def parse_idx(data: bytes, source: str = "IDX data", ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic ``00 00 <type> <ndim>``, big-endian dims, data."""
    if len(data) < 4:
        raise DataFormatError(f"{source}: truncated IDX file ({len(data)} bytes, no header)")
    code, dims_n = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _IDX_DTYPES:
        magic = int.from_bytes(data[:4], "big")
        raise DataFormatError(f"{source}: not an IDX file (magic number 0x{magic:08x}; expected "
                              "0x000008NN for unsigned bytes)")
    if ndim is not None and dims_n != ndim:
        raise DataFormatError(f"{source}: IDX file has {dims_n} dimensions, expected {ndim}")
    header = 4 + 4 * dims_n
    if len(data) < header:
        raise DataFormatError(f"{source}: truncated IDX file (header cut off after {len(data)} bytes)")
    dims = struct.unpack(f">{dims_n}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    need, have = count * dtype.itemsize, len(data) - header
    if have < need:
        raise DataFormatError(f"{source}: truncated IDX file: its header promises shape {tuple(dims)} "
                              f"({need} data bytes) but only {have} bytes follow")
    if have > need:
        raise DataFormatError(f"{source}: corrupt IDX file: {have - need} unexpected bytes after the "
                              f"data of shape {tuple(dims)}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped (``.gz``) or not."""
    return parse_idx(read_maybe_gzip(path), str(path), ndim=ndim)


# --------------------------------------------------------------------------- restricted pickles (CIFAR)

def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for data-only pickles: dicts, lists, strings, bytes, numbers and numpy arrays.

    ``find_class`` allows exactly ``numpy.(_)core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``; any other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`UnsafePickleError` before it is called.
    """

    def __init__(self, file: Any, source: str = "pickle", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load the Python object {module}.{name}; only plain data "
                "and numpy arrays are allowed in data set pickles (is this really an official file?)"
            ) from None


def load_pickle(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` and ``encoding="bytes"`` (official CIFAR style)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding="bytes").load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, struct.error) as exc:
        raise DataFormatError(f"{source}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None


def _text(v: Any) -> str:
    return v.decode("latin1") if isinstance(v, bytes) else str(v)


def str_keys(obj: Any, source: str) -> dict[str, Any]:
    """A pickled dict with its (Python-2 ``bytes``) keys decoded to ``str``."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


def names_list(v: Any) -> list[str]:
    """A list of class names stored as bytes or str."""
    return [_text(x) for x in v]


def cifar_batch(data: bytes, source: str, label_keys: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Decode one official CIFAR python batch: ``(N, 32, 32, 3)`` uint8 images and the requested label arrays."""
    d = str_keys(load_pickle(data, source), source)
    missing = [k for k in ("data", *label_keys) if k not in d]
    if missing:
        raise DataFormatError(f"{source}: not a CIFAR batch, missing key(s) {missing} (has {sorted(d)})")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataFormatError(f"{source}: 'data' must be uint8 (N, 3072), got {desc}")
    images = np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    labels = {}
    for k in label_keys:
        y = np.asarray(d[k], dtype=np.int64).reshape(-1)
        if len(y) != len(images):
            raise DataFormatError(f"{source}: {len(images)} images but {len(y)} {k!r}")
        labels[k] = y
    return images, labels


# --------------------------------------------------------------------------- SVHN .mat

def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file: ``(N, 32, 32, 3)`` uint8 images and labels 0..9 (10 -> 0)."""
    from scipy.io import loadmat

    try:
        m = loadmat(str(path))
    except Exception as exc:  # scipy raises many types for broken files
        raise DataFormatError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from None
    if "X" not in m or "y" not in m:
        raise DataFormatError(f"{path}: not an SVHN file (variables {sorted(k for k in m if not k.startswith('__'))},"
                              " expected X and y)")
    x, y = m["X"], np.asarray(m["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DataFormatError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, {len(y)})")
    images = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2))).astype(np.uint8, copy=False)
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DataFormatError(f"{path}: labels outside 0..10 ({y.min()}..{y.max()})")
    return images, y % 10


# --------------------------------------------------------------------------- image files

def decode_image(data: bytes, source: str, size: tuple[int, int] | None = None, mask: bool = False) -> np.ndarray:
    """:func:`noveltylab.images.decode_image` (the one decoder), raising :class:`DataFormatError`."""
    try:
        return _decode(data, source, size=size, mask=mask)
    except ImageError as exc:
        raise DataFormatError(str(exc)) from None


def stack_images(arrays: list[np.ndarray], sources: list[str], where: str, channels: int | None = None) -> np.ndarray:
    """Stack decoded images into ``(N, H, W, C)``; grey is repeated to RGB when colours are mixed.

    Mixed sizes raise :class:`DataFormatError` listing the sizes, a count and an
    example file for each.
    """
    if not arrays:
        raise DataFormatError(f"{where}: no images")
    want = channels or (3 if any(a.shape[2] == 3 for a in arrays) else 1)
    if want not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    out_list = []
    for a in arrays:
        if a.shape[2] != want:
            a = np.repeat(a, 3, axis=2) if want == 3 else np.round(a.mean(2, keepdims=True)).astype(np.uint8)
        out_list.append(a)
    sizes: dict[tuple[int, int], list[str]] = {}
    for a, s in zip(out_list, sources):
        sizes.setdefault(a.shape[:2], []).append(s)
    if len(sizes) > 1:
        parts = [f"{h}x{w} ({len(files)} file(s), e.g. {files[0]})"
                 for (h, w), files in sorted(sizes.items(), key=lambda kv: -len(kv[1]))]
        raise DataFormatError(f"{where}: images have mixed sizes (HxW): {'; '.join(parts[:6])}. "
                              "Pass size=N (load_dataset(..., size=N)) to resize them all to NxN")
    return np.stack(out_list)


# --------------------------------------------------------------------------- image trees (folders and archives)

@dataclass
class TreeFile:
    """One image file in a folder or archive: path parts below the tree root and a reader."""

    parts: tuple[str, ...]
    source: str
    read: Callable[[], bytes]


def is_archive(path: Path) -> bool:
    """Whether ``path`` names a supported archive (.tar.gz, .tgz, .tar, .zip)."""
    name = path.name.lower()
    return any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _skip(parts: Sequence[str]) -> bool:
    return is_hidden(parts)


def check_member_size(size: int, cap: int, source: str) -> None:
    """Refuse an archive member or file whose declared size is over ``cap`` bytes, before reading it."""
    if size > cap:
        raise DataFormatError(f"{source}: declares {size / 2**20:.1f} MiB, over the {cap / 2**20:.0f} MiB "
                              "limit for one member; refusing to read it (corrupt or hostile archive?)")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@contextmanager
def open_image_tree(path: Path) -> Iterator[list[TreeFile]]:
    """All image files under a folder or inside an archive, sorted by path; nothing is extracted to disk.

    A tar archive is read in one sequential pass (image bytes held in memory);
    folders and zip files are read lazily. Hidden files and ``__MACOSX`` are skipped.
    """
    path = Path(path)
    if path.is_dir():
        files = [TreeFile(p.relative_to(path).parts, str(p), (lambda p=p: _file_read(p)))
                 for p in path.rglob("*") if p.is_file() and _is_image(p.name)]
        files = [f for f in files if not _skip(f.parts)]
        yield sorted(files, key=lambda f: f.parts)
    elif path.name.lower().endswith(".zip"):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataFormatError(f"{path}: cannot open zip archive ({exc})") from None
        with zf:
            files = []
            for info in zf.infolist():
                parts = tuple(p for p in info.filename.split("/") if p)
                if info.is_dir() or not parts or _skip(parts) or not _is_image(parts[-1]):
                    continue
                files.append(TreeFile(parts, f"{path}:{info.filename}",
                                      (lambda i=info: _zip_read(zf, i, path))))
            yield sorted(files, key=lambda f: f.parts)
    elif is_archive(path):
        files = []
        try:
            with tarfile.open(path, "r:*") as tf:
                for m in tf:
                    parts = tuple(p for p in m.name.split("/") if p and p != ".")
                    if not m.isfile() or not parts or _skip(parts) or not _is_image(parts[-1]):
                        continue
                    check_member_size(m.size, MAX_IMAGE_MEMBER_BYTES, f"{path}:{m.name}")
                    fh = tf.extractfile(m)
                    data = fh.read() if fh is not None else b""
                    files.append(TreeFile(parts, f"{path}:{m.name}", (lambda d=data: d)))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DataFormatError(f"{path}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
        yield sorted(files, key=lambda f: f.parts)
    else:
        raise DataFormatError(f"{path}: not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")


def _file_read(p: Path) -> bytes:
    check_member_size(p.stat().st_size, MAX_IMAGE_MEMBER_BYTES, str(p))
    return p.read_bytes()


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    check_member_size(info.file_size, MAX_IMAGE_MEMBER_BYTES, f"{path}:{info.filename}")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"cannot read {path}:{info.filename} ({exc})") from None


def read_archive_members(path: Path, names: Sequence[str], optional: Sequence[str] = ()) -> dict[str, bytes]:
    """The bytes of the named members of a tar archive (one sequential pass); missing required names raise."""
    want, out = set(names) | set(optional), {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                if m.name in want and m.isfile():
                    check_member_size(m.size, MAX_DATA_MEMBER_BYTES, f"{path}:{m.name}")
                    fh = tf.extractfile(m)
                    out[m.name] = fh.read() if fh is not None else b""
                    if len(out) == len(want):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataFormatError(f"{path}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
    missing = sorted(set(names) - set(out))
    if missing:
        raise DataFormatError(f"{path}: archive lacks {missing}; is it the official file?")
    return out
