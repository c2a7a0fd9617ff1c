"""Training images/s of the five NLN families (paper 000) at the ``cpu`` profile, before/after a change.

  python benchmarks/nln_train_speed.py --baseline 5de4d15 --threads 1 2 \\
      --out benchmarks/results/speed/nln_train_speed.json

Each family is trained on real MNIST training images with the ``cpu`` profile's networks, batch size
and rates, through the shared ``train_loop`` and the family's ``make_step``. Arms (``--arms``):

* ``before``: ``train.py`` and ``methods/nln/training.py`` as they were at ``--baseline`` (loaded
  from git into this process, so both arms share the process, the data and the machine's load),
  the networks' ReLUs out of place as they were there;
* ``after``: this checkout's loop and steps, default memory format (bit-identical updates);
* ``after-cl``: this checkout with ``channels_last=True`` (same maths, float rounding differs);
* ``after-cl-b128``: as ``after-cl`` with the paper's batch 128 (a schedule change; shown only).

The machine is shared, so absolute numbers are not trusted: the arms are measured interleaved
(round 1: before, after, after-cl, ...; round 2: the same again) and the record keeps every
measurement with the 1-minute load average beside it; the summary gives medians per arm and the
ratio to ``before``. Each measurement: one warm-up pass over two batches (not timed), then one
timed epoch over ``--images`` images. ``before`` and ``after`` are also checked to end with
bit-identical weights (same seed, first round). The record also estimates the wall time of one
MISO task on the full MNIST training set (8 epochs of the ``cpu`` profile) from the medians.

``--fit-check`` (a second record, ``nln_train_speed_fit.json``) fits the registered detectors end to
end on one MISO task (MNIST, novel class 0, ``max_train`` 1000, as the rows of ``p000_nln_miso.toml``),
arms ``before`` / ``after`` / ``after-cl`` one after the other per family: fit seconds and AUROC
(``before`` and ``after`` must give the same AUROC to the last digit; ``after-cl`` agrees to within
training noise). ``--seeds 1 2 --arms after`` gives the seed-to-seed spread of the same task to set
that difference against (``nln_train_speed_fit_seeds.json``).

  python benchmarks/nln_train_speed.py --baseline 8bdb962 --fit-check --threads 1 \\
      --out benchmarks/results/speed/nln_train_speed_fit.json
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

FAMILIES = ("ae", "aae", "vae", "aeres", "aecon")
ARMS = ("before", "after", "after-cl", "after-cl-b128")
REPO = Path(__file__).resolve().parents[1]


def load_at_commit(rel: str, modname: str, commit: str) -> ModuleType:
    """The module ``src/<rel>`` as it was at ``commit``, imported as ``modname`` (its relative
    imports resolve against this checkout's package)."""
    src = subprocess.run(["git", "show", f"{commit}:src/{rel}"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(modname, loader=None))
    mod.__package__ = modname.rpartition(".")[0]
    sys.modules[modname] = mod
    exec(compile(src, f"{commit}:src/{rel}", "exec"), mod.__dict__)
    return mod


def baseline_code(commit: str):
    """(train_loop, make_step) as they were at ``commit``; that ``make_step`` also turns the networks'
    in-place ReLUs back into out-of-place ones, as ``nets/nln_nets.py`` had them before issue 12.6."""
    loop = load_at_commit("noveltylab/train.py", "noveltylab._speed_base_train", commit)
    steps = load_at_commit("noveltylab/methods/nln/training.py", "noveltylab.methods.nln._speed_base_training", commit)

    def make_step(nets, *args, **kw):
        for m in nets.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        return steps.make_step(nets, *args, **kw)
    return loop.train_loop, make_step


def short_commit(rev: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def cpu_config(fam: str) -> dict:
    """The ``cpu`` profile parameters of ``nln-<fam>`` (with the detector's defaults)."""
    import noveltylab

    det = noveltylab.create(f"nln-{fam}", profile="cpu", device="cpu")
    p = det.get_params()
    lr, adv = det._rates()
    return {"latent_dim": p["latent_dim"], "filters": p["filters"], "batch_size": p["batch_size"],
            "epochs": p["epochs"], "lr": lr, "adv_lr": adv, "recon_weight": p["recon_weight"],
            "disc_loss": p["disc_loss"], "seed": p["seed"]}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def measure(fam: str, cfg: dict, x: torch.Tensor, loop, make_step, *, channels_last: bool,
            batch_size: int) -> tuple[float, float, dict[str, torch.Tensor]]:
    """(training images per wall second and per CPU second of this process over one epoch on ``x``,
    final weights); warm-up over two batches first."""
    from noveltylab.methods.nln.models import NLNNetworks

    torch.manual_seed(cfg["seed"])
    nets = NLNNetworks(fam, "lenet", x.shape[1], x.shape[2], x.shape[3], cfg["latent_dim"], cfg["filters"])
    step = make_step(nets, cfg["lr"], cfg["adv_lr"], cfg["recon_weight"], seed=cfg["seed"],
                     disc_loss=cfg["disc_loss"])
    kw = {"channels_last": True} if channels_last else {}
    common = dict(modules=nets.modules_dict(), epochs=1, batch_size=batch_size, seed=cfg["seed"], progress=False)
    loop(step, x[: 2 * batch_size], **common, **kw)  # warm-up: allocator, oneDNN primitives
    t, c = time.perf_counter(), _cpu_seconds()
    loop(step, x, **common, **kw)
    wall, cpu = time.perf_counter() - t, _cpu_seconds() - c
    return x.shape[0] / wall, x.shape[0] / max(cpu, 1e-9), nets.state_dict()


def miso_train_images(data_dir: str) -> tuple[int, int, int]:
    """(training, validation, test) images of one MNIST MISO task on the full training set (novel class 0)."""
    from noveltylab.data import leave_one_out, load_dataset

    split = leave_one_out(load_dataset("mnist", "train", data_dir=data_dir),
                          load_dataset("mnist", "test", data_dir=data_dir), 0)
    return len(split.train), len(split.val) if split.val is not None else 0, len(split.test)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="commit whose train.py / nln training.py are 'before'")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--arms", nargs="+", default=["before", "after", "after-cl"], choices=ARMS)
    p.add_argument("--images", type=int, default=512, help="images per timed epoch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/speed/nln_train_speed.json"))
    p.add_argument("--fit-check", action="store_true", help="end-to-end MISO fits instead (see the docstring)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="detector seeds of --fit-check")
    a = p.parse_args()
    if a.fit_check:
        return fit_check(a)

    from noveltylab import train as train_now
    from noveltylab.bench.runner import current_command, git_commit, set_threads
    from noveltylab.bench.provenance import machine
    from noveltylab.data import load_dataset
    from noveltylab.images import as_images
    from noveltylab.methods.nln import training as steps_now

    code = {"before": baseline_code(a.baseline)}
    for arm in ARMS[1:]:
        code[arm] = (train_now.train_loop, steps_now.make_step)
    x = as_images(load_dataset("mnist", "train", data_dir=a.data_dir).images[: a.images])
    n_miso, n_val, n_test = miso_train_images(a.data_dir)

    rows: list[dict] = []
    record = {"kind": "speed", "label": "nln-train-speed", "dataset": "mnist", "profile": "cpu",
              "baseline_commit": short_commit(a.baseline),
              "commit": git_commit(), "command": current_command(), "machine": machine(), "torch": torch.__version__,
              "images_per_measurement": a.images, "rounds": a.rounds, "arms": a.arms,
              "miso_full_mnist": {"n_train": n_miso, "n_val": n_val, "n_test": n_test},
              "rows": rows, "bit_identical_before_after": {}, "summary": []}

    def write() -> None:  # after every row: a run cut short keeps what it measured
        record.update(load_average=os.getloadavg(), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      summary=summarise(rows, a.arms, cfg_epochs=epochs, n_miso=n_miso))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=1))

    epochs = cpu_config("ae")["epochs"]
    for threads in a.threads:
        set_threads(threads)
        for fam in a.families:
            cfg = cpu_config(fam)
            for rnd in range(a.rounds):
                weights = {}
                for arm in a.arms[rnd % len(a.arms):] + a.arms[:rnd % len(a.arms)]:  # rotate: no fixed order
                    loop, make_step = code[arm]
                    bs = 128 if arm.endswith("b128") else cfg["batch_size"]
                    ips, ips_cpu, weights[arm] = measure(fam, cfg, x, loop, make_step, channels_last="-cl" in arm,
                                                batch_size=bs)
                    rows.append({"threads": threads, "family": fam, "arm": arm, "round": rnd, "batch_size": bs,
                                 "images_per_s": round(ips, 1), "images_per_cpu_s": round(ips_cpu, 1),
                                 "load_average": round(os.getloadavg()[0], 2)})
                    print(json.dumps(rows[-1]), flush=True)
                if rnd == 0 and {"before", "after"} <= set(weights):
                    same = all(torch.equal(weights["before"][k], weights["after"][k]) for k in weights["before"])
                    record["bit_identical_before_after"][f"{fam}-t{threads}"] = same
                write()
    write()
    for s in record["summary"]:
        print(json.dumps(s))
    print(f"wrote {a.out}")


def fit_check(a: argparse.Namespace) -> None:
    """One MNIST MISO task (novel 0, max_train 1000) per family through the registered detector, arms
    ``before`` (the baseline's loop and steps patched into the detector module), ``after`` and ``after-cl``
    (``channels_last=True``) interleaved: fit seconds and AUROC per arm."""
    from unittest import mock

    import noveltylab
    from noveltylab.bench.provenance import machine
    from noveltylab.bench.runner import current_command, evaluate_split, git_commit, set_threads
    from noveltylab.data import leave_one_out, load_dataset
    from noveltylab.methods.nln import detectors

    base_loop, base_step = baseline_code(a.baseline)

    def before_loop(*args, channels_last: bool = False, **kw):  # the detector passes the new keyword (False)
        assert not channels_last
        return base_loop(*args, **kw)
    split = leave_one_out(load_dataset("mnist", "train", data_dir=a.data_dir),
                          load_dataset("mnist", "test", data_dir=a.data_dir), 0, max_train=1000, seed=0)
    rows: list[dict] = []
    record = {"kind": "speed", "label": "nln-train-speed-fit", "dataset": "mnist", "protocol": "leave-one-out",
              "task": "novel class 0, max_train 1000, split seed 0 (as p000_nln_miso.toml)", "profile": "cpu",
              "baseline_commit": short_commit(a.baseline), "commit": git_commit(), "command": current_command(),
              "machine": machine(), "torch": torch.__version__, "rows": rows}
    arms = [arm for arm in a.arms if arm in ("before", "after", "after-cl")]
    for threads in a.threads:
        set_threads(threads)
        for fam, seed, arm in itertools.product(a.families, a.seeds, arms):
            det = noveltylab.create(f"nln-{fam}", profile="cpu", device="cpu", seed=seed,
                                    channels_last=arm == "after-cl")
            patch = (mock.patch.multiple(detectors, train_loop=before_loop, make_step=base_step)
                     if arm == "before" else contextlib.nullcontext())
            with patch:
                res = evaluate_split(det, split)
            rows.append({"threads": threads, "family": fam, "seed": seed, "arm": arm,
                         "train_seconds": round(res["train_seconds"], 2),
                         "auroc": res["metrics"]["auroc"], "n_train": res["n_train"],
                         "load_average": round(os.getloadavg()[0], 2)})
            print(json.dumps(rows[-1]), flush=True)
            record.update(load_average=os.getloadavg(),
                          date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {a.out}")


def _medians(rows: list[dict], threads: int, fam: str, arms: list[str], key: str) -> dict[str, float]:
    """Median of ``key`` over the rounds of each arm measured for (threads, family)."""
    out = {}
    for arm in arms:
        vals = [r[key] for r in rows if (r["threads"], r["family"], r["arm"]) == (threads, fam, arm)]
        if vals:
            out[arm] = statistics.median(vals)
    return out


def _paired_ratios(rows: list[dict], threads: int, fam: str, arms: list[str]) -> dict[str, float]:
    """Median over rounds of arm / before measured in the same round (robust to load drifting between rounds)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in rows:
        if (r["threads"], r["family"]) == (threads, fam):
            by_round.setdefault(r["round"], {})[r["arm"]] = r["images_per_s"]
    out = {}
    for arm in arms:
        vals = [m[arm] / m["before"] for m in by_round.values() if arm in m and "before" in m]
        if vals:
            out[arm] = round(statistics.median(vals), 2)
    return out


def summarise(rows: list[dict], arms: list[str], cfg_epochs: int, n_miso: int) -> list[dict]:
    """Median images/s (wall and CPU) per (threads, family, arm), ratios to ``before`` (of the medians and
    paired per round), and the training wall time of one full-MNIST MISO task (``cfg_epochs`` epochs over
    ``n_miso`` images) at the median rate."""
    out = []
    keys = sorted({(r["threads"], r["family"]) for r in rows}, key=lambda k: (k[0], FAMILIES.index(k[1])))
    for threads, fam in keys:
        med = _medians(rows, threads, fam, arms, "images_per_s")
        med_cpu = _medians(rows, threads, fam, arms, "images_per_cpu_s")
        row = {"threads": threads, "family": fam, "median_images_per_s": med, "median_images_per_cpu_s": med_cpu}
        if "before" in med:
            row["ratio_to_before"] = {arm: round(v / med["before"], 2) for arm, v in med.items()}
            row["paired_ratio_to_before"] = _paired_ratios(rows, threads, fam, arms)
            row["cpu_ratio_to_before"] = {arm: round(v / med_cpu["before"], 2) for arm, v in med_cpu.items()}
        row["miso_full_mnist_train_minutes"] = {arm: round(cfg_epochs * n_miso / v / 60, 1) for arm, v in med.items()}
        out.append(row)
    return out


if __name__ == "__main__":
    main()
