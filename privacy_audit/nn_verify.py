"""float64 SSIM of (query, reference) index pairs, compiled: the values that decide the
nearest-neighbour search (its seeds and its float64 verification).

Why not ``privacy_audit.ssim.pair_ssim``: a pair there needs both images' statistics,
recomputed per batch of pairs with dense filter matrices (64 multiply-adds per output
where the Gaussian has 11 taps), which made verification up to a tenth of the whole
search at 10k x 10k. Here each pair is filtered once, separably, with the 11 taps. Same
formula and float64 throughout (``prepare``'s clamp of the variance at 0 included), so
values agree with ``pair_ssim`` to rounding (measured below 1e-14), far inside the
search's tie tolerance.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from privacy_audit.nn_kernel import TAPS  # a compile-time constant: LLVM unrolls the tap loops and vectorizes along the row
from privacy_audit.ssim import constants, gaussian_taps


@njit(parallel=True, fastmath={"contract", "reassoc", "nsz"}, error_model="numpy", cache=True)
def _pairs_kernel(qimg: np.ndarray, rimg: np.ndarray, qi: np.ndarray, ri: np.ndarray, g: np.ndarray, c1: float, c2: float, nthreads: int, out: np.ndarray) -> None:
    """out[p] = SSIM(qimg[qi[p]], rimg[ri[p]]): valid separable filtering of x, y, x^2,
    y^2 and xy, then the mean of the map. Each thread takes every nthreads-th pair with
    its own scratch."""
    _, hh, ww = qimg.shape
    h, w = hh - TAPS + 1, ww - TAPS + 1
    npairs = qi.shape[0]
    for t in prange(nthreads):
        x, y = np.empty(ww), np.empty(ww)
        hx, hy, hxx, hyy, hxy = np.empty((hh, w)), np.empty((hh, w)), np.empty((hh, w)), np.empty((hh, w)), np.empty((hh, w))
        for p in range(t, npairs, nthreads):
            a, b = qi[p], ri[p]
            for r in range(hh):  # horizontal pass
                for j in range(ww):
                    x[j], y[j] = qimg[a, r, j], rimg[b, r, j]
                for j in range(w):
                    s0 = s1 = s2 = s3 = s4 = 0.0
                    for k in range(TAPS):
                        u, v = x[j + k], y[j + k]
                        s0 += g[k] * u
                        s1 += g[k] * v
                        s2 += g[k] * (u * u)
                        s3 += g[k] * (v * v)
                        s4 += g[k] * (u * v)
                    hx[r, j], hy[r, j], hxx[r, j], hyy[r, j], hxy[r, j] = s0, s1, s2, s3, s4
            s = 0.0
            for r in range(h):  # vertical pass and the map
                for j in range(w):
                    mx = my = exx = eyy = exy = 0.0
                    for k in range(TAPS):
                        mx += g[k] * hx[r + k, j]
                        my += g[k] * hy[r + k, j]
                        exx += g[k] * hxx[r + k, j]
                        eyy += g[k] * hyy[r + k, j]
                        exy += g[k] * hxy[r + k, j]
                    vx, vy = max(exx - mx * mx, 0.0), max(eyy - my * my, 0.0)
                    num = (2.0 * (mx * my) + c1) * (2.0 * (exy - mx * my) + c2)
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
