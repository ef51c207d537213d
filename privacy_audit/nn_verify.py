"""float64 SSIM of (query, reference) index pairs, compiled: the values that decide the
nearest-neighbour search (its seeds and its float64 verification).

Why not ``privacy_audit.ssim.pair_ssim``: a pair there needs both images' statistics,
recomputed per batch of pairs with dense filter matrices (64 multiply-adds per output
where the Gaussian has 11 taps), which made verification a tenth of the whole search at
10k x 10k. Here each pair is filtered once, separably, with the 11 taps. Same formula
and float64 throughout (``prepare``'s clamp of the variance at 0 included), so values
agree with ``pair_ssim`` to rounding (~1e-16), far inside the search's tie tolerance.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from privacy_audit.ssim import constants, gaussian_taps


@njit(parallel=True, fastmath={"contract", "reassoc", "nsz"}, error_model="numpy", cache=True)
def _pairs_kernel(qimg: np.ndarray, rimg: np.ndarray, qi: np.ndarray, ri: np.ndarray, g: np.ndarray, c1: float, c2: float, nthreads: int, out: np.ndarray) -> None:
    """out[p] = SSIM(qimg[qi[p]], rimg[ri[p]]): valid separable filtering of x, y, x^2,
    y^2 and xy, then the mean of the map. Each thread takes every nthreads-th pair with
    its own scratch rows."""
    _, hh, ww = qimg.shape
    taps = g.shape[0]
    h, w = hh - taps + 1, ww - taps + 1
    npairs = qi.shape[0]
    for t in prange(nthreads):
        hb = np.empty((5, hh, w))
        v = np.empty((5, w))
        for p in range(t, npairs, nthreads):
            a, b = qi[p], ri[p]
            hb[:] = 0.0
            for r in range(hh):
                for k in range(taps):
                    for j in range(w):
                        x = np.float64(qimg[a, r, j + k])
                        y = np.float64(rimg[b, r, j + k])
                        hb[0, r, j] += g[k] * x
                        hb[1, r, j] += g[k] * y
                        hb[2, r, j] += g[k] * (x * x)
                        hb[3, r, j] += g[k] * (y * y)
                        hb[4, r, j] += g[k] * (x * y)
            s = 0.0
            for r in range(h):
                v[:] = 0.0
                for k in range(taps):
                    for f in range(5):
                        for j in range(w):
                            v[f, j] += g[k] * hb[f, r + k, j]
                for j in range(w):
                    mx, my = v[0, j], v[1, j]
                    vx, vy = max(v[2, j] - mx * mx, 0.0), max(v[3, j] - my * my, 0.0)
                    num = (2.0 * (mx * my) + c1) * (2.0 * (v[4, j] - mx * my) + c2)
                    s += num / ((mx * mx + my * my + c1) * (vx + vy + c2))
            out[p] = s / (h * w)


def ssim_pairs(queries: np.ndarray, reference: np.ndarray, qi: np.ndarray, ri: np.ndarray, data_range: float, nthreads: int) -> np.ndarray:
    """float64 SSIM of the pairs (queries[qi[p]], reference[ri[p]]), images (N, H, W)."""
    c1, c2 = constants(data_range)
    qi, ri = np.ascontiguousarray(qi, np.int64), np.ascontiguousarray(ri, np.int64)
    out = np.empty(len(qi))
    if len(qi):
        _pairs_kernel(np.ascontiguousarray(queries), np.ascontiguousarray(reference), qi, ri, gaussian_taps(), c1, c2, nthreads, out)
    return out
