"""Connective reconstruction-based novelty detection (paper 001): networks, corruptions,
ablation switches, save/load, seeds, errors and an AUROC floor on real data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab.metrics import auroc
from noveltylab.methods.connective import Connective, charbonnier, coarse_dropout, gaussian_noise, motion_blur
from noveltylab.nets.residual_ae import ResidualDenoisingAE, SmallClassifier

TINY = dict(ae_epochs=2, clf_epochs=2, image_size=16, latent=16, width=8, batch_size=64, device="cpu")


# --- networks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels,size", [(1, 32), (3, 32), (1, 16), (3, 48)])
def test_residual_ae_shapes_and_range(channels, size):
    ae = ResidualDenoisingAE(channels, size, latent=32, stem=8, widths=(16, 32, 64)).eval()
    x = torch.rand(3, channels, size, size)
    with torch.no_grad():
        y = ae(x)
        z = ae.encode(x)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert z.shape == (3, 32) and float(z.min()) >= 0.0  # ReLU latent


def test_residual_ae_has_no_long_skips():
    """The decoder sees the input only through the dense latent: changing the latent
    to a constant makes the output independent of the input."""
    ae = ResidualDenoisingAE(1, 32, latent=8, stem=8, widths=(16, 32, 64)).eval()
    z = torch.zeros(2, 8)
    with torch.no_grad():
        y = ae.decode(z)
    assert torch.allclose(y[0], y[1])
    names = [n for n, _ in ae.named_children()]
    assert names == ["stem", "down", "to_latent", "from_latent", "up", "out"]


def test_residual_ae_rejects_bad_size():
    with pytest.raises(ValueError, match="multiple of 16"):
        ResidualDenoisingAE(1, 28)


def test_paper_architecture_sizes():
    ae = ResidualDenoisingAE(1, 32)  # paper: 32 -> 16 (stem) -> 8 -> 4 -> 2, 2x2x256, latent 256
    assert ae.bottom == 2 and ae.top == 256 and ae.to_latent[1].in_features == 1024
    clf = SmallClassifier(1, 32)
    assert clf(torch.rand(2, 1, 32, 32)).shape == (2, 2)


# --- corruptions ---------------------------------------------------------------------------------
def test_corruptions_keep_range_and_shape():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 32, 32)
    for y in (motion_blur(x, 5), gaussian_noise(x, 0.2), coarse_dropout(x, 0.5, 0.4)):
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    # coarse dropout zeroes whole cells of the low-resolution grid, about p of them
    ones = torch.ones(200, 1, 20, 20)
    d = coarse_dropout(ones, 0.5, 0.4)  # 8x8 grid
    assert set(torch.unique(d).tolist()) <= {0.0, 1.0}
    assert abs(float(d.mean()) - 0.5) < 0.05
    # motion blur of a single bright pixel spreads it along a line, conserving mass roughly
    pt = torch.zeros(1, 1, 21, 21)
    pt[0, 0, 10, 10] = 1.0
    b = motion_blur(pt, 5)
    assert int((b > 0).sum()) > 1 and abs(float(b.sum()) - 1.0) < 0.05


def test_charbonnier_is_eps_at_zero_error():
    a = torch.zeros(3)
    assert torch.allclose(charbonnier(a, a, 1e-3), torch.full((3,), 1e-3))
    assert torch.allclose(charbonnier(a, torch.ones(3), 1e-3), torch.ones(3), atol=1e-6)


def test_connective_samples_follow_eq4_and_eq5():
    det = Connective(**TINY)
    x, ax = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    torch.manual_seed(0)
    pos, neg = det._classifier_inputs(x, ax)
    assert torch.allclose(pos, 0.5 * x + 0.5 * ax)
    torch.manual_seed(0)
    assert torch.allclose(neg, 0.5 * x + 0.5 * motion_blur(x, 5))
    det.negative_on = "reconstruction"
    torch.manual_seed(0)
    _, neg = det._classifier_inputs(x, ax)
    torch.manual_seed(0)
    assert torch.allclose(neg, 0.5 * x + 0.5 * motion_blur(ax, 5))
    det.mix = "input"
    pos, _ = det._classifier_inputs(x, ax)
    assert torch.equal(pos, x) and torch.equal(det._test_input(x, ax), x)
    det.mix = "reconstruction"
    assert torch.equal(det._test_input(x, ax), ax)


def test_paper_corruption_is_noise_then_coarse_dropout_on_every_input():
    """Eq. 1-2: x_c = x_g - beta * x_g with x_g = x + eta: every image is noised, then cells are zeroed."""
    torch.manual_seed(0)
    x = torch.full((64, 1, 20, 20), 0.5)
    y = Connective._corrupt_paper(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    dropped = y == 0
    zero_frac = dropped.float().flatten(1).mean(1)
    assert bool((zero_frac > 0).all()) and abs(float(zero_frac.mean()) - 0.5) < 0.1  # p 0.5 on an 8x8 grid
    kept = ~dropped
    assert bool(((y - x).abs()[kept] > 0).float().mean() > 0.9)  # the surviving pixels carry the noise
    # the dropout mask is constant on grid cells (40 % resolution: 8x8 cells of 2.5 px, nearest-upsampled)
    cell = dropped[:, :, ::5, ::5].float()
    assert torch.equal(dropped[:, :, 1::5, 1::5].float(), cell)


@pytest.mark.parametrize("scheme,expect,batches", [("paper", "_corrupt_paper", 3), ("authors-code", "_corrupt_ae", 13)])
def test_ae_corruption_scheme_used_in_training(scheme, expect, batches, monkeypatch):
    calls = {"_corrupt_paper": 0, "_corrupt_ae": 0}
    for name in calls:
        orig = getattr(Connective, name)

        def wrapped(*a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(*a, **k)
        monkeypatch.setattr(Connective, name, staticmethod(wrapped) if name == "_corrupt_paper" else wrapped)
    x = np.random.default_rng(0).integers(0, 255, (40, 16, 16), dtype=np.uint8)
    Connective(**{**TINY, "ae_epochs": 1, "clf_epochs": 1, "batch_size": 16}, ae_corruption=scheme).fit(x)
    # paper: every image corrupted once per epoch (40 / 16 -> 3 batches); authors' code (ae_copies=True):
    # clean images + 4 corrupted copies (200 / 16 -> 13 batches)
    assert calls[expect] == batches and sum(calls.values()) == batches
    assert Connective().ae_corruption == "paper"  # the paper's text is the default


# --- detector on real data -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_data():
    from noveltylab.data import load_dataset, one_class

    return one_class(load_dataset("digits", "train"), load_dataset("digits", "test"), 0, seed=0)


@pytest.fixture(scope="module")
def fitted_demo(digits_data):
    det = noveltylab.create("connective", profile="demo", device="cpu", seed=0)
    det.fit(digits_data.train, val=digits_data.val)
    return det, det.score(digits_data.test)


def test_demo_profile_auroc_floor_on_digits(fitted_demo, digits_data):
    det, s = fitted_demo
    assert s.shape == (len(digits_data.test),) and np.all((s >= 0) & (s <= 1))
    assert auroc(digits_data.test_labels, s) > 0.8
    assert set(det.history_) == {"ae", "clf"}


def test_mnist_auroc_floor(shared_data):
    """Real MNIST: digit 1 normal, 400 training images, a 600-image test sample."""
    from noveltylab.data import load_dataset, one_class

    split = one_class(load_dataset("mnist", "train", data_dir=shared_data),
                      load_dataset("mnist", "test", data_dir=shared_data), 1, max_train=400, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(split.test), 600, replace=False)
    det = noveltylab.create("connective", profile="demo", device="cpu", seed=0).fit(split.train)
    assert auroc(split.test_labels[idx], det.score(split.test[idx])) > 0.75


def test_save_load_and_seed_repeat(digits_data, tmp_path):
    x = digits_data.train[:40]
    det = Connective(**TINY, seed=3).fit(x)
    s = det.score(digits_data.test[:40])
    det.save(tmp_path / "m")
    back = noveltylab.load(tmp_path / "m")
    np.testing.assert_allclose(back.score(digits_data.test[:40]), s, rtol=1e-6, atol=1e-9)
    again = Connective(**TINY, seed=3).fit(x)
    np.testing.assert_array_equal(again.score(digits_data.test[:40]), s)
    other = Connective(**TINY, seed=4).fit(x)
    assert not np.array_equal(other.score(digits_data.test[:40]), s)


@pytest.mark.parametrize("variant", [
    {"mix": "input"}, {"mix": "reconstruction"}, {"denoise": False},
    {"score_mode": "reconstruction-error"}, {"negative": "gaussian-noise", "negative_on": "reconstruction"},
    {"negative": "both", "ae_copies": True, "score_output": "log-odds"},
    {"ae_corruption": "authors-code", "ae_copies": True}, {"ae_corruption": "paper", "negative": "gaussian-noise"},
])
def test_ablation_variants_run_and_round_trip(variant, digits_data, tmp_path):
    det = Connective(**{**TINY, "ae_epochs": 1, "clf_epochs": 1}, **variant).fit(digits_data.train[:40])
    s = det.score(digits_data.test[:20])
    assert s.shape == (20,) and np.all(np.isfinite(s))
    assert (det.ae_ is None) == (variant.get("mix") == "input")
    assert (det.clf_ is None) == (variant.get("score_mode") == "reconstruction-error")
    det.save(tmp_path / "v")
    np.testing.assert_allclose(noveltylab.load(tmp_path / "v").score(digits_data.test[:20]), s, rtol=1e-6,
                               atol=1e-9)


def test_rgb_and_odd_sizes_are_resized():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 20, 24, 3), dtype=np.uint8)
    det = Connective(**TINY).fit(x)
    assert det.score(x[:5]).shape == (5,)
    assert det.reconstruct(x[:2]).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("bad,msg", [
    ({"negative": "jpeg"}, "negative must be one of"),
    ({"negative_on": "both"}, "negative_on must be one of"),
    ({"mix": "none"}, "mix must be one of"),
    ({"lam": 1.0}, "lam must be in"),
    ({"blur_kernel": 4}, "odd integer"),
    ({"image_size": 28}, "multiple of 16"),
    ({"ae_epochs": -1}, "ae_epochs"),
    ({"mix": "input", "score_mode": "reconstruction-error"}, "trains no autoencoder"),
    ({"score_output": "logit"}, "score_output"),
    ({"ae_corruption": "both"}, "ae_corruption must be one of"),
])
def test_bad_params_fail_before_training(bad, msg):
    x = np.random.default_rng(0).integers(0, 255, (10, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match=msg):  # refused at construction (validation.py), before training
        Connective(**{**TINY, **bad}).fit(x)


def test_profiles_exist_and_paper_schedule():
    p = Connective.profiles
    assert {"cpu", "paper", "demo", "test"} <= set(p)
    paper = Connective(**p["paper"])
    assert (paper.ae_epochs, paper.ae_lr, paper.batch_size, paper.lam, paper.eps) == (100, 1e-4, 128, 0.5, 1e-3)
    assert paper.image_size == 32 and paper.width == 32 and paper.latent == 256 and paper.ae_copies


