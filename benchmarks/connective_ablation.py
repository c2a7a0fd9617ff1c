"""Connective (paper 001) ablations on a one-class protocol, one record per variant:

  <label>            the method (connective mixing, denoising AE, classifier score)
  <label>-re         reconstruction error alone (mean Charbonnier error of the same AE)
  <label>-recmix     classifier on A(x) vs d(A(x)) and scored on A(x) (no mixing with x)
  <label>-nomix      no connective mixing and no AE: classifier on x vs d(x), scored on x
  <label>-nodenoise  AE trained on clean images only, then the full method

Variants that share the trained denoising AE reuse it instead of retraining:
training is seeded per stage (train_loop re-seeds at its start), so a fresh
``fit`` of such a variant trains a bit-identical AE (tests/test_connective.py
checks this); only the classifier stage is run again. Metrics and records come
from the bench runner; thresholds are calibrated on normal validation data.

Example:
  python benchmarks/connective_ablation.py --dataset mnist --max-train 1000 --data-dir /work/shared/data
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

from noveltylab import metrics
from noveltylab.bench import runner
from noveltylab.data import load_dataset, one_class
from noveltylab.detector import create, seed_everything
from noveltylab.methods.connective import Connective
from noveltylab.train import map_batches

VARIANTS = {"": {}, "-re": {"score_mode": "reconstruction-error"}, "-recmix": {"mix": "reconstruction"},
            "-nomix": {"mix": "input"}, "-nodenoise": {"denoise": False}}


def with_shared_ae(base: Connective, xs_train, **changes) -> Connective:
    """A variant that keeps ``base``'s trained AE; retrains only the classifier if it needs one."""
    det = create("connective", **{**base.get_params(), **changes})
    det._validate()
    seed_everything(det.seed)  # same initialisation order as a fresh fit()
    det.input_shape_ = base.input_shape_
    det.threshold_ = None
    det._build()
    det.ae_.load_state_dict(base.ae_.state_dict())
    det.ae_.eval()
    det.history_ = {"ae": base.history_["ae"]}
    if det.clf_ is not None:
        xs = det._to_size(xs_train)
        ax = map_batches(det.ae_, xs, batch_size=256, device=det.device_)
        det.history_["clf"] = det._fit_clf(xs, ax)
    det.fitted_ = True
    return det


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--classes", nargs="*", type=int, default=None)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="connective-abl")
    ap.add_argument("--notes", default="")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(runner.DEFAULT_OUT))
    ap.add_argument("--partial-dir", default="/tmp/connective_partial")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    runner.set_threads(args.threads)
    started = time.perf_counter()
    train = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    classes = args.classes if args.classes is not None else list(range(train.num_classes))
    per: dict[str, dict] = {v: {} for v in args.variants}
    configs: dict[str, dict] = {}
    for c in classes:
        name = train.class_names[c]
        split = one_class(train, test, c, seed=args.seed, max_train=args.max_train)
        xtr = torch.from_numpy(split.train).permute(0, 3, 1, 2).float() / 255.0
        print(f"[ablation] {args.dataset} class={name} train={len(split.train)}", file=sys.stderr, flush=True)
        base, base_s = None, 0.0
        for v in args.variants:
            t0 = time.perf_counter()
            changes = VARIANTS[v]
            if v in ("-re", "-recmix") and base is not None:
                det = with_shared_ae(base, xtr, **changes)
                train_s = base_s + time.perf_counter() - t0  # AE time + this variant's classifier
            else:
                det = create("connective", profile=args.profile, seed=args.seed, **changes)
                det.fit(split.train, val=split.val)
                train_s = time.perf_counter() - t0
                if v == "":
                    base, base_s = copy.deepcopy(det), train_s
            configs[v] = {k: val for k, val in det.get_params().items() if k != "seed"}
            det.calibrate(split.val, fpr=runner.CALIBRATION_FPR)
            t0 = time.perf_counter()
            s = det.score(split.test)
            ips = len(split.test) / (time.perf_counter() - t0)
            m = metrics.summary(split.test_labels, s, det.threshold_)
            e = per[v].setdefault(name, {"task": c, "name": name, "metrics": {}, "train_seconds": [],
                                         "score_images_per_s": [], "n_train": len(split.train),
                                         "n_val": len(split.val), "n_test": len(split.test),
                                         "n_novel": int(split.test_labels.sum())})
            for k, val in m.items():
                e["metrics"].setdefault(k, []).append(val)
            e["train_seconds"].append(train_s)
            e["score_images_per_s"].append(ips)
            print(f"[ablation]   {args.label}{v}: auroc={m['auroc']:.4f} train={train_s:.1f}s", file=sys.stderr,
                  flush=True)
        done = len(per[args.variants[0]]) == len(classes)
        for v, tasks in per.items():
            rec = runner._assemble("connective", args.dataset, "one-class", {"max_train": args.max_train},
                                   args.profile, VARIANTS[v], configs[v], [args.seed], tasks, args.label + v,
                                   args.notes + f" [ablation {v or 'full method'}; connective_ablation.py]",
                                   None, time.perf_counter() - started, None)
            rec["subset"] = len(classes) < train.num_classes
            runner.write_record(rec, args.out_dir if done else args.partial_dir)
    print(f"[ablation] done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
