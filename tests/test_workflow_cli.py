"""Issue 15 points 1-4 and 7 from the command line: real files in tmp_path, mixed sizes, masks skipped."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltylab.cli import main
from noveltylab.detector import available
from noveltylab.nets.weights import default_weights_dir
from noveltylab.workflow import default_method


def _folder(root: Path, n: int = 40, seed: int = 0) -> Path:
    """Grey and colour images of mixed sizes plus the clutter a real folder has."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = int(rng.integers(24, 80)), int(rng.integers(24, 80))
        a = (rng.random((h, w)) * 40 + 100).astype(np.uint8)
        if i % 5 == 0:
            Image.fromarray(np.stack([a] * 3, -1)).save(root / f"im{i:03d}.jpg")
            Image.fromarray(np.zeros((h, w), np.uint8)).save(root / f"im{i:03d}.png")     # mask beside JPEG
        else:
            Image.fromarray(a).save(root / f"im{i:03d}.png")
    Image.fromarray(np.full((30, 30), 255, np.uint8)).save(root / "im001_mask.png")
    (root / ".thumbs").mkdir()
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / ".thumbs" / "t.png")
    return root


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wf")
    data = _folder(tmp / "data")
    rc = main(["fit", "--method", "raw-nn", "--data", str(data), "--size", "16", "--resize-mode", "pad",
               "-o", str(tmp / "model")])
    assert rc == 0
    return tmp


def test_fit_records_transform_and_skips_masks(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    rc, out, err = _run(capsys, "fit", "--method", "raw-nn", "--data", str(data), "--size", "20",
                        "--resize-mode", "centre-crop", "--channels", "1", "-o", str(tmp_path / "m"))
    assert rc == 0
    assert "40 image files kept (8 .jpg, 32 .png)" in err
    assert "skipped 9 mask files" in err and "skipped 1 hidden files/folders" in err
    assert "fitting raw-nn on 28 normal images (4 for validation, 8 for calibration)" in err
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["transform"] == {"size": 20, "mode": "centre-crop", "channels": 1}
    assert cfg["input_shape"] == [1, 20, 20]
    assert cfg["calibration"]["n"] == 8
    assert "cannot resolve a false-positive rate of 0.05" in err      # 8 images < 1/0.05


def test_max_train_and_calib_dir(tmp_path, capsys):
    data, calib = _folder(tmp_path / "data"), _folder(tmp_path / "calib", n=25, seed=3)
    rc, out, err = _run(capsys, "fit", "--method", "raw-nn", "--data", str(data), "--calib", str(calib),
                        "--max-train", "10", "--fpr", "0.1", "-o", str(tmp_path / "m"))
    assert rc == 0
    assert "fitting raw-nn on 10 normal images (4 for validation, 25 for calibration)" in err
    assert "cannot resolve" not in err
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["calibration"] == {"fpr": 0.1, "n": 25}
    assert cfg["transform"]["channels"] == 3 and cfg["transform"]["size"] == 32   # raw-nn native size


def test_score_writes_p_values_for_mixed_sizes(model, tmp_path, capsys):
    new = _folder(tmp_path / "new", n=10, seed=7)
    out_csv = tmp_path / "s.csv"
    rc, out, err = _run(capsys, "score", str(model / "model"), str(new), "-o", str(out_csv))
    assert rc == 0
    rows = list(csv.DictReader(open(out_csv)))
    assert list(rows[0]) == ["path", "score", "p_value", "novel"]
    assert len(rows) == 10                                               # masks and hidden files not scored
    p = np.array([float(r["p_value"]) for r in rows])
    assert np.all((p > 0) & (p <= 1))
    assert {r["novel"] for r in rows} <= {"0", "1"}


def test_calibrate_command_warns_and_updates(model, tmp_path, capsys):
    cal = _folder(tmp_path / "cal", n=6, seed=11)
    rc, out, err = _run(capsys, "calibrate", str(model / "model"), str(cal), "--fpr", "0.05")
    assert rc == 0
    assert ("calibration set of 6 normal images cannot resolve a false-positive rate of 0.05 (needs at least "
            "20); the finest rate it can resolve is 1/(n+1) = 0.143") in err
    cfg = json.loads((model / "model" / "config.json").read_text())
    assert cfg["calibration"]["n"] == 6


def test_methods_name_shows_input_size_and_weights(capsys):
    rc, out, err = _run(capsys, "methods", "dn2")
    assert rc == 0
    assert "input_size = 224" in out
    assert "paper    input 224 px" in out and "demo     input 64 px" in out
    assert "pretrained weights file: parameter 'weights' (CLI --weights PATH)" in out
    rc, out, err = _run(capsys, "methods", "raw-nn")
    assert "(no profile) input 32 px" in out and "pretrained weights file: none" in out


def test_weights_flag_errors(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=12)
    rc, out, err = _run(capsys, "fit", "--method", "raw-nn", "--weights", "w.safetensors", "--data", str(data),
                        "-o", str(tmp_path / "m"))
    assert rc == 2 and "--weights: method 'raw-nn' uses no pretrained weights file" in err


def test_default_method_choice():
    name, params, why = default_method()
    if "patchcore" in available():
        assert name == "patchcore"
    else:
        assert (name, params) == ("dn2", {"input_size": 224}) and "224 px" in why


@pytest.mark.skipif(default_weights_dir() is None, reason="shared MobileNetV2 weights not found")
def test_fit_without_method_says_which(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=12)
    rc, out, err = _run(capsys, "fit", "--data", str(data), "-o", str(tmp_path / "m"))
    assert rc == 0
    name = default_method()[0]
    assert f"no --method given: using {name}" in err
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["method"] == name and cfg["transform"]["size"] == 224


def test_import_command(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        Image.fromarray(np.full((10, 10), 100, np.uint8)).save(src / f"n{i}.png")
    Image.fromarray(np.full((10, 10), 100, np.uint8)).save(src / "d.png")
    m = np.zeros((10, 10), np.uint8)
    m[2:4, 2:4] = 255
    Image.fromarray(m).save(src / "d_mask.png")
    rc, out, err = _run(capsys, "import", str(src), str(tmp_path / "mv"), "--test-fraction", "0.4")
    assert rc == 0 and "train/good               3 images" in out
    assert (tmp_path / "mv" / "ground_truth" / "defect" / "d_mask.png").is_file()


def test_progress_lines_in_logs(model, tmp_path):
    new = _folder(tmp_path / "new", n=8, seed=5)
    env = {**os.environ, "NOVELTYLAB_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "noveltylab.cli", "score", str(model / "model"), str(new)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "raw-nn: loading: 8/8 img (100 %)" in r.stderr and "done" in r.stderr
    env["NOVELTYLAB_PROGRESS"] = "0"
    r = subprocess.run([sys.executable, "-m", "noveltylab.cli", "score", str(model / "model"), str(new)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "done" not in r.stderr
