"""Peak memory of a 224-px pretrained-backbone run: DN2 (MobileNetV2 at 224 px) fitted on
``--n-fit`` MNIST images of one class and scoring ``--n-score`` more.

Issue 15 asked that "a 224-px run does not need 3 GB". Run it with the code to compare
on ``PYTHONPATH`` (a clean clone per commit); it records the commit of the imported package,
the peak resident memory of the process and the seconds, as one JSON record::

    PYTHONPATH=/path/to/clone/src python benchmarks/memory_224.py --data-dir ../shared/data \\
        -o benchmarks/results/workflow/memory_224__<commit>.json
"""
from __future__ import annotations

import argparse
import inspect
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import noveltylab
from noveltylab.data import load_dataset


def git_commit() -> str:
    where = Path(noveltylab.__file__).resolve().parent

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=where).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-fit", type=int, default=300)
    p.add_argument("--n-score", type=int, default=100)
    p.add_argument("--transform", default="none", choices=("none", "auto"),
                   help="none: 28-px arrays, the backbone resizes inside; auto: the saved input transform "
                        "resizes to 224 px first (what the CLI does)")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    d = load_dataset("mnist", "train", data_dir=args.data_dir)
    x = d.images[d.labels == 3][:args.n_fit + args.n_score]
    det = noveltylab.create("dn2", input_size=224)
    t0 = time.time()
    if "transform" in inspect.signature(det.fit).parameters:
        det.fit(x[:args.n_fit], transform=None if args.transform == "none" else "auto")
    elif args.transform == "none":
        det.fit(x[:args.n_fit])
    else:
        raise SystemExit("this version of noveltylab has no input transform")
    det.score(x[args.n_fit:])
    rec = {
        "kind": "memory-224",
        "rows": [{"method": "dn2", "input_size": 224, "transform": args.transform, "n_fit": args.n_fit,
                  "n_score": args.n_score,
                  "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "seconds": round(time.time() - t0, 1)}],
        "command": "python benchmarks/memory_224.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec["rows"][0]), rec["commit"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
