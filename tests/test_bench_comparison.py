"""The README table of a side-by-side comparison record (benchmarks/anomalib_side_by_side.py)."""
from __future__ import annotations

import json

import pytest

from noveltylab.bench.comparison import comparison_markdown, load_comparison
from noveltylab.bench.tables import update_file


def _record() -> dict:
    def task(ds, name, a, b, pix=None):
        rows = {"ours": {"auroc": a, "seconds": 10.0}, "theirs": {"auroc": b, "seconds": 50.0}}
        if pix is not None:
            for r, v in zip(rows.values(), pix):
                r.update(pixel_auroc=v, pro=v - 0.1, iou_youden=0.2)
        return {"dataset": ds, "task": name, "rows": rows}

    return {"kind": "comparison", "commit": "abc1234", "threads": 1, "machine": "2 cpus",
            "peer": {"anomalib": "2.7.0"}, "command": "python x.py",
            "tasks": [task("cifar", "a", 0.6, 0.5), task("cifar", "b", 0.8, 0.7),
                      task("mvtec", "good", 1.0, 0.9, pix=(0.99, 0.95))]}


def test_means_per_data_set_and_pixel_columns_only_where_present():
    md = comparison_markdown(_record())
    cifar, mvtec = md.split("**mvtec**")
    assert "| ours | 70.00 ± 10.00 | 10 |" in cifar and "| theirs | 60.00 ± 10.00 | 50 |" in cifar
    assert "pixel AUROC" not in cifar
    assert "| ours | 100.00 | 99.00 | 89.00 | 20.00 | 10 |" in mvtec
    assert "commit abc1234" in md and "anomalib 2.7.0" in md


def test_readme_marker_is_filled_from_the_record(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "cmp.json").write_text(json.dumps(_record()))
    readme = tmp_path / "docs" / "README.md"
    readme.parent.mkdir()
    readme.write_text('x\n<!-- table:cmp:start kind="comparison" file="benchmarks/results/cmp.json" -->\nold\n'
                      '<!-- table:cmp:end -->\ny\n')
    assert update_file(readme, []) == 1
    text = readme.read_text()
    assert "old" not in text and "| theirs | 60.00 ± 10.00 | 50 |" in text and text.endswith("y\n")


def test_wrong_record_kind_is_a_clear_error(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"kind": "novelty", "tasks": []}))
    with pytest.raises(ValueError, match="is not a comparison record"):
        load_comparison(p)
    with pytest.raises(ValueError, match="cannot be read"):
        load_comparison(tmp_path / "missing.json")
