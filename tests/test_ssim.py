"""privacy_audit.ssim reproduces skimage's Gaussian SSIM (the audit's definition)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from privacy_audit.ssim import RADIUS, gaussian_taps, ssim, ssim_batch, ssim_matrix


def sk(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return structural_similarity(a, b, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def smooth(rng: np.random.Generator, shape: tuple[int, int], lo: float) -> np.ndarray:
    """A smooth random field with a flat dark background, like a slice: in [lo, 1]."""
    f = ndimage.gaussian_filter(rng.normal(size=shape), 3.0)
    f = (f - f.min()) / (np.ptp(f) + 1e-12)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = ((yy - shape[0] / 2) / (0.4 * shape[0])) ** 2 + ((xx - shape[1] / 2) / (0.35 * shape[1])) ** 2 < 1
    return np.where(mask, lo + (1 - lo) * f, lo)


def test_kernel_is_scipys_11_tap_gaussian() -> None:
    impulse = np.zeros(31)
    impulse[15] = 1.0
    response = ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5)
    assert RADIUS == 5 and np.count_nonzero(response) == 11
    np.testing.assert_allclose(gaussian_taps(), response[10:21], rtol=0, atol=1e-15)


@pytest.mark.parametrize("lo, data_range", [(0.0, 1.0), (-1.0, 2.0)])
@pytest.mark.parametrize("kind", ["random", "smooth", "near-copy", "noisy-copy", "unrelated-smooth"])
def test_matches_skimage(kind: str, lo: float, data_range: float) -> None:
    rng = np.random.default_rng([zlib.crc32(kind.encode()), int(lo + 1)])
    for shape in [(32, 32), (64, 64), (40, 37), (11, 11)]:
        a = smooth(rng, shape, lo) if kind != "random" else rng.uniform(lo, 1, shape)
        b = {
            "random": rng.uniform(lo, 1, shape),
            "smooth": smooth(rng, shape, lo),
            "near-copy": np.clip(a + rng.normal(0, 0.01, shape), lo, 1),
            "noisy-copy": np.clip(a + rng.normal(0, 0.05, shape), lo, 1),
            "unrelated-smooth": 1 + lo - smooth(rng, shape, lo),
        }[kind]
        assert abs(ssim(a, b, data_range) - sk(a, b, data_range)) < 1e-10
        # float32 inputs: skimage computes in float32, we in float64; within 1e-4
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        assert abs(ssim(a32, b32, data_range) - sk(a32, b32, data_range)) < 1e-4


def test_identical_images_score_one_and_order_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    a, b = smooth(rng, (32, 32), -1), smooth(rng, (32, 32), -1)
    assert ssim(a, a, 2.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b, 2.0) == pytest.approx(ssim(b, a, 2.0), abs=1e-12)


def test_batch_and_matrix_agree_with_pairwise() -> None:
    rng = np.random.default_rng(2)
    x = np.stack([smooth(rng, (24, 24), -1) for _ in range(5)])
    y = np.stack([smooth(rng, (24, 24), -1) for _ in range(7)])
    m = ssim_matrix(x[:, None], y, 2.0)  # (N, 1, H, W) and (N, H, W) both accepted
    assert m.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert m[i, j] == pytest.approx(sk(x[i], y[j], 2.0), abs=1e-10)
    np.testing.assert_allclose(ssim_batch(x, y[:5], 2.0), np.diag(m[:, :5]), atol=1e-12)
    np.testing.assert_allclose(ssim_batch(x[:1], y, 2.0), m[0], atol=1e-12)  # one vs many


@pytest.mark.parametrize(
    "a, b, data_range, message",
    [
        (np.zeros((10, 10)), np.zeros((10, 10)), 1.0, "smaller than the 11x11"),
        (np.full((16, 16), np.nan), np.zeros((16, 16)), 1.0, "NaN"),
        (np.zeros((16, 16)), np.zeros((16, 17)), 1.0, "sizes differ"),
        (np.zeros((16, 16)), np.zeros((16, 16)), 0.0, "data_range"),
        (np.zeros((2, 16, 16)), np.zeros((16, 16)), 1.0, "two 2-D images"),
    ],
)
def test_bad_input_is_one_clear_error(a: np.ndarray, b: np.ndarray, data_range: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ssim(a, b, data_range)


def test_batch_refuses_multichannel_and_unpairable() -> None:
    with pytest.raises(ValueError, match="1-channel"):
        ssim_batch(np.zeros((2, 3, 16, 16)), np.zeros((2, 3, 16, 16)), 1.0)
    with pytest.raises(ValueError, match="cannot pair"):
        ssim_batch(np.zeros((2, 16, 16)), np.zeros((3, 16, 16)), 1.0)
