"""Freezing parts of a pretrained network for fine-tuning.

A frozen stage must keep both its weights *and* its BatchNorm running statistics:
``requires_grad_(False)`` alone still lets BatchNorm layers in train mode normalise
with batch statistics and overwrite their running means. :func:`freeze` pins the
module in eval mode, whatever ``train()`` the training loop later calls on its
parents.
"""
from __future__ import annotations

import types

from torch import nn


def _always_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients and eval mode (BatchNorm statistics fixed) for ``module``, permanently."""
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():  # every submodule: parents may reach them by another path
        m.train = types.MethodType(_always_eval, m)  # type: ignore[method-assign]
        nn.Module.train(m, False)
    return module


def is_frozen(module: nn.Module) -> bool:
    """Whether :func:`freeze` pinned this module."""
    return getattr(module.train, "__func__", None) is _always_eval
