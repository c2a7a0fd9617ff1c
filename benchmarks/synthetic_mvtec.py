"""Write a generated defect set in the MVTec-AD layout (train/good, test/{good,blob,scratch},
ground_truth/<defect>/<stem>_mask.png) for pixel-level benchmarks of the localising methods.

The images are the sinusoidal textures with bright blobs and dark scratches of the NLN patch
localisation test (tests/test_nln.py ``make_mvtec_layout``, reused here), at a larger size and count:

  python benchmarks/synthetic_mvtec.py /tmp/synthetic_mvtec --size 128 --train 60 --good 20 --defect 20
  noveltylab bench --method patchcore --dataset mvtec:/tmp/synthetic_mvtec --protocol one-class --classes good
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--train", type=int, default=60)
    p.add_argument("--good", type=int, default=20)
    p.add_argument("--defect", type=int, default=20, help="test images per defect type (blob, scratch)")
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_nln import make_mvtec_layout

    make_mvtec_layout(a.out, size=a.size, n_train=a.train, n_good=a.good, n_defect=a.defect)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
