"""Atomic file writes and output-path checks shared by ``Detector.save`` and the command line.

A file is written to a temporary name in its target folder and renamed over
the target only when complete, so a failed or interrupted run never leaves a
partial CSV or half a model behind.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


class OutputPathError(ValueError):
    """An output path that cannot be written: below a regular file, in a missing folder, a folder."""


def check_output_file(path: str | os.PathLike, make_parents: bool = False) -> Path:
    """``path`` as a writable file target, or an :class:`OutputPathError` naming the problem."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"output {path} is a folder; give a file name")
    parent = path.parent
    for anc in [parent, *parent.parents]:
        if anc.exists() and not anc.is_dir():
            raise OutputPathError(f"cannot write {path}: {anc} is a file, not a folder")
    if not parent.is_dir():
        if not make_parents:
            raise OutputPathError(f"cannot write {path}: folder {parent} does not exist")
        parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write {path}: folder {parent} is not writable")
    return path


def check_output_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder that exists or can be created, or an :class:`OutputPathError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"cannot write folder {path}: a file of that name exists")
    for anc in path.parents:
        if anc.exists() and not anc.is_dir():
            raise OutputPathError(f"cannot write folder {path}: {anc} is a file, not a folder")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed to ``path`` when the block ends without error,
    removed otherwise."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open`` for writing through :func:`atomic_path`: the target appears only when complete."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
