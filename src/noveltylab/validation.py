"""One place that validates every detector's constructor arguments, at construction.

:class:`~noveltylab.detector.Detector` runs :func:`validate_params` right after
``__init__`` (and therefore also when a saved model is loaded), so a value that
makes no sense (``epochs=0``, ``k=0``, ``lr=-1``, ``width=0``, ``seed=2**70``,
``device="foo"``, a string where a number belongs) raises a ``ValueError`` or
``TypeError`` whose message names the parameter, before any data is read.

Rules come from the parameter's type annotation (``int``, ``float``, ``bool``,
``str``, ``... | None``) plus the name-based ranges below; a method adds its own
cross-parameter checks in ``Detector._validate_params`` (the existing
``_validate`` / ``_check_params`` / ``_check_head`` methods are run too).
"""
from __future__ import annotations

import inspect
import math
import re
from typing import Any

import numpy as np

SEED_MAX = 2 ** 63 - 1
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")

# (lower bound, inclusive?) for integer parameters, by exact name; names ending in "_epochs" default to >= 0
INT_MIN: dict[str, int] = {
    "epochs": 1, "gen_epochs": 1, "ae_epochs": 1, "clf_epochs": 1,
    "batch_size": 1, "score_batch": 1, "k": 1, "width": 1, "depth": 1, "filters": 1, "latent_dim": 1,
    "proj_dim": 1, "bottleneck": 1, "gen_width": 1, "gen_levels": 1, "gen_res_blocks": 1, "pq_m": 1,
    "pq_bits": 1, "input_size": 8, "image_size": 1, "gen_size": 4, "patch_size": 1,
    "max_side": 1, "pad_multiple": 1, "fid_samples": 2, "sample_steps": 1, "gen_check_every": 1,
    "autoaug_samples": 1, "aux_max": 1, "test_views": 1, "tsne_dim": 1, "max_compose": 1, "n_fakes": 1,
    "gen_max_images": 2, "backbone_input_size": 8, "extractor_size": 8, "blur_kernel": 1, "ae_blur_kernel": 1,
}
INT_MAX: dict[str, int] = {"pq_bits": 16, "tsne_dim": 2}
# (low, high, low inclusive, high inclusive) for float parameters, by exact name or suffix ("_lr")
FLOAT_RANGE: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, math.inf, False, False), "weight_decay": (0.0, math.inf, True, False),
    "momentum": (0.0, 1.0, True, False), "alpha": (0.0, 1.0, True, True),
    "frozen_fraction": (0.0, 1.0, True, True), "val_fraction": (0.0, 1.0, True, False),
    "dropout": (0.0, 1.0, True, False), "nu": (0.0, 1.0, False, True), "eps": (0.0, math.inf, True, False),
    "noise_std": (0.0, math.inf, True, False), "lam": (0.0, math.inf, True, False),
    "temperature": (0.0, math.inf, False, False), "recon_weight": (0.0, math.inf, True, False),
    "score_lambda": (0.0, math.inf, True, False), "fid_target": (0.0, math.inf, False, False),
    "gamma": (0.0, math.inf, False, False),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "agg": ("kth", "mean", "sum", "sumsq", "max"),
    "sde": ("vp", "ve"),
    "fid_extractor": ("mobilenet_v2", "pixels"),
    "preprocess": ("none", "gcn"),
}


def _range_for(name: str) -> tuple[float, float, bool, bool] | None:
    if name in FLOAT_RANGE:
        return FLOAT_RANGE[name]
    suffix = name.rsplit("_", 1)[-1]
    if suffix in ("lr", "temperature", "momentum") or name.endswith("weight_decay"):
        return FLOAT_RANGE["weight_decay" if name.endswith("weight_decay") else suffix]
    return None


def _kinds(annotation: Any) -> tuple[set[str], bool]:
    """({"int", "float", "bool", "str"} subset, None allowed) from a string or typing annotation."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = {p.strip() for p in re.split(r"[|,\[\]]", text.replace("Optional", "")) if p.strip()}
    kinds = parts & {"int", "float", "bool", "str"}
    if parts & {"Sequence", "list", "tuple"}:
        kinds.add("seq")
    return kinds, "None" in parts or "Optional" in text


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v: Any) -> bool:
    return (is_int(v) or isinstance(v, (float, np.floating))) and not isinstance(v, (bool, np.bool_))


def check_int(name: str, v: Any, lo: int | None = None, hi: int | None = None, owner: str = "") -> None:
    """Raise naming ``name`` unless ``v`` is an integer (not bool) in ``[lo, hi]``."""
    where = f"{owner}: " if owner else ""
    if not is_int(v):
        raise TypeError(f"{where}{name} must be an integer, got {v!r} ({type(v).__name__})")
    if lo is not None and v < lo:
        raise ValueError(f"{where}{name} must be an integer >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{where}{name} must be an integer <= {hi}, got {v}")


def check_real(name: str, v: Any, rng: tuple[float, float, bool, bool] | None = None, owner: str = "") -> None:
    """Raise naming ``name`` unless ``v`` is a finite real number inside ``rng`` (low, high, incl., incl.)."""
    where = f"{owner}: " if owner else ""
    if not is_real(v):
        raise TypeError(f"{where}{name} must be a number, got {v!r} ({type(v).__name__})")
    if not math.isfinite(float(v)):
        raise ValueError(f"{where}{name} must be finite, got {v!r}")
    if rng is None:
        return
    lo, hi, lo_in, hi_in = rng
    ok = (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
    if not ok:
        if math.isinf(hi):
            want = f"{'>=' if lo_in else '>'} {lo:g}"
        else:
            want = f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
        raise ValueError(f"{where}{name} must be {want}, got {v!r}")


def check_device(device: Any, owner: str = "") -> None:
    """``"auto"`` or a torch device string of a known type (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    where = f"{owner}: " if owner else ""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"{where}device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise ValueError(f"{where}unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def check_fpr(fpr: Any) -> float:
    """The target false-positive rate as a float in (0, 1), or a clear error."""
    check_real("fpr", fpr, (0.0, 1.0, False, False))
    return float(fpr)


def check_param(name: str, v: Any, annotation: Any, owner: str = "") -> None:
    """Validate one constructor argument by its annotation and the name-based rules."""
    if name == "seed":
        return check_int("seed", v, 0, SEED_MAX, owner)
    if name == "device":
        return check_device(v, owner)
    kinds, optional = _kinds(annotation)
    if v is None:
        if optional or not kinds:
            return
        raise TypeError(f"{owner + ': ' if owner else ''}{name} must not be None")
    if not kinds:
        return
    if "bool" in kinds and isinstance(v, (bool, np.bool_)):
        return
    if "str" in kinds and isinstance(v, str):
        if name in CHOICES and v not in CHOICES[name]:
            raise ValueError(f"{owner + ': ' if owner else ''}{name} must be one of {CHOICES[name]}, got {v!r}")
        return
    if "int" in kinds and is_int(v):
        lo = INT_MIN.get(name, 0)
        return check_int(name, v, lo, INT_MAX.get(name), owner)
    if "float" in kinds and is_real(v):
        return check_real(name, v, _range_for(name), owner)
    if "seq" in kinds and isinstance(v, (list, tuple)):
        return None
    words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True or False",
             "None": "None", "seq": "a list"}
    want = " or ".join(words[k] for k in sorted(kinds | ({"None"} if optional else set())))
    raise TypeError(f"{owner + ': ' if owner else ''}{name} must be {want}, got {v!r} ({type(v).__name__})")


LEGACY_HOOKS = ("_validate", "_check_params", "_check_head")


def validate_params(det: Any, args: tuple = (), kwargs: dict | None = None) -> None:
    """Check every constructor argument of ``det`` (a Detector) as it was passed (``args`` /
    ``kwargs``, defaults filled in; the stored attribute when not given), then the method's own checks."""
    cls = type(det)
    owner = getattr(cls, "name", "") or cls.__name__
    init = next(k.__init__ for k in cls.__mro__ if "__init__" in vars(k))
    sig = inspect.signature(init)
    try:
        passed = sig.bind_partial(det, *args, **(kwargs or {})).arguments
    except TypeError:
        passed = {}
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = passed[p.name] if p.name in passed else getattr(det, p.name, p.default)
        check_param(p.name, value, p.annotation, owner)
    det._validate_params()
    for hook in LEGACY_HOOKS:
        fn = getattr(det, hook, None)
        if callable(fn):
            fn()


MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_SIDE = 1 << 16


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_model_config(text: str) -> dict:
    """Parse a saved model's ``config.json``; ValueError for bad JSON, NaN/Infinity, huge or deeply
    nested numbers (never a RecursionError or a traceback from the int parser)."""
    import json

    if len(text) > MAX_CONFIG_BYTES:
        raise ValueError(f"config is {len(text)} bytes, over the {MAX_CONFIG_BYTES} byte limit")
    try:
        config = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, nesting
        raise ValueError(f"not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(config, dict):
        raise ValueError(f"expected a JSON object, got {type(config).__name__}")
    return config


def check_model_config(config: dict) -> None:
    """Types and ranges of a model config's fields (ValueError naming the field)."""
    def bad(field: str, want: str) -> ValueError:
        return ValueError(f"field {field!r} must be {want}, got {str(config.get(field))[:80]!r}")

    if not isinstance(config.get("method"), str) or not config["method"]:
        raise bad("method", "a method name")
    if not isinstance(config.get("params"), dict):
        raise bad("params", "an object of constructor arguments")
    shape = config.get("input_shape")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(is_int(s) for s in shape)
            or shape[0] not in (1, 3) or not all(1 <= s <= MAX_SIDE for s in shape[1:])):
        raise bad("input_shape", f"[C, H, W] with C 1 or 3 and 1 <= H, W <= {MAX_SIDE}")
    thr = config.get("threshold")
    if thr is not None and not (is_real(thr) and math.isfinite(float(thr))):
        raise bad("threshold", "a finite number or null")
    if config.get("meta") is not None and not isinstance(config["meta"], dict):
        raise bad("meta", "an object")
