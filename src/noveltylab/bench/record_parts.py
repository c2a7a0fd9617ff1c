"""Part files rebuilt from a setting's finished records, so a record whose part files are gone can grow.

Part files live in an ignored folder and are lost with the machine that ran them; the records they were
merged into are committed. To add seeds (or classes) to such a record without rerunning the tasks it
already holds, :func:`parts_from_records` writes one part per (task, seed) of the record back from the
record itself and from the records of the setting's variants (one result per record, as
:func:`noveltylab.bench.engine.run_task` writes them). Merging those parts gives back the same
``per_task`` and ``mean``; per-part run times are the record's training times (the record keeps no
other per-task time), and each rebuilt part names the record it came from.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .runner import SCHEMA
from .spec import Setting, SpecError

#: per-task fields of a record that are one value per seed
_PER_SEED = ("train_seconds", "score_images_per_s")
_COUNTS = ("n_train", "n_val", "n_test", "n_novel")


def _load_record(path: Path, setting: Setting) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{setting.label} {setting.dataset}: no finished record {path.name} in {path.parent} "
                        "to rebuild part files from") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: unreadable record ({exc})") from None
    if rec.get("setting_key") != setting.key():
        raise SpecError(f"{path.name} was made by another setting (key {rec.get('setting_key')}, this entry's "
                        f"is {setting.key()}): its tasks cannot stand in for this entry's")
    if rec.get("subset") or rec.get("failed_tasks"):
        raise SpecError(f"{path.name} is a subset record; rebuild parts from a complete one")
    return rec


def _result(rec: dict[str, Any], entry: dict[str, Any], j: int) -> dict[str, Any]:
    """The result of seed number ``j`` of one task in one record, in a part's shape."""
    n = len(rec["seeds"])
    bad = [k for k, v in entry["metrics"].items() if len(v) != n] + \
          [k for k in _PER_SEED if len(entry.get(k, [])) != n]
    if bad:
        raise SpecError(f"{rec.get('label')} task {entry['name']}: {bad} do not hold one value per seed "
                        f"{rec['seeds']}; parts cannot be rebuilt from this record")
    out = {"metrics": {k: v[j] for k, v in entry["metrics"].items()},
           **{k: entry[k][j] for k in _PER_SEED}, **{k: entry.get(k) for k in _COUNTS},
           "config": rec.get("config", {})}
    if "diagnostics" in entry:
        out["diagnostics"] = entry["diagnostics"][j]
    return out


def parts_from_records(setting: Setting, out_dir: str | Path) -> list[Path]:
    """Write the missing part files of ``setting`` from its complete records in ``out_dir``.

    Existing part files are kept. Returns the paths written. Raises :class:`SpecError` when a record of
    the setting (the entry's or a variant's) is missing, is a subset, or was made under another key.
    """
    from .engine import Job, part_dir, read_part, record_stem

    out_dir = Path(out_dir)
    paths = [out_dir / (record_stem(setting, v) + ".json") for v in [None] + list(setting.variants)]
    recs = [_load_record(p, setting) for p in paths]
    seeds = recs[0]["seeds"]
    if any(r["seeds"] != seeds or r["tasks"] != recs[0]["tasks"] for r in recs[1:]):
        raise SpecError(f"{setting.label} {setting.dataset}: the records of the entry and its variants "
                        "hold different tasks or seeds")
    by_task = [{e["name"]: e for e in r["per_task"]} for r in recs]
    written = []
    pdir = part_dir(out_dir, setting)
    for name in recs[0]["tasks"]:
        first = by_task[0][name]
        for j, seed in enumerate(seeds):
            path = pdir / f"{Job(setting, first['task'], name, seed).id}.json"
            if read_part(path, setting.key()) is not None:
                continue
            results = [_result(r, t[name], j) for r, t in zip(recs, by_task)]
            part = {"schema": SCHEMA, "kind": "part", "key": setting.key(), "label": setting.label,
                    "task": first["task"], "name": name, "seed": seed, "results": results,
                    "commit": recs[0]["commit"], "machine": recs[0].get("machine", ""),
                    "host": ",".join(recs[0].get("hosts") or []), "device": recs[0].get("device", ""),
                    "threads": recs[0].get("threads"), "peak_memory_mb": recs[0].get("peak_memory_mb"),
                    "seconds": results[0]["train_seconds"], "command": recs[0].get("command", ""),
                    "rebuilt_from": paths[0].name}
            pdir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(part, indent=1) + "\n")
            written.append(path)
    return written
