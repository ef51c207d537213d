"""Fidelity and diversity of a synthetic set against real images, in one feature space.

* FID (Heusel et al., 2017): Frechet distance between Gaussians fitted to the features.
* KID (Binkowski et al., 2018): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets, as clean-fid / torch-fidelity do.
* Precision / recall (Kynkaanniemi et al., 2019): k-NN balls around each set as its
  manifold; precision = synthetic inside the real manifold, recall = the reverse.
* Density / coverage (Naeem et al., 2020): outlier-robust versions of the same.

Every metric takes ``Features`` and refuses to compare features from two extractors.
NN-SSIM / NN-PSNR come from the memorization audit and are only passed through.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np
from scipy.spatial.distance import cdist

from client.dataset import ImageSet
from privacy_audit.features import ExtractorSpec, Features, resolve_extractor, same_space

CHUNK = 1024  # rows of a distance matrix held at once
KERNEL_CACHE = 3000  # KID: precompute full kernel matrices up to this many samples per set


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), for PSD S1, S2.

    tr((S1 S2)^(1/2)) is computed as the sum of sqrt-eigenvalues of the symmetric
    S1^(1/2) S2 S1^(1/2) (same spectrum), which stays real and stable even for the
    rank-deficient covariances of few samples in many dimensions.
    """
    w, v = np.linalg.eigh(np.asarray(sigma1, dtype=np.float64))
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean, 0.0))


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def fid(real: Features, fake: Features) -> float:
    same_space(real, fake)
    if min(len(real), len(fake)) < 2:
        raise ValueError("FID needs at least 2 samples per set")
    return frechet_distance(*gaussian_stats(real.values), *gaussian_stats(fake.values))


def _poly(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    return (a @ b.T / d + 1) ** 3


def kid(real: Features, fake: Features, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over ``subsets`` random subsets of ``min(subset_size, n_real, n_fake)``.

    Up to ``KERNEL_CACHE`` samples per set the kernel matrices are computed once and a
    subset's kernel sum is w^T K w with w its 0/1 indicator (same numbers, far cheaper).
    """
    same_space(real, fake)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    x_all, y_all = real.values, fake.values
    nx, ny, d = len(x_all), len(y_all), x_all.shape[1]
    rng = np.random.default_rng(seed)
    picks = [(rng.choice(nx, m, replace=False), rng.choice(ny, m, replace=False)) for _ in range(subsets)]
    if max(nx, ny) <= KERNEL_CACHE:
        wx, wy = np.zeros((subsets, nx)), np.zeros((subsets, ny))
        for s, (ix, iy) in enumerate(picks):
            wx[s, ix], wy[s, iy] = 1.0, 1.0
        kxx, kyy, kxy = _poly(x_all, x_all, d), _poly(y_all, y_all, d), _poly(x_all, y_all, d)
        sxx = ((wx @ kxx) * wx).sum(1) - wx @ np.diag(kxx)
        syy = ((wy @ kyy) * wy).sum(1) - wy @ np.diag(kyy)
        sxy = ((wx @ kxy) * wy).sum(1)
    else:
        sxx, syy, sxy = np.empty(subsets), np.empty(subsets), np.empty(subsets)
        for s, (ix, iy) in enumerate(picks):
            x, y = x_all[ix], y_all[iy]
            kx, ky = _poly(x, x, d), _poly(y, y, d)
            sxx[s], syy[s] = kx.sum() - np.trace(kx), ky.sum() - np.trace(ky)
            sxy[s] = _poly(x, y, d).sum()
    vals = (sxx + syy) / (m * (m - 1)) - 2 * sxy / (m * m)
    return float(vals.mean()), float(vals.std())


def _row_chunks(a: np.ndarray, b: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    for i in range(0, len(a), CHUNK):
        yield slice(i, i + CHUNK), cdist(a[i : i + CHUNK], b)


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point of the same set."""
    if len(x) <= k:
        raise ValueError(f"k-NN manifold needs more than k={k} samples, got {len(x)}")
    out = np.empty(len(x))
    for sl, d in _row_chunks(x, x):
        out[sl] = np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself
    return out


def _inside(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """How many balls (centers, radii) contain each point; the boundary counts as inside (<=)."""
    counts = np.empty(len(points), dtype=np.int64)
    for sl, d in _row_chunks(points, centers):
        counts[sl] = (d <= radii[None, :]).sum(1)
    return counts


def precision_recall(real: Features, fake: Features, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al., 2019), k = 3 as in the paper."""
    same_space(real, fake)
    r, f = real.values, fake.values
    precision = float(np.mean(_inside(f, r, knn_radii(r, k)) > 0))
    recall = float(np.mean(_inside(r, f, knn_radii(f, k)) > 0))
    return precision, recall


def density_coverage(real: Features, fake: Features, *, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al., 2020), k = 5 as in the paper; real balls only."""
    same_space(real, fake)
    r, f = real.values, fake.values
    radii = knn_radii(r, k)
    density = float(_inside(f, r, radii).sum() / (k * len(f)))
    nearest_fake = np.concatenate([d.min(1) for _, d in _row_chunks(r, f)])
    coverage = float(np.mean(nearest_fake <= radii))
    return density, coverage


def compare(real: Features, fake: Features, *, seed: int = 0, k_pr: int = 3, k_dc: int = 5, kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict[str, float]:
    """All feature-space metrics of ``fake`` against ``real``."""
    kid_mean, kid_std = kid(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    precision, recall = precision_recall(real, fake, k=k_pr)
    density, coverage = density_coverage(real, fake, k=k_dc)
    return {
        "fid": fid(real, fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
    }


def stratified_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves with each class split evenly: in class-aware feature
    spaces a chance difference in class mix would otherwise dominate the reference."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    a, b = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2 : 2 * (len(idx) // 2)])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def fidelity_report(
    real: ImageSet,
    synthetic: ImageSet,
    *,
    extractor: ExtractorSpec = None,
    seed: int = 0,
    nn_ssim_mean: float | None = None,
    nn_psnr_mean: float | None = None,
    k_pr: int = 3,
    k_dc: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> dict[str, Any]:
    """Fidelity of ``synthetic`` against ``real`` (JSON-able), in one named feature space.

    ``reference`` holds the same metrics between two class-stratified random halves of
    the real set: roughly what a perfect generator would score at this sample size, the
    scale to read site-cnn numbers against (they are not comparable with published FIDs).
    """
    if real.image_size != synthetic.image_size:
        raise ValueError(f"real images are {real.image_size} px, synthetic {synthetic.image_size} px")
    t0 = time.perf_counter()
    ext = resolve_extractor(extractor, real, seed=seed)
    fr, fs = ext(real.images), ext(synthetic.images)
    opts = dict(seed=seed, k_pr=k_pr, k_dc=k_dc, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
    out: dict[str, Any] = {"extractor": same_space(fr, fs), **compare(fr, fs, **opts)}
    reference = None
    if len(fr) >= 4 * (max(k_pr, k_dc) + 1):
        ia, ib = stratified_halves(real.labels if real.labels is not None else np.zeros(len(real), dtype=np.int64), seed)
        a, b = Features(fr.values[ia], fr.extractor), Features(fr.values[ib], fr.extractor)
        reference = {"n_each": [len(ia), len(ib)], **compare(a, b, **opts)}
    out.update(
        n_real=len(real),
        n_synthetic=len(synthetic),
        feature_dim=int(fr.values.shape[1]),
        k_precision_recall=k_pr,
        k_density_coverage=k_dc,
        kid_subsets=kid_subsets,
        kid_subset_size=min(kid_subset_size, len(real), len(synthetic)),
        nn_ssim_mean=None if nn_ssim_mean is None else float(nn_ssim_mean),
        nn_psnr_mean=None if nn_psnr_mean is None else float(nn_psnr_mean),
        reference=reference,
        seed=seed,
        time_s=round(time.perf_counter() - t0, 2),
    )
    return out
