"""``noveltylab bench``: run spec files (or the one-entry flag form) through the engine.

    noveltylab bench benchmarks/specs/p003_table4.toml            # every entry, Ray if installed
    noveltylab bench SPEC --only raw-nn-qed --executor sequential  # one entry, in this process
    noveltylab bench SPEC --address ray://head:10001 --gpus-per-task 1 --data-dir /shared/data
    noveltylab bench --method raw-nn --dataset mnist --classes 0 1 # flags = a one-entry spec
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from typing import Any

EXECUTORS = ("auto", "ray", "sequential")


def add_bench_parser(sub: Any) -> None:
    """Register the ``bench`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "bench", help="run benchmark specs (or one setting given by flags) and write JSON result files",
        description="Run every (class, seed) task of the settings in SPEC files (TOML, see benchmarks/specs/) "
                    "or of the one setting given by --method/--dataset/...; each finished task is written to "
                    "OUT_DIR/_parts at once, a rerun skips finished tasks, failed tasks are retried and "
                    "reported, and each setting's tasks are merged into one record "
                    "OUT_DIR/<label>__<dataset>__<protocol>__<profile>.json. Tasks run as Ray tasks when Ray "
                    "is installed (local runtime, or a cluster with --address), else one after another. "
                    "A dirty git tree is refused unless --allow-dirty.")
    p.add_argument("spec", nargs="*", help="spec files (TOML); omit to give one setting with --method etc.")
    p.add_argument("--only", nargs="*", default=None, help="only entries with these labels (or variant labels)")
    p.add_argument("--datasets", nargs="*", default=None, help="only entries on these data sets")
    p.add_argument("--method", default=None, help="flag form: the method of the one setting")
    p.add_argument("--dataset", default=None, help="data set name, e.g. mnist, fashion-mnist, cifar10-jpeg")
    p.add_argument("--protocol", default="one-class", help="one-class, leave-one-out, outlier-fraction, ...")
    p.add_argument("--classes", nargs="*", default=None,
                   help="tasks (class index or name; a+b for several normal classes); default all. With spec "
                        "files: run only these tasks of the selected entries (their parts are shared with the "
                        "entry's full class list, so runs on several machines merge with a rerun of the spec)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--profile", default="cpu", help="cpu (default), paper, demo")
    p.add_argument("--param", nargs="*", help="constructor overrides, key=value")
    p.add_argument("--option", nargs="*", help="protocol options, key=value (e.g. fraction=0.2)")
    p.add_argument("--max-train", type=int, default=None, help="cap on training images per task (stratified)")
    p.add_argument("--label", default=None, help="row label in RESULTS.md (default: the method name)")
    p.add_argument("--notes", default="", help="free text stored with the result")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--data-dir", default=None, help="folder holding the data sets (on a cluster: on every node)")
    p.add_argument("--device", default=None, help="torch device (default auto; cuda with --gpus-per-task)")
    p.add_argument("--executor", default="auto", choices=EXECUTORS,
                   help="auto (default): Ray if installed, else sequential")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local runtime)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray runtime (default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per task (Ray: CPUs reserved per task; default 1 on Ray, torch's default "
                        "in sequential runs)")
    p.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs Ray reserves per task (e.g. 1 or 0.5)")
    p.add_argument("--retries", type=int, default=1, help="retries of a failing task before it is reported")
    p.add_argument("--fresh", action="store_true", help="ignore finished part files: rerun every task")
    p.add_argument("--allow-dirty", action="store_true",
                   help="run from a tree with uncommitted changes (recorded as such in every result)")
    p.add_argument("--dry-run", action="store_true", help="list the tasks and which are done; run nothing")
    p.add_argument("--merge-only", action="store_true",
                   help="run nothing: merge the finished part files of a stopped run into subset records")
    p.add_argument("--parts-from-records", action="store_true",
                   help="first rebuild missing part files from each setting's complete record in --out-dir "
                        "(to add seeds or classes to a record whose part files are gone)")
    p.add_argument("--to-spec", nargs="+", metavar="RECORD", default=None,
                   help="print the [[entry]] tables that reproduce these result files (to paste into a spec)")
    p.set_defaults(func=cmd_bench)


def _settings(args: argparse.Namespace) -> list[tuple[Any, list[Any]]]:
    """(spec or None, settings) groups from the spec files or the flags."""
    from ..cli import _pairs  # the CLI's one key=value parser
    from .spec import Setting, SpecError, load_spec

    if args.spec:
        if args.method or args.dataset:
            raise SpecError("give spec files or --method/--dataset, not both")
        groups = []
        for path in args.spec:
            spec = load_spec(path)
            selected = spec.select(args.only, args.datasets)
            if args.classes is not None:  # some tasks of the selected settings (e.g. split over machines)
                selected = [dataclasses.replace(s, classes=list(args.classes)) for s in selected]
            groups.append((spec, selected))
        return groups
    if not args.method or not args.dataset:
        raise SpecError("give a spec file, or --method and --dataset for a single setting")
    options = _pairs(args.option, "--option")
    if args.max_train is not None:
        options["max_train"] = args.max_train
    params = _pairs(args.param, "--param")
    return [(None, [Setting(label=args.label or args.method, method=args.method, dataset=args.dataset,
                            protocol=args.protocol, profile=args.profile, params=params, options=options,
                            classes=args.classes, seeds=list(args.seeds), notes=args.notes)])]


def make_executor(args: argparse.Namespace) -> Any:
    """The executor the flags ask for (``auto``: Ray when installed)."""
    from .engine import SequentialExecutor
    from .ray_executor import RayExecutor, ray_available

    kind = args.executor
    if kind == "auto":
        kind = "ray" if ray_available() else "sequential"
    if kind == "ray":
        return RayExecutor(address=args.address, num_cpus=args.num_cpus, threads=args.threads or 1,
                           gpus_per_task=args.gpus_per_task, retries=args.retries, device=args.device)
    if args.address or args.gpus_per_task:
        raise ValueError("--address and --gpus-per-task need the Ray executor")
    return SequentialExecutor(threads=args.threads, device=args.device, retries=args.retries)


def bench_command(args: argparse.Namespace) -> str:
    """The ``noveltylab bench`` command line equivalent to ``args`` (only options that differ from the
    defaults), shell-quoted: what a record stores as its exact command."""
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["bench"]  # type: ignore[union-attr]
    words = ["noveltylab", "bench", *args.spec]
    for action in sub._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default or value is None:
            continue
        flag = action.option_strings[-1]
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def cmd_bench(args: argparse.Namespace) -> int:
    from .engine import jobs_for, part_dir, read_part, run_settings, summary_lines
    from .provenance import DirtyTreeError

    if args.to_spec:
        from .spec import entry_toml

        for path in args.to_spec:
            print(entry_toml(json.loads(open(path).read())))
        return 0
    groups = _settings(args)
    if args.parts_from_records:
        from .record_parts import parts_from_records

        for _, settings in groups:
            for s in settings:
                n = len(parts_from_records(s, args.out_dir))
                print(f"{s.label} {s.dataset} {s.protocol}: {n} part file(s) rebuilt from its record")
    if args.dry_run:
        for spec, settings in groups:
            for s in settings:
                jobs = jobs_for(s, args.data_dir)
                n_done = sum(read_part(part_dir(args.out_dir, s) / f"{j.id}.json", s.key()) is not None
                             for j in jobs)
                print(f"{s.label} {s.dataset} {s.protocol} {s.options}: {len(jobs)} tasks, {n_done} done")
        return 0
    executor = make_executor(args)
    status = 0
    try:
        for spec, settings in groups:
            summary = run_settings(settings, spec=spec, out_dir=args.out_dir, data_dir=args.data_dir,
                                   executor=executor, allow_dirty=args.allow_dirty, resume=not args.fresh,
                                   command=bench_command(args), merge_only=args.merge_only)
            for line in summary_lines(summary):
                print(line)
            status = status or (1 if summary.failed else 0)
    except DirtyTreeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if hasattr(executor, "shutdown"):
            executor.shutdown()
    return status

