"""PatchCore: coreset, re-weighting, localisation on a generated MVTec layout, AUROC floor, persistence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab import metrics
from noveltylab.methods.patchcore import greedy_coreset
from noveltylab.nets.weights import default_weights_dir

from test_nln import _load_layout, make_mvtec_layout


def _weights_or_skip() -> str:
    wdir = default_weights_dir()
    path = None if wdir is None else wdir / "mobilenet_v2_imagenet" / "mobilenet_v2_imagenet.safetensors"
    if path is None or not path.is_file():
        pytest.skip("shared MobileNetV2 weights not found")
    return str(path)


def test_greedy_coreset_covers_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (5, 8))
    x = torch.from_numpy(np.concatenate([c + rng.normal(0, 0.1, (200, 8)) for c in centres])).float()
    idx = greedy_coreset(x, 5, None, seed=0)
    assert len(set(idx.tolist())) == 5
    assert sorted(set(i // 200 for i in idx.tolist())) == [0, 1, 2, 3, 4]  # one point per cluster
    np.testing.assert_array_equal(idx, greedy_coreset(x, 5, None, seed=0))
    assert len(greedy_coreset(x, 7, 4, seed=1)) == 7  # through a random projection


def test_bad_parameters_fail_before_work(digits_split):
    for kw, msg in [({"coreset_ratio": 0.0}, "coreset_ratio"), ({"patch_size": 2}, "patch_size"),
                    ({"reweight": "code"}, "reweight"), ({"layers": [6, 40]}, "block indices"),
                    ({"backbone": "vgg"}, "unknown backbone")]:
        det = noveltylab.create("patchcore", profile="test", **kw)
        with pytest.raises(ValueError, match=msg):
            det.fit(digits_split.train)


def test_reweighting_and_pq_bank(digits_split):
    kw = dict(profile="test", device="cpu")
    plain = noveltylab.create("patchcore", reweight="none", **kw).fit(digits_split.train)
    paper = noveltylab.create("patchcore", **kw).fit(digits_split.train)
    s_plain, s_paper = plain.score(digits_split.test), paper.score(digits_split.test)
    assert np.all(s_paper <= s_plain + 1e-9) and np.all(s_paper >= 0)  # weight in [0, 1]
    assert not np.allclose(s_paper, s_plain)
    assert plain.bytes_per_patch_ == 4 * plain.index_.dim
    pq = noveltylab.create("patchcore", index="PQ16x4fs", **kw).fit(digits_split.train)
    assert pq.bytes_per_patch_ == 8 and pq.bank_size_ == plain.bank_size_
    assert metrics.auroc(digits_split.test_labels, pq.score(digits_split.test)) > 0.8
    maps = pq.anomaly_map(digits_split.test[:4])
    assert maps.shape == (4, 8, 8) and np.all(np.isfinite(maps))
    # the same coreset moved into a PQ index without refitting
    plain.reindex("PQ16x4fs")
    assert plain.index == "PQ16x4fs" and plain.bytes_per_patch_ == 8 and plain.bank_size_ == pq.bank_size_
    assert metrics.auroc(digits_split.test_labels, plain.score(digits_split.test)) > 0.8


def check_localises(method: str, tmp_path, **params) -> None:
    """``method`` (cpu profile, shared weights) localises the generated MVTec-layout defects."""
    weights = _weights_or_skip()
    root = make_mvtec_layout(tmp_path / "synthetic")
    train, test = _load_layout(root)
    det = noveltylab.create(method, profile="cpu", weights=weights, device="cpu", **params).fit(train.images)
    maps = det.anomaly_map(test.images)
    assert maps.shape == (len(test.images), 64, 64)
    pix = metrics.pixel_summary(test.masks, maps)
    assert pix["pixel_auroc"] > 0.9 and pix["pro"] > 0.6, pix
    labels = (test.labels != 0).astype(int)
    assert metrics.auroc(labels, det.score(test.images)) > 0.9


def check_fashion_mnist_floor(method: str, shared_data, floor: float) -> None:
    """Trouser (class 1) normal, 100 training images, 300 test images, 112 px (measured 0.99 for both)."""
    from noveltylab.data import load_dataset, one_class

    weights = _weights_or_skip()
    train = load_dataset("fashion-mnist", "train", data_dir=shared_data)
    test = load_dataset("fashion-mnist", "test", data_dir=shared_data)
    split = one_class(train, test, 1, max_train=100)
    idx = np.random.default_rng(0).choice(len(split.test), 300, replace=False)
    det = noveltylab.create(method, profile="cpu", weights=weights, device="cpu", input_size=112).fit(split.train)
    assert metrics.auroc(split.test_labels[idx], det.score(split.test[idx])) > floor


def test_localises_generated_defects(tmp_path):
    check_localises("patchcore", tmp_path, coreset_ratio=0.1)


def test_fashion_mnist_auroc_floor(shared_data):
    check_fashion_mnist_floor("patchcore", shared_data, 0.9)


def test_save_load_keeps_maps(digits_split, tmp_path):
    det = noveltylab.create("patchcore", profile="test", device="cpu", index="PQ16x4fs").fit(digits_split.train)
    det.save(tmp_path / "m")
    back = noveltylab.load(tmp_path / "m")
    np.testing.assert_allclose(back.anomaly_map(digits_split.test[:5]), det.anomaly_map(digits_split.test[:5]),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back.bank_nn_, det.bank_nn_)
