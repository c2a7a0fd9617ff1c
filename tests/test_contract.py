"""The contract every registered detector must honour (PyOD-style shared tests).

Each detector runs with its tiny ``test`` profile on the 8x8 digits (class 0
normal), so the whole contract stays fast while still training for real.
"""
from __future__ import annotations

import numpy as np
import pytest

import noveltylab
from noveltylab import ImageError, ModelFileError, NotFittedError
from noveltylab.metrics import auroc

METHODS = noveltylab.available()


@pytest.fixture(scope="module")
def fitted(digits_split):
    """Fit every detector once (test profile, seed 0) and keep its scores."""
    cache = {}

    def get(name):
        if name not in cache:
            det = noveltylab.create(name, profile="test", seed=0, device="cpu")
            det.fit(digits_split.train, val=digits_split.val)
            cache[name] = (det, det.score(digits_split.test))
        return cache[name]
    return get


@pytest.mark.parametrize("name", METHODS)
def test_profiles_and_params(name):
    cls = noveltylab.get_class(name)
    assert {"cpu", "paper", "demo", "test"} <= set(cls.profiles), f"{name} lacks a required profile"
    det = noveltylab.create(name, profile="cpu")
    clone = noveltylab.create(name, **det.get_params())
    assert clone.get_params() == det.get_params()
    assert cls.summary, f"{name} needs a one-line summary"


@pytest.mark.parametrize("name", METHODS)
def test_fit_score_shapes_and_auroc(name, fitted, digits_split):
    det, scores = fitted(name)
    assert scores.shape == (len(digits_split.test),)
    assert scores.dtype == np.float64 and np.all(np.isfinite(scores))
    assert auroc(digits_split.test_labels, scores) > 0.6, f"{name} barely separates digit 0 from the rest"


@pytest.mark.parametrize("name", METHODS)
def test_score_independent_of_batch(name, fitted, digits_split):
    det, scores = fitted(name)
    np.testing.assert_allclose(det.score(digits_split.test[:7]), scores[:7], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_save_load_round_trip(name, fitted, digits_split, tmp_path):
    det, scores = fitted(name)
    det.calibrate(digits_split.val, fpr=0.1)
    det.save(tmp_path / "m")
    back = noveltylab.load(tmp_path / "m")
    assert type(back) is type(det) and back.get_params() == det.get_params()
    np.testing.assert_allclose(back.score(digits_split.test), scores, rtol=1e-6, atol=1e-7)
    assert back.threshold_ == det.threshold_
    np.testing.assert_array_equal(back.predict(digits_split.test), det.predict(digits_split.test))


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_scores(name, fitted, digits_split):
    _, scores = fitted(name)
    again = noveltylab.create(name, profile="test", seed=0, device="cpu").fit(digits_split.train, val=digits_split.val)
    np.testing.assert_array_equal(again.score(digits_split.test), scores)


@pytest.mark.parametrize("name", METHODS)
def test_calibrate_predict(name, fitted, digits_split):
    det, _ = fitted(name)
    det.calibrate(digits_split.val, fpr=0.2)
    pred = det.predict(digits_split.test)
    assert set(np.unique(pred)) <= {0, 1}
    flagged = det.predict(digits_split.val).mean()
    assert flagged <= 0.2 + 1e-9


@pytest.mark.parametrize("name", METHODS)
def test_bad_input_is_rejected(name, fitted, digits_split):
    det, _ = fitted(name)
    x = digits_split.test[:4]
    with pytest.raises(ImageError, match="channels"):
        det.score(np.repeat(x, 3, axis=3))
    with pytest.raises(ImageError, match="resize"):
        det.score(np.zeros((2, 9, 9, 1), np.uint8))
    with pytest.raises(NotFittedError):
        noveltylab.create(name, profile="test").score(x)
    with pytest.raises(ImageError, match="NaN"):
        noveltylab.create(name, profile="test").fit(np.full((10, 8, 8), np.nan, np.float32))


@pytest.mark.parametrize("name", METHODS)
def test_load_refuses_other_method(name, fitted, tmp_path):
    det, _ = fitted(name)
    det.save(tmp_path / "m")
    other = next(n for n in METHODS if n != name) if len(METHODS) > 1 else None
    if other is None:
        pytest.skip("only one method registered")
    with pytest.raises(ModelFileError, match=name):
        noveltylab.get_class(other).load(tmp_path / "m")
