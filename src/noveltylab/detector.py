"""The Detector contract every method follows, the registry, and safe save/load.

A detector is fitted on normal images only and scores new images (higher =
more novel). Constructor arguments are hyperparameters only (scikit-learn
style); everything learned lives in attributes ending with ``_``.

Saved models are a folder with ``config.json`` (method, hyperparameters,
JSON metadata, SHA-256 of the weights) and ``weights.safetensors`` (every
tensor, including FAISS indexes serialised to bytes). Loading never unpickles
anything, refuses a folder written by another method, checks the config's types
and ranges and the stored tensors against it, and detects accidental corruption
with the SHA-256 checksums. The checksums are not keyed: they do not detect
deliberate tampering, so load models only from sources you trust.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from .images import ImageError, ImageInput, as_images
from .preprocess import Transform, as_transform

FORMAT = "noveltylab-model"
FORMAT_VERSION = 1
_REGISTRY: dict[str, type["Detector"]] = {}


class NotFittedError(RuntimeError):
    """Raised when a detector is used before ``fit``."""


class ModelFileError(ValueError):
    """Raised for a model folder that is missing, from another method, corrupt or inconsistent."""


class CalibrationWarning(UserWarning):
    """The calibration set is too small to resolve the requested false-positive rate."""


CALIB_KEY = "__calibration_scores__"
MIN_CALIBRATION_IMAGES = 2


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    return dev


class _ValidatedInit(type):
    """Metaclass: every detector's constructor arguments are validated right after ``__init__``
    (:func:`noveltylab.validation.validate_params`), also when a saved model is loaded."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        from .validation import validate_params

        obj = super().__call__(*args, **kwargs)
        validate_params(obj, args, kwargs)
        return obj


class Detector(metaclass=_ValidatedInit):
    """Base class: subclasses implement ``_fit`` and ``_score`` (and optionally
    ``_anomaly_map``, ``_state``/``_restore``, ``_meta``).

    Class attributes:
      ``name``: registry name; ``profiles``: named hyperparameter sets, at
      least ``"cpu"`` (minutes on two cores) and ``"paper"`` (the paper's
      schedule); ``localises``: whether ``anomaly_map`` is available.
    """

    name: ClassVar[str] = ""
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    localises: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    # --- hyperparameters -------------------------------------------------
    def __init__(self, seed: int = 0, device: str = "auto") -> None:
        self.seed = seed
        self.device = device

    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                sig = inspect.signature(klass.__init__)
                for p in list(sig.parameters.values())[1:]:
                    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                        continue
                    if p.name not in names:
                        names.append(p.name)
                break  # the most derived __init__ lists all parameters
        return names

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-able dict (scikit-learn style)."""
        return {n: getattr(self, n) for n in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- public API -------------------------------------------------------
    @property
    def device_(self) -> torch.device:
        return resolve_device(self.device)

    def fit(self, images: ImageInput, val: ImageInput | None = None,
            transform: "Transform | dict | int | str | None" = None) -> "Detector":
        """Fit on normal images only. ``val``: optional held-out normal images
        that some methods use (normalisation constants, validation loss).

        ``transform`` (:class:`noveltylab.preprocess.Transform`, a dict, an int size or ``"auto"``
        = the method's native size) resizes raw images of any size to the model input; it is saved
        with the model and applied again by ``score`` / ``anomaly_map``. ``None``: images of mixed
        sizes get the ``"auto"`` transform, images of one size are used as they are."""
        from .preprocess import as_transform, default_transform, load_transformed, mixed_sizes

        if transform == "auto" or (transform is None and mixed_sizes(images)):
            transform = default_transform(self)
        self.transform_ = as_transform(transform)
        x, _, self.transform_ = load_transformed(images, self.transform_, desc="loading training images")
        if x.shape[0] < 2:
            raise ImageError(f"training images: need at least 2 normal images, got {x.shape[0]}")
        v = None if val is None else load_transformed(val, self.transform_, desc="loading validation images")[0]
        if v is not None and v.shape[1:] != x.shape[1:]:
            raise ImageError(f"validation images have shape {tuple(v.shape[1:])} but training images "
                             f"have {tuple(x.shape[1:])}")
        self._check_input(x)
        seed_everything(self.seed)
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        self.threshold_: float | None = None
        self._fit(x, v)
        self.fitted_ = True
        return self

    def score(self, images: ImageInput) -> np.ndarray:
        """Novelty score per image (float64, higher = more novel); independent of batch composition."""
        from .preprocess import score_in_chunks

        x = self._prepare(images)
        with torch.no_grad():
            s = score_in_chunks(self._score, x, desc=f"{self.name}: scoring")
        if s.shape[0] != x.shape[0]:
            raise RuntimeError(f"{self.name}: produced {s.shape[0]} scores for {x.shape[0]} images")
        if not np.all(np.isfinite(s)):
            raise RuntimeError(f"{self.name}: non-finite scores; the model may have diverged during training")
        return s

    def anomaly_map(self, images: ImageInput) -> np.ndarray | list[np.ndarray]:
        """Per-pixel novelty maps at each image's original resolution (localising methods only):
        an ``(N, H, W)`` array, or a list of ``(H_i, W_i)`` arrays when the images differ in size."""
        from .preprocess import maps_in_chunks

        if not self.localises:
            raise NotImplementedError(f"method {self.name!r} does not localise; anomaly_map is unavailable")
        x, sizes = self._prepare(images, with_sizes=True)
        with torch.no_grad():
            return maps_in_chunks(self._anomaly_map, x, sizes, self.transform_, desc=f"{self.name}: maps")

    def calibrate(self, normal_images: ImageInput, fpr: float = 0.05) -> "Detector":
        """Set ``threshold_`` from normal images the model never saw (not its training or validation
        images) so that at most about ``fpr`` of new normal images are flagged.

        Conformal rule: with ``n`` calibration scores the threshold is the ``ceil((n + 1)(1 - fpr))``-th
        smallest, which keeps the expected false-positive rate at or below ``fpr``. The scores are
        kept (and saved) for :meth:`p_value`. A set of fewer than ``1/fpr`` images cannot resolve
        the rate: a :class:`CalibrationWarning` says so and names the finest rate, ``1/(n + 1)``."""
        from .calibration import conformal_threshold

        from .validation import check_fpr

        fpr = check_fpr(fpr)
        s = self.score(normal_images)
        if len(s) < MIN_CALIBRATION_IMAGES:
            raise ValueError(f"calibrate needs at least {MIN_CALIBRATION_IMAGES} held-out normal images, "
                             f"got {len(s)}")
        self.threshold_, warning = conformal_threshold(s, fpr)
        if warning:
            warnings.warn(warning, CalibrationWarning, stacklevel=2)
        self.calibration_fpr_ = fpr
        self.calibration_scores_ = np.sort(s)
        return self

    def p_value(self, images: ImageInput | None = None, scores: np.ndarray | None = None) -> np.ndarray:
        """Conformal p-value per image against the calibration scores: ``(1 + #{calibration score >=
        score}) / (n + 1)``. Small = unlike normal images; for normal images it is uniform on
        ``{1/(n+1), ..., 1}``. Pass ``images`` or their precomputed ``scores``."""
        from .calibration import conformal_p_values

        cal = getattr(self, "calibration_scores_", None)
        if cal is None:
            raise NotFittedError("no calibration scores: call calibrate(normal_images, fpr=...) first")
        s = self.score(images) if scores is None else np.asarray(scores, dtype=np.float64)
        return conformal_p_values(cal, s)

    def predict(self, images: ImageInput) -> np.ndarray:
        """1 = novel, 0 = normal, using ``threshold_`` (call ``calibrate`` first)."""
        self._check_fitted()
        if self.threshold_ is None:
            raise NotFittedError("no threshold: call calibrate(normal_images, fpr=...) before predict")
        return (self.score(images) > self.threshold_).astype(np.int64)

    # --- persistence -------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``config.json`` + ``weights.safetensors`` into folder ``path`` (each file written
        atomically). A folder holding another model or an unrelated ``config.json`` is only
        replaced with ``overwrite=True``."""
        from safetensors.torch import save_file

        from .safeio import atomic_path

        self._check_fitted()
        path = _model_dir_for_writing(Path(path), self.name, overwrite)
        state = {k: _as_tensor(v) for k, v in self._state().items()}
        wfile = path / "weights.safetensors"
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.name,
            "params": self.get_params(),
            "input_shape": list(self.input_shape_),
            "threshold": self.threshold_,
            "meta": self._meta(),
        }
        transform = getattr(self, "transform_", None)
        if transform is not None:
            config["transform"] = transform.to_dict()
        cal = getattr(self, "calibration_scores_", None)
        if cal is not None:
            state[CALIB_KEY] = _as_tensor(np.asarray(cal, dtype=np.float64))
            config["calibration"] = {"fpr": self.calibration_fpr_, "n": int(len(cal))}
        config = json.loads(json.dumps(config, default=json_default))
        with atomic_path(wfile) as tmp_w, atomic_path(path / "config.json") as tmp_c:
            save_file(state, str(tmp_w), metadata={"config_sha256": _config_hash(config)})
            config["weights_sha256"] = _sha256(tmp_w)
            tmp_c.write_text(json.dumps(config, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Detector":
        """Load a saved model; on the base class the method is read from the folder."""
        config, state = _read_model_dir(Path(path))
        method = config["method"]
        if cls is Detector:
            klass = get_class(method)
        else:
            if method != cls.name:
                raise ModelFileError(f"{path} holds a {method!r} model, not {cls.name!r}; "
                                     f"use noveltylab.load() or the {method!r} class")
            klass = cls
        try:
            det = klass(**config["params"])
            det.input_shape_ = tuple(config["input_shape"])
            det.threshold_ = config.get("threshold")
            det.transform_ = as_transform(config.get("transform"))
            cal = state.pop(CALIB_KEY, None)
            if cal is not None:
                det.calibration_scores_ = cal.double().numpy()
                det.calibration_fpr_ = float((config.get("calibration") or {}).get("fpr", 0.05))
            det._restore(state, config.get("meta") or {})
            det._check_restored()
        except (TypeError, KeyError, ValueError, RuntimeError, AssertionError, IndexError, MemoryError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"{path}: saved model does not fit method {method!r}: {exc}") from None
        det.fitted_ = True
        return det

    # --- hooks for subclasses --------------------------------------------
    def _validate_params(self) -> None:
        """Method-specific checks of the constructor arguments (run at construction, after the
        generic rules of :mod:`noveltylab.validation`); raise ValueError naming the parameter."""

    def _check_restored(self) -> None:
        """After load: score two blank images of ``input_shape_`` so that stored tensors that do not
        fit the config (a forged or mismatched ``input_shape``) fail here, not as garbage scores."""
        blank = torch.zeros((2, *self.input_shape_), dtype=torch.float32)
        with torch.no_grad():
            s = np.asarray(self._score(blank), dtype=np.float64).reshape(-1)
        if s.shape[0] != 2:
            raise ValueError(f"the stored model produced {s.shape[0]} scores for 2 images of shape "
                             f"{self.input_shape_}")

    def _check_input(self, x: torch.Tensor) -> None:
        """Raise ImageError if ``x`` (first seen in fit) cannot be used by this method."""

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _score(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _anomaly_map(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict[str, torch.Tensor | np.ndarray]:
        """Every learned array/tensor, flat dict; stored in safetensors."""
        return {}

    def _meta(self) -> dict[str, Any]:
        """JSON-able learned values (normalisation constants, ...)."""
        return {}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Rebuild the fitted detector from ``_state()`` and ``_meta()``."""

    # --- helpers -----------------------------------------------------------
    def _net_state(self) -> dict[str, torch.Tensor]:
        """``_state`` for detectors whose learned state is one network ``self.net_``."""
        return module_state("net", self.net_)

    def _restore_net(self, state: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`_net_state`: rebuild ``self.net_`` with ``self._build()`` and load it."""
        self.net_ = self._build()
        load_module_state("net", self.net_, state)
        self.net_.eval()

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"this {self.name or type(self).__name__} detector is not fitted; call fit() first")

    def _prepare(self, images: ImageInput, with_sizes: bool = False) -> Any:
        """Images -> model input (the saved transform applied); with ``with_sizes`` also each
        image's original ``(H, W)``."""
        from .preprocess import load_transformed

        self._check_fitted()
        transform = getattr(self, "transform_", None)
        x, sizes, _ = load_transformed(images, transform, desc=f"{self.name}: loading")
        if tuple(x.shape[1:]) != tuple(self.input_shape_):
            c, h, w = self.input_shape_
            raise ImageError(
                f"images have shape (C, H, W) = {tuple(x.shape[1:])} but the model was trained on "
                f"{(c, h, w)}; " + ("wrong number of channels" if x.shape[1] != c else
                                    "resize them first, or fit with a transform (fit(..., transform='auto'), "
                                    "CLI --size) so that images of any size are resized"))
        return (x, sizes) if with_sizes else x


def _as_tensor(v: Any) -> torch.Tensor:
    t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
    return t.detach().cpu().contiguous()


def json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _config_hash(config: dict) -> str:
    body = {k: v for k, v in config.items() if k != "weights_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_model_dir(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    cfile, wfile = path / "config.json", path / "weights.safetensors"
    if not cfile.is_file() or not wfile.is_file():
        raise ModelFileError(f"{path} is not a saved noveltylab model (needs config.json and weights.safetensors)")
    from .validation import check_model_config, parse_model_config

    try:
        config = parse_model_config(cfile.read_text())
    except (ValueError, OSError) as exc:  # incl. UnicodeDecodeError
        raise ModelFileError(f"{cfile} is not a valid model config (corrupted or modified): {exc}") from None
    if config.get("format") != FORMAT:
        raise ModelFileError(f"{cfile} is not a noveltylab model config")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{cfile}: unsupported format version {str(config.get('format_version'))[:40]}")
    try:
        check_model_config(config)
    except ValueError as exc:
        raise ModelFileError(f"{cfile}: {exc}") from None
    if _sha256(wfile) != config.get("weights_sha256"):
        raise ModelFileError(f"{wfile} does not match the checksum in config.json: the file was modified "
                             "or corrupted")
    try:
        state = load_file(str(wfile))
        with safe_open(str(wfile), framework="pt") as f:
            stored = (f.metadata() or {}).get("config_sha256")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {wfile}: {exc}") from None
    if stored != _config_hash(config):
        raise ModelFileError(f"{cfile} does not match the model it was saved with: the config was modified "
                             "or belongs to another weights file")
    return config, state


def _model_dir_for_writing(path: Path, method: str, overwrite: bool) -> Path:
    """Create ``path`` for :meth:`Detector.save`; refuse (without ``overwrite``) a folder whose
    ``config.json`` / weights belong to another method's model or to something else entirely."""
    from .safeio import OutputPathError, check_output_dir
    from .validation import parse_model_config

    try:
        check_output_dir(path)
        path.mkdir(parents=True, exist_ok=True)
    except (OutputPathError, OSError) as exc:
        raise ModelFileError(f"cannot write model folder {path}: {exc}") from None
    cfile, wfile = path / "config.json", path / "weights.safetensors"
    if overwrite or not (cfile.exists() or wfile.exists()):
        return path
    try:
        old = parse_model_config(cfile.read_text())
    except (ValueError, OSError):
        old = {}
    if old.get("format") == FORMAT and old.get("method") == method:
        return path  # re-saving the same method's model
    what = (f"a saved {old['method']!r} model" if old.get("format") == FORMAT and isinstance(old.get("method"), str)
            else "a config.json or weights file that is not this method's model")
    raise ModelFileError(f"{path} already holds {what}; choose another folder or pass overwrite=True "
                         "(CLI: --overwrite) to replace it")


# --- registry ------------------------------------------------------------------
def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make ``cls`` available as ``noveltylab.create(cls.name)``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty 'name' to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _ensure_methods_loaded() -> None:
    from . import methods  # noqa: F401  (registers every method on import)


def available() -> list[str]:
    """Names of all registered detectors."""
    _ensure_methods_loaded()
    return sorted(_REGISTRY)


def get_class(name: str) -> type[Detector]:
    _ensure_methods_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, profile: str | None = None, **params: Any) -> Detector:
    """Build a registered detector; ``profile`` ("cpu", "paper", ...) supplies
    defaults that explicit ``params`` override."""
    cls = get_class(name)
    merged: dict[str, Any] = {}
    if profile is not None:
        if profile not in cls.profiles:
            raise KeyError(f"method {name!r} has no profile {profile!r}; profiles: {sorted(cls.profiles)}")
        merged.update(cls.profiles[profile])
    merged.update(params)
    unknown = set(merged) - set(cls._param_names())
    if unknown:
        raise TypeError(f"method {name!r} has no parameter(s) {sorted(unknown)}; "
                        f"parameters: {cls._param_names()}")
    return cls(**merged)


def load(path: str | os.PathLike) -> Detector:
    """Load any saved detector (the method is read from its config.json)."""
    return Detector.load(path)


def module_state(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict with ``prefix.`` in front of every key (for ``_state``)."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module_state(prefix: str, module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`module_state`; strict, so a mismatched file is an error."""
    sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"saved weights for {prefix!r} do not fit the network: {exc}") from None
