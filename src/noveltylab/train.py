"""The one training loop every neural method uses.

It owns what is the same for every method: seeding and shuffling, moving
batches to the device, train/eval modes, a progress bar, per-epoch loss
logging, optional validation loss, a per-epoch hook (learning-rate
schedules) and checkpoints of the weights. What differs between methods -
the forward pass, the losses, which optimizers step - lives in the ``step``
callable the method passes in.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .detector import resolve_device, seed_everything
from .progress import bar as progress_bar
from .progress import progress_enabled

log = logging.getLogger("noveltylab.train")

Batch = tuple[torch.Tensor, ...]
StepFn = Callable[[Batch], Mapping[str, float | torch.Tensor]]


@dataclass
class History:
    """Per-epoch mean losses (and validation losses, prefixed ``val_``)."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def last(self, key: str) -> float:
        return self.epochs[-1][key]


def _progress_enabled(progress: bool | None) -> bool:
    return progress_enabled(progress)


def _as_batch(data: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError("all training tensors must have the same first dimension")
    if n == 0:
        raise ValueError("no training data")
    return tensors


def train_loop(
    step: StepFn,
    data: torch.Tensor | Sequence[torch.Tensor],
    *,
    modules: Mapping[str, nn.Module],
    epochs: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    val_data: torch.Tensor | Sequence[torch.Tensor] | None = None,
    val_step: StepFn | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    drop_last: bool = False,
    progress: bool | None = None,
    desc: str = "train",
    channels_last: bool = False,
) -> History:
    """Run ``epochs`` passes over ``data`` in shuffled mini-batches.

    ``step(batch)`` does forward, backward and optimizer steps for one batch
    and returns its losses; ``val_step(batch)`` returns losses without
    updating (run under ``torch.no_grad`` with modules in eval mode).
    ``modules`` are switched between train/eval and written to
    ``checkpoint_dir/epoch_XXXX.safetensors`` every ``checkpoint_every``
    epochs (and ``last.safetensors`` at the end) when a folder is given.

    Losses are summed on the device (float64) and read back once per epoch, so a
    step costs no host-device synchronisation; a non-finite loss is reported at
    the end of its epoch. ``channels_last=True`` trains the modules and the 4-D
    batches in channels-last memory format (faster convolutions, pooling and
    batch norm on CPU; same maths, float rounding may differ) and returns the
    modules in the default format.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    tensors = _as_batch(data)
    n = tensors[0].shape[0]
    val = _as_batch(val_data) if val_data is not None else None
    gen = torch.Generator().manual_seed(seed)
    seed_everything(seed)
    history = History()
    steps_per_epoch = (n // batch_size) if drop_last and n >= batch_size else math.ceil(n / batch_size)
    show = _progress_enabled(progress)
    bar = progress_bar(epochs * steps_per_epoch, desc, unit="batch", progress=progress)
    fmt = torch.channels_last if channels_last else None
    if fmt is not None:
        _set_memory_format(modules, fmt)
    try:
        for epoch in range(epochs):
            for m in modules.values():
                m.train()
            order = torch.randperm(n, generator=gen)
            sums: dict[str, float | torch.Tensor] = {}
            count = 0
            for b in range(steps_per_epoch):
                idx = order[b * batch_size:(b + 1) * batch_size]
                batch = tuple(_to_device(t[idx], dev, fmt) for t in tensors)
                losses = step(batch)
                for k, v in losses.items():
                    # float64 on the device: the same sum as float(v) * n on the host, without a sync
                    fv = v.detach().to(torch.float64) if isinstance(v, torch.Tensor) else float(v)
                    sums[k] = sums.get(k, 0.0) + fv * len(idx)
                count += len(idx)
                bar.update(1)
            logs = {k: v / max(count, 1) for k, v in _read_sums(sums, desc, epoch).items()}
            if val is not None and val_step is not None:
                logs.update({f"val_{k}": v for k, v in evaluate(val_step, val, modules=modules,
                                                                 batch_size=batch_size, device=dev).items()})
            history.epochs.append(logs)
            if show:
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:3]})
            log.info("%s epoch %d/%d %s", desc, epoch + 1, epochs,
                     " ".join(f"{k}={v:.5g}" for k, v in logs.items()))
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
            if checkpoint_dir and checkpoint_every and (epoch + 1) % checkpoint_every == 0:
                save_checkpoint(modules, Path(checkpoint_dir) / f"epoch_{epoch + 1:04d}.safetensors")
    finally:
        bar.close()
        if fmt is not None:
            _set_memory_format(modules, torch.contiguous_format)
    for m in modules.values():
        m.eval()
    if checkpoint_dir:
        save_checkpoint(modules, Path(checkpoint_dir) / "last.safetensors")
    return history


def _set_memory_format(modules: Mapping[str, nn.Module], fmt: torch.memory_format) -> None:
    """Re-lay the 4-D parameters and buffers of ``modules`` in place (values unchanged)."""
    for m in modules.values():
        m.to(memory_format=fmt)


def _to_device(t: torch.Tensor, dev: torch.device, fmt: torch.memory_format | None) -> torch.Tensor:
    """One batch tensor on ``dev``; 4-D tensors in ``fmt`` when one is given."""
    t = t.to(dev, non_blocking=True)
    return t.contiguous(memory_format=fmt) if fmt is not None and t.ndim == 4 else t


def _read_sums(sums: Mapping[str, float | torch.Tensor], desc: str, epoch: int) -> dict[str, float]:
    """An epoch's loss sums as floats (one read-back per loss); a non-finite sum is an error."""
    out = {k: float(v) for k, v in sums.items()}
    for k, v in out.items():
        if not math.isfinite(v):
            raise FloatingPointError(f"{desc}: loss {k!r} became {v} in epoch {epoch + 1}; "
                                     "lower the learning rate or check the input scaling")
    return out


def evaluate(step: StepFn, data: torch.Tensor | Sequence[torch.Tensor], *, modules: Mapping[str, nn.Module],
             batch_size: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean losses of ``step`` over ``data`` in eval mode without gradients."""
    dev = resolve_device(device)
    tensors = _as_batch(data)
    n = tensors[0].shape[0]
    modes = {k: m.training for k, m in modules.items()}
    for m in modules.values():
        m.eval()
    sums: dict[str, float] = {}
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = tuple(t[i:i + batch_size].to(dev) for t in tensors)
            for k, v in step(batch).items():
                sums[k] = sums.get(k, 0.0) + float(v) * batch[0].shape[0]
    for k, m in modules.items():
        m.train(modes[k])
    return {k: v / n for k, v in sums.items()}


def save_checkpoint(modules: Mapping[str, nn.Module], path: str | os.PathLike) -> None:
    """Weights of all ``modules`` in one safetensors file (keys ``name.param``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
             for k, v in m.state_dict().items()}
    save_file(state, str(path))


def load_checkpoint(modules: Mapping[str, nn.Module], path: str | os.PathLike) -> None:
    """Load a file written by :func:`save_checkpoint` (strict key match)."""
    from safetensors.torch import load_file

    from .detector import load_module_state

    state = load_file(str(path))
    for name, m in modules.items():
        load_module_state(name, m, state)


def _resize_side(fn: Callable) -> int | None:
    """The ``input_size`` a feature extractor resizes its input to (``fn`` a bound method of a module
    with that attribute, or of a wrapper whose ``net`` has it), else None."""
    owner = getattr(fn, "__self__", fn)
    for obj in (owner, getattr(owner, "net", None)):
        v = getattr(obj, "input_size", None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


@torch.no_grad()
def map_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, batch_size: int = 256,
                device: torch.device | str = "cpu", desc: str = "features",
                progress: bool | None = None) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in batches on ``device`` and concatenate the results on the CPU.

    The batch is capped by image size (:func:`noveltylab.preprocess.batch_size_for`), so a
    224-px run does not hold hundreds of full-size activations at once; progress is shown
    when there is more than one batch (see :mod:`noveltylab.progress`)."""
    from .preprocess import batch_size_for

    dev = resolve_device(device)
    if x.ndim == 4:
        side = _resize_side(fn)  # a backbone that resizes inside (input_size) costs at that size
        shape = (max(3, x.shape[1]), side, side) if side and side > max(x.shape[-2:]) else x.shape[1:]
        batch_size = batch_size_for(shape, batch_size)
    n_batches = -(-x.shape[0] // batch_size)
    bar = progress_bar(x.shape[0], desc, unit="img", progress=progress if n_batches > 1 else False)
    outs = []
    try:
        for i in range(0, x.shape[0], batch_size):
            outs.append(fn(x[i:i + batch_size].to(dev)).detach().cpu())
            bar.update(outs[-1].shape[0])
    finally:
        bar.close()
    return torch.cat(outs)
