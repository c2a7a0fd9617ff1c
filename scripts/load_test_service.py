#!/usr/bin/env python
"""Bounded load test of `noveltylab serve`: N requests, C at a time, against localhost.

Either point it at a running service (``--url``) or let it start one
(``--model DIR``: ``noveltylab serve DIR`` on a free port, stopped at the
end). Each request POSTs one PNG from ``--images`` (cycled) as the raw body.
Reports throughput (requests/s over the whole run), latency percentiles and
the number of failed requests (non-200 answers or transport errors); writes
a JSON record with the exact command and the git commit when ``--out`` is
given, and exits 1 if any request failed.

    python scripts/load_test_service.py --model model/ --images test_pngs/ -n 400 -c 4 \\
        --out benchmarks/results/service_load__dn2.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int, max_bytes: int) -> tuple[subprocess.Popen, str]:
    """``noveltylab serve MODEL`` on a free localhost port; returns (process, base URL) once /health answers."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "noveltylab.cli", "serve", model, "--port", str(port),
                             "--max-bytes", str(max_bytes)], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(900):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not answer /health within 180 s")


def run(url: str, bodies: list[bytes], n: int, concurrency: int, heatmap: bool) -> dict:
    """Send ``n`` requests from ``concurrency`` threads; return latencies and failures."""
    lat = np.zeros(n)
    failures: list[str] = []
    counter = iter(range(n))
    lock = threading.Lock()
    endpoint = url + "/score" + ("" if heatmap else "?heatmap=false")

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    r = client.post(endpoint, content=bodies[i % len(bodies)],
                                    headers={"content-type": "image/png"})
                    ok = r.status_code == 200 and "score" in r.json()
                    err = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    err = f"{type(exc).__name__}: {exc}"
                lat[i] = time.perf_counter() - t
                if err:
                    with lock:
                        failures.append(err)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    ms = lat * 1000
    return {"requests": n, "concurrency": concurrency, "wall_s": wall, "throughput_rps": n / wall,
            "p95_latency_ms": float(np.percentile(ms, 95)),  # flat copy: RESULTS.md shows top-level figures
            "latency_ms": {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)),
                           "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)),
                           "max": float(ms.max())},
            "failed": len(failures), "failure_examples": failures[:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="base URL of a running service, e.g. http://127.0.0.1:8000")
    src.add_argument("--model", help="model folder: start `noveltylab serve MODEL` on a free port")
    ap.add_argument("--images", required=True, help="folder of PNG files to send (cycled)")
    ap.add_argument("-n", "--requests", type=int, default=200, help="total requests (bounded run)")
    ap.add_argument("-c", "--concurrency", type=int, default=4, help="requests in flight at once")
    ap.add_argument("--warmup", type=int, default=5, help="requests sent first and not counted")
    ap.add_argument("--no-heatmap", action="store_true", help="ask for scores only (?heatmap=false)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of a server started with --model")
    ap.add_argument("--max-bytes", type=int, default=20 * 2 ** 20)
    ap.add_argument("--out", default=None, help="JSON file for the record (e.g. under benchmarks/results/)")
    ap.add_argument("--notes", default="")
    args = ap.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        raise SystemExit("error: --requests and --concurrency must be >= 1")
    files = sorted(p for p in Path(args.images).rglob("*.png"))
    if not files:
        raise SystemExit(f"error: no PNG files under {args.images}")
    bodies = [f.read_bytes() for f in files]
    proc = None
    url = args.url
    if args.model:
        proc, url = start_server(args.model, args.threads, args.max_bytes)
    load_before = os.getloadavg()
    try:
        health = httpx.get(url + "/health", timeout=10).json()
        run(url, bodies, args.warmup, 1, not args.no_heatmap)
        result = run(url, bodies, args.requests, args.concurrency, not args.no_heatmap)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    from noveltylab.bench.provenance import git_commit

    record = {"kind": "service-load-test", "command": shlex.join([Path(sys.executable).name, *sys.argv]),
              "git_commit": git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_average_1min_before": load_before[0], "load_average_1min_after": os.getloadavg()[0]},
              "server": {"url": url, "started_here": proc is not None,
                         "torch_threads": args.threads if proc is not None else None, **health},
              "images": {"folder": args.images, "files": len(files),
                         "mean_bytes": float(np.mean([len(b) for b in bodies]))},
              "heatmap": not args.no_heatmap, "warmup_requests": args.warmup, **result, "notes": args.notes}
    lm = result["latency_ms"]
    print(f"{result['requests']} requests, concurrency {result['concurrency']}: {result['throughput_rps']:.1f} req/s, "
          f"latency p50 {lm['p50']:.1f} ms, p95 {lm['p95']:.1f} ms, max {lm['max']:.1f} ms, "
          f"{result['failed']} failed")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"record written to {args.out}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
