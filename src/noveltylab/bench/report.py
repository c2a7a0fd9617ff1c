"""Regenerate benchmarks/RESULTS.md from the result files; nothing in it is typed by hand.

The page opens with one compact table per paper table (one spec file under
``benchmarks/specs``): setting, the paper's number, ours, the difference, and
whether protocol and data match the paper exactly or are an analogue (a
capped training set, a subsampled test set, some classes only, the JPEG copy
of CIFAR-10, or a spec entry marked ``match = "analogue"``); no difference is
printed for an analogue. Per-record details follow, grouped by data set and
protocol, each distinct note once, then per-class numbers and commands, then
the other benchmark files. Paper numbers come from ``paper_numbers.csv``.
"""
from __future__ import annotations

import csv
import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any

PAPER_NUMBERS = "paper_numbers.csv"
ANALOGUE_DATA = {"cifar10-jpeg": "JPEG copy of CIFAR-10"}
ANALOGUE_OPTIONS = {"max_train": "training set capped at {}", "test_every": "every {}th test image"}
ANALOGUE_PROTOCOLS = {"one-class-corrupted": "our corruptions of the test set, not the published -C data sets"}


def paper_numbers() -> dict[tuple[str, str, str, str], dict[str, str]]:
    """``(label, dataset, protocol, metric) -> row`` from the packaged CSV (values in percent)."""
    text = resources.files("noveltylab.bench").joinpath(PAPER_NUMBERS).read_text()
    out = {}
    for row in csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#")):
        out[(row["label"], row["dataset"], row["protocol"], row["metric"])] = row
    return out


def load_results(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[tuple[Path, dict[str, Any]]]]:
    """(novelty records, other JSON benchmark files) found under ``results_dir``.

    Folders whose name starts with ``_`` (part files, scratch space of running studies) are skipped."""
    records, others = [], []
    root = Path(results_dir)
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith("_") for part in path.relative_to(root).parts[:-1]):
            continue
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and data.get("kind") == "novelty":
            data["_path"] = path
            records.append(data)
        elif isinstance(data, dict):
            others.append((path, data))
    return records, others


def _paper_ref(refs: dict[tuple[str, str, str, str], dict[str, str]], r: dict[str, Any]) -> dict[str, str] | None:
    """The paper row for a record (under its ``paper_key`` when the spec names one, else its label): a
    single-task record may match ``protocol[task]`` first (for protocols whose tasks are different
    settings, e.g. the novel data set of ``multiclass-unlabeled``)."""
    label = r.get("paper_key") or r["label"]
    if len(r.get("tasks", [])) == 1:
        ref = refs.get((label, r["dataset"], f"{r['protocol']}[{r['tasks'][0]}]", "auroc"))
        if ref:
            return ref
    return refs.get((label, r["dataset"], r["protocol"], "auroc"))


def paper_value(refs: dict, r: dict[str, Any]) -> float | None:
    ref = _paper_ref(refs, r)
    return float(ref["value"]) if ref else None


def analogue_reasons(r: dict[str, Any]) -> list[str]:
    """Why a record's protocol or data differ from the paper's (empty: an exact match)."""
    reasons = []
    if r["dataset"] in ANALOGUE_DATA:
        reasons.append(ANALOGUE_DATA[r["dataset"]])
    for key, text in ANALOGUE_OPTIONS.items():
        value = (r.get("protocol_options") or {}).get(key)
        if value:
            reasons.append(text.format(value))
    if r["protocol"] in ANALOGUE_PROTOCOLS:
        reasons.append(ANALOGUE_PROTOCOLS[r["protocol"]])
    if r.get("subset"):
        n = len(r.get("tasks", []))
        reasons.append(f"{n} class{'es' if n != 1 else ''} only")
    if r.get("match") == "analogue" and not reasons:
        reasons.append("analogue setting (see notes)")
    return reasons


def _pct(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{100 * v:.{digits}f}"


def _ours(r: dict[str, Any]) -> str:
    m = r.get("mean", {})
    if "auroc" not in m:
        return ""
    seeds = len(r.get("seeds", []))
    return _pct(m["auroc"]) + (f" ± {_pct(m.get('auroc_std_seeds'))}" if seeds > 1 else "")


def _options(r: dict[str, Any]) -> str:
    opts = {k: v for k, v in (r.get("protocol_options") or {}).items() if k not in ANALOGUE_OPTIONS}
    return "" if not opts else " (" + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) + ")"


def setting_text(r: dict[str, Any]) -> str:
    """``label · data set · protocol (options) · profile`` of a record."""
    return f"{r['label']} · {r['dataset']} · {r['protocol']}{_options(r)} · {_profile(r)}"


def _profile(r: dict[str, Any]) -> str:
    """Profile name, with the device when the run was not on a CPU (its seconds are GPU seconds)."""
    dev = str(r.get("device") or "cpu")
    return str(r.get("profile")) + ("" if dev.startswith("cpu") else f" ({dev})")


def _rel(r: dict[str, Any], root: Path) -> Path:
    p = Path(r["_path"]).resolve()
    try:
        return p.relative_to(root.resolve())
    except ValueError:
        return p


def _spec_matches(records: list[dict[str, Any]], specs: list[Any]) -> list[tuple[Any, Any, dict[str, Any]]]:
    """(spec, setting, record) for every record a spec entry (or variant) reproduces, in entry order;
    each record at most once (matched by setting identity and parameters)."""
    from .engine import _same_params, record_identity, setting_identities

    by_ident: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_ident.setdefault(record_identity(r), []).append(r)
    used: set[int] = set()
    out = []
    for spec in specs:
        for s in spec.settings:
            for ident, params in setting_identities(s):
                for r in by_ident.get(ident, []):
                    if id(r) not in used and _same_params(r, params):
                        used.add(id(r))
                        out.append((spec, s, r))
    return out


def _as_in_spec(r: dict[str, Any], s: Any) -> dict[str, Any]:
    """A record with the row, match and paper key its spec entry gives it (the spec is the current word:
    a record written before a ``paper_key`` was added or corrected still reports under the right one)."""
    return {**r, "match": r.get("match") or s.match, "row": r.get("row") or s.row,
            "paper_key": s.paper_key_for(r["label"])}


def records_by_spec(records: list[dict[str, Any]], specs: list[Any]) -> tuple[list[tuple[Any, list[dict]]], list[dict]]:
    """([(spec, its records in entry order)], records of no spec) matched by setting identity."""
    matches = _spec_matches(records, specs)
    used = {id(r) for _, _, r in matches}
    out = [(spec, [_as_in_spec(r, s) for sp, s, r in matches if sp is spec]) for spec in specs]
    return out, [r for r in records if id(r) not in used]


def load_spec_records(results_dir: str | Path, specs_dir: str | Path | None = None
                      ) -> tuple[list[dict[str, Any]], list[tuple[Path, dict[str, Any]]], list[Any]]:
    """(records as their spec entries present them, other JSON files, specs): what every table is made
    from. Specs default to the ``specs`` folder beside ``results_dir``."""
    from .spec import load_specs

    records, others = load_results(results_dir)
    specs = load_specs(specs_dir if specs_dir is not None else Path(results_dir).parent / "specs")
    return with_spec_keys(records, specs), others, specs


def with_spec_keys(records: list[dict[str, Any]], specs: list[Any]) -> list[dict[str, Any]]:
    """``records`` in their order, each as its spec entry presents it (:func:`_as_in_spec`); records of no
    spec unchanged. Used for every table, so the summary, the details and the README tables agree."""
    setting = {id(r): s for _, s, r in _spec_matches(records, specs)}
    return [_as_in_spec(r, setting[id(r)]) if id(r) in setting else r for r in records]


def summary_table(records: list[dict[str, Any]], refs: dict, root: Path) -> tuple[list[str], int]:
    """Rows of one paper table's summary (records with a paper number) and how many records had none."""
    lines = ["| setting | paper | ours | Δ | protocol and data |", "|---|---|---|---|---|"]
    without = 0
    for r in records:
        paper = paper_value(refs, r)
        if paper is None:
            without += 1
            continue
        reasons = analogue_reasons(r)
        ours = 100 * r["mean"]["auroc"] if "auroc" in r.get("mean", {}) else None
        delta = "" if reasons or ours is None else f"{ours - paper:+.1f}"
        match = "exact" if not reasons else "analogue: " + "; ".join(reasons)
        lines.append(f"| [{setting_text(r)}]({_rel(r, root)}) | {paper:.1f} | {_ours(r)} | {delta} | {match} |")
    return lines, without


def _details(groups: dict[tuple[str, str], list[dict[str, Any]]], refs: dict, root: Path) -> list[str]:
    lines = ["## Details", "",
             "AUROC in percent: mean over tasks (classes) and seeds; `±tasks` is the spread over classes, `±seeds` "
             "the spread of the class-mean over seeds. F1 uses a threshold set on normal validation images at "
             "5 % false positives; F1-max is the oracle best threshold. A profile shown as `cpu (cuda)` ran the "
             "CPU profile's schedule on a GPU: its seconds are GPU seconds. Notes are numbered once per section.",
             ""]
    for (dataset, proto) in sorted(groups):
        rows = sorted(groups[(dataset, proto)], key=lambda r: (r["label"], str(r.get("profile"))))
        notes: list[str] = []
        lines += [f"### {dataset} — {proto}", "",
                  "| label | method | profile | tasks | seeds | AUROC | ±tasks | ±seeds | paper | F1 | F1-max "
                  "| train s/task | score img/s | max train | notes | file |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            m = r.get("mean", {})
            paper = paper_value(refs, r)
            refs_here = []
            for text in filter(None, [r.get("notes"), (_paper_ref(refs, r) or {}).get("source") and
                                      f"paper number: {_paper_ref(refs, r)['source']}"]):
                if text not in notes:
                    notes.append(text)
                refs_here.append(str(notes.index(text) + 1))
            maxtr = (r.get("protocol_options") or {}).get("max_train") or "all"
            subset = " (subset)" if r.get("subset") else ""
            lines.append(
                f"| {r['label']} | {r['method']} | {_profile(r)} | {len(r['tasks'])}{subset} | {len(r['seeds'])} "
                f"| {_pct(m.get('auroc'))} | {_pct(m.get('auroc_std_tasks'))} | {_pct(m.get('auroc_std_seeds'))} "
                f"| {'' if paper is None else f'{paper:.1f}'} | {_pct(m.get('f1'))} | {_pct(m.get('f1_max'))} "
                f"| {r.get('train_seconds_per_task') or 0:.1f} | {r.get('score_images_per_s') or 0:.0f} | {maxtr} "
                f"| {', '.join(refs_here)} | [{_rel(r, root).name}]({_rel(r, root)}) |")
        lines.append("")
        lines += [f"{i}. {text}" for i, text in enumerate(notes, 1)]
        lines += ["", "<details><summary>Per-class AUROC and commands</summary>", ""]
        for r in rows:
            per = ", ".join(f"{e['name']}: {_pct(e.get('mean', {}).get('auroc'))}" for e in r["per_task"])
            lines.append(f"- **{r['label']}** ({r.get('profile')}, commit {r.get('commit')}, {r.get('date')}): {per}  ")
            lines.append(f"  `{r.get('command')}`")
        lines += ["", "</details>", ""]
    return lines


def _others(others: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    if not others:
        return []
    lines = ["## Other benchmarks", ""]
    for path, data in others:
        lines += [f"### {path.stem}", ""]
        if data.get("command"):
            lines += [f"Command: `{data['command']}`", ""]
        table = next((v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
        if table:
            keys = list(dict.fromkeys(k for row in table for k in row if not isinstance(row[k], (dict, list))))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            for row in table:
                lines.append("| " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
            lines.append("")
        flat = {k: v for k, v in data.items() if not isinstance(v, (list, dict)) and k != "command"}
        if flat:
            lines += [", ".join(f"{k}: {_cell(v)}" for k, v in flat.items()), ""]
    return lines


def table1_section(results_dir: Path, generator: Path | None) -> list[str]:
    """The "Table 1 analogue" (every method x data set) from ``benchmarks/table1.py``'s
    ``table1_markdown(results_dir)``, when that file exists."""
    if generator is None or not generator.is_file():
        return []
    spec = importlib.util.spec_from_file_location("noveltylab_table1", generator)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return ["## Table 1 analogue (paper 004): every method x data set", "",
            f"Generated by `{generator.name}` (`table1_markdown`) from the same records.", "",
            module.table1_markdown(results_dir).rstrip(), ""]


def render(records: list[dict[str, Any]], others: list[tuple[Path, dict[str, Any]]], root: Path,
           specs: list[Any] | None = None, table1: list[str] | None = None) -> str:
    """The whole RESULTS.md text (``root``: the folder links are relative to)."""
    refs = paper_numbers()
    lines = ["# Benchmark results", "",
             "Generated by `noveltylab report` from the JSON files in `benchmarks/results/`; do not edit by hand. "
             "Each section below starts from one spec under `benchmarks/specs/` (one per paper table); "
             "`noveltylab bench benchmarks/specs/<spec>.toml --only <label>` regenerates a row. *Paper* is the "
             "number the paper reports for the same setting, *ours* the mean AUROC (%) over classes "
             "(± over seeds when there are several). Δ is printed only where protocol and data match the "
             "paper exactly; an *analogue* (capped training set, subsampled test set, some classes, the JPEG "
             "copy of CIFAR-10, or another data set standing in for the paper's) is shown without one. "
             "Rows without a paper number are in the details.", ""]
    grouped, loose = records_by_spec(records, specs or [])
    for spec, mine in grouped:
        if not mine:
            continue
        rows, without = summary_table(mine, refs, root)
        title = f"## Paper {spec.paper} {spec.table}: {spec.title}" if spec.paper not in ("", "-") else \
            f"## {spec.table}: {spec.title}"
        lines += [title, "", f"Spec: `{Path(spec.path).name}`; {len(mine)} records, {without} without a paper "
                  "number (see the details).", ""]
        if len(rows) > 2:
            lines += rows + [""]
    if loose:
        lines += ["## Records without a spec", "",
                  "These records were not written from a spec entry; add one (`noveltylab bench --to-spec FILE` "
                  "prints it) so they can be regenerated.", ""]
        rows, without = summary_table(loose, refs, root)
        lines += (rows + [""] if len(rows) > 2 else []) + [f"{without} of them without a paper number."
                                                           if without else "", ""]
    lines += table1 or []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["protocol"] + _options(r)), []).append(r)
    lines += _details(groups, refs, root)
    lines += _others(others)
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_report(results_dir: str | Path = "benchmarks/results", out: str | Path = "benchmarks/RESULTS.md",
                 specs_dir: str | Path | None = None, table1: str | Path | None = None) -> Path:
    """Render every result under ``results_dir`` into ``out`` (Markdown). Specs default to the ``specs``
    folder beside ``results_dir``; the Table 1 generator to ``table1.py`` beside it."""
    results_dir = Path(results_dir)
    records, others, specs = load_spec_records(results_dir, specs_dir)
    gen = Path(table1) if table1 is not None else results_dir.parent / "table1.py"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(records, others, out.parent, specs, table1_section(results_dir, gen)))
    return out
