"""Paper 003 Table 2 per class: the transcribed paper numbers and the generated table (bench/table2.py)."""
from __future__ import annotations

from noveltylab.bench import table2
from noveltylab.bench.report import paper_numbers
from noveltylab.bench.tables import update_file

MNIST = [str(c) for c in range(10)]


def record(label: str, method: str, aurocs: list[float], dataset: str = "mnist", profile: str = "cpu",
           options: dict | None = None, seeds: int = 1) -> dict:
    """A minimal one-class result record with the given per-class AUROCs (fractions)."""
    return {"kind": "novelty", "label": label, "method": method, "dataset": dataset, "protocol": "one-class",
            "profile": profile, "protocol_options": options or {}, "tasks": MNIST[:len(aurocs)],
            "seeds": list(range(seeds)), "subset": False, "mean": {"auroc": sum(aurocs) / len(aurocs)},
            "per_task": [{"task": i, "name": MNIST[i], "mean": {"auroc": a}} for i, a in enumerate(aurocs)]}


def test_transcription_gives_the_papers_means_and_win_counts():
    """The per-class rows average to the paper's printed means (to rounding), and give the text's
    counts: over 50 tasks InceptionCAE NN-QED beats DeepSVDD 32, DSEBM 48 and CAE OCSVM 48 times."""
    refs = paper_numbers()
    cells, classes = {}, []
    for ds, n in (("mnist", 10), ("fashion-mnist", 10), ("cifar10-jpeg", 10), ("cifar100", 20)):
        names = list(table2.paper_per_class(refs, "dsebm", ds))
        assert len(names) == n
        for col in table2.PAPER_METHODS:
            per = table2.paper_per_class(refs, col.key, ds)
            assert list(per) == names
            mean = sum(per.values()) / n
            assert abs(mean - float(refs[(col.key, ds, "one-class", "auroc")]["value"])) <= 0.06, (col.key, ds)
            cells.setdefault(col.key, {}).update({f"{ds}/{c}": v for c, v in per.items()})
        classes += [f"{ds}/{c}" for c in names]
    assert len(classes) == table2.PAPER_STATED_TASKS
    for key, n in table2.PAPER_STATED_BEATS.items():
        assert table2.beats(cells, "inception-cae-nn-qed", key, classes) == n


def test_per_class_cells_and_win_counts_from_two_records():
    ours_q = [0.99, 0.99, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
    svdd = [0.95, 0.995, 0.96, 0.96, 0.96, 0.96, 0.80, 0.96, 0.96, 0.96]
    recs = [record("inception-cae-nn-qed", "inception-cae", ours_q),
            record("deep-svdd", "deep-svdd", svdd)]
    md = table2.table2_markdown(recs)
    rows = {line.split(" | ")[0][2:]: line for line in md.splitlines() if line.startswith("| ")}
    # class 0: ours 95.0 for DeepSVDD (paper 99.1, paper's best of the two), 99.0 for InceptionCAE (best of ours)
    assert rows["0"].startswith("| 0 | - (94.9) | - (95.4) | 95.0 (**99.1**) | **99.0** (98.7) |")
    assert "| 1 | - (98.7) | - (97.4) | **99.5** (**99.7**) | 99.0 (**99.7**) |" in md  # ties bold for both
    assert "| 6 | - (85.6) | - (90.1) | 80.0 (**98.5**) | **90.0** (98.3) |" in md
    # best on: InceptionCAE classes 0 and 6, DeepSVDD the other 8; the paper's numbers for the same two
    # methods: DeepSVDD 0, 1 (tie), 4, 6, 9 -> 5; InceptionCAE 1 (tie), 2, 3, 5, 7, 8 -> 6
    assert "| mnist | 2 | 10 | - | - | 8 (5) | 2 (6) |" in md
    assert "DeepSVDD on 2 of 10 classes (paper's numbers: 5)" in md  # 2, 3, 5, 7, 8
    assert "fashion-mnist" not in md.split("Win counts")[0]  # no records there: no table


def test_choose_prefers_the_full_training_set_then_the_paper_profile():
    full = record("inception-cae-nn-qed", "inception-cae", [0.9] * 10)
    capped = record("inception-cae-nn-qed", "inception-cae", [0.8] * 10, options={"max_train": 600}, seeds=3)
    paper = record("inception-cae-nn-qed-paper", "inception-cae", [0.95] * 10, profile="paper")
    col = table2.PAPER_METHODS[-1]
    assert table2.choose([capped, full], col, "mnist") is full
    assert table2.choose([capped, full, paper], col, "mnist") is paper
    assert table2.choose([full], col, "fashion-mnist") is None


def test_readme_marker_is_filled(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- table:t2:start kind=\"table2\" protocols=\"one-class\" -->\nSTALE ROWS\n<!-- table:t2:end -->\n")
    assert update_file(readme, [record("dsebm", "dsebm", [0.9] * 10)]) == 1
    text = readme.read_text()
    assert "STALE ROWS" not in text and "| 0 | **90.0** (94.9) | - (95.4) | - (**99.1**) |" in text
