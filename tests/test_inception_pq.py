"""Paper 003 detectors: Inception-CAE NN-QED/EED/RE, CAE NN, CAE-OCSVM, Deep SVDD, DSEBM."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab.data import load_dataset, one_class
from noveltylab.images import ImageError
from noveltylab.metrics import auroc
from noveltylab.nets.inception_cae import InceptionCAE, InceptionLayer
from noveltylab.nets.lenet_cae import LeNetCAE, LeNetEncoder

FAST = {"epochs": 3, "fine_tune_epochs": 1, "lr": 3e-3, "fine_tune_lr": 3e-4, "batch_size": 40, "device": "cpu"}


# --- networks ---------------------------------------------------------------------
def test_inception_layer_has_four_branches_with_bn_leaky_relu():
    layer = InceptionLayer(5, 8)
    assert layer.out_channels == 32
    kernels = sorted(b[0].kernel_size[0] for b in (layer.b1, layer.b3, layer.b5, layer.bp))
    assert kernels == [1, 1, 3, 5]
    for b in (layer.b1, layer.b3, layer.b5, layer.bp):
        assert isinstance(b[1], torch.nn.BatchNorm2d) and isinstance(b[2], torch.nn.LeakyReLU)
        assert b[2].negative_slope == pytest.approx(0.1)
        assert b[0].in_channels == 5  # no 1x1 reductions in front of the 3x3/5x5 convs
    assert layer.pool.kernel_size == 3 and layer.pool.stride == 1
    assert layer(torch.rand(2, 5, 7, 9)).shape == (2, 32, 7, 9)


@pytest.mark.parametrize("channels,hw", [(1, (32, 32)), (3, (32, 32)), (1, (8, 8)), (3, (24, 40))])
def test_inception_cae_shapes(channels, hw):
    net = InceptionCAE(channels).eval()
    x = torch.rand(3, channels, *hw)
    assert net.encode(x).shape == (3, 128, hw[0] // 8, hw[1] // 8)
    assert net.embed(x).shape == (3, 128)  # GAP of the bottleneck
    out = net(x)
    assert out.shape == x.shape and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1  # sigmoid output
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(1, channels, 28, 28))


def test_inception_cae_matches_table1():
    net = InceptionCAE(1)
    widths = [m.out_channels for m in net.modules() if isinstance(m, InceptionLayer)]
    assert widths == [32, 64, 128, 128, 64, 32]


def test_lenet_networks_are_bias_free_and_128d():
    enc = LeNetEncoder(1, 32, 32, code_bn=False)
    assert all(getattr(m, "bias", None) is None for m in enc.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert all(not m.affine for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert enc.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 128)
    for hw in [(32, 32), (8, 8), (16, 24)]:
        ae = LeNetCAE(3, *hw).eval()
        x = torch.rand(2, 3, *hw)
        assert ae.embed(x).shape == (2, 128) and ae(x).shape == x.shape


# --- detectors: parameters and contract details --------------------------------------
def test_factory_strings():
    d = noveltylab.create("inception-cae")
    assert d.factory == "PQ32x4fs"  # the paper's m=32, c=4, FAISS fast-scan
    assert noveltylab.create("inception-cae", scoring="nn-eed").factory == "Flat"
    assert noveltylab.create("inception-cae", pq_m=16, pq_bits=8).factory == "PQ16x8"
    assert noveltylab.create("inception-cae", fast_scan=False).factory == "PQ32x4"
    assert noveltylab.create("inception-cae", index="IVF4,PQ8").factory == "IVF4,PQ8"
    assert noveltylab.create("inception-cae", scoring="re").factory is None
    p = noveltylab.get_class("inception-cae").profiles["paper"]
    assert (p["epochs"], p["fine_tune_epochs"], p["lr"], p["fine_tune_lr"], p["batch_size"], p["weight_decay"]) == \
        (100, 50, 1e-4, 1e-5, 200, 1e-6)
    assert noveltylab.get_class("inception-cae").profiles["paper-cifar"]["epochs"] == 250
    for name in ("inception-cae", "cae-nn", "cae-ocsvm", "deep-svdd", "dsebm"):
        assert {"cpu", "paper", "demo", "test"} <= set(noveltylab.get_class(name).profiles)


@pytest.mark.parametrize("name,params,match", [
    ("inception-cae", {"scoring": "knn"}, "scoring must be one of"),
    ("inception-cae", {"pq_bits": 0}, "pq_bits"),
    ("cae-nn", {"pq_m": 2.5}, "pq_m"),
    ("inception-cae", {"epochs": -1}, "epochs"),
    ("inception-cae", {"lr": 0}, "lr"),
    ("cae-ocsvm", {"nu": 1.5}, "nu"),
    ("cae-ocsvm", {"gamma": "scale"}, "gamma"),
    ("deep-svdd", {"svdd_epochs": 0, "svdd_fine_tune_epochs": 0}, "svdd_epochs"),
    ("dsebm", {"noise_std": 0.0}, "noise_std"),
])
def test_bad_parameters_fail_before_training(name, params, match):
    d = None
    with pytest.raises((TypeError, ValueError), match=match):  # at construction, or before training
        d = noveltylab.create(name, profile="test", **params)
        d.fit(np.random.rand(10, 8, 8).astype(np.float32))
    assert d is None or not getattr(d, "fitted_", False)


def test_too_small_or_odd_channel_inputs_rejected():
    d = noveltylab.create("inception-cae", profile="test")
    with pytest.raises(ImageError):
        d.fit(np.random.rand(10, 4, 4, 2).astype(np.float32))


def test_any_size_is_padded_to_multiple_of_8(digits_split):
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 13, 21)).astype(np.float32)
    d = noveltylab.create("inception-cae", profile="test", device="cpu").fit(x)
    assert d.embed(x[:5]).shape == (5, 128)
    assert d.score(x[:5]).shape == (5,)


def test_pq_and_exact_agree_roughly(digits_split):
    s = digits_split
    d = noveltylab.create("inception-cae", seed=0, **FAST).fit(s.train)
    ftr = d.embed(s.train)
    qed, eed = d.score(s.test), d.rescored(ftr, "nn-eed").score(s.test)
    assert np.corrcoef(np.argsort(np.argsort(qed)), np.argsort(np.argsort(eed)))[0, 1] > 0.9
    a_q, a_e = auroc(s.test_labels, qed), auroc(s.test_labels, eed)
    assert abs(a_q - a_e) < 0.05 and a_q > 0.9
    # finer quantization approaches the exact distance
    fine = d.rescored(ftr, "nn-qed", pq_m=64, pq_bits=6).score(s.test)
    assert np.median(np.abs(fine - eed) / (eed + 1e-9)) < np.median(np.abs(qed - eed) / (eed + 1e-9))
    re = d.rescored(ftr, "re")
    assert re.index_ is None and re.score(s.test[:4]).shape == (4,)
    with pytest.raises(TypeError):
        d.rescored(ftr, "nn-qed", k=3)


def test_ocsvm_head_matches_sklearn(digits_split):
    from sklearn.svm import OneClassSVM

    s = digits_split
    d = noveltylab.create("cae-ocsvm", profile="test", device="cpu").fit(s.train)
    f = d.embed(s.test).astype(np.float64)
    ref = OneClassSVM(kernel="rbf", gamma=1.0 / 128, nu=0.5).fit(d.embed(s.train).astype(np.float64))
    np.testing.assert_allclose(d.score(s.test), -ref.decision_function(f), rtol=1e-5, atol=1e-6)
    assert d.gamma_ == pytest.approx(1 / 128)


def test_deep_svdd_centre_and_bias_free(digits_split):
    d = noveltylab.create("deep-svdd", profile="test", device="cpu").fit(digits_split.train)
    assert d.center_.shape == (128,) and bool((d.center_.abs() >= d.eps - 1e-7).all())
    assert all(getattr(m, "bias", None) is None for m in d.phi_.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert not hasattr(d, "net_")  # the pre-training autoencoder is dropped after copying its encoder


@pytest.mark.parametrize("name,params", [("inception-cae", {}), ("cae-nn", {"scoring": "nn-eed"}),
                                         ("cae-ocsvm", {}), ("deep-svdd", {}), ("dsebm", {})])
def test_save_load_and_seed_repeat(tmp_path, digits_split, name, params):
    s = digits_split
    d = noveltylab.create(name, profile="test", device="cpu", seed=3, **params).fit(s.train)
    a = d.score(s.test)
    d.save(tmp_path / "m")
    b = noveltylab.load(tmp_path / "m").score(s.test)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    c = noveltylab.create(name, profile="test", device="cpu", seed=3, **params).fit(s.train).score(s.test)
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)


# --- AUROC floors on real data -----------------------------------------------------------
@pytest.mark.parametrize("name,params,floor", [("cae-nn", {}, 0.85), ("deep-svdd", {}, 0.8),
                                               ("dsebm", {}, 0.7)])
def test_digits_floors(digits_split, name, params, floor):
    s = digits_split
    d = noveltylab.create(name, profile="demo", device="cpu", **params).fit(s.train)
    assert auroc(s.test_labels, d.score(s.test)) > floor


@pytest.fixture(scope="module")
def mnist_split(shared_data):
    train = load_dataset("mnist", "train", data_dir=shared_data)
    test = load_dataset("mnist", "test", data_dir=shared_data)
    return one_class(train, test.subset(np.arange(0, 10000, 10)), 0, max_train=400, seed=0)


def test_inception_cae_mnist_floor(mnist_split):
    s = mnist_split
    d = noveltylab.create("inception-cae", seed=0, **FAST).fit(s.train, val=s.val)
    assert s.train.shape[1:3] == (28, 28) and d.input_shape_ == (1, 28, 28)  # padded to 32x32 internally
    assert "val_loss" in d.history_.epochs[-1]
    assert d.history_.epochs[-1]["loss"] < d.history_.epochs[0]["loss"]
    assert auroc(s.test_labels, d.score(s.test)) > 0.85


def test_deep_svdd_gcn_preprocessing(tmp_path, digits_split):
    s = digits_split
    d = noveltylab.create("deep-svdd", profile="test", device="cpu", preprocess="gcn").fit(s.train)
    xt = d._transform(torch.from_numpy(s.train).permute(0, 3, 1, 2).float() / 255)
    assert float(xt.min()) >= -1e-6 and float(xt.max()) <= 1 + 1e-6  # min-max scaled to the training range
    a = d.score(s.test)
    np.testing.assert_allclose(noveltylab.load(d.save(tmp_path / "m")).score(s.test), a, rtol=1e-5, atol=1e-6)
    assert noveltylab.get_class("deep-svdd").profiles["paper"]["preprocess"] == "gcn"
    with pytest.raises(ValueError, match="preprocess"):
        noveltylab.create("deep-svdd", profile="test", preprocess="zca").fit(s.train)


# --- GAP in training (paper 003, Sec. 4.3) -------------------------------------------
@pytest.mark.parametrize("expand", ["dense", "tile"])
def test_gap_in_training_decoder_sees_only_the_code(expand):
    torch.manual_seed(0)
    net = InceptionCAE(1, gap_in_training=True, gap_expand=expand).eval()
    x = torch.rand(2, 1, 32, 32)
    # two inputs with the same GAP code but different bottleneck maps reconstruct identically
    z = net.encode(x)
    z2 = z.flip(-1)  # same per-channel means, different layout
    assert torch.allclose(z.mean((2, 3)), z2.mean((2, 3)), atol=1e-6)
    out1 = net.decoder(net.reexpand(z.mean((2, 3)), z.shape[-2:]))
    out2 = net.decoder(net.reexpand(z2.mean((2, 3)), z2.shape[-2:]))
    assert torch.allclose(out1, out2) and torch.allclose(out1, net(x), atol=1e-6)
    assert net(x).shape == x.shape and net.embed(x).shape == (2, 128)
    # without GAP in training the layout of the map matters
    plain = InceptionCAE(1).eval()
    zp = plain.encode(x)
    assert not torch.allclose(plain.decoder(zp), plain.decoder(zp.flip(-1)))


def test_gap_in_training_auto_follows_the_paper():
    d = noveltylab.create("inception-cae", profile="test")
    assert d.gap_in_training == "auto" and d.gap_expand == "dense"
    assert d.uses_gap_in_training(1) and not d.uses_gap_in_training(3)
    assert noveltylab.create("inception-cae", gap_in_training="off").uses_gap_in_training(1) is False
    assert noveltylab.create("inception-cae", gap_in_training="on").uses_gap_in_training(3) is True
    x = np.random.rand(10, 8, 8).astype(np.float32)
    with pytest.raises((TypeError, ValueError), match="gap_in_training"):
        noveltylab.create("inception-cae", profile="test", gap_in_training=True).fit(x)
    with pytest.raises(ValueError, match="gap_expand"):
        noveltylab.create("inception-cae", profile="test", gap_expand="conv").fit(x)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_gap_in_training_fits_scores_and_round_trips(tmp_path, digits_split, mode):
    s = digits_split
    d = noveltylab.create("inception-cae", seed=0, gap_in_training=mode, **FAST).fit(s.train)
    assert d.net_.gap_in_training is (mode == "on")
    assert (d.net_.expand is not None) is (mode == "on")
    a = auroc(s.test_labels, d.score(s.test))
    assert a > 0.85
    d.save(tmp_path / "m")
    e = noveltylab.load(tmp_path / "m")
    assert e.gap_in_training == mode
    np.testing.assert_allclose(e.score(s.test[:20]), d.score(s.test[:20]), rtol=1e-5, atol=1e-6)
