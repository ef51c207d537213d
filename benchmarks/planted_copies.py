"""Planted-copy recall and held-out false-positive rate of the memorization audit.

Into a set of new, GAN-like images (warped, blurred, noised held-out slices) it plants
training images as exact copies, mirrored copies, copies shifted by 2 px and copies with
Gaussian noise (sigma 0.02 and 0.05 on [-1, 1]); prints one JSON object per image size.

Run: ``python benchmarks/planted_copies.py [--sizes 32 64] [--k 40] [--fresh 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--k", type=int, default=40, help="planted copies per kind")
    ap.add_argument("--fresh", type=int, default=100, help="new (non-copy) synthetic images")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from client.loaders import load_demo
    from tests.test_memorization import recall_report

    for size in args.sizes:
        t = time.perf_counter()
        recall, holdout_rate, report = recall_report(load_demo(size), k=args.k, n_fresh=args.fresh)
        print(json.dumps({
            "image_size": size,
            "planted_per_kind": args.k,
            "fresh_synthetic": args.fresh,
            "recall": recall,
            "holdout_flagged_fraction": holdout_rate,
            "threshold": round(report["threshold"], 4),
            "threshold_source": report["threshold_source"],
            "verdict_passed": report["passed"],
            "seconds": round(time.perf_counter() - t, 1),
        }))


if __name__ == "__main__":
    main()
