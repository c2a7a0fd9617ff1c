"""Markdown table of the result files whose label matches a pattern (for the method READMEs).

One row per record: data set, protocol, label, tasks, AUROC, the paper's number
(same lookup as RESULTS.md), extra AUROC-type metrics (per score term, near-ND,
corrupted, ...), training seconds per task and scoring images/s, and the
per-task AUROCs. ``--readme FILE`` replaces the text between
``<!-- table:NAME:start -->`` and ``<!-- table:NAME:end -->`` in FILE, so the
README tables are generated from the result files, never typed.

  python benchmarks/method_table.py 'unode*' --name unode --readme src/noveltylab/methods/README_unode.md
"""
from __future__ import annotations

import argparse
import fnmatch
import re
from pathlib import Path

from noveltylab.bench.report import _paper_ref, load_results, paper_numbers

EXTRA_SKIP = {"auroc", "aupr", "f1", "f1_max", "fpr95"}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def table(results: str, patterns: list[str], protocols: list[str] | None = None) -> str:
    records, _ = load_results(results)
    refs = paper_numbers()
    rows = [r for r in records if any(fnmatch.fnmatch(r["label"], p) for p in patterns)
            and (not protocols or r["protocol"] in protocols)]
    rows.sort(key=lambda r: (r["dataset"], r["protocol"], r["label"]))
    out = ["| data set | protocol | label | tasks | max train | AUROC | paper | F1 | F1-max | other AUROCs "
           "| train s/task | score img/s | per task |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r.get("mean", {})
        ref = _paper_ref(refs, r)
        extra = ", ".join(f"{k.replace('auroc_', '').replace('_auroc', '')} {_pct(v)}" for k, v in sorted(m.items())
                          if "auroc" in k and k not in EXTRA_SKIP and not k.endswith(("_std_tasks", "_std_seeds")))
        per = ", ".join(f"{e['name']}: {_pct(e['mean']['auroc'])}" for e in r["per_task"] if "mean" in e)
        tasks = f"{len(r['tasks'])}{' (subset)' if r.get('subset') else ''}"
        opts = r.get("protocol_options") or {}
        proto = r["protocol"] + "".join(f" {k}={v}" for k, v in sorted(opts.items()) if k != "max_train")
        out.append(f"| {r['dataset']} | {proto} | {r['label']} | {tasks} | {opts.get('max_train') or 'all'} "
                   f"| {_pct(m.get('auroc'))} | {ref['value'] if ref else ''} | {_pct(m.get('f1'))} "
                   f"| {_pct(m.get('f1_max'))} | {extra} | {r.get('train_seconds_per_task') or 0:.0f} "
                   f"| {r.get('score_images_per_s') or 0:.0f} | {per} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("patterns", nargs="+", help="label patterns (shell-style, e.g. 'unode*')")
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--protocol", nargs="*", default=None, help="only these protocols")
    ap.add_argument("--name", default="results", help="marker name in the README")
    ap.add_argument("--readme", default=None)
    args = ap.parse_args()
    text = table(args.results, args.patterns, args.protocol)
    if args.readme is None:
        print(text)
        return 0
    path = Path(args.readme)
    start, end = f"<!-- table:{args.name}:start -->", f"<!-- table:{args.name}:end -->"
    doc = path.read_text()
    if start not in doc or end not in doc:
        raise SystemExit(f"{path}: markers {start} / {end} not found")
    doc = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{text}\n{end}", doc, flags=re.S)
    path.write_text(doc)
    print(f"updated {path} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
