"""README table of a side-by-side comparison record (``kind = "comparison"``, e.g. the anomalib one).

Such a record (written by ``benchmarks/anomalib_side_by_side.py``) holds per task one entry per row
(library + method + setting) with image AUROC and, on MVTec-layout sets, pixel AUROC / PRO / IoU, and
the seconds each took. The table shows, per data set, the mean (± standard deviation over tasks: classes
or seeds) of each metric and the mean seconds per task.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METRICS = (("auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pro", "PRO"), ("iou_youden", "IoU"))


def load_comparison(path: str | Path) -> dict[str, Any]:
    """A comparison record; a clear error when the file is missing or is another kind of record."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"comparison record {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "comparison" or not isinstance(data.get("tasks"), list):
        raise ValueError(f"{path} is not a comparison record (kind 'comparison' with a 'tasks' list)")
    return data


def _cell(values: list[float]) -> str:
    """Mean in % (two decimals: the libraries differ in the second), with the standard deviation over tasks (classes or seeds) when there are several."""
    v = 100 * np.asarray(values, dtype=float)
    return f"{v.mean():.2f}" + (f" ± {v.std():.2f}" if len(v) > 1 else "")


def _task_name(t: dict[str, Any]) -> str:
    return f"{t['task']} seed {t['seed']}" if "seed" in t else str(t["task"])


def comparison_markdown(data: dict[str, Any]) -> str:
    """Per data set: one row per compared setting with mean metrics (in %) and mean seconds per task."""
    out: list[str] = []
    for ds in sorted({t["dataset"] for t in data["tasks"]}):
        tasks = [t for t in data["tasks"] if t["dataset"] == ds]
        rows = list(tasks[0]["rows"])
        shown = [(k, name) for k, name in METRICS if all(k in t["rows"][r] for t in tasks for r in rows)]
        out += [f"**{ds}** ({len(tasks)} task{'s' if len(tasks) != 1 else ''}: "
                f"{', '.join(_task_name(t) for t in tasks)})", "",
                "| setting | " + " | ".join(n for _, n in shown) + " | seconds per task |",
                "|---|" + "---|" * (len(shown) + 1)]
        for r in rows:
            cells = [_cell([t["rows"][r][k] for t in tasks]) for k, _ in shown]
            secs = np.mean([t["rows"][r].get("seconds", np.nan) for t in tasks])
            out.append(f"| {r} | " + " | ".join(cells) + f" | {secs:.0f} |")
        out.append("")
    peer = data.get("peer", {})
    out.append(f"Record: commit {data.get('commit', '?')}, {data.get('threads', '?')} thread(s), "
               f"{data.get('machine', '?')}; peer: " + ", ".join(f"{k} {v}" for k, v in peer.items())
               + f". Command: `{data.get('command', '')}`")
    return "\n".join(out)
