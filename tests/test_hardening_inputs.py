"""Issue 17: the one input conversion (images.py) — no writes to caller memory, the layout rule,
dtypes, 16-bit files, grey+alpha, hidden folders, decompression bombs; the same result on every path."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import noveltylab
from noveltylab.data.sources import load_folder
from noveltylab.data.formats import DataFormatError, decode_image as formats_decode
from noveltylab.images import ImageError, as_images, decode_image, iter_image_batches, list_image_files


# --- 1. never write to the caller's memory ------------------------------------------------------
def test_float_array_slightly_above_one_is_not_clamped_in_place():
    x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32) * 0.9
    x[0, 0, 0] = np.float32(1.00005)  # inside the tolerance: clamped in the *output* only
    before = x.copy()
    out = as_images(x)
    np.testing.assert_array_equal(x, before)
    assert float(out.max()) == 1.0


def test_float32_tensor_is_not_modified_and_output_is_new_memory():
    t = torch.rand(4, 1, 8, 8)
    t[0, 0, 0, 0] = 1.00005
    before = t.clone()
    out = as_images(t)
    assert torch.equal(t, before)
    assert out.data_ptr() != t.data_ptr()
    out += 1  # writing the output never reaches the input
    assert torch.equal(t, before)


def test_fit_and_score_leave_inputs_untouched():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 1, 8, 8)) * 0.5).astype(np.float32)
    x[:, 0, 0, 0] = np.float32(1.00005)
    before = x.copy()
    det = noveltylab.create("raw-nn", device="cpu").fit(x)
    det.score(x)
    np.testing.assert_array_equal(x, before)


def test_requires_grad_tensor_is_accepted():
    t = torch.rand(3, 1, 8, 8, requires_grad=True)
    out = as_images(t)
    assert not out.requires_grad and torch.allclose(out, t.detach())


# --- 2. layout rule --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, why", [
    ((16, 16, 3), "it looks like one (H, W, C) colour image"),
    ((16, 16, 4), "it looks like one (H, W, C) colour image"),
    ((3, 16, 16), "it could be one (C, H, W) colour image or 3 grey images"),
    ((10, 3, 3, 3), "both axis 1 and axis 3 could be the channel axis"),
    ((10, 3, 20, 1), "both axis 1 and axis 3 could be the channel axis"),
    ((10, 1, 5, 3), "both axis 1 and axis 3 could be the channel axis"),
])
def test_undecidable_shapes_are_refused(shape, why):
    with pytest.raises(ImageError) as err:
        as_images(np.zeros(shape, np.uint8))
    msg = str(err.value)
    assert msg.startswith(f"cannot tell the layout of shape {shape}: {why}")
    assert "layout=" in msg and "NCHW, NHWC, NHW, CHW, HWC, HW" in msg


@pytest.mark.parametrize("shape, layout, out", [
    ((16, 16, 3), "HWC", (1, 3, 16, 16)),
    ((3, 16, 16), "CHW", (1, 3, 16, 16)),
    ((3, 16, 16), "NHW", (3, 1, 16, 16)),
    ((16, 16), "HW", (1, 1, 16, 16)),
    ((10, 3, 3, 3), "NHWC", (10, 3, 3, 3)),
    ((10, 3, 20, 1), "NHWC", (10, 1, 3, 20)),
    ((10, 3, 20, 1), "NCHW", (10, 3, 20, 1)),
    ((5, 8, 8), "auto", (5, 1, 8, 8)),
    ((1, 8, 8), "auto", (1, 1, 8, 8)),
    ((5, 8, 8, 3), "auto", (5, 3, 8, 8)),
    ((5, 3, 8, 8), "auto", (5, 3, 8, 8)),
    ((5, 8, 8, 1), "auto", (5, 1, 8, 8)),
])
def test_layouts(shape, layout, out):
    assert tuple(as_images(np.zeros(shape, np.uint8), layout=layout).shape) == out


def test_hwc_layout_puts_channels_in_place():
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 1] = 255
    x = as_images(img, layout="HWC")
    assert x.shape == (1, 3, 4, 5) and float(x[0, 1].min()) == 1.0 and float(x[0, 0].max()) == 0.0


def test_layout_errors():
    with pytest.raises(ImageError, match=r"unknown layout 'NWHC'"):
        as_images(np.zeros((2, 8, 8, 1), np.uint8), layout="NWHC")
    with pytest.raises(ImageError, match=r"layout='NCHW' needs a 4-D array, got shape \(8, 8\)"):
        as_images(np.zeros((8, 8), np.uint8), layout="NCHW")
    with pytest.raises(ImageError, match="2-D array of shape"):
        as_images(np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageError, match="need 1 or 3 channels, got 4"):
        as_images(np.zeros((2, 8, 8, 4), np.uint8), layout="NHWC")


def test_detector_refuses_a_single_colour_image_without_batch_axis():
    det = noveltylab.create("raw-nn", device="cpu").fit(np.random.default_rng(0).random((6, 16, 16, 3)))
    with pytest.raises(ImageError, match=r"cannot tell the layout of shape \(16, 16, 3\)"):
        det.score(np.zeros((16, 16, 3), np.uint8))
    assert det.score(as_images(np.zeros((16, 16, 3), np.uint8), layout="HWC")).shape == (1,)


# --- dtypes ------------------------------------------------------------------------------------------
def test_uint16_arrays_are_scaled_by_their_range():
    x = np.full((2, 4, 5), 65535, np.uint16)
    x[1] = 257
    out = as_images(x)
    assert float(out[0].min()) == 1.0 and abs(float(out[1].max()) - 257 / 65535) < 1e-7


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 8, 8), np.int32), "integer images must be uint8 (0..255) or uint16 (0..65535), got torch.int32"),
    (np.zeros((2, 8, 8), bool), "boolean arrays are not images"),
    (np.array(["a", "b"]), "cannot use an array of dtype <U1 as images"),
    (np.zeros((2, 8, 8), np.complex64), "cannot use an array of dtype complex64"),
    (["a.png", 1], "a list must hold only image paths or only arrays, got ['int', 'str']"),
    ("no/such/file.png", "image file not found: no/such/file.png"),
    (12, "unsupported input type int"),
])
def test_bad_dtypes_and_types(bad, message):
    with pytest.raises(ImageError) as err:
        as_images(bad)
    assert message in str(err.value)


def test_big_endian_and_negative_strides_are_read():
    x = np.random.default_rng(0).random((2, 8, 8)).astype(">f4")
    np.testing.assert_allclose(as_images(x)[:, 0].numpy(), x.astype(np.float32))
    y = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)[:, ::-1]
    np.testing.assert_array_equal((as_images(y)[:, 0] * 255).round().numpy().astype(np.uint8), y)


def test_iter_image_batches_matches_as_images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 6, 6, 1), dtype=np.uint8)
    batches = list(iter_image_batches(x, 3))
    assert [b.shape[0] for b in batches] == [3, 3, 1]
    assert torch.equal(torch.cat(batches), as_images(x))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        next(iter_image_batches(x, 0))


# --- 3. one decoder: 16-bit, grey+alpha, hidden folders ---------------------------------------------
def _png(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    b = io.BytesIO()
    (Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)).save(b, format=fmt)
    return b.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_files_are_scaled_by_the_16bit_range(tmp_path, fmt):
    arr = np.array([[0, 1000], [40000, 65535]], np.uint16)
    ext = {"PNG": "png", "TIFF": "tif"}[fmt]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f"x.{ext}").write_bytes(_png(arr, fmt=fmt))
    want = np.round(arr / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(decode_image((tmp_path / "a" / f"x.{ext}").read_bytes(), "x")[..., 0], want)
    via_api = (as_images(tmp_path / "a")[0, 0] * 255).round().numpy().astype(np.uint8)
    via_loader = load_folder(tmp_path / "a").images[0, ..., 0]
    np.testing.assert_array_equal(via_api, want)
    np.testing.assert_array_equal(via_loader, want)


def test_dark_16bit_image_is_not_read_as_8bit(tmp_path):
    """Values <= 255 in a 16-bit file are dark (v/65535), not bright (v/255)."""
    arr = np.full((4, 4), 200, np.uint16)
    (tmp_path / "d.png").write_bytes(_png(arr))
    assert float(as_images(tmp_path / "d.png").max()) == pytest.approx(1 / 255)
    assert int(load_folder(tmp_path).images.max()) == 1


def test_grey_alpha_is_one_channel_in_every_loader(tmp_path):
    la = Image.new("LA", (5, 4), (100, 30))
    la.save(tmp_path / "g.png")
    assert as_images(tmp_path / "g.png").shape == (1, 1, 4, 5)
    assert as_images(tmp_path).shape == (1, 1, 4, 5)
    ims = load_folder(tmp_path).images
    assert ims.shape == (1, 4, 5, 1) and int(ims.max()) == 100


def test_hidden_folders_are_skipped_everywhere(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    for hidden in (".thumbs", "__MACOSX"):
        (tmp_path / hidden).mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / hidden / "b.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / ".c.png")
    assert [p.name for p in list_image_files(tmp_path)] == ["a.png"]
    assert as_images(tmp_path).shape[0] == 1
    assert len(load_folder(tmp_path).images) == 1


def test_exif_orientation_is_applied_the_same_way(tmp_path):
    arr = np.zeros((2, 6), np.uint8)
    arr[0, 0] = 255
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    assert as_images(tmp_path / "r.jpg").shape == (1, 1, 6, 2)
    assert load_folder(tmp_path).images.shape == (1, 6, 2, 1)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    raw = _png(np.zeros((1, 1), np.uint8))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def test_decompression_bomb_is_an_image_error(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_bomb_png(30000, 30000))
    with pytest.raises(ImageError, match="refused as a possible decompression bomb"):
        as_images(tmp_path / "bomb.png")
    with pytest.raises(DataFormatError, match="refused as a possible decompression bomb"):
        formats_decode((tmp_path / "bomb.png").read_bytes(), "bomb.png")


def test_truncated_file_is_an_image_error(tmp_path):
    (tmp_path / "t.png").write_bytes(_png(np.zeros((8, 8), np.uint8))[:30])
    with pytest.raises(ImageError, match=r"cannot decode image .*t\.png"):
        as_images(tmp_path / "t.png")


def test_cli_folder_scan_skips_the_same_hidden_files(tmp_path):
    from noveltylab.ingest import scan_folder

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    for hidden in (".thumbs", "__MACOSX"):
        (tmp_path / hidden).mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / hidden / "b.png")
    assert [p.name for p in scan_folder(tmp_path).files] == [p.name for p in list_image_files(tmp_path)] == ["a.png"]
