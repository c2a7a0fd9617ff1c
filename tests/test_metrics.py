"""Tests for noveltylab.metrics: against scikit-learn, brute force and hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from noveltylab import metrics as M


@pytest.fixture(scope="module")
def scored():
    """Overlapping novel/normal scores, with ties (rounded) to exercise threshold handling."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(300, int), np.ones(120, int)]
    s = np.r_[rng.normal(0, 1, 300), rng.normal(1.2, 1, 120)].round(1)
    perm = rng.permutation(len(y))
    return y[perm], s[perm]


def _f1(y, pred):
    tp = np.sum(pred & (y == 1))
    fp = np.sum(pred & (y == 0))
    fn = np.sum(~pred & (y == 1))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


# --- image-level ----------------------------------------------------------------------
def test_auroc_aupr_match_sklearn(scored):
    y, s = scored
    assert M.auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.aupr(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert isinstance(M.auroc(y, s), float) and isinstance(M.aupr(y, s), float)


def test_auroc_hand_computed():
    # pairs (novel, normal): 0.8>0.1, 0.8>0.4, 0.35<0.4, 0.35>0.1 -> 3/4
    assert M.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert M.auroc([0, 1], [0.0, 1.0]) == 1.0
    assert M.auroc([0, 1], [1.0, 0.0]) == 0.0
    assert M.auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied
    # accepts bool labels and column vectors
    assert M.auroc(np.array([[False], [True]]), np.array([[0.2], [0.9]])) == 1.0


def test_aupr_hand_computed():
    # ranking: 0.9 (novel), 0.8 (normal), 0.7 (novel): AP = (1/2)*1 + (1/2)*(2/3)
    assert M.aupr([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)


def test_f1_at(scored):
    y, s = scored
    for thr in (-1.0, 0.0, 0.5, 1.3, 2.0):
        assert M.f1_at(y, s, thr) == pytest.approx(skm.f1_score(y, (s > thr).astype(int)))
    # hand-computed: scores > 0.5 -> predicted [0, 1, 1, 0]; tp=1, fp=1, fn=1 -> F1 = 0.5
    assert M.f1_at([0, 0, 1, 1], [0.1, 0.6, 0.9, 0.5], 0.5) == pytest.approx(0.5)
    # nothing predicted novel: F1 = 0, not a warning or NaN
    assert M.f1_at([0, 1], [0.1, 0.2], 10.0) == 0.0


def test_f1_max_brute_force(scored):
    y, s = scored
    best = max(_f1(y, s >= u) for u in np.unique(s))
    f, thr = M.f1_max(y, s)
    assert f == pytest.approx(best, abs=1e-12)
    # the threshold reproduces the best F1 with f1_at's ``score > threshold`` rule
    assert M.f1_at(y, s, thr) == pytest.approx(f, abs=1e-12)


def test_f1_max_hand_computed():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.4, 0.9])
    # calling >= 0.3 novel: tp=3, fp=1, fn=0 -> F1 = 6/7, the best
    f, thr = M.f1_max(y, s)
    assert f == pytest.approx(6 / 7)
    assert 0.2 <= thr < 0.3
    assert M.f1_at(y, s, thr) == pytest.approx(6 / 7)
    # perfect separation, lowest novel score is the minimum of all: threshold below it
    f, thr = M.f1_max([1, 1, 0], [0.5, 0.7, 0.9])
    assert M.f1_at([1, 1, 0], [0.5, 0.7, 0.9], thr) == pytest.approx(f)
    f, thr = M.f1_max([0, 0, 1, 1], [0.0, 1.0, 2.0, 3.0])
    assert f == 1.0 and 1.0 <= thr < 2.0


def test_fpr_at_tpr_hand_computed():
    # 10 novel, 10 normal. Sorted by score, novel scores 10..19 except one novel at 4.5;
    # normal scores 0..9 (9 and 8 above the low novel one).
    y = np.r_[np.ones(10, int), np.zeros(10, int)]
    s = np.r_[np.arange(11, 20), 4.5, np.arange(10)].astype(float)
    # TPR 0.9 is reached at threshold 11 with no false positive
    assert M.fpr_at_tpr(y, s, 0.9) == 0.0
    # TPR 1.0 needs threshold 4.5: normal scores 5..9 (five of ten) are above -> FPR 0.5
    assert M.fpr_at_tpr(y, s, 1.0) == pytest.approx(0.5)
    assert M.fpr_at_tpr(y, s, 0.95) == pytest.approx(0.5)


def test_fpr_at_tpr_tied_pairs():
    """18 novel on top, then two (novel, normal) pairs tied at one score each, then 8
    normal. TPR 0.95 is first reached at the first tied pair: FPR 1/10. (sklearn's
    default ``drop_intermediate`` removes that collinear ROC point and gave 2/10.)"""
    y = np.array([1] * 18 + [1, 0] + [1, 0] + [0] * 8)
    s = np.array(list(range(100, 82, -1)) + [50, 50] + [40, 40] + list(range(10, 2, -1)), float)
    assert M.fpr_at_tpr(y, s, 0.95) == pytest.approx(0.1)
    assert M.fpr_at_tpr(y, s, 1.0) == pytest.approx(0.2)
    assert M.fpr_at_tpr(y, s, 0.9) == 0.0


def test_fpr_at_tpr_brute_force(scored):
    y, s = scored
    for tpr in (0.5, 0.8, 0.95, 1.0):
        best = min(np.mean(s[y == 0] >= u) for u in np.unique(s) if np.mean(s[y == 1] >= u) >= tpr)
        assert M.fpr_at_tpr(y, s, tpr) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5])
def test_fpr_at_tpr_bad_target(tpr):
    with pytest.raises(ValueError, match="tpr"):
        M.fpr_at_tpr([0, 1], [0.1, 0.9], tpr)


# --- pixel-level ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(1)
    masks = np.zeros((4, 16, 16), np.uint8)
    masks[:, 4:9, 5:11] = 255  # 0/255 masks as read from PNG
    masks[3] = 0  # one image without defects
    amaps = rng.normal(0, 1, masks.shape) + 1.5 * (masks > 0)
    return masks, amaps.astype(np.float32)


def test_pixel_auroc(maps):
    masks, amaps = maps
    expected = skm.roc_auc_score((masks > 0).reshape(-1), amaps.reshape(-1).astype(np.float64))
    assert M.pixel_auroc(masks, amaps) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="differ"):
        M.pixel_auroc(masks[:3], amaps)


def test_pixel_roc_threshold_maximises_youden(maps):
    masks, amaps = maps
    m = (masks > 0).reshape(-1)
    a = amaps.reshape(-1).astype(np.float64)
    thr = M.pixel_roc_threshold(masks, amaps)

    def youden(u):
        p = a >= u
        return p[m].mean() - p[~m].mean()

    best = max(youden(u) for u in np.unique(a))
    assert youden(thr) == pytest.approx(best, abs=1e-12)
    assert np.isfinite(thr)


def test_pixel_roc_threshold_hand_computed():
    masks = np.array([[0, 0, 1], [0, 1, 1]])
    amaps = np.array([[0.1, 0.5, 0.6], [0.2, 0.7, 0.9]])
    # threshold 0.6: TPR 1, FPR 0 (0.5 is the highest normal pixel)
    assert M.pixel_roc_threshold(masks, amaps) == pytest.approx(0.6)


def test_iou_at_hand_computed():
    masks = np.array([[1, 1, 0, 0],
                      [1, 1, 0, 0]])
    amaps = np.array([[0.9, 0.2, 0.8, 0.1],
                      [0.6, 0.5, 0.1, 0.1]])
    # maps >= 0.5: (0,0) (0,2) (1,0) (1,1) -> intersection 3, union 5
    assert M.iou_at(masks, amaps, 0.5) == pytest.approx(3 / 5)
    # >= is inclusive: at 0.6, (1,1)=0.5 drops out -> intersection 2, union 5
    assert M.iou_at(masks, amaps, 0.6) == pytest.approx(2 / 5)
    assert M.iou_at(masks, amaps, 0.0) == pytest.approx(4 / 8)
    assert M.iou_at(masks, amaps, 10.0) == 0.0
    # empty mask and empty prediction: perfect agreement
    assert M.iou_at(np.zeros((2, 2)), np.zeros((2, 2)), 1.0) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        M.iou_at(masks, amaps.T, 0.5)


# --- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [M.auroc, M.aupr, M.f1_max, M.fpr_at_tpr, M.summary])
def test_one_class_labels(fn):
    with pytest.raises(ValueError, match="both normal"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both normal"):
        fn([1, 1], [0.1, 0.2])


@pytest.mark.parametrize("fn", [M.auroc, M.aupr, M.f1_max, M.fpr_at_tpr])
def test_length_mismatch(fn):
    with pytest.raises(ValueError, match="differ in length"):
        fn([0, 1, 1], [0.1, 0.2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fn", [M.auroc, M.aupr, M.f1_max, M.fpr_at_tpr])
def test_non_finite_scores(fn, bad):
    with pytest.raises(ValueError, match="NaN"):
        fn([0, 1, 1], [0.1, bad, 0.3])


def test_non_finite_maps():
    with pytest.raises(ValueError, match="NaN"):
        M.pixel_auroc(np.array([[0, 1]]), np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        M.pixel_roc_threshold(np.array([[0, 1]]), np.array([[np.nan, 0.1]]))


def test_one_class_masks():
    with pytest.raises(ValueError, match="both normal"):
        M.pixel_auroc(np.zeros((2, 4)), np.ones((2, 4)))


@pytest.mark.parametrize("labels", [[0, 2, 1], [0, 0.5, 1], [0, np.nan, 1], [-1, 0, 1]])
def test_labels_not_binary(labels):
    with pytest.raises(ValueError, match="labels must be 0"):
        M.auroc(labels, [0.1, 0.2, 0.3])


def test_empty_inputs():
    with pytest.raises(ValueError, match="empty"):
        M.auroc([], [])


# --- summary ---------------------------------------------------------------------------
def test_summary(scored):
    y, s = scored
    out = M.summary(y, s)
    assert set(out) == {"auroc", "aupr", "f1_max", "fpr95"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["auroc"] == pytest.approx(M.auroc(y, s))
    assert out["aupr"] == pytest.approx(M.aupr(y, s))
    assert out["f1_max"] == pytest.approx(M.f1_max(y, s)[0])
    assert out["fpr95"] == pytest.approx(M.fpr_at_tpr(y, s, 0.95))
    out = M.summary(y, s, threshold=0.7)
    assert set(out) == {"auroc", "aupr", "f1_max", "fpr95", "f1"}
    assert out["f1"] == pytest.approx(M.f1_at(y, s, 0.7))
