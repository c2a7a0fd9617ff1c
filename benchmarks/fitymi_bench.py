"""FITYMI / DN2 benchmark driver (paper 002): the standard runner plus near-ND extras.

Kept as a script (the plain one-class and near-ND rows are entries of
``benchmarks/specs/p002_fitymi.toml`` and ``p002_near_nd.toml``) because its extras are
FITYMI-specific code rather than settings: the k sweep from one pass of the backbone's
private feature function, the generator's FID / stop-epoch diagnostics, the fraction of
test images called fake, and PNG grids / image folders of the fakes.

Runs ``noveltylab.bench.runner.run_benchmark`` and adds, per task:

* on ``one-class`` runs, from the same test scores (no extra scoring):
  ``near_clp_auroc`` (normal vs the Eq. 2 closest class of the same data set;
  equals the ``near-nd`` protocol's AUROC), ``bottom1_auroc`` /
  ``bottom1_class`` (the paper's bottom-1: the other class on which this
  detector is worst);
* ``--k-sweep 1 2 5 10 50``: AUROC for each k from one feature pass (Table 3 left);
* for ``fitymi``: the generator's last FID check and stop epoch, the fine-tuning
  head's final training accuracy, the fraction of test images it calls fake,
  and a PNG grid of the fakes per class (``--grid-dir``); ``--save-fakes DIR``
  writes them as an image folder (``DIR/<dataset>_<class>/fake/NNNNN.png``,
  readable with ``load_dataset("folder:...")``).

Example::

    OMP_NUM_THREADS=1 python benchmarks/fitymi_bench.py --method dn2 --dataset fashion-mnist \
        --protocol one-class --profile cpu --max-train 1000 --label dn2-mnv2 --data-dir /work/shared/data
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np


def _value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"none": None, "None": None, "true": True, "false": False}.get(v, v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--protocol", default="one-class")
    ap.add_argument("--classes", nargs="*", default=None)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--param", nargs="*", default=[], help="key=value detector overrides")
    ap.add_argument("--option", nargs="*", default=[], help="key=value protocol options")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--notes", default="")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--k-sweep", nargs="*", type=int, default=[])
    ap.add_argument("--grid-dir", default="benchmarks/results/fitymi_samples")
    ap.add_argument("--save-fakes", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--near-record", action="store_true",
                    help="one-class runs: also write a near-nd record from the same trained models and scores "
                         "(test = normal test images vs the Eq. 2 closest class; all metrics, F1 at the "
                         "validation threshold), so one training per class gives both rows")
    ap.add_argument("--cache-features", action="store_true",
                    help="dn2 only: reuse backbone features of identical image sets across tasks (DN2 is "
                         "deterministic, so the shared one-class test set is embedded once; the recorded "
                         "score img/s then only means something for the first task)")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("noveltylab.knn").setLevel(logging.WARNING)
    if args.cache_features:
        if args.method != "dn2":
            raise SystemExit("--cache-features is only valid for dn2 (fitymi features change per task)")
        import hashlib

        from noveltylab.methods.dn2 import DN2

        orig, cache = DN2._features, {}

        def cached(self, x):
            key = (hashlib.sha1(x.numpy().tobytes()).hexdigest(), tuple(x.shape), self.backbone,
                   str(self.weights), self.input_size)
            if key not in cache:
                cache[key] = orig(self, x)
            return cache[key]

        DN2._features = cached

    from noveltylab.bench.runner import run_benchmark
    from noveltylab.data import load_dataset
    from noveltylab.data.near_nd import closest_class, per_class_auroc
    from noveltylab.metrics import auroc, summary

    near_metrics: dict[str, dict[str, float]] = {}

    params = dict(kv.split("=", 1) for kv in args.param)
    params = {k: _value(v) for k, v in params.items()}
    options = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.option)}
    train_set = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    name = args.dataset.replace(":", "_").replace("/", "_")

    def extra(det, split, scores):
        out: dict[str, float] = {}
        normal = split.normal_classes[0]
        cname = train_set.class_names[normal]
        if split.info.get("protocol") == "one-class" and len(split.normal_classes) == 1:
            per = per_class_auroc(scores, split.test_labels, split.test_classes)
            b = min(per, key=per.get)
            near = closest_class(train_set, normal)
            out.update(bottom1_auroc=per[b], bottom1_class=float(b), near_clp_auroc=per[near],
                       near_clp_class=float(near))
            if args.near_record:
                keep = (split.test_labels == 0) | (split.test_classes == near)
                m = summary(split.test_labels[keep], np.asarray(scores)[keep], det.threshold_)
                near_metrics[cname] = {"metrics": {**m, "near_class": float(near)}, "n_test": int(keep.sum()),
                                       "n_novel": int((split.test_classes == near).sum())}
        if split.info.get("protocol") == "near-nd":
            out["near_class"] = float(split.info["near_class"])
        if args.k_sweep:
            feats = det._features(__import__("torch").from_numpy(split.test).permute(0, 3, 1, 2).float() / 255)
            for k in args.k_sweep:
                s = det.index_.score(feats, k=k, agg=det.agg)
                out[f"auroc_k{k}"] = auroc(split.test_labels, s)
                if split.info.get("protocol") == "one-class":
                    per = per_class_auroc(s, split.test_labels, split.test_classes)
                    out[f"near_clp_auroc_k{k}"] = per[closest_class(train_set, normal)]
        if det.name == "fitymi":
            checks = det.gen_checks_
            if checks:
                out["gen_fid_at_stop"] = float(checks[-1]["fid"])
                out["gen_stop_epoch"] = float(checks[-1]["epoch"])
            out["ft_train_acc"] = float(det.ft_history_.epochs[-1]["acc"]) if det.ft_history_.epochs else float("nan")
            out["ft_collapsed"] = float(getattr(det, "ft_collapsed_", False))
            out["test_frac_called_fake"] = float((det.fake_probability(split.test) > 0.5).mean())
            from noveltylab.generative.io import save_grid, save_image_folder

            tag = f"{name}_{normal}_{cname}".replace(" ", "_").replace("/", "-")
            if args.grid_dir:
                real = __import__("torch").from_numpy(split.train[:16]).permute(0, 3, 1, 2).float() / 255
                grid = __import__("torch").cat([real, det.fakes_[:48]])
                save_grid(grid, Path(args.grid_dir) / f"{args.label or det.name}_{tag}.png", nrow=16, scale=2)
            if args.save_fakes:
                save_image_folder(det.fakes_, Path(args.save_fakes) / tag, "fake")
        return out

    command = "OMP_NUM_THREADS=1 python benchmarks/fitymi_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rec = run_benchmark(args.method, args.dataset, args.protocol, classes=args.classes, seeds=args.seeds,
                        profile=args.profile, params=params, protocol_options=options, max_train=args.max_train,
                        label=args.label, notes=args.notes, data_dir=args.data_dir, out_dir=args.out_dir,
                        command=command, threads=args.threads, extra_metrics=extra)
    if near_metrics:
        _write_near_record(rec, near_metrics, args.out_dir)
    m = rec["mean"]
    print(f"{rec['label']} {args.dataset} {args.protocol}: AUROC {m.get('auroc', np.nan):.4f}"
          + "".join(f" {k}={m[k]:.4f}" for k in ("near_clp_auroc", "bottom1_auroc") if k in m)
          + f" -> {rec.get('file')}")
    return 0


def _write_near_record(rec: dict, near_metrics: dict[str, dict[str, float]], out_dir: str) -> None:
    """Write the near-nd record derived from a one-class run (same models, same scores)."""
    import copy

    from noveltylab.bench.runner import _assemble, write_record

    per_task = {}
    for e in rec["per_task"]:
        if e["name"] not in near_metrics:
            continue
        e = copy.deepcopy({k: v for k, v in e.items() if k != "mean"})
        near = near_metrics[e["name"]]
        e["metrics"] = {k: [v] for k, v in near["metrics"].items()}
        e["n_test"], e["n_novel"] = near["n_test"], near["n_novel"]
        per_task[e["name"]] = e
    notes = (rec["notes"] + " Near-ND record derived from the one-class run (same trained models and test "
             "scores, restricted to normal test images vs the Eq. 2 closest class; --near-record).").strip()
    out = _assemble(rec["method"], rec["dataset"], "near-nd", rec["protocol_options"], rec["profile"],
                    rec["params_overrides"], rec["config"], rec["seeds"], per_task, rec["label"], notes,
                    rec["command"], rec.get("duration_seconds", 0.0), None)
    out["subset"] = rec.get("subset", False)
    print("near-nd record:", write_record(out, out_dir))


if __name__ == "__main__":
    raise SystemExit(main())
