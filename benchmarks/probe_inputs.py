"""Rerun the issue-17 probe kinds (bad or hostile inputs against the API, the command line,
persistence, the data loaders, resources) and count the outcomes.

Each probe is classified as
  handled       the right result, or a clear error of an expected type whose message names the problem
  silent-wrong  no error but a wrong result (caller data modified, a guessed layout, a clipped 16-bit
                image, a nonsense parameter accepted, a file overwritten, a partial CSV, ...)
  traceback     an unexpected exception type (API) or a traceback / exit status other than 2 (CLI)
  unclear       an expected error type whose message does not name the problem

Usage:  OMP_NUM_THREADS=1 python benchmarks/probe_inputs.py [--json OUT] [--skip-heavy]
Resource probes (256 MiB archive members, a forged FAISS length field, scoring 200,000 images) run in
child processes and are judged by their peak-memory growth.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

import noveltylab
from noveltylab.cli import main as cli_main
from noveltylab.data.formats import DataFormatError
from noveltylab.data.sources import load_folder
from noveltylab.detector import ModelFileError, NotFittedError
from noveltylab.images import ImageError, as_images

EXPECTED = (ImageError, ModelFileError, NotFittedError, DataFormatError, ValueError, TypeError, FileNotFoundError)
RESULTS: list[dict[str, Any]] = []
TMP = Path(tempfile.mkdtemp(prefix="probe17-"))


def record(group: str, name: str, outcome: str, detail: str = "") -> None:
    RESULTS.append({"group": group, "probe": name, "outcome": outcome, "detail": detail[:300]})


def expect_error(group: str, name: str, fn: Callable[[], Any], phrase: str,
                 types: tuple[type[BaseException], ...] = EXPECTED) -> None:
    try:
        out = fn()
    except types as exc:
        record(group, name, "handled" if phrase.lower() in str(exc).lower() else "unclear", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001
        record(group, name, "traceback", f"{type(exc).__name__}: {exc}")
    else:
        record(group, name, "silent-wrong", f"returned {type(out).__name__}")


def expect_value(group: str, name: str, fn: Callable[[], Any], check: Callable[[Any], bool]) -> None:
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001
        record(group, name, "traceback" if not isinstance(exc, EXPECTED) else "unclear", f"{type(exc).__name__}: {exc}")
        return
    record(group, name, "handled" if check(out) else "silent-wrong", "")


def cli(group: str, name: str, argv: list[str], phrase: str, after: Callable[[], bool] | None = None) -> None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli_main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001
        record(group, name, "traceback", f"{type(exc).__name__}: {exc}")
        return
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    if rc == 0:
        record(group, name, "silent-wrong", "exit status 0")
    elif "Traceback" in text or rc != 2 or len(lines) != 1:
        record(group, name, "traceback", f"rc={rc}: {text[-200:]}")
    elif phrase.lower() not in lines[0].lower():
        record(group, name, "unclear", lines[0])
    elif after is not None and not after():
        record(group, name, "silent-wrong", "side effect: " + lines[0])
    else:
        record(group, name, "handled", lines[0])


# ------------------------------------------------------------------------------------------- fixtures
def png(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    b = io.BytesIO()
    (Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)).save(b, format=fmt)
    return b.getvalue()


def folder(name: str, n: int = 24, size: int = 8) -> Path:
    d = TMP / name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        (d / f"n{i:02d}.png").write_bytes(png((rng.random((size, size)) * 60).astype(np.uint8)))
    return d


def bomb_png(w: int, h: int) -> bytes:
    raw = png(np.zeros((1, 1), np.uint8))
    chunk = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def forge(model_dir: Path, edit_config=None, edit_state=None) -> None:
    from safetensors.torch import load_file, save_file

    from noveltylab.detector import _config_hash, _sha256

    cfg = json.loads((model_dir / "config.json").read_text())
    state = dict(load_file(str(model_dir / "weights.safetensors")))
    if edit_config:
        edit_config(cfg)
    if edit_state:
        edit_state(state)
    cfg.pop("weights_sha256", None)
    save_file(state, str(model_dir / "weights.safetensors"), metadata={"config_sha256": _config_hash(cfg)})
    cfg["weights_sha256"] = _sha256(model_dir / "weights.safetensors")
    (model_dir / "config.json").write_text(json.dumps(cfg))


# ------------------------------------------------------------------------------------------- API probes
def api_probes() -> None:
    g = "api-input"
    rng = np.random.default_rng(0)
    x = (rng.random((12, 8, 8)) * 0.9).astype(np.float32)
    x[0, 0, 0] = np.float32(1.00005)
    det = noveltylab.create("raw-nn", device="cpu").fit(x.copy())

    for kind, make in [("ndarray f32", lambda: x.copy()), ("ndarray f64", lambda: x.astype(np.float64)),
                       ("tensor f32", lambda: torch.from_numpy(x.copy())),
                       ("tensor f32 NCHW", lambda: torch.from_numpy(x.copy()[:, None]))]:
        for op in ("as_images", "fit", "score"):
            data = make()
            before = data.copy() if isinstance(data, np.ndarray) else data.clone()

            def run(data=data, op=op):
                if op == "as_images":
                    as_images(data)
                elif op == "fit":
                    noveltylab.create("raw-nn", device="cpu").fit(data)
                else:
                    det.score(data)
                return data
            same = (lambda d, b=before: np.array_equal(d, b)) if isinstance(data, np.ndarray) else \
                (lambda d, b=before: torch.equal(d, b))
            expect_value(g, f"caller memory unchanged: {op}({kind})", run, same)

    expect_value(g, "requires_grad tensor", lambda: det.score(torch.rand(3, 1, 8, 8, requires_grad=True)),
                 lambda s: s.shape == (3,))
    for shape in [(16, 16, 3), (16, 16, 4), (3, 16, 16), (10, 3, 3, 3), (10, 3, 20, 1), (10, 1, 5, 3), (4, 4)]:
        expect_error(g, f"undecidable layout {shape}", lambda s=shape: as_images(np.zeros(s, np.uint8)),
                     "layout" if len(shape) > 2 else "2-D")
    for shape, layout, want in [((16, 16, 3), "HWC", (1, 3, 16, 16)), ((10, 3, 20, 1), "NHWC", (10, 1, 3, 20)),
                                ((3, 16, 16), "CHW", (1, 3, 16, 16)), ((3, 16, 16), "NHW", (3, 1, 16, 16)),
                                ((16, 16), "HW", (1, 1, 16, 16)), ((5, 8, 8, 3), "auto", (5, 3, 8, 8)),
                                ((5, 3, 8, 8), "auto", (5, 3, 8, 8)), ((5, 8, 8), "auto", (5, 1, 8, 8))]:
        expect_value(g, f"layout {layout} {shape}", lambda s=shape, lay=layout: as_images(np.zeros(s, np.uint8), layout=lay),
                     lambda t, w=want: tuple(t.shape) == w)
    expect_error(g, "unknown layout", lambda: as_images(np.zeros((2, 8, 8), np.uint8), layout="XYZ"), "unknown layout")
    expect_error(g, "score single colour image", lambda: det.score(np.zeros((16, 16, 3), np.uint8)), "layout")
    bad_inputs = {
        "string path missing": ("no/such/file.png", "not found"),
        "string array": (np.array(["a", "b"]), "dtype"),
        "object array": (np.array([np.zeros((8, 8)), np.zeros((9, 9))], dtype=object), "dtype"),
        "mixed list": (["a.png", 3], "a list must hold"),
        "int32 array": (np.zeros((2, 8, 8), np.int32), "uint8"),
        "bool array": (np.zeros((2, 8, 8), bool), "boolean"),
        "complex array": (np.zeros((2, 8, 8), np.complex64), "dtype"),
        "NaN": (np.full((2, 8, 8), np.nan, np.float32), "NaN"),
        "inf": (np.full((2, 8, 8), np.inf, np.float32), "infinite"),
        "float 0..255": (np.full((2, 8, 8), 200.0, np.float32), "[0, 1]"),
        "negative float": (np.full((2, 8, 8), -0.5, np.float32), "[0, 1]"),
        "empty": (np.zeros((0, 8, 8), np.uint8), "empty"),
        "zero width": (np.zeros((2, 8, 0), np.uint8), "zero"),
        "5 channels": (np.zeros((2, 8, 8, 5), np.uint8), "channel"),
        "5-D": (np.zeros((2, 1, 1, 8, 8), np.uint8), "3-D or 4-D"),
        "int": (7, "unsupported input type"),
        "dict": ({"a": 1}, "unsupported input type"),
        "None": (None, "unsupported input type"),
        "empty list": ([], "empty"),
    }
    for name, (bad, phrase) in bad_inputs.items():
        expect_error(g, f"as_images({name})", lambda b=bad: as_images(b), phrase)
        expect_error(g, f"score({name})", lambda b=bad: det.score(b), phrase)
    expect_value(g, "uint16 array scaled by 65535", lambda: as_images(np.full((2, 5, 5), 65535, np.uint16)),
                 lambda t: float(t.min()) == 1.0)
    expect_value(g, "big-endian floats", lambda: as_images(np.full((2, 5, 5), 0.5, ">f4")),
                 lambda t: float(t.max()) == 0.5)
    expect_value(g, "negative strides", lambda: as_images(np.arange(50, dtype=np.uint8).reshape(2, 5, 5)[:, ::-1]),
                 lambda t: t.shape == (2, 1, 5, 5))
    expect_error(g, "score before fit", lambda: noveltylab.create("raw-nn").score(x), "not fitted", (NotFittedError,))
    expect_error(g, "score wrong size", lambda: det.score(np.zeros((2, 9, 9), np.uint8)), "resize")
    expect_error(g, "fit on one image", lambda: noveltylab.create("raw-nn").fit(x[:1]), "at least 2")


def file_probes() -> None:
    g = "files"
    d16 = TMP / "sixteen"
    d16.mkdir()
    arr = np.array([[0, 1000], [40000, 65535]], np.uint16)
    want = np.round(arr / 257.0).astype(np.uint8)
    for fmt, ext in [("PNG", "png"), ("TIFF", "tif")]:
        sub = d16 / ext
        sub.mkdir()
        (sub / f"x.{ext}").write_bytes(png(arr, fmt))
        expect_value(g, f"16-bit {fmt} via as_images", lambda s=sub: as_images(s),
                     lambda t: np.array_equal((t[0, 0] * 255).round().numpy().astype(np.uint8), want))
        expect_value(g, f"16-bit {fmt} via folder loader", lambda s=sub: load_folder(s).images,
                     lambda a: np.array_equal(a[0, ..., 0], want))
    dark = TMP / "dark"
    dark.mkdir()
    (dark / "d.png").write_bytes(png(np.full((4, 4), 200, np.uint16)))
    expect_value(g, "dark 16-bit not read as 8-bit (API)", lambda: as_images(dark), lambda t: float(t.max()) < 0.01)
    expect_value(g, "dark 16-bit not read as 8-bit (loader)", lambda: load_folder(dark).images,
                 lambda a: int(a.max()) <= 1)
    la = TMP / "la"
    la.mkdir()
    Image.new("LA", (5, 4), (100, 30)).save(la / "g.png")
    expect_value(g, "grey+alpha via as_images", lambda: as_images(la), lambda t: t.shape == (1, 1, 4, 5))
    expect_value(g, "grey+alpha via folder loader", lambda: load_folder(la).images, lambda a: a.shape == (1, 4, 5, 1))
    rgba = TMP / "rgba"
    rgba.mkdir()
    Image.new("RGBA", (5, 4), (10, 20, 30, 40)).save(rgba / "c.png")
    expect_value(g, "RGBA via as_images", lambda: as_images(rgba), lambda t: t.shape == (1, 3, 4, 5))
    expect_value(g, "RGBA via folder loader", lambda: load_folder(rgba).images, lambda a: a.shape == (1, 4, 5, 3))
    hid = TMP / "hidden"
    hid.mkdir()
    (hid / "a.png").write_bytes(png(np.zeros((4, 4), np.uint8)))
    for h in (".cache", "__MACOSX"):
        (hid / h).mkdir()
        (hid / h / "b.png").write_bytes(png(np.zeros((4, 4), np.uint8)))
    (hid / ".c.png").write_bytes(png(np.zeros((4, 4), np.uint8)))
    expect_value(g, "hidden folders skipped (API)", lambda: as_images(hid), lambda t: t.shape[0] == 1)
    expect_value(g, "hidden folders skipped (loader)", lambda: load_folder(hid).images, lambda a: len(a) == 1)
    bomb = TMP / "bomb"
    bomb.mkdir()
    (bomb / "b.png").write_bytes(bomb_png(30000, 30000))
    expect_error(g, "decompression bomb (API)", lambda: as_images(bomb / "b.png"), "decompression bomb")
    expect_error(g, "decompression bomb (loader)", lambda: load_folder(bomb), "decompression bomb")
    trunc = TMP / "trunc"
    trunc.mkdir()
    (trunc / "t.png").write_bytes(png(np.zeros((8, 8), np.uint8))[:30])
    expect_error(g, "truncated PNG (API)", lambda: as_images(trunc), "t.png")
    expect_error(g, "truncated PNG (loader)", lambda: load_folder(trunc), "t.png")
    (TMP / "txt").mkdir()
    (TMP / "txt" / "x.png").write_text("not an image")
    expect_error(g, "text named .png", lambda: as_images(TMP / "txt"), "cannot decode")
    (TMP / "emptyd").mkdir()
    expect_error(g, "empty folder", lambda: as_images(TMP / "emptyd"), "no image files")
    mixed = TMP / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes(png(np.zeros((4, 4), np.uint8)))
    (mixed / "b.png").write_bytes(png(np.zeros((5, 5), np.uint8)))
    expect_error(g, "mixed sizes", lambda: as_images(mixed), "mixed sizes")


def param_probes() -> None:
    g = "params"
    cases = [("cae-re", {"epochs": 0}, "epochs"), ("cae-re", {"depth": -2}, "depth"), ("raw-nn", {"k": 0}, "k"),
             ("cae-re", {"lr": -1.0}, "lr"), ("cae-re", {"lr": "fast"}, "lr"), ("cae-re", {"width": 0}, "width"),
             ("cae-re", {"seed": 2 ** 70}, "seed"), ("cae-re", {"seed": -3}, "seed"),
             ("cae-re", {"device": "foo"}, "device"), ("cae-re", {"batch_size": 0}, "batch_size"),
             ("dn2", {"k": 0}, "k"), ("dn2", {"agg": "median"}, "agg"), ("dn2", {"backbone": "vgg"}, "backbone"),
             ("nln-ae", {"alpha": 2.0}, "alpha"), ("nln-ae", {"epochs": 0}, "epochs"),
             ("connective", {"lam": float("nan")}, "lam"), ("unode", {"width": 0}, "width"),
             ("deep-svdd", {"weight_decay": -1.0}, "weight_decay"), ("fitymi", {"gen_lr": 0.0}, "gen_lr"),
             ("cae-ocsvm", {"nu": 0.0}, "nu"), ("raw-nn", {"pad_multiple": 0}, "pad_multiple"),
             ("cae-re", {"epochs": 2.5}, "epochs"), ("cae-re", {"epochs": True}, "epochs")]
    for method, kw, phrase in cases:
        if method not in noveltylab.available():
            continue
        expect_error(g, f"{method}({kw})", lambda m=method, k=kw: noveltylab.create(m, **k), phrase)
    x = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    det = noveltylab.create("raw-nn", device="cpu").fit(x[:15])
    expect_error(g, "calibrate on 1 image", lambda: det.calibrate(x[15:16], fpr=0.1), "at least 2")
    for fpr in (2, 0, -0.1, "0.1", float("nan")):
        expect_error(g, f"calibrate fpr={fpr!r}", lambda f=fpr: det.calibrate(x[15:], fpr=f), "fpr")


def persistence_probes() -> None:
    g = "persistence"
    x = np.random.default_rng(0).random((10, 8, 8)).astype(np.float32)
    det = noveltylab.create("raw-nn", device="cpu").fit(x)

    def fresh(name: str) -> Path:
        return det.save(TMP / "models" / name)

    other = noveltylab.create("cae-re", epochs=1, device="cpu").fit(x)
    p = fresh("a")
    expect_error(g, "save over another method's model", lambda: other.save(p), "already holds")
    (TMP / "proj").mkdir()
    (TMP / "proj" / "config.json").write_text('{"name": "project"}')
    expect_error(g, "save over unrelated config.json", lambda: det.save(TMP / "proj"), "already holds")
    expect_value(g, "unrelated config.json kept", lambda: json.loads((TMP / "proj" / "config.json").read_text()),
                 lambda c: c == {"name": "project"})
    (TMP / "afile").write_text("x")
    expect_error(g, "save below a regular file", lambda: det.save(TMP / "afile" / "m"), "is a file")
    p = fresh("shape")
    forge(p, lambda c: c.update(input_shape=[1, 16, 16]))
    expect_error(g, "forged input_shape (hashes recomputed)", lambda: noveltylab.load(p), "does not fit")
    for field, value in [("input_shape", [1, -8, 8]), ("input_shape", [7, 8, 8]), ("threshold", "high"),
                         ("method", 5), ("params", [1]), ("meta", 3)]:
        p = fresh(f"f-{field}-{value}")
        cfg = json.loads((p / "config.json").read_text())
        cfg[field] = value
        (p / "config.json").write_text(json.dumps(cfg))
        expect_error(g, f"config {field}={value!r}", lambda p=p: noveltylab.load(p), field)
    for name, text in [("huge float", '{"threshold": 1e999999}'), ("NaN", '{"threshold": NaN}'),
                       ("5000-digit int", '{"n": ' + "9" * 5000 + "}"), ("deep nesting", "[" * 100000 + "]" * 100000),
                       ("not UTF-8", None), ("not JSON", "hello")]:
        p = fresh(f"j-{name}")
        if text is None:
            (p / "config.json").write_bytes(b"\xff\xfe\x00garbage")
        else:
            (p / "config.json").write_text(text)
        expect_error(g, f"config.json {name}", lambda p=p: noveltylab.load(p), "config")
    p = fresh("faiss")

    def grow(state):
        blob = state["knn.index"].numpy().tobytes()
        state["knn.index"] = torch.frombuffer(bytearray(blob[:37] + struct.pack("<Q", 2 ** 26) + blob[45:]),
                                              dtype=torch.uint8)
    forge(p, edit_state=grow)
    expect_error(g, "forged FAISS length field", lambda: noveltylab.load(p), "FAISS", (ModelFileError,))
    p = fresh("faiss-trunc")
    forge(p, edit_state=lambda st: st.update({"knn.index": st["knn.index"][:50].clone()}))
    expect_error(g, "truncated FAISS blob", lambda: noveltylab.load(p), "FAISS", (ModelFileError,))
    p = fresh("wtext")
    (p / "weights.safetensors").write_text("text")
    expect_error(g, "model weights replaced by text", lambda: noveltylab.load(p), "checksum", (ModelFileError,))
    p = fresh("wmissing")
    (p / "weights.safetensors").unlink()
    expect_error(g, "model weights missing", lambda: noveltylab.load(p), "not a saved", (ModelFileError,))
    from noveltylab.nets.mobilenet import load_state_file

    (TMP / "w.safetensors").write_text("text")
    (TMP / "w.pt").write_text("text")
    with open(TMP / "evil.pt", "wb") as f:
        pickle.dump({"x": Exception("boom")}, f)
    expect_error(g, "backbone weights missing", lambda: load_state_file(TMP / "nope.safetensors"), "not found")
    expect_error(g, "backbone weights text (.safetensors)", lambda: load_state_file(TMP / "w.safetensors"), "weights file")
    expect_error(g, "backbone weights text (.pt)", lambda: load_state_file(TMP / "w.pt"), "weights file")
    expect_error(g, "backbone weights pickle of objects", lambda: load_state_file(TMP / "evil.pt"), "unpickling")


def cli_probes() -> None:
    g = "cli"
    data = folder("normal")
    model = TMP / "cli-model"
    assert cli_main(["fit", "--method", "raw-nn", "--data", str(data), "-o", str(model)]) == 0
    out = TMP / "s.csv"
    cli(g, "score --batch-size -5", ["score", str(model), str(data), "--batch-size", "-5", "-o", str(out)],
        "--batch-size", lambda: not out.exists())
    cli(g, "fit --fpr 2 (small folder)", ["fit", "--method", "raw-nn", "--data", str(folder("few", 6)), "--fpr", "2",
                                          "-o", str(TMP / "m-fpr")], "--fpr", lambda: not (TMP / "m-fpr").exists())
    cli(g, "fit --fpr abc", ["fit", "--method", "raw-nn", "--data", str(data), "--fpr", "abc", "-o", str(TMP / "x")],
        "--fpr")
    cli(g, "score --device foo", ["score", str(model), str(data), "--device", "foo"], "device")
    cli(g, "fit --device foo", ["fit", "--method", "raw-nn", "--data", str(data), "--device", "foo",
                                "-o", str(TMP / "m-dev")], "device")
    cli(g, "report missing folder", ["report", str(TMP / "nothing"), "-o", str(TMP / "R.md")], "does not exist",
        lambda: not (TMP / "R.md").exists())
    (TMP / "broken").mkdir()
    for i in range(3):
        (TMP / "broken" / f"a{i}.png").write_bytes(png(np.zeros((8, 8), np.uint8)))
    (TMP / "broken" / "z.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    cli(g, "failed score: no partial CSV", ["score", str(model), str(TMP / "broken"), "--batch-size", "1",
                                            "-o", str(out)], "z.png", lambda: not out.exists())
    cli(g, "fit -o over another model", ["fit", "--method", "cae-re", "--param", "epochs=1", "--data", str(data),
                                         "-o", str(model)], "--overwrite",
        lambda: json.loads((model / "config.json").read_text())["method"] == "raw-nn")
    (TMP / "proj2").mkdir()
    (TMP / "proj2" / "config.json").write_text("{}")
    cli(g, "fit -o over unrelated config.json", ["fit", "--method", "raw-nn", "--data", str(data),
                                                 "-o", str(TMP / "proj2")], "--overwrite")
    (TMP / "regular").write_text("x")
    cli(g, "fit -o below a regular file", ["fit", "--method", "raw-nn", "--data", str(data),
                                           "-o", str(TMP / "regular" / "m")], "is a file")
    cli(g, "score -o into a missing folder", ["score", str(model), str(data), "-o", str(TMP / "no" / "s.csv")],
        "does not exist")
    cli(g, "demo --threads -1", ["demo", "--threads", "-1"], "--threads")
    cli(g, "bench --threads -1", ["bench", "--method", "raw-nn", "--dataset", "digits", "--threads", "-1"], "--threads")
    cli(g, "fit --seed 2**70", ["fit", "--method", "raw-nn", "--data", str(data), "--seed", str(2 ** 70),
                                "-o", str(TMP / "m-seed")], "--seed")
    for param, phrase in [("epochs=0", "epochs"), ("depth=-2", "depth"), ("lr=abc", "lr"), ("width=0", "width"),
                          ("lr=-1", "lr")]:
        cli(g, f"fit --param {param}", ["fit", "--method", "cae-re", "--data", str(data), "--param", param,
                                        "-o", str(TMP / f"m-{param}")], phrase)
    cli(g, "fit --param k=0", ["fit", "--method", "raw-nn", "--data", str(data), "--param", "k=0",
                               "-o", str(TMP / "m-k")], "k must be")
    cli(g, "fit unknown method", ["fit", "--method", "nope", "--data", str(data), "-o", str(TMP / "m-n")],
        "unknown method")
    cli(g, "fit missing data folder", ["fit", "--method", "raw-nn", "--data", str(TMP / "absent"),
                                       "-o", str(TMP / "m-a")], "absent")
    cli(g, "score missing model", ["score", str(TMP / "absent"), str(data)], "not a saved noveltylab model")
    cli(g, "score missing images", ["score", str(model), str(TMP / "absent")], "no such file")
    cli(g, "score --batch-size 0", ["score", str(model), str(data), "--batch-size", "0"], "--batch-size")
    cli(g, "unknown option", ["score", str(model), str(data), "--frobnicate"], "unrecognized")
    cli(g, "fit --max-train 0", ["fit", "--method", "raw-nn", "--data", str(data), "--max-train", "0",
                                 "-o", str(TMP / "m-mt")], "--max-train")
    help_out = io.StringIO()
    with contextlib.redirect_stdout(help_out):
        try:
            cli_main(["fit", "--help"])
        except SystemExit:
            pass
    record(g, "fit --help has no literal %%", "handled" if "%%" not in help_out.getvalue() else "silent-wrong")
    ok = cli_main(["score", str(model), str(data), "-o", str(out)]) == 0 and \
        len(out.read_text().strip().splitlines()) == 25
    record(g, "successful score writes a complete CSV", "handled" if ok else "silent-wrong")
    proc = subprocess.run([sys.executable, "-m", "noveltylab.cli", "score", str(TMP / "absent"), str(data)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    good = proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    record(g, "entry point: exit 2, one line", "handled" if good else "traceback", proc.stderr[-200:])


def bench_mvtec_probe() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from eval_fixtures import mvtec_folder  # the tests' MVTec-layout builder

    root = mvtec_folder(TMP / "mvtec" / "bottle", n_train=10, n_good=4, n_bad=4)
    out = TMP / "bench-results"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = cli_main(["bench", "--method", "raw-nn", "--dataset", f"mvtec:{root}", "--out-dir", str(out),
                       "--allow-dirty", "--executor", "sequential"])
    files = list(out.glob("*.json"))
    ok = rc == 0 and files and json.loads(files[0].read_text())["tasks"] == ["good"]
    record("cli", "bench on MVTec layout writes the good task", "handled" if ok else "silent-wrong", f"rc={rc}")


# ------------------------------------------------------------------------------------------- resources
CHILD = r"""
import resource, sys, json
import numpy as np
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kind, path = sys.argv[1], sys.argv[2]
import noveltylab, torch
from noveltylab.data.sources import load_folder
base = rss(); err = None
try:
    if kind == "archive":
        load_folder(path)
    elif kind == "model":
        noveltylab.load(path)
    elif kind == "score":
        n = int(sys.argv[3]); det = noveltylab.load(path)
        x = np.random.default_rng(0).integers(0, 256, (n, 8, 8), dtype=np.uint8)
        det.score(x[:4096]); base = rss()  # warm: allocator pools and one full chunk already counted
        det.score(x)
except Exception as e:
    err = f"{type(e).__name__}: {e}"
print(json.dumps({"growth_mb": rss() - base, "error": err}))
"""


def child(kind: str, path: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), *extra], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"growth_mb": -1, "error": f"child failed: {proc.stderr[-300:]}"}


def resource_probes(heavy: bool) -> None:
    g = "resources"
    size = 256 * 2 ** 20
    zpath = TMP / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("imgs/a.png", png(np.zeros((8, 8), np.uint8)))
        with zf.open("imgs/big.png", "w", force_zip64=True) as f:
            chunk = b"\x00" * 2 ** 20
            for _ in range(size // len(chunk)):
                f.write(chunk)
    tpath = TMP / "bomb.tar.gz"

    class Zeros(io.RawIOBase):
        def __init__(self, n): self.left = n
        def readable(self): return True
        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n
    with tarfile.open(tpath, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("imgs/big.png")
        info.size = size
        tf.addfile(info, Zeros(size))
    for name, path in [("zip", zpath), ("tar.gz", tpath)]:
        r = child("archive", path)
        mib = path.stat().st_size / 2 ** 20
        detail = f"archive {mib:.2f} MiB, member 256 MiB: +{r['growth_mb']:.0f} MiB; {r['error']}"
        ok = r["error"] and "limit" in r["error"] and 0 <= r["growth_mb"] < 32
        record(g, f"{name} with one 256 MiB member", "handled" if ok else "silent-wrong", detail)
    x = np.random.default_rng(0).random((50, 8, 8)).astype(np.float32)
    det = noveltylab.create("raw-nn", device="cpu").fit(x)
    p = det.save(TMP / "faiss-res")

    def grow(state):
        blob = state["knn.index"].numpy().tobytes()
        state["knn.index"] = torch.frombuffer(bytearray(blob[:37] + struct.pack("<Q", 64 * 2 ** 20) + blob[45:]),
                                              dtype=torch.uint8)
    forge(p, edit_state=grow)
    r = child("model", p)
    ok = r["error"] and "FAISS" in r["error"] and 0 <= r["growth_mb"] < 32
    record(g, "forged FAISS length field claiming 256 MiB", "handled" if ok else "silent-wrong",
           f"+{r['growth_mb']:.0f} MiB; {r['error']}")
    if heavy:
        cn = noveltylab.create("connective", profile="test", device="cpu") if "test" in \
            noveltylab.get_class("connective").profiles else None
        if cn is not None:
            mp = cn.fit(x).save(TMP / "conn")
            small, big = child("score", mp, "20000"), child("score", mp, "200000")
            # input itself: 200,000 x 64 bytes uint8 + float32 copy = 64 MB; the rest must not grow with N
            ok = not small["error"] and not big["error"] and big["growth_mb"] - small["growth_mb"] < 150
            record(g, "connective: score memory, 200,000 vs 20,000 8x8 images", "handled" if ok else "silent-wrong",
                   f"+{small['growth_mb']:.0f} MiB vs +{big['growth_mb']:.0f} MiB; {big['error']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write every probe's outcome here")
    ap.add_argument("--skip-heavy", action="store_true", help="skip scoring 200,000 images")
    ap.add_argument("--only-resources", action="store_true", help="run only the resource probes")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=repo).stdout.strip()  # the commit the probe starts from
    noveltylab.available()  # import every method now, so that the code checked below is the code that runs
    used = sorted({str(Path(m.__file__).resolve().relative_to(repo)) for name, m in list(sys.modules.items())
                   if name.startswith("noveltylab") and getattr(m, "__file__", None)
                   and Path(m.__file__).resolve().is_relative_to(repo)})
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks/probe_inputs.py", *used],
                           capture_output=True, text=True, cwd=repo).stdout.strip()
    torch.set_num_threads(1)
    if not args.only_resources:
        for fn in (api_probes, file_probes, param_probes, persistence_probes, cli_probes, bench_mvtec_probe):
            fn()
    resource_probes(heavy=not args.skip_heavy)
    counts: dict[str, int] = {}
    for r in RESULTS:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    for r in RESULTS:
        if r["outcome"] != "handled":
            print(f"[{r['outcome']}] {r['group']}: {r['probe']}: {r['detail']}")
    print(f"{len(RESULTS)} probes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for r in RESULTS:
        if r["group"] == "resources":
            print(f"  {r['probe']}: {r['detail']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "command": "OMP_NUM_THREADS=1 python " + " ".join(["benchmarks/probe_inputs.py", *sys.argv[1:]]),
            "commit": commit + ("+dirty" if dirty else ""), "n_probes": len(RESULTS), "counts": counts,
            "probes": RESULTS}, indent=1))
    return 0 if set(counts) <= {"handled"} else 1


if __name__ == "__main__":
    sys.exit(main())
