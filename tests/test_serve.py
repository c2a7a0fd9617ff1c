"""`noveltylab serve`: a real server process on localhost (issue 15 point 6)."""
from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
httpx = pytest.importorskip("httpx", reason="the [serve] extra is not installed")

import noveltylab  # noqa: E402
from noveltylab.images import read_image  # noqa: E402

from eval_fixtures import class_folders, fit_localiser, mvtec_folder  # noqa: E402

MAX_BYTES = 50_000
PNG = b"\x89PNG\r\n\x1a\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``noveltylab serve`` in a subprocess; stopped (by its own pid) when the fixture ends."""

    def __init__(self, model: Path, max_bytes: int = MAX_BYTES) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "noveltylab.cli", "serve", str(model), "--port", str(self.port),
             "--max-bytes", str(max_bytes)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(600):  # wait for /health (startup imports torch; not a timing assertion)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not answer /health")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def localiser(tmp_path_factory):
    root = mvtec_folder(tmp_path_factory.mktemp("mv"), n_train=60, n_good=4, n_bad=4)
    det = fit_localiser(root / "train" / "good")
    server = Server(det.save(root.parent / "model"))
    yield server, det, root
    server.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    class_folders(root)
    det = noveltylab.create("raw-nn").fit(root / "train" / "good")
    server = Server(det.save(root / "model"))
    yield server, det, root
    server.stop()


def test_health(localiser):
    server, det, _ = localiser
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "method": "nln-ae-patch", "localises": True, "threshold": det.threshold_,
                        "input_shape": [1, 32, 32]}


def test_score_raw_body_and_multipart_agree_with_python(localiser):
    server, det, root = localiser
    for f in [root / "test" / "good" / "000.png", root / "test" / "square" / "001.png"]:
        data = f.read_bytes()
        want = float(det.score(read_image(f)[None])[0])
        raw = httpx.post(server.url + "/score", content=data, headers={"content-type": "image/png"}).json()
        form = httpx.post(server.url + "/score", files={"file": (f.name, data, "image/png")}).json()
        for ans in (raw, form):
            assert ans["score"] == pytest.approx(want, rel=1e-6, abs=1e-9)
            assert ans["novel"] == (want > det.threshold_)
            assert ans["decision"] == ("novel" if want > det.threshold_ else "normal")
            assert ans["threshold"] == det.threshold_
            assert ans["p_value"] is None or 0.0 < ans["p_value"] <= 1.0
            png = base64.b64decode(ans["heatmap_png"])
            assert png.startswith(PNG)
            with Image.open(io.BytesIO(png)) as im:
                assert im.size == (32, 32) and im.mode == "RGB"
    ans = httpx.post(server.url + "/score?heatmap=false", content=data).json()
    assert ans["heatmap_png"] is None and ans["score"] == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_non_localising_model_has_no_heatmap_and_no_decision(plain):
    server, det, root = plain
    f = root / "test" / "one" / "000.png"
    ans = httpx.post(server.url + "/score", content=f.read_bytes()).json()
    assert ans["heatmap_png"] is None
    assert ans["score"] == pytest.approx(float(det.score(read_image(f)[None])[0]), rel=1e-6)
    assert ans["decision"] is None and ans["novel"] is None  # never calibrated: no threshold


def test_request_size_is_bounded(localiser):
    server = localiser[0]
    big = np.random.default_rng(0).integers(0, 256, MAX_BYTES + 1, dtype=np.uint8).tobytes()
    r = httpx.post(server.url + "/score", content=big)
    assert r.status_code == 413
    assert r.json()["detail"] == f"request body of {MAX_BYTES + 1} bytes exceeds the limit of {MAX_BYTES} bytes"

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(20):
            yield big[:5000]

    r = httpx.post(server.url + "/score", content=chunks())
    assert r.status_code == 413
    assert r.json()["detail"] == f"request body exceeds the limit of {MAX_BYTES} bytes"
    assert httpx.get(server.url + "/health").status_code == 200  # still serving


def test_bad_requests_get_400_with_a_message(localiser):
    server = localiser[0]
    r = httpx.post(server.url + "/score", content=b"this is not an image")
    assert r.status_code == 400 and r.json()["detail"].startswith("not a readable image: cannot decode image")
    r = httpx.post(server.url + "/score", content=b"")
    assert r.status_code == 400
    assert r.json()["detail"] == "empty request: send the image bytes as the body or as multipart field 'file'"
    r = httpx.post(server.url + "/score", files={"picture": ("a.png", b"x", "image/png")})
    assert r.status_code == 400 and "no file field named 'file'" in r.json()["detail"]
    r = httpx.post(server.url + "/score", files={"file": ("a.png", PNG + b"truncated", "image/png")})
    assert r.status_code == 400 and "uploaded file a.png" in r.json()["detail"]
    assert httpx.get(server.url + "/nothing").status_code == 404
