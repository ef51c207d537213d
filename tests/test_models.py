"""G and D shapes, and D's fitness for DP-SGD (no BatchNorm, Opacus-valid)."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from shared_models.config import RunConfig
from shared_models.gan import Discriminator, Generator, build_models

TINY = dict(latent_dim=8, g_width=8, d_width=8)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("classes", [0, 6])
def test_shapes_and_range(size, classes):
    g, d = build_models(RunConfig(image_size=size, num_classes=classes, **TINY))
    labels = torch.arange(5) % classes if classes else None
    x = g(g.sample_latent(5), labels)
    assert x.shape == (5, 1, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x, labels).shape == (5,)


def test_conditional_models_need_labels_and_labels_matter():
    g, d = build_models(RunConfig(num_classes=6, **TINY))
    z = g.sample_latent(4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="labels"):
        g(z)
    with pytest.raises(ValueError, match="labels"):
        d(torch.zeros(4, 1, 32, 32))
    g.eval()
    a, b = g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    x = torch.randn(4, 1, 32, 32)
    assert not torch.allclose(d(x, torch.zeros(4, dtype=torch.long)), d(x, torch.ones(4, dtype=torch.long)))


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("classes", [0, 6])
def test_discriminator_is_dp_compatible(size, classes):
    _, d = build_models(RunConfig(image_size=size, num_classes=classes))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    assert not list(d.buffers())  # nothing mixes samples or carries batch statistics
    ModuleValidator.validate(d, strict=True)  # raises on any unsupported layer


def test_discriminator_starts_unsaturated():
    """Real-looking inputs must not give huge logits at init (the projection term is scaled)."""
    _, d = build_models(RunConfig(num_classes=6))
    out = d(torch.rand(64, 1, 32, 32) * 2 - 1, torch.arange(64) % 6)
    assert out.abs().max() < 5.0


def test_build_models_is_seeded_and_sizes_follow_config():
    cfg = RunConfig(**TINY)
    (g1, d1), (g2, d2) = build_models(cfg), build_models(cfg)
    assert all(torch.equal(a, b) for a, b in zip(g1.state_dict().values(), g2.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(d1.state_dict().values(), d2.state_dict().values()))
    g3, d3 = build_models(cfg.replace(seed=1))
    assert not torch.equal(next(iter(d1.parameters())), next(iter(d3.parameters())))
    assert isinstance(g1, Generator) and isinstance(d1, Discriminator)
    small = sum(p.numel() for p in build_models(cfg.replace(d_width=8))[1].parameters())
    large = sum(p.numel() for p in build_models(cfg.replace(d_width=16))[1].parameters())
    assert large > small
