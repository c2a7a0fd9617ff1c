"""The practitioner's workflow behind the CLI: folder -> fit (with transform and calibration split)
-> calibrate -> score with p-values; the default method; ``methods NAME``; importers.

Kept out of :mod:`noveltylab.cli` (argument parsing only) so that each step is a plain function
that the tests and the Python API can call too.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .detector import CalibrationWarning, Detector, available, create, get_class
from .ingest import Scan, scan_folder, split_files
from .preprocess import MODES, Transform, native_size

# The pretrained-weights parameter, by the name methods give it; `--weights` sets the first one a method has.
WEIGHTS_PARAMS = ("weights", "extractor_weights")
VAL_FRACTION = 0.1     # of a folder: fit's validation images (some methods use them)
CALIB_FRACTION = 0.2   # of a folder: calibration images the model never sees


def say(msg: str) -> None:
    """Progress and decisions go to standard error (standard output stays for results)."""
    print(msg, file=sys.stderr, flush=True)


# --- the default method ------------------------------------------------------------------
def default_method() -> tuple[str, dict[str, Any], str]:
    """(name, parameter overrides, why): ``patchcore`` when registered (pretrained patch features,
    the most accurate practical detector here), else ``dn2`` at 224 px."""
    names = available()
    if "patchcore" in names:
        return "patchcore", {}, "patchcore (pretrained patch features + kNN, localises; the most accurate " \
                                "practical detector in this library)"
    return "dn2", {"input_size": 224}, "dn2 at 224 px (pretrained MobileNetV2 features + kNN; patchcore is " \
                                       "not available in this installation)"


def weights_param(cls: type[Detector]) -> str | None:
    """The name of ``cls``'s pretrained-weights-file parameter, or None."""
    names = cls._param_names()
    return next((p for p in WEIGHTS_PARAMS if p in names), None)


def build_detector(method: str | None, profile: str, params: dict[str, Any], weights: str | None,
                   seed: int, device: str) -> Detector:
    """The detector ``fit`` trains: ``method`` (or the default, announced) with ``--weights`` applied."""
    if method is None:
        method, extra, why = default_method()
        say(f"no --method given: using {why}")
        params = {**extra, **params}
    cls = get_class(method)
    if weights is not None:
        wp = weights_param(cls)
        if wp is None:
            raise ValueError(f"--weights: method {method!r} uses no pretrained weights file")
        params = {**params, wp: weights}
    if profile not in cls.profiles:
        raise KeyError(f"method {method!r} has no profile {profile!r}; profiles: {sorted(cls.profiles)}")
    return create(method, profile=profile, seed=seed, device=device, **params)


def transform_for(det: Detector, size: int | None, mode: str, channels: int | None) -> Transform:
    """``--size`` / ``--resize-mode`` / ``--channels``, defaulting to the method's native size."""
    return Transform(size if size is not None else native_size(det), mode, channels)


# --- fit ---------------------------------------------------------------------------------
def folder_splits(scan: Scan, calib: Scan | None, max_train: int | None, seed: int,
                  calib_fraction: float = CALIB_FRACTION) -> tuple[list[Path], list[Path], list[Path]]:
    """(train, val, calib) files of a folder: calib = ``--calib`` folder or ``calib_fraction`` of the
    folder, never used in training or validation; ``max_train`` caps train before decoding."""
    files = scan.files
    n = len(files)
    if n < 2:
        raise ValueError(f"{scan.root}: need at least 2 normal images, found {n}")
    val_f = VAL_FRACTION if n >= 20 else 0.0
    cal_f = 0.0 if calib is not None or n < 10 else calib_fraction
    train, val, cal = split_files(files, [1 - val_f - cal_f, val_f, cal_f], seed)
    if calib is not None:
        overlap = {p.resolve() for p in calib.files} & {p.resolve() for p in files}
        if overlap:
            raise ValueError(f"--calib shares {len(overlap)} image(s) with --data; calibration images must be "
                             "ones the model never saw")
        cal = list(calib.files)
    if max_train is not None and len(train) > max_train:
        pick = np.random.default_rng(seed).choice(len(train), size=max_train, replace=False)
        train = [train[i] for i in sorted(pick)]
    return train, val, cal


def calibrate_and_report(det: Detector, images: Any, fpr: float, what: str) -> None:
    """``det.calibrate`` with the CLI's messages: the warning when the set is too small, the rule used."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        det.calibrate(images, fpr=fpr)
    for w in caught:
        if issubclass(w.category, CalibrationWarning):
            say(f"warning: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    n = len(det.calibration_scores_)
    say(f"threshold {det.threshold_:.6g}: conformal, calibrated on {n} {what}; new normal images are flagged "
        f"at a rate of at most about {max(fpr, 1 / (n + 1)):.3g} on average (target {fpr:g})")


def fit_command(args: argparse.Namespace) -> int:
    """``noveltylab fit``: see the parser's help in cli.py."""
    from .data import load_dataset
    from .data.protocols import normal_train_val

    params = dict(getattr(args, "params", {}) or {})
    det = build_detector(args.method, args.profile, params, args.weights, args.seed, args.device)
    transform = transform_for(det, args.size, args.resize_mode, args.channels)
    calib_scan = None
    if args.calib:
        calib_scan = scan_folder(args.calib, args.include, args.exclude, skip_masks=not args.keep_masks)
        say(calib_scan.summary())
    src = Path(args.data)
    if src.is_dir() and not args.normal_class:
        scan = scan_folder(src, args.include, args.exclude, skip_masks=not args.keep_masks)
        say(scan.summary())
        train, val, cal = folder_splits(scan, calib_scan, args.max_train, args.seed)
        cal_what = "images from --calib" if calib_scan else "held-out images of --data (not used for fitting)"
    else:
        if not args.normal_class:
            raise SystemExit("error: --normal-class is required when --data is a data set name")
        data = load_dataset(args.data, "train", data_dir=args.data_dir)
        train, val_all = normal_train_val(data, list(args.normal_class), max_train=args.max_train, seed=args.seed)
        half = len(val_all) // 2
        val, cal = (val_all[:half], val_all[half:]) if calib_scan is None else (val_all, list(calib_scan.files))
        cal_what = ("images from --calib" if calib_scan else
                    "held-out images of the normal class(es) (not used for fitting)")
    say(f"fitting {det.name} on {len(train)} normal images ({len(val)} for validation, {len(cal)} for "
        f"calibration); input transform: {transform.mode} to {transform.size} px"
        + (f", {transform.channels} channel(s)" if transform.channels else ""))
    det.fit(train, val=val if len(val) >= 2 else None, transform=transform)
    if len(cal) >= 1:
        calibrate_and_report(det, cal, args.fpr, cal_what)
    else:
        say("no calibration images (folder too small): no threshold; run `noveltylab calibrate MODEL DIR` "
            "with held-out normal images")
    path = det.save(args.output, overwrite=getattr(args, "overwrite", False))
    print(f"model saved to {path}")
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    """``noveltylab calibrate MODEL DIR``: threshold and p-value reference from held-out normal images."""
    from .detector import load

    det = load(args.model)
    scan = scan_folder(args.images, args.include, args.exclude, skip_masks=not args.keep_masks)
    say(scan.summary())
    if not scan.files:
        raise ValueError(f"{args.images}: no image files to calibrate on")
    calibrate_and_report(det, scan.files, args.fpr, f"images from {args.images}")
    save_in_place(det, args.model)
    print(f"model updated: {args.model}")
    return 0


def save_in_place(det: Detector, path: str) -> None:
    """Save over an existing model folder (the overwrite is the point of ``calibrate``)."""
    params = inspect.signature(det.save).parameters
    if "overwrite" in params:
        det.save(path, overwrite=True)  # type: ignore[call-arg]
    else:
        det.save(path)


# --- score -------------------------------------------------------------------------------
SCORE_HEADER = ["path", "score", "p_value", "novel"]


def score_rows(det: Detector, files: Sequence[Path]) -> list[list[Any]]:
    """CSV rows ``path, score, p_value, novel`` for ``files`` (p-value and decision empty when the model
    has no calibration)."""
    scores = det.score(list(files))
    cal = getattr(det, "calibration_scores_", None)
    p = det.p_value(scores=scores) if cal is not None else [None] * len(files)
    flags = (scores > det.threshold_).astype(int) if det.threshold_ is not None else [None] * len(files)
    return [[str(f), f"{float(s):.8g}", "" if pv is None else f"{float(pv):.6g}", "" if d is None else int(d)]
            for f, s, pv, d in zip(files, scores, p, flags)]


# --- methods NAME -------------------------------------------------------------------------
def describe_method(name: str) -> str:
    """Parameters with defaults, profiles (their overrides and the input size they work at), weights."""
    cls = get_class(name)
    doc = inspect.getdoc(cls) or ""
    lines = [f"{name}: {cls.summary}", ""]
    if doc:
        lines += [doc.split("\n\n")[0], ""]
    sig = inspect.signature(cls.__init__)
    lines.append("parameters (default):")
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        lines.append(f"  {p.name} = {p.default!r}")
    lines.append("")
    lines.append("profiles (overrides; input size = the transform's default --size):")
    for prof, over in cls.profiles.items():
        try:
            size = f"{native_size(create(name, profile=prof))} px"
        except Exception as exc:  # a profile that cannot be built here (e.g. missing file) still lists
            size = f"? ({exc})"
        lines.append(f"  {prof:<8} input {size:<8} {over}")
    lines.append(f"  (no profile) input {native_size(cls())} px")
    lines.append("")
    wp = weights_param(cls)
    lines.append(f"pretrained weights file: parameter {wp!r} (CLI --weights PATH)" if wp else
                 "pretrained weights file: none (trained from scratch)")
    lines.append(f"anomaly maps: {'yes (anomaly_map, score --maps)' if cls.localises else 'no'}")
    return "\n".join(lines)


# --- import ------------------------------------------------------------------------------
def import_command(args: argparse.Namespace) -> int:
    """``noveltylab import SRC DEST [--labels CSV]``: copy into the MVTec-AD layout."""
    from .ingest import import_labels_csv, import_mask_pairs

    if args.labels:
        counts = import_labels_csv(args.src, args.labels, args.dest, normal_label=args.normal_label,
                                   test_fraction=args.test_fraction, seed=args.seed, overwrite=args.overwrite)
    else:
        counts = import_mask_pairs(args.src, args.dest, test_fraction=args.test_fraction,
                                   defect_name=args.defect_name, seed=args.seed, overwrite=args.overwrite)
    for k, v in sorted(counts.items()):
        print(f"  {k:<24} {v} images")
    print(f"MVTec-AD layout written to {args.dest}")
    return 0


# --- argument groups (registered by cli.py) ------------------------------------------------
def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include", nargs="*", default=None, metavar="GLOB",
                   help="only files matching these globs (relative path or file name, e.g. 'good/*.png')")
    p.add_argument("--exclude", nargs="*", default=None, metavar="GLOB", help="skip files matching these globs")
    p.add_argument("--keep-masks", action="store_true",
                   help="do not skip mask files (*_mask*, ground_truth/, a PNG beside a same-named JPEG)")


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fit`` added by the workflow (transform, ingestion, calibration, weights)."""
    add_ingest_arguments(p)
    p.add_argument("--size", type=int, default=None,
                   help="model input side in px (default: the method's native size, 224 for pretrained "
                        "backbones; see `noveltylab methods NAME`)")
    p.add_argument("--resize-mode", default="resize", choices=MODES,
                   help="resize (stretch to a square), centre-crop (shorter side to --size, centre kept) or "
                        "pad (longer side to --size, black borders); default resize")
    p.add_argument("--channels", type=int, default=None, choices=(1, 3),
                   help="1 = grey, 3 = RGB (default: 3 if any training image is colour, else 1)")
    p.add_argument("--calib", default=None, metavar="DIR",
                   help="folder of held-out normal images for the threshold and p-values (default: 20 %% of "
                        "--data, never used for fitting)")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="pretrained weights file for methods with a backbone (default: the shared file)")


def add_calibrate_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="set a saved model's threshold from held-out normal images",
                       description="Score IMAGES (normal images the model never saw) and store a conformal "
                                   "threshold at --fpr plus the calibration scores for p-values in MODEL. "
                                   "Warns when there are fewer than 1/fpr images and says which rate they "
                                   "can resolve.")
    p.add_argument("model", help="model folder written by `noveltylab fit` (updated in place)")
    p.add_argument("images", help="folder of held-out normal images")
    p.add_argument("--fpr", type=float, default=0.05, help="target false-positive rate (default 0.05)")
    add_ingest_arguments(p)
    p.set_defaults(func=calibrate_command)


def add_import_parser(sub: Any) -> None:
    p = sub.add_parser("import", help="copy an image folder into the MVTec-AD layout",
                       description="SRC holds images with same-named masks (NAME.jpg + NAME_mask.png or "
                                   "NAME.png); or, with --labels, any images listed in a CSV with columns "
                                   "path,label. Writes DEST/train/good, DEST/test/good, DEST/test/<defect> and "
                                   "DEST/ground_truth/<defect>/NAME_mask.png.")
    p.add_argument("src", help="source folder")
    p.add_argument("dest", help="destination root (MVTec-AD layout)")
    p.add_argument("--labels", default=None, metavar="CSV", help="CSV with columns path,label (paths relative "
                                                                 "to SRC)")
    p.add_argument("--normal-label", default="good", help="label of normal rows in --labels (default good)")
    p.add_argument("--defect-name", default="defect", help="test folder name for masked images (default defect)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="normal images kept for test/good")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace files already in DEST")
    p.set_defaults(func=import_command)


def chunks_of(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` in consecutive pieces of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]
