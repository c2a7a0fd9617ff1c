"""NLN benchmarks (paper 000): one training per task, several scorings of the same model.

Each run trains ``nln-<family>`` once per task through the shared bench
runner (``run_benchmark``) and scores the test set with NLN (the record's
``auroc``). Scoring-only variants of the *same* trained model are added as
extra metrics by :meth:`NLNDetector.set_scoring` (normalisation constants
re-measured on the normal validation split, never on test data):

* ``plain_*``: the family's score without NLN (reconstruction / residual /
  consistency error); written as a second record labelled ``<label>-plain``.
* ``--ablation`` (paper Table 6, AE-con, K = 2, alpha = 0.9):
  ``abl_recon`` (Eq. 3), ``abl_nln`` (first term of Eq. 4), ``abl_con``
  (first term of Eq. 8), ``abl_total`` (Eq. 8); one record per term.
* ``--ksweep`` (paper Fig. 5, alpha = 0.8): ``k<K>_auroc`` for K in 1, 2, 3, 5, 10.

Example::

    python benchmarks/nln_bench.py --family ae --dataset mnist --protocol one-class \
        --max-train 1000 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from noveltylab import metrics  # noqa: E402
from noveltylab.bench.runner import _assemble, current_command, run_benchmark, write_record  # noqa: E402

KS = (1, 2, 3, 5, 10)
ABLATION = {  # Table 6 terms: (nln, error, alpha)
    "abl_recon": dict(nln=False, error="recon"),
    "abl_nln": dict(nln=True, error="recon", alpha=1.0),
    "abl_con": dict(nln=True, error="consistency", alpha=1.0),
    "abl_total": dict(nln=True, error="consistency", alpha=0.9),
}


def make_extra(ablation: bool, ksweep: bool):
    def extra(det, split, scores):
        base = {p: getattr(det, p) for p in ("nln", "error", "k", "alpha")}
        out: dict[str, float] = {}

        def auroc_with(**params):
            det.set_scoring(split.val, **params)
            return metrics.auroc(split.test_labels, det.score(split.test))

        out["plain_auroc"] = auroc_with(nln=False)
        if ablation:
            det.set_scoring(split.val, **{**base, "k": 2})
            for key, params in ABLATION.items():
                out[f"{key}_auroc"] = auroc_with(**{**base, "k": 2, **params})
        if ksweep:
            for k in KS:
                out[f"k{k}_auroc"] = auroc_with(**{**base, "nln": True, "k": k, "alpha": 0.8})
        det.set_scoring(split.val, **base)
        return out
    return extra


def derived(record: dict, prefix: str, label: str, notes: str, config: dict) -> dict:
    """A record for a scoring variant: the per-task metric ``<prefix>_auroc`` becomes ``auroc``."""
    per_task = {}
    for e in record["per_task"]:
        e2 = copy.deepcopy(e)
        e2["metrics"] = {"auroc": e["metrics"][f"{prefix}_auroc"]}
        e2.pop("mean", None)
        per_task[e2["name"]] = e2
    rec = _assemble(record["method"], record["dataset"], record["protocol"], record["protocol_options"],
                    record["profile"], {**record["params_overrides"], **config}, {**record["config"], **config},
                    record["seeds"], per_task, label, notes, record["command"], record["duration_seconds"],
                    None)
    rec["subset"] = record.get("subset", False)
    rec["derived_from"] = record["label"]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=["ae", "aae", "vae", "aeres", "aecon"])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--protocol", default="one-class")
    ap.add_argument("--classes", nargs="*", default=None)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--param", action="append", default=[], help="key=value constructor override")
    ap.add_argument("--label", default=None)
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--ksweep", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--notes", default="")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    params = {}
    for kv in args.param:
        k, v = kv.split("=", 1)
        params[k] = json.loads(v) if v not in ("True", "False") else v == "True"
    method = f"nln-{args.family}"
    label = args.label or method
    cap = f"training set capped at {args.max_train} images (seeded, stratified); " if args.max_train else ""
    notes = (f"{cap}{args.profile} profile, 1 seed; K, alpha fixed in advance (no test-set selection); "
             f"normalisation from the normal validation split. {args.notes}").strip()
    rec = run_benchmark(method, args.dataset, args.protocol, classes=args.classes, profile=args.profile,
                        params=params, max_train=args.max_train, label=label, notes=notes,
                        data_dir=args.data_dir, out_dir=args.out_dir, command=current_command(),
                        threads=args.threads, extra_metrics=make_extra(args.ablation, args.ksweep))
    print(f"{label}: NLN auroc {rec['mean']['auroc']:.4f}  plain {rec['mean']['plain_auroc']:.4f}")
    write_record(derived(rec, "plain", f"{label}-plain", notes + " Same trained models, scored without NLN.",
                         {"nln": False}), args.out_dir)
    if args.ablation:
        for key, p in ABLATION.items():
            r = derived(rec, key, f"{label}-{key.replace('_', '-')}", notes + f" Table 6 term {key}, K=2.",
                        {**p, "k": 2})
            write_record(r, args.out_dir)
            print(f"  {key}: {r['mean']['auroc']:.4f}")
    if args.ksweep:
        for k in KS:
            r = derived(rec, f"k{k}", f"{label}-k{k}", notes + f" K sweep (Fig. 5), alpha=0.8, K={k}.",
                        {"k": k, "alpha": 0.8, "nln": True})
            write_record(r, args.out_dir)
            print(f"  K={k}: {r['mean']['auroc']:.4f}")


if __name__ == "__main__":
    main()
