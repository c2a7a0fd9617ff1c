"""Issue 15 point 4: conformal thresholds, p-values, and the warning for too-small calibration sets."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import noveltylab
from noveltylab.calibration import conformal_p_values, conformal_threshold, expected_fpr
from noveltylab.detector import CalibrationWarning


def test_conformal_threshold_rule():
    s = np.arange(1.0, 100.0)                        # n = 99 -> k = ceil(100 * 0.95) = 95
    t, warn = conformal_threshold(s, 0.05)
    assert t == 95.0 and warn is None
    assert expected_fpr(99, 0.05) == pytest.approx(0.05)


def test_small_set_warns_with_finest_rate():
    t, warn = conformal_threshold(np.arange(10.0), 0.05)
    assert t == 9.0
    assert warn.startswith("calibration set of 10 normal images cannot resolve a false-positive rate of 0.05 "
                           "(needs at least 20); the finest rate it can resolve is 1/(n+1) = 0.0909")


def test_p_values_in_unit_interval_and_uniform_on_normal_data():
    rng = np.random.default_rng(0)
    cal, new = rng.normal(size=500), rng.normal(size=5000)
    p = conformal_p_values(cal, new)
    assert p.min() > 0 and p.max() <= 1
    hist = np.histogram(p, bins=10, range=(0, 1))[0] / len(p)
    assert np.abs(hist - 0.1).max() < 0.03             # uniform-ish
    assert np.mean(p <= 0.05) == pytest.approx(0.05, abs=0.015)
    assert conformal_p_values(cal, [1e9])[0] == pytest.approx(1 / 501)


def _digits_class(c):
    from noveltylab.data import load_dataset

    d = load_dataset("digits", "train")
    return d.images[d.labels == c]


def test_detector_calibrate_p_value_round_trip(tmp_path):
    x = _digits_class(0)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    fit, cal, new = x[idx[:40]], x[idx[40:100]], x[idx[100:]]
    det = noveltylab.create("raw-nn").fit(fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # 60 images resolve 5 %: no warning
        det.calibrate(cal, fpr=0.05)
    p = det.p_value(new)
    assert np.all((p > 0) & (p <= 1))
    assert np.array_equal(det.predict(new), (det.score(new) > det.threshold_).astype(int))
    # decisions agree with the p-value rule for all but ties
    det.save(tmp_path / "m")
    back = noveltylab.load(tmp_path / "m")
    np.testing.assert_array_equal(back.calibration_scores_, det.calibration_scores_)
    np.testing.assert_allclose(back.p_value(new), p)
    other = _digits_class(1)[:50]
    assert np.median(det.p_value(other)) < np.median(p)  # novel digits get small p-values


def test_detector_warns_on_too_small_calibration_set():
    x = _digits_class(3)
    det = noveltylab.create("raw-nn").fit(x[:50])
    with pytest.warns(CalibrationWarning, match="cannot resolve a false-positive rate of 0.01"):
        det.calibrate(x[50:80], fpr=0.01)
    assert det.threshold_ == pytest.approx(det.calibration_scores_.max())


def test_p_value_needs_calibration():
    x = _digits_class(3)
    det = noveltylab.create("raw-nn").fit(x[:20])
    with pytest.raises(noveltylab.NotFittedError, match="no calibration scores"):
        det.p_value(x[:3])


@pytest.mark.parametrize("n,fpr", [(99, 0.05), (57, 0.1), (500, 0.01), (10, 0.05)])
def test_decision_equals_p_value_rule(n, fpr):
    rng = np.random.default_rng(n)
    cal, new = rng.normal(size=n), rng.normal(size=4000)
    t, warn = conformal_threshold(cal, fpr)
    p = conformal_p_values(cal, new)
    level = fpr if warn is None else 1 / (n + 1)      # too small a set: flagged only beyond every score
    np.testing.assert_array_equal(new > t, p <= level + 1e-12)
