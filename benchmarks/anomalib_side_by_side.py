"""noveltylab's PatchCore / PaDiM beside anomalib's, with the same MobileNetV2 weights, in one script.

Issue 14's accuracy target. For each task the same split (noveltylab's protocol, the same options as the
``i14_patchcore_padim`` spec) goes to both libraries: noveltylab's detectors run here; anomalib's torch
models run in the peer virtual environment (``.venv-peer``, never a dependency of noveltylab) through
``benchmarks/peer/anomalib_worker.py``, which gets the images as uint8 arrays and returns scores (and maps
on MVTec-layout sets). Both are scored by ``noveltylab.metrics`` here, so only the methods differ. The
worker first checks that its timm backbone reproduces noveltylab's feature maps on the same images.

  python -m venv .venv-peer && .venv-peer/bin/pip install torch==2.14.1 torchvision==0.29.1 anomalib==2.7.0
  python benchmarks/anomalib_side_by_side.py --data-dir ../shared/data \
      --out benchmarks/results/comparison/anomalib_side_by_side.json

Rows (``ROWS``): PatchCore at noveltylab's ``cpu`` profile coreset (1 %) in both libraries, and at
anomalib's default 10 % (generated set only by default: see ``CIFAR_ROWS``); PaDiM (100 random channels)
in both. Image size 224 for all; seed 0 for both libraries' random choices.
The record is rewritten after every task, so a long run can be read while it goes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROWS = {  # key: (row label, library, method, params)
    "ours-pc1": ("noveltylab patchcore (cpu profile, 1 % coreset)", "noveltylab", "patchcore", {}),
    "ours-pc10": ("noveltylab patchcore (10 % coreset)", "noveltylab", "patchcore", {"coreset_ratio": 0.1}),
    "anomalib-pc1": ("anomalib patchcore (1 % coreset)", "anomalib", "patchcore", {"coreset": 0.01}),
    "anomalib-pc10": ("anomalib patchcore (10 % coreset, its default)", "anomalib", "patchcore", {"coreset": 0.1}),
    "ours-padim": ("noveltylab padim (100 channels)", "noveltylab", "padim", {}),
    "anomalib-padim": ("anomalib padim (100 channels)", "anomalib", "padim", {"n_features": 100}),
    "anomalib-padim-samech": ("anomalib padim (noveltylab's 100 channels)", "anomalib", "padim",
                              {"n_features": 100}),
}
# anomalib's k-center greedy takes ~10 min per CIFAR-10 class at 10 % on two cores (it re-allocates the
# full projected bank every step), so by default the 10 % rows run on the generated set only
# which of our feature maps (blocks 3, 6, 13) the worker checks its backbone against, per method's layers
CHECK_MAPS = {"patchcore": [1, 2], "padim": [0, 1, 2]}
CIFAR_ROWS = ["ours-pc1", "anomalib-pc1", "ours-padim", "anomalib-padim"]
MVTEC_ROWS = list(ROWS)


def uint8_images(x: np.ndarray) -> np.ndarray:
    """The split's images as uint8 NCHW (what both libraries then resize to 224 the same way)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # NHWC -> NCHW
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def run_worker(peer: str, payload: dict, method: str, params: dict, weights: str, threads: int,
               maps: bool, seed: int) -> tuple[np.ndarray, np.ndarray | None, dict]:
    worker = Path(__file__).resolve().parent / "peer" / "anomalib_worker.py"
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **payload)
        cmd = [peer, str(worker), str(inp), str(out), "--method", method, "--weights", weights,
               "--threads", str(threads), "--seed", str(seed)]
        for k, v in params.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        if maps:
            cmd.append("--maps")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        subprocess.run(cmd, check=True, env=env)
        d = np.load(out)
        return d["scores"], (d["maps"] if maps else None), json.loads(str(d["info"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--mvtec", default="/tmp/e14a/synthetic_mvtec",
                   help="generated MVTec-layout set (benchmarks/synthetic_mvtec.py); '' to skip")
    p.add_argument("--classes", nargs="*", type=int, default=list(range(10)), help="CIFAR-10 classes")
    p.add_argument("--peer-python", default=".venv-peer/bin/python")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", nargs="*", type=int, default=[0],
                   help="seeds of both libraries' random choices (coreset start and projection, PaDiM channels)")
    p.add_argument("--cifar-rows", nargs="*", default=CIFAR_ROWS, choices=list(ROWS))
    p.add_argument("--mvtec-rows", nargs="*", default=MVTEC_ROWS, choices=list(ROWS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/comparison/anomalib_side_by_side.json"))
    a = p.parse_args()
    if not Path(a.peer_python).exists():
        sys.exit(f"error: no peer environment at {a.peer_python} (see this script's docstring)")

    from noveltylab import create, metrics
    from noveltylab.bench.engine import jobs_for, make_split
    from noveltylab.bench.runner import current_command, git_commit, set_threads
    from noveltylab.bench.spec import Setting
    from noveltylab.features import FeatureMaps
    from noveltylab.nets.weights import resolve_weights

    set_threads(a.threads)
    weights = resolve_weights("mobilenet_v2", "auto")
    peer_versions = subprocess.run([a.peer_python, "-c", "import torch, anomalib, timm; print(torch.__version__, "
                                    "anomalib.__version__, timm.__version__)"], capture_output=True, text=True,
                                   check=True).stdout.split()
    settings = [Setting(label="side-by-side", method="patchcore", dataset="cifar10-jpeg",
                        options={"max_train": 100, "test_every": 20}, classes=a.classes, seeds=a.seeds)]
    if a.mvtec:
        settings.append(Setting(label="side-by-side", method="patchcore", dataset=f"mvtec:{a.mvtec}", seeds=a.seeds))
    record = {"kind": "comparison", "label": "anomalib-side-by-side", "commit": git_commit(),
              "command": current_command(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "threads": a.threads, "machine": f"{os.cpu_count()} cpus",
              "peer": {"torch": peer_versions[0], "anomalib": peer_versions[1], "timm": peer_versions[2]},
              "weights": str(weights), "input_size": 224, "rows": {k: v[0] for k, v in ROWS.items()}, "tasks": []}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for s in settings:
        for job in jobs_for(s, a.data_dir):
            split = make_split(s, job.task, job.seed, a.data_dir)
            localise = split.test_masks is not None
            train, test = uint8_images(split.train), uint8_images(split.test)
            fm = FeatureMaps("mobilenet_v2", weights, 224, [3, 6, 13])
            with torch.no_grad():
                check = [m.numpy() for m in fm(torch.from_numpy(test[:4]).float() / 255.0)]
            padim_idx = None
            task = {"dataset": s.dataset, "task": job.name, "seed": job.seed, "n_train": len(train), "n_test": len(test),
                    "n_novel": int(split.test_labels.sum()), "rows": {}}
            for key in (a.mvtec_rows if localise else a.cifar_rows):
                row, lib, method, params = ROWS[key]
                t0 = time.perf_counter()
                if lib == "noveltylab":
                    det = create(method, profile="cpu", seed=job.seed, **params)
                    det.fit(torch.from_numpy(train).float() / 255.0)
                    x = torch.from_numpy(test).float() / 255.0
                    scores = np.asarray(det.score(x))
                    if method == "padim":  # the channel subset drawn, for the "same channels" row
                        padim_idx = det.channels_.numpy()
                    maps = np.asarray(det.anomaly_map(x)) if localise else None
                    info = {}
                else:
                    if key == "anomalib-padim-samech" and padim_idx is None:
                        raise SystemExit("error: the anomalib-padim-samech row needs the ours-padim row before it")
                    payload = {"train": train, "test": test, "check_images": test[:4],
                               **{f"check_map{j}": check[i] for j, i in enumerate(CHECK_MAPS[method])},
                               **({"padim_idx": padim_idx} if key == "anomalib-padim-samech" else {})}
                    scores, maps, info = run_worker(a.peer_python, payload, method, params, str(weights),
                                                    a.threads, localise, job.seed)
                    if maps is not None:  # anomalib's maps are at 224: back to the mask size, as ours are
                        maps = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None],
                                                               size=split.test_masks.shape[-2:], mode="bilinear",
                                                               align_corners=False)[:, 0].numpy()
                m = {"auroc": metrics.auroc(split.test_labels, scores)}
                if localise:
                    m.update(metrics.pixel_summary(split.test_masks, maps))
                task["rows"][row] = {**{k: round(float(v), 5) for k, v in m.items()}, **info,
                                     "seconds": round(time.perf_counter() - t0, 1)}
                print(f"{s.dataset} {job.name}: {row}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()),
                      flush=True)
            record["tasks"].append(task)
            record["summary"] = summarise(record["tasks"])
            a.out.write_text(json.dumps(record, indent=1))
    print(json.dumps(record["summary"], indent=1))


def summarise(tasks: list[dict]) -> dict:
    """Mean image AUROC per data set and row (and pixel metrics where present)."""
    out: dict = {}
    for ds in sorted({t["dataset"] for t in tasks}):
        sel = [t for t in tasks if t["dataset"] == ds]
        out[ds] = {"tasks": len(sel)}
        for row in sel[0]["rows"]:
            out[ds][row] = {k: round(float(np.mean([t["rows"][row][k] for t in sel])), 4)
                            for k in ("auroc", "pixel_auroc", "pro", "iou_youden") if k in sel[0]["rows"][row]}
    return out


if __name__ == "__main__":
    main()
