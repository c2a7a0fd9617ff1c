"""Progress for long work (fit, score, maps, feature extraction, loading), in terminals and logs.

One switch for the whole library: a bar (tqdm) when standard error is a
terminal; with ``NOVELTYLAB_PROGRESS=1`` plain log lines (``noveltylab``
logger, at most one every few seconds and at the end) so that batch jobs
writing to files show how far they are; ``NOVELTYLAB_PROGRESS=0`` silences
both. An explicit ``progress=True/False`` argument wins over the environment.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

log = logging.getLogger("noveltylab.progress")
T = TypeVar("T")
LOG_EVERY_S = 5.0


def _env() -> str:
    return os.environ.get("NOVELTYLAB_PROGRESS", "").strip().lower()


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show progress: the explicit argument, else ``NOVELTYLAB_PROGRESS``, else a terminal."""
    if progress is not None:
        return progress
    env = _env()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


class _LogBar:
    """A tqdm-like counter that writes ``desc: n/total (p %) t s`` lines to the log and stderr."""

    def __init__(self, total: int | None, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.t0 = self.last = time.monotonic()

    def _emit(self, final: bool = False) -> None:
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        tot = f"/{self.total}" if self.total else ""
        msg = f"{self.desc}: {self.n}{tot} {self.unit}{pct}, {time.monotonic() - self.t0:.1f} s" + \
              (" done" if final else "")
        if log.hasHandlers() and logging.getLogger().level <= logging.INFO:
            log.info(msg)
        else:
            print(msg, file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S:
            self.last = now
            self._emit()

    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        if self.n:
            self._emit(final=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int | None, desc: str, unit: str = "it", progress: bool | None = None) -> Any:
    """A progress counter with ``update(n)``, ``set_postfix(...)`` and ``close()``."""
    if not progress_enabled(progress):
        return _NoBar()
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False)
    return _LogBar(total, desc, unit)


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
          progress: bool | None = None) -> Iterator[T]:
    """Iterate ``items`` while showing progress."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    b = bar(total, desc, unit, progress)
    try:
        for it in items:
            yield it
            b.update(1)
    finally:
        b.close()
