"""Table 1 analogue of paper 004 (UNODE): every method x every data set available here, one-class AUROC,
with the mean and standard deviation across data sets, the paper's numbers beside ours.

Built only from the result files in ``benchmarks/results`` (one-class protocol);
nothing is typed by hand except the paper's Table 1 (``PAPER_TABLE1``, AUROC %).

* Rows: one per method. For each registered method the label with the widest
  coverage is used (most data sets, then most classes); the paper's columns
  map onto library labels through ``PAPER_COLUMNS``.
* Cells: ``ours (paper)`` in percent; ``*`` marks a record that covers only
  some classes (its mean is over those classes), ``n/10`` says how many.
* Mean / std: over the data sets of that row that we measured (population
  std, as the paper's last row: its DeepSVDD 71.4 / 13.6 is ``np.std``),
  beside the paper's mean / std over the *same* data sets and over all ten
  of its data sets.

``table1_markdown()`` returns the markdown (E16's report can call it);
``python benchmarks/table1.py [--results DIR] [--out FILE]`` prints or writes it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from noveltylab.bench.report import load_results  # noqa: E402

# Paper 004 Table 1 (AUROC %, one-class); columns in the paper's order.
PAPER_METHODS = ("DeepSVDD", "GT", "MHRot", "CSI", "UNODE (scratch)", "DN2", "MSAD", "PANDA", "FITYMI",
                 "FastFlow", "PatchCore", "ReContrast", "UNODE (pretrained)")
_PAPER_ROWS = {
    "CIFAR-10": (64.8, 86.0, 90.1, 94.3, 95.4, 92.5, 97.2, 96.2, 99.1, 66.7, 67.2, 84.1, 96.9),
    "CIFAR-100": (67.0, 78.7, 80.1, 89.6, 94.4, 89.3, 96.4, 94.1, 97.8, 64.2, 64.1, 84.0, 93.6),
    "MNIST": (94.8, 98.0, 98.9, 96.0, 97.4, 95.7, 96.0, 98.0, 75.2, 74.8, 83.2, 97.4, 99.0),
    "EMNIST-Letters": (94.1, 96.3, 97.4, 93.9, 98.4, 96.8, 95.7, 96.2, 86.5, 73.5, 81.0, 95.7, 98.1),
    "FashionMNIST": (84.8, 93.5, 93.2, 94.2, 94.2, 94.4, 94.2, 95.6, 79.9, 68.3, 77.4, 92.4, 93.4),
    "SVHN": (60.3, 87.5, 89.1, 96.0, 96.3, 56.2, 63.1, 57.4, 65.3, 56.2, 52.1, 65.6, 91.0),
    "MVTecAD": (67.0, 66.4, 65.8, 65.6, 95.3, 81.4, 87.2, 86.5, 50.8, 99.4, 99.6, 99.5, 95.9),
    "HeadCT": (62.5, 51.8, 54.3, 60.9, 89.6, 64.0, 59.4, 64.5, 70.1, 80.9, 75.5, 84.1, 84.7),
    "FGVC": (54.6, 64.9, 63.7, 64.4, 80.2, 79.5, 79.8, 77.7, 88.7, 56.3, 58.5, 65.5, 82.9),
    "ISIC2018": (64.1, 68.4, 70.6, 71.4, 83.6, 76.7, 78.9, 74.5, 82.8, 81.6, 78.9, 90.1, 86.1),
}
PAPER_TABLE1: dict[str, dict[str, float]] = {
    m: {ds: row[i] for ds, row in _PAPER_ROWS.items()} for i, m in enumerate(PAPER_METHODS)}

# library data set name -> the paper's row name (our CIFAR-10 is the JPEG copy of the original)
DATASETS = {"cifar10-jpeg": "CIFAR-10", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "mnist": "MNIST",
            "emnist-letters": "EMNIST-Letters", "fashion-mnist": "FashionMNIST", "svhn": "SVHN",
            "mvtec": "MVTecAD", "headct": "HeadCT", "head-ct": "HeadCT", "fgvc": "FGVC", "isic2018": "ISIC2018"}
# paper column -> library labels to try, in order of preference
PAPER_COLUMNS = {"DeepSVDD": ("deep-svdd",), "GT": ("gt",), "MHRot": ("mhrot",), "UNODE (scratch)": ("unode",),
                 "DN2": ("dn2-mnv2", "dn2"), "MSAD": ("msad",), "PANDA": ("panda",),
                 "FITYMI": ("fitymi-mnv2", "fitymi"), "PatchCore": ("patchcore",),
                 "UNODE (pretrained)": ("unode-mobilenet",)}


def _paper_dataset(name: str) -> str | None:
    """The paper's row for a library data set name; None for generated sets (e.g. a synthetic
    MVTec-layout tree is not MVTec-AD, so no paper number is put beside it)."""
    if "synthetic" in name.lower():
        return None
    base = name.split(":")[0].lower()
    return DATASETS.get(base) or DATASETS.get(base.split("-jpeg")[0])


def _pick(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Among records of one label and data set: complete over subset, more classes, the full test set
    over a subsampled one, then newest."""
    return max(records, key=lambda r: (not r.get("subset"), len(r.get("per_task", [])),
                                       not (r.get("protocol_options") or {}).get("test_every"), r.get("date", "")))


def collect(results_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``label -> data set -> record`` for one-class records without extra protocol options."""
    records, _ = load_results(results_dir)
    by: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        opts = {k: v for k, v in (r.get("protocol_options") or {}).items() if k not in ("max_train", "test_every")}
        if r.get("protocol") != "one-class" or opts or not r.get("mean", {}).get("auroc"):
            continue
        if any(isinstance(t.get("task"), list) for t in r.get("per_task", [])):
            continue  # several normal classes at once: not Table 1's setting
        by.setdefault(r["label"], {}).setdefault(r["dataset"], []).append(r)
    return {lab: {ds: _pick(rs) for ds, rs in d.items()} for lab, d in by.items()}


def _coverage(d: dict[str, dict[str, Any]]) -> tuple[int, int]:
    return len(d), sum(len(r.get("per_task", [])) for r in d.values())


def choose_rows(found: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, str | None]]:
    """(row name, label, paper column) per method: the paper's methods first, then the library's others."""
    rows: list[tuple[str, str, str | None]] = []
    used_methods: set[str] = set()
    for col, labels in PAPER_COLUMNS.items():
        lab = next((lab for lab in labels if lab in found), None)
        if lab is not None:
            rows.append((col, lab, col))
            used_methods.add(next(iter(found[lab].values()))["method"] + ("-pretrained" if "mobilenet" in lab
                                                                           else ""))
    by_method: dict[str, list[str]] = {}
    for lab, d in found.items():
        method = next(iter(d.values()))["method"]
        if method in used_methods or any(lab == r[1] for r in rows):
            continue
        by_method.setdefault(method, []).append(lab)
    for method in sorted(by_method):
        lab = max(by_method[method], key=lambda x: (_coverage(found[x]), -len(x)))
        rows.append((method, lab, None))
    return rows


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def table1_markdown(results_dir: str | Path = ROOT / "benchmarks" / "results") -> str:
    """The Table 1 analogue as markdown (see the module docstring)."""
    found = collect(results_dir)
    rows = choose_rows(found)
    datasets = sorted({ds for _, lab, _ in rows for ds in found[lab]},
                      key=lambda ds: list(_PAPER_ROWS).index(_paper_dataset(ds))
                      if _paper_dataset(ds) in _PAPER_ROWS else 99)
    head = ["method", "label"] + [f"{_paper_dataset(ds) or ds}" for ds in datasets] + [
        "mean ± std (ours)", "paper, same data sets", "paper, all 10"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, lab, col in rows:
        cells, ours, theirs = [], [], []
        for ds in datasets:
            r = found[lab].get(ds)
            paper = PAPER_TABLE1.get(col, {}).get(_paper_dataset(ds) or "") if col else None
            if r is None:
                cells.append("" if paper is None else f"- ({_fmt(paper)})")
                continue
            v = 100 * r["mean"]["auroc"]
            n = len(r.get("per_task", []))
            mark = f"* {n}/10" if r.get("subset") else ""
            every = (r.get("protocol_options") or {}).get("test_every")
            mark += f" †{every}" if every else ""
            mark += " ᵖ" if r.get("profile") == "paper" else ""
            ours.append(v)
            if paper is not None:
                theirs.append(paper)
            cells.append(f"{_fmt(v)}{mark}" + (f" ({_fmt(paper)})" if paper is not None else ""))
        mean = f"{np.mean(ours):.1f} ± {np.std(ours):.1f}" if ours else ""
        same = f"{np.mean(theirs):.1f} ± {np.std(theirs):.1f}" if col and len(theirs) == len(ours) and ours else ""
        allp = list(PAPER_TABLE1[col].values()) if col else []
        full = f"{np.mean(allp):.1f} ± {np.std(allp):.1f}" if allp else ""
        out.append(f"| {name} | `{lab}` | " + " | ".join(cells) + f" | {mean} | {same} | {full} |")
    missing = [c for c in PAPER_COLUMNS if c not in {r[2] for r in rows}] + ["CSI", "FastFlow", "ReContrast"]
    notes = [
        "",
        "Cells: our mean one-class AUROC (%) over the classes run, the paper's Table 1 number in brackets "
        "where the setting matches (same data set, one-class, all classes). `*` n/10: only n classes were "
        "run. `†n`: every n-th test image only. `ᵖ`: the method's `paper` profile. Otherwise our runs use each method's `cpu` profile (small backbones / input sizes, capped training sets; "
        "see the method READMEs and each result file's command), the paper uses full schedules and "
        "WideResNet-50-2 / ResNet-152 / ViT backbones, so gaps are expected. Mean ± std: over the data sets "
        "of the row that we measured (population std, as the paper); 'paper, same data sets' uses the "
        "paper's numbers for exactly those data sets.",
        "Paper columns without a row here (no result file or no implementation): " + ", ".join(missing) + ".",
    ]
    return "\n".join(out + notes) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--out", default=None, help="write the markdown here instead of printing it")
    args = ap.parse_args()
    text = table1_markdown(args.results)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
