"""SSIM exactly as ``skimage.metrics.structural_similarity`` computes it, batched in torch.

The reference is ``structural_similarity(a, b, data_range=R, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)``: local statistics from an 11-tap Gaussian
(scipy's ``gaussian_filter`` with ``truncate=3.5``: radius ``int(3.5 * 1.5 + 0.5) = 5``),
K1 = 0.01, K2 = 0.03, and the mean of the SSIM map after cropping 5 pixels on every
side. Those cropped pixels are exactly the ones whose window reaches the border, so a
*valid* (unpadded) separable convolution gives the same map as skimage's reflect-padded
one, and the whole computation becomes two small matrix products per image pair.

Local statistics of each image (means, variances) are computed once and reused for
every pair it takes part in; only the cross term ``G * (x y)`` is per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5, as scipy.ndimage computes it
K1, K2 = 0.01, 0.03


def gaussian_taps(sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
    """The normalized 1-D kernel scipy.ndimage.gaussian_filter uses (float64)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / (sigma * sigma))
    return g / g.sum()


def valid_filter_matrix(n: int) -> np.ndarray:
    """(n, n - 2r) matrix K with ``row @ K`` = the valid part of the 1-D Gaussian filter."""
    g = gaussian_taps()
    w = n - 2 * RADIUS
    k = np.zeros((n, w))
    for j in range(w):
        k[j : j + 2 * RADIUS + 1, j] = g
    return k


def constants(data_range: float) -> tuple[float, float]:
    """(C1, C2) for ``data_range``."""
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range}")
    return (K1 * data_range) ** 2, (K2 * data_range) ** 2


def as_stack(images: np.ndarray | torch.Tensor, name: str = "images") -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) real array -> (N, H, W) float array (no copy when possible)."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: expected 1-channel images (N, 1, H, W), got shape {x.shape}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected (N, H, W) or (N, 1, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    h, w = x.shape[1:]
    if min(h, w) < 2 * RADIUS + 1:
        raise ValueError(f"{name}: images of {h}x{w} pixels are smaller than the 11x11 SSIM window")
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite pixel values")
    return np.ascontiguousarray(x)


@dataclass
class SsimStats:
    """Images with their local statistics, precomputed once.

    ``lum`` = mu^2 + C1/2 and ``con`` = var + C2/2, so that for a pair the SSIM
    denominators are simply ``lum_x + lum_y`` and ``con_x + con_y``.
    """

    images: torch.Tensor  # (N, H, W)
    mu: torch.Tensor  # (N, h, w), h = H - 10
    var: torch.Tensor  # (N, h, w), population (Gaussian-weighted) variance
    lum: torch.Tensor
    con: torch.Tensor
    kh: torch.Tensor  # (W, w) valid filter along rows
    kv: torch.Tensor  # (h, H) valid filter along columns (transposed)
    c1: float
    c2: float

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def filt(self, x: torch.Tensor) -> torch.Tensor:
        """Valid Gaussian filter of a (B, H, W) batch."""
        return self.kv @ (x @ self.kh)


def prepare(images: np.ndarray | torch.Tensor, data_range: float, dtype: torch.dtype = torch.float32, chunk: int = 2048) -> SsimStats:
    """Local statistics of every image (the per-image half of SSIM)."""
    x = torch.as_tensor(as_stack(images)).to(dtype)
    c1, c2 = constants(data_range)
    h, w = x.shape[1:]
    kh = torch.as_tensor(valid_filter_matrix(w), dtype=dtype)
    kv = torch.as_tensor(valid_filter_matrix(h).T.copy(), dtype=dtype)
    mus, vars_ = [], []
    for s in range(0, len(x), chunk):
        b = x[s : s + chunk]
        mu = kv @ (b @ kh)
        mus.append(mu)
        vars_.append((kv @ ((b * b) @ kh) - mu * mu).clamp_(min=0.0))
    if mus:
        mu, var = torch.cat(mus), torch.cat(vars_)
    else:
        mu = var = torch.zeros((0, h - 2 * RADIUS, w - 2 * RADIUS), dtype=dtype)
    return SsimStats(x, mu, var, mu * mu + c1 / 2, var + c2 / 2, kh, kv, c1, c2)


def pair_ssim(q: SsimStats, r: SsimStats, qi: torch.Tensor, ri: torch.Tensor) -> torch.Tensor:
    """Exact SSIM of the pairs (q[qi[k]], r[ri[k]]), one value per pair (dtype of the stats)."""
    x, y = q.images[qi], r.images[ri]
    mx, my = q.mu[qi], r.mu[ri]
    cross = q.filt(x.mul_(y))  # G * (x y); x is a gathered copy, safe to overwrite
    t = mx.mul_(my)  # mu_x mu_y (mx is a copy too)
    num = cross.sub_(t).mul_(2.0).add_(q.c2)  # 2 sigma_xy + C2
    num.mul_(t.mul_(2.0).add_(q.c1))  # (2 mu_x mu_y + C1)(2 sigma_xy + C2)
    den = (q.lum[qi] + r.lum[ri]).mul_(q.con[qi] + r.con[ri])
    return num.div_(den).mean(dim=(1, 2))


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"image sizes differ: {a.shape[1:]} vs {b.shape[1:]}")


def ssim_batch(a: np.ndarray, b: np.ndarray, data_range: float, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """SSIM of aligned pairs (a[k], b[k]); either side may be a single image (broadcast)."""
    a3, b3 = as_stack(a, "a"), as_stack(b, "b")
    _check_pair(a3, b3)
    n = max(len(a3), len(b3))
    if len(a3) not in (1, n) or len(b3) not in (1, n):
        raise ValueError(f"cannot pair {len(a3)} images with {len(b3)}")
    sa, sb = prepare(a3, data_range, dtype), prepare(b3, data_range, dtype)
    ia = torch.zeros(n, dtype=torch.long) if len(a3) == 1 else torch.arange(n)
    ib = torch.zeros(n, dtype=torch.long) if len(b3) == 1 else torch.arange(n)
    out = [pair_ssim(sa, sb, ia[s : s + 1024], ib[s : s + 1024]) for s in range(0, n, 1024)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """SSIM of two (H, W) images (float64), equal to skimage's with the settings above."""
    a2, b2 = np.asarray(a), np.asarray(b)
    if a2.ndim != 2 or b2.ndim != 2:
        raise ValueError(f"ssim expects two 2-D images, got shapes {a2.shape} and {b2.shape}")
    return float(ssim_batch(a2[None], b2[None], data_range)[0])


def ssim_matrix(queries: np.ndarray, reference: np.ndarray, data_range: float, dtype: torch.dtype = torch.float64, block: int = 1024) -> np.ndarray:
    """All-pairs SSIM (n_queries, n_reference) by brute force: the yardstick for the search."""
    q3, r3 = as_stack(queries, "queries"), as_stack(reference, "reference")
    _check_pair(q3, r3)
    sq, sr = prepare(q3, data_range, dtype), prepare(r3, data_range, dtype)
    out = np.zeros((len(q3), len(r3)))
    for i in range(len(q3)):
        for s in range(0, len(r3), block):
            ri = torch.arange(s, min(s + block, len(r3)))
            out[i, s : s + len(ri)] = pair_ssim(sq, sr, torch.full_like(ri, i), ri).numpy()
    return out
