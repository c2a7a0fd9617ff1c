"""Helpers for the issue-17 hardening tests: forge a saved model the way an attacker or a bad
tool would (config edited and every checksum recomputed, since unkeyed hashes cannot stop that)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch


def forge(model_dir: Path, edit_config: Callable[[dict], None] | None = None,
          edit_state: Callable[[dict[str, torch.Tensor]], None] | None = None) -> None:
    """Rewrite ``model_dir`` with an edited config and/or tensors and consistent checksums."""
    from safetensors.torch import load_file, save_file

    from noveltylab.detector import _config_hash, _sha256

    cfile, wfile = model_dir / "config.json", model_dir / "weights.safetensors"
    config = json.loads(cfile.read_text())
    state = dict(load_file(str(wfile)))
    if edit_config:
        edit_config(config)
    if edit_state:
        edit_state(state)
    config.pop("weights_sha256", None)
    save_file(state, str(wfile), metadata={"config_sha256": _config_hash(config)})
    config["weights_sha256"] = _sha256(wfile)
    cfile.write_text(json.dumps(config))
