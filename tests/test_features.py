"""Feature maps of the pretrained backbones and the opt-in on-disk feature cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab import features
from noveltylab.features import FeatureMaps, feature_cache


def test_mobilenet_maps_shapes_and_truncation():
    fm = FeatureMaps("mobilenet_v2", None, 224, [6, 13])
    maps = fm(torch.rand(2, 3, 40, 40))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 28, 28), (2, 96, 14, 14)]
    assert len(fm.blocks) == 14  # nothing past block 13 is kept (or saved)
    grey = fm(torch.rand(1, 1, 40, 40))
    assert grey[0].shape == (1, 32, 28, 28)


def test_resnet_maps_shapes():
    fm = FeatureMaps("resnet18", None, 64, ["layer2", "layer3"])
    maps = fm(torch.rand(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 128, 8, 8), (2, 256, 4, 4)]
    assert not any(n.startswith("blocks.4") for n in fm.state_dict())  # layer4 dropped


@pytest.mark.parametrize("backbone, layers, msg", [
    ("mobilenet_v2", [19], "block indices 0..18"), ("mobilenet_v2", ["layer2"], "block indices"),
    ("resnet18", [2], "names from"), ("vgg16", [1], "unknown backbone"), ("mobilenet_v2", [6, 6], "repeat"),
])
def test_bad_layers(backbone, layers, msg):
    with pytest.raises(ValueError, match=msg):
        features.check_layers(backbone, layers)


def test_cache_is_opt_in_exact_and_keyed(tmp_path, monkeypatch):
    monkeypatch.delenv(features.ENV_FEATURE_CACHE, raising=False)
    torch.manual_seed(0)
    fm = FeatureMaps("mobilenet_v2", None, 32, [3, 6])
    x = torch.rand(5, 3, 16, 16)
    plain = features.extract_maps(fm, x)
    assert not any(tmp_path.iterdir())  # no cache unless asked for
    with feature_cache(tmp_path):
        first = features.extract_maps(fm, x)
        files = sorted(tmp_path.rglob("*.npy"))
        assert len(files) == 2  # one entry per layer
        # a second call is served from disk: poison the network to prove it is not run
        calls = []
        handle = fm.blocks[0].register_forward_hook(lambda *a: calls.append(1))
        again = features.extract_maps(fm, x)
        handle.remove()
        assert not calls
        features.extract_maps(fm, x[:4])  # another image set -> new entries
        assert len(sorted(tmp_path.rglob("*.npy"))) == 4
        other = FeatureMaps("mobilenet_v2", None, 48, [3, 6])  # other input size -> other setting folder
        features.extract_maps(other, x)
    for a, b, c in zip(plain, first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert len({p.parent for p in tmp_path.rglob("*.npy")}) == 4  # (size 32, size 48) x 2 layers
    monkeypatch.setenv(features.ENV_FEATURE_CACHE, str(tmp_path / "env"))
    features.extract_maps(fm, x)
    assert len(list((tmp_path / "env").rglob("*.npy"))) == 2


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    fm = FeatureMaps("mobilenet_v2", None, 32, [3])
    x = torch.rand(2, 3, 16, 16)
    with feature_cache(tmp_path):
        ref = features.extract_maps(fm, x)[0]
        (path,) = tmp_path.rglob("*.npy")
        path.write_bytes(b"not an array")
        with pytest.warns(UserWarning, match="unreadable feature-cache file"):
            again = features.extract_maps(fm, x)[0]
    torch.testing.assert_close(ref, again, rtol=0, atol=0)


def test_detector_scores_identical_with_cache(digits_split, tmp_path):
    for name in ("patchcore", "padim"):
        det = noveltylab.create(name, profile="test", device="cpu").fit(digits_split.train)
        ref = det.score(digits_split.test)
        with feature_cache(tmp_path):
            cold = det.score(digits_split.test)
            warm = det.score(digits_split.test)
        np.testing.assert_array_equal(ref, cold)
        np.testing.assert_array_equal(ref, warm)


def test_upsample_blur_shapes_and_smoothing():
    m = torch.zeros(1, 7, 7)
    m[0, 3, 3] = 1.0
    out = features.upsample_blur(m, 56, 4.0, (30, 40))
    assert out.shape == (1, 30, 40)
    sharp = features.upsample_blur(m, 56, 0.0, (56, 56))
    assert out.max() < sharp.max()
