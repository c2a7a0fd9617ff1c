"""DN2's pooled features through the shared on-disk feature cache (issue 13.2): each image set is
embedded once per setting, scores are identical with and without the cache, and ``feature_norm``
is applied after the cache (also as a re-scoring without re-embedding, the bench's variants)."""
from __future__ import annotations

import numpy as np
import pytest

import noveltylab
from noveltylab import features
from noveltylab.features import feature_cache
from noveltylab.methods import dn2 as dn2_mod


def _count_calls(monkeypatch, method: str) -> list[int]:
    """Batch sizes of every call of ``Backbone.<method>`` from now on (the list grows as they happen)."""
    calls: list[int] = []
    orig = getattr(dn2_mod.Backbone, method)

    def counting(self, x):
        calls.append(int(x.shape[0]))
        return orig(self, x)

    monkeypatch.setattr(dn2_mod.Backbone, method, counting)
    return calls


@pytest.fixture
def count_embeds(monkeypatch):
    """Number of images the backbone embedded (every DN2 / FITYMI embedding goes through Backbone.embed)."""
    monkeypatch.delenv(features.ENV_FEATURE_CACHE, raising=False)
    return _count_calls(monkeypatch, "embed")


def _dn2(**kw):
    return noveltylab.create("dn2", profile="test", device="cpu", **kw)


def test_second_fit_and_score_embed_nothing_and_scores_identical(digits_split, tmp_path, count_embeds):
    split = digits_split
    plain = _dn2().fit(split.train).score(split.test)
    n_images = len(split.train) + len(split.test)
    assert sum(count_embeds) == n_images  # no cache: every image embedded, nothing written
    assert not any(tmp_path.iterdir())
    count_embeds.clear()
    with feature_cache(tmp_path):
        cold = _dn2().fit(split.train).score(split.test)
        assert sum(count_embeds) == n_images
        entries = sorted(tmp_path.rglob("*.npy"))
        assert entries and all(np.load(p).ndim == 2 for p in entries)  # pooled (N, 1280) vectors
        count_embeds.clear()
        warm = _dn2().fit(split.train).score(split.test)  # a second fit + score of the same setting
        assert count_embeds == []
        _dn2(input_size=40).fit(split.train)  # another input size -> another setting, embedded anew
        assert sum(count_embeds) == len(split.train)
        count_embeds.clear()
        det = _dn2().fit(split.train)
        sub = np.arange(len(split.test))[::-3]  # a subset in another order (as the near-ND test set)
        part = det.score(split.test[sub])
        assert count_embeds == []  # one entry per image: any subset / order is served from disk
        new = split.test[5:9][:, :, ::-1].copy()  # 4 mirrored images the cache has not seen
        mixed = det.score(np.concatenate([split.test[:5], new]))
        assert sum(count_embeds) == 4  # only the 4 new images are embedded
    np.testing.assert_array_equal(plain, cold)
    np.testing.assert_array_equal(plain, warm)
    # another query batch: FAISS's multithreaded search may round differently (seen with 2 threads)
    np.testing.assert_allclose(plain[sub], part, rtol=1e-4)
    np.testing.assert_allclose(plain[:5], mixed[:5], rtol=1e-4)


def test_cache_from_environment_variable(digits_split, tmp_path, monkeypatch, count_embeds):
    monkeypatch.setenv(features.ENV_FEATURE_CACHE, str(tmp_path / "env"))
    _dn2().fit(digits_split.train)
    assert list((tmp_path / "env").rglob("*.npy"))
    count_embeds.clear()
    _dn2().fit(digits_split.train)
    assert count_embeds == []


@pytest.mark.parametrize("norm", ["l2", "standardise"])
def test_feature_norm_applied_after_the_cache(digits_split, tmp_path, count_embeds, norm):
    split = digits_split
    plain_none = _dn2().fit(split.train).score(split.test)
    plain_norm = _dn2(feature_norm=norm).fit(split.train).score(split.test)
    assert not np.allclose(plain_none, plain_norm)  # the scaling changes the scores
    with feature_cache(tmp_path):
        _dn2().fit(split.train).score(split.test)  # fills the cache with raw features
        count_embeds.clear()
        cached_norm = _dn2(feature_norm=norm).fit(split.train).score(split.test)
        assert count_embeds == []  # the cache holds raw features; every norm reads the same entries
        det = _dn2().fit(split.train)
        det.set_scoring(split.val, feature_norm=norm)  # re-scaled without re-embedding the training images
        rescored = det.score(split.test)
        assert det.feature_norm == norm and count_embeds == []
        det.set_scoring(split.val, feature_norm="none")
        back = det.score(split.test)
    np.testing.assert_array_equal(plain_norm, cached_norm)
    np.testing.assert_allclose(plain_norm, rescored, rtol=1e-6)
    np.testing.assert_allclose(plain_none, back, rtol=1e-6)


def test_set_scoring_errors(digits_split, tmp_path):
    det = _dn2()
    with pytest.raises(noveltylab.detector.NotFittedError, match="not fitted"):
        det.set_scoring(None, feature_norm="l2")
    det.fit(digits_split.train)
    with pytest.raises(ValueError, match=r"changes only \['feature_norm'\], not \['k'\]"):
        det.set_scoring(None, k=3)
    with pytest.raises(ValueError, match="feature_norm must be one of"):
        det.set_scoring(None, feature_norm="cosine")
    assert det.feature_norm == "none"
    det.save(tmp_path / "m")
    loaded = noveltylab.load(tmp_path / "m")
    loaded.set_scoring(None, feature_norm="none")  # no change: fine
    with pytest.raises(ValueError, match="refit with the new feature_norm"):
        loaded.set_scoring(None, feature_norm="l2")


def test_bench_scoring_variant_restores(digits_split):
    """The bench's variant hook (set_scoring, then restore) leaves the model as it was."""
    from noveltylab.bench.variants import apply_scoring

    det = _dn2().fit(digits_split.train)
    ref = det.score(digits_split.test)
    scored, restore = apply_scoring(det, digits_split, {"feature_norm": "l2"})
    assert scored.feature_norm == "l2" and not np.allclose(scored.score(digits_split.test), ref)
    restore()
    assert det.feature_norm == "none"
    np.testing.assert_allclose(det.score(digits_split.test), ref, rtol=1e-6)


def test_fitymi_collapse_fallback_goes_through_the_cache(digits_split, tmp_path, count_embeds, monkeypatch):
    """A collapsed fine-tuning falls back to the unchanged pretrained backbone: those features are
    cached like DN2's (the fine-tuned ones never are: they belong to one fit)."""
    from noveltylab.methods import fitymi as fitymi_mod

    monkeypatch.setattr(fitymi_mod, "features_collapsed", lambda f: True)
    split = digits_split
    with feature_cache(tmp_path):
        with pytest.warns(RuntimeWarning, match="collapsed"):
            det = noveltylab.create("fitymi", profile="test", device="cpu", fakes="blur-noise").fit(split.train)
        first = det.score(split.test)
        assert len(list(tmp_path.rglob("*.npy"))) > 0
        count_embeds.clear()
        again = det.score(split.test)
        assert count_embeds == []
    np.testing.assert_array_equal(first, again)
    assert det.diagnostics()["fallback"] == "pretrained features (dn2)"


def test_fitymi_caches_its_frozen_front_and_scores_identically(digits_split, tmp_path, monkeypatch):
    """FITYMI's fine-tuned tail sits on a frozen pretrained front: the front's maps of the normal and test
    images are cached (key: the front's weights only, unchanged by fine-tuning), the tail runs on them."""
    monkeypatch.delenv(features.ENV_FEATURE_CACHE, raising=False)
    fronts = _count_calls(monkeypatch, "front")
    split = digits_split

    def fitymi():
        return noveltylab.create("fitymi", profile="test", device="cpu", fakes="blur-noise", n_fakes=20)

    ref_det = fitymi().fit(split.train)
    ref = ref_det.score(split.test)
    fronts.clear()
    with feature_cache(tmp_path):
        det = fitymi().fit(split.train)
        cold = det.score(split.test)
        # fine-tuning computes the normal images' and the fakes' fronts; the index then reads the normal
        # images' fronts from the cache; scoring computes the test images'
        assert sum(fronts) == len(split.train) + 20 + len(split.test)
        fronts.clear()
        again = fitymi().fit(split.train)  # a second fit: only the 20 fakes' fronts are computed
        warm = again.score(split.test)
        assert sum(fronts) == 20
    np.testing.assert_allclose(ref, cold, rtol=1e-5)
    np.testing.assert_array_equal(cold, warm)
    from noveltylab.detector import seed_everything

    seed_everything(0)  # the backbone fitymi built before fine-tuning (the blur-noise fakes use their own RNG)
    before = dn2_mod.Backbone("mobilenet_v2", None, 32)
    assert det.net_.cache_setting("front") == before.cache_setting("front")  # frozen front: same key
    assert det.net_.cache_setting("pooled") != before.cache_setting("pooled")  # the tail was fine-tuned
    assert all(len(list(p.parent.glob("setting.json"))) == 1 for p in tmp_path.rglob("*.npy"))
    with pytest.raises(ValueError, match="part must be 'pooled' or 'front'"):
        det.net_.cache_setting("tail")


def test_fitymi_set_scoring_equals_a_fit_with_that_feature_norm(digits_split, tmp_path):
    """The fine-tuning does not depend on feature_norm, so re-scaling a fitted FITYMI gives the scores of
    a fit with that feature_norm (what the bench's scoring variants rely on)."""
    split = digits_split

    def fitymi(norm):
        return noveltylab.create("fitymi", profile="test", device="cpu", fakes="blur-noise", n_fakes=20,
                                 feature_norm=norm).fit(split.train)

    det = fitymi("none")
    raw = det.score(split.test)
    det.set_scoring(split.val, feature_norm="standardise")
    rescored = det.score(split.test)
    assert not np.allclose(raw, rescored)
    np.testing.assert_allclose(rescored, fitymi("standardise").score(split.test), rtol=1e-5)
    with pytest.raises(ValueError, match=r"fitymi.set_scoring changes only \['feature_norm'\]"):
        det.set_scoring(split.val, k=5)
    det.save(tmp_path / "m")
    with pytest.raises(ValueError, match="refit with the new feature_norm"):
        noveltylab.load(tmp_path / "m").set_scoring(split.val, feature_norm="l2")
