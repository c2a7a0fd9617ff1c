"""Do calibrated thresholds hold? Realised false-positive rate vs target, by calibration-set size.

For each data set and normal class: fit a cheap detector (``raw-nn``, exact
NN distance) on ``--n-fit`` normal images; every other normal image of that
class (train and test split) forms a pool. For each calibration size ``n`` and
target rate ``fpr``, ``--draws`` times: draw ``n`` calibration images from the
pool, set the threshold with ``Detector.calibrate``'s conformal rule (and,
for comparison, the old plain ``1 - fpr`` quantile), and measure the
fraction of the remaining pool images (new normal images) above it.

Writes one JSON record (``rows``: mean, spread and 90 % interval of the
realised rate per data set x n x fpr; ``command``; ``commit``) to
``benchmarks/results/calibration/calibration_fpr.json``. Run it from a clean
checkout so the commit is exact::

    python benchmarks/calibration_fpr.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import noveltylab
from noveltylab.calibration import conformal_threshold, expected_fpr, min_calibration_size
from noveltylab.data import load_dataset

OUT = Path(__file__).resolve().parent / "results" / "calibration" / "calibration_fpr.json"


def git_commit() -> str:
    """The commit of the imported package's checkout, ``+dirty`` when tracked files differ."""
    where = Path(noveltylab.__file__).resolve().parent

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=where).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def normal_pool(dataset: str, cls: int, data_dir: str | None) -> np.ndarray:
    """Every image of class ``cls`` in the train and test splits (digits: its one split)."""
    parts = []
    for split in ("train", "test"):
        try:
            s = load_dataset(dataset, split, data_dir=data_dir)
        except (KeyError, ValueError):
            continue
        parts.append(s.images[s.labels == cls])
    return np.concatenate(parts)


def quantile_threshold(s: np.ndarray, fpr: float) -> float:
    """The rule used before: the plain ``1 - fpr`` quantile of the calibration scores."""
    return float(np.quantile(s, 1.0 - fpr, method="higher"))


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.time()
    for dataset in args.datasets:
        per = {}  # (n, fpr) -> lists of realised rates (conformal, quantile) over classes x draws
        for cls in args.classes:
            x = normal_pool(dataset, cls, args.data_dir)
            order = rng.permutation(len(x))
            n_fit = min(args.n_fit, len(x) // 3)
            det = noveltylab.create(args.method, profile="cpu", seed=args.seed)
            det.fit(x[order[:n_fit]])
            scores = det.score(x[order[n_fit:]])
            print(f"{dataset} class {cls}: fit {n_fit}, pool {len(scores)}", file=sys.stderr, flush=True)
            for n in args.sizes:
                if n > len(scores) // 2:
                    continue
                for fpr in args.fprs:
                    conf, quant = per.setdefault((n, fpr), ([], []))
                    for _ in range(args.draws):
                        p = rng.permutation(len(scores))
                        cal, new = scores[p[:n]], scores[p[n:]]
                        conf.append(float(np.mean(new > conformal_threshold(cal, fpr)[0])))
                        quant.append(float(np.mean(new > quantile_threshold(cal, fpr))))
        for (n, fpr), (conf, quant) in sorted(per.items()):
            c, q = np.array(conf), np.array(quant)
            rows.append({
                "dataset": dataset, "calib_n": n, "target_fpr": fpr,
                "warned": n < min_calibration_size(fpr),
                "expected_fpr": round(expected_fpr(n, fpr), 5),
                "realised_mean": round(float(c.mean()), 5), "realised_std": round(float(c.std()), 5),
                "realised_p05": round(float(np.quantile(c, 0.05)), 5),
                "realised_p95": round(float(np.quantile(c, 0.95)), 5),
                "share_above_2x_target": round(float(np.mean(c > 2 * fpr)), 4),
                "old_quantile_mean": round(float(q.mean()), 5),
                "old_quantile_p95": round(float(np.quantile(q, 0.95)), 5),
                "draws": len(c),
            })
    return {
        "kind": "calibration-fpr",
        "rows": rows,
        "method": args.method, "n_fit": args.n_fit, "classes": args.classes, "draws_per_class": args.draws,
        "seed": args.seed, "seconds": round(time.time() - t0, 1),
        "command": "python benchmarks/calibration_fpr.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=["digits", "mnist", "fashion-mnist"])
    p.add_argument("--classes", nargs="*", type=int, default=list(range(10)))
    p.add_argument("--sizes", nargs="*", type=int, default=[20, 50, 100, 500, 2000])
    p.add_argument("--fprs", nargs="*", type=float, default=[0.01, 0.05, 0.1])
    p.add_argument("--draws", type=int, default=100, help="calibration draws per class, size and rate")
    p.add_argument("--n-fit", type=int, default=1000, help="normal images the detector is fitted on")
    p.add_argument("--method", default="raw-nn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("-o", "--output", default=str(OUT))
    args = p.parse_args(argv)
    rec = run(args)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"{'data set':<14} {'n':>5} {'target':>7} {'expected':>8} {'realised':>9} {'p05-p95':>15} {'old rule':>8}")
    for r in rec["rows"]:
        print(f"{r['dataset']:<14} {r['calib_n']:>5} {r['target_fpr']:>7.3f} {r['expected_fpr']:>8.4f} "
              f"{r['realised_mean']:>9.4f} {r['realised_p05']:>7.4f}-{r['realised_p95']:<7.4f} "
              f"{r['old_quantile_mean']:>8.4f}" + ("  (warned)" if r["warned"] else ""))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
