"""Connective (paper 001) study: train ONE model per normal class and evaluate it on
the full one-class test set and on the paper's outlier-fraction test sets
(10-50 % outliers, Fig. 3), writing one runner record per protocol/fraction.

The protocols build their splits from the same seed, so the training and
validation images are identical for all of them (checked below); scores are
computed once on the full test set and looked up for the outlier-fraction
subsets (a sample's score does not depend on its batch). Metrics and record
files come from the bench runner (metrics.summary, _assemble, write_record);
the F1 threshold is calibrated on the normal validation split at 5 % FPR, as
the runner does.

Example:
  python benchmarks/connective_study.py --dataset mnist --max-train 2000 --profile cpu \
      --data-dir /work/shared/data --label connective
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from noveltylab import metrics
from noveltylab.bench import runner
from noveltylab.data import load_dataset, one_class, outlier_fraction
from noveltylab.detector import create


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--classes", nargs="*", type=int, default=None)
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.1, 0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--no-one-class", action="store_true", help="skip the full one-class record")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--param", nargs="*", default=[], help="key=value constructor overrides")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--label", default="connective")
    ap.add_argument("--notes", default="")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(runner.DEFAULT_OUT))
    ap.add_argument("--partial-dir", default="/tmp/connective_partial",
                    help="where records of unfinished runs go (never the results folder)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    params = {}
    for kv in args.param:
        k, v = kv.split("=", 1)
        try:
            params[k] = int(v)
        except ValueError:
            try:
                params[k] = float(v)
            except ValueError:
                params[k] = {"true": True, "false": False}.get(v.lower(), v)
    create("connective", profile=args.profile, **params)  # validate before loading data
    runner.set_threads(args.threads)
    started = time.perf_counter()
    train = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    classes = args.classes if args.classes is not None else list(range(train.num_classes))
    kw = {"max_train": args.max_train}
    protocols = ([] if args.no_one_class else [("one-class", None)]) + [("outlier-fraction", f)
                                                                        for f in args.fractions]
    per: dict[tuple, dict] = {p: {} for p in protocols}
    config: dict = {}
    for seed in args.seeds:
        for c in classes:
            name = train.class_names[c]
            full = one_class(train, test, c, seed=seed, **kw)
            det = create("connective", profile=args.profile, **{**params, "seed": seed})
            config = {k: v for k, v in det.get_params().items() if k != "seed"}
            print(f"[study] {args.dataset} class={name} seed={seed} train={len(full.train)}", file=sys.stderr,
                  flush=True)
            t0 = time.perf_counter()
            det.fit(full.train, val=full.val)
            train_s = time.perf_counter() - t0
            det.calibrate(full.val, fpr=runner.CALIBRATION_FPR)
            t0 = time.perf_counter()
            scores = det.score(full.test)
            ips = len(full.test) / (time.perf_counter() - t0)
            lookup = {}
            for img, s in zip(full.test, scores):
                lookup.setdefault(img.tobytes(), s)
            for proto in protocols:
                if proto[0] == "one-class":
                    split, s = full, scores
                else:
                    split = outlier_fraction(train, test, c, proto[1], seed=seed, **kw)
                    assert np.array_equal(split.train, full.train) and np.array_equal(split.val, full.val)
                    s = np.array([lookup[img.tobytes()] for img in split.test])
                m = metrics.summary(split.test_labels, s, det.threshold_)
                e = per[proto].setdefault(name, {"task": c, "name": name, "metrics": {}, "train_seconds": [],
                                                 "score_images_per_s": [], "n_train": len(split.train),
                                                 "n_val": len(split.val), "n_test": len(split.test),
                                                 "n_novel": int(split.test_labels.sum())})
                for k, v in m.items():
                    e["metrics"].setdefault(k, []).append(v)
                e["train_seconds"].append(train_s)
                e["score_images_per_s"].append(ips)
            print(f"[study]   one-class auroc={metrics.auroc(full.test_labels, scores):.4f} "
                  f"train={train_s:.1f}s", file=sys.stderr, flush=True)
            # after every class: a partial record under --partial-dir; the full record at the end
            done = seed == args.seeds[-1] and len(per[protocols[0]]) == len(classes)
            for (proto, frac), tasks in per.items():
                opts = dict(kw)
                if frac is not None:
                    opts["fraction"] = frac
                rec = runner._assemble("connective", args.dataset, proto, opts, args.profile, params, config,
                                       list(args.seeds), tasks, args.label,
                                       args.notes + " [one model per class shared by the one-class and "
                                       "outlier-fraction records; connective_study.py]",
                                       None, time.perf_counter() - started, None)
                rec["subset"] = len(classes) < train.num_classes
                path = runner.write_record(rec, args.out_dir if done else args.partial_dir)
    print(f"[study] done in {time.perf_counter() - started:.0f}s; last record {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
