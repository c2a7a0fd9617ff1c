#!/usr/bin/env python
"""Write a labelled PNG test folder from a data set's test split, in the layout `noveltylab evaluate` reads:
``OUT/good/`` holds the normal class, ``OUT/<class name>/`` every other class (first N images of each).

    python scripts/make_test_folder.py mnist 3 mnist3_test/ --per-class 100 --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def main() -> int:
    from noveltylab.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("normal_class", help="class index or name that is normal")
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=100, help="images per novel class")
    ap.add_argument("--normal", type=int, default=300, help="normal images")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    normal = test.class_index(args.normal_class)
    out = Path(args.out)
    for c, name in enumerate(test.class_names):
        folder = out / ("good" if c == normal else str(name).replace("/", "_").replace(" ", "_"))
        folder.mkdir(parents=True, exist_ok=True)
        imgs = test.images[test.labels == c][:args.normal if c == normal else args.per_class]
        for i, a in enumerate(imgs):
            Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(folder / f"{i:04d}.png")
    print(f"test folder written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
