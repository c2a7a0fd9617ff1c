"""Issue 17 items 5, 6, 8 (command line): user errors are one line on stderr with exit status 2,
arguments are checked before any work, outputs are written atomically, fit -o needs --overwrite
to replace another model, bench on an MVTec layout runs the classes that have training images."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltylab.cli import main


def _folder(root: Path, n: int = 24, size: int = 8, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((size, size)) * 60).astype(np.uint8)).save(root / f"n{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = _folder(tmp / "normal")
    assert main(["fit", "--method", "raw-nn", "--data", str(data), "-o", str(tmp / "m")]) == 0
    return tmp / "m", data


def _one_line_error(capsys, rc: int, expected: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    return lines[0]


# --- item 6: arguments checked before any work ------------------------------------------------------
def test_score_negative_batch_size(model, tmp_path, capsys):
    m, data = model
    rc = main(["score", str(m), str(data), "--batch-size", "-5", "-o", str(tmp_path / "s.csv")])
    _one_line_error(capsys, rc, "error: --batch-size must be a positive integer, got -5")
    assert not (tmp_path / "s.csv").exists()


def test_fit_fpr_out_of_range_is_refused_before_training(tmp_path, capsys):
    data = _folder(tmp_path / "few", n=6)
    rc = main(["fit", "--method", "raw-nn", "--data", str(data), "--fpr", "2", "-o", str(tmp_path / "m")])
    _one_line_error(capsys, rc, "error: --fpr must be a number in (0, 1), got 2.0")
    assert not (tmp_path / "m").exists()


def test_string_fpr_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--method", "raw-nn", "--data", str(tmp_path), "--fpr", "abc", "-o", str(tmp_path / "m")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: noveltylab fit: argument --fpr: invalid float value: 'abc'")


def test_score_unknown_device(model, capsys):
    m, data = model
    rc = main(["score", str(m), str(data), "--device", "foo"])
    _one_line_error(capsys, rc, "error: unknown device 'foo'; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    assert capsys.readouterr().out == ""


def test_report_on_missing_results_folder(tmp_path, capsys):
    rc = main(["report", str(tmp_path / "nothing"), "-o", str(tmp_path / "R.md")])
    _one_line_error(capsys, rc, f"error: results folder {tmp_path / 'nothing'} does not exist")
    assert not (tmp_path / "R.md").exists()
    (tmp_path / "empty").mkdir()
    rc = main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "R.md")])
    _one_line_error(capsys, rc, "holds no result files (*.json)")


@pytest.mark.parametrize("cmd", [["demo", "--threads", "-1"],
                                 ["bench", "--method", "raw-nn", "--dataset", "digits", "--threads", "-1"]])
def test_negative_threads(cmd, capsys):
    _one_line_error(capsys, main(cmd), "error: --threads must be a positive integer, got -1")


def test_seed_out_of_range(tmp_path, capsys):
    rc = main(["fit", "--method", "raw-nn", "--data", str(tmp_path), "--seed", str(2 ** 70), "-o", str(tmp_path / "m")])
    _one_line_error(capsys, rc, "error: --seed must be an integer <= 9223372036854775807")


@pytest.mark.parametrize("param, message", [
    ("k=0", "raw-nn: k must be an integer >= 1, got 0"),
    ("k=abc", "raw-nn: k must be an integer, got 'abc' (str)"),
    ("index=5", "raw-nn: index must be a string, got 5 (int)"),
])
def test_bad_params_are_one_line(tmp_path, capsys, param, message):
    data = _folder(tmp_path / "d", n=6)
    rc = main(["fit", "--method", "raw-nn", "--data", str(data), "--param", param, "-o", str(tmp_path / "m")])
    _one_line_error(capsys, rc, message)
    assert not (tmp_path / "m").exists()


def test_epochs_zero_is_refused(tmp_path, capsys):
    data = _folder(tmp_path / "d", n=6)
    rc = main(["fit", "--method", "cae-re", "--data", str(data), "--param", "epochs=0", "-o", str(tmp_path / "m")])
    _one_line_error(capsys, rc, "cae-re: epochs must be an integer >= 1, got 0")
    assert not (tmp_path / "m").exists()


# --- outputs: -o below a file, into a missing folder; atomic CSV --------------------------------------
def test_fit_output_below_a_regular_file(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    data = _folder(tmp_path / "d", n=6)
    rc = main(["fit", "--method", "raw-nn", "--data", str(data), "-o", str(tmp_path / "f.txt" / "m")])
    _one_line_error(capsys, rc, f"{tmp_path / 'f.txt'} is a file, not a folder")


def test_score_output_into_missing_folder(model, tmp_path, capsys):
    m, data = model
    rc = main(["score", str(m), str(data), "-o", str(tmp_path / "no" / "s.csv")])
    _one_line_error(capsys, rc, f"folder {tmp_path / 'no'} does not exist")


def test_failed_score_leaves_no_partial_csv_and_no_success_message(model, tmp_path, capsys):
    m, data = model
    imgs = _folder(tmp_path / "imgs", n=3)
    (imgs / "z_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "s.csv"
    rc = main(["score", str(m), str(imgs), "--batch-size", "1", "-o", str(out)])
    line = _one_line_error(capsys, rc, "z_broken.png")
    assert "scores written" not in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".s.csv")]


def test_successful_score_writes_complete_csv(model, tmp_path, capsys):
    m, data = model
    out = tmp_path / "s.csv"
    assert main(["score", str(m), str(data), "--batch-size", "5", "-o", str(out)]) == 0
    assert len(out.read_text().strip().splitlines()) == 1 + 24
    assert "24 scores written to" in capsys.readouterr().err


# --- item 5: fit -o over another model ---------------------------------------------------------------
def test_fit_refuses_another_model_without_overwrite(model, tmp_path, capsys):
    m, data = model
    target = tmp_path / "m"
    target.mkdir()
    for f in m.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    rc = main(["fit", "--method", "cae-re", "--profile", "cpu", "--param", "epochs=1", "--data", str(data),
               "-o", str(target)])
    _one_line_error(capsys, rc, f"-o {target} already holds a saved 'raw-nn' model; choose another folder "
                                "or pass --overwrite")
    assert json.loads((target / "config.json").read_text())["method"] == "raw-nn"
    assert main(["fit", "--method", "cae-re", "--profile", "cpu", "--param", "epochs=1", "--data", str(data),
                 "-o", str(target), "--overwrite"]) == 0
    assert json.loads((target / "config.json").read_text())["method"] == "cae-re"


def test_fit_refuses_unrelated_config_json(model, tmp_path, capsys):
    _, data = model
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.json").write_text('{"name": "my project"}')
    rc = main(["fit", "--method", "raw-nn", "--data", str(data), "-o", str(tmp_path / "proj")])
    _one_line_error(capsys, rc, "already holds a config.json or weights file that is not a model of this method")
    assert json.loads((tmp_path / "proj" / "config.json").read_text()) == {"name": "my project"}


# --- item 8: help text, exit codes from the real entry point --------------------------------------------
def test_fit_help_has_no_literal_double_percent(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "%%" not in out and "10 %" in out


def test_entry_point_exit_status_and_single_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "noveltylab.cli", "score", str(tmp_path / "absent"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'absent'} is not a saved noveltylab model (needs config.json and weights.safetensors)"]


def test_bench_on_mvtec_layout_runs_the_good_task(tmp_path, capsys):
    from eval_fixtures import mvtec_folder

    from noveltylab.data.protocols import PROTOCOLS
    from noveltylab.data.sources import load_mvtec

    root = mvtec_folder(tmp_path / "bottle", n_train=10, n_good=4, n_bad=4)
    train = load_mvtec(str(root), "train")
    assert PROTOCOLS["one-class"][1](train) == [train.class_names.index("good")]
    out = tmp_path / "results"
    assert main(["bench", "--method", "raw-nn", "--dataset", f"mvtec:{root}", "--out-dir", str(out),
                 "--allow-dirty", "--executor", "sequential"]) == 0
    rec = json.loads(next(out.glob("*.json")).read_text())
    assert rec["tasks"] == ["good"] and rec["subset"] is False and 0.5 < rec["mean"]["auroc"] <= 1.0
