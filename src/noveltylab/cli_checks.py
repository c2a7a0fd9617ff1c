"""The command line's one place for user errors: argument checks before any work, and the mapping
of every user error to one line on stderr and exit status 2.

:func:`check_args` looks at the parsed arguments of any sub-command by their
names (``batch_size``, ``threads``, ``fpr``, ``device``, ``output``, ...), so a
new sub-command that uses those names is checked without extra code.
:func:`run_command` runs a sub-command and turns the exceptions that mean
"bad input" into ``error: <message>`` (exit 2); anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr (exit 2), with a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USER_ERROR)


class ArgumentError(ValueError):
    """A command-line argument with a value that cannot work."""


def _positive(args: argparse.Namespace, name: str, flag: str, allow_none: bool = True) -> None:
    v = getattr(args, name, None)
    if v is None and allow_none:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ArgumentError(f"{flag} must be a positive integer, got {v}")


def _model_folder_target(args: argparse.Namespace) -> None:
    """``fit -o``: a folder that can be created and, without ``--overwrite``, holds no other model."""
    from .detector import FORMAT
    from .safeio import check_output_dir
    from .validation import parse_model_config

    out = check_output_dir(args.output)
    cfile, wfile = out / "config.json", out / "weights.safetensors"
    if getattr(args, "overwrite", False) or not (cfile.exists() or wfile.exists()):
        return
    try:
        old = parse_model_config(cfile.read_text())
    except (ValueError, OSError):
        old = {}
    method = getattr(args, "method", None)
    if old.get("format") == FORMAT and method is not None and old.get("method") == method:
        return
    held = (f"a saved {old['method']!r} model" if old.get("format") == FORMAT and isinstance(old.get("method"), str)
            else "a config.json or weights file that is not a model of this method")
    raise ArgumentError(f"-o {out} already holds {held}; choose another folder or pass --overwrite")


def check_args(args: argparse.Namespace) -> None:
    """Validate the arguments of any sub-command before it does any work (ArgumentError / ValueError)."""
    from .safeio import check_output_file
    from .validation import check_device, check_fpr, check_int, SEED_MAX

    cmd = getattr(args, "command", None)
    for name, flag in (("batch_size", "--batch-size"), ("threads", "--threads"), ("max_train", "--max-train"),
                       ("top_k", "--top-k"), ("max_bytes", "--max-bytes"), ("jobs", "--jobs"),
                       ("num_cpus", "--num-cpus"), ("size", "--size")):
        if hasattr(args, name):
            _positive(args, name, flag)
    if isinstance(getattr(args, "retries", None), int) and args.retries < 0:
        raise ArgumentError(f"--retries must be >= 0, got {args.retries}")
    if getattr(args, "port", None) is not None and not 0 < args.port < 65536:
        raise ArgumentError(f"--port must be in 1..65535, got {args.port}")
    if getattr(args, "seed", None) is not None:
        check_int("--seed", args.seed, 0, SEED_MAX)
    if getattr(args, "seeds", None):
        for s in args.seeds:
            check_int("--seeds", s, 0, SEED_MAX)
    if getattr(args, "fpr", None) is not None:
        try:
            check_fpr(args.fpr)
        except (TypeError, ValueError):
            raise ArgumentError(f"--fpr must be a number in (0, 1), got {args.fpr}") from None
    device = getattr(args, "device", None)
    if device is not None:
        check_device(device)
        from .detector import resolve_device

        resolve_device(device)  # e.g. cuda requested without a GPU
    if cmd == "fit":
        data = str(getattr(args, "data", "") or "")
        if ":" not in data and ("/" in data or data.startswith(".")) and not Path(data).exists():
            raise ArgumentError(f"--data {data}: no such folder (give a folder of normal images or a data set "
                                "name; see `noveltylab datasets`)")
        _model_folder_target(args)
    elif cmd in ("score",) and getattr(args, "output", "-") not in (None, "-"):
        check_output_file(args.output)
    elif cmd == "report":
        results = Path(args.results_dir)
        if not results.is_dir():
            raise ArgumentError(f"results folder {results} does not exist")
        if not any(results.rglob("*.json")):
            raise ArgumentError(f"results folder {results} holds no result files (*.json)")
        if getattr(args, "output", None):
            check_output_file(args.output)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (files, arguments, data), not a bug."""
    from .data.sources import DatasetNotFoundError
    from .detector import ModelFileError, NotFittedError
    from .images import ImageError

    return (DatasetNotFoundError, ModelFileError, NotFittedError, ImageError, KeyError, ValueError, TypeError,
            OSError, MemoryError)


def run_command(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    """Check ``args``, run ``func``; user errors -> ``error: <one line>`` on stderr and exit status 2."""
    try:
        check_args(args)
        return int(func(args) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # raise SystemExit("error: ...") in a command
            msg = exc.code[len("error: "):] if exc.code.startswith("error: ") else exc.code
            return _fail(msg)
        raise
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except user_error_types() as exc:
        if isinstance(exc, KeyError) and exc.args:
            return _fail(str(exc.args[0]))
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            return _fail(f"{exc.strerror}: {exc.filename}")
        if isinstance(exc, MemoryError):
            return _fail("out of memory; use fewer or smaller images, or a smaller --batch-size")
        return _fail(str(exc) or type(exc).__name__)


def _fail(msg: str, status: int = EXIT_USER_ERROR) -> int:
    line = " ".join(str(msg).split())  # one line, whatever the message held
    print(f"error: {line}", file=sys.stderr)
    return status
