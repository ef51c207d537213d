"""Reference clusters for the SSIM search: groups of similar references, each with a box
(per map pixel, the range of |mu| and of sigma over its members).

Why: the stage-1 bound of a pair (``nn_kernel._pixel_bound`` summed over the map) is
only worth computing pixel by pixel where it can drop the pair. It never exceeds
``|l| c``, and each of that bound's two factors is largest when the reference statistic
equals the query's (see ``nn_kernel.box_remainders``), so over a box the largest value
is reached at the query's value clamped into the box. One pass per (query, cluster) then
bounds every member at once: a cluster whose bound is below the query's best so far is
skipped whole, and for the others the box bound of the pixels not seen yet replaces the
old "at most 1 per pixel", so pairs drop after fewer pixels.

Clustering only changes how fast the search is, never its answer: any grouping gives
valid boxes. k-means on 4x4-pooled statistics is cheap and groups references with the
same layout, which keeps the boxes narrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange

from privacy_audit.nn_kernel import FASTMATH, ZERO, Arr, aligned_maps

MAX_CLUSTERS = 512  # the cost of the box pass grows with clusters x queries
MEMBERS = 16  # references per cluster on average, for smaller reference sets
ITERATIONS = 8  # k-means steps: boxes barely narrow after this


@dataclass
class Clusters:
    """``order[i]``: the reference at kernel position i (members of a cluster are adjacent);
    ``labels[i]``: its cluster; ``amin``/``amax`` and ``smin``/``smax``: (K, h * w) float32
    boxes of |mu| and sigma."""

    order: np.ndarray
    labels: np.ndarray
    amin: np.ndarray
    amax: np.ndarray
    smin: np.ndarray
    smax: np.ndarray

    def __len__(self) -> int:
        return len(self.amin)


def n_clusters(m: int) -> int:
    """About MEMBERS references per cluster, at most MAX_CLUSTERS."""
    return max(1, min(MAX_CLUSTERS, m // MEMBERS))


def cluster_references(absmu: np.ndarray, sd: np.ndarray, shape: tuple[int, int], k: int, seed: int = 0) -> Clusters:
    """Cluster references (flat maps of |mu| and sigma: rows of h * w pixels, possibly
    padded) into at most ``k`` groups; boxes come as ``aligned_maps``."""
    m, p = len(absmu), shape[0] * shape[1]
    a, s = torch.from_numpy(absmu[:, :p]), torch.from_numpy(sd[:, :p])
    x = torch.cat([_pooled(a, shape), _pooled(s, shape)], 1)
    labels = _kmeans(x, min(k, m), seed)
    labels = torch.unique(labels, return_inverse=True)[1]  # no empty clusters
    order = torch.argsort(labels, stable=True)
    labels = labels[order]
    nk = int(labels[-1]) + 1 if m else 0
    idx = labels[:, None].expand(m, p)

    def box(v: torch.Tensor, how: str) -> np.ndarray:
        init = torch.full((nk, p), float("inf") if how == "amin" else float("-inf"))
        out = aligned_maps(nk, p)
        out[:, :p] = init.scatter_reduce(0, idx, v[order], how).numpy()
        return out

    return Clusters(order.numpy(), labels.numpy(), box(a, "amin"), box(a, "amax"), box(s, "amin"), box(s, "amax"))


def one_cluster(m: int, p: int) -> Clusters:
    """Every reference in one unbounded box: the search without clusters (tests)."""
    lo, hi = np.zeros((1, p), np.float32), np.full((1, p), np.inf, np.float32)
    return Clusters(np.arange(m), np.zeros(m, np.int64), lo, hi, lo, hi)


def _pooled(v: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return F.avg_pool2d(v.reshape(-1, 1, *shape), 4, ceil_mode=True).flatten(1)


def _kmeans(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Lloyd's k-means from k distinct random points (seeded: the same clusters every run)."""
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(ITERATIONS):
        labels = _nearest(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        count = torch.bincount(labels, minlength=k)
        keep = count > 0
        centres[keep] = sums[keep] / count[keep, None]
    return _nearest(x, centres)


def _nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    return ((centres * centres).sum(1)[None] - 2 * x @ centres.T).argmin(1)


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def box_remainders(qa2: Arr, qs2: Arr, qlum: Arr, qcon: Arr, amin: Arr, amax: Arr, smin: Arr, smax: Arr, spans: Arr, c1: float, c2: float, best: Arr, slack: float, rem: Arr, cluster_block: int, nthreads: int) -> None:
    """rem[q, k, c]: the most that spans c, c + 1, ... of the |l| c map can add up to for
    query q and any reference whose |mu| and sigma lie in cluster k's box
    (``rem[q, k, nspans] = 0``); ``rem[q, k, 0] = -inf`` when the whole cluster is below the
    query's best - slack. It bounds every member's stage-1 sum too, which never exceeds
    its |l| c.

    For fixed a >= 0, (2ab + C1) / (a^2 + b^2 + C1) has derivative in b of sign (a - b) for
    b >= 0, so over b in [lo, hi] it peaks at b = clamp(a, lo, hi); likewise the contrast
    factor in sigma. The box bound is the pair bound at that virtual reference.
    """
    nq, nk, nspans = qa2.shape[0], amin.shape[0], spans.shape[0]
    p_total = 0  # the map's pixels (rows may be padded past them: aligned_maps)
    for c in range(nspans):
        p_total += spans[c, 1] - spans[c, 0]
    c1f, c2f = np.float32(c1), np.float32(c2)
    h1, h2 = np.float32(c1 / 2), np.float32(c2 / 2)
    half = np.float32(0.5)
    for t in prange(nthreads):  # as search_block: every nthreads-th query, no barrier
        for kb in range(0, nk, cluster_block):
            for qi in range(t, nq, nthreads):
                floor = best[qi] - slack
                for k in range(kb, min(nk, kb + cluster_block)):
                    seen, acc, below = 0, 0.0, False
                    rem[qi, k, nspans] = ZERO
                    for c in range(nspans):
                        a, b = np.uint64(spans[c, 0]), np.uint64(spans[c, 1])
                        s = ZERO
                        for e in range(a, b):  # |l| c at the clamped virtual reference
                            va = min(max(half * qa2[qi, e], amin[k, e]), amax[k, e])
                            vs = min(max(half * qs2[qi, e], smin[k, e]), smax[k, e])
                            s += (qa2[qi, e] * va + c1f) * (qs2[qi, e] * vs + c2f) / ((qlum[qi, e] + va * va + h1) * (qcon[qi, e] + vs * vs + h2))
                        rem[qi, k, c] = s
                        seen += spans[c, 1] - spans[c, 0]
                        acc += s
                        below = (acc + (p_total - seen)) / p_total < floor
                        if below:
                            break
                    if below:
                        rem[qi, k, 0] = -np.inf
                        continue
                    for c in range(nspans - 1, -1, -1):  # suffix sums
                        rem[qi, k, c] += rem[qi, k, c + 1]
