"""The SSIM nearest-neighbour search gives the brute-force answer, pruning or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from privacy_audit.nn_clusters import box_remainders, cluster_references, one_cluster
from privacy_audit.nn_kernel import _bound_sum, _bound_sum2, centre_first, search_block
from privacy_audit.nn_search import PSNR_CAP, ReferenceIndex, _box_args, _query_args, _reference_args, _side, argmax_lowest, float32_margin, nearest_neighbours
from privacy_audit.nn_verify import ssim_pairs
from privacy_audit.ssim import constants, gaussian_taps, pair_ssim, prepare, ssim_matrix


def slices(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Slice-like images in [-1, 1]: dark background, an elliptic head of smooth texture
    whose size and position vary, so some pairs are close and most are not."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    out = np.full((n, size, size), -1.0)
    for i in range(n):
        cy, cx = rng.uniform(-0.08, 0.08, 2)
        ry, rx = rng.uniform(0.25, 0.45, 2)
        tex = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(1.0, 3.0))
        tex = tex / (np.abs(tex).max() + 1e-12)
        head = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        out[i][head] = np.clip(rng.uniform(-0.3, 0.4) + 0.5 * tex[head], -1, 1)
    return out


def brute(q: np.ndarray, r: np.ndarray, data_range: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    m = ssim_matrix(q, r, data_range)
    idx = np.array([argmax_lowest(row) for row in m])
    return idx, m[np.arange(len(q)), idx]


def test_matches_skimage_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    ref, q = slices(rng, 25, 24), slices(rng, 8, 24)
    q[3] = ref[17]  # a planted copy
    res = nearest_neighbours(q[:, None], ref[:, None])  # (N, 1, H, W) accepted
    for i in range(len(q)):
        scores = [structural_similarity(q[i], r, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False) for r in ref]
        assert res.index[i] == int(np.argmax(scores))
        assert res.ssim[i] == pytest.approx(max(scores), abs=1e-10)
        expected_psnr = PSNR_CAP if np.array_equal(q[i], ref[res.index[i]]) else peak_signal_noise_ratio(ref[res.index[i]], q[i], data_range=2.0)
        assert res.psnr[i] == pytest.approx(expected_psnr, abs=1e-9)
    assert res.index[3] == 17 and res.ssim[3] == pytest.approx(1.0, abs=1e-12) and res.psnr[3] == PSNR_CAP


@pytest.mark.parametrize("seed", range(6))
def test_exact_on_random_sets_with_copies_and_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.choice([16, 24, 32]))
    ref = slices(rng, int(rng.integers(20, 60)), size)
    # ties: a reference image repeated at a later index, and two queries copying it
    dup = int(rng.integers(0, len(ref) // 2))
    ref = np.concatenate([ref, ref[dup : dup + 1], ref[:3]])
    q = slices(rng, int(rng.integers(5, 20)), size)
    q[0] = ref[dup]
    q[1] = ref[-1]  # equals ref[2] too: the lowest index must win
    q[2] = np.clip(ref[5] + rng.normal(0, 0.02, ref[5].shape), -1, 1)  # near copy
    res = nearest_neighbours(q, ref)
    idx, val = brute(q, ref)
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_allclose(res.ssim, val, rtol=0, atol=1e-12)
    assert res.index[0] == dup and res.index[1] == 2


def test_pruning_fires_and_stays_exact() -> None:
    rng = np.random.default_rng(7)
    ref, q = slices(rng, 300, 32), slices(rng, 30, 32)
    res = nearest_neighbours(q, ref)
    assert res.stats["dropped_by_bound"] > 0.1 * res.stats["pairs"]  # no cross term at all for these
    assert res.stats["exact_row_fraction"] < 0.5  # and the rest mostly stop before the end
    idx, val = brute(q, ref)
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_allclose(res.ssim, val, rtol=0, atol=1e-12)


def test_floor_skips_what_cannot_win() -> None:
    rng = np.random.default_rng(3)
    ref, q = slices(rng, 40, 24), slices(rng, 10, 24)
    idx, val = brute(q, ref)
    floor = np.where(np.arange(10) % 2 == 0, val - 0.05, val + 0.05)  # reachable for even queries only
    res = ReferenceIndex(ref).search(q, floor=floor)
    even, odd = np.arange(0, 10, 2), np.arange(1, 10, 2)
    np.testing.assert_array_equal(res.index[even], idx[even])
    np.testing.assert_allclose(res.ssim[even], val[even], atol=1e-12)
    assert (res.index[odd] == -1).all() and np.isneginf(res.ssim[odd]).all()


def test_float32_margin_bounds_the_float32_error() -> None:
    rng = np.random.default_rng(4)
    # worst cases for cancellation: nearly flat images at the extremes of the range
    x = np.concatenate([slices(rng, 20, 24), np.clip(rng.choice([-1.0, 1.0], (20, 1, 1)) + rng.normal(0, 1e-3, (20, 24, 24)), -1, 1)])
    s32, s64 = prepare(x, 2.0, torch.float32), prepare(x, 2.0, torch.float64)
    qi, ri = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    err = (pair_ssim(s32, s32, qi.flatten(), ri.flatten()).double() - pair_ssim(s64, s64, qi.flatten(), ri.flatten())).abs().max()
    assert float(err) < float32_margin(1.0, 2.0)


C1, C2 = constants(1.0)  # the kernels work at data range 1


def _sides(queries: np.ndarray, reference: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both sides' kernel arrays, as ReferenceIndex.search builds them."""
    return _side(queries, 2.0, query=True), _side(reference, 2.0, query=False)


def _bound_args(qa: dict[str, np.ndarray], ra: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The arrays _bound_sum and _bound_sum2 take, in their order (before the indices)."""
    return tuple(qa[k] for k in ("mu_k", "lum", "con", "a0", "a1", "res")) + tuple(ra[k] for k in ("mu", "con", "a0", "a1", "res"))


def _lc_sums(qa: dict[str, np.ndarray], ra: dict[str, np.ndarray], i: int, j: int, spans: np.ndarray, c1: float, c2: float) -> np.ndarray:
    """float64 sum of |l| c per span for pair (i, j), written out independently of the kernel."""
    a, b = qa["abs"][i] / 2.0, ra["abs"][j].astype(np.float64)
    s, t = qa["sd"][i] / 2.0, ra["sd"][j].astype(np.float64)
    v = (2 * a * b + c1) / (a * a + b * b + c1) * (2 * s * t + c2) / (s * s + t * t + c2)
    return np.array([v[lo:hi].sum() for lo, hi in spans])


def test_compiled_loop_float32_values_are_within_the_margin() -> None:
    """With a slack no SSIM can beat, nothing is dropped: the compiled loop computes every
    pair's float32 SSIM in full; each must be within float32_margin of float64, on the
    worst cases too."""
    rng = np.random.default_rng(8)
    x = np.concatenate([slices(rng, 12, 24), np.clip(rng.choice([-1.0, 1.0], (12, 1, 1)) + rng.normal(0, 1e-3, (12, 24, 24)), -1, 1)])
    qa, ra = _sides(x, x)
    out = np.empty((len(x), len(x)), np.float32)
    counts = np.zeros((len(x), 3), np.int64)
    best = np.full(len(x), -np.inf)
    spans, cl = centre_first(14 * 14, 64), one_cluster(len(x), 14 * 14)
    rem = np.empty((len(x), 1, len(spans) + 1), np.float32)
    box_remainders(*_box_args(qa), cl.amin, cl.amax, cl.smin, cl.smax, spans, C1, C2, best, 10.0, rem, 4, 2)
    search_block(*_query_args(qa), *_reference_args(ra), cl.order, cl.labels, rem, spans, centre_first(14, 4), gaussian_taps().astype(np.float32), C1, C2, best, 10.0, out, counts, 5, 2)
    exact = ssim_matrix(x, x, 2.0)
    assert counts[:, 0].sum() == 0 and counts[:, 1].sum() == len(x) ** 2 * 14  # every row of every pair
    assert np.abs(out - exact).max() < float32_margin(1.0, 2.0)
    np.testing.assert_allclose(best, exact.max(axis=1), atol=float32_margin(1.0, 2.0))


def test_stage1_bound_is_above_every_exact_ssim_and_below_lc() -> None:
    """The stage-1 bound (luminance times the projected-patch covariance bound, summed over
    the map) never falls below the SSIM itself: on copies (where it is tight), negated
    images (SSIM near +1 on [-1, 1] data) and unrelated slices alike. It is never above
    the luminance-contrast bound |l| c it refines, and well below it on unrelated pairs."""
    rng = np.random.default_rng(9)
    base = slices(rng, 10, 24)
    x = np.concatenate([base, -base, np.clip(base + rng.normal(0, 0.05, base.shape), -1, 1)])
    q, r = _sides(x, x)
    p, whole = 14 * 14, np.array([[0, 14 * 14]])
    h1, c1, c2 = np.float32(C1 / 2), np.float32(C1), np.float32(C2)
    args = _bound_args(q, r)
    bound = np.array([[_bound_sum(*args, i, j, 0, p, h1, c1, c2) / p for j in range(len(x))] for i in range(len(x))])
    lc = np.array([[_lc_sums(q, r, i, j, whole, C1, C2)[0] / p for j in range(len(x))] for i in range(len(x))])
    exact = ssim_matrix(x, x, 2.0)
    assert (bound >= exact - 1e-5).all()
    assert (bound <= lc + 1e-5).all()
    assert np.abs(np.diag(bound) - 1).max() < 1e-5  # tight on copies
    assert exact[0, 10] > 0.5 and bound[0, 10] >= exact[0, 10] - 1e-5  # x vs -x
    unrelated = ~np.eye(10, dtype=bool)
    assert (lc[:10, :10] - bound[:10, :10])[unrelated].mean() > 0.05  # the structure term prunes


def test_paired_stage1_sums_equal_single_ones() -> None:
    """Stage 1 of two queries in one pass (_bound_sum2) gives each query's own sum, on
    even and odd spans at any offset."""
    rng = np.random.default_rng(12)
    x = slices(rng, 6, 24)
    q, r = _sides(x, x)
    h1, c1, c2 = np.float32(C1 / 2), np.float32(C1), np.float32(C2)
    args = _bound_args(q, r)
    for start, n in ((0, 196), (3, 77), (100, 96), (195, 1)):
        for q0, q1, rj in ((0, 1, 2), (4, 3, 4), (5, 5, 0)):
            pair = _bound_sum2(*args, q0, q1, rj, start, n, h1, c1, c2)
            single = (_bound_sum(*args, q0, rj, start, n, h1, c1, c2), _bound_sum(*args, q1, rj, start, n, h1, c1, c2))
            np.testing.assert_allclose(pair, single, rtol=1e-6)


def test_cluster_box_bounds_every_member() -> None:
    """rem[q, k, c] (what spans c, c+1, ... can still add for any reference in cluster k)
    is at least every member's own |l| c sum over those spans (so also its stage-1 bound,
    which is below |l| c), and tighter than 1 per pixel; a cluster marked -inf holds no
    reference that reaches the query's floor."""
    rng = np.random.default_rng(10)
    ref = np.concatenate([slices(rng, 40, 24), -slices(rng, 4, 24)])
    qs = np.concatenate([slices(rng, 6, 24), ref[:2], -ref[2:3]])
    qa, ra = _sides(qs, ref)
    p, spans = 14 * 14, centre_first(14 * 14, 64)
    cl = cluster_references(ra["abs"], ra["sd"], (14, 14), 6)
    assert len(cl) == 6 and sorted(cl.order) == list(range(len(ref)))
    rem = np.empty((len(qs), len(cl), len(spans) + 1), np.float32)
    box_remainders(*_box_args(qa), cl.amin, cl.amax, cl.smin, cl.smax, spans, C1, C2, np.full(len(qs), -np.inf), 0.0, rem, 4, 2)
    for i in range(len(qs)):
        for pos, j in enumerate(cl.order):
            suffix = np.cumsum(_lc_sums(qa, ra, i, j, spans, C1, C2)[::-1])[::-1]
            assert (rem[i, cl.labels[pos], :-1] >= suffix - 1e-4).all()
    assert rem[:, :, 0].mean() < 0.9 * p  # the boxes are tighter than 1 per pixel
    exact = ssim_matrix(qs, ref, 2.0)
    floor = exact.max(axis=1)
    box_remainders(*_box_args(qa), cl.amin, cl.amax, cl.smin, cl.smax, spans, C1, C2, floor, 1e-3, rem, 4, 2)
    skipped = np.isneginf(rem[:, :, 0])
    assert skipped.any()
    for i, k in zip(*np.nonzero(skipped)):
        assert (exact[i, cl.order[cl.labels == k]] < floor[i] - 1e-3).all()


def test_shapes_and_bad_input() -> None:
    rng = np.random.default_rng(5)
    ref = slices(rng, 5, 16)
    assert len(nearest_neighbours(np.zeros((0, 16, 16)), ref).index) == 0
    with pytest.raises(ValueError, match="query images are 24x24 but reference images are 16x16"):
        nearest_neighbours(slices(rng, 2, 24), ref)
    with pytest.raises(ValueError, match="reference: no images"):
        nearest_neighbours(ref, np.zeros((0, 16, 16)))
    with pytest.raises(ValueError, match="1-channel"):
        nearest_neighbours(np.zeros((2, 3, 16, 16)), ref)
    with pytest.raises(ValueError, match="over 1000 times the data range 2"):
        nearest_neighbours(ref * 3000, ref)


def test_compiled_float64_pairs_match_pair_ssim() -> None:
    """The verification's compiled float64 SSIM (nn_verify) agrees with the torch float64
    pair_ssim to rounding, for any pairing of indices, float32 or float64 images and
    either data range; on copies it is 1."""
    rng = np.random.default_rng(11)
    q, r = slices(rng, 7, 24), slices(rng, 9, 24)
    qi, ri = rng.integers(0, 7, 40), rng.integers(0, 9, 40)
    for dr, shift in ((2.0, 0.0), (1.0, 1.0)):  # [-1, 1] data at range 2; [0, 1] data at range 1
        qq, rr = (q + shift) / (2.0 / dr), (r + shift) / (2.0 / dr)
        for dtype in (np.float64, np.float32):
            got = ssim_pairs(qq.astype(dtype), rr.astype(dtype), qi, ri, dr, 2)
            sq, sr = prepare(qq.astype(dtype), dr, torch.float64), prepare(rr.astype(dtype), dr, torch.float64)
            want = pair_ssim(sq, sr, torch.as_tensor(qi), torch.as_tensor(ri)).numpy()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    assert np.allclose(ssim_pairs(r, r, np.arange(9), np.arange(9), 2.0, 2), 1.0, atol=1e-14)
    assert len(ssim_pairs(q, r, np.zeros(0, np.int64), np.zeros(0, np.int64), 2.0, 2)) == 0
