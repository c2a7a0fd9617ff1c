"""Protocols: one-class, leave-one-out, several normal classes, outlier fraction, training cap."""
from __future__ import annotations

import numpy as np
import pytest

from noveltylab.data import ImageSet, cap_per_class, leave_one_out, make_splits, one_class, outlier_fraction


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [50, 60, 70, 80])
    imgs = rng.integers(0, 256, (len(labels), 6, 6, 1), dtype=np.uint8)
    imgs[:, 0, 0, 0] = labels  # the class is readable from a pixel, so splits can be checked
    names = ["a", "b", "c", "d"]
    return ImageSet(imgs, labels, names, name="toy"), ImageSet(imgs[::2], labels[::2], names, name="toy")


def test_one_class(toy):
    train, test = toy
    s = one_class(train, test, 1, val_fraction=0.1, seed=3)
    assert np.all(s.train[:, 0, 0, 0] == 1) and np.all(s.val[:, 0, 0, 0] == 1)
    assert len(s.train) + len(s.val) == 60 and len(s.val) == 6
    assert not set(map(bytes, s.train)) & set(map(bytes, s.val))
    np.testing.assert_array_equal(s.test_labels, (test.labels != 1).astype(int))
    again = one_class(train, test, "b", val_fraction=0.1, seed=3)
    np.testing.assert_array_equal(again.train, s.train)


def test_several_normal_classes_and_leave_one_out(toy):
    train, test = toy
    s = one_class(train, test, [0, 2], seed=0)
    assert set(np.unique(s.train[:, 0, 0, 0])) == {0, 2}
    assert s.test_labels.sum() == np.isin(test.labels, [1, 3]).sum()
    m = leave_one_out(train, test, 3, seed=0)
    assert set(np.unique(m.train[:, 0, 0, 0])) == {0, 1, 2}
    np.testing.assert_array_equal(m.test_labels, (test.labels == 3).astype(int))


def test_cap_is_stratified_and_seeded(toy):
    train, test = toy
    m = leave_one_out(train, test, 3, max_train=60, seed=1)
    counts = np.bincount(m.train[:, 0, 0, 0], minlength=3)
    assert len(m.train) == 60 and counts.min() >= 15
    idx = cap_per_class(train.labels, 40, seed=5)
    np.testing.assert_array_equal(idx, cap_per_class(train.labels, 40, seed=5))
    assert len(idx) == 40 and len(np.unique(train.labels[idx])) == 4


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_outlier_fraction(toy, fraction):
    train, test = toy
    s = outlier_fraction(train, test, 0, fraction, seed=2)
    assert abs(s.test_labels.mean() - fraction) < 0.03
    assert (s.test_labels == 0).sum() == (test.labels == 0).sum()
    np.testing.assert_array_equal(s.test, outlier_fraction(train, test, 0, fraction, seed=2).test)


def test_errors(toy):
    train, test = toy
    with pytest.raises(KeyError, match="class 7 does not exist"):
        one_class(train, test, 7)
    with pytest.raises(KeyError, match="'zebra' not in"):
        one_class(train, test, "zebra")
    with pytest.raises(ValueError, match="fraction"):
        outlier_fraction(train, test, 0, 1.5)
    with pytest.raises(KeyError, match="unknown protocol"):
        next(make_splits("nope", train, test))
    empty = ImageSet(train.images, np.where(train.labels == 2, 0, train.labels), train.class_names, name="toy")
    with pytest.raises(ValueError, match="has no images"):
        one_class(empty, test, 2)


def test_make_splits_covers_every_class(toy):
    train, test = toy
    tasks = [t for t, _ in make_splits("one-class", train, test)]
    assert tasks == [0, 1, 2, 3]
    fr = [s for _, s in make_splits("outlier-fraction", train, test, [0], fraction=0.2)]
    assert abs(fr[0].test_labels.mean() - 0.2) < 0.03
