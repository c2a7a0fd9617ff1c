"""UNODE's auxiliary (mixup) images: named per data set, loaded by name (also from a spec's params),
reported in the diagnostics, never the normal data set itself."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import noveltylab
from noveltylab.data import DATASETS, load_dataset
from noveltylab.methods.unode import AUXILIARY_FOR

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _digits(c: int = 0) -> np.ndarray:
    tr = load_dataset("digits", "train")
    return tr.images[tr.labels == c]


def test_auxiliary_sets_are_other_registered_data_sets() -> None:
    for normal, aux in AUXILIARY_FOR.items():
        assert aux != normal and aux in DATASETS and normal in DATASETS
    assert AUXILIARY_FOR["cifar10-jpeg"] == "fashion-mnist" and AUXILIARY_FOR["mnist"] == "fashion-mnist"


def test_aux_dataset_by_name_turns_mixup_on_and_is_reported() -> None:
    det = noveltylab.create("unode", profile="test", aug_weights="uniform", aux_dataset="digits", aux_max=50)
    det.fit(_digits(0))
    assert "mixup" in det.weights_ and det.weights_["mixup"] > 0
    d = det.diagnostics()
    assert d["aux_source"] == "digits:train" and d["aux_images"] == 50
    plain = noveltylab.create("unode", profile="test", aug_weights="uniform").fit(_digits(0))
    assert "mixup" not in plain.weights_ and plain.diagnostics()["aux_images"] == 0


def test_set_auxiliary_is_reported() -> None:
    aux = np.random.default_rng(0).integers(0, 255, (30, 20, 20, 3), dtype=np.uint8)
    det = noveltylab.create("unode", profile="test", aug_weights="uniform", aux_max=10).set_auxiliary(aux)
    det.fit(_digits(1))
    assert det.diagnostics()["aux_source"] == "set_auxiliary" and det.diagnostics()["aux_images"] == 10


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir() or not (SHARED / "mnist").is_dir(),
                    reason="needs ../shared/data (mnist, fashion-mnist)")
def test_spec_params_reach_the_auxiliary_set_through_the_bench(tmp_path) -> None:
    from noveltylab.bench.runner import run_benchmark

    rec = run_benchmark("unode", "mnist", "one-class", classes=[0], profile="test",
                        params={"aug_weights": "uniform", "aux_dataset": AUXILIARY_FOR["mnist"],
                                "aux_data_dir": str(SHARED), "aux_max": 200},
                        max_train=200, data_dir=SHARED, out_dir=tmp_path, progress=False, allow_dirty=True,
                        threads=1)
    assert rec["config"]["aux_dataset"] == "fashion-mnist" and rec["config"]["aux_data_dir"] == str(SHARED)
    assert 0.0 <= rec["mean"]["auroc"] <= 1.0
