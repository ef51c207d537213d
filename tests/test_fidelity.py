"""Fidelity metrics: the math against closed forms, extractor naming, and the report dict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from client.dataset import ImageSet
from privacy_audit import fidelity as F
from privacy_audit.features import ENV_INCEPTION, ExtractorMismatch, Features, InceptionExtractor, resolve_extractor
from tests.test_utility import one_thread, toy_set  # noqa: F401  (one_thread is an autouse fixture)


def feats(x: np.ndarray, name: str = "test-extractor") -> Features:
    return Features(np.asarray(x, dtype=np.float64), name)


def gaussian(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> Features:
    return feats(np.random.default_rng(seed).multivariate_normal(mean, cov, size=n))


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_closed_forms() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    # diagonal covariances: ||dmu||^2 + sum (sqrt a - sqrt b)^2
    expected = 1 + 0 + 4 + (1 + 1 + 0)
    assert F.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # general (non-commuting) covariances: the textbook formula with scipy's sqrtm
    s1, s2 = random_spd(6, 1), random_spd(6, 2)
    m1, m2 = np.arange(6.0), np.ones(6)
    textbook = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert F.frechet_distance(m1, s1, m2, s2) == pytest.approx(textbook, rel=1e-8)
    assert F.frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_samples_approach_the_closed_form() -> None:
    x = gaussian(400, np.zeros(8), random_spd(8, 0), seed=0)
    assert F.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    s1, s2 = np.diag([1.0, 2.0, 0.5]), np.diag([2.0, 2.0, 0.5])
    exact = F.frechet_distance(np.zeros(3), s1, np.full(3, 0.5), s2)
    est = F.fid(gaussian(20000, np.zeros(3), s1, 1), gaussian(20000, np.full(3, 0.5), s2, 2))
    assert est == pytest.approx(exact, rel=0.05)


def test_kid_near_zero_for_one_distribution_positive_for_two() -> None:
    cov = random_spd(16, 3)
    a, b = gaussian(600, np.zeros(16), cov, 4), gaussian(500, np.zeros(16), cov, 5)
    same_mean, same_std = F.kid(a, b, subsets=50, subset_size=200, seed=0)
    assert abs(same_mean) < 3 * same_std + 1e-3
    shifted = gaussian(500, np.full(16, 0.5), cov, 6)
    diff_mean, diff_std = F.kid(a, shifted, subsets=50, subset_size=200, seed=0)
    assert diff_mean > 0.05 and diff_mean > 5 * diff_std


def test_kid_matches_the_direct_unbiased_estimator_and_both_code_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).normal(size=(40, 5))
    y = np.random.default_rng(1).normal(0.3, 1.0, size=(40, 5))
    kxx, kyy, kxy = ((u @ v.T / 5 + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
    m = 40
    direct = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    assert F.kid(feats(x), feats(y), subsets=3, subset_size=40)[0] == pytest.approx(direct, rel=1e-10)
    cached = F.kid(feats(x), feats(y), subsets=7, subset_size=25, seed=3)
    monkeypatch.setattr(F, "KERNEL_CACHE", 0)
    assert F.kid(feats(x), feats(y), subsets=7, subset_size=25, seed=3) == pytest.approx(cached, rel=1e-10)


def test_precision_recall_density_coverage() -> None:
    rng = np.random.default_rng(0)
    real = feats(rng.normal(size=(300, 4)))
    assert F.precision_recall(real, real) == (1.0, 1.0)
    density, coverage = F.density_coverage(real, real)
    assert coverage == 1.0 and density >= 1.0  # each point sits in its own ball and its neighbours'
    same = feats(rng.normal(size=(300, 4)))
    p, r = F.precision_recall(real, same)
    assert p > 0.75 and r > 0.75
    shifted = feats(rng.normal(size=(300, 4)) + 3.0)
    p2, r2 = F.precision_recall(real, shifted)
    d2, c2 = F.density_coverage(real, shifted)
    assert p2 < 0.3 and r2 < 0.3 and d2 < 0.3 and c2 < 0.3
    # mode dropping: synthetic covers one of two real clusters -> precise, but half the recall
    two = np.concatenate([rng.normal(size=(150, 4)), rng.normal(size=(150, 4)) + 10])
    one = feats(rng.normal(size=(150, 4)))
    p3, r3 = F.precision_recall(feats(two), one)
    _, c3 = F.density_coverage(feats(two), one)
    assert p3 > 0.75 and r3 < 0.55 and c3 < 0.55


def test_metrics_refuse_features_from_different_extractors() -> None:
    a = feats(np.random.default_rng(0).normal(size=(20, 3)), "site-cnn-v1(...)")
    b = feats(np.random.default_rng(1).normal(size=(20, 3)), "inception (user file sha256 abc)")
    for fn in (F.fid, F.kid, F.precision_recall, F.density_coverage, F.compare):
        with pytest.raises(ExtractorMismatch):
            fn(a, b)


def tiny_inception_like(path: Path) -> Path:
    """A TorchScript module with the interface of NVIDIA's inception-2015-12-05.pt."""

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            assert x.dim() == 4 and x.shape[1] == 3
            assert bool((x >= 0).all()) and bool((x <= 255).all())
            pooled = torch.cat([x.mean((2, 3)), x.amin((2, 3)), x.amax((2, 3)), (x[:, :, ::4, ::4] > 128).float().mean((2, 3))], 1)
            if return_features:
                return pooled
            return pooled[:, :2]  # "logits": a different shape, so forgetting the flag shows

    torch.jit.save(torch.jit.script(Net()), str(path))
    return path


def test_user_supplied_torchscript_inception_is_loaded_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_inception_like(tmp_path / "inception-2015-12-05.pt")
    ext = InceptionExtractor(path)
    real = toy_set(40, 0)
    f = ext(real.images)
    assert f.values.shape == (40, 12)
    assert np.all(f.values[:, 3:9] == np.round(f.values[:, 3:9]))  # 8-bit values, not [-1, 1] floats
    assert f.values[:, 6:9].max() == 255 and f.values[:, 3:6].min() == 0
    assert ext.name.startswith("inception-2015-12-05 (user file sha256 ") and ext.sha256[:12] in ext.name

    monkeypatch.setenv(ENV_INCEPTION, str(path))
    assert resolve_extractor(None, real).name == ext.name
    rep = F.fidelity_report(real, toy_set(30, 1), seed=0, kid_subsets=5)
    assert rep["extractor"] == ext.name and rep["feature_dim"] == 12

    monkeypatch.delenv(ENV_INCEPTION)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionExtractor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        InceptionExtractor(tmp_path / "junk.pt")


def test_fidelity_report_is_json_named_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_INCEPTION, raising=False)
    real, syn = toy_set(90, 0), toy_set(60, 1)
    a = F.fidelity_report(real, syn, seed=0, nn_ssim_mean=0.41, nn_psnr_mean=17.5, kid_subsets=10)
    json.dumps(a)
    assert a["extractor"].startswith("site-cnn-v1(") and "trained on 90 real images" in a["extractor"]
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        assert np.isfinite(a[key]) and np.isfinite(a["reference"][key])
    assert (a["n_real"], a["n_synthetic"], a["nn_ssim_mean"], a["nn_psnr_mean"]) == (90, 60, 0.41, 17.5)
    b = F.fidelity_report(real, syn, seed=0, nn_ssim_mean=0.41, nn_psnr_mean=17.5, kid_subsets=10)
    a.pop("time_s"), b.pop("time_s")
    assert a == b
    # a clearly worse synthetic set scores worse than the real-vs-real reference
    bad = F.fidelity_report(real, toy_set(60, 1, shift=0.3, noise=0.6), seed=0, kid_subsets=10)
    assert bad["fid"] > 3 * bad["reference"]["fid"] and bad["precision"] < bad["reference"]["precision"]


def test_unlabelled_real_images_get_random_conv_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_INCEPTION, raising=False)
    real = toy_set(50, 0)
    rep = F.fidelity_report(ImageSet(real.images), ImageSet(toy_set(40, 1).images), kid_subsets=5)
    assert rep["extractor"].startswith("random-conv-v1(untrained")
    with pytest.raises(ValueError, match="px"):
        F.fidelity_report(real, toy_set(20, 1, size=64))
