"""The projected-patch covariance bound (privacy_audit.nn_patches) holds pixel by pixel."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from privacy_audit.nn_patches import RESIDUAL_PAD, derivative_taps, patch_stats
from privacy_audit.ssim import gaussian_taps, prepare


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Smooth textures, edges and pure noise in [-1, 1]."""
    tex = np.stack([ndimage.gaussian_filter(rng.normal(size=(size, size)), s) for s in rng.uniform(0.5, 3.0, n)])
    tex /= np.abs(tex).max(axis=(1, 2), keepdims=True)
    tex[: n // 3] = np.sign(tex[: n // 3])  # hard edges
    tex[-2:] = rng.uniform(-1, 1, (2, size, size))
    return tex


def test_directions_are_orthonormal_and_blind_to_the_mean() -> None:
    """u = h / sqrt(g) for the two filters: orthonormal, and orthogonal to sqrt(g) (the
    window's mean), which is what lets the coefficients skip the mean subtraction."""
    smooth, deriv = derivative_taps()
    g = np.outer(gaussian_taps(), gaussian_taps())
    u = [np.outer(smooth, deriv) / np.sqrt(g), np.outer(deriv, smooth) / np.sqrt(g)]
    gram = np.array([[(a * b).sum() for b in u] for a in u])
    np.testing.assert_allclose(gram, np.eye(2), atol=1e-12)
    assert max(abs((a * np.sqrt(g)).sum()) for a in u) < 1e-12


def test_mean_and_variance_are_prepares_float64() -> None:
    """The compiled pass computes SSIM's local mean and variance as ``prepare`` does in
    float64 (dense filter matrices), on images of any real dtype."""
    rng = np.random.default_rng(1)
    x = _images(rng, 9, 26)
    st = prepare(x, 2.0, torch.float64)
    for images in (x, x.astype(np.float32)):
        pt = patch_stats(images)
        ref = st if images.dtype == np.float64 else prepare(images, 2.0, torch.float64)
        np.testing.assert_allclose(pt[:, 0], ref.mu.numpy(), rtol=0, atol=1e-14)
        np.testing.assert_allclose(pt[:, 1], ref.var.numpy(), rtol=0, atol=1e-14)


def test_covariance_lies_within_the_projected_bound_at_every_pixel() -> None:
    """|cov_xy - a_x . a_y| <= res_x res_y at every map pixel of every pair (float64), and
    a_x . a_x + res_x^2 equals the variance."""
    rng = np.random.default_rng(0)
    x = _images(rng, 12, 24)
    st = prepare(x, 2.0, torch.float64)
    pt = torch.from_numpy(patch_stats(x))
    a, res = pt[:, 2:4], pt[:, 4]
    np.testing.assert_allclose(((a * a).sum(1) + res * res).numpy(), (st.var + RESIDUAL_PAD).numpy(), atol=1e-12)
    assert float(res.min()) > 0
    worst = -np.inf
    for i in range(len(x)):
        cov = st.filt(st.images[i] * st.images) - st.mu[i] * st.mu  # (N, h, w)
        dot = (a[i][None] * a).sum(1)
        worst = max(worst, float(((cov - dot).abs() - res[i] * res).max()))
    assert worst <= 1e-12


def test_a_ramp_lies_entirely_along_its_derivative() -> None:
    """A linear ramp across columns has no residual and no row-derivative part: the
    directions really are the Gaussian window's first derivatives."""
    ramp = np.tile(np.linspace(-1, 1, 24), (24, 1))[None]
    pt = patch_stats(ramp)
    assert np.abs(pt[0, 2]).min() > 0.01  # along the columns
    assert np.abs(pt[0, 3]).max() < 1e-12
    assert pt[0, 4].max() < 1e-5  # only the pad: sqrt(1e-12)
