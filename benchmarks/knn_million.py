"""Benchmark noveltylab.knn.KNNIndex on a million stored vectors.

A script, not a spec: it measures the index on synthetic vectors (no detector, data set or
protocol), which is code rather than a benchmark setting.

Builds an exact ``Flat`` index and product-quantized ones (by default the
fast-scan ``PQ32x4fs``, plain ``PQ32x4`` and ``IVF1024,PQ32x4fs``) over ``--n``
seeded vectors from a structured Gaussian mixture (``--d`` dimensions), then
measures for each index: build time (train + add), search time for one batch
of ``--queries`` queries (k = ``--k``, median of ``--repeats`` runs), bytes per
vector, serialized size, recall@1 against the exact index (and whether the
exact neighbour is in the top 10), how well the approximate nearest-neighbour
distances (the novelty scores) track the exact ones, and memory (resident-set
growth and peak, read from /proc).

    python benchmarks/knn_million.py [--n 1000000 --d 128 --queries 1000 --out ...]

Writes a JSON file (default ``benchmarks/results/knn_million.json``) and
prints a table. The index is always ``KNNIndex``; the one raw-FAISS call sets
``nprobe`` on inverted-file indexes, which ``KNNIndex`` does not expose.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

# FAISS's OpenMP threads spin while waiting by default; on a shared machine with more
# runnable processes than cores that made k-means training ~50x slower (2 threads on
# 2 busy cores). Passive waiting costs nothing measurable on an idle machine. Must be
# set before libgomp loads (importing numpy does not load it; faiss does).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

import faiss  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from noveltylab.knn import KNNIndex  # noqa: E402

DEFAULT_FACTORIES = ["Flat", "PQ32x4fs", "PQ32x4", "IVF1024,PQ32x4fs"]


# --- data ---------------------------------------------------------------------------
SPECTRUM_ALPHA = 0.75   # per-axis std ~ (1 + i)^-alpha: variance ~ i^-1.5, like CNN feature PCA spectra
N_COMPONENTS = 1000
CENTRE_SCALE, WITHIN_SCALE = 1.0, 0.5


def mixture(n: int, d: int, seed: int, n_components: int = N_COMPONENTS, chunk: int = 100_000,
            stream: int = 0) -> np.ndarray:
    """``n`` float32 vectors from a Gaussian mixture with structure like image features:
    ``n_components`` clusters of unequal size (Dirichlet weights); centres and
    within-cluster offsets both follow a power-law spectrum (std of axis i
    ~ (1+i)^-0.75) along one shared random rotation, so the data have a low
    effective dimension, as deep features do, rather than being isotropic noise.

    The mixture itself (centres, weights, rotation) depends only on ``seed`` and
    ``d``; ``stream`` selects independent draws from it (0: stored set, 1: queries).
    """
    rng = np.random.default_rng(seed)
    spectrum = (1.0 + np.arange(d)) ** -SPECTRUM_ALPHA
    centres = rng.standard_normal((n_components, d)) * spectrum * CENTRE_SCALE
    weights = rng.dirichlet(np.full(n_components, 2.0))
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    draw = np.random.default_rng([seed, stream + 1])
    out = np.empty((n, d), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        lab = draw.choice(n_components, m, p=weights)
        z = centres[lab] + draw.standard_normal((m, d)) * spectrum * WITHIN_SCALE
        out[i:i + m] = z @ rot.T
    return out


# --- measuring ------------------------------------------------------------------------
def _status() -> dict[str, int]:
    """VmRSS / VmHWM of this process in bytes (Linux); empty elsewhere."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}
    except OSError:
        return {}


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so the next index's RSS growth is
    not hidden by reuse of memory the previous, deleted index left in the allocator."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so later peaks are per step."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _mb(b: float | None) -> float | None:
    return None if b is None else round(b / 2**20, 1)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "uncommitted"
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _set_nprobe(idx: KNNIndex, nprobe: int) -> None:
    faiss.extract_index_ivf(idx.index).nprobe = int(nprobe)


def time_search(idx: KNNIndex, q: np.ndarray, k: int, repeats: int, budget_s: float) -> tuple[list[float], tuple]:
    """Up to ``repeats`` timed searches; stops early once ``budget_s`` seconds are spent
    (a slow index then gets fewer repeats, at least one)."""
    times, res = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        res = idx.search(q, k)
        times.append(time.perf_counter() - t)
        if sum(times) > budget_s:
            break
    return times, res


def evaluate(name: str, idx: KNNIndex, q: np.ndarray, args, exact: dict, build_s: float | None,
             mem: dict) -> dict:
    """Time the search and compare with ``exact`` (filled here on the first, exact, index)."""
    times, (D, I) = time_search(idx, q, args.k, args.repeats, args.search_budget_s)
    if not exact:
        exact.update(D=D, I=I)
    row = {
        "index": name,
        "factory": idx.factory,
        "build_s": None if build_s is None else round(build_s, 3),
        "search_s_median": round(float(np.median(times)), 4),
        "search_s_all": [round(t, 4) for t in times],
        "search_ms_per_query": round(1000 * float(np.median(times)) / len(q), 4),
        "queries_per_s": round(len(q) / float(np.median(times)), 1),
        "bytes_per_vector": idx.bytes_per_vector,
        **mem,
    }
    row["recall_at_1"] = round(float(np.mean(I[:, 0] == exact["I"][:, 0])), 4)
    if exact["I"] is I:
        row["recall_1_at_10"] = 1.0
    elif sum(times) > args.search_budget_s:
        row["recall_1_at_10"] = None  # one more search would take as long again: skipped
    else:
        D10, I10 = idx.search(q, min(10, idx.ntotal))
        row["recall_1_at_10"] = round(float(np.mean(np.any(I10 == exact["I"][:, :1], axis=1))), 4)
    d_ex = exact["D"][:, 0].astype(np.float64)
    d_ap = D[:, 0].astype(np.float64)
    # the kNN distance is the novelty score: how far off is it, and does it rank the queries the same way?
    row["score_rel_error"] = round(float(np.mean(np.abs(d_ap - d_ex) / np.maximum(d_ex, 1e-12))), 4)
    row["score_spearman"] = round(float(spearmanr(d_ap, d_ex).statistic), 4)
    return row


# --- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="stored vectors")
    p.add_argument("--d", type=int, default=128, help="dimension")
    p.add_argument("--queries", type=int, default=1000, help="queries per search batch")
    p.add_argument("--k", type=int, default=1, help="neighbours per query in the timed search")
    p.add_argument("--repeats", type=int, default=3, help="timed searches per index (median reported)")
    p.add_argument("--search-budget-s", type=float, default=20.0,
                   help="stop repeating an index's timed search once this many seconds are spent")
    p.add_argument("--factories", nargs="+", default=DEFAULT_FACTORIES,
                   help="FAISS factory strings; the first must be exact ('Flat'), the reference")
    p.add_argument("--train-size", type=int, default=100_000,
                   help="vectors sampled (seeded) to train quantizers (0: all)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32],
                   help="inverted lists visited per query for IVF indexes (one row each)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="FAISS OpenMP threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "knn_million.json"))
    args = p.parse_args(argv)
    if args.factories[0] != "Flat":
        p.error("the first factory must be 'Flat': it is the exact reference for recall")

    command = "python " + shlex.join(sys.argv if argv is None else ["benchmarks/knn_million.py", *argv])
    faiss.omp_set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_start = time.perf_counter()

    t = time.perf_counter()
    x = mixture(args.n, args.d, args.seed, stream=0)
    q = mixture(args.queries, args.d, args.seed, stream=1)
    data_s = time.perf_counter() - t
    print(f"data: {args.n} x {args.d} stored, {args.queries} queries ({data_s:.1f} s); "
          f"faiss {faiss.__version__}, {args.threads} threads", flush=True)

    rows, exact = [], {}
    for factory in args.factories:
        gc.collect()
        _trim_heap()
        _reset_peak()
        before = _status()
        t = time.perf_counter()
        idx = KNNIndex(factory, gpu=False, seed=args.seed,
                       train_size=args.train_size or None).fit(x)
        build_s = time.perf_counter() - t
        after = _status()
        mem = {
            "rss_growth_mb": _mb(after["VmRSS"] - before["VmRSS"]) if after else None,
            "build_peak_extra_mb": _mb(after["VmHWM"] - before["VmRSS"]) if after else None,
            "serialized_mb": _mb(len(idx.to_bytes())),
        }
        if factory == "Flat":
            # the exact reference comes from Flat's timed search; check Flat against numpy on 10 queries
            I = idx.search(q[:10], 1)[1]
            qs = q[:10].astype(np.float64)
            best = np.full(len(qs), np.inf)
            arg = np.zeros(len(qs), np.int64)
            for i in range(0, args.n, 200_000):
                xb = x[i:i + 200_000].astype(np.float64)
                d2 = (qs ** 2).sum(1)[:, None] - 2 * qs @ xb.T + (xb ** 2).sum(1)[None]
                j = d2.argmin(1)
                better = d2[np.arange(len(qs)), j] < best
                best[better] = d2[np.arange(len(qs)), j][better]
                arg[better] = j[better] + i
            flat_check = float(np.mean(arg == I[:10, 0]))
        settings = [None]
        if "IVF" in factory:
            settings = args.nprobe
        for nprobe in settings:
            name = factory
            if nprobe is not None:
                _set_nprobe(idx, nprobe)
                name = f"{factory} nprobe={nprobe}"
            row = evaluate(name, idx, q, args, exact, build_s, mem)
            if nprobe is not None:
                row["nprobe"] = nprobe
            if factory == "Flat":
                row["numpy_float64_agreement_10q"] = flat_check
            rows.append(row)
            print(f"  {name:<28} build {row['build_s']:8.2f} s  search {row['search_s_median']:8.3f} s  "
                  f"recall@1 {row['recall_at_1']:.3f}", flush=True)
        del idx
    peak = _status().get("VmHWM")
    total_s = time.perf_counter() - t_start

    result = {
        "benchmark": "knn_million",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "command": command,
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "faiss_threads": args.threads,
            "faiss_version": faiss.__version__,
            "numpy_version": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_before": round(load_before[0], 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
        "data": {
            "n_stored": args.n, "dim": args.d, "n_queries": args.queries, "k": args.k, "seed": args.seed,
            "generator": f"Gaussian mixture, {N_COMPONENTS} clusters (Dirichlet(2) weights); centres "
                         f"(scale {CENTRE_SCALE}) and within-cluster offsets (scale {WITHIN_SCALE}) with per-axis "
                         f"std (1+i)^-{SPECTRUM_ALPHA} along a shared random rotation; queries are fresh draws",
            "generation_s": round(data_s, 2),
        },
        "settings": {"train_size": args.train_size or None, "repeats": args.repeats,
                     "search_budget_s": args.search_budget_s, "nprobe": args.nprobe,
                     "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "notes": [
            "build_s = KNNIndex.fit: index creation, training (on train_size sampled vectors) and adding all n",
            "search_s = one KNNIndex.search call over all queries, k as above; median of the repeats "
            "done (search_s_all; fewer than 'repeats' when one search exceeds search_budget_s)",
            "recall_at_1 = share of queries whose top-1 id equals the exact (Flat) top-1 id; "
            "recall_1_at_10 = share whose exact neighbour is among the 10 returned (an extra k=10 "
            "search, skipped (null) for an index whose timed searches exceeded search_budget_s)",
            "score_rel_error / score_spearman compare the returned nearest squared L2 distance "
            "(the kNN novelty score) with the exact one",
            "rss_growth_mb = resident memory added by the built index; build_peak_extra_mb = peak "
            "resident memory during fit above the pre-build level (VmHWM reset per index)",
            "the machine may be shared: see load averages; timings are wall-clock",
        ],
        "peak_rss_mb": _mb(peak),
        "total_s": round(total_s, 1),
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    hdr = f"{'index':<28} {'build s':>8} {'search s':>9} {'ms/q':>7} {'B/vec':>6} {'R@1':>6} {'R1@10':>6} {'rss MB':>7}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in rows:
        print(f"{r['index']:<28} {r['build_s']:>8.2f} {r['search_s_median']:>9.3f} {r['search_ms_per_query']:>7.3f} "
              f"{r['bytes_per_vector']:>6.0f} {r['recall_at_1']:>6.3f} "
              f"{r['recall_1_at_10'] if r['recall_1_at_10'] is not None else float('nan'):>6.3f} "
              f"{r['rss_growth_mb'] if r['rss_growth_mb'] is not None else float('nan'):>7.1f}")
    print(f"\npeak RSS {result['peak_rss_mb']} MB, total {total_s:.0f} s -> {out}")
    return result


if __name__ == "__main__":
    main()
