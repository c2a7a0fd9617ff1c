"""Issue 17 items 5, 7, 9 (persistence): overwrite protection, atomic saves, config types and
ranges, stored tensors checked against the config, bounded FAISS reads, bad weights files."""
from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch

import noveltylab
from noveltylab.detector import ModelFileError
from noveltylab.knn import KNNIndex, read_index_bounded

from hardening_util import forge


@pytest.fixture()
def saved(tmp_path):
    x = np.random.default_rng(0).random((10, 8, 8)).astype(np.float32)
    det = noveltylab.create("raw-nn", device="cpu").fit(x)
    det.calibrate(x[:5], fpr=0.2)
    return det, det.save(tmp_path / "m"), x


# --- item 5: overwrite --------------------------------------------------------------------------
def test_save_refuses_unrelated_config_json(tmp_path, saved):
    det, _, _ = saved
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"learning_rate": 3}')
    with pytest.raises(ModelFileError) as err:
        det.save(tmp_path / "other")
    assert str(err.value).endswith("already holds a config.json or weights file that is not this method's "
                                   "model; choose another folder or pass overwrite=True (CLI: --overwrite) "
                                   "to replace it")
    assert json.loads((tmp_path / "other" / "config.json").read_text()) == {"learning_rate": 3}
    det.save(tmp_path / "other", overwrite=True)
    assert noveltylab.load(tmp_path / "other").name == "raw-nn"


def test_save_refuses_another_methods_model(tmp_path, saved):
    _, path, x = saved
    other = noveltylab.create("cae-re", profile="test", device="cpu") if "test" in \
        noveltylab.get_class("cae-re").profiles else noveltylab.create("cae-re", epochs=1, device="cpu")
    other.fit(x)
    with pytest.raises(ModelFileError, match="already holds a saved 'raw-nn' model"):
        other.save(path)
    assert noveltylab.load(path).name == "raw-nn"


def test_resaving_the_same_method_is_allowed_and_atomic(saved):
    det, path, x = saved
    det.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    np.testing.assert_allclose(noveltylab.load(path).score(x), det.score(x))


def test_save_below_a_regular_file(tmp_path, saved):
    det, _, _ = saved
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelFileError, match=r"cannot write model folder .*file\.txt/m: .*file\.txt is a file"):
        det.save(tmp_path / "file.txt" / "m")


# --- item 7: stored tensors vs config --------------------------------------------------------------
def test_forged_input_shape_is_refused(saved):
    _, path, _ = saved
    forge(path, lambda cfg: cfg.update(input_shape=[1, 16, 16]))
    with pytest.raises(ModelFileError, match="saved model does not fit method 'raw-nn'"):
        noveltylab.load(path)


@pytest.mark.parametrize("field, value, message", [
    ("input_shape", [1, -8, 8], "field 'input_shape' must be [C, H, W] with C 1 or 3"),
    ("input_shape", [5, 8, 8], "field 'input_shape' must be [C, H, W] with C 1 or 3"),
    ("input_shape", "8x8", "field 'input_shape' must be [C, H, W]"),
    ("threshold", "high", "field 'threshold' must be a finite number or null"),
    ("method", 5, "field 'method' must be a method name"),
    ("params", [1], "field 'params' must be an object of constructor arguments"),
    ("meta", 3, "field 'meta' must be an object"),
])
def test_config_types_and_ranges(saved, field, value, message):
    _, path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg[field] = value
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError) as err:
        noveltylab.load(path)
    assert message in str(err.value)


@pytest.mark.parametrize("text, message", [
    ('{"threshold": 1e999999, ', "not valid JSON"),
    ('{"format": "noveltylab-model", "threshold": NaN}', "non-standard JSON constant NaN"),
    ('{"n": ' + "9" * 5000 + "}", "not valid JSON"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ("\xff\xfe garbage", "codec can't decode byte 0xff"),
])
def test_hostile_config_json(saved, text, message):
    _, path, _ = saved
    (path / "config.json").write_text(text, encoding="latin1")
    with pytest.raises(ModelFileError) as err:
        noveltylab.load(path)
    assert "is not a valid model config (corrupted or modified)" in str(err.value) and message in str(err.value)


def test_infinite_threshold_is_refused(saved):
    _, path, _ = saved
    text = (path / "config.json").read_text()
    cfg = json.loads(text)
    text = text.replace(f'"threshold": {json.dumps(cfg["threshold"])}', '"threshold": 1e999')
    (path / "config.json").write_text(text)
    with pytest.raises(ModelFileError, match="field 'threshold' must be a finite number or null"):
        noveltylab.load(path)


def test_checksum_message_says_corruption_not_tampering(saved):
    _, path, _ = saved
    w = path / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelFileError) as err:
        noveltylab.load(path)
    assert "was modified or corrupted" in str(err.value) and "tamper" not in str(err.value)


# --- item 9: FAISS blobs -----------------------------------------------------------------------------
def test_faiss_length_field_larger_than_blob_is_refused_before_allocation():
    idx = KNNIndex("Flat", gpu=False).fit(np.random.default_rng(0).random((3, 4)).astype(np.float32))
    blob = bytes(idx.to_bytes())
    forged = np.frombuffer(blob[:37] + struct.pack("<Q", 64 * 2 ** 20) + blob[45:], np.uint8)
    with pytest.raises(ValueError, match=r"a length field at byte 37 claims 67108864 elements but the blob "
                                         r"has only 93 bytes"):
        read_index_bounded(forged)


@pytest.mark.parametrize("factory", ["Flat", "PQ8x4", "PQ8x4fs", "IVF4,Flat", "HNSW8"])
def test_bounded_reader_reads_every_index_kind(factory):
    v = np.random.default_rng(0).random((300, 32)).astype(np.float32)
    idx = KNNIndex(factory, gpu=False).fit(v)
    back = read_index_bounded(idx.to_bytes())
    assert back.ntotal == 300 and back.d == 32


def test_forged_faiss_blob_in_model_is_model_file_error(saved):
    _, path, _ = saved

    def grow(state):
        blob = state["knn.index"].numpy().tobytes()
        state["knn.index"] = torch.frombuffer(bytearray(blob[:37] + struct.pack("<Q", 2 ** 26) + blob[45:]),
                                              dtype=torch.uint8)
    forge(path, edit_state=grow)
    with pytest.raises(ModelFileError, match="corrupt FAISS index data: a length field"):
        noveltylab.load(path)


def test_truncated_faiss_blob_is_model_file_error(saved):
    _, path, _ = saved
    forge(path, edit_state=lambda st: st.update({"knn.index": st["knn.index"][:50].clone()}))
    with pytest.raises(ModelFileError, match="corrupt FAISS index data"):
        noveltylab.load(path)


# --- backbone weights files: missing, text, pickle ------------------------------------------------------
def test_backbone_weights_missing_text_or_pickle(tmp_path):
    from noveltylab.nets.mobilenet import load_state_file

    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_state_file(tmp_path / "absent.safetensors")
    (tmp_path / "t.safetensors").write_text("hello, not weights")
    with pytest.raises(ValueError, match=r"t\.safetensors is not a readable \.safetensors file"):
        load_state_file(tmp_path / "t.safetensors")
    (tmp_path / "t.pt").write_text("hello, not weights")
    with pytest.raises(ValueError, match=r"t\.pt is not a tensor dict that loads without unpickling objects"):
        load_state_file(tmp_path / "t.pt")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": Exception("boom")}, f)
    with pytest.raises(ValueError, match=r"evil\.pt is not a tensor dict that loads without unpickling"):
        load_state_file(tmp_path / "evil.pt")


def test_dn2_with_text_weights_fails_cleanly(tmp_path):
    (tmp_path / "w.safetensors").write_text("not weights")
    det = noveltylab.create("dn2", weights=str(tmp_path / "w.safetensors"), input_size=32, device="cpu")
    with pytest.raises(ValueError, match="is not a readable .safetensors file"):
        det.fit(np.random.default_rng(0).random((4, 3, 32, 32)).astype(np.float32))
