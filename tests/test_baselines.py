"""AUROC floors for the two foundation baselines on real MNIST subsets."""
from __future__ import annotations

import numpy as np
import pytest

import noveltylab
from noveltylab.data import load_dataset, one_class
from noveltylab.metrics import auroc


@pytest.fixture(scope="module")
def mnist_split(shared_data):
    train = load_dataset("mnist", "train", data_dir=shared_data)
    test = load_dataset("mnist", "test", data_dir=shared_data)
    split = one_class(train, test.subset(np.arange(0, 10000, 5)), 0, max_train=1500, seed=0)
    return split


@pytest.mark.parametrize("index", ["Flat", "PQ32x4fs"])
def test_raw_nn_floor(mnist_split, index):
    det = noveltylab.create("raw-nn", index=index).fit(mnist_split.train)
    assert auroc(mnist_split.test_labels, det.score(mnist_split.test)) > 0.97


def test_raw_nn_pq_is_compact(mnist_split):
    det = noveltylab.create("raw-nn", index="PQ32x4fs").fit(mnist_split.train)
    assert det.index_.bytes_per_vector == 16  # 32 sub-quantizers x 4 bits, vs 4096 bytes exact


def test_cae_re_floor(shared_data):
    # Digit 1 as normal: reconstruction error ranks by ink, so it is meaningful when the normal
    # class has little ink (on digit 0 the same model scores below chance, see RESULTS.md).
    train = load_dataset("mnist", "train", data_dir=shared_data)
    test = load_dataset("mnist", "test", data_dir=shared_data).subset(np.arange(0, 10000, 5))
    split = one_class(train, test, 1, max_train=1500, seed=0)
    det = noveltylab.create("cae-re", epochs=3, device="cpu").fit(split.train, val=split.val)
    assert det.history_.epochs[-1]["mse"] < det.history_.epochs[0]["mse"]
    assert "val_mse" in det.history_.epochs[-1]
    assert auroc(split.test_labels, det.score(split.test)) > 0.9
