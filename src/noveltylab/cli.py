"""The ``noveltylab`` command line: demo, fit, score, bench, report, datasets, methods."""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

from .progress import track
from .safeio import atomic_open
from .ingest import scan_folder
from .workflow import (SCORE_HEADER, add_calibrate_parser, add_fit_arguments, add_import_parser,
                       add_ingest_arguments, chunks_of, score_rows)

DEMO_OUT = "noveltylab-demo"


def _value(text: str) -> Any:
    """Parse ``key=value`` values: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: {what} {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = _value(v)
    return out


def _add_common(p: argparse.ArgumentParser, data: bool = True) -> None:
    if data:
        p.add_argument("--data-dir", default=None,
                       help="folder holding the data sets (default: $NOVELTYLAB_DATA or ~/.cache/noveltylab/data)")
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0, help="random seed (runs with the same seed repeat exactly on CPU)")


def build_parser() -> argparse.ArgumentParser:
    from .cli_checks import OneLineParser

    parser = OneLineParser(
        prog="noveltylab",
        description="Image novelty detection: train on normal images only, then score new images "
                    "(higher = more novel).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log training progress per epoch")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run every method on the embedded digits data and print AUROCs",
                       description="One-class protocol on scikit-learn's 8x8 digits (no download, no data "
                                   "directory) for every registered method with a CPU profile; prints a table "
                                   "of mean AUROC per method and writes result files plus RESULTS.md.")
    p.add_argument("--out", default=DEMO_OUT, help=f"folder for result files and RESULTS.md (default {DEMO_OUT})")
    p.add_argument("--methods", nargs="*", help="only these methods (default: all with a cpu/demo profile)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch/FAISS (per worker)")
    p.add_argument("--jobs", type=int, default=None,
                   help="methods run at once in worker processes of one thread each (default: the CPU cores, "
                        "at most 4)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("fit", help="train a detector on normal images and save it",
                       description="Train METHOD on normal images and save the model folder. DATA is a data set "
                                   "name (then --normal-class picks the normal class(es) of its training split) "
                                   "or a folder of normal images (mask files and hidden folders skipped, counts "
                                   "printed). Images of any size are resized by the input transform (--size, "
                                   "--resize-mode, --channels), which is saved with the model. Of a folder, 10 % "
                                   "is held out for validation and 20 % (or --calib DIR) for a conformal "
                                   "threshold at --fpr that the model never trained on.")
    p.add_argument("--method", default=None,
                   help="registered method (see `noveltylab methods`); default: patchcore when available, "
                        "else dn2 at 224 px")
    p.add_argument("--data", required=True, help="data set name (mnist, digits, ...) or a folder of normal images")
    p.add_argument("--normal-class", nargs="*", default=None, help="normal class index(es) or name(s)")
    p.add_argument("--profile", default="cpu", help="hyperparameter profile: cpu (default), paper, demo")
    p.add_argument("--param", nargs="*", help="constructor overrides, key=value")
    p.add_argument("--fpr", type=float, default=0.05, help="target false-positive rate for the threshold")
    p.add_argument("--max-train", type=int, default=None, help="cap on training images (seeded, stratified)")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace -o when it already holds another model or an unrelated config.json")
    add_fit_arguments(p)
    _add_common(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("score", help="score images with a saved model and write a CSV",
                       description="Score image files or folders (any size: the model's saved input "
                                   "transform resizes them; mask files and hidden folders skipped) with a saved "
                                   "model; writes path, score, conformal p-value against the calibration images "
                                   "and decision (1 = novel, using the calibrated threshold) to a CSV.")
    p.add_argument("model", help="model folder written by `noveltylab fit`")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", default="-", help="CSV file (default: standard output)")
    p.add_argument("--batch-size", type=int, default=256, help="images read and scored at a time")
    p.add_argument("--device", default=None, help="override the saved device setting")
    add_ingest_arguments(p)
    p.add_argument("--maps", default=None, metavar="DIR",
                   help="also write a heat-map overlay PNG per image into DIR (localising methods only)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="evaluate a saved model on a labelled test folder",
                       description="Score every image of TEST_ROOT with MODEL and report image AUROC, AUROC per "
                                   "novel class, FPR / recall at the model's threshold and, for localising "
                                   "methods on data with masks, pixel AUROC. Labels come from folder names: "
                                   "good/ or normal/ = normal, every other folder = a novel class; or the "
                                   "MVTec-AD layout (test/<defect>/ with ground_truth/<defect>/*_mask.png).")
    p.add_argument("model", help="model folder written by `noveltylab fit`")
    p.add_argument("test_root", help="labelled test folder (class folders or MVTec-AD layout)")
    p.add_argument("-o", "--output", default=None, metavar="OUTDIR",
                   help="write evaluation.json, scores.csv and the most novel images here (input of "
                        "`noveltylab report OUTDIR`)")
    p.add_argument("--batch-size", type=int, default=64, help="images scored at a time")
    p.add_argument("--top-k", type=int, default=12, help="most novel images kept for the report")
    p.add_argument("--device", default=None, help="override the saved device setting")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="serve a saved model over HTTP (FastAPI + uvicorn)",
                       description="POST /score with an image (raw body or multipart field 'file') returns "
                                   "score, p-value, decision and, for localising methods, a heat-map PNG "
                                   "(base64); GET /health. Needs the [serve] extra.")
    p.add_argument("model", help="model folder written by `noveltylab fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-bytes", type=int, default=20 * 2 ** 20,
                   help="largest accepted request body in bytes (default 20 MiB); larger ones get 413")
    p.add_argument("--device", default=None, help="override the saved device setting")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a saved model's network to ONNX",
                       description="Write the network part of a saved model as ONNX. Reconstruction and "
                                   "distance-to-centre models export the whole score; kNN methods export the "
                                   "feature extractor (the kNN search stays in the model folder). Prints which "
                                   "methods cannot be exported and why. Needs the [export] extra.")
    p.add_argument("model", nargs="?", help="model folder written by `noveltylab fit`")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("-o", "--output", default=None, help="ONNX file to write (default MODEL/model.onnx)")
    p.add_argument("--list", action="store_true", help="only list which methods export and why others do not")
    p.set_defaults(func=cmd_export)

    from .bench.command import add_bench_parser  # spec files, Ray executor, resume (issue 16)

    add_bench_parser(sub)

    p = sub.add_parser("report", help="regenerate RESULTS.md from result files, or an evaluation's HTML report",
                       description="Render every JSON result under RESULTS_DIR into a Markdown report with "
                                   "the papers' numbers beside ours. When RESULTS_DIR is a folder written by "
                                   "`noveltylab evaluate -o`, write one self-contained HTML report instead "
                                   "(default RESULTS_DIR/report.html).")
    p.add_argument("results_dir", nargs="?", default="benchmarks/results")
    p.add_argument("-o", "--output", default=None, help="default: RESULTS.md next to RESULTS_DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("datasets", help="list the data sets and whether their files are found",
                       description="Show each known data set, whether its files are in the data directory, and "
                                   "where they are expected.")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_datasets)

    add_calibrate_parser(sub)
    add_import_parser(sub)

    p = sub.add_parser("methods", help="list registered methods; with NAME: its parameters, profiles, input size",
                       description="Without NAME: every registered method with its profiles. With NAME: its "
                                   "parameters and defaults, profiles, the input size it works at and its "
                                   "pretrained-weights parameter.")
    p.add_argument("name", nargs="?", default=None, help="a method name")
    p.set_defaults(func=cmd_methods)
    return parser


# --- commands -------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_command

    return demo_command(args)


def cmd_fit(args: argparse.Namespace) -> int:
    from .workflow import fit_command

    args.params = _pairs(args.param, "--param")
    return fit_command(args)


def cmd_score(args: argparse.Namespace) -> int:
    from .detector import load
    from .images import as_images, list_image_files

    det = load(args.model)
    if args.device:
        det.device = args.device
    files: list[Path] = []
    for item in args.images:
        p = Path(item)
        if p.is_dir():
            scan = scan_folder(p, args.include, args.exclude, skip_masks=not args.keep_masks)
            print(scan.summary(), file=sys.stderr)
            if not scan.files:
                raise SystemExit(f"error: no image files in folder {p}")
            files += scan.files
        elif p.is_file():
            files.append(p)
        else:
            raise SystemExit(f"error: no such file or folder: {p}")
    if args.maps and not det.localises:
        raise SystemExit(f"error: --maps: method {det.name!r} does not localise (no anomaly maps); "
                         "localising methods are marked [localises] in `noveltylab methods`")
    used_names: set[str] = set()
    with (nullcontext(sys.stdout) if args.output == "-" else atomic_open(args.output, "w", newline="")) as out:
        writer = csv.writer(out)  # a file appears only when every row is written (temporary file + rename)
        writer.writerow(SCORE_HEADER)
        for chunk in track(chunks_of(files, args.batch_size), "scoring", unit="batch"):
            writer.writerows(score_rows(det, chunk))
            if args.maps:
                from .overlay import save_overlays

                save_overlays(det, chunk, args.maps, used_names)
    if args.output != "-":
        print(f"{len(files)} scores written to {args.output}", file=sys.stderr)
    if args.maps:
        print(f"{len(files)} heat-map overlays written to {args.maps}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .detector import load
    from .evaluate import evaluate, summary_text

    det = load(args.model)
    if args.device:
        det.device = args.device
    result = evaluate(det, args.test_root, out_dir=args.output, batch_size=args.batch_size, top_k=args.top_k,
                      model=str(args.model), command=["noveltylab", *sys.argv[1:]])
    print(summary_text(result))
    if args.output:
        print(f"evaluation written to {Path(args.output) / 'evaluation.json'} (+ scores.csv); "
              f"HTML: noveltylab report {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.model, host=args.host, port=args.port, max_bytes=args.max_bytes, device=args.device)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .detector import available, load
    from .export import export_onnx, export_reason

    if args.list or not args.model:
        for name in available():
            why = export_reason(name)
            print(f"{name:<20} " + ("exports" if why is None else f"cannot be exported: {why}"))
        return 0
    det = load(args.model)
    out = args.output or str(Path(args.model) / "model.onnx")
    meta = export_onnx(det, out)
    what = ("images -> scores" if meta["kind"] == "score" else
            "images -> features (the kNN search stays outside ONNX: noveltylab.export.OnnxScorer(onnx, model_dir))")
    print(f"{det.name}: ONNX written to {out} ({what}); input float32 (N, {', '.join(map(str, det.input_shape_))}) "
          "in [0, 1]")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .evaluate import EVAL_FILE

    if (Path(args.results_dir) / EVAL_FILE).is_file():  # an evaluation folder: HTML report (issue 15)
        from .report_html import write_html_report

        print(f"report written to {write_html_report(args.results_dir, args.output)}")
        return 0
    from .bench.tables import write_all  # RESULTS.md + the READMEs' generated tables (issue 16)

    out = args.output or str(Path(args.results_dir).parent / "RESULTS.md")
    for path in write_all(args.results_dir, out):
        print(f"report written to {path}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import dataset_status, default_data_dir

    print(f"data directory: {default_data_dir(args.data_dir)}")
    for row in dataset_status(args.data_dir):
        mark = "found  " if row["found"] else "missing"
        print(f"  {mark} {row['name']:<16} {row.get('description', '')}  [{row.get('path', '')}]")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .detector import available, get_class
    from .workflow import describe_method

    if args.name:
        print(describe_method(args.name))
        return 0
    for name in available():
        cls = get_class(name)
        print(f"{name:<22} {cls.summary}  profiles: {', '.join(sorted(cls.profiles))}"
              + ("  [localises]" if cls.localises else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from .cli_checks import run_command

    return run_command(args.func, args)  # user errors: one line on stderr, exit status 2


if __name__ == "__main__":
    sys.exit(main())
