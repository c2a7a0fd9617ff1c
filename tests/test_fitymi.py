"""Tests for FITYMI (paper 002): score-SDE generator, FID, fine-tuning detector, DN2, ViT loading, near-ND."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import noveltylab as nl
from noveltylab.data import ImageSet, load_dataset, make_splits
from noveltylab.data.near_nd import bottom1, closeness_scores, near_nd, per_class_auroc
from noveltylab.generative import ScoreModel, VESDE, VPSDE, euler_maruyama, feature_extractor, frechet_distance
from noveltylab.generative.io import make_grid, save_grid, save_image_folder
from noveltylab.generative.score_net import ScoreUNet
from noveltylab.metrics import auroc

ROOT = Path(__file__).resolve().parents[1].parent
DATA = ROOT / "shared" / "data"
WEIGHTS = ROOT / "shared" / "weights" / "mobilenet_v2_imagenet" / "mobilenet_v2_imagenet.safetensors"
needs_fmnist = pytest.mark.skipif(not (DATA / "fashion-mnist").is_dir() or not WEIGHTS.is_file(),
                                  reason="Fashion-MNIST or MobileNetV2 weights absent")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def _oc(train, test, c=0):
    x = train.images[train.labels == c]
    y = (test.labels != c).astype(int)
    return x, test.images, y


# --- SDEs, score net, sampler ----------------------------------------------------------
def test_sde_marginals_and_prior():
    t = torch.tensor([1e-3, 0.5, 1.0])
    vp = VPSDE()
    mean, std = vp.marginal(t)
    assert mean[0] > 0.999 and std[0] < 0.05 and std[-1] > 0.99 and mean[-1] < 0.01
    assert torch.allclose(mean ** 2 + std ** 2, torch.ones(3), atol=1e-5)  # variance preserving
    ve = VESDE(0.01, 50.0)
    m, s = ve.marginal(t)
    assert torch.allclose(m, torch.ones(3)) and abs(float(s[-1]) - 50.0) < 1e-3
    assert ve.prior_sample((1000, 1, 2, 2), torch.Generator().manual_seed(0)).std() > 40
    with pytest.raises(ValueError):
        VPSDE(beta_min=2.0, beta_max=1.0)


def test_score_unet_shapes_and_zero_output():
    net = ScoreUNet(3, base=8, mults=(1, 2, 2))
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape and out.abs().max() == 0  # zero-initialised output conv
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 10, 10), torch.rand(1))


def test_euler_maruyama_recovers_gaussian_with_exact_score():
    # data ~ N(0.5, 0.1^2): the exact VP score is known in closed form
    sde = VPSDE()
    mu, s0 = 0.5, 0.1

    def score(x, t):
        m, std = sde.marginal(t)
        var = (m * s0) ** 2 + std ** 2
        return -(x - m.view(-1, 1, 1, 1) * mu) / var.view(-1, 1, 1, 1)

    x = euler_maruyama(score, sde, (2000, 1, 1, 1), steps=200, generator=torch.Generator().manual_seed(0))
    assert abs(float(x.mean()) - mu) < 0.02 and abs(float(x.std()) - s0) < 0.03
    x2 = euler_maruyama(score, sde, (500, 1, 1, 1), steps=50, corrector_steps=1,
                        generator=torch.Generator().manual_seed(1))
    assert abs(float(x2.mean()) - mu) < 0.05


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 4))
    assert frechet_distance(a, a) < 1e-6
    d = frechet_distance(a, a + 3.0)
    assert abs(d - 36.0) < 1e-3  # |mu shift|^2 = 4 * 9
    with pytest.raises(ValueError):
        frechet_distance(a, rng.standard_normal((10, 3)))


def test_tiny_generator_early_stopping_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(48, 1, 8, 8) * 0.5
    ext = feature_extractor("pixels")
    g = ScoreModel(1, size=8, base=8, mults=(1, 2), lr=2e-3, batch_size=16)
    g.fit_early_stopped(x, x, ext, max_epochs=4, check_every=2, fid_target=1e9, fid_samples=16,
                        sample_steps=5, checkpoint_dir=tmp_path)
    assert g.stop_epoch_ == 2 and len(g.checkpoints_) == 1  # stopped at the first check inside the window
    assert (tmp_path / "epoch_0002.safetensors").is_file() and (tmp_path / "last.safetensors").is_file()
    g2 = ScoreModel(1, size=8, base=8, mults=(1, 2), lr=2e-3, batch_size=16, sde="ve")
    g2.fit_early_stopped(x, x, ext, max_epochs=4, check_every=2, fid_target=None, fid_samples=16, sample_steps=5)
    assert [c.epoch for c in g2.checkpoints_] == [2, 4] and all(np.isfinite(c.fid) for c in g2.checkpoints_)
    g2.load_check(g2.checkpoints_[0])
    s = g2.sample(5, steps=5, out_size=(12, 12))
    assert s.shape == (5, 1, 12, 12) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert torch.equal(g2.sample(3, steps=4, seed=7), g2.sample(3, steps=4, seed=7))
    with pytest.raises(ValueError, match="divisible"):
        ScoreModel(3, size=10, mults=(1, 2, 2))


def _scripted_extractor(offsets: list[float]):
    """An FID extractor whose n-th call on generated images is shifted by ``offsets[n - 1]`` (the first
    call embeds the real images), so a test sets the FID of every check: 4 dims -> FID = 4 * offset**2."""
    calls = {"n": 0}

    def ext(x: torch.Tensor) -> np.ndarray:
        base = np.tile(np.linspace(0.0, 1.0, 64)[:, None], (1, 4)) + np.eye(64, 4)
        shift = offsets[calls["n"] - 1] if calls["n"] else 0.0
        calls["n"] += 1
        return base + shift
    return ext


def test_generator_restores_its_best_check_and_stops_on_patience():
    """When no check reaches the FID target, restore_best ends with the weights of the check of lowest
    FID (not the epoch cap's) and patience ends training after that many checks without a new lowest
    FID; a run that reaches the target keeps its own weights; patience alone is refused."""
    x = torch.rand(32, 1, 8, 8) * 0.5
    kw = dict(max_epochs=6, check_every=1, fid_samples=8, sample_steps=2)

    def model() -> ScoreModel:
        torch.manual_seed(0)
        return ScoreModel(1, size=8, base=8, mults=(1, 2), lr=2e-3, batch_size=16, ema=0.0)
    g = model().fit_early_stopped(x, x, _scripted_extractor([3, 1, 2, 4, 5, 6]), fid_target=0.5,
                                  restore_best=True, patience=2, **kw)
    assert [c.epoch for c in g.checkpoints_] == [1, 2, 3, 4]  # no new lowest FID at epochs 3 and 4
    assert [round(c.fid) for c in g.checkpoints_] == [36, 4, 16, 64]
    assert g.stop_epoch_ == 4 and g.restored_epoch_ == 2
    assert all(torch.equal(v, g.checkpoints_[1].state[k]) for k, v in g.state_dict().items())
    assert not all(torch.equal(v, g.checkpoints_[3].state[k]) for k, v in g.state_dict().items())
    # without patience: trains to the cap, then restores the lowest check
    g = model().fit_early_stopped(x, x, _scripted_extractor([3, 1, 2, 4, 5, 6]), fid_target=0.5,
                                  restore_best=True, keep_states=False, **kw)
    assert g.stop_epoch_ == 6 and g.restored_epoch_ == 2
    # the default keeps the cap's weights
    g = model().fit_early_stopped(x, x, _scripted_extractor([3, 1, 2, 4, 5, 6]), fid_target=0.5, **kw)
    assert g.stop_epoch_ == 6 and g.restored_epoch_ is None
    # reaching the target stops there and keeps those weights
    g = model().fit_early_stopped(x, x, _scripted_extractor([3, 1, 2, 0.1, 5, 6]), fid_target=0.5,
                                  restore_best=True, patience=3, **kw)
    assert g.stop_epoch_ == 4 and g.restored_epoch_ is None
    with pytest.raises(ValueError, match="patience"):
        model().fit_early_stopped(x, x, _scripted_extractor([1]), fid_target=0.5, patience=2, **kw)


def test_fitymi_gen_fallback_best_is_recorded(digits):
    """FITYMI's gen_fallback="best" with gen_patience: the record says the target was not reached,
    which check's weights made the fakes and where training stopped; bad values are refused by name."""
    xtr, _, _ = _oc(*digits)
    kw = dict(profile="test", fid_extractor="pixels", fid_rule="absolute", fid_target=1e-9, gen_epochs=6,
              gen_check_every=1, fid_samples=16, gen_lr=5e-3)
    det = nl.create("fitymi", **kw, gen_fallback="best", gen_patience=1).fit(xtr[:80], val=xtr[80:110])
    info, fids = det.fid_rule_info_, [c["fid"] for c in det.gen_checks_]
    assert info["fallback"] == "best" and not info["target_reached"]
    # patience 1: training ends at the first check that is not a new lowest FID (or at the cap)
    assert all(fids[i] < min(fids[:i]) for i in range(1, len(fids) - 1))
    assert len(fids) == 6 or fids[-1] >= min(fids[:-1])
    best = int(np.argmin(fids))
    assert info["restored_epoch"] == (None if best == len(fids) - 1 else det.gen_checks_[best]["epoch"])
    last = nl.create("fitymi", **kw).fit(xtr[:80], val=xtr[80:110])
    assert last.gen_stop_epoch_ == 6 and last.fid_rule_info_["restored_epoch"] is None
    assert last.fid_rule_info_["fallback"] == "last"
    with pytest.raises(ValueError, match="gen_fallback"):
        nl.create("fitymi", profile="test", gen_fallback="median").fit(xtr[:20])
    with pytest.raises(ValueError, match="gen_patience"):
        nl.create("fitymi", profile="test", gen_patience=2).fit(xtr[:20])


def test_generator_samples_from_an_ema_of_its_weights(tmp_path):
    """Sampling uses the warmed-up EMA of the trained weights (ema > 0), the raw weights with ema=0;
    checkpoints hold both; a check restores the sampling weights."""
    torch.manual_seed(0)
    x = torch.rand(48, 1, 8, 8) * 0.5
    g = ScoreModel(1, size=8, base=8, mults=(1, 2), lr=2e-3, batch_size=16, ema=0.999)
    g.fit(x, 3, checkpoint_dir=tmp_path, checkpoint_every=3)
    raw, ema = dict(g.net.named_parameters()), dict(g.ema_net.named_parameters())
    assert g._ema_updates == 9 and not all(torch.equal(raw[k], ema[k]) for k in raw)
    # after n updates the warm-up decay is (1 + n) / (10 + n) < 0.999: the EMA moved off the initial weights
    init = ScoreModel(1, size=8, base=8, mults=(1, 2), lr=2e-3, batch_size=16, ema=0.999)
    assert not all(torch.equal(ema[k], p) for k, p in init.net.named_parameters())
    assert all(torch.equal(v, g.ema_net.state_dict()[k]) for k, v in g.state_dict().items())
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "last.safetensors"))
    assert any(k.startswith("score_net_ema") for k in saved) and any(k.startswith("score_net.") for k in saved)
    plain = ScoreModel(1, size=8, base=8, mults=(1, 2), lr=2e-3, batch_size=16, ema=0.0)
    assert plain.ema_net is plain.net
    with pytest.raises(ValueError, match="ema"):
        ScoreModel(1, size=8, mults=(1, 2), ema=1.0)
    with pytest.raises(ValueError, match="gen_ema"):
        nl.create("fitymi", profile="test", gen_ema=-0.1).fit(torch.rand(8, 1, 8, 8))


def test_generated_set_roundtrip_as_folder(tmp_path):
    imgs = torch.rand(5, 3, 8, 8)
    save_image_folder(imgs, tmp_path / "fsde", "fake")
    back = load_dataset(f"folder:{tmp_path / 'fsde'}", "train")
    assert back.images.shape == (5, 8, 8, 3) and back.class_names == ["fake"]
    assert np.abs(back.images.astype(float) / 255 - imgs.permute(0, 2, 3, 1).numpy()).max() < 0.003
    assert make_grid(imgs, nrow=4).shape == (2 * 10 + 2, 4 * 10 + 2, 3)
    assert save_grid(imgs[:, :1], tmp_path / "g.png", nrow=5, scale=2).is_file()


# --- ViT in timm naming --------------------------------------------------------------------
def test_vit_b16_timm_key_naming():
    from noveltylab.nets.vit import vit_b16

    sd = vit_b16(num_classes=1000).state_dict()
    assert len(sd) == 152 and tuple(sd["pos_embed"].shape) == (1, 197, 768)
    assert tuple(sd["blocks.11.attn.qkv.weight"].shape) == (2304, 768)
    assert tuple(sd["blocks.0.mlp.fc1.weight"].shape) == (3072, 768)
    assert {"cls_token", "patch_embed.proj.weight", "norm.weight", "head.weight"} <= set(sd)


def test_vit_random_weights_save_load_and_detectors(tmp_path, digits):
    from safetensors.torch import save_file

    from noveltylab.nets.vit import load_vit, vit_tiny_test

    torch.manual_seed(0)
    m = vit_tiny_test(32, num_classes=7).eval()
    path = tmp_path / "vit_tiny_timm.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    m2 = load_vit(path)
    x = torch.rand(3, 1, 20, 20)
    with torch.no_grad():
        assert torch.allclose(m.embed(x), m2.embed(x), atol=1e-5)
        assert torch.allclose(m(m.preprocess(x)), m2(m2.preprocess(x)), atol=1e-5)
    m3 = load_vit(path, img_size=48)  # interpolated position embedding
    with torch.no_grad():
        assert m3.embed(x).shape == (3, 48)
    train, test = digits
    xtr, xte, y = _oc(train, test, 1)
    det = nl.create("fitymi", profile="test", backbone="vit_tiny", weights=str(path), input_size=32)
    s = det.fit(xtr).score(xte)
    assert s.shape == (len(xte),) and np.isfinite(s).all()
    assert det.net_.n_frozen == 2  # first half of the 4 blocks frozen
    d = nl.create("dn2", profile="test", backbone="vit_tiny", weights=str(path), input_size=32).fit(xtr)
    assert d.score(xte).shape == (len(xte),)


# --- detectors ---------------------------------------------------------------------------------
def test_dn2_digits_auroc_and_save_load(tmp_path, digits):
    train, test = digits
    xtr, xte, y = _oc(train, test, 0)
    det = nl.create("dn2", profile="test").fit(xtr)
    s = det.score(xte)
    assert auroc(y, s) > 0.85
    det.save(tmp_path / "dn2")
    s2 = nl.load(tmp_path / "dn2").score(xte)
    assert np.allclose(s, s2, rtol=1e-5, atol=1e-6)
    assert np.allclose(det.score(xte[:7]), s[:7], rtol=1e-5)  # batch independent


def test_fitymi_digits_auroc_save_load_seeds(tmp_path, digits):
    train, test = digits
    xtr, xte, y = _oc(train, test, 0)
    det = nl.create("fitymi", profile="test", seed=3).fit(xtr)
    s = det.score(xte)
    assert auroc(y, s) > 0.85
    assert det.fakes_.shape == (32, 1, 8, 8) and len(det.gen_checks_) == 1
    assert det.head_.weight.abs().sum() > 0  # head moved away from its zero init
    det.save(tmp_path / "f")
    loaded = nl.load(tmp_path / "f")
    assert np.allclose(loaded.score(xte), s, rtol=1e-5, atol=1e-6)
    assert torch.allclose(loaded.fakes_, det.fakes_, atol=1 / 255 + 1e-6)
    again = nl.create("fitymi", profile="test", seed=3).fit(xtr).score(xte)
    assert np.allclose(again, s, rtol=1e-4, atol=1e-6)
    p = det.fake_probability(xte[:10])
    assert p.shape == (10,) and ((p >= 0) & (p <= 1)).all()


def test_fitymi_frozen_front_and_given_fakes(digits):
    train, test = digits
    xtr, xte, y = _oc(train, test, 2)
    det = nl.create("fitymi", profile="test", augment=True, ft_epochs=1)
    fakes = np.clip(xtr[:40].astype(float) + np.random.default_rng(0).normal(0, 40, xtr[:40].shape), 0, 255)
    ref = nl.create("dn2", profile="test").fit(xtr)
    det.fit_with_fakes(xtr, fakes.astype(np.uint8))
    assert det.gen_checks_ == [] and det.fakes_.shape[0] == 40
    # the frozen front is identical to the untouched pretrained (here: seeded random) network
    x = torch.from_numpy(xte[:4]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert torch.allclose(det.net_.front(x), ref.net_.front(x), atol=1e-5)
    tail_ft = torch.cat([p.flatten() for p in det.net_.net.features[det.net_.n_frozen:].parameters()])
    tail_ref = torch.cat([p.flatten() for p in ref.net_.net.features[ref.net_.n_frozen:].parameters()])
    assert not torch.equal(tail_ft, tail_ref)  # the tail was fine-tuned
    with pytest.raises(ValueError, match="shape"):
        det.fit_with_fakes(xtr, np.zeros((4, 10, 10, 1), np.uint8))


def test_fitymi_collapsed_fine_tuning_falls_back_to_pretrained_features(tmp_path, digits):
    """A diverged fine-tuning (every image -> one feature) must not yield constant scores silently."""
    train, test = digits
    xtr, xte, y = _oc(train, test, 0)
    fakes = np.clip(xtr[:40].astype(float) + np.random.default_rng(0).normal(0, 40, xtr[:40].shape), 0, 255)
    from noveltylab.methods.fitymi import FITYMI

    def diverged(self, x, f):  # stands in for a fine-tuning that blew up: the last block outputs a constant
        orig(self, x, f)
        for p in self.net_.net.features[-1].parameters():
            torch.nn.init.zeros_(p)

    orig = FITYMI._finetune
    det = nl.create("fitymi", profile="test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FITYMI, "_finetune", diverged)
        with pytest.warns(RuntimeWarning, match="collapsed"):
            det.fit_with_fakes(xtr, fakes.astype(np.uint8))
    scores = det.score(xte)
    assert det.ft_collapsed_ and np.isfinite(scores).all() and np.ptp(scores) > 0
    det.save(tmp_path / "m")
    back = nl.load(tmp_path / "m")
    assert back.ft_collapsed_ and np.allclose(back.score(xte), det.score(xte), atol=1e-6)
    ok = nl.create("fitymi", profile="test", ft_epochs=1).fit_with_fakes(xtr, fakes.astype(np.uint8))
    assert not ok.ft_collapsed_


def test_fitymi_and_dn2_errors(digits):
    train, _ = digits
    x = train.images[:20]
    for kw, msg in [({"sde": "xx"}, "sde"), ({"gen_size": 10, "gen_levels": 3}, "divisible"),
                    ({"backbone": "resnet"}, "backbone"), ({"k": 0}, "k must"), ({"agg": "median"}, "agg"),
                    ({"fid_extractor": "inception"}, "fid_extractor"),
                    ({"weights": "/nonexistent/w.safetensors"}, "not found")]:
        with pytest.raises((ValueError, FileNotFoundError), match=msg):
            nl.create("fitymi", profile="test", **kw).fit(x)
    with pytest.raises(ValueError, match="no default weights"):
        nl.create("dn2", profile="test", backbone="vit_b16", weights="auto").fit(x)
    with pytest.raises(ValueError, match="multiple of the ViT patch"):
        nl.create("dn2", profile="test", backbone="vit_tiny", input_size=30).fit(x)


@needs_fmnist
def test_real_weights_fashion_mnist_dn2_and_fitymi():
    train = load_dataset("fashion-mnist", "train", data_dir=DATA)
    test = load_dataset("fashion-mnist", "test", data_dir=DATA)
    rng = np.random.default_rng(0)
    xtr = train.images[train.labels == 1][:150]  # trouser
    idx = rng.choice(len(test), 300, replace=False)
    xte, y = test.images[idx], (test.labels[idx] != 1).astype(int)
    s = nl.create("dn2", profile="demo").fit(xtr).score(xte)
    assert auroc(y, s) > 0.75  # 64-px MobileNetV2 features, 150 normal images (measured 0.81)
    f = nl.create("fitymi", profile="demo").fit(xtr)
    assert auroc(y, f.score(xte)) > 0.7
    # the non-generative control (issue 13.3): blurred + noised trousers as fakes (measured 0.978)
    c = nl.create("fitymi", profile="demo", fakes="blur-noise").fit(xtr)
    assert auroc(y, c.score(xte)) > 0.85


def test_feature_scaler_kinds_and_state():
    from noveltylab.methods.dn2 import FeatureScaler

    rng = np.random.default_rng(0)
    f = (rng.normal(size=(50, 6)) * np.array([1, 10, 100, 1, 1, 1]) + 5).astype(np.float32)
    assert FeatureScaler("none").fit_transform(f) is f
    l2 = FeatureScaler("l2").fit_transform(f)
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1.0, rtol=1e-5)
    st = FeatureScaler("standardise")
    z = st.fit_transform(f)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-3)
    back = FeatureScaler.from_state("standardise", {k: torch.from_numpy(v) for k, v in st.state().items()})
    np.testing.assert_allclose(back.transform(f[:3]), z[:3], rtol=1e-6)
    with pytest.raises(ValueError, match="feature_norm"):
        FeatureScaler("zscore")
    with pytest.raises(ValueError, match="standardisation statistics"):
        FeatureScaler.from_state("standardise", {})


@pytest.mark.parametrize("norm", ["l2", "standardise"])
def test_dn2_feature_norm_round_trip(tmp_path, digits, norm):
    xtr, xte, y = _oc(*digits)
    det = nl.create("dn2", profile="test", feature_norm=norm).fit(xtr)
    s = det.score(xte)
    assert auroc(y, s) > 0.8
    det.save(tmp_path / "m")
    np.testing.assert_allclose(nl.load(tmp_path / "m").score(xte), s, rtol=1e-5)
    with pytest.raises(ValueError, match="feature_norm"):
        nl.create("dn2", profile="test", feature_norm="bogus").fit(xtr)


def test_pretrained_feature_methods_default_to_224_px():
    for name in ("dn2", "fitymi"):
        cls = nl.get_class(name)
        assert nl.create(name).input_size == 224
        for prof in ("cpu", "paper"):
            assert cls.profiles[prof]["input_size"] == 224, (name, prof)
        assert nl.create(name, profile="paper").feature_norm == "none"  # the papers' raw features


@needs_fmnist
def test_dn2_feature_norm_on_real_features():
    """Scaling the pooled MobileNetV2 features before the kNN (measured on this subset: the
    normalised rows beat the raw features, as issue 13 reports for class 0)."""
    train = load_dataset("fashion-mnist", "train", data_dir=DATA)
    test = load_dataset("fashion-mnist", "test", data_dir=DATA)
    rng = np.random.default_rng(0)
    xtr = train.images[train.labels == 0][:150]
    idx = rng.choice(len(test), 300, replace=False)
    xte, y = test.images[idx], (test.labels[idx] != 0).astype(int)
    a = {n: auroc(y, nl.create("dn2", profile="demo", feature_norm=n).fit(xtr).score(xte))
         for n in ("none", "l2", "standardise")}
    assert a["l2"] > a["none"] and a["l2"] > 0.75, a


# --- near-ND protocol ------------------------------------------------------------------------
def test_near_nd_protocol_same_and_second_dataset(digits):
    train, test = digits
    kw = dict(clp_features="pixels", clp_per_class=40)
    cs = closeness_scores(train, 3, features="pixels", per_class=40)
    assert cs[3] == -np.inf and np.isfinite(np.delete(cs, 3)).all()
    assert abs(np.delete(cs, 3).sum() - 1.0) < 1e-6  # mean probabilities over the remaining classes
    sp = near_nd(train, test, 3, **kw)
    near = sp.info["near_class"]
    assert near == int(np.argmax(cs)) and near != 3
    assert set(np.unique(sp.test_classes)) == {3, near}
    assert (sp.test_labels == (sp.test_classes == near)).all()
    assert len(sp.train) + len(sp.val) == int((train.labels == 3).sum())
    # the 1/7-style pairs of digits: the closest class of 1 is not something absurd like 0
    assert near_nd(train, test, "1", **kw).info["near_class"] != 0
    # explicit near class, and the registered protocol
    sp2 = near_nd(train, test, 3, near=8)
    assert sp2.info["near_class"] == 8 and sp2.info["criterion"] == "given"
    tasks = list(make_splits("near-nd", train, test, [0, 5], **kw))
    assert [t for t, _ in tasks] == [0, 5]
    with pytest.raises(ValueError, match="normal class itself"):
        near_nd(train, test, 3, near=3)
    # a second data set as the source of near classes (CIFAR-10 vs CIFAR-100 style)
    other_tr = ImageSet(255 - train.images, train.labels % 5, [f"inv{i}" for i in range(5)], name="inv")
    other_te = ImageSet(255 - test.images, test.labels % 5, [f"inv{i}" for i in range(5)], name="inv")
    sp3 = near_nd(train, test, 3, source_train=other_tr, source_test=other_te, **kw)
    j = sp3.info["near_class"]
    assert 0 <= j < 5 and (sp3.test_classes[sp3.test_labels == 1] == -1 - j).all()
    bad = ImageSet(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10) % 2, ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        near_nd(train, test, 3, source_train=bad, source_test=bad, **kw)


def test_bottom1_and_per_class_auroc():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    classes = np.array([2, 2, 2, 5, 5, 7, 7])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.25, 0.05])
    per = per_class_auroc(scores, labels, classes)
    assert per[5] == 1.0 and per[7] < 0.5
    assert bottom1(scores, labels, classes) == (7, per[7])


def test_relative_fid_rule_fires_and_is_recorded(digits):
    """The relative rule sits between the real-vs-real floor and the untrained generator's FID
    (same extractor, same sizes) and stops the generator before its epoch cap."""
    from noveltylab.generative.fid import PAPER_FID_FRACTION, relative_fid_target

    assert 0.06 < PAPER_FID_FRACTION < 0.11
    rng = np.random.default_rng(0)
    a, b, noise = rng.normal(size=(200, 4)), rng.normal(size=(50, 4)), rng.normal(3.0, 2.0, size=(50, 4))
    info = relative_fid_target(a, b, noise, 0.5)
    assert info["floor"] < info["target"] < info["ceiling"]
    assert info["target"] == pytest.approx(info["floor"] + 0.5 * (info["ceiling"] - info["floor"]))
    with pytest.raises(ValueError, match="fraction"):
        relative_fid_target(a, b, noise, 1.5)
    xtr, _, _ = _oc(*digits)
    kw = dict(profile="test", fid_extractor="pixels", fid_target=40.0, fid_rule="relative", fid_fraction=0.9,
              gen_epochs=12, gen_check_every=1, fid_samples=24, gen_lr=5e-3)
    det = nl.create("fitymi", **kw).fit(xtr[:100], val=xtr[100:])
    info = det.fid_rule_info_
    assert info["rule"] == "relative" and info["floor"] < info["target"] < info["ceiling"]
    assert info["stopped_early"] and det.gen_stop_epoch_ < 12
    assert det.gen_checks_[-1]["fid"] <= info["target"] < min(c["fid"] for c in det.gen_checks_[:-1] or [{"fid": np.inf}])
    # the absolute rule takes fid_target as it is (here one no check reaches: runs to the cap)
    det2 = nl.create("fitymi", **{**kw, "fid_rule": "absolute", "fid_target": 1e-9, "gen_epochs": 3}).fit(
        xtr[:100], val=xtr[100:])
    assert det2.gen_stop_epoch_ == 3 and det2.fid_rule_info_["target"] == 1e-9
    assert not det2.fid_rule_info_["stopped_early"]
    with pytest.raises(ValueError, match="fid_rule"):
        nl.create("fitymi", profile="test", fid_rule="inception").fit(xtr)


def test_fid_resolution_compares_real_images_at_the_generator_size(digits):
    """With fid_resolution="generator" (default) real images enter the FID at the generator's size,
    the way its own samples do; "data" keeps them as they are; anything else is refused by name."""
    det = nl.create("fitymi", profile="test")
    assert det.fid_resolution == "generator"
    x = torch.rand(5, 1, 32, 32)
    low = det._fid_view(x)
    assert low.shape == (5, 1, det.gen_size, det.gen_size) and 0.0 <= float(low.min()) <= float(low.max()) <= 1.0
    # an antialiased downsize keeps the mean brightness of each image
    assert torch.allclose(low.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=0.02)
    assert nl.create("fitymi", profile="test", fid_resolution="data")._fid_view(x) is x
    xtr, _, _ = _oc(*digits)
    fitted = nl.create("fitymi", profile="test", fid_extractor="pixels", fid_target=40.0).fit(xtr[:60], val=xtr[60:90])
    assert fitted.fid_rule_info_["resolution"] == fitted.gen_size
    with pytest.raises(ValueError, match="fid_resolution"):
        nl.create("fitymi", profile="test", fid_resolution="inception").fit(xtr[:60])
