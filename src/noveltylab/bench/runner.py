"""Benchmark runner: source -> protocol -> detector -> metrics -> one JSON result file.

A record holds everything needed to trust and repeat a figure: the method
and its full configuration, data set, protocol, per-task and mean +- std
metrics over seeds, training seconds, scoring images/s, peak memory, the git
commit and the exact command.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import json
import logging
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import metrics
from ..data import load_dataset, make_splits
from ..data.protocols import PROTOCOLS, Split
from ..detector import Detector, json_default, create, get_class, resolve_device

log = logging.getLogger("noveltylab.bench")
SCHEMA = 1
DEFAULT_OUT = Path("benchmarks") / "results"
CALIBRATION_FPR = 0.05

ExtraMetrics = Callable[[Detector, Split, np.ndarray], dict[str, float]]


def git_commit(cwd: str | Path | None = None) -> str:
    """Short commit hash of the working tree, with ``+dirty`` when files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=cwd, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=cwd, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "uncommitted") + ("+dirty" if dirty else "")


def current_command() -> str:
    """The command line that started this process, shell-quoted."""
    prog = Path(sys.argv[0]).name
    prog = "noveltylab" if prog in ("noveltylab", "__main__.py", "cli.py") else f"python {sys.argv[0]}"
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and CUDA peak allocation when used), in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    if torch.cuda.is_available():
        rss += torch.cuda.max_memory_allocated() / 2 ** 20
    return round(rss, 1)


def set_threads(threads: int | None) -> None:
    """Limit torch and FAISS CPU threads (benchmarks sharing a machine)."""
    if threads:
        torch.set_num_threads(threads)
        import faiss

        faiss.omp_set_num_threads(threads)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


def _task_name(task: Any, class_names: list[str]) -> str:
    if isinstance(task, (list, tuple)):
        return "+".join(_task_name(t, class_names) for t in task)
    if isinstance(task, (int, np.integer)) and 0 <= int(task) < len(class_names):
        return class_names[int(task)]
    return str(task)


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=0)) if a.size > 1 else 0.0


def evaluate_split(det: Detector, split: Split, extra_metrics: ExtraMetrics | None = None) -> dict[str, Any]:
    """Fit ``det`` on one split, calibrate on its normal validation images, score the test set."""
    t0 = time.perf_counter()
    det.fit(split.train, val=split.val if len(split.val) else None)
    train_s = time.perf_counter() - t0
    threshold = None
    if len(split.val) >= 2:
        det.calibrate(split.val, fpr=CALIBRATION_FPR)
        threshold = det.threshold_
    t0 = time.perf_counter()
    scores = det.score(split.test)
    score_s = time.perf_counter() - t0
    m = metrics.summary(split.test_labels, scores, threshold)
    if split.test_masks is not None and det.localises and split.test_masks.any():
        maps = det.anomaly_map(split.test)
        m["pixel_auroc"] = metrics.pixel_auroc(split.test_masks, maps)
    components = getattr(det, "score_components", None)
    if components is not None:  # per-term AUROC of detectors whose score sums terms (higher term = more normal)
        for name, values in components(split.test).items():
            m.setdefault(f"auroc_{name}", metrics.auroc(split.test_labels, -np.asarray(values)))
    if extra_metrics is not None:
        m.update(extra_metrics(det, split, scores))
    return {"metrics": m, "train_seconds": train_s,
            "score_images_per_s": len(split.test) / max(score_s, 1e-9), "n_train": len(split.train),
            "n_val": len(split.val), "n_test": len(split.test), "n_novel": int(split.test_labels.sum())}


def run_benchmark(method: str, dataset: str, protocol: str, *, classes: Sequence[Any] | None = None,
                  seeds: Sequence[int] = (0,), profile: str | None = "cpu", params: dict[str, Any] | None = None,
                  protocol_options: dict[str, Any] | None = None, max_train: int | None = None,
                  label: str | None = None, notes: str = "", data_dir: str | Path | None = None,
                  out_dir: str | Path | None = DEFAULT_OUT, command: str | None = None,
                  threads: int | None = None, device: str | None = None,
                  extra_metrics: ExtraMetrics | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``method`` on every task of ``protocol`` for each seed and write one result file.

    ``classes``: tasks to run (default: every class); ``params``: constructor
    overrides on top of ``profile``; ``protocol_options``: e.g. ``{"fraction": 0.2}``.
    Returns the record (also written to ``out_dir`` unless it is None).
    """
    params = dict(params or {})
    if device is not None:
        params["device"] = device
    cls = get_class(method)  # fails early on an unknown method
    if profile is not None and profile not in cls.profiles:
        raise KeyError(f"method {method!r} has no profile {profile!r}; profiles: {sorted(cls.profiles)}")
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    create(method, profile=profile, **params)  # validates parameter names before loading data
    set_threads(threads)
    started = time.perf_counter()
    train_set = load_dataset(dataset, "train", data_dir=data_dir)
    test_set = load_dataset(dataset, "test", data_dir=data_dir)
    options = dict(protocol_options or {})
    if max_train is not None:
        options["max_train"] = max_train
    split_options = dict(options)  # what the protocol gets; ``options`` is what the record names
    if data_dir is not None and "data_dir" not in options and _accepts(PROTOCOLS[protocol][0], "data_dir"):
        split_options["data_dir"] = str(data_dir)  # a second data set (novel / near source) from the same place
    if classes is not None:
        classes = [_parse_task(c, train_set.class_names) for c in classes]
    per_task: dict[str, dict[str, Any]] = {}
    config: dict[str, Any] = {}
    for seed in seeds:
        for task, split in make_splits(protocol, train_set, test_set, classes, seed=seed, **split_options):
            name = _task_name(task, train_set.class_names)
            det = create(method, profile=profile, **{**params, "seed": seed})
            config = {k: v for k, v in det.get_params().items() if k != "seed"}
            if progress:
                print(f"[bench] {method} {dataset} {protocol} task={name} seed={seed} "
                      f"(train {len(split.train)}, test {len(split.test)})", file=sys.stderr, flush=True)
            res = evaluate_split(det, split, extra_metrics)
            entry = per_task.setdefault(name, {"task": task, "name": name, "metrics": {}, "train_seconds": [],
                                               "score_images_per_s": [], "n_train": res["n_train"],
                                               "n_val": res["n_val"], "n_test": res["n_test"],
                                               "n_novel": res["n_novel"]})
            for k, v in res["metrics"].items():
                entry["metrics"].setdefault(k, []).append(v)
            entry["train_seconds"].append(res["train_seconds"])
            entry["score_images_per_s"].append(res["score_images_per_s"])
            if progress:
                print(f"[bench]   auroc={res['metrics']['auroc']:.4f} train={res['train_seconds']:.1f}s",
                      file=sys.stderr, flush=True)
    record = _assemble(method, dataset, protocol, options, profile, params, config, list(seeds), per_task,
                       label or method, notes, command, time.perf_counter() - started, device)
    # a run is complete only if it covered exactly the protocol's default tasks (ten draws of several
    # classes are as many tasks as ten classes, but still a subset of the possible draws)
    default = {_task_name(t, train_set.class_names) for t in PROTOCOLS[protocol][1](train_set)}
    record["subset"] = classes is not None and set(per_task) != default
    if out_dir is not None:
        record["file"] = str(write_record(record, out_dir))
    return record


def _parse_task(task: Any, class_names: list[str]) -> Any:
    if isinstance(task, str) and "+" in task:
        return [_parse_task(t, class_names) for t in task.split("+")]
    if isinstance(task, str) and task.lstrip("-").isdigit():
        return int(task)
    return task


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name``."""
    return name in inspect.signature(fn).parameters


def _assemble(method: str, dataset: str, protocol: str, options: dict, profile: str | None, overrides: dict,
              config: dict, seeds: list[int], per_task: dict[str, dict], label: str, notes: str,
              command: str | None, duration: float, device: str | None) -> dict[str, Any]:
    mean, train_s, ips = _summarise(list(per_task.values()), seeds)
    return {
        "schema": SCHEMA,
        "kind": "novelty",
        "label": label,
        "method": method,
        "profile": profile,
        "dataset": dataset,
        "protocol": protocol,
        "protocol_options": options,
        "params_overrides": overrides,
        "config": config,
        "seeds": seeds,
        "tasks": list(per_task),
        "per_task": list(per_task.values()),
        "mean": mean,
        "train_seconds_per_task": train_s,
        "score_images_per_s": ips,
        "peak_memory_mb": peak_memory_mb(),
        "device": str(resolve_device(device or "auto")),
        "threads": torch.get_num_threads(),
        "machine": _machine(resolve_device(device or "auto")),
        "duration_seconds": round(duration, 1),
        "commit": git_commit(),
        "command": command or current_command(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
    }


def _machine(dev: torch.device) -> str:
    """The machine a record was measured on: CPU architecture and cores, plus the GPU's name when one
    was used (training seconds are only comparable between records of the same machine)."""
    text = f"{platform.machine()} {os.cpu_count()} cpus"
    if dev.type == "cuda":
        text += f", {torch.cuda.get_device_name(dev)}"
    return text


def _summarise(per_task: list[dict], seeds: list[int]) -> tuple[dict[str, float], float | None, float | None]:
    """Mean +- std (over seeds of the task mean, and over tasks of the seed mean) of every metric,
    mean training seconds per task and mean scoring images/s; fills each task's own ``mean``."""
    metric_names = sorted({k for e in per_task for k in e["metrics"]})
    mean: dict[str, float] = {}
    for k in metric_names:
        rows = [e["metrics"][k] for e in per_task if k in e["metrics"]]
        if not rows or any(len(r) != len(seeds) for r in rows):
            continue
        grid = np.asarray(rows, dtype=np.float64)          # tasks x seeds
        mean[k] = float(grid.mean())
        mean[f"{k}_std_seeds"] = float(grid.mean(0).std()) if len(seeds) > 1 else 0.0
        mean[f"{k}_std_tasks"] = float(grid.mean(1).std()) if grid.shape[0] > 1 else 0.0
    for e in per_task:
        e["mean"] = {k: float(np.mean(v)) for k, v in e["metrics"].items()}
    train_s = [s for e in per_task for s in e["train_seconds"]]
    ips = [s for e in per_task for s in e["score_images_per_s"]]
    return mean, (float(np.mean(train_s)) if train_s else None), (float(np.mean(ips)) if ips else None)


def merge_records(records: Sequence[dict[str, Any]], command: str | None = None) -> dict[str, Any]:
    """One record from runs of the same setting on disjoint task subsets (e.g. classes run in parallel).

    Label, method, data set, protocol, options, profile and seeds must agree; per-task results are
    concatenated and the means recomputed. Commands of the parts are kept.
    """
    if not records:
        raise ValueError("merge_records: nothing to merge")
    keys = ("label", "method", "dataset", "protocol", "protocol_options", "profile", "seeds", "config")
    first = records[0]
    for r in records[1:]:
        for k in keys:
            if r.get(k) != first.get(k):
                raise ValueError(f"merge_records: records differ in {k!r}: {first.get(k)!r} vs {r.get(k)!r}")
    per_task: dict[str, dict] = {}
    for r in records:
        for e in r["per_task"]:
            if e["name"] in per_task:
                raise ValueError(f"merge_records: task {e['name']!r} appears twice")
            per_task[e["name"]] = e
    merged = dict(first)
    merged["per_task"] = sorted(per_task.values(), key=lambda e: (0, e["task"], "") if isinstance(e["task"], int)
                                else (1, 0, str(e["task"])))
    merged["tasks"] = [e["name"] for e in merged["per_task"]]
    merged["mean"], merged["train_seconds_per_task"], merged["score_images_per_s"] = _summarise(
        merged["per_task"], first["seeds"])
    merged["peak_memory_mb"] = max(r.get("peak_memory_mb") or 0 for r in records)
    merged["duration_seconds"] = round(sum(r.get("duration_seconds") or 0 for r in records), 1)
    merged["parts_commands"] = [r.get("command") for r in records]
    merged["command"] = command or " && ".join(str(r.get("command")) for r in records)
    merged["subset"] = False
    merged.pop("file", None)
    return merged


assemble_record = _assemble  # public name for study scripts that score one trained model several ways


def result_filename(record: dict[str, Any]) -> str:
    """``<label>__<dataset>__<protocol>[-options]__<profile>[__tasks].json``."""
    opts = record.get("protocol_options") or {}
    opt = "".join(f"-{k}{v}" for k, v in sorted(opts.items()) if v is not None)
    parts = [record["label"], record["dataset"], record["protocol"] + opt, str(record.get("profile"))]
    return "__".join(_slug(p) for p in parts) + ".json"


def write_record(record: dict[str, Any], out_dir: str | Path = DEFAULT_OUT) -> Path:
    """Write a result record as JSON; the file name comes from its label, data set, protocol and profile.

    Runs on a subset of the tasks get the tasks in the name, so they never overwrite a full run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = result_filename(record)
    if record.get("subset"):
        name = name[:-5] + "__" + _slug("-".join(record["tasks"]))[:60] + ".json"
    path = out / name
    path.write_text(json.dumps(record, indent=1, default=json_default) + "\n")
    return path

