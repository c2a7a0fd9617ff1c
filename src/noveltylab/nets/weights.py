"""Where pretrained weight files are found: an explicit path, ``$NOVELTYLAB_WEIGHTS_DIR``,
or ``../shared/weights`` beside the repository. Shared by methods and protocols."""
from __future__ import annotations

import os
from pathlib import Path

_DEFAULT_FILES = {"mobilenet_v2": Path("mobilenet_v2_imagenet") / "mobilenet_v2_imagenet.safetensors"}


def default_weights_dir() -> Path | None:
    """``$NOVELTYLAB_WEIGHTS_DIR``, else ``../shared/weights`` beside the repository or the cwd."""
    env = os.environ.get("NOVELTYLAB_WEIGHTS_DIR")
    if env:
        return Path(env)
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        cand = base.parent / "shared" / "weights"
        if cand.is_dir():
            return cand
    return None


def resolve_weights(backbone: str, weights: str | None) -> str | None:
    """Turn ``weights`` ("auto", a path, or None) into a file path or None (random init)."""
    if weights is None or weights == "none":
        return None
    if weights == "auto":
        rel = _DEFAULT_FILES.get(backbone)
        wdir = default_weights_dir()
        if rel is None:
            raise ValueError(f"backbone {backbone!r} has no default weights file; pass weights=<path to a "
                             "timm-named .safetensors> or weights=None (random init, tests only)")
        if wdir is None or not (wdir / rel).is_file():
            raise FileNotFoundError(
                f"default {backbone} weights not found (looked for {rel} under $NOVELTYLAB_WEIGHTS_DIR or "
                "../shared/weights); pass weights=<path> or weights=None for random initialisation")
        return str(wdir / rel)
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    return str(weights)
