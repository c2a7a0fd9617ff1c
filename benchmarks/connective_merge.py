"""Merge connective study/ablation records that ran the same configuration on
disjoint sets of classes in parallel processes into one record per label
(re-assembled with the bench runner, so the means are recomputed from the
per-class metrics). A class present in several inputs is taken from the first.

  python benchmarks/connective_merge.py OUT_DIR rec_a.json rec_b.json [...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from noveltylab.bench import runner


def merge(paths: list[str], out_dir: str) -> Path:
    recs = [json.loads(Path(p).read_text()) for p in paths]
    first = recs[0]
    keys = ("label", "method", "dataset", "protocol", "profile", "config", "seeds")
    for r in recs[1:]:
        for k in keys:
            if r[k] != first[k]:
                raise SystemExit(f"cannot merge: {k} differs ({r[k]!r} vs {first[k]!r})")
    per: dict[str, dict] = {}
    for r in recs:
        for e in r["per_task"]:
            per.setdefault(e["name"], {k: v for k, v in e.items() if k != "mean"})
    order = sorted(per.values(), key=lambda e: e["task"] if isinstance(e["task"], int) else str(e["task"]))
    tasks = {e["name"]: e for e in order}
    rec = runner._assemble(first["method"], first["dataset"], first["protocol"], first["protocol_options"],
                           first["profile"], first["params_overrides"], first["config"], first["seeds"], tasks,
                           first["label"], first["notes"] + f" [merged from {len(recs)} parallel runs]",
                           " && ".join(r["command"] for r in recs),
                           max(r["duration_seconds"] for r in recs), None)
    rec["subset"] = len(tasks) < 10
    for k in ("peak_memory_mb", "duration_seconds"):
        rec[k] = max(r[k] for r in recs)
    rec["commit"] = ",".join(sorted({r["commit"] for r in recs}))
    rec["date"] = max(r["date"] for r in recs)
    return runner.write_record(rec, out_dir)


if __name__ == "__main__":
    print(merge(sys.argv[2:], sys.argv[1]))
