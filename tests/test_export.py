"""`noveltylab export --format onnx`: onnxruntime scores equal torch's (issue 15 point 6)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the [export] extra is not installed")
pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")

import noveltylab  # noqa: E402
from noveltylab.cli import main  # noqa: E402
from noveltylab.export import EXPORTERS, NOT_EXPORTABLE, ExportError, OnnxScorer, export_onnx, export_reason  # noqa: E402
from noveltylab.images import as_images  # noqa: E402
from noveltylab.nets.weights import default_weights_dir  # noqa: E402

TOL = 1e-4


def _pretrained() -> dict:
    """Real MobileNetV2 weights for the backbone methods (random ones give ~1e-17 features: no test)."""
    wdir = default_weights_dir()
    if wdir is None or not (wdir / "mobilenet_v2_imagenet" / "mobilenet_v2_imagenet.safetensors").is_file():
        pytest.skip("MobileNetV2 ImageNet weights not found ($NOVELTYLAB_WEIGHTS_DIR or ../shared/weights)")
    return {"weights": "auto"}


CASES = {"cae-re": dict, "deep-svdd": dict, "dn2": _pretrained, "fitymi": _pretrained}


def test_every_method_is_either_exportable_or_has_a_reason():
    for name in noveltylab.available():
        why = export_reason(name)
        assert (why is None) == (name in EXPORTERS) and (why is None or len(why) > 20)
    assert set(EXPORTERS) <= set(noveltylab.available())
    assert not set(EXPORTERS) & set(NOT_EXPORTABLE)
    assert export_reason("cae-ocsvm").startswith("the score is a scikit-learn one-class SVM")
    assert set(CASES) == set(EXPORTERS)  # each exporter is checked below


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnxruntime_scores_equal_torch_on_100_images(name, digits, tmp_path):
    train, test = digits
    det = noveltylab.create(name, profile="test", **CASES[name]())
    det.fit(train.images[train.labels == 0])
    x = as_images(test.images[:100])
    meta = export_onnx(det, tmp_path / "m.onnx")
    assert meta["kind"] == EXPORTERS[name][0] and meta["input_shape"] == [1, 8, 8]
    scorer = OnnxScorer(tmp_path / "m.onnx", det, threads=1)
    torch_scores = det.score(x)
    onnx_scores = scorer.score(x)
    assert onnx_scores.shape == (100,)
    assert np.all(np.abs(onnx_scores - torch_scores) <= TOL * np.maximum(1.0, np.abs(torch_scores)))
    assert np.ptp(torch_scores) > 1e-3 * np.abs(torch_scores).max()  # the scores differ: a real comparison
    if meta["kind"] == "features":
        feats = det.net_.embed(x).detach().numpy()
        assert np.abs(scorer.run(x) - feats).max() <= TOL * max(1.0, float(np.abs(feats).max()))


def test_cli_export_and_refusal(digits, tmp_path, capsys):
    train, _ = digits
    det = noveltylab.create("cae-re", profile="test").fit(train.images[train.labels == 0])
    model = det.save(tmp_path / "cae")
    assert main(["export", str(model), "--format", "onnx", "-o", str(tmp_path / "cae.onnx")]) == 0
    assert "images -> scores" in capsys.readouterr().out
    assert OnnxScorer(tmp_path / "cae.onnx").meta["method"] == "cae-re"  # score graphs need no model folder

    raw = noveltylab.create("raw-nn").fit(train.images[train.labels == 0]).save(tmp_path / "raw")
    assert main(["export", str(raw)]) == 2
    assert capsys.readouterr().err.strip() == ("error: method 'raw-nn' cannot be exported to ONNX: no network: the "
                                               "score is a kNN distance on raw pixels (the FAISS index in the "
                                               "model folder)")
    assert main(["export", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "cae-re               exports" in listing and "raw-nn               cannot be exported: no network" in listing


def test_features_graph_needs_the_model_folder(digits, tmp_path):
    train, _ = digits
    det = noveltylab.create("dn2", profile="test").fit(train.images[train.labels == 0][:20])
    export_onnx(det, tmp_path / "f.onnx")
    with pytest.raises(ExportError, match="outputs features; pass the model folder for its kNN index"):
        OnnxScorer(tmp_path / "f.onnx")


@pytest.mark.parametrize("name", ["cae-re", "deep-svdd"])
def test_padding_to_a_multiple_of_8_survives_export(name, tmp_path):
    """28x28 inputs are zero-padded to 32x32 inside the graph; ONNX's truncating integer division
    once made the exported graph crop to 24x24 instead (scores off by up to 20x on MNIST)."""
    x = (np.random.default_rng(0).random((100, 28, 28)) * 255).astype(np.uint8)
    det = noveltylab.create(name, profile="test").fit(x[:60])
    export_onnx(det, tmp_path / "m.onnx")
    want = det.score(x)
    got = OnnxScorer(tmp_path / "m.onnx", threads=1).score(as_images(x))
    assert np.all(np.abs(got - want) <= TOL * np.maximum(1.0, np.abs(want)))
