"""Tests for noveltylab.nets.mobilenet (MobileNetV2 in torchvision naming, TF padding)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from noveltylab.nets.mobilenet import MobileNetV2, TFSamePad, load_mobilenet_v2

WEIGHTS = (Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "mobilenet_v2_imagenet"
           / "mobilenet_v2_imagenet.safetensors")
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="shared MobileNetV2 weights absent")


def test_torchvision_key_naming_and_shapes():
    m = MobileNetV2(num_classes=1001)
    sd = m.state_dict()
    assert len(sd) == 314  # torchvision mobilenet_v2 state dict size (incl. BN buffers)
    assert tuple(sd["features.0.0.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["features.1.conv.0.0.weight"].shape) == (32, 1, 3, 3)  # t=1 block: dw first
    assert tuple(sd["features.2.conv.1.0.weight"].shape) == (96, 1, 3, 3)
    assert tuple(sd["features.18.0.weight"].shape) == (1280, 320, 1, 1)
    assert tuple(sd["classifier.1.weight"].shape) == (1001, 1280)
    assert len(m.blocks) == 19


def test_random_weights_save_load_roundtrip(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = MobileNetV2(num_classes=10).eval()
    for mod in m.modules():  # non-trivial BN stats so the buffers matter
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "mnv2.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    m2 = load_mobilenet_v2(path)
    assert m2.classifier[1].out_features == 10
    x = torch.rand(3, 1, 20, 28)
    with torch.no_grad():
        assert torch.allclose(m.embed(x), m2.embed(x), atol=1e-5)
    # .pt in plain tensor-dict form too
    torch.save(m.state_dict(), tmp_path / "mnv2.pt")
    m3 = load_mobilenet_v2(tmp_path / "mnv2.pt")
    with torch.no_grad():
        assert torch.allclose(m.logits(x), m3.logits(x), atol=1e-5)


def test_bad_state_dict_rejected(tmp_path):
    from safetensors.torch import save_file

    sd = MobileNetV2(num_classes=5).state_dict()
    sd.pop("features.3.conv.0.0.weight")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        load_mobilenet_v2(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        load_mobilenet_v2(tmp_path / "nope.safetensors")


def test_tf_same_padding_arithmetic():
    pad = TFSamePad(3, 2)
    x = torch.zeros(1, 1, 8, 8)
    assert tuple(pad(x).shape[-2:]) == (9, 9)  # 0 top/left, 1 bottom/right
    y = pad(torch.ones(1, 1, 8, 8))
    assert y[0, 0, 0, 0] == 1 and y[0, 0, -1, -1] == 0
    assert tuple(pad(torch.zeros(1, 1, 7, 7)).shape[-2:]) == (9, 9)  # odd: 1/1
    # output sizes equal TF's ceil(n / s)
    m = MobileNetV2(num_classes=3, input_size=32).eval()
    with torch.no_grad():
        assert tuple(m.features(torch.zeros(1, 3, 32, 32)).shape) == (1, 1280, 1, 1)
        assert tuple(m.features(torch.zeros(1, 3, 33, 33)).shape) == (1, 1280, 2, 2)


def test_embed_input_handling_and_bn_frozen():
    m = MobileNetV2(num_classes=3, input_size=32)
    m.train()
    assert all(not b.training for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d))
    with torch.no_grad():
        m.eval()
        g = torch.rand(2, 1, 17, 23)
        assert tuple(m.embed(g).shape) == (2, 1280)
        assert torch.allclose(m.embed(g), m.embed(g.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="channels"):
        m.embed(torch.rand(2, 2, 16, 16))


@needs_weights
def test_real_weights_load_and_tf_padding_matters():
    m = load_mobilenet_v2(WEIGHTS)
    assert not m.training and m.classifier[1].out_features == 1001
    sym = load_mobilenet_v2(WEIGHTS, tf_padding=False)
    g = torch.Generator().manual_seed(0)
    # smooth synthetic images (upsampled noise), so the net sees image-like statistics
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 8, 8, generator=g), size=64, mode="bilinear")
    with torch.no_grad():
        a, b = m.embed(x), sym.embed(x)
    assert a.shape == (4, 1280) and torch.isfinite(a).all()
    assert (a >= 0).all()  # ReLU6 before pooling
    cos = torch.nn.functional.cosine_similarity(a, b).mean().item()
    assert cos < 0.99, f"symmetric and TF padding should give different features (cos {cos:.4f})"
    # features are input-dependent and deterministic
    with torch.no_grad():
        assert torch.allclose(m.embed(x), a)
    assert (a[0] - a[1]).abs().sum() > 0
