"""Benchmark runner: source -> protocol -> detector -> metrics -> one JSON result file.

A record holds everything needed to trust and repeat a figure: the method
and its full configuration, data set, protocol, per-task and mean +- std
metrics over seeds, training seconds, scoring images/s, peak memory, the git
commit and the exact command.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import json
import logging
import re
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .. import metrics
from ..data import load_dataset, make_splits
from ..data.protocols import PROTOCOLS, Split
from ..detector import CalibrationWarning, Detector, json_default, create, get_class, resolve_device
from .provenance import current_command, git_commit, machine as _machine_name

log = logging.getLogger("noveltylab.bench")
SCHEMA = 1
DEFAULT_OUT = Path("benchmarks") / "results"
CALIBRATION_FPR = 0.05

ExtraMetrics = Callable[[Detector, Split, np.ndarray], dict[str, float]]


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


@contextlib.contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """:func:`set_threads` for a block, then the previous torch / FAISS thread counts again, so a task
    run in a caller's process (the sequential executor, a library call) leaves its thread settings as
    they were: results of a short training run can depend on the thread count."""
    if not threads:
        yield
        return
    import faiss

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


def _task_name(task: Any, class_names: list[str]) -> str:
    if isinstance(task, (list, tuple)):
        return "+".join(_task_name(t, class_names) for t in task)
    if isinstance(task, (int, np.integer)) and 0 <= int(task) < len(class_names):
        return class_names[int(task)]
    return str(task)


# extra training inputs a protocol may put in ``split.info`` -> the ``fit`` keyword that takes them
FIT_INPUTS = {"train_labels": "labels"}


def fit_inputs(det: Detector, split: Split) -> dict[str, Any]:
    """Keyword arguments for ``det.fit`` from what the protocol provides beyond images (e.g. the class
    labels of ``multiclass-labeled``). A detector whose ``fit`` cannot take one is an error, never a
    silent unlabeled run."""
    out = {}
    for key, kw in FIT_INPUTS.items():
        if split.info.get(key) is None:
            continue
        if not _accepts(det.fit, kw):
            raise ValueError(f"protocol {split.info.get('protocol', split.name)!r} provides {key} for training, "
                             f"but {det.name}.fit takes no {kw!r} argument; use a method that does or the "
                             "unlabeled protocol")
        out[kw] = split.info[key]
    return out


def score_split(det: Detector, split: Split, extra_metrics: ExtraMetrics | None = None,
                threshold: float | None = None) -> dict[str, Any]:
    """Metrics of a fitted detector on ``split``'s test set (per-term AUROCs, pixel AUROC, extras)."""
    t0 = time.perf_counter()
    scores = det.score(split.test)
    score_s = time.perf_counter() - t0
    m = metrics.summary(split.test_labels, scores, threshold)
    if split.test_masks is not None and det.localises and split.test_masks.any():
        maps = det.anomaly_map(split.test)
        m.update(metrics.pixel_summary(split.test_masks, maps))  # pixel AUROC, PRO, IoU (Youden threshold)
    components = getattr(det, "score_components", None)
    if components is not None:  # per-term AUROC of detectors whose score sums terms (higher term = more normal)
        for name, values in components(split.test).items():
            m.setdefault(f"auroc_{name}", metrics.auroc(split.test_labels, -np.asarray(values)))
    if extra_metrics is not None:
        m.update(extra_metrics(det, split, scores))
    return {"metrics": m, "score_images_per_s": len(split.test) / max(score_s, 1e-9), "n_test": len(split.test),
            "n_novel": int(split.test_labels.sum())}


def calibrated_threshold(det: Detector, split: Split) -> float | None:
    """Calibrate ``det`` on the split's normal validation images (5 % FPR); None without them."""
    if len(split.val) < 2:
        return None
    with warnings.catch_warnings():  # small validation splits cannot resolve 5 %; F1 here is indicative only
        warnings.simplefilter("ignore", CalibrationWarning)
        det.calibrate(split.val, fpr=CALIBRATION_FPR)
    return det.threshold_


def evaluate_split(det: Detector, split: Split, extra_metrics: ExtraMetrics | None = None) -> dict[str, Any]:
    """Fit ``det`` on one split (with every extra input the protocol provides), calibrate on its normal
    validation images, score the test set."""
    kwargs = fit_inputs(det, split)
    t0 = time.perf_counter()
    det.fit(split.train, val=split.val if len(split.val) else None, **kwargs)
    train_s = time.perf_counter() - t0
    res = score_split(det, split, extra_metrics, calibrated_threshold(det, split))
    out = {**res, "train_seconds": train_s, "n_train": len(split.train), "n_val": len(split.val)}
    diagnostics = getattr(det, "diagnostics", None)
    if callable(diagnostics):  # e.g. FITYMI's FID per check / stop epoch, UNODE's AutoAugOOD weights
        out["diagnostics"] = diagnostics()
    return out


def fallback_tasks(parts: Sequence[dict[str, Any]]) -> list[str]:
    """Tasks where the method fell back to something else in any seed (``diagnostics()["fallback"]``,
    e.g. FITYMI's collapsed fine-tuning scored with pretrained features): named in the record and
    left out of the method's mean (and of its variants' means)."""
    return sorted({p["name"] for p in parts if (p["results"][0].get("diagnostics") or {}).get("fallback")})


def run_benchmark(method: str, dataset: str, protocol: str, *, classes: Sequence[Any] | None = None,
                  seeds: Sequence[int] = (0,), profile: str | None = "cpu", params: dict[str, Any] | None = None,
                  protocol_options: dict[str, Any] | None = None, max_train: int | None = None,
                  label: str | None = None, notes: str = "", data_dir: str | Path | None = None,
                  out_dir: str | Path | None = DEFAULT_OUT, command: str | None = None,
                  threads: int | None = None, device: str | None = None,
                  extra_metrics: ExtraMetrics | None = None, progress: bool = True,
                  allow_dirty: bool = False) -> dict[str, Any]:
    """Run ``method`` on every task of ``protocol`` for each seed, in this process, and write one result file.

    The one-entry form of a spec (see :mod:`noveltylab.bench.engine`): ``classes``: tasks to run
    (default: every class); ``params``: constructor overrides on top of ``profile``;
    ``protocol_options``: e.g. ``{"fraction": 0.2}``. Finished tasks are kept as part files under
    ``out_dir/_parts`` and skipped by a rerun. Writing into ``out_dir`` from a dirty tree is refused
    unless ``allow_dirty``. Returns the record (also written to ``out_dir`` unless it is None).
    """
    from .engine import SequentialExecutor, run_settings
    from .spec import Setting

    options = dict(protocol_options or {})
    if max_train is not None:
        options["max_train"] = max_train
    params = {k: v for k, v in (params or {}).items() if k != "device"}
    device = device or (params or {}).get("device")
    setting = Setting(label=label or method, method=method, dataset=dataset, protocol=protocol, profile=profile,
                      params=params, options=options, classes=None if classes is None else list(classes),
                      seeds=list(seeds), notes=notes)
    result = run_settings([setting], out_dir=out_dir, data_dir=data_dir, command=command,
                          executor=SequentialExecutor(threads, device, retries=0, extra_metrics=extra_metrics,
                                                      fail_fast=True),
                          allow_dirty=allow_dirty, progress=progress)
    return result.records[0]


def _parse_task(task: Any, class_names: list[str]) -> Any:
    """A task as the protocols take it: a class index (a class named by its name becomes its index, so
    ``--classes airplane`` and ``classes = [0]`` are one task), a list for several normal classes, or
    another string as given (e.g. a data set of novel images)."""
    if isinstance(task, str) and "+" in task:
        return [_parse_task(t, class_names) for t in task.split("+")]
    if isinstance(task, str) and task.lstrip("-").isdigit():
        return int(task)
    if isinstance(task, str) and task in class_names:
        return class_names.index(task)
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
        "machine": _machine_name(resolve_device(device or "auto")),
        "duration_seconds": round(duration, 1),
        "commit": git_commit(),
        "command": command or current_command(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
    }


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

