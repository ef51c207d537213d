"""Batched SSIM and the slab-holdout nearest-neighbour figure for the demo set.

The batched SSIM reproduces ``skimage.metrics.structural_similarity`` with its
defaults (7x7 uniform window, sample covariance, K1=0.01, K2=0.03, border of 3
cropped) so that checking every pair of ~1,000 images takes seconds, not minutes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_WIN = 7
_PAD = (_WIN - 1) // 2


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and (sample) variance of a batch (B, H, W)."""
    mu = ndimage.uniform_filter(x, size=(1, _WIN, _WIN))
    sq = ndimage.uniform_filter(x * x, size=(1, _WIN, _WIN))
    return mu, (sq - mu * mu) * (_WIN * _WIN / (_WIN * _WIN - 1.0))


class SsimIndex:
    """A batch of images with their local means/variances precomputed, so comparing one
    more image against all of them costs one filter pass instead of three."""

    def __init__(self, batch: np.ndarray, data_range: float) -> None:
        self.x = batch.astype(np.float64).reshape(len(batch), *batch.shape[-2:])
        self.mu, self.var = _stats(self.x) if len(self.x) else (self.x, self.x)
        self.c1, self.c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def __len__(self) -> int:
        return len(self.x)

    def ssim(self, a: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """SSIM of ``a`` (H, W) against the indexed images ``rows``."""
        b, mb, vb = self.x[rows], self.mu[rows], self.var[rows]
        if len(b) == 0:
            return np.zeros(0)
        a = a.astype(np.float64)[None]
        ma, va = _stats(a)
        ab = ndimage.uniform_filter(a * b, size=(1, _WIN, _WIN))
        cov = (ab - ma * mb) * (_WIN * _WIN / (_WIN * _WIN - 1.0))
        num = (2 * ma * mb + self.c1) * (2 * cov + self.c2)
        s = num / ((ma * ma + mb * mb + self.c1) * (va + vb + self.c2))
        return s[:, _PAD:-_PAD, _PAD:-_PAD].mean(axis=(1, 2))


def ssim_to_many(a: np.ndarray, batch: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM of one image ``a`` (H, W) against each image of ``batch`` (B, H, W)."""
    return SsimIndex(batch, data_range).ssim(a)


def max_ssim_to(a: np.ndarray, batch: np.ndarray, data_range: float) -> float:
    """Highest SSIM between ``a`` and any image in ``batch`` (-1 for an empty batch)."""
    s = ssim_to_many(a, batch, data_range)
    return float(s.max()) if len(s) else -1.0


def max_pair_ssim(x: np.ndarray, data_range: float) -> float:
    """Highest SSIM over all distinct pairs of ``x`` (B, H, W)."""
    index = SsimIndex(x, data_range)
    best = -1.0
    for i in range(len(x) - 1):
        best = max(best, float(index.ssim(x[i], slice(i + 1, None)).max()))
    return best


def greedy_dedupe(x: np.ndarray, max_ssim: float, data_range: float) -> np.ndarray:
    """Indices to keep, in order: an image is dropped when its SSIM to any image already
    kept is >= ``max_ssim`` (all pairs, not only neighbours)."""
    index = SsimIndex(x, data_range)
    keep: list[int] = []
    for i in range(len(x)):
        if not keep or index.ssim(x[i], np.asarray(keep)).max() < max_ssim:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def slab_holdout(
    groups: np.ndarray, positions: np.ndarray, fraction: float, gap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: from each group a contiguous slab of ``fraction`` of its
    slices is held out, and ``gap`` slices either side of it are used for neither."""
    train, held = [], []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        idx = idx[np.argsort(positions[idx], kind="stable")]
        n_held = max(1, int(round(fraction * len(idx))))
        start = int(rng.integers(0, len(idx) - n_held + 1))
        held.extend(idx[start : start + n_held])
        train.extend(idx[: max(0, start - gap)])
        train.extend(idx[start + n_held + gap :])
    return np.asarray(train, dtype=np.int64), np.asarray(held, dtype=np.int64)


def nn_ssim(held: np.ndarray, train: np.ndarray, data_range: float) -> np.ndarray:
    """For each held-out image, the SSIM of its nearest (most similar) training image."""
    index = SsimIndex(train, data_range)
    return np.array([float(index.ssim(h).max()) for h in held])


def holdout_report(
    images01: np.ndarray, groups: np.ndarray, positions: np.ndarray, seeds: int = 3,
    fraction: float = 0.2, gap: int = 2,
) -> dict[str, float]:
    """NN-SSIM of held-out images to the training images (``images01``: (N, H, W) in [0, 1]),
    for a slab-wise holdout and, for contrast, a naive random 70/30 split."""
    slab, naive = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        train, held = slab_holdout(groups, positions, fraction, gap, rng)
        slab.append(nn_ssim(images01[held], images01[train], 1.0))
        perm = rng.permutation(len(images01))
        cut = int(0.7 * len(perm))
        naive.append(nn_ssim(images01[perm[cut:]], images01[perm[:cut]], 1.0))
    s, r = np.concatenate(slab), np.concatenate(naive)
    return {
        "slab_median": float(np.median(s)), "slab_p99": float(np.percentile(s, 99)),
        "slab_max": float(s.max()), "naive_median": float(np.median(r)),
        "naive_p99": float(np.percentile(r, 99)), "seeds": seeds, "fraction": fraction, "gap": gap,
    }
