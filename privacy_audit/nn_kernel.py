"""Compiled (numba) inner loop of the exact SSIM nearest-neighbour search on the CPU.

Each (query, reference) pair goes through two stages, in float32, while both images'
data are in cache:

1. A bound from per-image statistics alone. Every SSIM map pixel is
   ``l (2 cov + C2) / (var_x + var_y + C2)``, and the covariance lies within
   ``a_x . a_y +- res_x res_y`` (``nn_patches``: two projections of the local patch and
   the residual norm, by Cauchy-Schwarz), so the map is bounded pixel by pixel with no
   cross term. The bound is summed span by span (512 map pixels each, centre first); a
   pair is dropped as soon as the spans summed so far, plus what the spans not yet seen
   can add for any reference in its cluster (``nn_clusters.box_remainders``, from the looser
   ``|l| c`` with ``|cs| <= c``), fall below the query's best so far. On the benchmark's
   head slices this drops 99.3% of pairs with no cross term, after about 30% of their
   pixels.
2. The pairs left, highest bound first, get the exact SSIM map (the cross term
   ``G * (x y)`` with the 11-tap Gaussian, separably) in bands of a few rows, centre
   first; the rows not computed yet are still bounded as in stage 1, so most pairs stop
   after a band or two.

Stage 1's float32 error is a few ulps of each pixel's bound (its one signed sum,
``2 a . a' + C2``, is scaled by at most ``1 / (var_x + var_y + C2)``); stage 2 is the
float32 map whose error ``float32_margin`` bounds. The caller verifies the surviving
candidates in float64, so the answer is exact as long as no pair that could win is
dropped: every comparison is against ``best - slack``, with ``slack`` at least twice
that margin. Images must be scaled to data range 1 (SSIM is invariant to scaling pixels
and data range together) so that products stay finite.

numba compiles this once per machine and caches the machine code next to this file (or
in ``NUMBA_CACHE_DIR``); the first search in a fresh environment compiles for about 40 s (2 cores).
Array arguments are indexed, never sliced, in the loops: a slice costs an atomic
reference count, which two threads sharing the reference arrays would contend on.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# No 'afn' (approximate functions), no 'nnan'/'ninf': the bound must stay a bound.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
TAPS = 11  # 2 * RADIUS + 1, fixed by skimage's sigma=1.5, truncate=3.5
_TWO = np.float32(2.0)  # float32 constants: an integer literal would promote loops to float64
ZERO = np.float32(0.0)
_UTAPS = np.uint64(TAPS)  # unsigned indices let numba skip its negative-index checks, so loops vectorize
Arr = np.ndarray  # numba types the arguments itself; the hints are for readers
F32 = np.float32


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _pixel_bound(qm2: Arr, ql: Arr, qc: Arr, qa0: Arr, qa1: Arr, qr: Arr, rmu: Arr, rcon: Arr, ra0: Arr, ra1: Arr, rr: Arr, qi: int, rj: int, e: int, h1: F32, c1: F32, c2: F32) -> tuple[F32, F32]:
    """(numerator, denominator) of map pixel e's bound for pair (qi, rj):
    ``(L (2 a.a' + C2) + |L| 2 res res') / ((mu^2 + mu'^2 + C1) (var + var' + C2))`` with
    ``L = 2 mu mu' + C1`` (``nn_patches``: the covariance bounded through the patch
    projections a and residuals res). The query side comes doubled (2 mu, 2 a, 2 res) with
    lum and con; the reference's lum is recomputed from mu (one stream fewer)."""
    lu = qm2[qi, e] * rmu[rj, e] + c1
    num = lu * (qa0[qi, e] * ra0[rj, e] + qa1[qi, e] * ra1[rj, e] + c2) + abs(lu) * (qr[qi, e] * rr[rj, e])
    return num, (ql[qi, e] + rmu[rj, e] * rmu[rj, e] + h1) * (qc[qi, e] + rcon[rj, e])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _bound_sum(qm2: Arr, ql: Arr, qc: Arr, qa0: Arr, qa1: Arr, qr: Arr, rmu: Arr, rcon: Arr, ra0: Arr, ra1: Arr, rr: Arr, qi: int, rj: int, start: int, n: int, h1: F32, c1: F32, c2: F32) -> F32:
    """Sum of the map bound (``_pixel_bound``) over flat map pixels [start, start + n) of
    pair (qi, rj). Two pixels share one division."""
    half = np.uint64(n // 2)
    first = np.uint64(start)
    s = ZERO
    for k in range(half):
        e = first + k
        n1, d1 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, qi, rj, e, h1, c1, c2)
        n2, d2 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, qi, rj, e + half, h1, c1, c2)
        s += (n1 * d2 + n2 * d1) / (d1 * d2)
    if n % 2:
        n1, d1 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, qi, rj, first + np.uint64(n - 1), h1, c1, c2)
        s += n1 / d1
    return s


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _bound_sum2(qm2: Arr, ql: Arr, qc: Arr, qa0: Arr, qa1: Arr, qr: Arr, rmu: Arr, rcon: Arr, ra0: Arr, ra1: Arr, rr: Arr, q0: int, q1: int, rj: int, start: int, n: int, h1: F32, c1: F32, c2: F32) -> tuple[F32, F32]:
    """``_bound_sum`` for two queries against one reference in one pass: each reference
    value is loaded once for both, which halves the reference traffic from L2."""
    half = np.uint64(n // 2)
    first = np.uint64(start)
    s0, s1 = ZERO, ZERO
    for k in range(half):
        e = first + k
        n1, d1 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, q0, rj, e, h1, c1, c2)
        n2, d2 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, q0, rj, e + half, h1, c1, c2)
        m1, f1 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, q1, rj, e, h1, c1, c2)
        m2, f2 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, q1, rj, e + half, h1, c1, c2)
        s0 += (n1 * d2 + n2 * d1) / (d1 * d2)
        s1 += (m1 * f2 + m2 * f1) / (f1 * f2)
    if n % 2:
        e = first + np.uint64(n - 1)
        n1, d1 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, q0, rj, e, h1, c1, c2)
        m1, f1 = _pixel_bound(qm2, ql, qc, qa0, qa1, qr, rmu, rcon, ra0, ra1, rr, q1, rj, e, h1, c1, c2)
        s0 += n1 / d1
        s1 += m1 / f1
    return s0, s1


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _filter_row(qimg: Arr, rimg: Arr, qi: int, rj: int, r: int, g: Arr, prod: Arr, hbuf: Arr, slot: int) -> None:
    """hbuf[slot, r, j] = sum_k g[k] x[r, j+k] y[r, j+k]: one row of the horizontal pass,
    over hbuf's padded width (a whole number of vectors: no scalar tail; the padding of
    ``prod`` past the image stays 0)."""
    ur = np.uint64(r)
    for j in range(np.uint64(qimg.shape[2])):
        prod[slot, j] = qimg[qi, ur, j] * rimg[rj, ur, j]
    for j in range(np.uint64(hbuf.shape[2])):
        t = ZERO
        for k in range(_UTAPS):
            t += g[k] * prod[slot, j + k]
        hbuf[slot, ur, j] = t


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _exact_row(hbuf: Arr, trow: Arr, slot: int, i: int, w: int, g: Arr, qmu: Arr, qlum: Arr, qcon: Arr, rmu: Arr, rlum: Arr, rcon: Arr, qi: int, rj: int, c1: F32, c2: F32) -> F32:
    """Sum over map row i of the SSIM map, from the horizontally filtered rows (the
    vertical pass into ``trow`` over the padded width, then the w map pixels)."""
    ui = np.uint64(i)
    for j in range(np.uint64(hbuf.shape[2])):
        t = ZERO
        for k in range(_UTAPS):
            t += g[k] * hbuf[slot, ui + k, j]
        trow[slot, j] = t
    s = ZERO
    base = ui * np.uint64(w)
    for j in range(np.uint64(w)):
        e = base + j
        m = qmu[qi, e] * rmu[rj, e]
        s += (_TWO * m + c1) * (_TWO * (trow[slot, j] - m) + c2) / ((qlum[qi, e] + rlum[rj, e]) * (qcon[qi, e] + rcon[rj, e]))
    return s


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _stage2(qimg: Arr, qmu: Arr, qm2: Arr, qlum: Arr, qcon: Arr, qa0: Arr, qa1: Arr, qres: Arr, rimg: Arr, rmu: Arr, rlum: Arr, rcon: Arr, ra0: Arr, ra1: Arr, rres: Arr, order: Arr, bands: Arr, g: Arr, qi: int, t: int, s: int, rb: int, nb: int, floor: float, slack: float, total: Arr, alive: Arr, out: Arr, counts: Arr, hbuf: Arr, prod: Arr, trow: Arr, h1: F32, c1f: F32, c2f: F32) -> float:
    """Stage 2 of query qi over the block's references still alive after stage 1 (slot
    [t, s] of ``total`` and ``alive``), highest bound first: exact bands, the rows not
    computed yet still bounded as in stage 1. Returns the query's floor, raised by every
    exact value found."""
    nbands = bands.shape[0]
    w = qimg.shape[2] - (TAPS - 1)
    p_total = (qimg.shape[1] - (TAPS - 1)) * w
    while True:
        r = -1
        for k in range(nb):
            if alive[t, s, k] and (r < 0 or total[t, s, k] > total[t, s, r]):
                r = k
        if r < 0:
            return floor
        alive[t, s, r] = False
        rj = order[rb + r]
        rest = total[t, s, r]
        if rest / p_total < floor:
            out[qi, rj] = -np.inf
            continue
        lo = hi = bands[0, 0]  # horizontal-pass rows done: [lo, hi)
        acc = 0.0
        dropped = False
        for c in range(nbands):
            a, b = bands[c, 0], bands[c, 1]
            while hi < b + TAPS - 1:
                _filter_row(qimg, rimg, qi, rj, hi, g, prod, hbuf, t)
                hi += 1
            while lo > a:
                lo -= 1
                _filter_row(qimg, rimg, qi, rj, lo, g, prod, hbuf, t)
            for i in range(a, b):
                acc += _exact_row(hbuf, trow, t, i, w, g, qmu, qlum, qcon, rmu, rlum, rcon, qi, rj, c1f, c2f)
            counts[qi, 1] += b - a
            rest -= _bound_sum(qm2, qlum, qcon, qa0, qa1, qres, rmu, rcon, ra0, ra1, rres, qi, rj, a * w, (b - a) * w, h1, c1f, c2f)
            if c + 1 < nbands and (acc + rest) / p_total < floor:
                dropped = True
                break
        if dropped:
            out[qi, rj] = -np.inf
            continue
        v = acc / p_total
        out[qi, rj] = v
        floor = max(floor, v - slack)


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def search_block(qimg: Arr, qmu: Arr, qm2: Arr, qlum: Arr, qcon: Arr, qa0: Arr, qa1: Arr, qres: Arr, rimg: Arr, rmu: Arr, rlum: Arr, rcon: Arr, ra0: Arr, ra1: Arr, rres: Arr, order: Arr, labels: Arr, rem: Arr, spans: Arr, bands: Arr, g: Arr, c1: float, c2: float, best: Arr, slack: float, out: Arr, counts: Arr, ref_block: int, nthreads: int) -> None:
    """float32 SSIM of every (query, reference) pair that can still be a nearest neighbour.

    Images are (N, H, W) and statistics (N, h * w) float32, at data range 1: per side
    mu, lum and con, the patch coefficients a0, a1 and residual res (``nn_patches``);
    ``qm2``, ``qa0``, ``qa1`` and ``qres`` come doubled. ``spans`` (k, 2) cuts the flat
    map into stage-1 pieces [a, b) of whole vectors; ``bands`` (j, 2) cuts it into
    map-row ranges for stage 2, centre first, each extending the band of rows before it.
    ``best`` (float64, per query) is read and raised in place; ``out[q, r]`` gets the
    float32 SSIM, or -inf for a pair that cannot win; ``counts[q]`` adds up (pairs
    dropped by the bound, exact map rows, stage-1 map pixels): machine-independent
    measures of the work done.

    References are taken in ``order`` (members of a cluster together); ``labels[i]`` is
    the cluster of reference ``order[i]``, ``rem`` its box bounds (``nn_clusters.box_remainders``).
    Stage 1 runs span by span over a block of references, so each query span is read
    from L1 for the whole block and only the references' statistics stream in. Stage 2
    takes the survivors best bound first, so the best so far rises early.

    Each of ``nthreads`` threads takes every nthreads-th query and runs through all the
    reference blocks on its own, with no barrier between blocks: a thread that the host
    delays (CPU steal) no longer stalls the other at every block. A thread runs stage 1
    for two of its queries at once (``_bound_sum2``) wherever a reference is alive for
    both: stage 1 is bound by loading the references' statistics, and each load then
    serves two pairs.
    """
    nq, size, width = qimg.shape
    m = rimg.shape[0]
    w = width - (TAPS - 1)
    h = size - (TAPS - 1)
    p_total = h * w
    nspans, nbands = spans.shape[0], bands.shape[0]
    c1f, c2f = np.float32(c1), np.float32(c2)
    h1 = np.float32(c1 / 2)
    wpad = (w + 15) // 16 * 16
    # scratch, one row per thread: a thread finishes one query's block before the next
    hbuf = np.empty((nthreads, size, wpad), np.float32)
    prod = np.zeros((nthreads, wpad + TAPS - 1), np.float32)
    trow = np.empty((nthreads, wpad), np.float32)
    total = np.empty((nthreads, 2, ref_block), np.float64)
    alive = np.empty((nthreads, 2, ref_block), np.bool_)
    for t in prange(nthreads):  # one query set per thread, no barrier: each core keeps its own L2 copy of a block anyway
        for rb in range(0, m, ref_block):
            nb = min(ref_block, m - rb)
            for q0 in range(t, nq, 2 * nthreads):  # interleaved: hard and easy queries spread over the threads
                q1 = q0 + nthreads  # the pair's second query, if any: it shares every reference load
                nqs = 2 if q1 < nq else 1
                floor0 = best[q0] - slack
                floor1 = best[q1] - slack if nqs == 2 else floor0
                # stage 1: the patch bound, span by span over the block; the spans not seen yet count
                # as much as the reference's cluster box allows (rem)
                for r in range(nb):
                    for s in range(nqs):
                        qi, floor = (q0, floor0) if s == 0 else (q1, floor1)
                        total[t, s, r] = 0.0
                        alive[t, s, r] = rem[qi, labels[rb + r], 0] / p_total >= floor
                        if not alive[t, s, r]:  # the whole cluster cannot win
                            out[qi, order[rb + r]] = -np.inf
                            counts[qi, 0] += 1
                    if nqs == 1:
                        alive[t, 1, r] = False
                for c in range(nspans):
                    a, b = spans[c, 0], spans[c, 1]
                    left = 0
                    for r in range(nb):
                        rj = order[rb + r]
                        if alive[t, 0, r] and alive[t, 1, r]:
                            v0, v1 = _bound_sum2(qm2, qlum, qcon, qa0, qa1, qres, rmu, rcon, ra0, ra1, rres, q0, q1, rj, a, b - a, h1, c1f, c2f)
                        elif alive[t, 0, r]:
                            v0, v1 = _bound_sum(qm2, qlum, qcon, qa0, qa1, qres, rmu, rcon, ra0, ra1, rres, q0, rj, a, b - a, h1, c1f, c2f), ZERO
                        elif alive[t, 1, r]:
                            v0, v1 = ZERO, _bound_sum(qm2, qlum, qcon, qa0, qa1, qres, rmu, rcon, ra0, ra1, rres, q1, rj, a, b - a, h1, c1f, c2f)
                        else:
                            continue
                        for s in range(2):
                            if alive[t, s, r]:
                                qi, floor = (q0, floor0) if s == 0 else (q1, floor1)
                                total[t, s, r] += v0 if s == 0 else v1
                                counts[qi, 2] += b - a
                                if (total[t, s, r] + rem[qi, labels[rb + r], c + 1]) / p_total < floor:
                                    alive[t, s, r] = False
                                    out[qi, rj] = -np.inf
                                    counts[qi, 0] += 1
                                else:
                                    left += 1
                    if left == 0:
                        break
                for s in range(nqs):  # stage 2, per query
                    qi, floor = (q0, floor0) if s == 0 else (q1, floor1)
                    best[qi] = _stage2(qimg, qmu, qm2, qlum, qcon, qa0, qa1, qres, rimg, rmu, rlum, rcon, ra0, ra1, rres, order, bands, g, qi, t, s, rb, nb, floor, slack, total, alive, out, counts, hbuf, prod, trow, h1, c1f, c2f) + slack


def aligned_maps(rows: int, cols: int) -> np.ndarray:
    """(rows, cols rounded up to 16) float32 zeros, every row starting on a 64-byte line.

    Why: the kernels read 16-float vectors along a row; with 54 x 54 = 2916 floats a row
    (11,664 bytes, not a multiple of 64) three rows in four start mid-line, so most of
    those loads straddle two cache lines. Aligned rows measured about 1.3x faster in the
    stage-1 loop. The kernels never read the padding."""
    width = -(-cols // 16) * 16
    buf = np.zeros(rows * width + 16, np.float32)
    skip = (-buf.ctypes.data % 64) // 4
    return buf[skip : skip + rows * width].reshape(rows, width)


def centre_first(n: int, size: int) -> np.ndarray:
    """[0, n) cut into pieces of ``size``, the piece nearest the centre first, ties to the
    lower piece. The pieces taken so far always form one contiguous range: stage 2 then
    filters each image row once. Used for stage-1 spans of flat pixels and stage-2 bands
    of map rows."""
    cuts = [(a, min(n, a + size)) for a in range(0, n, size)]
    order = sorted(range(len(cuts)), key=lambda k: (abs((cuts[k][0] + cuts[k][1] - 1) / 2 - (n - 1) / 2), k))
    return np.array([cuts[k] for k in order], dtype=np.int64).reshape(-1, 2)
