"""UNODE benchmark driver (issue 6): runs that reuse one trained model for several rows.

  python benchmarks/unode_study.py oneclass --dataset mnist --max-train 500 [--classes 0 1] \
      [--param key=value ...] [--label unode] [--corrupt] [--severity 3]

trains UNODE once per class through ``noveltylab.bench.runner.run_benchmark`` (one-class,
cpu profile) and, from the same model, records
  * the score-term ablation (Table 6): ``auroc_sim`` (O_sim only) and ``auroc_bin``
    (binary head only) as extra metrics of the one-class record;
  * with ``--corrupt``: the corrupted test set (``one-class-corrupted``, every test image
    given one of 11 common corruptions at ``--severity``, seeded) as a second record
    ``<label>__<dataset>__one-class-corrupted-...``. The models are the clean one-class
    models; only the test images differ.

  python benchmarks/unode_study.py labeled --dataset cifar10-jpeg --novel mnist fashion-mnist ...

runs the labeled multi-class protocol (UNODE.fit with the class labels).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from noveltylab import metrics
from noveltylab.bench.runner import (_assemble, _task_name, current_command, evaluate_split, run_benchmark,
                                     set_threads, write_record)
from noveltylab.cli import _pairs
from noveltylab.data import load_dataset, make_splits
from noveltylab.data.corrupted import corrupt_images
from noveltylab.detector import create

_CORR: dict[tuple, np.ndarray] = {}
PARTS = Path("benchmarks") / "results" / "_scratch" / "unode_parts"


def oneclass(args: argparse.Namespace) -> None:
    params = _pairs(args.param, "--param")
    corrupted: dict[str, dict[str, Any]] = {}
    weights_log: list[dict[str, Any]] = []

    def terms(det, comps, labels) -> dict[str, float]:
        out = {"auroc_sim": float(metrics.auroc(labels, -comps["sim"]))}
        if det.head_trained_:
            out["auroc_bin"] = float(metrics.auroc(labels, -comps["bin"]))
        return out

    def extra(det, split, scores) -> dict[str, float]:
        out = terms(det, det.score_components(split.test), split.test_labels)
        if args.corrupt:
            key = (len(split.test), args.severity)
            if key not in _CORR:
                _CORR[key] = corrupt_images(split.test, "mixed", args.severity, seed=0)[0]
            xc = _CORR[key]
            t0 = time.perf_counter()
            comps = det.score_components(xc)   # one pass gives the score and both terms
            dt = time.perf_counter() - t0
            sc = -(comps["sim"] + (det.score_lambda * comps["bin"] if det.head_trained_ and
                                   det.score_terms == "both" else 0.0)) if det.score_terms != "bin" else -comps["bin"]
            m = metrics.summary(split.test_labels, sc, det.threshold_)
            m.update(terms(det, comps, split.test_labels))
            corrupted[split.name] = {"metrics": m, "ips": len(xc) / max(dt, 1e-9)}
            out["auroc_corrupted"] = m["auroc"]
        weights_log.append({"task": split.name, "weights": dict(det.weights_), "divergences": dict(det.divergences_),
                            "source": det.weights_source_})
        return out

    parts = PARTS / args.label / args.dataset
    parts.mkdir(parents=True, exist_ok=True)
    train_set = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    classes = args.classes if args.classes else [str(c) for c in range(train_set.num_classes)]
    for c in classes:
        corrupted.clear()
        rec = run_benchmark("unode", args.dataset, "one-class", classes=[c], seeds=args.seeds,
                            profile=args.profile, params=params, max_train=args.max_train, label=args.label,
                            notes=args.notes, data_dir=args.data_dir, command=current_command(), threads=1,
                            extra_metrics=extra, out_dir=None)
        (parts / f"clean_{c}.json").write_text(json.dumps(rec, default=str))
        if args.corrupt:
            crec = _corrupted_record(rec, corrupted, args)
            (parts / f"corrupted_{c}.json").write_text(json.dumps(crec, default=str))
        print("class", c, rec["mean"].get("auroc"), rec["mean"].get("auroc_corrupted"), weights_log[-1], flush=True)
        merge(parts, "clean", train_set.num_classes)
        if args.corrupt:
            merge(parts, "corrupted", train_set.num_classes)


def _corrupted_record(rec: dict[str, Any], corrupted: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict:
    crec = copy.deepcopy(rec)
    crec["protocol"] = "one-class-corrupted"
    crec["protocol_options"] = {**rec["protocol_options"], "corruption": "mixed", "severity": args.severity}
    crec["notes"] = (f"{args.notes} Same trained models as the one-class record; test images (normal and "
                     f"novel) each given one of 11 common corruptions at severity {args.severity} "
                     "(seeded, corruption_seed=0).").strip()
    for entry, nm in zip(crec["per_task"], list(corrupted)):
        m = corrupted[nm]["metrics"]
        entry["metrics"] = {k: [v] for k, v in m.items()}
        entry["score_images_per_s"] = [corrupted[nm]["ips"]]
    return crec


def merge(parts: Path, kind: str, n_classes: int) -> Path | None:
    """Merge the per-class records in ``parts`` into one record (written to benchmarks/results)."""
    recs = [json.loads(p.read_text()) for p in sorted(parts.glob(f"{kind}_*.json"))]
    if not recs:
        return None
    per_task: dict[str, dict[str, Any]] = {}
    for r in recs:
        for e in r["per_task"]:
            e = {k: v for k, v in e.items() if k != "mean"}
            per_task[e["name"]] = e
    order = {}
    for r in recs:
        for e in r["per_task"]:
            order[e["name"]] = e["task"]
    per_task = dict(sorted(per_task.items(), key=lambda kv: int(kv[1]["task"]) if str(kv[1]["task"]).isdigit()
                           else str(kv[1]["task"])))
    r0 = recs[0]
    dur = sum(r.get("duration_seconds", 0) for r in recs)
    commands = list(dict.fromkeys(r["command"] for r in recs))  # every run that produced a part, in order
    notes = recs[-1]["notes"] if len(commands) > 1 else r0["notes"]
    out = _assemble(r0["method"], r0["dataset"], r0["protocol"], r0["protocol_options"], r0["profile"],
                    r0["params_overrides"], r0["config"], r0["seeds"], per_task, r0["label"], notes,
                    " && ".join(commands), dur, None)
    out["subset"] = len(per_task) < n_classes
    out["peak_memory_mb"] = max(r.get("peak_memory_mb", 0) for r in recs)
    path = Path(write_record(out))
    stem = "__".join(path.stem.split("__")[:4])
    for old in path.parent.glob(stem + "*.json"):  # earlier partial merges of the same record
        if old.name != path.name and "__".join(old.stem.split("__")[:4]) == stem:
            old.unlink()
    return path


def labeled(args: argparse.Namespace) -> None:
    params = _pairs(args.param, "--param")
    set_threads(1)
    t_start = time.perf_counter()
    tr = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    te = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    per_task: dict[str, dict[str, Any]] = {}
    options = {"max_train": args.max_train, "data_dir": args.data_dir}
    for task, split in make_splits("multiclass-labeled", tr, te, args.novel, seed=0, **options):
        det = create("unode", profile=args.profile, **params)
        labels = split.info["train_labels"]
        orig_fit = det.fit
        det.fit = lambda x, val=None, _f=orig_fit, _l=labels: _f(x, val, labels=_l)  # type: ignore[method-assign]
        res = evaluate_split(det, split)
        name = _task_name(task, tr.class_names)
        per_task[name] = {"task": task, "name": name, "metrics": {k: [v] for k, v in res["metrics"].items()},
                          "train_seconds": [res["train_seconds"]], "score_images_per_s": [res["score_images_per_s"]],
                          "n_train": res["n_train"], "n_val": res["n_val"], "n_test": res["n_test"],
                          "n_novel": res["n_novel"]}
        print(name, res["metrics"]["auroc"], flush=True)
        config = {k: v for k, v in det.get_params().items() if k != "seed"}
    opts = {"max_train": args.max_train}
    rec = _assemble("unode", args.dataset, "multiclass-labeled", opts, args.profile, params, config, [0], per_task,
                    args.label, args.notes, current_command(), time.perf_counter() - t_start, None)
    print("labeled", rec["mean"].get("auroc"), write_record(rec), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("oneclass", "labeled"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", required=True)
        p.add_argument("--classes", nargs="*", default=None)
        p.add_argument("--novel", nargs="*", default=["mnist", "fashion-mnist"])
        p.add_argument("--seeds", nargs="*", type=int, default=[0])
        p.add_argument("--profile", default="cpu")
        p.add_argument("--param", nargs="*", default=[])
        p.add_argument("--max-train", type=int, default=None)
        p.add_argument("--label", default="unode")
        p.add_argument("--notes", default="")
        p.add_argument("--data-dir", default=os.environ.get("NOVELTYLAB_DATA", "/work/shared/data"))
        p.add_argument("--corrupt", action="store_true")
        p.add_argument("--severity", type=int, default=3)
    args = ap.parse_args()
    {"oneclass": oneclass, "labeled": labeled}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
