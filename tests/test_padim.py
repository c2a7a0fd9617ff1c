"""PaDiM: exact streaming statistics, localisation on a generated MVTec layout, AUROC floor, persistence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab

from test_patchcore import check_fashion_mnist_floor, check_localises


def test_statistics_match_numpy_and_do_not_depend_on_batches(digits_split):
    a = noveltylab.create("padim", profile="test", device="cpu", batch_size=7).fit(digits_split.train)
    b = noveltylab.create("padim", profile="test", device="cpu", batch_size=1000).fit(digits_split.train)
    torch.testing.assert_close(a.mean_, b.mean_, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.inv_cov_, b.inv_cov_, rtol=1e-4, atol=1e-4)
    # the Gaussian at one position equals numpy's mean / covariance of the same vectors
    x = torch.from_numpy(np.asarray(digits_split.train, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        e = a._embed(a.net_(x)).numpy()  # (N, P, d)
    p = 1
    np.testing.assert_allclose(a.mean_[p].numpy(), e[:, p].mean(0), rtol=1e-4, atol=1e-5)
    cov = np.cov(e[:, p], rowvar=False) + 0.01 * np.eye(e.shape[2])
    np.testing.assert_allclose(a.inv_cov_[p].numpy(), np.linalg.inv(cov), rtol=1e-3, atol=1e-3)
    assert sorted(a.channels_.tolist()) == sorted(set(a.channels_.tolist()))  # distinct random channels


def test_bad_parameters(digits_split):
    with pytest.raises(ValueError, match="n_features=999 exceeds"):
        noveltylab.create("padim", profile="test", n_features=999).fit(digits_split.train)
    with pytest.raises(ValueError, match="eps must be > 0"):
        noveltylab.create("padim", profile="test", eps=0).fit(digits_split.train)


def test_localises_generated_defects(tmp_path):
    check_localises("padim", tmp_path)


def test_fashion_mnist_auroc_floor(shared_data):
    check_fashion_mnist_floor("padim", shared_data, 0.9)


def test_save_load_round_trip_maps(digits_split, tmp_path):
    det = noveltylab.create("padim", profile="test", device="cpu").fit(digits_split.train)
    det.save(tmp_path / "m")
    back = noveltylab.load(tmp_path / "m")
    np.testing.assert_allclose(back.anomaly_map(digits_split.test[:5]), det.anomaly_map(digits_split.test[:5]),
                               rtol=1e-6, atol=1e-6)
