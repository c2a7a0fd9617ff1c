"""Issue 17 item 9 (resources): archive members and image files are checked against a size cap
before they are read; the caps are module constants (monkeypatched small here, real sizes in
benchmarks/probe_inputs.py)."""
from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from noveltylab.data import formats
from noveltylab.data.formats import DataFormatError, open_image_tree, read_archive_members
from noveltylab.data.sources import load_folder
from noveltylab import images
from noveltylab.images import ImageError, as_images


def _png_bytes(size: int = 8) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.zeros((size, size), np.uint8)).save(b, format="PNG")
    return b.getvalue()


def _tar_with(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_zip_member_over_cap_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_IMAGE_MEMBER_BYTES", 4096)
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("imgs/ok.png", _png_bytes())
        zf.writestr("imgs/big.png", b"\x00" * 100_000)  # compresses to ~100 bytes
    reads = []
    real = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, info, *a: reads.append(info) or real(self, info, *a))
    with pytest.raises(DataFormatError) as err:
        load_folder(tmp_path / "a.zip")
    assert "a.zip:imgs/big.png: declares 0.1 MiB, over the 0 MiB limit for one member" in str(err.value)
    assert all(getattr(i, "filename", i) != "imgs/big.png" for i in reads)


def test_tar_gz_member_over_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_IMAGE_MEMBER_BYTES", 4096)
    _tar_with(tmp_path / "a.tar.gz", {"imgs/ok.png": _png_bytes(), "imgs/big.png": b"\x00" * 100_000})
    with pytest.raises(DataFormatError, match=r"a\.tar\.gz:imgs/big\.png: declares 0\.1 MiB, over the"):
        with open_image_tree(tmp_path / "a.tar.gz"):
            pass


def test_data_member_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_DATA_MEMBER_BYTES", 1000)
    _tar_with(tmp_path / "c.tar.gz", {"batch": b"\x00" * 5000})
    with pytest.raises(DataFormatError, match=r"c\.tar\.gz:batch: declares 0\.0 MiB, over the 0 MiB limit"):
        read_archive_members(tmp_path / "c.tar.gz", ["batch"])


def test_members_under_the_cap_still_load(tmp_path):
    _tar_with(tmp_path / "ok.tar.gz", {"imgs/a.png": _png_bytes(), "imgs/b.png": _png_bytes()})
    assert load_folder(tmp_path / "ok.tar.gz").images.shape == (2, 8, 8, 1)


def test_folder_file_over_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_IMAGE_MEMBER_BYTES", 100)
    monkeypatch.setattr(images, "MAX_IMAGE_FILE_BYTES", 100)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(_png_bytes(64) + b"\x00" * 200)
    with pytest.raises(DataFormatError, match=r"x\.png: declares .* MiB, over the"):
        load_folder(tmp_path / "d")
    with pytest.raises(ImageError, match=r"x\.png is 0\.0 MiB; files over 0 MiB are refused"):
        as_images(tmp_path / "d")
