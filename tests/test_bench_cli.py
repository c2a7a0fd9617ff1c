"""Benchmark runner, report and command line, on the embedded digits data."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from noveltylab.bench.report import paper_numbers, render, load_results, write_report
from noveltylab.bench.runner import run_benchmark
from noveltylab.cli import main


def test_run_benchmark_record(tmp_path):
    rec = run_benchmark("raw-nn", "digits", "one-class", classes=[0, 1], seeds=[0, 1], profile="cpu",
                        out_dir=tmp_path, label="raw-nn-eed", progress=False, command="pytest", allow_dirty=True)
    assert rec["tasks"] == ["0", "1"] and rec["seeds"] == [0, 1]
    assert 0.9 < rec["mean"]["auroc"] <= 1.0
    assert 0.0 <= rec["mean"]["auroc_std_seeds"] < 0.01  # seeds change only the validation split here
    for key in ("train_seconds_per_task", "score_images_per_s", "peak_memory_mb", "commit", "command", "config"):
        assert rec[key] is not None
    assert {"auroc", "aupr", "f1", "f1_max", "fpr95"} <= set(rec["per_task"][0]["metrics"])
    data = json.loads(open(rec["file"]).read())
    assert data["label"] == "raw-nn-eed" and data["subset"] is True and "__0-1" in rec["file"]


def test_draws_of_several_classes_are_a_subset(tmp_path):
    """Ten draws of two normal classes are as many tasks as ten classes but must not be written as
    the complete run (a second batch of draws would overwrite it)."""
    draws = [f"{c}+{(c + 1) % 10}" for c in range(10)]
    rec = run_benchmark("raw-nn", "digits", "one-class", classes=draws, profile="cpu", out_dir=tmp_path,
                        progress=False, command="pytest", allow_dirty=True)
    assert len(rec["tasks"]) == 10 and rec["subset"] is True and "__0+1" in rec["file"].replace("-", "+")
    full = run_benchmark("raw-nn", "digits", "one-class", classes=list(range(10)), profile="cpu",
                         out_dir=tmp_path, progress=False, command="pytest", allow_dirty=True)
    assert full["subset"] is False


def test_report_puts_paper_numbers_beside_ours(tmp_path):
    refs = paper_numbers()
    assert float(refs[("raw-nn-qed", "mnist", "one-class", "auroc")]["value"]) == pytest.approx(94.7)
    rec = {"kind": "novelty", "label": "raw-nn-qed", "method": "raw-nn", "profile": "cpu", "dataset": "mnist",
           "protocol": "one-class", "protocol_options": {}, "seeds": [0], "tasks": ["0"],
           "per_task": [{"name": "0", "mean": {"auroc": 0.95}}], "mean": {"auroc": 0.95},
           "train_seconds_per_task": 1.0, "score_images_per_s": 10.0, "command": "x"}
    (tmp_path / "r.json").write_text(json.dumps(rec))
    out = write_report(tmp_path, tmp_path / "RESULTS.md")
    text = out.read_text()
    assert "| raw-nn-qed | raw-nn | cpu | 1 | 1 | 95.0 |" in text  # details row
    assert "| [raw-nn-qed · mnist · one-class · cpu](r.json) | 94.7 | 95.0 | +0.3 | exact |" in text  # summary
    records, others = load_results(tmp_path)
    assert len(records) == 1 and not others
    assert "mnist — one-class" in render(records, others, tmp_path)


def test_report_matches_single_task_paper_rows(tmp_path):
    """A multi-class record with one novel data set is compared with that data set's paper number."""
    base = {"kind": "novelty", "label": "unode", "method": "unode", "profile": "cpu", "dataset": "cifar10-jpeg",
            "protocol": "multiclass-unlabeled", "protocol_options": {}, "seeds": [0], "mean": {"auroc": 0.9},
            "train_seconds_per_task": 1.0, "score_images_per_s": 10.0, "command": "x"}
    for novel in ("mnist", "fashion-mnist"):
        rec = {**base, "tasks": [novel], "per_task": [{"name": novel, "mean": {"auroc": 0.9}}]}
        (tmp_path / f"{novel}.json").write_text(json.dumps(rec))
    text = write_report(tmp_path, tmp_path / "RESULTS.md").read_text()
    # the JPEG copy of CIFAR-10 is an analogue of the paper's data: paper and ours, no difference
    assert "| 99.4 | 90.0 |  | analogue: JPEG copy of CIFAR-10 |" in text
    assert "| 99.7 | 90.0 |  | analogue: JPEG copy of CIFAR-10 |" in text


def test_cli_fit_score_roundtrip(tmp_path, capsys):
    folder = tmp_path / "normal"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray((rng.random((8, 8)) * 40).astype(np.uint8)).save(folder / f"n{i:02d}.png")
    odd = tmp_path / "new"
    odd.mkdir()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(odd / "bright.png")
    Image.fromarray((rng.random((8, 8)) * 40).astype(np.uint8)).save(odd / "dim.png")
    assert main(["fit", "--method", "raw-nn", "--data", str(folder), "-o", str(tmp_path / "m")]) == 0
    assert main(["score", str(tmp_path / "m"), str(odd), "-o", str(tmp_path / "s.csv")]) == 0
    rows = {r["path"].split("/")[-1]: r for r in csv.DictReader(open(tmp_path / "s.csv"))}
    assert float(rows["bright.png"]["score"]) > float(rows["dim.png"]["score"])
    assert rows["bright.png"]["novel"] == "1"


def test_cli_fit_on_dataset_class_and_errors(tmp_path, capsys):
    assert main(["fit", "--method", "raw-nn", "--data", "digits", "--normal-class", "3",
                 "-o", str(tmp_path / "m")]) == 0
    assert main(["fit", "--method", "raw-nn", "--data", "digits", "--normal-class", "12",
                 "-o", str(tmp_path / "m2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["fit", "--method", "nope", "--data", "digits", "--normal-class", "1", "-o", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["bench", "--method", "raw-nn", "--dataset", "no-such-set", "--allow-dirty"]) == 2
    assert "no-such-set" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "absent"), str(tmp_path)]) == 2
    assert "not a saved noveltylab model" in capsys.readouterr().err


def test_cli_bench_report_methods_datasets(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["bench", "--method", "raw-nn", "--dataset", "digits", "--classes", "0", "1",
                 "--out-dir", str(out), "--label", "raw-nn-eed", "--allow-dirty", "--executor", "sequential"]) == 0
    assert "AUROC" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert "raw-nn-eed" in (tmp_path / "RESULTS.md").read_text()
    assert main(["methods"]) == 0 and "raw-nn" in capsys.readouterr().out
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    assert "digits" in capsys.readouterr().out


def test_help_explains_each_command(capsys):
    for cmd in ("demo", "fit", "score", "bench", "report", "datasets"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert len(capsys.readouterr().out) > 200


def test_merge_records_equals_one_run(tmp_path):
    from noveltylab.bench.runner import merge_records

    kw = dict(seeds=[0], profile="cpu", out_dir=None, label="raw-nn-eed", progress=False)
    whole = run_benchmark("raw-nn", "digits", "one-class", classes=[0, 1, 2], **kw)
    parts = [run_benchmark("raw-nn", "digits", "one-class", classes=c, **kw) for c in ([0, 1], [2])]
    merged = merge_records(parts)
    assert merged["tasks"] == whole["tasks"]
    assert merged["mean"]["auroc"] == pytest.approx(whole["mean"]["auroc"])
    assert merged["mean"]["auroc_std_tasks"] == pytest.approx(whole["mean"]["auroc_std_tasks"])
    with pytest.raises(ValueError, match="appears twice"):
        merge_records([parts[0], parts[0]])


def test_demo_runs_offline_and_skips_missing_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NOVELTYLAB_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--methods", "raw-nn", "dn2"]) == 0
    out = capsys.readouterr().out
    assert "| raw-nn | demo |" in out
    assert "dn2" in out and "skipped" in out
    assert (tmp_path / "demo" / "RESULTS.md").is_file()
    assert "raw-nn" in (tmp_path / "demo" / "RESULTS.md").read_text()


def test_run_benchmark_passes_data_dir_to_second_data_set(tmp_path, shared_data, monkeypatch):
    """The novel data set of multiclass-unlabeled is read from the bench's --data-dir, not the default cache."""
    monkeypatch.delenv("NOVELTYLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    rec = run_benchmark("raw-nn", "mnist", "multiclass-unlabeled", classes=["fashion-mnist"], profile="cpu",
                        max_train=300, protocol_options={"max_novel": 300}, data_dir=shared_data,
                        out_dir=None, progress=False, command="pytest", allow_dirty=True)
    assert rec["tasks"] == ["fashion-mnist"] and rec["mean"]["auroc"] > 0.9
    assert "data_dir" not in rec["protocol_options"]
