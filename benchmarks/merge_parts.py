"""Merge result files that ran one setting on disjoint class subsets into one record.

Runs of the same label / data set / protocol / options / profile / seeds / config
that were split over several processes or sessions (e.g. classes 0-2, then 3-9)
each write a ``(subset)`` record. This finds such groups in the results folder,
merges each with :func:`noveltylab.bench.runner.merge_records` (per-class
metrics kept, means recomputed, every part's command kept) and replaces the
parts by the merged file. Groups whose parts overlap or disagree are reported
and left alone.

  python benchmarks/merge_parts.py [--results benchmarks/results] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from noveltylab.bench.runner import merge_records, write_record
from noveltylab.data import PROTOCOLS, load_dataset


def _key(r: dict) -> str:
    return json.dumps([r["label"], r["method"], r["dataset"], r["protocol"], r.get("protocol_options"),
                       r.get("profile"), r["seeds"], r.get("config")], sort_keys=True, default=str)


def _n_tasks(dataset: str, protocol: str, data_dir: str) -> int | None:
    try:
        return len(PROTOCOLS[protocol][1](load_dataset(dataset, "train", data_dir=data_dir)))
    except Exception:  # data set not here: leave the subset flag to the task count alone
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    groups: dict[str, list[tuple[Path, dict]]] = {}
    for p in sorted(Path(args.results).glob("*.json")):
        r = json.loads(p.read_text())
        if isinstance(r, dict) and r.get("kind") == "novelty" and r.get("subset"):
            groups.setdefault(_key(r), []).append((p, r))
    for parts in groups.values():
        if len(parts) < 2:
            continue
        names = [p.name for p, _ in parts]
        try:
            merged = merge_records([r for _, r in parts])
        except ValueError as e:
            print(f"skip {names}: {e}")
            continue
        notes = list(dict.fromkeys(r["notes"] for _, r in parts))
        merged["notes"] = " | ".join(notes) + f" [merged from {len(parts)} runs on disjoint classes]"
        n = _n_tasks(merged["dataset"], merged["protocol"], args.data_dir)
        merged["subset"] = n is not None and len(merged["tasks"]) < n
        print(f"merge {names} -> {len(merged['tasks'])} tasks, subset={merged['subset']}")
        if not args.dry_run:
            out = write_record(merged, args.results)
            for p, _ in parts:
                if p.resolve() != Path(out).resolve():
                    p.unlink()
            print("  ->", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
