"""Exact nearest neighbour by SSIM: for every query image, the most similar reference image.

"Exact" means the answer of a brute-force loop over all pairs with float64 SSIM
(``privacy_audit.ssim``), ties going to the lowest reference index (values within
``TIE_TOL`` count as equal). How it gets there much faster than that loop:

1. A seed per query (nearest by L2 on 4x4-pooled images, scored exactly in float64)
   starts its "best so far" high.
2. A compiled loop (``privacy_audit.nn_kernel``) goes over every pair in float32. It
   first bounds the pair's SSIM from per-image statistics alone: luminance, times the
   covariance bounded through two projections of each local patch and their residuals
   (``privacy_audit.nn_patches``), 512 map pixels at a time, and drops the pair as soon
   as the bound falls below the best so far; on the benchmark's head slices 99.3% of
   pairs go without any cross term. The pixels not summed yet are bounded by the
   reference's cluster (``privacy_audit.nn_clusters``: per pixel, the range of its
   members' statistics), so pairs drop early, and a cluster that cannot reach the best
   is skipped whole. The rest get exact SSIM rows, centre first, the uncomputed rows
   still bounded, so most of them stop after a few rows as well.
3. float32 is not exact, so every pair whose float32 value is within ``2 * delta`` of the
   query's float32 best is recomputed in float64 (``privacy_audit.nn_verify``), and the
   answer is taken from those.
   ``delta`` bounds the float32 error of one SSIM value (see :func:`float32_margin`,
   ~4e-3 for [-1, 1] images); pruning uses the same margin, so no pair that could be the
   answer is ever dropped.

Why not prune with a bound from means alone (the luminance term)? On images that share a
layout, such as head slices, it is far too loose. Luminance times contrast (the
structure term at its largest, 1) still let 13% of pairs through to the cross term; the
projected-patch bound lets 0.7% through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from numba import get_num_threads, njit, prange

from privacy_audit.nn_clusters import box_remainders, cluster_references, n_clusters
from privacy_audit.nn_kernel import aligned_maps, centre_first, search_block
from privacy_audit.nn_patches import patch_stats
from privacy_audit.nn_verify import ssim_pairs
from privacy_audit.ssim import RADIUS, as_stack, constants, gaussian_taps

TIE_TOL = 1e-12  # float64 SSIM values closer than this are a tie (lowest index wins)
PSNR_CAP = 100.0  # dB reported for identical images (PSNR is infinite), so JSON stays valid
MAX_RANGE_RATIO = 1e3  # beyond this the kernel's float32 products could overflow
REF_BLOCK = 32  # references whose statistics stay in L2 while a query chunk runs over them (32 x 58 KB at 64 px; 16 measured no faster)
SPAN = 512  # map pixels per stage-1 step: each step costs a check and a sum reduction besides its pixels
BAND_ROWS = 4  # map rows per exact stage-2 step: finer steps stop sooner but check more often
BOX_BLOCK = 16  # clusters whose boxes (4 maps each, 47 KB at 64 px) stay in L2 while a query chunk runs over them
OUT_CELLS = 1 << 24  # at most this many float32 pair values (64 MB) per kernel call
Progress = Callable[[int, int], None]


@dataclass
class NNResult:
    """Per query: ``index`` of the nearest reference, its ``ssim`` and ``psnr`` (float64)."""

    index: np.ndarray
    ssim: np.ndarray
    psnr: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def float32_margin(max_abs: float, data_range: float) -> float:
    """Bound on |SSIM_float32 - SSIM_exact| for pixel magnitudes up to ``max_abs`` (M).

    A map pixel is 2 l (s_xy + C2/2) / (v_x + v_y + C2) with |l| <= 1. The covariance
    s_xy = G*(xy) - mu_x mu_y comes from float32 inputs (error u|x|, u = 2^-24) through
    two 11-tap filter passes (11 non-zero terms each: error <= 11u of the sum of |terms|)
    and a subtraction, so its absolute error is below ~30 u M^2; the factor 2 / (v_x + v_y
    + C2) <= 2 / C2 turns that into < 60 u M^2 / C2 on the pixel, and the luminance factor,
    denominators and the mean over pixels add a few u. The margin is four times that,
    256 u (1 + M^2 / C2); measured errors are far smaller (tests/test_nn_search.py).
    """
    c2 = (0.03 * data_range) ** 2
    u = 2.0**-24
    return 256 * u * (1.0 + max_abs * max_abs / c2)


def argmax_lowest(values: np.ndarray, tol: float = TIE_TOL) -> int:
    """Index of the largest value; among values within ``tol`` of it, the lowest index."""
    v = np.asarray(values, dtype=np.float64)
    return int(np.flatnonzero(v >= v.max() - tol)[0])


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """PSNR in dB with the given data range (capped at PSNR_CAP for identical images)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * np.log10(data_range**2 / mse))


class ReferenceIndex:
    """Reference images with their SSIM statistics, searched by many query sets
    (one per transform in the memorization audit) without recomputing them."""

    def __init__(self, reference: np.ndarray, data_range: float = 2.0) -> None:
        self.images = as_stack(reference, "reference")
        if len(self.images) == 0:
            raise ValueError("reference: no images")
        self.data_range = float(data_range)
        self.max_abs = float(np.abs(self.images).max())  # for every search's float32 margin
        arrays = _side(self.images, self.data_range, query=False)
        self.arrays = _reference_args(arrays)
        self.clusters = cluster_references(arrays["abs"], arrays["sd"], _map_shape(self.images), n_clusters(len(self.images)))
        self.pooled = _pool(arrays["img"])

    def search(self, queries: np.ndarray, *, floor: np.ndarray | None = None, progress: Progress | None = None, block_queries: int = 1024) -> NNResult:
        """Exact nearest reference of every query. With ``floor`` (one value per query),
        pairs that cannot reach it are skipped, and a query whose nearest neighbour is
        below its floor gets index -1 and SSIM -inf (the caller already has better)."""
        t0 = time.perf_counter()
        q64 = as_stack(queries, "queries")
        if q64.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"query images are {q64.shape[1]}x{q64.shape[2]} but reference images are {self.images.shape[1]}x{self.images.shape[2]}")
        n, m = len(q64), len(self.images)
        max_abs = max(float(np.abs(q64).max(initial=0.0)), self.max_abs)
        if max_abs > MAX_RANGE_RATIO * self.data_range:
            raise ValueError(f"pixel values reach {max_abs:g}, over {MAX_RANGE_RATIO:g} times the data range {self.data_range:g}: scale the images or give their real data range")
        qarr = _side(q64, self.data_range, query=True)
        c1, c2 = constants(1.0)
        delta = float32_margin(max_abs, self.data_range)
        slack = 2 * delta + 1e3 * TIE_TOL  # float32 error both ways, and exact ties
        best = np.full(n, -np.inf)
        if floor is not None:
            best = np.asarray(floor, np.float64).reshape(n) - slack
        seed_idx, seed_val = self._seed(q64, qarr["img"])
        best = np.maximum(best, seed_val)
        found = [(np.arange(n), seed_idx, seed_val)]  # (query, reference, SSIM: float64 seeds, then the kernel's float32)
        qargs, qbox = _query_args(qarr), _box_args(qarr)
        h, w = _map_shape(q64)
        spans, bands = centre_first(h * w, SPAN), centre_first(h, BAND_ROWS)
        taps = gaussian_taps().astype(np.float32)
        counts = np.zeros((n, 3), np.int64)
        cl = self.clusters
        block = max(1, min(block_queries, OUT_CELLS // m))  # bounds the float32 `out` buffer
        for qs in range(0, n, block):
            qe = min(n, qs + block)
            out = np.empty((qe - qs, m), np.float32)
            view = best[qs:qe]  # raised in place by the kernel
            qpart = tuple(a[qs:qe] for a in qargs)
            rem = np.empty((qe - qs, len(cl), len(spans) + 1), np.float32)
            box_remainders(*(a[qs:qe] for a in qbox), cl.amin, cl.amax, cl.smin, cl.smax, spans, c1, c2, view, slack, rem, BOX_BLOCK, get_num_threads())
            search_block(*qpart, *self.arrays, cl.order, cl.labels, rem, spans, bands, taps, c1, c2, view, slack, out, counts[qs:qe], REF_BLOCK, get_num_threads())
            qi, ri = np.nonzero(out >= (view - slack)[:, None])
            found.append((qi + qs, ri, out[qi, ri].astype(np.float64)))
            if progress is not None:
                progress(qe, n)
        fq, fr, fv = (np.concatenate(t) for t in zip(*found))
        near = fv >= best[fq] - slack  # drop pairs overtaken since they were found
        pairs = np.unique(np.stack([fq[near], fr[near]], axis=1), axis=0)
        index, ssim_v, psnr_v = self._verify(q64, pairs)
        if floor is not None:  # below its floor a query's answer is not needed (nor exact)
            low = ssim_v < np.asarray(floor, np.float64).reshape(n)
            index[low], ssim_v[low], psnr_v[low] = -1, -np.inf, np.nan
        stats = {
            "pairs": n * m,
            "dropped_by_bound": int(counts[:, 0].sum()),
            "exact_row_fraction": float(counts[:, 1].sum()) / max(1, n * m * h),
            "bound_pixel_fraction": float(counts[:, 2].sum()) / max(1, n * m * h * w),
            "clusters": len(cl),
            "verified_float64": len(pairs),
            "seconds": time.perf_counter() - t0,
            "float32_margin": delta,
        }
        return NNResult(index, ssim_v, psnr_v, stats)

    def _seed(self, q64: np.ndarray, qimg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest reference by L2 on 4x4-pooled images, scored exactly (float64): the first
        "best so far"."""
        if len(qimg) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        pq, pr = _pool(qimg), self.pooled
        norms = (pr * pr).sum(1)[None]
        idx = np.concatenate([(norms - 2 * pq[s : s + 1024] @ pr.T).argmin(dim=1).numpy() for s in range(0, len(pq), 1024)])  # |q|^2 does not change the argmin
        return idx, ssim_pairs(q64, self.images, np.arange(len(idx)), idx, self.data_range, get_num_threads())

    def _verify(self, q64: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float64 SSIM of the candidate (query, reference) pairs (sorted by query); per
        query the maximum (lowest index among ties) is the answer."""
        n = len(q64)
        index, ssim_v, psnr_v = np.full(n, -1, np.int64), np.full(n, -np.inf), np.full(n, np.nan)
        vals = ssim_pairs(q64, self.images, pairs[:, 0], pairs[:, 1], self.data_range, get_num_threads())
        start = 0
        for i, idx in _group(pairs):
            v = vals[start : start + len(idx)]
            start += len(idx)
            k = argmax_lowest(v)
            index[i], ssim_v[i] = idx[k], v[k]
            psnr_v[i] = psnr(q64[i], self.images[idx[k]], self.data_range)
        return index, ssim_v, psnr_v


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray, data_range: float = 2.0, *, progress: Progress | None = None) -> NNResult:
    """Exact SSIM nearest neighbour in ``reference`` of every image in ``queries``.

    Accepts (N, 1, H, W) or (N, H, W) float arrays; returns per query the index of the
    most similar reference image, the SSIM (skimage's Gaussian SSIM) and the PSNR.
    """
    return ReferenceIndex(reference, data_range).search(queries, progress=progress)


def _group(pairs: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(query, reference) rows sorted by query -> [(query, its reference indices)]."""
    if len(pairs) == 0:
        return []
    cuts = np.flatnonzero(np.diff(pairs[:, 0])) + 1
    return [(int(g[0, 0]), g[:, 1]) for g in np.split(pairs, cuts)]


def _map_shape(images: np.ndarray) -> tuple[int, int]:
    """(h, w) of the SSIM map of (N, H, W) images: the valid part of the 11-tap filter."""
    return images.shape[1] - 2 * RADIUS, images.shape[2] - 2 * RADIUS


def _side(images: np.ndarray, data_range: float, *, query: bool, chunk: int = 1024) -> dict[str, np.ndarray]:
    """The kernels' view of one side, float32: images ``img`` scaled to data range 1 (SSIM
    is unchanged when pixels and range scale together; the kernel's products then stay
    finite), and flat maps (N rows of h * w pixels, padded: ``aligned_maps``) of mu, lum
    and con (as ``SsimStats``), the patch coefficients ``a0``, ``a1`` and residual
    ``res`` (``nn_patches``), and (for the cluster boxes) |mu| and sigma. Every map is computed in float64 and rounded once,
    which ``float32_margin`` assumes. On the query side |mu|, sigma, the coefficients and
    the residual are doubled, and ``mu_k`` is 2 mu (the factors 2 of the SSIM formula,
    paid once per query)."""
    n = len(images)
    h, w = _map_shape(images)
    c1, c2 = constants(1.0)
    k = 2.0 if query else 1.0
    names = ("mu", "lum", "con", "a0", "a1", "res", "abs", "sd") + (("mu_k",) if query else ())
    out = {name: aligned_maps(n, h * w) for name in names}
    out["img"] = aligned_maps(n, images.shape[1] * images.shape[2]).reshape(images.shape)
    for s in range(0, n, chunk):
        x = np.asarray(images[s : s + chunk], np.float64) / data_range
        e = s + len(x)
        out["img"][s:e] = x
        mu_k = out["mu_k"][s:e] if query else np.empty((0, h * w), np.float32)
        _derive(patch_stats(x).reshape(len(x), 5, h * w), k, c1, c2, *(out[name][s:e] for name in names[:8]), mu_k)
    return out


@njit(parallel=True, cache=True)
def _derive(st: np.ndarray, k: float, c1: float, c2: float, mu: np.ndarray, lum: np.ndarray, con: np.ndarray, a0: np.ndarray, a1: np.ndarray, res: np.ndarray, amu: np.ndarray, sd: np.ndarray, mu_k: np.ndarray) -> None:
    """The float32 maps of ``_side`` from ``patch_stats``' float64 (mu, var, a0, a1, res),
    each rounded once; ``mu_k`` may be empty (the reference side has none)."""
    for i in prange(st.shape[0]):
        for e in range(st.shape[2]):
            m, v = st[i, 0, e], st[i, 1, e]
            mu[i, e], lum[i, e], con[i, e] = m, m * m + c1 / 2, v + c2 / 2
            a0[i, e], a1[i, e], res[i, e] = k * st[i, 2, e], k * st[i, 3, e], k * st[i, 4, e]
            amu[i, e], sd[i, e] = k * abs(m), k * np.sqrt(v)
        if mu_k.shape[0]:
            for e in range(st.shape[2]):
                mu_k[i, e] = k * st[i, 0, e]


def _query_args(a: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """search_block's query arguments, in its order."""
    return tuple(a[k] for k in ("img", "mu", "mu_k", "lum", "con", "a0", "a1", "res"))


def _reference_args(a: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """search_block's reference arguments, in its order."""
    return tuple(a[k] for k in ("img", "mu", "lum", "con", "a0", "a1", "res"))


def _box_args(a: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """box_remainders' query arguments, in its order (doubled |mu| and sigma, lum, con)."""
    return tuple(a[k] for k in ("abs", "sd", "lum", "con"))


def _pool(images: np.ndarray) -> torch.Tensor:
    """4x4 average pooling, flattened: the cheap proxy that picks each query's seed."""
    return F.avg_pool2d(torch.from_numpy(images)[:, None], 4, ceil_mode=True).flatten(1)
