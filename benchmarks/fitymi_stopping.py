"""FITYMI stopping-point sensitivity (paper 002, Table 3 right) on one normal class.

Trains ONE score-SDE generator (cpu-profile size) on the normal class with an
FID check (MobileNetV2 64-px features vs normal validation images) every
``--check-every`` epochs, keeping each check's weights; then, for each check,
samples the fakes, fine-tunes a fresh FITYMI backbone on them
(``FITYMI.fit_with_fakes``) and scores

* near-ND: normal test vs the Eq. 2 closest class (the ``near-nd`` protocol),
* ND: normal test vs a seeded subset of ``--nd-subset`` other-class test images
  (a subset, to keep the CPU cost down; stated in the output).

Also records DN2 (the same backbone without fine-tuning) as the "before" row,
the k-sweep of the last stopping point, and a PNG grid of fakes per check.
Writes ``benchmarks/results/fitymi-stopping__<dataset>__<class>.json``.

A script, not a spec: the study trains one generator and fine-tunes a detector from
each of its saved checkpoints, which no (class, seed) task of the engine expresses.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--normal", default="0")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--check-every", type=int, default=5)
    ap.add_argument("--use-epochs", nargs="*", type=int, default=[5, 10, 20, 40])
    ap.add_argument("--nd-subset", type=int, default=2000)
    ap.add_argument("--k-sweep", nargs="*", type=int, default=[1, 2, 5, 10, 50])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default="benchmarks/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    import noveltylab as nl
    from noveltylab.data import load_dataset
    from noveltylab.data.near_nd import near_nd
    from noveltylab.generative import ScoreModel, feature_extractor
    from noveltylab.generative.io import save_grid
    from noveltylab.methods.dn2 import resolve_weights
    from noveltylab.methods.fitymi import FITYMI
    from noveltylab.metrics import auroc

    t_start = time.time()
    train = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    normal = train.class_index(args.normal)
    split = near_nd(train, test, normal, max_train=args.max_train)
    near = split.info["near_class"]
    rng = np.random.default_rng(0)
    others = np.flatnonzero(test.labels != normal)
    nd_idx = np.concatenate([np.flatnonzero(test.labels == normal),
                             np.sort(rng.choice(others, size=min(args.nd_subset, len(others)), replace=False))])
    nd_x, nd_y = test.images[nd_idx], (test.labels[nd_idx] != normal).astype(int)

    def t01(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255

    x, val = t01(split.train), t01(split.val)
    prof = dict(FITYMI.profiles["cpu"])
    print(f"[stop] {args.dataset} normal={train.class_names[normal]} near={train.class_names[near]} "
          f"train={len(x)}", file=sys.stderr, flush=True)

    # before: DN2 with the same backbone / input size
    dn2 = nl.create("dn2", profile="cpu").fit(split.train)
    rows = [{"stop": "before (dn2)", "epoch": 0, "fid": None,
             "near_auroc": auroc(split.test_labels, dn2.score(split.test)),
             "nd_auroc_subset": auroc(nd_y, dn2.score(nd_x))}]
    print(f"[stop] before: {rows[0]}", file=sys.stderr, flush=True)

    ext = feature_extractor("mobilenet_v2", resolve_weights("mobilenet_v2", "auto"), input_size=64)
    g = torch.Generator().manual_seed(0)
    xg = x[torch.randperm(len(x), generator=g)[: prof["gen_max_images"]].sort().values]
    gen = ScoreModel(x.shape[1], prof["gen_size"], "vp", prof["gen_width"], (1, 2), 1, prof["gen_lr"], 64, 0)
    t0 = time.time()
    gen.fit_early_stopped(xg, val, ext, max_epochs=args.epochs, check_every=args.check_every, fid_target=None,
                          fid_samples=prof["fid_samples"], sample_steps=prof["sample_steps"])
    gen_s = time.time() - t0
    checks = {c.epoch: c for c in gen.checkpoints_}
    print(f"[stop] generator {gen_s:.0f}s FIDs " + ", ".join(f"{c.epoch}:{c.fid:.1f}" for c in gen.checkpoints_),
          file=sys.stderr, flush=True)
    grid_dir = Path(args.out_dir) / "fitymi_samples"
    tiles = [x[:16]]
    for e in args.use_epochs:
        if e not in checks:
            continue
        gen.load_check(checks[e])
        fakes = gen.sample(prof["n_fakes"], steps=prof["sample_steps"], seed=1, out_size=tuple(x.shape[-2:]))
        tiles.append(fakes[:16])
        det = nl.create("fitymi", profile="cpu")
        t0 = time.time()
        det.fit_with_fakes(split.train, fakes, split.val)
        ft_s = time.time() - t0
        row = {"stop": f"epoch {e}", "epoch": e, "fid": checks[e].fid,
               "near_auroc": auroc(split.test_labels, det.score(split.test)),
               "nd_auroc_subset": auroc(nd_y, det.score(nd_x)),
               "ft_train_acc": det.ft_history_.epochs[-1]["acc"], "finetune_seconds": ft_s}
        if e == args.use_epochs[-1] and args.k_sweep:
            fn = det._features(t01(split.test))
            fd = det._features(t01(nd_x))
            for k in args.k_sweep:
                row[f"near_k{k}"] = auroc(split.test_labels, det.index_.score(fn, k=k, agg="sumsq"))
                row[f"nd_k{k}"] = auroc(nd_y, det.index_.score(fd, k=k, agg="sumsq"))
        rows.append(row)
        print(f"[stop] {row}", file=sys.stderr, flush=True)
    save_grid(torch.cat(tiles), grid_dir / f"fitymi-stopping_{args.dataset}_{normal}.png", nrow=16, scale=2)
    out = {
        "kind": "study", "study": "fitymi stopping point / k sensitivity (paper 002 Table 3)",
        "dataset": args.dataset, "normal_class": train.class_names[normal], "near_class": train.class_names[near],
        "rows": rows,
        "fid_checks": [{"epoch": c.epoch, "fid": c.fid, "dsm_loss": c.loss} for c in gen.checkpoints_],
        "generator_seconds": gen_s, "nd_subset_novel_images": int(nd_y.sum()),
        "notes": "cpu profile (see fitymi cpu profile); FID = Frechet distance of ImageNet-MobileNetV2 64-px "
                 "features of 100 samples vs normal validation images (not Inception FID; the paper's windows "
                 "300/100-200/30-50/<20 are on the Inception scale); ND AUROC on a seeded subset of "
                 f"{int(nd_y.sum())} other-class test images; 1 seed",
        "duration_seconds": round(time.time() - t_start, 1),
        "command": "OMP_NUM_THREADS=1 python benchmarks/fitymi_stopping.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(args.out_dir) / f"fitymi-stopping__{args.dataset}__{normal}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"[stop] wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
