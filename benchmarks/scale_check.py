"""Scale check of the benchmark engine itself (issue 16 item 5): wall time of one spec run in-process
vs as Ray tasks on the local machine.

This stays a script because it measures the engine, not a detector: it starts
``noveltylab bench SPEC`` twice as fresh processes (``--executor sequential``
and ``--executor ray``, both ``--fresh`` with their own output folder, one
thread per task) and times each from the outside, then writes one JSON file
with both commands, wall times, the ratio, the commit, the machine and the
AUROC of both runs (which must agree: the executor changes nothing but time).

    python benchmarks/scale_check.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from noveltylab.bench.provenance import current_command, machine, require_clean


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="benchmarks/specs/scale_check.toml")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="benchmarks/results/scale_check__ray_vs_sequential.json")
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args()
    commit = require_clean(args.allow_dirty)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NOVELTYLAB_PROGRESS": "0"}
    tmp = Path(tempfile.mkdtemp(prefix="scale_check_"))
    base = [sys.executable, "-m", "noveltylab.cli", "bench", args.spec, "--fresh", "--threads", "1"]
    base += ["--data-dir", args.data_dir] if args.data_dir else []
    base += ["--allow-dirty"] if args.allow_dirty else []
    runs = {}
    for kind in ("sequential", "ray"):
        cmd = base + ["--executor", kind, "--out-dir", str(tmp / kind)]
        if kind == "ray":
            cmd += ["--num-cpus", str(args.num_cpus)]
        wall = timed(cmd, env)
        [rec] = [json.loads(p.read_text()) for p in (tmp / kind).glob("*.json")]
        runs[kind] = {"command": shlex.join(["noveltylab"] + cmd[3:]), "wall_seconds": round(wall, 1),
                      "task_seconds_sum": rec["duration_seconds"], "tasks": len(rec["tasks"]) * len(rec["seeds"]),
                      "auroc": rec["mean"]["auroc"], "executor": rec["executor"], "hosts": rec["hosts"]}
        print(f"{kind}: {wall:.1f} s", flush=True)
    out = {"kind": "engine-scale-check", "spec": args.spec, "commit": commit, "machine": machine(),
           "cpus_for_ray": args.num_cpus, "threads_per_task": 1, "runs": [{"executor": k, **v} for k, v in runs.items()],
           "ratio_sequential_over_ray": round(runs["sequential"]["wall_seconds"] / runs["ray"]["wall_seconds"], 2),
           "same_auroc": abs(runs["sequential"]["auroc"] - runs["ray"]["auroc"]) < 1e-9,
           "command": current_command(),
           "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "notes": "Wall time of the whole command (process start, data loading, Ray start-up included), measured "
                    "on a machine shared with other jobs, so it varies from run to run."}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("ratio_sequential_over_ray", "same_auroc")}), "->", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
