"""Benchmark: exact SSIM nearest-neighbour search vs a brute-force skimage loop.

Images: the bundled demo slices (CT and MRI heads), not noise. Reference ("real") images
are demo slices under small random similarity transforms and gamma changes (neighbouring
slices, other positions); queries ("synthetic") are demo slices warped elastically,
blurred and noised, i.e. near the data but not copies, as a GAN's output is. White noise
would make every pair equally dissimilar and say nothing about how pruning behaves.

The 10,000 x 10,000 time is measured on ``--n-queries`` queries against the full
reference set and scaled linearly in the number of queries (each query is searched on
its own, so the cost is additive); ``--n-queries 10000`` measures it outright.

Run: ``python benchmarks/bench_nn_ssim.py [--size 64] [--n-queries 200] [--n-reference 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate (+-6 deg), scale (+-6%), shift (+-3 px) and change gamma: another slice of a
    similar head, seen slightly differently."""
    h = x.shape[0]
    c = (h - 1) / 2
    a, s = np.deg2rad(rng.uniform(-6, 6)), 1 + rng.uniform(-0.06, 0.06)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / s
    off = np.array([c, c]) - rot @ (np.array([c, c]) + rng.uniform(-3, 3, 2))
    y = ndimage.affine_transform(x, rot, offset=off, order=1, mode="constant", cval=-1.0)
    return (2 * np.clip((y + 1) / 2, 0, 1) ** rng.uniform(0.85, 1.15) - 1).astype(np.float32)


def gan_like(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Elastic warp (<= 2 px), blur and noise on top of :func:`augment`."""
    y = augment(x, rng)
    h = y.shape[0]
    d = [ndimage.gaussian_filter(rng.normal(size=(h, h)), 6.0) for _ in range(2)]
    d = [2.0 * v / (np.abs(v).max() + 1e-9) for v in d]
    yy, xx = np.mgrid[:h, :h].astype(float)
    y = ndimage.map_coordinates(y, [yy + d[0], xx + d[1]], order=1, mode="constant", cval=-1.0)
    y = ndimage.gaussian_filter(y, rng.uniform(0.4, 0.9)) + rng.normal(0, 0.03, y.shape)
    return np.clip(y, -1, 1).astype(np.float32)


def skimage_pairs_per_second(q: np.ndarray, r: np.ndarray, seconds: float = 5.0) -> float:
    """The baseline: skimage's structural_similarity, one pair at a time."""
    from skimage.metrics import structural_similarity

    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        structural_similarity(q[n % len(q)], r[n % len(r)], data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n-queries", type=int, default=200)
    ap.add_argument("--n-reference", type=int, default=10_000)
    ap.add_argument("--target-queries", type=int, default=10_000, help="query count the time is scaled to")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from privacy_audit.nn_compile import prefer_wide_vectors

    wide = prefer_wide_vectors()  # before numba is imported, as the CLI does
    import torch

    from client.loaders import load_demo
    from privacy_audit.nn_search import ReferenceIndex

    rng = np.random.default_rng(args.seed)
    base = load_demo(args.size).images[:, 0]
    t = time.perf_counter()
    ref = np.stack([augment(base[i], rng) for i in rng.integers(0, len(base), args.n_reference)])
    queries = np.stack([gan_like(base[i], rng) for i in rng.integers(0, len(base), args.n_queries)])
    build_s = time.perf_counter() - t
    load_before = os.getloadavg()
    baseline = skimage_pairs_per_second(queries.astype(np.float64), ref[:500].astype(np.float64))
    t = time.perf_counter()
    ReferenceIndex(ref[:64]).search(queries[:2])  # numba compiles (or loads its cache) here, not in the timing
    warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    index = ReferenceIndex(ref)
    index_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    res = index.search(queries)
    search_s, search_cpu = time.perf_counter() - t, time.process_time() - cpu
    pairs = args.n_queries * args.n_reference
    pps = pairs / search_s
    target = index_s + search_s * args.target_queries / args.n_queries
    out = {
        "image_size": args.size,
        "images": "demo slices: reference = similarity-transformed + gamma; queries = warped, blurred, noised (GAN-like)",
        "n_queries_measured": args.n_queries,
        "n_reference": args.n_reference,
        "pairs_measured": pairs,
        "index_seconds": round(index_s, 2),
        "search_seconds": round(search_s, 2),
        "search_cpu_seconds": round(search_cpu, 2),  # all threads; less sensitive than wall time to a busy host
        "pairs_per_second": round(pps),
        "dropped_by_bound_fraction": round(res.stats["dropped_by_bound"] / pairs, 4),
        "exact_row_fraction": round(res.stats["exact_row_fraction"], 4),
        "bound_pixel_fraction": round(res.stats["bound_pixel_fraction"], 4),
        "reference_clusters": res.stats["clusters"],
        "verified_float64_pairs": res.stats["verified_float64"],
        "nn_ssim_quantiles_5_50_95": [round(float(v), 3) for v in np.quantile(res.ssim, [0.05, 0.5, 0.95])],
        f"time_{args.target_queries}x{args.n_reference}_seconds": round(target, 1),
        "time_is_extrapolated": args.n_queries != args.target_queries,
        "skimage_loop_pairs_per_second": round(baseline, 1),
        "speedup_vs_skimage": round(pps / baseline, 1),
        "torch_threads": torch.get_num_threads(),
        "numba_512_bit_vectors": wide or "-prefer-256-bit" in os.environ.get("NUMBA_CPU_FEATURES", ""),
        "loadavg_1_5_15_before": [round(v, 2) for v in load_before],
        "loadavg_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
        "data_build_seconds": round(build_s, 1),
        "compile_or_cache_load_seconds": round(warmup_s, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
