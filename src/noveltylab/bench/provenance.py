"""Where a figure came from: the commit of the code that ran, the machine, device, threads, command.

The commit is read from the git checkout holding the imported ``noveltylab``
package (not the current directory), so a run from a clean clone records that
clone's commit. A tree with uncommitted changes to tracked files is *dirty*:
the bench refuses to run there unless told (``--allow-dirty``), and the record
then says so (``+dirty`` in its commit, ``allow_dirty: true``).
"""
from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parents[1]


class DirtyTreeError(RuntimeError):
    """The code to be benchmarked differs from its commit."""


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd, timeout=20).stdout.rstrip()


def git_commit(cwd: str | Path | None = None) -> str:
    """Short commit hash of the checkout holding the code (``cwd``, default: the package's checkout),
    with ``+dirty`` when tracked files differ from it; ``unknown`` outside a git checkout."""
    where = Path(cwd) if cwd is not None else PACKAGE_DIR
    try:
        head = _git(["rev-parse", "--short", "HEAD"], where).strip()
        dirty = _git(["status", "--porcelain", "--untracked-files=no"], where) if head else ""
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def dirty_files(cwd: str | Path | None = None) -> list[str]:
    """Tracked files with uncommitted changes in the code's checkout (empty when clean or not in git)."""
    where = Path(cwd) if cwd is not None else PACKAGE_DIR
    try:
        out = _git(["status", "--porcelain", "--untracked-files=no"], where)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def require_clean(allow_dirty: bool, cwd: str | Path | None = None) -> str:
    """The commit to record; raise :class:`DirtyTreeError` on a dirty tree unless ``allow_dirty``."""
    commit = git_commit(cwd)
    if commit.endswith("+dirty") and not allow_dirty:
        files = dirty_files(cwd)
        shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
        raise DirtyTreeError(
            f"refusing to benchmark a dirty tree (commit {commit}; uncommitted changes in {shown}): commit "
            "first, run from a clean clone, or pass --allow-dirty (recorded in every result)")
    return commit


def current_command() -> str:
    """The command line that started this process, shell-quoted."""
    prog = Path(sys.argv[0]).name
    prog = "noveltylab" if prog in ("noveltylab", "__main__.py", "cli.py") else f"python {sys.argv[0]}"
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's), or ''.

    Recorded because float results of the same seed can differ between CPU models (other SIMD kernels),
    and a network trained for many steps can then end in a different place."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine(device: torch.device | None = None) -> str:
    """CPU architecture, model and cores, plus the GPU's name when one was used (training seconds, and
    the last digits of trained results, are only comparable between records of the same machine)."""
    model = cpu_model()
    text = f"{platform.machine()}{f' ({model})' if model else ''} {os.cpu_count()} cpus"
    if device is not None and device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def host() -> str:
    """Host name of the process (a part file says which node of a cluster ran it)."""
    return socket.gethostname()
