"""PatchCore / PaDiM cost at 224 px on CPU: fit on N images including feature extraction, scoring
images/s, memory-bank bytes per patch (exact Flat, and the same coreset in PQ via ``PatchCore.reindex``),
wall and CPU seconds. Writes one JSON file (rewritten after every row).

  python benchmarks/patch_speed.py --threads 2 --out benchmarks/results/speed/patch_speed_224.json

No feature cache (every image is embedded). CPU seconds (user + system of this process) are recorded
beside the wall-clock figures because the measuring machine may be shared: on an idle machine the wall
time approaches CPU seconds / threads.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn):
    w, c = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - w, _cpu() - c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--normal", default="0")
    p.add_argument("--n-fit", type=int, default=200)
    p.add_argument("--n-score", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--methods", nargs="*", default=["patchcore", "reindex:index=PQ32x4fs", "padim"],
                   help="method[:key=value,...]; reindex:index=F = the previous PatchCore bank in index F")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/speed/patch_speed_224.json"))
    a = p.parse_args()
    os.environ.pop("NOVELTYLAB_FEATURE_CACHE", None)

    import noveltylab
    from noveltylab.bench.runner import current_command, git_commit, set_threads
    from noveltylab.data import load_dataset, one_class

    set_threads(a.threads)
    train, test = load_dataset(a.dataset, "train", data_dir=a.data_dir), load_dataset(a.dataset, "test", data_dir=a.data_dir)
    split = one_class(train, test, int(a.normal) if a.normal.isdigit() else a.normal, max_train=a.n_fit, val_fraction=0)
    x_fit = split.train[: a.n_fit]
    x_score = split.test[np.random.default_rng(0).choice(len(split.test), a.n_score, replace=False)]
    rows = []
    record = {"kind": "speed", "label": "patch-speed-224", "dataset": a.dataset, "normal": a.normal,
              "threads": a.threads, "rows": rows, "machine": f"{os.cpu_count()} cpus", "commit": git_commit(),
              "command": current_command(), "torch": torch.__version__}

    def write() -> None:  # after every row: a long run on a busy machine keeps what it measured
        record.update(load_average=os.getloadavg(), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=1))

    for spec in a.methods:
        name, _, rest = spec.partition(":")
        params = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
        if name == "reindex":  # the last PatchCore model's bank in another index: no refit, scoring re-timed
            det.reindex(params["index"])
            fit_w = fit_c = None
        else:
            noveltylab.create(name, profile="cpu", device="cpu", **params).fit(x_fit[:2])  # warm-up, not timed
            det = noveltylab.create(name, profile="cpu", device="cpu", **params)
            _, fit_w, fit_c = timed(lambda: det.fit(x_fit))
        _, sc_w, sc_c = timed(lambda: det.score(x_score))
        row = {"method": det.name, "params": params, "config": det.get_params(), "n_fit": len(x_fit),
               "n_score": len(x_score), "fit_seconds": None if fit_w is None else round(fit_w, 2),
               "fit_cpu_seconds": None if fit_c is None else round(fit_c, 2),
               "score_images_per_s": round(len(x_score) / sc_w, 2),
               "score_images_per_cpu_s": round(len(x_score) / sc_c, 2),
               "load_average": round(os.getloadavg()[0], 1)}
        if det.name == "patchcore":
            row.update(bank_patches=det.bank_size_, train_patches=det.n_train_patches_,
                       bytes_per_patch=det.bytes_per_patch_, bank_bytes=det.bank_size_ * det.bytes_per_patch_)
        else:
            row.update(stat_bytes=int(det.inv_cov_.numel() * 4 + det.mean_.numel() * 4))
        rows.append(row)
        write()
        print(json.dumps(row), flush=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
