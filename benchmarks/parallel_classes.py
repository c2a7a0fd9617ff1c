"""Run one benchmark command on groups of classes in parallel processes, then merge the records.

For machines with many cores or a GPU that one process cannot fill. Each worker
gets ``--classes <its group> --out-dir <its folder>`` appended to the command;
afterwards the records with the same label, data set, protocol and profile are
merged (``noveltylab.bench.runner.merge_records``) into one file in ``--out-dir``.
``--classes`` should list every class of the data set (the merged record is
filed as a full run unless a worker failed).

  python benchmarks/parallel_classes.py --workers 5 --classes 0 1 2 3 4 5 6 7 8 9 \
      --out-dir benchmarks/results -- noveltylab bench --method raw-nn --dataset mnist
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from noveltylab.bench.runner import merge_records, write_record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--classes", nargs="+", required=True)
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the benchmark command")
    a = ap.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("give the benchmark command after --")
    groups = [a.classes[i::a.workers] for i in range(a.workers) if a.classes[i::a.workers]]
    tmp = Path(tempfile.mkdtemp(prefix="parallel_classes_"))
    procs = []
    for i, group in enumerate(groups):
        full = cmd + ["--classes", *group, "--out-dir", str(tmp / f"w{i}")]
        log = open(tmp / f"w{i}.log", "w")
        procs.append((subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT), log, full))
        print(f"[parallel] worker {i}: {shlex.join(full)}", flush=True)
    failed = 0
    for i, (p, log, full) in enumerate(procs):
        rc = p.wait()
        log.close()
        if rc:
            failed += 1
            print(f"[parallel] worker {i} failed (exit {rc}); its log:\n{(tmp / f'w{i}.log').read_text()[-3000:]}",
                  file=sys.stderr)
    groups_by_key: dict[tuple, list[dict]] = {}
    for path in sorted(tmp.glob("w*/*.json")):
        rec = json.loads(path.read_text())
        if rec.get("kind") != "novelty":
            continue
        key = (rec["label"], rec["dataset"], rec["protocol"], json.dumps(rec.get("protocol_options"), sort_keys=True),
               rec.get("profile"))
        groups_by_key.setdefault(key, []).append(rec)
    command = "python benchmarks/parallel_classes.py " + shlex.join(sys.argv[1:])
    for recs in groups_by_key.values():
        merged = merge_records(recs, command=command)
        merged["subset"] = failed > 0 or len(merged["tasks"]) < len(a.classes)  # --classes = every class
        print(f"[parallel] {merged['label']}: AUROC {100 * merged['mean']['auroc']:.2f} over "
              f"{len(merged['tasks'])} tasks -> {write_record(merged, a.out_dir)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
