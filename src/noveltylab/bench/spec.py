"""Benchmark specs: one declarative TOML file per paper table, parsed into settings.

A spec names, for each row it reproduces, the method, profile, parameter
overrides, data set, protocol and options, classes, seeds, label, the paper
table/row and whether protocol and data match the paper exactly or are an
analogue. Scoring variants of one trained model (ablation terms, other
scorings, the same model on another protocol's test set) are ``variant``
tables of an entry, so a study is data, not a script::

    [spec]
    paper = "000"
    table = "Table 6"
    title = "NLN ablation (AE-con)"

    [defaults]                  # every key an entry may set
    profile = "cpu"
    seeds = [0]

    [[entry]]
    label = "nln-aecon"
    method = "nln-aecon"
    dataset = ["mnist", "fashion-mnist"]   # a list expands into one setting per data set
    protocol = "leave-one-out"
    options = { max_train = 1000 }
    row = "AE-con, NLN"
    [[entry.variant]]
    label = "nln-aecon-abl-recon"
    scoring = { nln = false, error = "recon", k = 2 }

Variant keys: ``label`` and one of ``scoring`` (detector options applied to the
trained model), ``protocol``/``options`` (score the trained model on another
protocol's test set of the same task; the training split must be identical)
or ``metric`` (a per-task metric of the entry, e.g. ``auroc_sim``, becomes the
variant's AUROC). Parsing errors name the file, the entry and the key.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any

ENTRY_KEYS = {"label", "method", "profile", "params", "dataset", "protocol", "options", "classes", "seeds",
              "row", "match", "notes", "variant", "paper_key", "extras"}
VARIANT_KEYS = {"label", "scoring", "protocol", "options", "metric", "notes", "row", "match", "paper_key"}
SPEC_KEYS = {"paper", "table", "title", "notes"}
MATCHES = ("exact", "analogue")
ENGINE_OPTIONS = ("test_every",)  # options the engine applies itself (not passed to the protocol)


class SpecError(ValueError):
    """A benchmark spec that cannot be run; the message names the file, entry and key."""


@dataclass(frozen=True)
class Variant:
    """A second record from the same trained models: other scoring, test set or metric."""

    label: str
    scoring: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    notes: str = ""
    row: str = ""
    match: str | None = None
    paper_key: str | None = None   # paper_numbers.csv label of this variant's row (see Setting.paper_key_for)


@dataclass(frozen=True)
class Setting:
    """One runnable benchmark setting: a record (plus one per variant) once all its tasks ran."""

    label: str
    method: str
    dataset: str
    protocol: str = "one-class"
    profile: str | None = "cpu"
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    classes: list[Any] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    row: str = ""
    match: str | None = None
    notes: str = ""
    variants: list[Variant] = field(default_factory=list)
    paper_key: str | None = None   # label under which paper_numbers.csv lists the paper's value
    extras: list[str] = field(default_factory=list)  # named extra metrics (bench/extras.py)

    def key(self) -> str:
        """Hash of everything that changes a task's result: a part file is reused only under the same key.

        The class and seed lists are left out: a task's result depends on its own class and seed, not on
        which other classes or seeds the setting runs, so a setting grown from classes [0, 1, 2] to every
        class, or from seeds [0] to [0, 1, 2], reruns only the new tasks. (The seed list hashes as the
        default ``[0]`` so the keys of one-seed settings stay what they were.)
        """
        d = asdict(self)
        d["classes"] = None
        d["seeds"] = [0]
        for k in ("row", "match", "notes", "paper_key"):
            d.pop(k)
        if not d["extras"]:
            d.pop("extras")  # keys of settings without extras stay what they were
        for v in d["variants"]:
            for k in ("notes", "row", "match", "paper_key"):
                v.pop(k)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def paper_key_for(self, label: str) -> str | None:
        """The paper_numbers.csv label for the record ``label`` of this setting. The entry's ``paper_key``
        covers its own label only (also a variant of the same label under another protocol); a variant
        of another label (e.g. the plain score, an ablation term) names its own ``paper_key`` or is looked
        up under its label, so a plain-score row is never shown against the NLN paper number."""
        for v in self.variants:
            if v.label == label and v.paper_key:
                return v.paper_key
        return self.paper_key if label == self.label else None

    @property
    def labels(self) -> list[str]:
        return [self.label] + [v.label for v in self.variants]


@dataclass
class Spec:
    """A parsed spec file: its paper table and the settings it runs."""

    path: str
    paper: str = ""
    table: str = ""
    title: str = ""
    notes: str = ""
    settings: list[Setting] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def select(self, labels: list[str] | None = None, datasets: list[str] | None = None) -> list[Setting]:
        """Settings whose label (or a variant's label) is in ``labels`` and data set in ``datasets``."""
        out = [s for s in self.settings if (not labels or set(s.labels) & set(labels))
               and (not datasets or s.dataset in datasets)]
        if labels and not out:
            raise SpecError(f"{self.path}: no entry labelled {', '.join(labels)}; labels: "
                            f"{', '.join(sorted({lab for s in self.settings for lab in s.labels}))}")
        return out


def _fail(where: str, msg: str) -> SpecError:
    return SpecError(f"{where}: {msg}")


def _check_type(where: str, key: str, value: Any, types: tuple, what: str) -> None:
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise _fail(where, f"{key!r} must be {what}, got {value!r}")


def _variant(where: str, raw: Any) -> Variant:
    if not isinstance(raw, dict):
        raise _fail(where, "a variant must be a table")
    unknown = set(raw) - VARIANT_KEYS
    if unknown:
        raise _fail(where, f"unknown variant key(s) {sorted(unknown)}; allowed: {sorted(VARIANT_KEYS)}")
    if not isinstance(raw.get("label"), str) or not raw["label"]:
        raise _fail(where, "a variant needs a non-empty string 'label'")
    kinds = [k for k in ("scoring", "protocol", "metric") if raw.get(k)]
    if raw.get("options") and "protocol" not in kinds:
        kinds.append("protocol")
    if len(kinds) != 1 and not (kinds and set(kinds) <= {"scoring", "protocol"}):
        raise _fail(where, "a variant needs 'scoring', 'protocol'/'options' or 'metric' (and 'metric' alone)")
    for key in ("scoring", "options"):
        if key in raw:
            _check_type(where, key, raw[key], (dict,), "a table")
    if raw.get("match") is not None and raw["match"] not in MATCHES:
        raise _fail(where, f"'match' must be one of {MATCHES}, got {raw['match']!r}")
    return Variant(label=raw["label"], scoring=dict(raw.get("scoring", {})), protocol=raw.get("protocol"),
                   options=dict(raw.get("options", {})), metric=raw.get("metric"), notes=raw.get("notes", ""),
                   row=raw.get("row", ""), match=raw.get("match"), paper_key=raw.get("paper_key"))


def _classes(where: str, value: Any) -> list[Any] | None:
    if value is None or value == "all":
        return None
    if not isinstance(value, list) or not value:
        raise _fail(where, f"'classes' must be \"all\" or a non-empty list, got {value!r}")
    for c in value:
        ok = isinstance(c, (int, str)) and not isinstance(c, bool) or (
            isinstance(c, list) and all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in c))
        if not ok:
            raise _fail(where, f"class {c!r} must be an index, a name or a list of them")
    return list(value)


def settings_from_entry(where: str, raw: dict[str, Any], defaults: dict[str, Any]) -> list[Setting]:
    """Validate one ``[[entry]]`` (``defaults`` filled in) and expand a list of data sets."""
    unknown = set(raw) - ENTRY_KEYS
    if unknown:
        raise _fail(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(ENTRY_KEYS)}")
    e = {**defaults, **raw}
    for key in ("method", "dataset"):
        if key not in e:
            raise _fail(where, f"missing {key!r}")
    _check_type(where, "method", e["method"], (str,), "a method name")
    datasets = e["dataset"] if isinstance(e["dataset"], list) else [e["dataset"]]
    if not datasets or not all(isinstance(d, str) and d for d in datasets):
        raise _fail(where, f"'dataset' must be a name or a list of names, got {e['dataset']!r}")
    for key in ("params", "options"):
        _check_type(where, key, e.get(key, {}), (dict,), "a table")
    seeds = e.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds):
        raise _fail(where, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(where, f"'seeds' repeats a seed: {seeds}")
    if e.get("match") is not None and e["match"] not in MATCHES:
        raise _fail(where, f"'match' must be one of {MATCHES}, got {e['match']!r}")
    variants_raw = e.get("variant", [])
    if not isinstance(variants_raw, list):
        raise _fail(where, "'variant' must be an array of tables ([[entry.variant]])")
    variants = [_variant(f"{where} variant {i}", v) for i, v in enumerate(variants_raw)]
    label = e.get("label", e["method"])
    _check_type(where, "label", label, (str,), "a string")
    records = [(label, None, "{}")] + [(v.label, v.protocol, json.dumps(v.options, sort_keys=True))
                                       for v in variants]
    if len(set(records)) != len(records):
        raise _fail(where, f"two records of the entry share label, protocol and options: {records}")
    profile = e.get("profile", "cpu")
    extras = e.get("extras", [])
    if not isinstance(extras, list) or not all(isinstance(x, str) for x in extras):
        raise _fail(where, f"'extras' must be a list of names, got {extras!r}")
    from .extras import EXTRAS

    if set(extras) - set(EXTRAS):
        raise _fail(where, f"unknown extras {sorted(set(extras) - set(EXTRAS))}; available: {sorted(EXTRAS)}")
    return [Setting(label=label, method=e["method"], dataset=d, protocol=e.get("protocol", "one-class"),
                    profile=None if profile in ("none", "") else profile, params=dict(e.get("params", {})),
                    options=dict(e.get("options", {})), classes=_classes(where, e.get("classes")), seeds=seeds,
                    row=e.get("row", ""), match=e.get("match"), notes=e.get("notes", ""), variants=variants,
                    paper_key=e.get("paper_key"), extras=list(extras))
            for d in datasets]


def parse_spec(text: str, path: str = "<spec>") -> Spec:
    """Parse TOML text into a :class:`Spec`; raise :class:`SpecError` naming what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(raw) - {"spec", "defaults", "entry"}
    if unknown:
        raise SpecError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: spec, defaults, entry")
    head = raw.get("spec", {})
    if set(head) - SPEC_KEYS:
        raise SpecError(f"{path}: unknown [spec] key(s) {sorted(set(head) - SPEC_KEYS)}; allowed: {sorted(SPEC_KEYS)}")
    defaults = raw.get("defaults", {})
    if set(defaults) - ENTRY_KEYS:
        raise SpecError(f"{path}: unknown [defaults] key(s) {sorted(set(defaults) - ENTRY_KEYS)}")
    entries = raw.get("entry")
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"{path}: no [[entry]] tables: a spec runs at least one setting")
    settings: list[Setting] = []
    for i, entry in enumerate(entries):
        where = f"{path} entry {i} ({entry.get('label', entry.get('method', '?'))})"
        settings += settings_from_entry(where, entry, defaults)
    seen: set[tuple] = set()
    for s in settings:
        k = (s.label, s.dataset, s.protocol, json.dumps(s.options, sort_keys=True), s.profile, json.dumps(s.classes))
        if k in seen:
            raise SpecError(f"{path}: two entries write the same record {s.label} on {s.dataset} "
                            f"({s.protocol}, {s.options})")
        seen.add(k)
    return Spec(path=path, paper=str(head.get("paper", "")), table=str(head.get("table", "")),
                title=str(head.get("title", "")), notes=str(head.get("notes", "")), settings=settings)


def load_spec(path: str | Path) -> Spec:
    """Read and parse a spec file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {p} not found")
    return parse_spec(p.read_text(), str(p))


def load_specs(folder: str | Path = "benchmarks/specs") -> list[Spec]:
    """Every ``*.toml`` spec under ``folder`` (sorted by name); an absent folder gives none."""
    root = Path(folder)
    return [load_spec(p) for p in sorted(root.glob("*.toml"))] if root.is_dir() else []


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k) if not k.replace('_', '').replace('-', '').isalnum() else k} = "
                                f"{_toml_value(x)}" for k, x in v.items()) + " }"
    raise SpecError(f"cannot write {v!r} ({type(v).__name__}) into a spec")


def record_classes(record: dict[str, Any]) -> list[Any] | None:
    """The class list a spec entry needs to reproduce ``record``: its tasks when they are a subset of the
    protocol's or draws of several normal classes (never the protocol's default), else None."""
    if record.get("subset") or any(isinstance(e.get("task"), list) for e in record["per_task"]):
        return [e["task"] for e in record["per_task"]]
    return None


def entry_toml(record: dict[str, Any]) -> str:
    """The ``[[entry]]`` that reproduces a result record's setting (for ``noveltylab bench --to-spec``)."""
    params = {k: v for k, v in (record.get("params_overrides") or {}).items() if k != "device"}
    fields: dict[str, Any] = {"label": record["label"], "method": record["method"], "dataset": record["dataset"],
                              "protocol": record["protocol"], "profile": record.get("profile") or "none"}
    if params:
        fields["params"] = params
    if record.get("protocol_options"):
        fields["options"] = record["protocol_options"]
    classes = record_classes(record)
    if classes is not None:
        fields["classes"] = classes
    fields["seeds"] = record["seeds"]
    return "[[entry]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items())
