"""Paper 000 Tables 1 and 2: mean AUROC percentage increase from NLN, per model family and data set;
and the Fig. 6 analogue (image and pixel metrics over alpha, ``alpha_sweep_markdown``).

Ours: ``100 * (NLN - plain) / plain`` on the class-mean AUROC of a main NLN record (``nln-<family>``,
or a full-training-set row ``nln-<family>[-t<N>-<data>]-full``) and its ``-plain`` variant, which are
the *same trained models* scored with and without NLN (a scoring variant); one row per training cap.
The paper compares its best reconstruction-only configuration with its best
NLN configuration of each family (K, L, alpha picked per data set), so its gain mixes NLN with
that selection. Paper values: ``paper_numbers.csv`` rows with metric ``nln_gain_pct``. One row per
table, data set, profile and training cap; where several record pairs share them (e.g. a published setting beside the fixed defaults)
the one ``tables.headline_rank`` ranks first is shown.
"""
from __future__ import annotations

from typing import Any

from .report import _profile, paper_numbers
from .tables import nln_setting, headline_rank, nln_family, plain_partners, train_cap

FAMILIES = (("ae", "AE"), ("aae", "AAE"), ("vae", "VAE"), ("aeres", "AE-res"), ("aecon", "AE-con"))
TABLES = (("leave-one-out", "Table 1 (MISO)"), ("one-class", "Table 2 (SIMO)"))
DATASETS = ("mnist", "cifar10-jpeg", "fashion-mnist")  # the paper's row order
METRIC = "nln_gain_pct"


def relative_gain(nln: float | None, plain: float | None) -> float | None:
    """Percentage increase of the NLN AUROC over the plain one (None when either is missing)."""
    if nln is None or not plain:
        return None
    return 100.0 * (nln - plain) / plain


def gain_pairs(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, str, str], tuple[dict, dict]]:
    """``(protocol, dataset, profile, training cap, family) -> (NLN record, plain record)``: a main NLN row
    (``tables.nln_family``) and the plain score of the same trained models (``tables.plain_partners``)."""
    partners = plain_partners(records)
    best: dict[tuple[str, str, str, str, str], tuple[dict, dict]] = {}
    for r in sorted(records, key=lambda r: str(r.get("_path", r["label"]))):
        fam = nln_family(r["label"])
        p = partners.get((r["label"],) + nln_setting(r)) if fam else None
        if p is None or "auroc" not in r.get("mean", {}) or "auroc" not in p.get("mean", {}):
            continue
        key = (r["protocol"], r["dataset"], _profile(r), train_cap(r), fam)
        if key not in best or headline_rank(r) > headline_rank(best[key][0]):
            best[key] = (r, p)
    return best


def nln_gain_markdown(records: list[dict[str, Any]]) -> str:
    """Rows: table, data set, profile; cells: our gain (the paper's) per family."""
    refs = paper_numbers()
    pairs = gain_pairs(records)
    out = ["| paper table | data set | profile (device) | train images | "
           + " | ".join(f"{name} ours (paper)" for _, name in FAMILIES) + " |", "|" + "---|" * (4 + len(FAMILIES))]
    profiles = sorted({k[2] for k in pairs})
    caps = sorted({k[3] for k in pairs}, key=lambda c: (c == "all", c))
    for proto, title in TABLES:
        for ds in DATASETS:
            for prof in profiles:
                for cap in caps:
                    cells = []
                    for fam, _ in FAMILIES:
                        ref = refs.get((f"nln-{fam}", ds, proto, METRIC))
                        paper = f"{float(ref['value']):.2f}" if ref else "-"
                        pair = pairs.get((proto, ds, prof, cap, fam))
                        g = relative_gain(pair[0]["mean"]["auroc"], pair[1]["mean"]["auroc"]) if pair else None
                        cells.append(f"{'-' if g is None else f'{g:+.1f}'} ({paper})")
                    if any(not c.startswith("- ") for c in cells):
                        out.append(f"| {title} | {ds} | {prof} | {cap} | " + " | ".join(cells) + " |")
    if len(out) == 2:
        return "No pairs of nln-<family> / nln-<family>-plain records yet."
    return "\n".join(out)


def alpha_sweep_markdown(records: list[dict[str, Any]]) -> str:
    """Paper 000 Fig. 6 analogue: one row per record (scoring variants of one model), sorted by the
    ``alpha`` of its config: image AUROC and the localisation metrics of the same test set."""
    rows = sorted((r for r in records if "alpha" in (r.get("config") or {})),
                  key=lambda r: (r["dataset"], _profile(r), float(r["config"]["alpha"])))
    if not rows:
        return "No records with an alpha yet."
    out = ["| data set | profile (device) | alpha | image AUROC | pixel AUROC | PRO (FPR <= 0.3) | IoU (Youden, oracle) "
           "| record |", "|---|---|---|---|---|---|---|---|"]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for r in rows:
        m = r.get("mean", {})
        out.append(f"| {r['dataset']} | {_profile(r)} | {float(r['config']['alpha']):g} | {pct(m.get('auroc'))} "
                   f"| {pct(m.get('pixel_auroc'))} | {pct(m.get('pro'))} | {pct(m.get('iou_youden'))} | {r['label']} |")
    return "\n".join(out)
