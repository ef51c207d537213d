"""Exact nearest neighbour by SSIM: for every query image, the most similar reference image.

"Exact" means the answer of a brute-force loop over all pairs with float64 SSIM
(``privacy_audit.ssim``), ties going to the lowest reference index (values within
``TIE_TOL`` count as equal). How it gets there faster than that loop:

1. Every pair is screened in float32, in blocks of queries x references, with the
   per-image statistics computed once (only the cross term ``G * (x y)`` is per pair).
2. Early termination: the SSIM map is summed over a central band of rows first. Every
   map pixel is <= 1, so ``(band sum + pixels not yet summed) / P`` is an upper bound
   on the pair's SSIM; a pair whose bound is below the query's best so far is dropped
   without computing the rest of its map. A seed candidate per query (nearest by L2 on
   4x4-pooled images, scored exactly) starts the "best so far" high.
3. float32 is not exact, so every pair whose float32 value is within ``2 * delta`` of the
   query's float32 best is recomputed in float64, and the answer is taken from those.
   ``delta`` bounds the float32 error of one SSIM value (see :func:`float32_margin`,
   ~4e-3 for [-1, 1] images); pruning uses the same margin, so no pair that could be the
   answer is ever dropped.

Why not prune harder with bounds from local means and variances alone (the luminance
and contrast terms)? On realistic images they bound the SSIM far too loosely: measured
on slices of the demo set, ``mean(|l| * c)`` still leaves ~28% of pairs above the true
nearest neighbour, and costs as much per pixel as the exact map once the cross term is a
matrix product. The structure term is what separates images, and it needs the pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from privacy_audit.ssim import RADIUS, SsimStats, as_stack, pair_ssim, prepare

TIE_TOL = 1e-12  # float64 SSIM values closer than this are a tie (lowest index wins)
PSNR_CAP = 100.0  # dB reported for identical images (PSNR is infinite), so JSON stays valid
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

    def __init__(self, reference: np.ndarray, data_range: float = 2.0, *, device: str = "cpu") -> None:
        self.images = as_stack(reference, "reference")
        if len(self.images) == 0:
            raise ValueError("reference: no images")
        self.data_range = float(data_range)
        self.device = torch.device(device)
        self.stats = _float32(prepare(self.images, data_range, torch.float64), self.device)
        self.pooled = _pool(self.stats.images)

    def search(self, queries: np.ndarray, *, floor: np.ndarray | None = None, progress: Progress | None = None, block_queries: int = 16, block_refs: int = 64) -> NNResult:
        """Exact nearest reference of every query. With ``floor`` (one value per query),
        pairs that cannot reach it are skipped, and a query whose nearest neighbour is
        below its floor gets index -1 and SSIM -inf (the caller already has better)."""
        t0 = time.perf_counter()
        q64 = as_stack(queries, "queries")
        if q64.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"query images are {q64.shape[1]}x{q64.shape[2]} but reference images are {self.images.shape[1]}x{self.images.shape[2]}")
        n, m = len(q64), len(self.images)
        q = _float32(prepare(q64, self.data_range, torch.float64), self.device)
        delta = float32_margin(max(float(np.abs(q64).max(initial=0.0)), float(np.abs(self.images).max())), self.data_range)
        slack = 2 * delta + 1e3 * TIE_TOL  # float32 error both ways, and exact ties
        best = torch.full((n,), -np.inf, dtype=torch.float64)
        if floor is not None:
            best = torch.as_tensor(np.asarray(floor, np.float64) - slack).reshape(n)
        seed_idx, seed_val = self._seed(q) if n else (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64))
        best = torch.maximum(best, seed_val)
        found = [(torch.arange(n), seed_idx, seed_val)]  # (query, reference, float32 SSIM)
        h, w = q.mu.shape[1:]
        band = (h // 5, h - h // 5)  # central rows first: where images differ most
        pruned = 0
        for qs in range(0, n, block_queries):
            qsl = slice(qs, min(n, qs + block_queries))
            for rs in range(0, m, block_refs):
                rsl = slice(rs, min(m, rs + block_refs))
                vals, dropped = self._block(q, qsl, rsl, band, best[qsl], slack)
                pruned += dropped
                best[qsl] = torch.maximum(best[qsl], vals.max(dim=1).values)
                qi, ri = torch.nonzero(vals >= (best[qsl] - slack)[:, None], as_tuple=True)
                found.append((qi + qs, ri + rs, vals[qi, ri]))
            if progress is not None:
                progress(qsl.stop, n)
        fq, fr, fv = (torch.cat(t) for t in zip(*found))
        near = fv >= best[fq] - slack  # drop pairs overtaken since they were found
        pairs = torch.unique(torch.stack([fq[near], fr[near]]).T, dim=0).numpy()
        index, ssim_v, psnr_v = self._verify(q64, pairs)
        if floor is not None:  # below its floor a query's answer is not needed (nor exact)
            low = ssim_v < np.asarray(floor, np.float64).reshape(n)
            index[low], ssim_v[low], psnr_v[low] = -1, -np.inf, np.nan
        stats = {"pairs": n * m, "pruned_early": pruned, "verified_float64": len(pairs), "seconds": time.perf_counter() - t0, "float32_margin": delta}
        return NNResult(index, ssim_v, psnr_v, stats)

    def _seed(self, q: SsimStats) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest reference by L2 on 4x4-pooled images, scored exactly: the first "best so far"."""
        pq = _pool(q.images)
        d = (pq * pq).sum(1)[:, None] - 2 * pq @ self.pooled.T + (self.pooled * self.pooled).sum(1)[None]
        idx = d.argmin(dim=1)
        vals = [pair_ssim(q, self.stats, torch.arange(s, min(s + 512, len(idx))), idx[s : s + 512]) for s in range(0, len(idx), 512)]
        return idx.cpu(), torch.cat(vals).double().cpu()

    def _block(self, q: SsimStats, qsl: slice, rsl: slice, band: tuple[int, int], best: torch.Tensor, slack: float) -> tuple[torch.Tensor, int]:
        """float32 SSIM of a block of queries x references; pairs dropped early get -inf."""
        r = self.stats
        h, w = q.mu.shape[1:]
        a, b = band
        part = _band_sum(q, _side(q, qsl, a, b, 1), _side(r, rsl, a, b, 0), a, b)
        bound = (part + (h - (b - a)) * w) / (h * w)
        alive = bound.double() >= (best - slack).to(bound.device)[:, None]
        out = torch.full(part.shape, -np.inf, dtype=torch.float64)
        qi, ri = torch.nonzero(alive, as_tuple=True)
        if len(qi):
            gq, gr = qi + qsl.start, ri + rsl.start
            rest = _band_sum(q, _side(q, gq, 0, a), _side(r, gr, 0, a), 0, a) + _band_sum(q, _side(q, gq, b, h), _side(r, gr, b, h), b, h)
            out[qi.cpu(), ri.cpu()] = ((part[qi, ri] + rest) / (h * w)).double().cpu()
        return out, int(part.numel() - len(qi))

    def _verify(self, q64: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float64 SSIM of the candidate (query, reference) pairs; per query the maximum
        (lowest index among ties) is the answer."""
        n = len(q64)
        index, ssim_v, psnr_v = np.full(n, -1, np.int64), np.full(n, -np.inf), np.full(n, np.nan)
        for i, idx in _group(pairs):
            vals = _ssim64(q64[i], self.images[idx], self.data_range)
            k = argmax_lowest(vals)
            index[i], ssim_v[i] = idx[k], vals[k]
            psnr_v[i] = psnr(q64[i], self.images[idx[k]], self.data_range)
        return index, ssim_v, psnr_v


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray, data_range: float = 2.0, *, device: str = "cpu", progress: Progress | None = None) -> NNResult:
    """Exact SSIM nearest neighbour in ``reference`` of every image in ``queries``.

    Accepts (N, 1, H, W) or (N, H, W) float arrays; returns per query the index of the
    most similar reference image, the SSIM (skimage's Gaussian SSIM) and the PSNR.
    """
    return ReferenceIndex(reference, data_range, device=device).search(queries, progress=progress)


def _group(pairs: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(query, reference) rows sorted by query -> [(query, its reference indices)]."""
    if len(pairs) == 0:
        return []
    cuts = np.flatnonzero(np.diff(pairs[:, 0])) + 1
    return [(int(g[0, 0]), g[:, 1]) for g in np.split(pairs, cuts)]


def _ssim64(a: np.ndarray, refs: np.ndarray, data_range: float) -> np.ndarray:
    """float64 SSIM of one image against a few references (the deciding values)."""
    sa, sr = prepare(a[None], data_range, torch.float64), prepare(refs, data_range, torch.float64)
    out = [pair_ssim(sa, sr, torch.zeros(min(512, len(refs) - s), dtype=torch.long), torch.arange(s, min(s + 512, len(refs)))) for s in range(0, len(refs), 512)]
    return torch.cat(out).numpy()


def _float32(st: SsimStats, device: torch.device) -> SsimStats:
    """Statistics computed in float64, stored in float32 (one rounding, not a float32 filter)."""
    def f(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=torch.float32)

    return SsimStats(f(st.images), f(st.mu), f(st.var), f(st.lum), f(st.con), f(st.kh), f(st.kv), st.c1, st.c2)


def _pool(images: torch.Tensor) -> torch.Tensor:
    """4x4 average pooling, flattened: the cheap proxy that picks each query's seed."""
    return F.avg_pool2d(images[:, None], 4, ceil_mode=True).flatten(1)


def _side(st: SsimStats, sel: slice | torch.Tensor, a: int, b: int, dim: int | None = None) -> tuple[torch.Tensor, ...]:
    """One side of a pair batch for map rows [a, b): image rows [a, b + 10) and the
    statistics' rows [a, b); ``dim`` inserts a broadcast axis (block mode)."""
    rows, out = slice(a, b + 2 * RADIUS), slice(a, b)
    t = (st.images[sel, rows], st.mu[sel, out], st.lum[sel, out], st.con[sel, out])
    return t if dim is None else tuple(v.unsqueeze(dim) for v in t)


def _band_sum(st: SsimStats, xs: tuple[torch.Tensor, ...], ys: tuple[torch.Tensor, ...], a: int, b: int) -> torch.Tensor:
    """Sum of the SSIM map over rows [a, b) for the pairs of ``xs`` x ``ys`` (broadcast)."""
    x, mx, lx, cx = xs
    y, my, ly, cy = ys
    prod = x * y
    lead = prod.shape[:-2]
    if b <= a:
        return torch.zeros(lead, dtype=prod.dtype, device=prod.device)
    hor = prod.reshape(-1, *prod.shape[-2:]) @ st.kh
    cross = (st.kv[a:b, a : b + 2 * RADIUS] @ hor).view(*lead, b - a, -1)
    s = torch.addcmul(torch.tensor(st.c1, dtype=cross.dtype, device=cross.device), mx, my, value=2.0)  # 2 mu_x mu_y + C1
    num = cross.sub_(s, alpha=0.5).add_((st.c1 + st.c2) / 2).mul_(s)  # half the map's numerator
    den = torch.add(lx, ly).mul_(torch.add(cx, cy))
    return num.div_(den).sum(dim=(-2, -1)) * 2.0
