"""Scoring variants: score an already trained detector another way, without retraining.

A spec variant's ``scoring`` table is handed to the detector through the
method's own re-scoring API, so the bench holds no method code:

* ``set_scoring(val, **options)`` (NLN: ``nln``, ``error``, ``k``, ``alpha``;
  normalisation constants re-measured on the normal validation images); the
  previous values are restored afterwards, so variants do not leak into each other;
* ``rescored(train_features, scoring, **index_params)`` (CAE nearest-neighbour
  methods: ``nn-qed`` / ``nn-eed`` / ``re``, ``pq_m`` ...): a copy sharing the network.

A method with neither cannot have scoring variants: the error says to make the
study a separate entry with ``params`` instead.
"""
from __future__ import annotations

from typing import Any, Callable

from ..data.protocols import Split
from ..detector import Detector


def apply_scoring(det: Detector, split: Split, options: dict[str, Any]) -> tuple[Detector, Callable[[], None] | None]:
    """(detector scoring with ``options``, function undoing the change or None)."""
    if hasattr(det, "set_scoring"):
        before = {k: getattr(det, k) for k in options if hasattr(det, k)}
        det.set_scoring(split.val, **options)
        return det, lambda: det.set_scoring(split.val, **before)
    if hasattr(det, "rescored"):
        opts = dict(options)
        if "scoring" not in opts:
            raise ValueError(f"{det.name}: a scoring variant needs 'scoring' (e.g. \"nn-eed\"), got {sorted(opts)}")
        return det.rescored(det.embed(split.train), opts.pop("scoring"), **opts), None
    raise ValueError(f"method {det.name!r} cannot be re-scored without retraining (no set_scoring or rescored); "
                     "make this study a separate entry with 'params' instead of a scoring variant")
