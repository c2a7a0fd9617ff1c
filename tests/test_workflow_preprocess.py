"""Issue 15 point 1: the input transform travels with the model; maps come back at original size."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import noveltylab
from noveltylab.detector import Detector, register
from noveltylab.preprocess import Transform, batch_size_for, default_transform, native_size


@register
class _MeanDiff(Detector):
    """A tiny localising detector for these tests: map = |x - mean training image|."""

    name = "test-meandiff-e15a"
    localises = True
    profiles = {"cpu": {}, "paper": {}}

    def _fit(self, x, val):
        self.mean_ = x.mean(0)

    def _anomaly_map(self, x):
        return (x - self.mean_).abs().mean(1).numpy()

    def _score(self, x):
        return self._anomaly_map(x).reshape(x.shape[0], -1).mean(1)

    def _state(self):
        return {"mean": self.mean_}

    def _restore(self, state, meta):
        self.mean_ = state["mean"]


def _write_mixed(folder, n=12, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        a = (rng.random((h, w)) * 50 + 100).astype(np.uint8)
        img = Image.fromarray(np.stack([a] * 3, -1) if i % 4 == 0 else a)
        p = folder / f"img{i:02d}.png"
        img.save(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize("mode", ["resize", "centre-crop", "pad"])
def test_transform_shapes_and_inverse(mode):
    t = Transform(16, mode, 1)
    x = torch.rand(2, 3, 30, 50)
    y = t.apply(x)
    assert y.shape == (2, 1, 16, 16)
    m = t.invert_map(np.ones((8, 8), np.float32), 30, 50)
    assert m.shape == (30, 50)


def test_pad_inverse_recovers_content_region():
    t = Transform(20, "pad", 1)
    x = torch.zeros(1, 1, 10, 20)
    x[..., :, 10:] = 1.0                       # right half bright
    y = t.apply(x)[0, 0].numpy()               # 20x20 with 5-px black bands top and bottom
    assert y[:5].max() == 0 and y[-5:].max() == 0
    back = t.invert_map(y, 10, 20)             # the black bands are cut away again
    assert back.shape == (10, 20)
    assert back[:, :8].max() < 0.05 and back[:, 12:].min() > 0.95


def test_transform_validation_messages():
    with pytest.raises(ValueError, match="resize mode must be one of"):
        Transform(32, "squash")
    with pytest.raises(ValueError, match="transform size must be an integer"):
        Transform(2)
    with pytest.raises(ValueError, match="channels must be 1"):
        Transform(32, "pad", 2)
    assert Transform(32, "center-crop").mode == "centre-crop"


def test_native_size_defaults():
    assert native_size(noveltylab.create("dn2")) == 224          # pretrained backbone: 224 px
    assert native_size(noveltylab.create("dn2", profile="demo")) == 64
    assert native_size(noveltylab.create("raw-nn")) == 32        # no size parameter: 32 px
    assert default_transform(noveltylab.create("dn2")).size == 224


def test_fit_mixed_sizes_score_and_maps_at_original_size(tmp_path):
    paths = _write_mixed(tmp_path / "train")
    det = noveltylab.create("test-meandiff-e15a").fit(paths, transform=Transform(24, "pad"))
    assert det.transform_ == Transform(24, "pad", 3)            # one colour image -> RGB for all
    assert det.input_shape_ == (3, 24, 24)
    new = _write_mixed(tmp_path / "new", n=3, seed=1)
    s = det.score(new)
    assert s.shape == (3,) and np.all(np.isfinite(s))
    maps = det.anomaly_map(new)
    sizes = [Image.open(p).size[::-1] for p in new]
    assert isinstance(maps, list) and [m.shape for m in maps] == sizes
    folder_maps = det.anomaly_map(tmp_path / "new")             # a folder of mixed sizes works too
    assert [m.shape for m in folder_maps] == sizes


def test_mixed_sizes_get_the_auto_transform(tmp_path):
    paths = _write_mixed(tmp_path / "train")
    det = noveltylab.create("raw-nn").fit(paths)
    assert det.transform_ == Transform(32, "resize", 3)


def test_same_size_arrays_keep_old_behaviour():
    x = np.random.default_rng(0).integers(0, 255, (10, 12, 12), dtype=np.uint8)
    det = noveltylab.create("raw-nn").fit(x)
    assert det.transform_ is None and det.input_shape_ == (1, 12, 12)
    with pytest.raises(noveltylab.ImageError, match="fit with a transform"):
        det.score(np.zeros((2, 14, 14), np.uint8))


def test_transform_config_round_trip(tmp_path):
    paths = _write_mixed(tmp_path / "train")
    det = noveltylab.create("test-meandiff-e15a").fit(paths, transform={"size": 20, "mode": "centre-crop",
                                                                         "channels": 1})
    det.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["transform"] == {"size": 20, "mode": "centre-crop", "channels": 1}
    back = noveltylab.load(tmp_path / "model")
    assert back.transform_ == det.transform_
    np.testing.assert_allclose(back.score(paths[:4]), det.score(paths[:4]), rtol=1e-6)


def test_batch_size_adapts_to_image_size():
    assert batch_size_for((3, 224, 224), 128) < 32              # 224-px RGB: small batches
    assert batch_size_for((1, 28, 28), 128) == 128              # MNIST: the requested batch


def test_python_api_folder_skips_masks(tmp_path):
    from noveltylab.preprocess import load_transformed

    for i in range(4):
        Image.fromarray(np.full((12, 12), 100, np.uint8)).save(tmp_path / f"x{i}.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "x0_mask.png")
    x, sizes, _ = load_transformed(tmp_path, None)
    assert x.shape == (4, 1, 12, 12) and sizes == [(12, 12)] * 4
    x, _, t = load_transformed(tmp_path, Transform(8, "pad"))
    assert x.shape == (4, 1, 8, 8) and t.channels == 1


def test_feature_batches_shrink_for_a_backbone_that_resizes_inside():
    from noveltylab.train import map_batches

    class _Resizer(torch.nn.Module):
        input_size = 224

        def __init__(self):
            super().__init__()
            self.seen = []

        def embed(self, x):
            self.seen.append(x.shape[0])
            return x.flatten(1)[:, :2]

    net = _Resizer()
    out = map_batches(net.embed, torch.rand(100, 1, 8, 8), batch_size=128)
    assert out.shape == (100, 2)
    assert max(net.seen) == batch_size_for((3, 224, 224), 128) < 32     # costed at 224 px RGB, not 8 px
