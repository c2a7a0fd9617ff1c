"""The benchmark engine: specs, part files, resume, retry and failure reports, merging, provenance,
fit inputs of protocols, and the Ray executor (runs Ray for real when it is installed)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltylab.bench import engine, provenance
from noveltylab.bench.engine import SequentialExecutor, run_settings
from noveltylab.bench.runner import run_benchmark
from noveltylab.bench.spec import SpecError, load_spec, load_specs, parse_spec
from noveltylab.cli import main

SPEC = """
[spec]
paper = "003"
table = "Table 4"
title = "test"

[defaults]
profile = "cpu"
protocol = "one-class"
seeds = [0, 1]

[[entry]]
label = "raw-nn-eed"
method = "raw-nn"
dataset = "digits"
classes = [0, 1, 2]
row = "raw pixels"
match = "analogue"
"""


def _write(tmp_path: Path, text: str = SPEC, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _setting(text: str = SPEC):
    return parse_spec(text, "t.toml").settings[0]


# --- spec parsing ----------------------------------------------------------------
def test_spec_parses_defaults_lists_and_variants():
    spec = parse_spec(SPEC.replace('dataset = "digits"', 'dataset = ["digits", "mnist"]') + """
[[entry.variant]]
label = "raw-nn-other"
metric = "f1"
""", "t.toml")
    assert (spec.paper, spec.table) == ("003", "Table 4")
    assert [s.dataset for s in spec.settings] == ["digits", "mnist"]
    s = spec.settings[0]
    assert s.seeds == [0, 1] and s.classes == [0, 1, 2] and s.match == "analogue" and s.profile == "cpu"
    assert s.labels == ["raw-nn-eed", "raw-nn-other"] and s.variants[0].metric == "f1"
    assert spec.select(["raw-nn-other"], ["mnist"]) == [spec.settings[1]]
    # the key changes with what changes results, not with notes
    assert _setting().key() == _setting(SPEC.replace('row = "raw pixels"', 'row = "x"\nnotes = "y"')).key()
    assert _setting().key() == _setting(SPEC.replace("seeds = [0, 1]", "seeds = [0]")).key()  # per-seed tasks
    assert _setting().key() != _setting(SPEC.replace('profile = "cpu"', 'profile = "paper"')).key()
    assert _setting().key() != s.key()  # a variant changes what the parts hold


@pytest.mark.parametrize("change, message", [
    (("[[entry]]", "[[entry]]\nepochs = 3"), "unknown key(s) ['epochs']"),
    (('method = "raw-nn"\n', ""), "missing 'method'"),
    (("seeds = [0, 1]", "seeds = [0, 0]"), "repeats a seed"),
    (("seeds = [0, 1]", "seeds = 3"), "'seeds' must be a non-empty list"),
    (('match = "analogue"', 'match = "close"'), "'match' must be one of"),
    (("classes = [0, 1, 2]", "classes = []"), "'classes' must be"),
    (('title = "test"', 'title = "test"\nowner = "x"'), "unknown [spec] key(s) ['owner']"),
    (('row = "raw pixels"', 'row = "raw pixels"\n[[entry.variant]]\nlabel = "v"'), "a variant needs"),
    (('[defaults]', '[defaults]\nprofile = "cpu"\nprofile = "x"'), "not valid TOML"),
])
def test_spec_errors_name_the_problem(change, message):
    with pytest.raises(SpecError, match=r"t\.toml.*" + __import__("re").escape(message)):
        parse_spec(SPEC.replace(*change), "t.toml")


def test_spec_without_entries_and_duplicate_records_are_refused(tmp_path):
    with pytest.raises(SpecError, match="no \\[\\[entry\\]\\] tables"):
        parse_spec('[spec]\npaper = "1"\n', "t.toml")
    with pytest.raises(SpecError, match="two entries write the same record raw-nn-eed on digits"):
        parse_spec(SPEC + SPEC[SPEC.index("[[entry]]"):], "t.toml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "absent.toml")


def test_bad_method_or_protocol_fails_before_running(tmp_path, capsys):
    spec = _write(tmp_path, SPEC.replace('method = "raw-nn"', 'method = "nope"'))
    assert main(["bench", str(spec), "--out-dir", str(tmp_path / "r"), "--allow-dirty",
                 "--executor", "sequential"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    spec = _write(tmp_path, SPEC.replace('protocol = "one-class"', 'protocol = "sideways"'))
    assert main(["bench", str(spec), "--out-dir", str(tmp_path / "r"), "--allow-dirty",
                 "--executor", "sequential"]) == 2
    assert "unknown protocol 'sideways'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --- running, parts, resume, merging -----------------------------------------------
def test_spec_run_writes_parts_then_one_record_and_resumes(tmp_path, capsys):
    spec, out = _write(tmp_path), tmp_path / "results"
    args = ["bench", str(spec), "--out-dir", str(out), "--allow-dirty", "--executor", "sequential"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "6 run, 0 resumed" in text
    parts = sorted((out / "_parts").rglob("*.json"))
    assert len(parts) == 6 and all(json.loads(p.read_text())["kind"] == "part" for p in parts)
    [rec_path] = list(out.glob("*.json"))
    rec = json.loads(rec_path.read_text())
    assert rec["label"] == "raw-nn-eed" and rec["tasks"] == ["0", "1", "2"] and rec["seeds"] == [0, 1]
    assert rec["subset"] is True and rec["failed_tasks"] == [] and rec["allow_dirty"] is True
    assert rec["paper"] == "003" and rec["paper_table"] == "Table 4" and rec["match"] == "analogue"
    for key in ("commit", "machine", "device", "threads", "date", "command", "hosts", "executor"):
        assert rec[key], key
    assert "bench" in rec["command"] and str(spec) in rec["command"]
    assert all(len(v) == 2 for e in rec["per_task"] for v in e["metrics"].values())
    assert main(["bench", str(spec), "--out-dir", str(out), "--dry-run"]) == 0
    assert "raw-nn-eed digits one-class {}: 6 tasks, 6 done" in capsys.readouterr().out
    # --to-spec prints the entry that reproduces the record
    assert main(["bench", "--to-spec", str(rec_path)]) == 0
    entry = capsys.readouterr().out
    from noveltylab.bench.engine import uncovered_records
    assert uncovered_records([rec], [parse_spec(entry, "printed.toml")]) == []
    # a rerun resumes: every task is skipped, the record is rebuilt identically from the parts
    mtimes = [p.stat().st_mtime_ns for p in parts]
    assert main(args) == 0
    assert "0 run, 6 resumed" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in parts] == mtimes
    again = json.loads(rec_path.read_text())
    assert again["mean"] == rec["mean"] and again["per_task"] == rec["per_task"]
    # a stopped run: --merge-only turns the parts there are into a subset record naming what is missing
    parts[0].unlink()
    assert main(args + ["--merge-only"]) == 0
    assert "0 run, 5 resumed" in capsys.readouterr().out
    partial = json.loads(rec_path.read_text())
    assert partial["missing_tasks"] == [parts[0].stem] and partial["subset"] is True
    # removing one part reruns exactly that task
    assert main(args) == 0
    assert "1 run, 5 resumed" in capsys.readouterr().out
    # a changed setting does not reuse parts of another one
    _write(tmp_path, SPEC.replace('[[entry]]', '[[entry]]\nparams = { k = 2 }'))
    assert main(args) == 0
    assert "6 run, 0 resumed" in capsys.readouterr().out


def test_merged_parts_equal_one_in_memory_run(tmp_path):
    """Parts written by separate runs over disjoint classes are reused by the setting of every class
    (the class list is not part of the key), and merge into the record of one run."""
    whole = run_settings([_setting()], out_dir=None, progress=False).records[0]
    out = tmp_path / "r"
    for classes in ("[0]", "[1, 2]"):
        s = _setting(SPEC.replace("classes = [0, 1, 2]", f"classes = {classes}"))
        assert run_settings([s], out_dir=out, allow_dirty=True, progress=False).ran == 2 * len(s.classes)
    merged = run_settings([_setting()], out_dir=out, allow_dirty=True, progress=False)
    assert merged.ran == 0 and merged.skipped == 6
    rec = merged.records[0]
    assert rec["tasks"] == whole["tasks"]
    assert rec["mean"]["auroc"] == pytest.approx(whole["mean"]["auroc"])
    assert rec["mean"]["auroc_std_tasks"] == pytest.approx(whole["mean"]["auroc_std_tasks"])
    assert rec["mean"]["auroc_std_seeds"] == pytest.approx(whole["mean"]["auroc_std_seeds"])


def test_a_run_of_every_draw_of_an_entry_is_a_complete_record(tmp_path):
    """An entry's draws of several normal classes are its own task list, not a subset of the protocol's
    single classes: when every draw ran the record is complete (no task suffix in its name); a run of
    some of the draws (as `--classes 0+1` gives) is a subset."""
    text = SPEC.replace("classes = [0, 1, 2]", "classes = [[0, 1], [2, 3]]").replace("seeds = [0, 1]", "seeds = [0]")
    rec = run_settings([_setting(text)], out_dir=tmp_path, allow_dirty=True, progress=False).records[0]
    assert rec["tasks"] == ["0+1", "2+3"] and not rec["subset"]
    assert Path(rec["file"]).name == "raw-nn-eed__digits__one-class__cpu.json"
    some = dataclasses.replace(_setting(text), classes=["0+1"])
    part = run_settings([some], out_dir=tmp_path, allow_dirty=True, progress=False)
    assert part.ran == 0 and part.records[0]["subset"] and part.records[0]["tasks"] == ["0+1"]
    assert Path(part.records[0]["file"]).name != "raw-nn-eed__digits__one-class__cpu.json"


def test_two_class_lists_of_one_setting_in_one_run_share_tasks(tmp_path):
    """A spec may name one setting with every class and again with one class: the shared task runs
    once and each setting's record holds its own tasks."""
    full, one = _setting(), _setting(SPEC.replace("classes = [0, 1, 2]", "classes = [1]"))
    assert full.key() == one.key()
    summary = run_settings([full, one], out_dir=tmp_path, allow_dirty=True, progress=False)
    assert summary.ran == 6  # three classes x two seeds; class 1 is not run twice
    by_tasks = {tuple(r["tasks"]): r for r in summary.records}
    assert set(by_tasks) == {("0", "1", "2"), ("1",)}
    assert (by_tasks[("1",)]["per_task"][0]["metrics"]["auroc"]
            == by_tasks[("0", "1", "2")]["per_task"][1]["metrics"]["auroc"])


def test_more_seeds_rerun_only_the_new_seeds(tmp_path):
    """A setting grown from one seed to three reuses the first seed's parts (same key, same part
    files) and runs only seeds 1 and 2; its record then holds all three seeds with their spread."""
    one = _setting(SPEC.replace("seeds = [0, 1]", "seeds = [0]"))
    first = run_settings([one], out_dir=tmp_path, allow_dirty=True, progress=False)
    assert first.ran == 3 and first.records[0]["seeds"] == [0]
    three = dataclasses.replace(one, seeds=[0, 1, 2])
    grown = run_settings([three], out_dir=tmp_path, allow_dirty=True, progress=False)
    assert (grown.ran, grown.skipped) == (6, 3)
    rec = grown.records[0]
    assert rec["seeds"] == [0, 1, 2] and rec["mean"]["auroc_std_seeds"] >= 0
    assert all(len(t["metrics"]["auroc"]) == 3 for t in rec["per_task"])
    assert [t["metrics"]["auroc"][0] for t in rec["per_task"]] == \
        [t["metrics"]["auroc"][0] for t in first.records[0]["per_task"]]


def test_parts_rebuilt_from_a_record_let_it_grow_seeds(tmp_path, capsys):
    """With its part files gone, a one-seed record (with a variant) grows to two seeds: --parts-from-records
    rebuilds seed 0's parts from the records, only seed 1 runs, and seed 0's results are the record's."""
    one = SPEC.replace("seeds = [0, 1]", "seeds = [0]") + '[[entry.variant]]\nlabel = "raw-nn-f1"\nmetric = "f1"\n'
    import shutil

    from noveltylab.bench.record_parts import parts_from_records

    out = tmp_path / "out"
    whole = dataclasses.replace(parse_spec(one, "t.toml").settings[0], classes=None)
    first = run_settings([whole], out_dir=out, allow_dirty=True, progress=False)
    before = {r["label"]: r for r in first.records}
    assert not before["raw-nn-eed"]["subset"] and len(before) == 2
    shutil.rmtree(out / "_parts")
    grown = _write(tmp_path, one.replace("seeds = [0]", "seeds = [0, 1]").replace("classes = [0, 1, 2]\n", ""))
    assert main(["bench", str(grown), "--out-dir", str(out), "--allow-dirty", "--executor", "sequential",
                 "--parts-from-records"]) == 0
    text = capsys.readouterr().out
    assert "10 part file(s) rebuilt from its record" in text and "10 run, 10 resumed" in text
    after = {json.loads(p.read_text())["label"]: json.loads(p.read_text()) for p in out.glob("*__cpu.json")}
    for label, rec in before.items():
        new = after[label]
        assert new["seeds"] == [0, 1] and not new["subset"]
        assert [t["metrics"]["auroc"][0] for t in new["per_task"]] == [t["metrics"]["auroc"][0] for t in rec["per_task"]]
    # merging only the rebuilt parts gives back the record itself
    rebuilt = [json.loads(p.read_text()) for p in sorted((out / "_parts").rglob("*seed0.json"))]
    assert all(p["rebuilt_from"].startswith("raw-nn-eed__digits") for p in rebuilt)
    again = engine.records_from_parts(whole, rebuilt, task_order=before["raw-nn-eed"]["tasks"])
    for rec in again:
        assert rec["per_task"] == before[rec["label"]]["per_task"] and rec["mean"] == before[rec["label"]]["mean"]
    # a record of another setting (other parameters) is refused, naming both keys
    other = dataclasses.replace(whole, params={"k": 3})
    with pytest.raises(SpecError, match="made by another setting"):
        parts_from_records(other, out)
    # a subset record (a stopped run, a failed task) cannot stand in for the entry
    path = out / "raw-nn-eed__digits__one-class__cpu.json"
    complete = path.read_text()
    path.write_text(json.dumps({**json.loads(complete), "subset": True}))
    with pytest.raises(SpecError, match="subset record"):
        parts_from_records(whole, out)
    path.write_text(complete)
    (out / "raw-nn-f1__digits__one-class__cpu.json").unlink()
    with pytest.raises(SpecError, match="no finished record raw-nn-f1__digits__one-class__cpu.json"):
        parts_from_records(whole, out)


def test_classes_flag_splits_a_spec_entry_over_runs(tmp_path, capsys):
    """--classes with a spec runs only those tasks of the entry (as a second machine would); a rerun of
    the whole entry then runs only the rest and merges every part into the full record."""
    spec, out = _write(tmp_path), tmp_path / "out"
    args = ["bench", str(spec), "--out-dir", str(out), "--allow-dirty", "--executor", "sequential"]
    assert main(args + ["--classes", "2"]) == 0
    assert "2 run, 0 resumed" in capsys.readouterr().out
    assert main(args) == 0
    assert "4 run, 2 resumed" in capsys.readouterr().out
    full = json.loads((out / "raw-nn-eed__digits__one-class__cpu__0-1-2.json").read_text())
    assert full["tasks"] == ["0", "1", "2"] and full["missing_tasks"] == []
    assert all(len(v) == 2 for e in full["per_task"] for v in e["metrics"].values())  # both seeds of each


def test_failed_task_is_retried_reported_and_others_kept(tmp_path, monkeypatch, capsys):
    calls: dict[str, int] = {}
    real = engine.run_task

    def flaky(job, *a, **k):
        calls[job.id] = calls.get(job.id, 0) + 1
        if job.name == "1" and job.seed == 0:
            raise RuntimeError("boom: simulated crash")
        if job.name == "2" and calls[job.id] == 1:
            raise RuntimeError("transient")
        return real(job, *a, **k)

    monkeypatch.setattr(engine, "run_task", flaky)
    spec, out = _write(tmp_path), tmp_path / "results"
    status = main(["bench", str(spec), "--out-dir", str(out), "--allow-dirty", "--executor", "sequential",
                   "--retries", "2"])
    assert status == 1
    text = capsys.readouterr()
    assert "FAILED raw-nn-eed 1__seed0: RuntimeError: boom: simulated crash" in text.out
    assert calls["1__seed0"] == 3 and calls["2__seed0"] == 2  # retried; the transient one recovered
    failed = list((out / "_parts").rglob("*.failed.json"))
    assert [p.name for p in failed] == ["1__seed0.failed.json"]
    assert "boom" in json.loads(failed[0].read_text())["error"]
    [rec] = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert rec["failed_tasks"] == ["1__seed0"] and rec["subset"] is True
    assert rec["tasks"] == ["0", "1", "2"]  # class 1 still has its seed-1 run
    # fixed: a rerun only runs the failed task and clears its failure file
    monkeypatch.setattr(engine, "run_task", real)
    assert main(["bench", str(spec), "--out-dir", str(out), "--allow-dirty", "--executor", "sequential"]) == 0
    assert "1 run, 5 resumed from part files, 0 failed" in capsys.readouterr().out
    assert not list((out / "_parts").rglob("*.failed.json"))


def test_scoring_metric_and_protocol_variants(tmp_path):
    text = """
[[entry]]
label = "cae-nn-qed"
method = "cae-nn"
dataset = "digits"
classes = [0, 1]
params = { epochs = 2 }
[[entry.variant]]
label = "cae-nn-eed"
scoring = { scoring = "nn-eed" }
[[entry.variant]]
label = "cae-nn-f1"
metric = "f1_max"
[[entry.variant]]
label = "cae-nn-qed"
protocol = "outlier-fraction"
options = { fraction = 0.2 }
"""
    spec = parse_spec(text, "v.toml")
    res = run_settings(spec.settings, spec=spec, out_dir=tmp_path, allow_dirty=True, progress=False)
    recs = {(r["label"], r["protocol"]): r for r in res.records}
    assert set(recs) == {("cae-nn-qed", "one-class"), ("cae-nn-eed", "one-class"), ("cae-nn-f1", "one-class"),
                         ("cae-nn-qed", "outlier-fraction")}
    base, eed = recs[("cae-nn-qed", "one-class")], recs[("cae-nn-eed", "one-class")]
    assert eed["config"]["scoring"] == "nn-eed" and base["config"]["scoring"] != "nn-eed"
    assert eed["derived_from"] == "cae-nn-qed" and "same trained models" in eed["notes"]
    assert eed["train_seconds_per_task"] == base["train_seconds_per_task"]
    f1 = recs[("cae-nn-f1", "one-class")]
    assert f1["mean"]["auroc"] == pytest.approx(base["mean"]["f1_max"])
    frac = recs[("cae-nn-qed", "outlier-fraction")]
    assert frac["protocol_options"]["fraction"] == 0.2
    assert frac["per_task"][0]["n_test"] < base["per_task"][0]["n_test"]
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_variant_errors_are_clear(tmp_path):
    bad_metric = SPEC + '[[entry.variant]]\nlabel = "x"\nmetric = "auroc_nothing"\n'
    res = run_settings(parse_spec(bad_metric, "t.toml").settings, out_dir=None, progress=False,
                       executor=SequentialExecutor(retries=0))
    assert res.failed and "gives no metric 'auroc_nothing'" in res.failed[0][2]
    no_rescore = SPEC + '[[entry.variant]]\nlabel = "x"\nscoring = { k = 2 }\n'
    res = run_settings(parse_spec(no_rescore, "t.toml").settings, out_dir=None, progress=False,
                       executor=SequentialExecutor(retries=0))
    assert res.failed and "cannot be re-scored without retraining" in res.failed[0][2]


# --- provenance ------------------------------------------------------------------
def test_dirty_tree_is_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(provenance, "git_commit", lambda cwd=None: "abc1234+dirty")
    monkeypatch.setattr(provenance, "dirty_files", lambda cwd=None: ["src/noveltylab/knn.py"])
    spec, out = _write(tmp_path), tmp_path / "results"
    assert main(["bench", str(spec), "--out-dir", str(out), "--executor", "sequential"]) == 2
    err = capsys.readouterr().err
    assert "refusing to benchmark a dirty tree (commit abc1234+dirty; uncommitted changes in " \
           "src/noveltylab/knn.py)" in err and "--allow-dirty" in err
    assert not out.exists()
    assert main(["bench", str(spec), "--out-dir", str(out), "--executor", "sequential", "--allow-dirty"]) == 0
    rec = json.loads(next(out.glob("*.json")).read_text())
    assert rec["commit"] == "abc1234+dirty" and rec["allow_dirty"] is True
    monkeypatch.setattr(provenance, "git_commit", lambda cwd=None: "abc1234")
    assert provenance.require_clean(False) == "abc1234"


def test_commit_is_read_from_the_package_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git checkout: the commit still comes from the code's checkout
    assert provenance.git_commit() == provenance.git_commit(provenance.PACKAGE_DIR)
    assert provenance.git_commit(tmp_path) == "unknown"


# --- protocol fit inputs (issue 13 item 7) ------------------------------------------
def _novel_folder(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        d = tmp_path / "novel" / split / "blob"
        d.mkdir(parents=True)
        for i in range(40):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(d / f"{i}.png")
    return f"folder:{tmp_path / 'novel'}"


def test_labels_of_the_labeled_protocol_reach_fit_through_the_cli(tmp_path, monkeypatch, capsys):
    from noveltylab.methods.unode import UNODE

    seen = []
    real_fit = UNODE.fit

    def spy(self, images, val=None, labels=None):
        seen.append(None if labels is None else np.asarray(labels))
        return real_fit(self, images, val, labels=labels)

    monkeypatch.setattr(UNODE, "fit", spy)
    novel = _novel_folder(tmp_path)
    out = tmp_path / "results"
    assert main(["bench", "--method", "unode", "--profile", "test", "--dataset", "digits",
                 "--protocol", "multiclass-labeled", "--classes", novel, "--param", "aug_weights=rotation:1",
                 "--out-dir", str(out), "--allow-dirty", "--executor", "sequential"]) == 0
    assert len(seen) == 1 and seen[0] is not None
    assert set(np.unique(seen[0])) == set(range(10))  # the ten digit classes of the normal training images
    # the same protocol with a method whose fit takes no labels is an error, not a silent unlabeled run
    assert main(["bench", "--method", "raw-nn", "--dataset", "digits", "--protocol", "multiclass-labeled",
                 "--classes", novel, "--out-dir", str(out), "--allow-dirty", "--executor", "sequential"]) == 1
    assert "raw-nn.fit takes no 'labels' argument" in capsys.readouterr().out


# --- Ray ---------------------------------------------------------------------------
def test_ray_executor_runs_tasks_as_ray_tasks(tmp_path):
    ray = pytest.importorskip("ray")
    from noveltylab.bench.ray_executor import RayExecutor

    ex = RayExecutor(num_cpus=2, threads=1, retries=1)
    # a class that does not exist fails inside its Ray worker: retried, reported, the others kept
    broken = _setting(SPEC.replace("classes = [0, 1, 2]", "classes = [0, 99]").replace('label = "raw-nn-eed"',
                                                                                      'label = "broken"'))
    try:
        res = run_settings([_setting(), broken], out_dir=tmp_path, executor=ex, allow_dirty=True, progress=False)
        assert ray.is_initialized()
        hosts_pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "_parts").rglob("*seed?.json")}
    finally:
        ex.shutdown()
    rec = res.records[0]
    assert rec["executor"] == "ray" and res.ran == 8
    assert sorted(f[1] for f in res.failed) == ["99__seed0", "99__seed1"] and "99" in res.failed[0][2]
    part_of_broken = [r for r in res.records if r["label"] == "broken"][0]
    assert part_of_broken["tasks"] == ["0"] and part_of_broken["failed_tasks"] == ["99__seed0", "99__seed1"]
    assert len(list((tmp_path / "_parts").rglob("*.failed.json"))) == 2
    assert len(hosts_pids) >= 1 and all(pid != __import__("os").getpid() for pid in hosts_pids)
    seq = run_settings([_setting()], out_dir=None, progress=False).records[0]
    assert rec["mean"]["auroc"] == pytest.approx(seq["mean"]["auroc"])  # same numbers as in-process


def test_repository_specs_parse():
    specs = load_specs(Path(__file__).resolve().parents[1] / "benchmarks" / "specs")
    for spec in specs:
        assert spec.settings and spec.paper is not None


def test_run_benchmark_flag_form_is_a_one_entry_spec(tmp_path):
    rec = run_benchmark("raw-nn", "digits", "one-class", classes=[0], out_dir=tmp_path, progress=False,
                        command="pytest", allow_dirty=True)
    assert rec["command"] == "pytest" and (tmp_path / "_parts").is_dir()
    again = run_benchmark("raw-nn", "digits", "one-class", classes=[0], out_dir=tmp_path, progress=False,
                          command="pytest", allow_dirty=True)
    assert again["per_task"] == rec["per_task"]


def test_every_result_record_is_reproduced_by_a_spec():
    """Each novelty record under benchmarks/results has a spec entry (or variant) with its settings, so
    `noveltylab bench benchmarks/specs/<table>.toml --only <label>` regenerates it."""
    from noveltylab.bench.engine import record_identity, uncovered_records
    from noveltylab.bench.report import load_results

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    records, _ = load_results(root / "results")
    missing = uncovered_records(records, load_specs(root / "specs"))
    assert not missing, "records without a spec entry: " + ", ".join(Path(r["_path"]).name for r in missing[:10])
    # the check is not vacuous: a record with another parameter is not covered
    if records:
        changed = {**records[0], "params_overrides": {**records[0].get("params_overrides", {}), "zzz": 1}}
        assert uncovered_records([changed], load_specs(root / "specs")) == [changed]
        assert record_identity(changed) == record_identity(records[0])


def test_named_extra_metrics(tmp_path):
    spec = parse_spec(SPEC.replace('row = "raw pixels"', 'row = "raw pixels"\nextras = ["bottom1"]'), "t.toml")
    rec = run_settings(spec.settings, out_dir=None, progress=False).records[0]
    for e in rec["per_task"]:
        b, auc = e["metrics"]["bottom1_auroc"][0], e["metrics"]["auroc"][0]
        assert b <= auc and int(e["metrics"]["bottom1_class"][0]) != e["task"]
    with pytest.raises(SpecError, match="unknown extras \\['nope'\\]"):
        parse_spec(SPEC.replace('row = "raw pixels"', 'extras = ["nope"]'), "t.toml")


def test_diagnostics_are_recorded_and_fallback_tasks_leave_the_mean(tmp_path, monkeypatch):
    """A detector's diagnostics() reach each task of the record; a task where the method fell back
    (e.g. FITYMI scored with pretrained features) is named and not counted in the mean."""
    from noveltylab.methods.baselines import RawNN

    current = {"task": None}

    def diagnostics(self):
        return {"fallback": "pretrained features" if current["task"] == "1" else None,
                "n": int(self.index_.ntotal)}

    real_run = engine.run_task

    def run_task(job, *a, **k):
        current["task"] = job.name
        return real_run(job, *a, **k)

    monkeypatch.setattr(RawNN, "diagnostics", diagnostics, raising=False)
    monkeypatch.setattr(engine, "run_task", run_task)
    rec = run_settings([_setting()], out_dir=None, progress=False, executor=SequentialExecutor()).records[0]
    assert rec["fallback_tasks"] == ["1"]
    per = {e["name"]: e for e in rec["per_task"]}
    assert all(d["n"] > 0 for d in per["0"]["diagnostics"]) and per["1"]["diagnostics"][0]["fallback"]
    kept = [np.mean(per[n]["metrics"]["auroc"]) for n in ("0", "2")]
    assert rec["mean"]["auroc"] == pytest.approx(np.mean(kept))
    assert rec["mean"]["auroc"] != pytest.approx(np.mean([np.mean(e["metrics"]["auroc"]) for e in per.values()]))


def test_variant_paper_key_rule():
    """The entry's paper_key covers its own label only: a plain-score variant is not compared with the
    method's paper number unless it names its own paper_key (issue 12: a plain NLN row was shown
    against the NLN paper value)."""
    spec = parse_spec(SPEC.replace('match = "analogue"', 'match = "analogue"\npaper_key = "raw-nn-qed"') + """
[[entry.variant]]
label = "raw-nn-eed"
protocol = "near-nd"
[[entry.variant]]
label = "raw-nn-plain"
scoring = { index = "Flat" }
[[entry.variant]]
label = "raw-nn-abl"
paper_key = "raw-nn-abl-paper"
scoring = { index = "PQ16x4" }
""", "t.toml")
    s = spec.settings[0]
    assert s.paper_key_for("raw-nn-eed") == "raw-nn-qed"  # same label under another protocol
    assert s.paper_key_for("raw-nn-plain") is None
    assert s.paper_key_for("raw-nn-abl") == "raw-nn-abl-paper"
    # paper_key is provenance, not a result-changing setting
    other = parse_spec(spec_text := SPEC + '[[entry.variant]]\nlabel = "v"\nscoring = { index = "Flat" }\n', "t.toml")
    keyed = parse_spec(spec_text.replace('label = "v"', 'label = "v"\npaper_key = "x"'), "t.toml")
    assert other.settings[0].key() == keyed.settings[0].key()


def test_a_record_of_class_draws_needs_an_entry_naming_the_draws():
    """Draws of several normal classes are not the protocol's default tasks: an entry without them
    would rerun single classes, so it must not count as reproducing the record."""
    from noveltylab.bench.engine import uncovered_records
    from noveltylab.bench.spec import entry_toml

    rec = {"label": "raw-nn-eed", "method": "raw-nn", "dataset": "digits", "protocol": "one-class",
           "profile": "cpu", "seeds": [0], "subset": False, "params_overrides": {}, "config": {},
           "per_task": [{"task": [0, 1], "name": "0+1"}, {"task": [2, 3], "name": "2+3"}]}
    plain = parse_spec(SPEC.replace("classes = [0, 1, 2]\n", "").replace("seeds = [0, 1]", "seeds = [0]"), "p.toml")
    assert uncovered_records([rec], [plain]) == [rec]
    printed = entry_toml(rec)
    assert "classes = [[0, 1], [2, 3]]" in printed
    assert uncovered_records([rec], [parse_spec(printed, "printed.toml")]) == []


def test_machine_names_the_cpu_model(monkeypatch):
    """Records name the CPU model: the same seed can train to other numbers on another CPU model."""
    monkeypatch.setattr(provenance, "cpu_model", lambda: "Example CPU 9000")
    text = provenance.machine()
    assert "(Example CPU 9000)" in text and text.endswith("cpus")
    monkeypatch.setattr(provenance, "cpu_model", lambda: "")
    assert "(" not in provenance.machine()


def test_a_task_leaves_the_callers_thread_count_as_it_was():
    """--threads applies to the task only: the sequential executor restores torch's and FAISS's thread
    counts, so a later computation in the same process (another test, a notebook) is not changed."""
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    try:
        rec = run_settings([_setting()], out_dir=None, executor=SequentialExecutor(threads=1),
                           progress=False).records[0]
        assert rec["threads"] == 1
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (2, 2)
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def test_a_class_named_or_numbered_is_one_task():
    """`--classes airplane` and `classes = [0]` are the same task: names of the data set's classes
    become indices (other strings, e.g. a data set of novel images, stay), and a record keeps the
    setting's task value whatever spelling its parts were run with."""
    from noveltylab.bench.runner import _parse_task

    names = ["airplane", "automobile", "bird"]
    assert _parse_task("automobile", names) == 1 and _parse_task("2", names) == 2
    assert _parse_task("airplane+bird", names) == [0, 2] and _parse_task("mnist", names) == "mnist"
    setting = _setting(SPEC.replace("seeds = [0, 1]", "seeds = [0]"))
    parts = run_settings([setting], out_dir=None, progress=False).records[0]
    part = {"kind": "part", "key": setting.key(), "label": setting.label, "task": "zero", "name": "0", "seed": 0,
            "results": [{"metrics": {"auroc": 0.9}, "train_seconds": 1.0, "score_images_per_s": 1.0, "n_train": 1,
                         "n_val": 1, "n_test": 2, "n_novel": 1}],
            "commit": "abc", "machine": "m", "device": "cpu", "threads": 1, "seconds": 1.0}
    rec = engine.records_from_parts(setting, [part], task_order=["0"], tasks={"0": 0})[0]
    assert rec["per_task"][0]["task"] == 0 and parts["per_task"][0]["task"] == 0
