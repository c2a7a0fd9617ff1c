"""Train a CAE once per class and seed, score it several ways, write one result
record per scoring (paper 003, Tables 2, 4, 5, 6).

  python benchmarks/cae_scores.py --method inception-cae --dataset mnist \
      --scorings nn-qed nn-eed re --profile cpu --max-train 1500 --seeds 0

Scorings: ``nn-qed`` (PQ m x bits, default 32 x 4 fast-scan), ``nn-eed`` (exact),
``re`` (reconstruction error) and, for ``cae-nn``, ``ocsvm`` (the ``cae-ocsvm``
head on the same network). Records go through the runner's own assembly and
writer, labelled as in ``LABELS`` (e.g. ``inception-cae-nn-qed``, ``cae-nn-qed``, ``cae-ocsvm``). Every record's
``train_seconds`` is the one shared CAE training; ``score_images_per_s`` is
measured per scoring (embedding + search). ``--features DIR`` also saves the
train/test representations (npz, for benchmarks/quantization_study.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from noveltylab import metrics
from noveltylab.bench import runner
from noveltylab.data import load_dataset, make_splits
from noveltylab.detector import create
from noveltylab.images import as_images


LABELS = {"inception-cae": {"nn-qed": "inception-cae-nn-qed", "nn-eed": "inception-cae-nn-eed",
                             "re": "inception-cae-re"},
          "cae-nn": {"nn-qed": "cae-nn-qed", "nn-eed": "cae-nn-eed", "re": "lenet-cae-re", "ocsvm": "cae-ocsvm"}}


def merge(paths: list[str], out_dir: str) -> Path:
    """Merge records of the same label/dataset/settings run with different seeds into one record
    (``python benchmarks/cae_scores.py --merge A.json B.json``); the first record's file is rewritten."""
    recs = [json.loads(Path(p).read_text()) for p in paths]
    base = recs[0]
    for r in recs[1:]:
        for key in ("label", "method", "dataset", "protocol", "protocol_options", "profile", "config"):
            if r[key] != base[key]:
                raise SystemExit(f"cannot merge: {key} differs ({r[key]!r} vs {base[key]!r})")
    per: dict[str, dict] = {}
    seeds: list[int] = []
    for r in recs:
        seeds += r["seeds"]
        for e in r["per_task"]:
            t = per.setdefault(e["name"], {k: v for k, v in e.items() if k not in ("metrics", "mean", "train_seconds",
                                                                                    "score_images_per_s")})
            t.setdefault("metrics", {})
            for k, v in e["metrics"].items():
                t["metrics"].setdefault(k, []).extend(v)
            t.setdefault("train_seconds", []).extend(e["train_seconds"])
            t.setdefault("score_images_per_s", []).extend(e["score_images_per_s"])
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"cannot merge: repeated seeds {seeds}")
    notes = base["notes"] + " Seeds merged from separate runs: " + " | ".join(r["command"] for r in recs)
    rec = runner._assemble(base["method"], base["dataset"], base["protocol"], base["protocol_options"],
                           base["profile"], base["params_overrides"], base["config"], seeds, per, base["label"],
                           notes, base["command"], sum(r["duration_seconds"] for r in recs), base["device"])
    rec["protocol_options"] = base["protocol_options"]
    rec["subset"] = base.get("subset", False)
    return runner.write_record(rec, out_dir)


def main(argv: list[str] | None = None) -> None:
    if (argv if argv is not None else sys.argv[1:])[:1] == ["--merge"]:
        args = (argv if argv is not None else sys.argv[1:])[1:]
        print(merge(args, str(runner.DEFAULT_OUT)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="inception-cae", choices=["inception-cae", "cae-nn"])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--protocol", default="one-class")
    ap.add_argument("--classes", nargs="*", default=None)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--scorings", nargs="*", default=["nn-qed", "nn-eed", "re"])
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--param", action="append", default=[], help="key=value constructor override")
    ap.add_argument("--label-suffix", default="")
    ap.add_argument("--notes", default="")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(runner.DEFAULT_OUT))
    ap.add_argument("--features", default=None, help="folder for saved representations (npz)")
    ap.add_argument("--test-every", type=int, default=1, help="score every n-th test image only (CPU budget)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)

    params: dict = {}
    for kv in a.param:
        k, v = kv.split("=", 1)
        try:
            params[k] = int(v)
        except ValueError:
            try:
                params[k] = float(v)
            except ValueError:
                params[k] = v
    params["device"] = a.device
    runner.set_threads(a.threads)
    started = time.perf_counter()
    train_set = load_dataset(a.dataset, "train", data_dir=a.data_dir)
    test_set = load_dataset(a.dataset, "test", data_dir=a.data_dir)
    options = {"max_train": a.max_train} if a.max_train is not None else {}
    classes = None if a.classes is None else [runner._parse_task(c, train_set.class_names) for c in a.classes]
    per: dict[str, dict] = {s: {} for s in a.scorings}
    n_tasks = len(train_set.class_names)  # fewer finished tasks than classes = a subset record
    written: dict[str, Path] = {}
    configs: dict[str, dict] = {}
    for seed in a.seeds:
        for task, split in make_splits(a.protocol, train_set, test_set, classes, seed=seed, **options):
            name = runner._task_name(task, train_set.class_names)
            det = create(a.method, profile=a.profile, **{**params, "seed": seed, "scoring": "re"})
            print(f"[cae_scores] {a.method} {a.dataset} task={name} seed={seed} train={len(split.train)}",
                  file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            det.fit(split.train, val=split.val if len(split.val) else None)
            train_s = time.perf_counter() - t0
            xtr = as_images(split.train)
            t0 = time.perf_counter()
            ftr = det.embed(xtr)
            embed_train_s = time.perf_counter() - t0
            test, test_labels = split.test, split.test_labels
            if a.test_every > 1:
                test, test_labels = test[::a.test_every], test_labels[::a.test_every]
            t0 = time.perf_counter()
            fte = det.embed(test)
            embed_test_s = time.perf_counter() - t0
            fva = det.embed(split.val)
            if a.features:
                Path(a.features).mkdir(parents=True, exist_ok=True)
                np.savez(Path(a.features) / f"{a.method}__{a.dataset}__{runner._slug(name)}__seed{seed}.npz", train=ftr,
                         test=fte, val=fva, test_labels=test_labels)
            for scoring in a.scorings:
                t0 = time.perf_counter()
                if scoring == "ocsvm":
                    ocp = {k: v for k, v in det.get_params().items() if k in create("cae-ocsvm").get_params()}
                    d = create("cae-ocsvm", **ocp)
                    d.input_shape_, d.net_, d.threshold_, d.fitted_ = det.input_shape_, det.net_, None, True
                    d.fit_svm(ftr)
                    head = lambda f, d=d: -d._decision(f)  # noqa: E731  (= d.score on the features)
                else:
                    d = det.rescored(ftr, scoring)
                    head = None if scoring == "re" else (lambda f, d=d: d.index_.score(f, k=1, agg="kth"))
                head_s = time.perf_counter() - t0
                configs[scoring] = {k: v for k, v in d.get_params().items() if k != "seed"}
                if head is None:  # reconstruction error: needs the decoder, score the images
                    d.calibrate(split.val, fpr=runner.CALIBRATION_FPR)
                    t0 = time.perf_counter()
                    scores = d.score(test)
                    score_s = time.perf_counter() - t0
                else:  # neighbour / SVM heads on the shared embeddings (identical to d.score)
                    sval = head(fva)
                    d.threshold_ = float(np.quantile(sval, 1.0 - runner.CALIBRATION_FPR, method="higher"))
                    t0 = time.perf_counter()
                    scores = head(fte)
                    score_s = time.perf_counter() - t0 + embed_test_s
                    # on a GPU, cuDNN picks batch-size dependent kernels, so tiny feature differences can
                    # flip a PQ code: the identity check is exact only on the CPU
                    if d.device_.type == "cpu" and not np.allclose(scores[:20], d.score(test[:20]), rtol=1e-3,
                                                                   atol=1e-4):
                        raise RuntimeError(f"{scoring}: feature-level scores differ from score()")
                threshold = d.threshold_ if len(split.val) >= 2 else None
                m = metrics.summary(test_labels, scores, threshold)
                extra = 0.0 if scoring == "re" else embed_train_s + head_s
                e = per[scoring].setdefault(name, {"task": task, "name": name, "metrics": {}, "train_seconds": [],
                                                   "score_images_per_s": [], "n_train": len(split.train),
                                                   "n_val": len(split.val), "n_test": len(test),
                                                   "n_novel": int(test_labels.sum())})
                for k, v in m.items():
                    e["metrics"].setdefault(k, []).append(v)
                e["train_seconds"].append(train_s + extra)
                e["score_images_per_s"].append(len(test) / max(score_s, 1e-9))
                print(f"[cae_scores]   {scoring}: auroc={m['auroc']:.4f} train={train_s:.1f}s",
                      file=sys.stderr, flush=True)
            if len(a.seeds) == 1:
                write_records(a, per, configs, options, params, classes, started, n_tasks, written, final=False)
    write_records(a, per, configs, options, params, classes, started, n_tasks, written, final=True)


def write_records(a, per, configs, options, params, classes, started, n_tasks, written, final):  # noqa: ANN001
    """Write (or rewrite) one record per scoring; partial (subset) records after every task
    of a single-seed run, so an interrupted run still leaves its finished classes."""
    for scoring in a.scorings:
        if not per[scoring]:
            continue
        method = "cae-ocsvm" if scoring == "ocsvm" else a.method
        label = LABELS[a.method][scoring] + a.label_suffix
        sub = f" Test set: every {a.test_every}th image." if a.test_every > 1 else ""
        notes = (f"{a.notes}{sub} One {a.method} network trained per class and seed (train_seconds = that "
                 f"training + building this scoring head), scored {len(a.scorings)} ways by "
                 f"benchmarks/cae_scores.py: {', '.join(a.scorings)}.").strip()
        rec = runner._assemble(method, a.dataset, a.protocol, options, a.profile, params, configs[scoring],
                               list(a.seeds), per[scoring], label, notes, None, time.perf_counter() - started,
                               a.device)
        rec["protocol_options"] = {**options, **({"test_every": a.test_every} if a.test_every > 1 else {})}
        rec["subset"] = len(per[scoring]) < n_tasks
        path = runner.write_record(rec, a.out_dir)
        old = written.get(scoring)
        if old is not None and old != path and old.exists():
            old.unlink()
        written[scoring] = path
        if final:
            print(f"[cae_scores] {label}: mean auroc {rec['mean'].get('auroc', float('nan')):.4f} -> {path}",
                  file=sys.stderr, flush=True)

if __name__ == "__main__":
    main()
