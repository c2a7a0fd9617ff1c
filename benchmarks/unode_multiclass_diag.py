"""Diagnostic for UNODE's unlabeled multi-class gap: AUROC of each score term alone.

Trains UNODE (cpu profile, fewer epochs) on all CIFAR-10 (JPEG) classes and scores
the test set against one novel data set, reporting the AUROC of the normalised
similarity term, the binary-head term and their sum, and the novel / normal means of
each term. Writes benchmarks/results/unode_multiclass_diag__<novel>.json.

  python benchmarks/unode_multiclass_diag.py --novel mnist --max-train 500 --epochs 5
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from noveltylab import metrics
from noveltylab.data import load_dataset, make_splits
from noveltylab.detector import create


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--novel", default="mnist")
    ap.add_argument("--max-train", type=int, default=500)
    ap.add_argument("--max-novel", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--data-dir", default="/work/shared/data")
    ap.add_argument("--weights", default="/work/shared/weights/mobilenet_v2_imagenet/mobilenet_v2_imagenet.safetensors")
    ap.add_argument("--out-dir", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr = load_dataset("cifar10-jpeg", "train", data_dir=args.data_dir)
    te = load_dataset("cifar10-jpeg", "test", data_dir=args.data_dir)
    _, sp = next(make_splits("multiclass-unlabeled", tr, te, [args.novel], seed=0, max_train=args.max_train,
                             data_dir=args.data_dir, max_novel=args.max_novel))
    det = create("unode", profile="cpu", extractor_weights=args.weights, epochs=args.epochs).fit(sp.train, sp.val)
    comps = det.score_components(sp.test)
    y = sp.test_labels
    out = {"kind": "diagnostic", "method": "unode", "dataset": "cifar10-jpeg", "novel": args.novel,
           "command": "python benchmarks/unode_multiclass_diag.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
           "n_train": len(sp.train), "n_test": len(sp.test), "n_novel": int(y.sum()),
           "aug_weights": det.weights_, "auroc_sum": metrics.auroc(y, det.score(sp.test))}
    for k, v in comps.items():
        out[f"auroc_{k}"] = metrics.auroc(y, -v)
        out[f"mean_{k}_normal"], out[f"mean_{k}_novel"] = float(v[y == 0].mean()), float(v[y == 1].mean())
    path = Path(args.out_dir) / f"unode_multiclass_diag__{args.novel}.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps({k: v for k, v in out.items() if k.startswith(("auroc", "mean"))}, indent=1), "->", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
