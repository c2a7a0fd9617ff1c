"""The benchmark engine: settings -> (class, seed) tasks -> part files -> one record per setting.

Each task trains one detector on one split and scores it (plus every scoring
variant of the same trained model). A finished task is written at once as a
*part* file under ``<out>/_parts/<record>/<task>__seed<s>.json``; a
rerun skips tasks whose part exists under the same setting key, so an
interrupted run resumes. A task that fails is retried, then written as
``.failed.json`` with its traceback; the others carry on, and the setting's
record is then written as a subset naming the failed tasks. When every task of
a setting has a part, the parts are merged into the setting's record(s) in
``<out>`` (``runner.write_record`` names the file). Tasks run in-process one
after another (:class:`SequentialExecutor`) or as Ray tasks
(:mod:`noveltylab.bench.ray_executor`).
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .. import metrics
from ..data import load_dataset
from ..data.protocols import PROTOCOLS, Split
from ..detector import create, get_class, json_default, resolve_device
from . import provenance
from .runner import (ExtraMetrics, fallback_tasks, _accepts, _parse_task, _slug, _summarise, _task_name, calibrated_threshold,
                     evaluate_split, limited_threads, peak_memory_mb, result_filename, score_split, write_record,
                     SCHEMA)
from .spec import ENGINE_OPTIONS, Setting, SpecError, Variant, record_classes
from .variants import apply_scoring

log = logging.getLogger("noveltylab.bench")
PARTS = "_parts"


@dataclass(frozen=True)
class Job:
    """One (setting, task, seed): the unit an executor runs."""

    setting: Setting
    task: Any
    name: str
    seed: int

    @property
    def id(self) -> str:
        return f"{_slug(self.name)[:80]}__seed{self.seed}"


# --- data and splits -------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load(dataset: str, split: str, data_dir: str | None):
    return load_dataset(dataset, split, data_dir=data_dir)


def _split_options(setting: Setting, protocol: str, options: dict[str, Any], data_dir: str | None) -> dict:
    opts = {k: v for k, v in options.items() if k not in ENGINE_OPTIONS}
    if data_dir is not None and "data_dir" not in opts and _accepts(PROTOCOLS[protocol][0], "data_dir"):
        opts["data_dir"] = str(data_dir)  # a second data set (novel / near source) from the same place
    return opts


def make_split(setting: Setting, task: Any, seed: int, data_dir: str | None, protocol: str | None = None,
               extra_options: dict[str, Any] | None = None) -> Split:
    """The split of one task (``protocol``/``extra_options`` for a variant's test set)."""
    protocol = protocol or setting.protocol
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    options = {**setting.options, **(extra_options or {})}
    train, test = _load(setting.dataset, "train", data_dir), _load(setting.dataset, "test", data_dir)
    split = PROTOCOLS[protocol][0](train, test, task, seed=seed, **_split_options(setting, protocol, options, data_dir))
    every = options.get("test_every")
    if every and int(every) > 1:  # score every n-th test image only (CPU budget; stated in the record)
        keep = slice(None, None, int(every))
        split.test, split.test_labels, split.test_classes = split.test[keep], split.test_labels[keep], \
            split.test_classes[keep]
        if split.test_masks is not None:
            split.test_masks = split.test_masks[keep]
    return split


def jobs_for(setting: Setting, data_dir: str | None) -> list[Job]:
    """Every (task, seed) of a setting; tasks default to the protocol's (usually every class)."""
    if setting.protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {setting.protocol!r}; available: {', '.join(PROTOCOLS)}")
    train = _load(setting.dataset, "train", data_dir)
    tasks = (PROTOCOLS[setting.protocol][1](train) if setting.classes is None
             else [_parse_task(c, train.class_names) for c in setting.classes])
    return [Job(setting, t, _task_name(t, train.class_names), s) for s in setting.seeds for t in tasks]


def check_setting(setting: Setting) -> None:
    """Fail before any data is loaded on an unknown method, profile, parameter or protocol."""
    cls = get_class(setting.method)
    if setting.profile is not None and setting.profile not in cls.profiles:
        raise KeyError(f"method {setting.method!r} has no profile {setting.profile!r}; "
                       f"profiles: {sorted(cls.profiles)}")
    for proto in [setting.protocol] + [v.protocol for v in setting.variants if v.protocol]:
        if proto not in PROTOCOLS:
            raise KeyError(f"unknown protocol {proto!r}; available: {', '.join(PROTOCOLS)}")
    create(setting.method, profile=setting.profile, **setting.params)  # validates parameter names


# --- one task --------------------------------------------------------------------
def _variant_result(det, split: Split, base: dict[str, Any], variant: Variant, job: Job,
                    data_dir: str | None) -> dict[str, Any]:
    """Metrics of one variant from the trained detector of ``job``."""
    if variant.metric:
        if variant.metric not in base["metrics"]:
            raise SpecError(f"variant {variant.label}: {job.setting.method} gives no metric {variant.metric!r}; "
                            f"it gives {sorted(base['metrics'])}")
        return {**base, "metrics": {"auroc": base["metrics"][variant.metric]}}
    test_split = split
    if variant.protocol or variant.options:
        test_split = make_split(job.setting, job.task, job.seed, data_dir, variant.protocol, variant.options)
        if not np.array_equal(test_split.train, split.train):
            raise SpecError(f"variant {variant.label}: protocol {variant.protocol or job.setting.protocol} "
                            f"{variant.options} does not train on the same images as the entry, so its test set "
                            "cannot be scored with the entry's model; make it a separate entry")
    scored, restore = apply_scoring(det, split, variant.scoring) if variant.scoring else (det, None)
    try:
        threshold = calibrated_threshold(scored, split) if variant.scoring else det.threshold_
        res = score_split(scored, test_split, None, threshold)
        config = {k: v for k, v in scored.get_params().items() if k != "seed"}
    finally:
        if restore is not None:
            restore()
    return {**base, **res, "config": config}


def run_task(job: Job, data_dir: str | None = None, threads: int | None = None, device: str | None = None,
             extra_metrics: ExtraMetrics | None = None, command: str = "") -> dict[str, Any]:
    """Train and score one (setting, task, seed) with ``threads`` CPU threads (the caller's thread
    settings are restored afterwards); the part: one result per record of the setting."""
    with limited_threads(threads):
        return _run_task(job, data_dir, device, extra_metrics, command)


def _run_task(job: Job, data_dir: str | None, device: str | None, extra_metrics: ExtraMetrics | None,
              command: str) -> dict[str, Any]:
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    s = job.setting
    split = make_split(s, job.task, job.seed, data_dir)
    params = {**s.params, "seed": job.seed, **({"device": device} if device else {})}
    det = create(s.method, profile=s.profile, **params)
    if s.extras:
        from .extras import combined

        named = combined(s.extras, _load(s.dataset, "train", data_dir))
        extra_metrics = named if extra_metrics is None else (
            lambda d, sp, sc, a=extra_metrics, b=named: {**a(d, sp, sc), **b(d, sp, sc)})
    base = evaluate_split(det, split, extra_metrics)
    base["config"] = {k: v for k, v in det.get_params().items() if k not in ("seed", "device")}
    results = [base] + [_variant_result(det, split, base, v, job, data_dir) for v in s.variants]
    for r in results[1:]:
        r["config"].pop("device", None)
    dev = resolve_device(device or params.get("device") or "auto")
    import torch

    return {"schema": SCHEMA, "kind": "part", "key": s.key(), "label": s.label, "task": job.task,
            "name": job.name, "seed": job.seed, "results": results, "commit": provenance.git_commit(),
            "machine": provenance.machine(dev), "host": provenance.host(), "pid": os.getpid(), "device": str(dev),
            "threads": torch.get_num_threads(), "peak_memory_mb": peak_memory_mb(),
            "started": started.isoformat(timespec="seconds"), "seconds": round(time.perf_counter() - t0, 2),
            "command": command}


# --- part files ------------------------------------------------------------------
def record_stem(setting: Setting, variant: Variant | None = None) -> str:
    """The result file stem of a setting's record (or of one of its variants)."""
    rec = {"label": variant.label if variant else setting.label, "dataset": setting.dataset,
           "protocol": (variant.protocol if variant and variant.protocol else setting.protocol),
           "protocol_options": {**setting.options, **(variant.options if variant else {})},
           "profile": setting.profile}
    return result_filename(rec)[:-5]


def part_dir(out_dir: Path, setting: Setting) -> Path:
    """Folder of a setting's part files, shared by every spec (and the flag form) naming the same setting
    and by every class list of it (see :meth:`Setting.key`)."""
    return Path(out_dir) / PARTS / record_stem(setting)


def read_part(path: Path, key: str) -> dict[str, Any] | None:
    """A finished part for this setting key, or None (absent, unreadable, or from another setting)."""
    try:
        part = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return part if isinstance(part, dict) and part.get("key") == key else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=json_default) + "\n")
    tmp.replace(path)  # atomic: a half-written part is never read as finished


# --- merging ---------------------------------------------------------------------
def records_from_parts(setting: Setting, parts: Sequence[dict[str, Any]], *, failed: Sequence[str] = (),
                       spec: Any = None, command: str = "", allow_dirty: bool = False,
                       executor: str = "sequential", wall_seconds: float | None = None,
                       default_tasks: set[str] | None = None,
                       task_order: Sequence[str] = (), tasks: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per record of the setting (the entry and each variant) from its finished parts
    (tasks in ``task_order``, the setting's own order, then any others in part order). ``tasks`` maps a
    task name to the setting's own task value, which the record keeps whatever spelling a part has."""
    tasks = tasks or {}
    order: dict[str, tuple[int, Any]] = {name: (i, None) for i, name in enumerate(dict.fromkeys(task_order))}
    for p in parts:
        order.setdefault(p["name"], (len(order), p["task"]))
    seeds = [s for s in setting.seeds if any(p["seed"] == s for p in parts)]
    out = []
    for i, variant in enumerate([None] + list(setting.variants)):
        per_task: dict[str, dict[str, Any]] = {}
        for p in sorted(parts, key=lambda p: (order[p["name"]][0], setting.seeds.index(p["seed"]))):
            r = p["results"][i]
            e = per_task.setdefault(p["name"], {"task": tasks.get(p["name"], p["task"]), "name": p["name"], "metrics": {},
                                                "train_seconds": [], "score_images_per_s": [],
                                                "n_train": r["n_train"], "n_val": r["n_val"],
                                                "n_test": r["n_test"], "n_novel": r["n_novel"]})
            for k, v in r["metrics"].items():
                e["metrics"].setdefault(k, []).append(v)
            e["train_seconds"].append(r["train_seconds"])
            e["score_images_per_s"].append(r["score_images_per_s"])
            if "diagnostics" in r:
                e.setdefault("diagnostics", []).append(r["diagnostics"])
        excluded = fallback_tasks(parts)
        mean, train_s, ips = _summarise(list(per_task.values()), seeds)
        if excluded and len(excluded) < len(per_task):  # the mean counts only tasks the method really ran
            mean = _summarise([e for n, e in per_task.items() if n not in excluded], seeds)[0]
        commits = sorted({p["commit"] for p in parts})
        label = variant.label if variant else setting.label
        notes = " ".join(x for x in [setting.notes, variant.notes if variant else ""] if x)
        if variant is not None:
            how = (f"metric {variant.metric}" if variant.metric else
                   ", ".join(filter(None, [f"scoring {variant.scoring}" if variant.scoring else "",
                                           f"test set of {variant.protocol or setting.protocol} {variant.options}"
                                           if variant.protocol or variant.options else ""])))
            notes = (notes + f" Variant of {setting.label}: same trained models, {how}.").strip()
        rec = {
            "schema": SCHEMA, "kind": "novelty", "label": label, "method": setting.method,
            "profile": setting.profile, "dataset": setting.dataset,
            "protocol": variant.protocol if variant and variant.protocol else setting.protocol,
            "protocol_options": {**setting.options, **(variant.options if variant else {})},
            "params_overrides": {**setting.params, **(variant.scoring if variant else {})},
            "config": parts[-1]["results"][i].get("config", {}) if parts else {},
            "seeds": seeds, "tasks": list(per_task), "per_task": list(per_task.values()), "mean": mean,
            "train_seconds_per_task": train_s, "score_images_per_s": ips,
            "peak_memory_mb": max((p.get("peak_memory_mb") or 0) for p in parts) if parts else None,
            "device": ",".join(sorted({p["device"] for p in parts})),
            "threads": max(p["threads"] for p in parts) if parts else None,
            "machine": "; ".join(sorted({p["machine"] for p in parts})),
            "hosts": sorted({p.get("host", "") for p in parts}),
            "duration_seconds": round(sum(p["seconds"] for p in parts), 1),
            "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
            "commit": ",".join(commits), "allow_dirty": allow_dirty, "executor": executor,
            "command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "notes": notes, "row": (variant.row if variant and variant.row else setting.row),
            "match": (variant.match if variant and variant.match else setting.match),
            "spec": getattr(spec, "path", None), "paper": getattr(spec, "paper", ""),
            "paper_table": getattr(spec, "table", ""), "setting_key": setting.key(),
            "failed_tasks": list(failed), "fallback_tasks": excluded,
        }
        paper_key = setting.paper_key_for(label)
        if paper_key:
            rec["paper_key"] = paper_key
        if variant is not None:
            rec["derived_from"] = setting.label
        # draws of several normal classes (an entry's own task list, e.g. 20 draws of 3 classes) are complete
        # when every draw ran; a list of single classes is complete when it is the protocol's default
        draws = any(isinstance(c, (list, tuple)) for c in setting.classes or [])
        wanted = set(task_order) if draws and task_order else default_tasks
        complete = wanted is not None and set(per_task) == wanted and len(seeds) == len(setting.seeds)
        rec["subset"] = bool(failed) or not complete
        out.append(rec)
    return out


# --- executors -------------------------------------------------------------------
OnDone = Callable[[Job, dict[str, Any]], None]
OnFail = Callable[[Job, str], None]


class SequentialExecutor:
    """Runs each job in this process, one after another; a failing job is retried ``retries`` times."""

    name = "sequential"

    def __init__(self, threads: int | None = None, device: str | None = None, retries: int = 1,
                 extra_metrics: ExtraMetrics | None = None, fail_fast: bool = False) -> None:
        self.threads, self.device, self.retries, self.extra_metrics = threads, device, retries, extra_metrics
        self.fail_fast = fail_fast  # re-raise the task's own error (the library call ``run_benchmark``)

    def run(self, jobs: Sequence[Job], data_dir: str | None, command: str, on_done: OnDone, on_fail: OnFail) -> None:
        for job in jobs:
            error = ""
            for attempt in range(self.retries + 1):
                try:
                    part = run_task(job, data_dir, self.threads, self.device, self.extra_metrics, command)
                except Exception:  # noqa: BLE001  (a failed task must not lose the others)
                    if self.fail_fast and attempt == self.retries:
                        raise
                    error = traceback.format_exc()
                    log.warning("task %s %s failed (attempt %d of %d)", job.setting.label, job.id, attempt + 1,
                                self.retries + 1)
                    continue
                on_done(job, part)
                break
            else:
                on_fail(job, error)


# --- driver ----------------------------------------------------------------------
@dataclass
class RunSummary:
    """What a spec run did: records written, tasks run / skipped / failed."""

    records: list[dict[str, Any]]
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str]] | None = None  # (label, task id, last line of the error)


def run_settings(settings: Iterable[Setting], *, spec: Any = None, out_dir: str | Path | None = "benchmarks/results", data_dir: str | None = None,
                 executor: Any = None, command: str | None = None, allow_dirty: bool = False,
                 resume: bool = True, progress: bool = True, merge_only: bool = False) -> RunSummary:
    """Run every task of ``settings`` (skipping finished parts), then merge and write each setting's records.

    ``out_dir=None`` keeps everything in memory (no parts, no records written, no dirty-tree check).
    ``merge_only`` runs nothing: the finished parts of a stopped run become (subset) records that list
    their ``missing_tasks``.
    """
    settings = list(settings)
    for s in settings:
        check_setting(s)
    if out_dir is not None:
        provenance.require_clean(allow_dirty)
    command = command or provenance.current_command()
    executor = executor or SequentialExecutor()
    data_dir = None if data_dir is None else str(data_dir)
    started = time.perf_counter()
    done: dict[tuple[str, str], dict[str, Any]] = {}
    failed: dict[tuple[str, str], str] = {}
    todo: list[Job] = []
    queued: set[tuple[str, str]] = set()
    all_jobs: list[list[Job]] = []  # per setting: two settings may share a key (another class list)
    skipped = 0
    for s in settings:
        jobs = jobs_for(s, data_dir)
        all_jobs.append(jobs)
        for job in jobs:
            part = None
            if out_dir is not None and resume:
                part = read_part(part_dir(Path(out_dir), s) / f"{job.id}.json", s.key())
            if part is not None:
                done[(s.key(), job.id)] = part
                skipped += 1
            elif (s.key(), job.id) not in queued:  # a task of two class lists of one setting runs once
                queued.add((s.key(), job.id))
                todo.append(job)
    if progress:
        print(f"[bench] {len(settings)} setting(s), {len(todo) + skipped} task(s): {skipped} already done, "
              f"{len(todo)} to run ({executor.name})", file=sys.stderr, flush=True)

    def on_done(job: Job, part: dict[str, Any]) -> None:
        done[(job.setting.key(), job.id)] = part
        if out_dir is not None:
            pdir = part_dir(Path(out_dir), job.setting)
            _write_json(pdir / f"{job.id}.json", part)
            (pdir / f"{job.id}.failed.json").unlink(missing_ok=True)
        if progress:
            r = part["results"][0]
            print(f"[bench] done {job.setting.label} {job.setting.dataset} {job.name} seed={job.seed}: "
                  f"auroc={r['metrics'].get('auroc', float('nan')):.4f} train={r['train_seconds']:.1f}s",
                  file=sys.stderr, flush=True)

    def on_fail(job: Job, error: str) -> None:
        failed[(job.setting.key(), job.id)] = error
        if out_dir is not None:
            _write_json(part_dir(Path(out_dir), job.setting) / f"{job.id}.failed.json",
                        {"kind": "failed-part", "key": job.setting.key(), "label": job.setting.label,
                         "task": job.task, "seed": job.seed, "error": error, "command": command})
        print(f"[bench] FAILED {job.setting.label} {job.setting.dataset} {job.name} seed={job.seed}: "
              f"{error.strip().splitlines()[-1] if error.strip() else 'unknown error'}", file=sys.stderr, flush=True)

    missing = {(j.setting.key(), j.id) for j in todo} if merge_only else set()
    if todo and not merge_only:
        executor.run(todo, data_dir, command, on_done, on_fail)
    wall = time.perf_counter() - started
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str, str]] = []
    for s, jobs in zip(settings, all_jobs):
        parts = [done[(s.key(), j.id)] for j in jobs if (s.key(), j.id) in done]
        bad = [j.id for j in jobs if (s.key(), j.id) in failed]
        failures += [(s.label, jid, failed[(s.key(), jid)].strip().splitlines()[-1]
                      if failed[(s.key(), jid)].strip() else "") for jid in bad]
        if not parts:
            continue
        train = _load(s.dataset, "train", data_dir)
        default = {_task_name(t, train.class_names) for t in PROTOCOLS[s.protocol][1](train)}
        for rec in records_from_parts(s, parts, failed=bad, spec=spec, command=command, allow_dirty=allow_dirty,
                                      executor=executor.name, wall_seconds=wall, default_tasks=default,
                                      task_order=[j.name for j in jobs], tasks={j.name: j.task for j in jobs}):
            rec["missing_tasks"] = [j.id for j in jobs if (s.key(), j.id) in missing]
            rec["subset"] = rec["subset"] or bool(rec["missing_tasks"])
            if out_dir is not None:
                rec["file"] = str(write_record(rec, out_dir))
            records.append(rec)
    ran = 0 if merge_only else len(todo) - len(failed)
    return RunSummary(records=records, ran=ran, skipped=skipped, failed=failures)


def summary_lines(summary: RunSummary) -> list[str]:
    """Human-readable lines: one per record, then failures."""
    lines = []
    for r in summary.records:
        m = r["mean"]
        lines.append(f"{r['label']} {r['dataset']} {r['protocol']}: AUROC {100 * m.get('auroc', float('nan')):.2f} "
                     f"(± {100 * m.get('auroc_std_tasks', 0):.2f} over tasks, ± {100 * m.get('auroc_std_seeds', 0):.2f} "
                     f"over seeds; {len(r['tasks'])} tasks{' (subset)' if r['subset'] else ''}) -> "
                     f"{r.get('file', '(not written)')}")
    lines.append(f"tasks: {summary.ran} run, {summary.skipped} resumed from part files, "
                 f"{len(summary.failed or [])} failed")
    for label, jid, err in summary.failed or []:
        lines.append(f"FAILED {label} {jid}: {err}")
    return lines


def _identity(label: str, dataset: str, protocol: str, options: dict, profile: Any, seeds: list, classes: Any) -> str:
    return json.dumps([label, dataset, protocol, options, profile, seeds, classes], sort_keys=True, default=str)


def setting_identities(setting: Setting) -> list[tuple[str, dict[str, Any]]]:
    """(identity, parameters) of each record a setting writes (entry and variants); the identity holds
    label, data set, protocol, options, profile, seeds and, when given, the classes."""
    out = [(_identity(setting.label, setting.dataset, setting.protocol, setting.options, setting.profile,
                      setting.seeds, setting.classes), dict(setting.params))]
    for v in setting.variants:
        out.append((_identity(v.label, setting.dataset, v.protocol or setting.protocol,
                              {**setting.options, **v.options}, setting.profile, setting.seeds, setting.classes),
                    {**setting.params, **v.scoring}))
    return out


def record_identity(record: dict[str, Any]) -> str:
    """The identity of a result record, comparable with :func:`setting_identities` (a record of a subset of
    the classes, or of draws of several classes, names them)."""
    classes = record_classes(record)
    return _identity(record["label"], record["dataset"], record["protocol"], record.get("protocol_options") or {},
                     record.get("profile"), record["seeds"], classes)


def _same_params(record: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether ``params`` reproduce the record: every override it recorded (the run-level ``device``
    aside) is in ``params``, and every value of ``params`` is the one its configuration used."""
    overrides = {k: v for k, v in (record.get("params_overrides") or {}).items() if k != "device"}
    config = record.get("config") or {}
    return all(params.get(k) == v for k, v in overrides.items()) and all(
        config.get(k, v) == v for k, v in params.items())


def uncovered_records(records: Iterable[dict[str, Any]], specs: Iterable[Any]) -> list[dict[str, Any]]:
    """Records that no spec entry (or variant) reproduces: these cannot be regenerated with one command."""
    known: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        for s in spec.settings:
            for ident, params in setting_identities(s):
                known.setdefault(ident, []).append(params)
    return [r for r in records if not any(_same_params(r, p) for p in known.get(record_identity(r), []))]


def setting_dict(setting: Setting) -> dict[str, Any]:
    """A setting as plain data (for logs and remote workers)."""
    return asdict(setting)
