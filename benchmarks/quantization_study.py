"""Quantization study of paper 003 (Fig. 2): AUROC and search time of NN-QED for
m in {1, 2, 4, 8, 16, 32, 64, 128} sub-quantizers x c in {1..8} bits, against
exact search (NN-EED), on saved Inception-CAE representations, so the networks
are trained once: ``--from-spec SPEC --label LABEL`` trains the spec entry's network per class and
seed (the bench engine's splits and settings) and saves the representations into ``--features``
first, unless they are already there.

This stays a script because the study is code, not a setting: it sweeps 72 FAISS product
quantizers over fixed representations and times their search.

  python benchmarks/quantization_study.py --features /path/feats --dataset fashion-mnist \
      --from-spec benchmarks/specs/p003_cae.toml --label inception-cae-nn-qed --max-train 600 \
      --data-dir ../shared/data

For every class file ``inception-cae__<dataset>__<class>__seed<s>.npz`` (train /
test representations + test labels) it builds each PQ index on the training
representations (``KNNIndex("PQ{m}x{c}")``; 4-bit codes also with FAISS
fast-scan ``PQ{m}x4fs``), scores the test representations by the squared
distance to the nearest neighbour and reports the AUROC averaged over classes
and the search time (best of ``--repeats``, one thread, summed over classes).
Writes ``benchmarks/results/quantization_study__<dataset>.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from noveltylab.bench.runner import git_commit, set_threads
from noveltylab.knn import KNNIndex
from noveltylab.metrics import auroc

MS = (1, 2, 4, 8, 16, 32, 64, 128)
BITS = (1, 2, 3, 4, 5, 6, 7, 8)


def run(files: list[Path], factory: str, repeats: int) -> tuple[float, float, float, float]:
    """(mean AUROC over classes, total search wall seconds, total search CPU seconds, bytes per vector)."""
    aucs, secs, cpus, nbytes = [], 0.0, 0.0, 0.0
    for f in files:
        z = np.load(f)
        idx = KNNIndex(factory, gpu=False, seed=0).fit(z["train"])
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            s = idx.score(z["test"], k=1, agg="kth")
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        secs += best
        cpus += best_cpu
        aucs.append(auroc(z["test_labels"], s))
        nbytes = idx.bytes_per_vector
    return float(np.mean(aucs)), secs, cpus, nbytes


def save_features(spec_path: str, label: str, dataset: str, method: str, max_train: int | None, features: Path,
                  data_dir: str | None) -> None:
    """Train the spec entry ``label`` on ``dataset`` (with that training cap) per task and seed; save the
    train/test/val representations."""
    from noveltylab.bench.engine import jobs_for, make_split
    from noveltylab.bench.runner import _slug
    from noveltylab.bench.spec import load_spec
    from noveltylab.detector import create

    match = [s for s in load_spec(spec_path).select([label], [dataset])
             if s.label == label and s.method == method and s.options.get("max_train") == max_train]
    if not match:
        sys.exit(f"{spec_path}: no {method} entry labelled {label} on {dataset} with max_train {max_train}")
    setting = match[0]
    features.mkdir(parents=True, exist_ok=True)
    for job in jobs_for(setting, data_dir):
        path = features / f"{method}__{dataset}__{_slug(job.name)}__seed{job.seed}.npz"
        if path.exists():
            continue
        split = make_split(setting, job.task, job.seed, data_dir)
        det = create(method, profile=setting.profile, **{**setting.params, "seed": job.seed}).fit(split.train, split.val)
        np.savez(path, train=det.embed(split.train), test=det.embed(split.test), val=det.embed(split.val),
                 test_labels=split.test_labels)
        print(f"features {path}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--method", default="inception-cae")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--from-spec", default=None, help="train the representations from this spec's entry first")
    ap.add_argument("--label", default="inception-cae-nn-qed", help="the spec entry (with --from-spec)")
    ap.add_argument("--max-train", type=int, default=600, help="the entry's training cap (with --from-spec)")
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)
    set_threads(1)
    if a.from_spec:
        save_features(a.from_spec, a.label, a.dataset, a.method, a.max_train, Path(a.features), a.data_dir)
    files = sorted(Path(a.features).glob(f"{a.method}__{a.dataset}__*.npz"))
    if not files:
        sys.exit(f"no feature files {a.method}__{a.dataset}__*.npz in {a.features}")
    z = np.load(files[0])
    n_train, n_test, dim = len(z["train"]), len(z["test"]), z["train"].shape[1]
    rows = []
    auc, sec, cpu, nb = run(files, "Flat", a.repeats)
    rows.append({"index": "Flat (exact, NN-EED)", "m": None, "bits": None, "auroc": round(100 * auc, 2),
                 "search_s": round(sec, 4), "search_cpu_s": round(cpu, 4), "bytes_per_vector": nb})
    print(f"Flat auroc={auc:.4f} t={sec:.4f}s", file=sys.stderr, flush=True)
    for m in MS:
        for b in BITS:
            for fs in ([False, True] if b == 4 else [False]):
                factory = f"PQ{m}x{b}" + ("fs" if fs else "")
                if 2 ** b > n_train:
                    continue
                try:
                    auc, sec, cpu, nb = run(files, factory, a.repeats)
                except (RuntimeError, ValueError) as exc:  # FAISS refuses some combinations
                    msg = str(exc).strip().splitlines()[-1][-120:]
                    rows.append({"index": factory, "m": m, "bits": b, "auroc": None, "search_s": None, "search_cpu_s": None,
                                 "bytes_per_vector": m * b / 8, "error": msg})
                    print(f"{factory} unsupported: {msg}", file=sys.stderr, flush=True)
                    continue
                rows.append({"index": factory, "m": m, "bits": b, "auroc": round(100 * auc, 2),
                             "search_s": round(sec, 4), "search_cpu_s": round(cpu, 4), "bytes_per_vector": nb})
                print(f"{factory} auroc={auc:.4f} t={sec:.4f}s", file=sys.stderr, flush=True)
    record = {
        "kind": "study", "study": "quantization (paper 003 Fig. 2)", "method": a.method, "dataset": a.dataset,
        "classes": [f.name.split("__")[2] for f in files], "n_train_per_class": n_train,
        "n_test_per_class": n_test, "dim": dim, "rows": rows,
        "notes": ("AUROC = mean over the classes' one-class tasks of NN (k=1, squared L2) on the saved "
                  "representations; search_s / search_cpu_s = best-of-repeats wall-clock / process CPU "
                  "time to score all test representations, summed over classes, one thread (CPU time is the "
                  "reliable one on a shared machine). Database = one class's capped training set, so exact search "
                  "(one BLAS matrix product) is very cheap here; the paper's Fig. 2b uses CIFAR-10's 5000 images."),
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(x) for x in sys.argv),
    }
    out = Path(a.out_dir) / f"quantization_study__{a.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
