"""Input conversion, registry and safe persistence, exercised through the raw-nn baseline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import noveltylab
from noveltylab import ImageError, ModelFileError, NotFittedError, as_images


def test_as_images_layouts_agree():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    a = as_images(nhwc)
    assert a.shape == (4, 3, 10, 12) and a.dtype == torch.float32
    assert float(a.max()) <= 1.0
    torch.testing.assert_close(as_images(nhwc.transpose(0, 3, 1, 2)), a)
    torch.testing.assert_close(as_images(torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 255), a)
    grey = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    assert as_images(grey).shape == (5, 1, 8, 8)


def test_as_images_reads_files_and_folders(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((6, 7), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    x = as_images(tmp_path)
    assert x.shape == (3, 1, 6, 7)
    assert torch.allclose(x[2], torch.full((1, 6, 7), 80 / 255))
    assert as_images([tmp_path / "0.png", tmp_path / "1.png"]).shape == (2, 1, 6, 7)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 8, 8), np.uint8), "empty"),
    (np.full((2, 8, 8), np.nan, np.float32), "NaN"),
    (np.full((2, 8, 8), np.inf, np.float32), "NaN or infinite"),
    (np.full((2, 8, 8), 255.0, np.float32), r"\[0, 1\]"),
    (np.zeros((3, 8, 8, 5), np.uint8), "channel"),
    (np.zeros((8, 8), np.uint8), "2-D"),
    ([np.zeros((8, 8)), np.zeros((9, 9))], "mixed"),
    ("/no/such/image.png", "not found"),
    (object(), "unsupported input type"),
])
def test_bad_input_messages(bad, message):
    with pytest.raises(ImageError, match=message):
        as_images(bad)


def test_unreadable_and_truncated_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="junk.png"):
        as_images(tmp_path / "junk.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        as_images(tmp_path / "cut.jpg")


def test_mixed_sizes_in_folder(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ImageError, match="mixed sizes"):
        as_images(tmp_path)


def test_registry_errors():
    assert "raw-nn" in noveltylab.available() and "cae-re" in noveltylab.available()
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        noveltylab.create("nope")
    with pytest.raises(KeyError, match="no profile 'huge'"):
        noveltylab.create("raw-nn", profile="huge")
    with pytest.raises(TypeError, match="no parameter"):
        noveltylab.create("raw-nn", bogus=1)


def test_empty_and_tiny_training_sets():
    det = noveltylab.create("raw-nn")
    with pytest.raises(ImageError, match="empty"):
        det.fit(np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(ImageError, match="at least 2"):
        det.fit(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(NotFittedError, match="calibrate"):
        noveltylab.create("raw-nn").fit(np.zeros((4, 8, 8), np.uint8)).predict(np.zeros((1, 8, 8), np.uint8))


@pytest.fixture()
def saved(tmp_path, digits_split):
    det = noveltylab.create("raw-nn", index="PQ16x4fs").fit(digits_split.train)
    det.save(tmp_path / "model")
    return det, tmp_path / "model"


def test_tampered_weights_are_detected(saved):
    _, path = saved
    w = path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="tampered"):
        noveltylab.load(path)


def test_config_errors(saved, tmp_path):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["method"] = "cae-re"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="config was modified"):
        noveltylab.load(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        noveltylab.load(path)
    with pytest.raises(ModelFileError, match="not a saved noveltylab model"):
        noveltylab.load(tmp_path / "nothing-here")


def test_weights_file_holds_no_pickle(saved):
    _, path = saved
    raw = (path / "weights.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert all(v["dtype"] in ("U8", "F32", "F64", "I64") for k, v in header.items() if k != "__metadata__")
