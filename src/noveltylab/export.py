"""ONNX export of the network part of a fitted detector (``pip install noveltylab[export]``).

Two kinds of export:

* ``score``: the whole score is a network computation (``cae-re``: padding,
  autoencoder, mean squared error; ``deep-svdd``: network distance to the
  centre). The ONNX graph maps images to scores.
* ``features``: the network is a feature extractor and the score is a kNN
  distance to the training features (``dn2``, ``fitymi``). The ONNX graph
  maps images to features; the kNN search stays outside ONNX, in the FAISS
  index stored in the model folder (:class:`OnnxScorer` does both).

The graph input ``images`` is float32 ``(N, C, H, W)`` in ``[0, 1]`` at the
model's input shape (after the model's input transform); the batch axis is
dynamic. The graph's metadata records the method, kind, input shape,
threshold and the kNN settings. Methods not in :data:`EXPORTERS` are listed in
:data:`NOT_EXPORTABLE` with the reason.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .detector import Detector, json_default
from .images import pad_to_multiple

OPSET = 17


class _Graph(nn.Module):
    """``fn(x)`` as a module; ``parts`` registers the networks ``fn`` uses so their weights are exported."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], **parts: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleDict(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _cae_re(det: Any) -> _Graph:
    def fn(x: torch.Tensor) -> torch.Tensor:
        xp = pad_to_multiple(x, det._multiple)
        return (det.net_(xp) - xp).pow(2).flatten(1).mean(1)
    return _Graph(fn, net=det.net_)


def _deep_svdd(det: Any) -> _Graph:
    return _Graph(lambda x: (det.phi_(det._transform(x)) - det.center_).pow(2).sum(1), phi=det.phi_)


def _backbone(det: Any) -> _Graph:
    return _Graph(det.net_.embed, net=det.net_)


# method name -> (kind, builder of the module to export)
EXPORTERS: dict[str, tuple[str, Callable[[Any], _Graph]]] = {
    "cae-re": ("score", _cae_re),
    "deep-svdd": ("score", _deep_svdd),
    "dn2": ("features", _backbone),
    "fitymi": ("features", _backbone),
}

_NLN = ("the score searches the training latents for nearest neighbours and decodes them again (a network run "
        "on the search result), then min-max normalises; the network cannot be cut into one graph")
NOT_EXPORTABLE: dict[str, str] = {
    "raw-nn": "no network: the score is a kNN distance on raw pixels (the FAISS index in the model folder)",
    "cae-ocsvm": "the score is a scikit-learn one-class SVM on the autoencoder code (no ONNX op for it here)",
    "cae-nn": "not implemented yet: the encoder could be exported with the kNN (or reconstruction) outside",
    "inception-cae": "not implemented yet: the encoder could be exported with the PQ kNN search outside",
    "dsebm": "not implemented yet: the energy needs the input gradient of the network at scoring time",
    "connective": "not implemented yet: two networks (denoising AE and classifier) and a blur in the score",
    "unode": "not implemented yet: the score mixes a kNN cosine similarity on features with a classifier head",
    "patchcore": "not implemented yet: the multi-block patch-feature extractor could be exported, with the "
                 "memory-bank nearest-neighbour search outside",
    "padim": "not implemented yet: the patch-feature extractor could be exported, with the per-position "
             "Mahalanobis distance outside",
    "panda": "not implemented yet: fine-tuned backbone features + kNN, exportable like dn2",
    "msad": "not implemented yet: fine-tuned backbone features + cosine kNN, exportable like dn2",
    "gt": "not implemented yet: the score sums the classifier's log-probabilities over geometric transforms "
          "of each image",
    "mhrot": "not implemented yet: the score sums the classifier's log-probabilities over geometric transforms "
             "of each image",
    **{f"nln-{f}{p}": _NLN for f in ("ae", "aae", "vae", "aeres", "aecon") for p in ("", "-patch")},
}


class ExportError(ValueError):
    """Raised when a detector cannot be exported (the message says why)."""


def export_reason(name: str) -> str | None:
    """None when method ``name`` exports, else why not."""
    if name in EXPORTERS:
        return None
    return NOT_EXPORTABLE.get(name, "no ONNX exporter is registered for this method")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the [export] extra: pip install 'noveltylab[export]'") from None


def export_onnx(det: Detector, output: str | os.PathLike, opset: int = OPSET) -> dict[str, Any]:
    """Write ``det``'s network part to ``output`` (.onnx); return the metadata stored in the graph."""
    import onnx

    _require_onnx()
    det._check_fitted()
    reason = export_reason(det.name)
    if reason is not None:
        raise ExportError(f"method {det.name!r} cannot be exported to ONNX: {reason}")
    kind, build = EXPORTERS[det.name]
    graph = build(det).cpu().eval()
    x = torch.rand(2, *det.input_shape_, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(graph, (x,), buf, dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=[kind], dynamic_axes={"images": {0: "n"}, kind: {0: "n"}})
    model = onnx.load_from_string(buf.getvalue())
    meta = {"method": det.name, "kind": kind, "input_shape": list(det.input_shape_),
            "threshold": det.threshold_, "input": "float32 (N, C, H, W) in [0, 1]",
            "knn": {"k": getattr(det, "k", None), "agg": getattr(det, "agg", None)} if kind == "features" else None}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=json.dumps(v, default=json_default))
    onnx.checker.check_model(model)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return meta


class OnnxScorer:
    """Scores with an exported graph in onnxruntime; for ``features`` graphs the kNN
    search uses the index of the saved model ``model_dir`` (or a loaded detector)."""

    def __init__(self, onnx_path: str | os.PathLike, model: Detector | str | os.PathLike | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        _require_onnx()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = {k: json.loads(v) for k, v in props.items()}
        if "kind" not in self.meta:
            raise ExportError(f"{onnx_path} was not written by noveltylab export (no 'kind' metadata)")
        self.det = None
        if self.meta["kind"] == "features":
            if model is None:
                raise ExportError(f"{onnx_path} outputs features; pass the model folder for its kNN index")
            from .detector import load

            self.det = model if isinstance(model, Detector) else load(model)

    def run(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """The graph's raw output for float32 ``(N, C, H, W)`` images in [0, 1]."""
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        return self.session.run(None, {"images": arr})[0]

    def score(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Novelty scores (float64) for float32 ``(N, C, H, W)`` images in [0, 1]."""
        out = self.run(x)
        if self.meta["kind"] == "score":
            return out.astype(np.float64).reshape(-1)
        knn = self.meta["knn"]
        return np.asarray(self.det.index_.score(out, k=knn["k"], agg=knn["agg"]), dtype=np.float64)  # type: ignore[union-attr]
