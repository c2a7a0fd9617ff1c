#!/usr/bin/env python
"""ONNX export check on real images: fit each exportable method, export it, and compare
onnxruntime's scores with torch's on the same test images (max absolute and relative difference).

    python scripts/export_equality.py --dataset mnist --normal-class 3 --data-dir ../shared/data \\
        --out benchmarks/results/export_onnx__mnist.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def main() -> int:
    import noveltylab
    from noveltylab.bench.provenance import git_commit
    from noveltylab.data import load_dataset
    from noveltylab.data.protocols import normal_train_val
    from noveltylab.export import EXPORTERS, OnnxScorer, export_onnx
    from noveltylab.images import as_images

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--normal-class", default="3")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--methods", nargs="*", default=sorted(EXPORTERS))
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--param", nargs="*", default=[], help="method:key=value overrides, e.g. dn2:input_size=224")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    train, _ = normal_train_val(load_dataset(args.dataset, "train", data_dir=args.data_dir), [args.normal_class],
                                max_train=args.max_train, seed=0)
    test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    x = as_images(test.images[:args.n_test])
    overrides: dict[str, dict] = {}
    for item in args.param:
        m, kv = item.split(":", 1)
        k, v = kv.split("=", 1)
        overrides.setdefault(m, {})[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
    rows = []
    for name in args.methods:
        det = noveltylab.create(name, profile=args.profile, **overrides.get(name, {}))
        t = time.time()
        det.fit(train)
        fit_s = time.time() - t
        with tempfile.TemporaryDirectory() as tmp:
            meta = export_onnx(det, Path(tmp) / "m.onnx")
            scorer = OnnxScorer(Path(tmp) / "m.onnx", det, threads=1)
            t = time.time()
            s_torch = det.score(x)
            torch_s = time.time() - t
            t = time.time()
            s_onnx = scorer.score(x)
            onnx_s = time.time() - t
        diff = np.abs(s_onnx - s_torch)
        rel = diff / np.maximum(np.abs(s_torch), 1e-12)
        row = {"method": name, "params": det.get_params(), "kind": meta["kind"], "images": int(len(x)),
               "max_abs_diff": float(diff.max()), "max_rel_diff": float(rel.max()),
               "score_range": [float(s_torch.min()), float(s_torch.max())],
               "within_1e-4": bool(np.all(diff <= 1e-4 * np.maximum(1.0, np.abs(s_torch)))),
               "fit_s": fit_s, "torch_score_s": torch_s, "onnx_score_s": onnx_s}
        rows.append(row)
        print(f"{name:<10} {meta['kind']:<8} max |onnx - torch| {row['max_abs_diff']:.3g} "
              f"(relative {row['max_rel_diff']:.3g}) on {len(x)} images; within 1e-4: {row['within_1e-4']}",
              flush=True)
    rec = {"kind": "onnx-export-check", "command": shlex.join([Path(sys.executable).name, *sys.argv]),
           "git_commit": git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "dataset": args.dataset, "normal_class": args.normal_class, "profile": args.profile,
           "max_train": args.max_train, "test_images": f"first {args.n_test} of the test split", "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
        print(f"record written to {args.out}")
    return 0 if all(r["within_1e-4"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
