"""Summarise the NLN result files (benchmarks/results/nln-*.json) as a markdown table.

Prints, per data set / protocol / family: NLN AUROC, plain AUROC (same trained
models), the relative gain (the analogue of the paper's Tables 1-2), the
tasks covered, and the paper's number where it has one. Used to fill the
table in src/noveltylab/methods/nln/README.md (``--readme`` rewrites it).
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "benchmarks" / "results"
PAPER = ROOT / "src" / "noveltylab" / "bench" / "paper_numbers.csv"
README = ROOT / "src" / "noveltylab" / "methods" / "nln" / "README.md"
FAMS = ["ae", "aae", "vae", "aeres", "aecon"]


def load() -> dict:
    """Records keyed by (label, data set, protocol, profile, tasks); runs on disjoint task subsets of the
    same label / data set / protocol / profile (e.g. classes 0-4 and 5-9) are merged into one entry
    whose mean is over all their tasks."""
    groups: dict = {}
    for p in sorted(RES.glob("nln-*.json")):
        r = json.loads(p.read_text())
        groups.setdefault((r["label"], r["dataset"], r["protocol"], r["profile"]), []).append(r)
    recs = {}
    for (label, ds, proto, prof), rs in groups.items():
        per = {}
        for r in rs:
            for e in r["per_task"]:
                per.setdefault(e["name"], e)
        aucs = [float(np.mean(e["metrics"]["auroc"])) for e in per.values()]
        train = [s for r in rs for s in [r["train_seconds_per_task"]] * len(r["tasks"])]
        ips = [s for r in rs for s in [r["score_images_per_s"]] * len(r["tasks"])]
        merged = {"label": label, "tasks": list(per), "mean": {"auroc": float(np.mean(aucs))},
                  "train_seconds_per_task": float(np.mean(train)), "score_images_per_s": float(np.mean(ips)),
                  "files": [Path(r.get("file", "")).name for r in rs],
                  "device": ",".join(sorted({str(r.get("device", "cpu")) for r in rs}))}
        recs[(label, ds, proto, prof, ",".join(sorted(per)))] = merged
    return recs


def paper() -> dict:
    with open(PAPER) as f:
        return {(r["label"], r["dataset"], r["protocol"]): r for r in csv.DictReader(f)}


def fmt(v):
    return "-" if v is None else f"{100 * v:.1f}"


def table() -> str:
    recs, ref = load(), paper()
    rows = ["| data set | protocol | model | profile (device) | tasks | NLN AUROC | plain AUROC | NLN gain | "
            "paper (label: value) | train s/task | score img/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (label, ds, proto, prof, tasks), r in sorted(recs.items(),
                                                     key=lambda kv: (kv[0][1], kv[0][2], kv[0][0], kv[0][3])):
        m = re.fullmatch(r"nln-(ae|aae|vae|aeres|aecon)", label)
        if not m:
            continue
        plain = recs.get((f"{label}-plain", ds, proto, prof, tasks))
        a = r["mean"]["auroc"]
        b = plain["mean"]["auroc"] if plain else None
        gain = f"{100 * (a - b) / b:+.1f}%" if b else "-"
        refs = [f"{lab}: {ref[(lab, ds, proto)]['value']}" for lab in (label, f"{label}-plain")
                if (lab, ds, proto) in ref]
        ntask = len(r["tasks"])
        rows.append(f"| {ds} | {proto} | {label} | {prof} ({r['device']}) | {ntask} ({tasks if ntask < 10 else 'all'}) | {fmt(a)} | {fmt(b)} | "
                    f"{gain} | {'; '.join(refs) or '-'} | {r['train_seconds_per_task']:.0f} | "
                    f"{r['score_images_per_s']:.0f} |")
    extra = []
    def natural(kv):  # data set, protocol, then labels with their numbers in numeric order (k2 < k10)
        return kv[0][1], kv[0][2], re.sub(r"\d+", lambda m: m.group().zfill(4), kv[0][0])

    for (label, ds, proto, prof, tasks), r in sorted(recs.items(), key=natural):
        if re.search(r"-(abl-\w+|k\d+|L\d+)$", label):
            refv = ref.get((label, ds, proto), {}).get("value", "-")
            ntask = len(r["tasks"])
            extra.append(f"| {ds} | {proto} | {label} | {prof} | {ntask} ({tasks if ntask < 10 else 'all'}) | "
                         f"{fmt(r['mean']['auroc'])} | {refv} |")
    out = "\n".join(rows)
    if extra:
        out += ("\n\nStudies (same trained models, scoring variants; L sweeps retrain):\n\n"
                "| data set | protocol | variant | profile | tasks | AUROC | paper |\n|---|---|---|---|---|---|---|\n"
                + "\n".join(extra))
    return out


if __name__ == "__main__":
    t = table()
    if "--readme" in sys.argv:
        text = README.read_text()
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        block = f"{start}\n{t}\n{end}"
        if start in text:
            text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text = text.replace("RESULTS_PLACEHOLDER", block)
        README.write_text(text)
    print(t)
