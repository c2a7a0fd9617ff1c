"""HTTP service for a saved model (FastAPI + uvicorn; ``pip install noveltylab[serve]``).

Endpoints:

* ``GET /health``: ``{"status": "ok", "method", "localises", "threshold", "input_shape"}``;
* ``POST /score``: one image, either as the raw request body (any
  ``Content-Type`` but multipart) or as a multipart form field named ``file``
  (``curl -F file=@img.png``). Answer: ``{"score", "p_value", "decision",
  "novel", "threshold", "heatmap_png"}``; ``heatmap_png`` is a base64 PNG of
  the anomaly map over the image for localising methods (``?heatmap=false``
  leaves it out), else ``null``. ``p_value`` is the conformal p-value against
  the model's calibration scores when it has them, else ``null``;
  ``decision`` is ``"novel"`` / ``"normal"`` at the model's threshold, or
  ``null`` when the model was never calibrated.

Bodies larger than ``max_bytes`` get 413 before they are read in full; an
empty body, a missing ``file`` field or bytes that are no image get 400, an
image the model cannot take (e.g. wrong size for a model without an input
transform) 422; each with ``{"detail": "<what is wrong>"}``. Scoring is
serialised with a lock (one model, CPU threads are the limit anyway).
"""
# no ``from __future__ import annotations``: FastAPI reads the endpoint annotations at runtime
import base64
import threading
from typing import Any

import numpy as np

from .detector import Detector, NotFittedError

DEFAULT_MAX_BYTES = 20 * 2 ** 20


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _p_value(det: Detector, x: np.ndarray) -> float | None:
    """Conformal p-value when the detector offers one and has calibration scores, else None."""
    fn = getattr(det, "p_value", None)
    if fn is None:
        return None
    try:
        return float(np.asarray(fn(x)).reshape(-1)[0])
    except (NotFittedError, ValueError, AttributeError, TypeError):
        return None


def score_image(det: Detector, data: bytes, heatmap: bool = True, source: str = "request body") -> dict[str, Any]:
    """Score one encoded image (PNG, JPEG, ...) and return the service's JSON answer."""
    from .data.formats import DataFormatError, decode_image
    from .images import ImageError
    from .overlay import overlay_png

    if not data:
        raise _BadRequest(400, "empty request: send the image bytes as the body or as multipart field 'file'")
    try:
        img = decode_image(data, source)
    except DataFormatError as exc:
        raise _BadRequest(400, f"not a readable image: {exc}") from None
    x = img[None].copy()  # decoded arrays can be read-only; torch wants a writable one
    try:
        s = float(det.score(x)[0])
        amap = det.anomaly_map(x)[0] if (heatmap and det.localises) else None
    except ImageError as exc:
        raise _BadRequest(422, f"image cannot be scored by this model: {exc}") from None
    thr = det.threshold_
    return {"score": s, "p_value": _p_value(det, x), "threshold": thr,
            "decision": None if thr is None else ("novel" if s > thr else "normal"),
            "novel": None if thr is None else bool(s > thr),
            "heatmap_png": None if amap is None else base64.b64encode(overlay_png(img, amap)).decode("ascii")}


async def _read_limited(request: Any, max_bytes: int) -> bytes:
    """The request body, refusing (413) anything over ``max_bytes`` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _BadRequest(413, f"request body of {int(declared)} bytes exceeds the limit of {max_bytes} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise _BadRequest(413, f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_bytes(request: Any, body: bytes) -> tuple[bytes, str]:
    """The image inside ``body``: the multipart field ``file`` or the body itself."""
    from starlette.requests import Request

    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return body, "request body"
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception as exc:  # malformed multipart: python-multipart raises several types
        raise _BadRequest(400, f"malformed multipart body: {exc}") from None
    field = form.get("file")
    if field is None or isinstance(field, str):
        raise _BadRequest(400, "multipart request has no file field named 'file' (curl -F file=@image.png)")
    return await field.read(), f"uploaded file {field.filename or 'file'}"


def create_app(det: Detector, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The FastAPI application serving ``det``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    det._check_fitted()
    lock = threading.Lock()
    app = FastAPI(title="noveltylab", description=f"novelty scores from a {det.name} model")

    @app.exception_handler(_BadRequest)
    async def _bad(_: Request, exc: _BadRequest) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "method": det.name, "localises": bool(det.localises),
                "threshold": det.threshold_, "input_shape": list(det.input_shape_)}

    @app.post("/score")
    async def score(request: Request, heatmap: bool = True) -> dict[str, Any]:
        body = await _read_limited(request, max_bytes)
        data, source = await _image_bytes(request, body)

        def work() -> dict[str, Any]:
            with lock:
                return score_image(det, data, heatmap=heatmap, source=source)

        return await run_in_threadpool(work)

    return app


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, max_bytes: int = DEFAULT_MAX_BYTES,
          device: str | None = None) -> None:
    """Load the model in ``model_dir`` and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("error: the service needs the [serve] extra: pip install 'noveltylab[serve]'") from None
    from .detector import load

    det = load(model_dir)
    if device:
        det.device = device
    app = create_app(det, max_bytes=max_bytes)
    print(f"serving {det.name} model {model_dir} on http://{host}:{port} (POST /score, GET /health)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
