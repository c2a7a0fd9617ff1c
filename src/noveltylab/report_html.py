"""One self-contained HTML page from an evaluation folder written by ``noveltylab evaluate``.

Everything is inline: plots (matplotlib, Agg backend) and images are
base64 PNG data URIs, styles are in the page; no script, no external asset,
so the file can be mailed or archived as is. Sections: summary table, ROC
and precision-recall curves, score histograms with the threshold, per-class
table, pixel metrics, the most novel images (with heat maps when the method
localises).
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import EVAL_FILE, FORMAT

_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:6px;text-align:center;font-size:12px}
figure img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
.plots img{width:480px}"""


def _fig_uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return _uri(buf.getvalue())


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(uri: str, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{html.escape(alt)}" src="{uri}">'


def _table(header: list[str], rows: list[list[Any]], tid: str) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table id="{tid}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _curves(labels: np.ndarray, scores: np.ndarray, thr: float | None) -> tuple[str, str, str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    from . import metrics

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUROC {metrics.auroc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    if thr is not None:
        ax.plot([np.mean(scores[labels == 0] > thr)], [np.mean(scores[labels == 1] > thr)], "ro",
                label="model threshold")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC")
    ax.legend(loc="lower right")
    roc = _fig_uri(fig)

    p, r, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(r, p, label=f"AUPR {metrics.aupr(labels, scores):.3f}")
    ax.axhline(labels.mean(), color="k", ls=":", lw=0.8, label="chance")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (novel = positive)", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    pr = _fig_uri(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.histogram_bin_edges(scores, bins=40)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"normal (n={int((labels == 0).sum())})")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"novel (n={int((labels == 1).sum())})")
    if thr is not None:
        ax.axvline(thr, color="r", ls="--", label=f"threshold {thr:.4g}")
    ax.set(xlabel="novelty score", ylabel="images", title="Score histograms")
    ax.legend()
    hist = _fig_uri(fig)
    return roc, pr, hist


def read_evaluation(eval_dir: str | os.PathLike) -> dict[str, Any]:
    """The evaluation record in ``eval_dir`` (raises ValueError naming the problem)."""
    f = Path(eval_dir) / EVAL_FILE
    if not f.is_file():
        raise ValueError(f"{eval_dir} holds no {EVAL_FILE}; run `noveltylab evaluate MODEL TEST_ROOT -o {eval_dir}`")
    rec = json.loads(f.read_text())
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise ValueError(f"{f} is not a noveltylab evaluation file")
    return rec


def render(eval_dir: str | os.PathLike) -> str:
    """The HTML page for the evaluation in ``eval_dir``."""
    eval_dir = Path(eval_dir)
    rec = read_evaluation(eval_dir)
    labels = np.array([r["label"] for r in rec["images"]], dtype=np.int64)
    scores = np.array([r["score"] for r in rec["images"]], dtype=np.float64)
    t = rec.get("at_threshold") or {}
    thr = t.get("threshold")
    roc, pr, hist = _curves(labels, scores, thr)
    im = rec["image"]
    title = f"noveltylab evaluation: {rec['method']} on {rec['test_root']}"
    summary = [["images (normal / novel)", f"{rec['n_images']} ({rec['n_normal']} / {rec['n_novel']})"],
               ["image AUROC", im["auroc"]], ["AUPR", im["aupr"]], ["F1-max (oracle threshold)", im["f1_max"]],
               ["FPR at 95 % TPR", im["fpr95"]]]
    if t:
        summary += [["model threshold", t["threshold"]], ["FPR at threshold", t["fpr"]],
                    ["recall at threshold", t["recall"]], ["precision at threshold", t["precision"]],
                    ["F1 at threshold", t["f1"]]]
    px = rec.get("pixel")
    if px:
        summary += [["pixel AUROC", px["auroc"]], ["pixel IoU (oracle threshold)", px["iou_oracle"]]]
        if "pro" in px:
            summary.append(["PRO", px["pro"]])
    per_class = [[c, r["n"], "novel" if r["auroc"] is not None else "normal", r["auroc"],
                  r.get("recall", r.get("fpr"))] for c, r in rec["per_class"].items()]
    figs = []
    for item in rec.get("top", []):
        f = eval_dir / item["file"]
        if not f.is_file():
            continue
        cap = (f"#{item['rank'] + 1} score {item['score']:.4g}<br>{html.escape(item['class'])}"
               f" ({'novel' if item['label'] else 'normal'})")
        figs.append(f"<figure>{_img(_uri(f.read_bytes()), Path(item['path']).name)}<figcaption>{cap}</figcaption>"
                    "</figure>")
    top_note = ("with the method's anomaly map overlaid (blue = low, red = high)" if rec.get("localises")
                else "(the method gives one score per image, no anomaly map)")
    params = html.escape(json.dumps(rec.get("params", {})))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
        f"<p>model: {html.escape(str(rec.get('model')))}; parameters: <code>{params}</code>; code: "
        f"{html.escape(str(rec.get('git_commit')))}; evaluated {html.escape(str(rec.get('date')))}</p>",
        '<section id="summary"><h2>Summary</h2>', _table(["metric", "value"], summary, "summary-table"), "</section>",
        '<section id="curves" class="plots"><h2>ROC and precision-recall curves</h2>',
        _img(roc, "ROC curve"), _img(pr, "precision-recall curve"), "</section>",
        '<section id="histograms" class="plots"><h2>Score histograms</h2>', _img(hist, "score histograms"),
        "</section>",
        '<section id="per-class"><h2>Per class</h2><p>AUROC of the normal images against each novel class; last '
        "column: recall (novel classes) or false-positive rate (normal classes) at the model's threshold.</p>",
        _table(["class", "images", "kind", "AUROC", "recall / FPR at threshold"], per_class, "per-class-table"),
        "</section>",
        f'<section id="top"><h2>Most novel images</h2><p>The {len(figs)} highest-scoring test images {top_note}.</p>',
        "".join(figs), "</section>", "</body></html>"]
    return "\n".join(parts)


def write_html_report(eval_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write the report for ``eval_dir`` to ``output`` (default ``eval_dir/report.html``)."""
    out = Path(output) if output else Path(eval_dir) / "report.html"
    page = render(eval_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
