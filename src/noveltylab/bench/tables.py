"""Tables in README files generated from the result records (never typed by hand).

A README marks a table with a start marker that says what to show, and an end marker::

    <!-- table:unode:start labels="unode*" protocols="one-class near-nd" -->
    ...generated...
    <!-- table:unode:end -->

``labels`` are shell-style label patterns (default ``*``), ``protocols`` an
optional filter, ``kind`` the table: ``records`` (default: one row per record
with paper number, extra AUROCs, cost and per-class AUROCs), ``nln`` (NLN vs
plain scoring of the same models, and the studies), ``headline`` (one row per
paper and method: the widest record with a paper number), ``table2`` (paper 003
Tables 2/3 per class with win counts, ``table2.py``), ``nln-gain`` (paper 000
Tables 1/2, % gain from NLN per family, ``nln_gain.py``), ``nln-alpha`` (paper 000 Fig. 6 analogue:
metrics over alpha, ``nln_gain.py``), ``comparison`` (a side-by-side record named by ``file``,
``comparison.py``). ``noveltylab report``
rewrites every marked table under the project's README.md and method READMEs.
"""
from __future__ import annotations

import fnmatch
import functools
import re
import shlex
from pathlib import Path
from typing import Any

from ..detector import create
from .report import _paper_ref, analogue_reasons, paper_numbers, paper_value

START = re.compile(r"<!-- table:(?P<name>[\w-]+):start(?P<attrs>[^>]*?)-->")
EXTRA_SKIP = {"auroc", "aupr", "f1", "f1_max", "fpr95"}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _select(records: list[dict[str, Any]], labels: list[str], protocols: list[str]) -> list[dict[str, Any]]:
    rows = [r for r in records if any(fnmatch.fnmatch(r["label"], p) for p in labels)
            and (not protocols or r["protocol"] in protocols)]
    return sorted(rows, key=lambda r: (r["dataset"], r["protocol"], r["label"], str(r.get("profile"))))


def records_table(records: list[dict[str, Any]]) -> str:
    """One row per record: setting, AUROC beside the paper's, F1, extra AUROCs, cost, per-task AUROCs."""
    refs = paper_numbers()
    out = ["| data set | protocol | label | profile | tasks | max train | AUROC | paper | F1 | F1-max | other AUROCs "
           "| train s/task | score img/s | per task |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        m = r.get("mean", {})
        ref = _paper_ref(refs, r)
        extra = ", ".join(f"{k.replace('auroc_', '').replace('_auroc', '')} {_pct(v)}" for k, v in sorted(m.items())
                          if "auroc" in k and k not in EXTRA_SKIP and not k.endswith(("_std_tasks", "_std_seeds")))
        per = ", ".join(f"{e['name']}: {_pct(e['mean']['auroc'])}" for e in r["per_task"] if "mean" in e)
        tasks = f"{len(r['tasks'])}{' (subset)' if r.get('subset') else ''}"
        opts = r.get("protocol_options") or {}
        proto = r["protocol"] + "".join(f" {k}={v}" for k, v in sorted(opts.items()) if k != "max_train")
        out.append(f"| {r['dataset']} | {proto} | {r['label']} | {r.get('profile')} | {tasks} "
                   f"| {opts.get('max_train') or 'all'} | {_pct(m.get('auroc'))} | {ref['value'] if ref else ''} "
                   f"| {_pct(m.get('f1'))} | {_pct(m.get('f1_max'))} | {extra} "
                   f"| {r.get('train_seconds_per_task') or 0:.0f} | {r.get('score_images_per_s') or 0:.0f} | {per} |")
    return "\n".join(out)


def _task_key(r: dict[str, Any]) -> str:
    return ",".join(sorted(r["tasks"]))


NLN_ROW = re.compile(r"nln-(ae|aae|vae|aeres|aecon)(?:(?:-t\d-[a-z0-9-]+)?-full)?")


def nln_family(label: str) -> str | None:
    """The NLN family of a main row: ``nln-<family>``, or a full-training-set run ``nln-<family>-full`` /
    ``nln-<family>-t<N>-<data>-full`` (a published setting); None for variants and other labels."""
    m = NLN_ROW.fullmatch(label)
    return m.group(1) if m else None


def nln_setting(r: dict[str, Any]) -> tuple:
    return (r["dataset"], r["protocol"], str(r.get("profile")), _task_key(r),
            tuple(sorted((r.get("protocol_options") or {}).items())))


def plain_partners(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """``(label, setting) -> plain record``: the same trained models scored without NLN, found as
    ``<label>-plain`` or as the ``-plain`` variant ``derived_from`` the label (e.g. the full-set AE-con
    row ``nln-aecon-t3-mnist-full`` and its ``nln-aecon-full-plain``)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r["label"].endswith("-plain"):
            out[(r["label"][:-len("-plain")],) + nln_setting(r)] = r
    for r in records:
        if r["label"].endswith("-plain") and r.get("derived_from"):
            out.setdefault((r["derived_from"],) + nln_setting(r), r)
    return out


def train_cap(r: dict[str, Any]) -> str:
    """The training-set cap of a record, as a table cell ("all" for the full training set)."""
    cap = (r.get("protocol_options") or {}).get("max_train")
    return "all" if cap is None else str(cap)


def nln_table(records: list[dict[str, Any]]) -> str:
    """NLN AUROC beside the plain score of the same trained models (:func:`plain_partners`), the relative
    gain and the paper's numbers; then the studies (ablation terms, K and latent-size sweeps)."""
    refs = paper_numbers()
    partners = plain_partners(records)
    rows = ["| data set | protocol | model | profile (device) | train images | tasks | NLN AUROC | plain AUROC "
            "| NLN gain | paper (label: value) | train s/task | score img/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    studies = ["| data set | protocol | variant | profile | train images | tasks | AUROC | paper |",
               "|---|---|---|---|---|---|---|---|"]
    natural = lambda r: (r["dataset"], r["protocol"],  # noqa: E731  (K2 before K10)
                         re.sub(r"\d+", lambda m: m.group().zfill(4), r["label"]), str(r.get("profile")))
    for r in sorted(records, key=natural):
        tasks = f"{len(r['tasks'])}{' (' + _task_key(r) + ')' if r.get('subset') else ''}"
        if nln_family(r["label"]):
            plain = partners.get((r["label"],) + nln_setting(r))
            a, b = r["mean"].get("auroc"), plain["mean"].get("auroc") if plain else None
            gain = f"{100 * (a - b) / b:+.1f}%" if a is not None and b else "-"
            ref_labels = (r.get("paper_key") or r["label"], f"{r['label']}-plain")
            paper = [f"{lab}: {v:.1f}" for lab in ref_labels if (v := paper_value(refs, {**r, "label": lab})) is not None]
            rows.append(f"| {r['dataset']} | {r['protocol']} | {r['label']} | {r.get('profile')} "
                        f"({r.get('device', 'cpu')}) | {train_cap(r)} | {tasks} | {_pct(a)} | {_pct(b)} | {gain} "
                        f"| {'; '.join(paper) or '-'} | {r.get('train_seconds_per_task') or 0:.0f} "
                        f"| {r.get('score_images_per_s') or 0:.0f} |")
        elif re.search(r"-(abl-\w+|k\d+|L\d+|defaults)$", r["label"]):
            ref = paper_value(refs, r)
            studies.append(f"| {r['dataset']} | {r['protocol']} | {r['label']} | {r.get('profile')} | {train_cap(r)} "
                           f"| {tasks} | {_pct(r['mean'].get('auroc'))} | {'-' if ref is None else f'{ref:.1f}'} |")
    out = "\n".join(rows)
    if len(studies) > 2:
        out += "\n\nStudies (same trained models, scoring variants; L sweeps retrain):\n\n" + "\n".join(studies)
    return out


def profile_input_size(r: dict[str, Any]) -> bool:
    """Whether a record ran at the input size its method's profile uses now (a record without an input
    size, or of an unknown method or profile, counts as yes). A record made before a profile's size
    changed (e.g. a pretrained backbone at 64 px, now 224) is a reduced-resolution study, not the method."""
    size = (r.get("config") or {}).get("input_size")
    now = _profile_params(r["method"], r.get("profile")).get("input_size") if size is not None else None
    return now is None or int(size) == int(now)


@functools.lru_cache(maxsize=None)
def _profile_params(method: str, profile: str | None) -> dict[str, Any]:
    """The parameters a method gets from its profile and constructor defaults today (the registry's
    own ``create``); empty for an unknown method or profile."""
    try:
        return create(method, profile=profile).get_params()
    except KeyError:
        return {}


def headline_rank(r: dict[str, Any]) -> tuple:
    """How well a record stands for its method (higher is better): complete runs first, then exact
    protocol and data, the paper profile, the profile's own input size, the most classes x seeds, a run
    from a clean commit (no ``+dirty`` in its provenance), the method's own label."""
    return (not r.get("subset"), not analogue_reasons(r), r.get("profile") == "paper", profile_input_size(r),
            len(r["tasks"]) * len(r["seeds"]), "dirty" not in str(r.get("commit", "")), r["label"] == r["method"])


def headline_table(records: list[dict[str, Any]]) -> str:
    """One row per paper and method: its record with a paper number covering the most classes x seeds
    (complete runs first, then the paper profile)."""
    refs = paper_numbers()
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if paper_value(refs, r) is None or r.get("profile") == "demo":
            continue
        paper = (_paper_ref(refs, r) or {}).get("source", "").split(" ")[0]
        key = (paper, r["method"])
        rank = headline_rank(r)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, r)  # type: ignore[assignment]
    out = ["| paper | method | setting | paper AUROC | ours (± seeds) | Δ / analogue |", "|---|---|---|---|---|---|"]
    for (paper, method), (_, r) in sorted(best.items()):  # type: ignore[misc]
        p = paper_value(refs, r)
        reasons = analogue_reasons(r)
        ours = 100 * r["mean"]["auroc"]
        opts = {k: v for k, v in (r.get("protocol_options") or {}).items() if k not in ("max_train", "test_every")}
        setting = f"{r['label']}, {r['dataset']}, {r['protocol']}" + "".join(f", {k}={v}" for k, v in opts.items()) \
            + f", {r.get('profile')} profile"
        n_seeds = len(r.get("seeds") or [])
        cell = f"{ours:.1f}"
        if n_seeds > 1:  # the spread of the class-mean over seeds
            setting += f", {n_seeds} seeds"
            cell += f" ± {100 * r['mean'].get('auroc_std_seeds', 0.0):.1f}"
        delta = f"{ours - p:+.1f}" if not reasons else "analogue: " + "; ".join(reasons)
        out.append(f"| {paper} | `{method}` | {setting} | {p:.1f} | {cell} | {delta} |")
    return "\n".join(out)


def _table2(records: list[dict[str, Any]]) -> str:
    from .table2 import table2_markdown  # imports this module

    return table2_markdown(records)


def _nln_gain(records: list[dict[str, Any]]) -> str:
    from .nln_gain import nln_gain_markdown  # imports this module

    return nln_gain_markdown(records)


def _nln_alpha(records: list[dict[str, Any]]) -> str:
    from .nln_gain import alpha_sweep_markdown  # imports this module

    return alpha_sweep_markdown(records)


KINDS = {"records": records_table, "nln": nln_table, "headline": headline_table, "table2": _table2,
         "nln-gain": _nln_gain, "nln-alpha": _nln_alpha}


def _attrs(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def render_block(records: list[dict[str, Any]], attrs: dict[str, str], root: str | Path | None = None) -> str:
    """The table a start marker's attributes ask for (``kind="comparison"`` reads the record named by
    ``file``, relative to the project ``root``)."""
    kind = attrs.get("kind", "records")
    if kind == "comparison":
        from .comparison import comparison_markdown, load_comparison

        if "file" not in attrs:
            raise ValueError('a kind="comparison" table needs file="<path of the comparison record>"')
        return comparison_markdown(load_comparison(Path(root or ".") / attrs["file"]))
    if kind not in KINDS:
        raise ValueError(f"table kind {kind!r} unknown; kinds: {', '.join(KINDS)}")
    rows = _select(records, shlex.split(attrs.get("labels", "*")), shlex.split(attrs.get("protocols", "")))
    return KINDS[kind](rows)


def update_file(path: str | Path, records: list[dict[str, Any]]) -> int:
    """Rewrite every marked table in ``path``; returns how many (0: file left untouched)."""
    path = Path(path)
    text = path.read_text()
    count = 0

    def replace(m: re.Match) -> str:
        nonlocal count
        end = f"<!-- table:{m.group('name')}:end -->"
        count += 1
        block = render_block(records, _attrs(m.group('attrs')), _project_root(path))
        return f"{m.group('start')}\n{block}\n{end}"

    pattern = re.compile(f"(?P<start>{START.pattern})" + r".*?<!-- table:(?P=name):end -->", re.S)
    new = pattern.sub(replace, text)
    if new != text:
        path.write_text(new)
    return count


def _project_root(path: Path) -> Path:
    """The checkout a README belongs to: the nearest folder above it that holds ``benchmarks``."""
    for parent in path.resolve().parents:
        if (parent / "benchmarks").is_dir():
            return parent
    return path.resolve().parent


def readme_files(project_root: str | Path) -> list[Path]:
    """README.md and every Markdown file under src/noveltylab/methods of a project checkout."""
    root = Path(project_root)
    files = [root / "README.md"] + sorted((root / "src" / "noveltylab" / "methods").rglob("*.md"))
    return [f for f in files if f.is_file()]


def update_readmes(project_root: str | Path, records: list[dict[str, Any]]) -> list[Path]:
    """Regenerate the marked tables of every README of the project; the files that had tables."""
    return [f for f in readme_files(project_root) if update_file(f, records)]


def write_all(results_dir: str | Path, out: str | Path) -> list[Path]:
    """RESULTS.md (``out``) and, when ``results_dir`` is a project's ``benchmarks/results``, the marked
    tables of that project's READMEs, all from the same records; the files written."""
    from .report import load_spec_records, write_report

    written = [write_report(results_dir, out)]
    root = Path(results_dir).resolve().parent.parent
    if (root / "src" / "noveltylab").is_dir() and (root / "README.md").is_file():
        written += update_readmes(root, load_spec_records(results_dir)[0])
    return written
