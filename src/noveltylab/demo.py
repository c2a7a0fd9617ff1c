"""``noveltylab demo``: every method on the embedded 8x8 digits, methods spread over the CPU cores.

Each method runs the one-class protocol (10 classes) through the bench runner
in a worker process with one thread: small models on 8x8 images gain little
from intra-op threads, so ``jobs`` single-threaded workers finish about
``jobs`` times sooner than one process with ``jobs`` threads. The most costly
methods start first so that the workers end together. A warning repeated by
every class (e.g. UNODE's fallback without a weights file) prints once.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

# Rough relative cost of a demo run (measured on the digits demo); unknown methods count 1.
_COST = {"unode": 10, "nln-aeres-patch": 9, "nln-aecon-patch": 9, "nln-aae-patch": 5, "fitymi": 4,
         "nln-aeres": 2.5, "nln-ae": 2, "nln-vae": 2, "nln-ae-patch": 2, "connective": 2}


def _init_worker(threads: int) -> None:
    from .bench.runner import set_threads
    from .detector import CalibrationWarning

    os.environ.setdefault("NOVELTYLAB_PROGRESS", "0")
    warnings.filterwarnings("ignore", category=CalibrationWarning)  # the demo's thresholds are not used
    warnings.showwarning = _show_once(warnings.showwarning)
    set_threads(threads)


def _show_once(show: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``warnings.showwarning`` so that each distinct message prints once per process: the
    ``"once"`` filter alone is not enough because libraries reset the warning registries."""
    seen: set[tuple[str, type]] = set()

    def shown(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        key = (str(message), category)
        if key not in seen:
            seen.add(key)
            show(message, category, *args, **kwargs)

    return shown


def _one(name: str, out: str) -> dict[str, Any]:
    """Run one method's demo; returns a row, or ``skipped`` with the reason (missing weights file)."""
    from .bench.runner import run_benchmark
    from .detector import get_class

    cls = get_class(name)
    profile = "demo" if "demo" in cls.profiles else "cpu"
    cpu0 = time.process_time()
    try:
        rec = run_benchmark(name, "digits", "one-class", profile=profile, out_dir=Path(out) / "results",
                            notes="noveltylab demo", progress=False, allow_dirty=True)
    except FileNotFoundError as exc:  # e.g. a pretrained backbone whose weights file is not here
        return {"name": name, "skipped": str(exc)}
    m = rec["mean"]
    return {"name": name, "profile": profile, "auroc": m["auroc"], "std": m.get("auroc_std_tasks", 0.0),
            "secs": rec["train_seconds_per_task"], "cpu": time.process_time() - cpu0}


def _line(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"  {row['name']:<22} skipped: {row['skipped']}"
    return (f"  {row['name']:<22} AUROC {100 * row['auroc']:5.1f} ± {100 * row['std']:4.1f}   "
            f"({row['secs']:.2f} s per class, {row['cpu']:.0f} CPU-s in all)")


def run_demo(names: Sequence[str], out: str | Path, jobs: int = 1, threads: int | None = None) -> list[dict]:
    """Run the demo for ``names``; prints one line per method as it finishes; returns the rows."""
    rows: list[dict[str, Any]] = []
    order = sorted(names, key=lambda n: -_COST.get(n, 1.0))
    if jobs <= 1:
        with warnings.catch_warnings():
            _init_worker(threads or 0)
            for name in order:
                rows.append(_one(name, str(out)))
                print(_line(rows[-1]), flush=True)
        return rows
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads or 1,)) as pool:
        futures = [pool.submit(_one, n, str(out)) for n in order]
        for fut in as_completed(futures):
            rows.append(fut.result())
            print(_line(rows[-1]), flush=True)
    return rows


def default_jobs() -> int:
    """Worker processes for the demo: the CPU cores this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def demo_command(args: Any) -> int:
    """``noveltylab demo``: table of mean AUROC per method plus RESULTS.md."""
    from .bench.report import write_report
    from .detector import available, get_class

    names = args.methods or [n for n in available() if {"demo", "cpu"} & set(get_class(n).profiles)]
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; available: {available()}")
    jobs = args.jobs or default_jobs()
    out = Path(args.out)
    print(f"noveltylab demo: one-class protocol on the 8x8 digits data (10 classes), {len(names)} methods, "
          f"{jobs} worker process(es)", flush=True)
    rows = [r for r in run_demo(names, out, jobs=jobs, threads=args.threads) if "skipped" not in r]
    report = write_report(out / "results", out / "RESULTS.md")
    print("\n| method | profile | mean AUROC (%) | ± over classes | train s/class |")
    print("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["auroc"]):
        print(f"| {r['name']} | {r['profile']} | {100 * r['auroc']:.1f} | {100 * r['std']:.1f} | {r['secs']:.2f} |")
    print(f"\nreport written to {report}")
    sys.stdout.flush()
    return 0
