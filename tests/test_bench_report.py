"""RESULTS.md and the README tables: paper-table summaries (exact vs analogue), notes once, the Table 1
hook, and marked README tables regenerated from the same records."""
from __future__ import annotations

import json
from pathlib import Path

from noveltylab.bench.report import analogue_reasons, write_report
from noveltylab.bench.tables import update_file, write_all

SPEC = """
[spec]
paper = "003"
table = "Table 4"
title = "raw pixels"

[[entry]]
label = "raw-nn-qed"
method = "raw-nn"
dataset = ["mnist", "cifar10-jpeg"]
params = { index = "PQ32x4" }
"""


def _record(label="raw-nn-qed", dataset="mnist", auroc=0.95, notes="same note", **kw):
    rec = {"kind": "novelty", "label": label, "method": "raw-nn", "profile": "cpu", "dataset": dataset,
           "protocol": "one-class", "protocol_options": {}, "seeds": [0], "tasks": ["0", "1"],
           "per_task": [{"name": "0", "task": 0, "mean": {"auroc": auroc}},
                        {"name": "1", "task": 1, "mean": {"auroc": auroc}}],
           "mean": {"auroc": auroc}, "params_overrides": {"index": "PQ32x4"}, "config": {"index": "PQ32x4"},
           "train_seconds_per_task": 1.0, "score_images_per_s": 10.0, "command": "x", "notes": notes}
    rec.update(kw)
    return rec


def _folder(tmp_path: Path, records: list[dict]) -> Path:
    res = tmp_path / "benchmarks" / "results"
    res.mkdir(parents=True)
    (tmp_path / "benchmarks" / "specs").mkdir()
    (tmp_path / "benchmarks" / "specs" / "p003.toml").write_text(SPEC)
    for i, r in enumerate(records):
        (res / f"r{i}.json").write_text(json.dumps(r))
    return res


def test_summary_per_paper_table_with_exact_and_analogue_rows(tmp_path):
    res = _folder(tmp_path, [_record(), _record(dataset="cifar10-jpeg", auroc=0.6),
                             _record(protocol_options={"max_train": 600}, auroc=0.9),
                             _record(label="other", notes="another note")])
    text = write_report(res, tmp_path / "benchmarks" / "RESULTS.md").read_text()
    head = text[:text.index("## Details")]
    assert "## Paper 003 Table 4: raw pixels" in head and "Spec: `p003.toml`; 2 records" in head
    assert "| [raw-nn-qed · mnist · one-class · cpu](results/r0.json) | 94.7 | 95.0 | +0.3 | exact |" in head
    # an analogue gets the paper's number and ours but no difference
    assert "| 59.6 | 60.0 |  | analogue: JPEG copy of CIFAR-10 |" in head
    # a record that matches no spec entry (other options) is listed as such
    assert "## Records without a spec" in head and "| 94.7 | 90.0 |  | analogue: training set capped at 600 |" in head
    # each distinct note once per section, referenced by number from the rows
    start = text.index("### mnist — one-class")
    details = text[start:text.index("<details>", start)]
    assert details.count("same note") == 1 and details.count("another note") == 1
    assert "2. same note" in details and "| 2, 3 |" in details  # numbered, referenced from rows


def test_headline_prefers_a_record_from_a_clean_commit():
    """Of two otherwise equal records of a method, the headline row is the one from a clean commit."""
    from noveltylab.bench.tables import headline_rank

    dirty, clean = _record(label="raw-nn-qed", commit="abc+dirty"), _record(label="raw-nn-qed", commit="abd")
    assert headline_rank(clean) > headline_rank(dirty)
    assert headline_rank(_record(commit="abc+dirty")) > headline_rank(_record(commit="abd", subset=True))


def test_headline_prefers_the_input_size_of_the_profile():
    """A record made at 64 px before the cpu profile's pretrained backbone moved to 224 px is a
    reduced-resolution study: the 224-px record of the method heads its row even when it is older."""
    from noveltylab.bench.tables import headline_rank, profile_input_size

    old = _record(label="fitymi-mnv2", method="fitymi", config={"input_size": 64}, commit="abc")
    now = _record(label="fitymi-mnv2-gen", method="fitymi", config={"input_size": 224}, commit="abd+dirty")
    assert not profile_input_size(old) and profile_input_size(now)
    assert headline_rank(now) > headline_rank(old)
    assert profile_input_size(_record())  # a method without an input size is never marked down
    assert profile_input_size(_record(method="no-such-method", config={"input_size": 7}))


def test_analogue_reasons():
    assert analogue_reasons(_record()) == []
    assert analogue_reasons(_record(subset=True)) == ["2 classes only"]
    assert analogue_reasons(_record(protocol_options={"test_every": 5})) == ["every 5th test image"]
    assert analogue_reasons(_record(match="analogue")) == ["analogue setting (see notes)"]


def test_table1_generator_is_included(tmp_path):
    res = _folder(tmp_path, [_record()])
    (tmp_path / "benchmarks" / "table1.py").write_text(
        "def table1_markdown(results_dir):\n    return '| method | MNIST |\\n|---|---|\\n| raw-nn | 95.0 |\\n'\n")
    text = write_report(res, tmp_path / "benchmarks" / "RESULTS.md").read_text()
    assert "## Table 1 analogue (paper 004)" in text and "| raw-nn | 95.0 |" in text


def test_readme_tables_are_regenerated_between_markers(tmp_path):
    res = _folder(tmp_path, [_record(), _record(label="raw-nn-eed", auroc=0.97)])
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table:h:start kind=\"headline\" -->\nold\n<!-- table:h:end -->\n"
                      "<!-- table:r:start labels=\"raw-nn-e*\" -->\n<!-- table:r:end -->\nend\n")
    (tmp_path / "src" / "noveltylab" / "methods").mkdir(parents=True)
    written = write_all(res, tmp_path / "benchmarks" / "RESULTS.md")
    assert readme in written
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    head = text[text.index("table:h:start"):text.index("table:h:end")]
    assert head.count("| 003 | `raw-nn` |") == 1 and "| 94.7 |" in head  # one row per paper and method
    table = text[text.index("table:r:start"):text.index("table:r:end")]
    assert "raw-nn-eed" in table and "raw-nn-qed" not in table
    assert update_file(readme, []) == 2 and text.count("<!-- table:") == 4  # idempotent markers


def test_headline_row_states_seeds_and_their_spread():
    """A record of several seeds heads its method's row (more classes x seeds) and the row says how many
    seeds it averages and their spread; a one-seed row shows the mean alone."""
    from noveltylab.bench.tables import headline_table

    one = _record(label="raw-nn-eed", auroc=0.95)
    three = _record(label="raw-nn-eed", auroc=0.96, seeds=[0, 1, 2],
                    mean={"auroc": 0.96, "auroc_std_seeds": 0.004})
    row = [ln for ln in headline_table([one, three]).splitlines() if "`raw-nn`" in ln]
    assert len(row) == 1 and ", 3 seeds |" in row[0] and "| 96.0 ± 0.4 |" in row[0]
    row = [ln for ln in headline_table([one]).splitlines() if "`raw-nn`" in ln][0]
    assert "seeds" not in row and "| 95.0 |" in row


def test_plain_variant_is_not_shown_against_the_entry_paper_number(tmp_path):
    spec = SPEC.replace('params = { index = "PQ32x4" }', 'params = { index = "PQ32x4" }\npaper_key = "raw-nn-qed"\n'
                        '[[entry.variant]]\nlabel = "raw-nn-qed-plain"\nscoring = { index = "Flat" }')
    res = _folder(tmp_path, [_record(), _record(label="raw-nn-qed-plain", auroc=0.5, derived_from="raw-nn-qed",
                                                   params_overrides={"index": "Flat"}, config={"index": "Flat"})])
    (tmp_path / "benchmarks" / "specs" / "p003.toml").write_text(spec)
    text = write_report(res, tmp_path / "benchmarks" / "RESULTS.md").read_text()
    head = text[:text.index("## Details")]
    assert "| [raw-nn-qed · mnist · one-class · cpu](results/r0.json) | 94.7 | 95.0 | +0.3 | exact |" in head
    assert "| 94.7 | 50.0 |" not in head  # the plain row has no paper number of its own


def test_spec_paper_key_reaches_the_details_of_an_older_record(tmp_path):
    """A record written before its entry named a paper_key is still shown against the paper number, in
    the summary and in the details table (both take the key from the spec)."""
    spec = SPEC.replace('label = "raw-nn-qed"', 'label = "raw-nn-qed-full"\npaper_key = "raw-nn-qed"')
    res = _folder(tmp_path, [_record(label="raw-nn-qed-full")])
    (tmp_path / "benchmarks" / "specs" / "p003.toml").write_text(spec)
    text = write_report(res, tmp_path / "benchmarks" / "RESULTS.md").read_text()
    assert "| [raw-nn-qed-full · mnist · one-class · cpu](results/r0.json) | 94.7 | 95.0 | +0.3 | exact |" in text
    details = text[text.index("## Details"):]
    row = next(x for x in details.splitlines() if x.startswith("| raw-nn-qed-full |"))
    assert "| 94.7 |" in row
