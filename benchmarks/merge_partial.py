"""Merge the finished part files of a spec entry whose run was stopped before every class was done
into a *subset* record (``subset: true``; the classes it covers are listed), using the engine's own
merging. For CPU-budget-bound runs on a shared machine; the record says so in its notes.

  python benchmarks/merge_partial.py benchmarks/specs/i14_patchcore_padim.toml --label patchcore \
      --dataset cifar10-jpeg --notes "..."
"""
from __future__ import annotations

import argparse
from pathlib import Path

from noveltylab.bench.engine import _task_name, jobs_for, part_dir, read_part, records_from_parts, _load
from noveltylab.bench.runner import write_record
from noveltylab.bench.spec import load_spec
from noveltylab.data.protocols import PROTOCOLS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=Path)
    p.add_argument("--label", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--notes", default="")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()
    spec = load_spec(a.spec)
    (setting,) = [s for s in spec.settings if s.label == a.label and s.dataset == a.dataset]
    jobs = jobs_for(setting, a.data_dir)
    pdir = part_dir(a.out_dir, setting)
    parts = [pt for j in jobs if (pt := read_part(pdir / f"{j.id}.json", setting.key())) is not None]
    print(f"{len(parts)} of {len(jobs)} tasks finished in {pdir}: {[pt['name'] for pt in parts]}")
    if a.dry_run or not parts:
        return
    train = _load(setting.dataset, "train", a.data_dir)
    default = {_task_name(t, train.class_names) for t in PROTOCOLS[setting.protocol][1](train)}
    cmd = f"python benchmarks/merge_partial.py {a.spec} --label {a.label} --dataset {a.dataset}"
    for rec in records_from_parts(setting, parts, spec=spec, command=cmd, default_tasks=default,
                                  task_order=[j.name for j in jobs]):
        rec["notes"] = (a.notes + " " if a.notes else "") + \
            f"Stopped after {len(parts)} of {len(jobs)} classes (CPU budget); merged from the finished part files."
        print("wrote", write_record(rec, a.out_dir))


if __name__ == "__main__":
    main()
