#!/usr/bin/env python
"""Open an HTML report in real headless Chromium, save a screenshot and check the rendered DOM.

Install the browser from Debian packages first (``apt-get install -y chromium``).
Checks: Chromium renders the page without a network (every image is a data
URI), the DOM it serialises holds the five sections, the summary and
per-class tables and one ``<img>`` per plot and top image, and the screenshot
is a real picture (not one flat colour). Exit code 0 when every check passes.

    python scripts/check_report_browser.py ev/report.html --screenshot docs/report_screenshot.png
"""
from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SECTIONS = ("summary", "curves", "histograms", "per-class", "top")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=5000"]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("error: Chromium not found; install it with `apt-get install -y chromium`")


def chromium(binary: str, args: list[str], page: Path) -> str:
    """Run headless Chromium with a fresh profile; return its standard output."""
    with tempfile.TemporaryDirectory(prefix="noveltylab-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"error: chromium exited with {done.returncode}: {done.stderr[-1500:]}")
    return done.stdout


def check_dom(dom: str) -> list[str]:
    """Problems found in the DOM Chromium rendered (empty list = fine)."""
    problems = []
    for s in SECTIONS:
        if f'id="{s}"' not in dom:
            problems.append(f"section #{s} missing")
    for t in ("summary-table", "per-class-table"):
        if not re.search(rf'<table id="{t}">.*?<td>', dom, re.S):
            problems.append(f"table #{t} missing or empty")
    imgs = re.findall(r"<img\b[^>]*>", dom)
    if len(imgs) < 4:
        problems.append(f"only {len(imgs)} images rendered (expected 3 plots + the top images)")
    bad = [i[:80] for i in imgs if 'src="data:image/png;base64,' not in i]
    if bad:
        problems.append(f"images not embedded as PNG data URIs: {bad[:3]}")
    if re.search(r"<(script|link|iframe)\b", dom):
        problems.append("the page loads scripts or external resources")
    return problems


def check_screenshot(path: Path, width: int) -> list[str]:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        problems = [] if hi - lo > 50 else [f"screenshot is nearly one colour (range {lo}..{hi})"]
        if im.size[0] != width:
            problems.append(f"screenshot is {im.size[0]} px wide, expected {width}")
        # keep the committed copy small: half size, 64-colour palette
        small = im.convert("RGB").resize((im.size[0] // 2, im.size[1] // 2))
        small.quantize(colors=64).save(path, optimize=True)
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="HTML file written by `noveltylab report EVALDIR`")
    ap.add_argument("--screenshot", default="report_screenshot.png", help="PNG to write")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=2000)
    args = ap.parse_args()
    page = Path(args.report)
    if not page.is_file():
        raise SystemExit(f"error: report not found: {page}")
    binary = find_chromium()
    shot = Path(args.screenshot).resolve()
    shot.parent.mkdir(parents=True, exist_ok=True)
    chromium(binary, [f"--screenshot={shot}", f"--window-size={args.width},{args.height}"], page)
    if not shot.is_file():
        raise SystemExit("error: chromium wrote no screenshot")
    dom = chromium(binary, ["--dump-dom"], page)
    problems = check_dom(dom) + check_screenshot(shot, args.width)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}: rendered {page} ({len(dom)} characters of DOM, "
          f"{len(re.findall(r'<img', dom))} images); screenshot {shot} ({os.path.getsize(shot)} bytes)")
    for p in problems:
        print(f"FAIL: {p}")
    print("all checks passed" if not problems else f"{len(problems)} check(s) failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
