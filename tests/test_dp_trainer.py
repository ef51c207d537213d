"""DP training of D: only the real term is clipped and noised; the round obeys the ledger."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from client.accounting import epsilon
from client.dataset import ImageSet
from client.dp_step import PrivateDiscriminator, poisson_indices
from client.dp_trainer import planned_steps, sample_rate, train_round
from client.ledger import PrivacyLedger
from server.pretrain import pretrain
from shared_models.config import RunConfig
from shared_models.gan import Discriminator, build_models

TINY = RunConfig(latent_dim=8, g_width=8, d_width=8, num_classes=6, batch_size=8, d_steps_per_round=5, accountant="rdp")


def tiny_d() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(width=4, image_size=32, num_classes=6)


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def flat_grad(loss: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(module.parameters()))])


def one_step(d, real, real_y, fake, fake_y, *, sigma, clip, expected_batch, clip_fake=False):
    """Apply one private step with SGD(lr=1): the parameter change IS minus the gradient used."""
    before = flat(d)
    pd = PrivateDiscriminator(d, torch.optim.SGD(d.parameters(), lr=1.0), noise_multiplier=sigma, max_grad_norm=clip, expected_batch_size=expected_batch, noise_generator=torch.Generator().manual_seed(1), clip_fake=clip_fake)
    pd.step(real, real_y, fake, fake_y)
    assert pd.noised_steps == 1
    pd.close()
    return before - flat(d)  # = gradient applied


def clip_each(grads, clip):
    return sum(g * min(1.0, clip / (g.norm().item() + 1e-6)) for g in grads)


def reference_terms(d, real, real_y, fake, fake_y, clip, expected_batch):
    """Per-sample clipped real term (by hand, one sample at a time) and the plain fake term."""
    ref = copy.deepcopy(d)
    per_sample = [flat_grad(F.softplus(-ref(real[i : i + 1], real_y[i : i + 1])).sum(), ref) for i in range(len(real))]
    clipped = clip_each(per_sample, clip) / expected_batch
    unclipped = sum(per_sample) / expected_batch
    fake_term = flat_grad(F.softplus(ref(fake, fake_y)).mean(), ref)
    return clipped, unclipped, fake_term, min(g.norm().item() for g in per_sample)


def test_real_term_is_clipped_per_sample_and_fake_term_is_not():
    d = tiny_d()
    gen = torch.Generator().manual_seed(0)
    real, real_y = torch.rand(6, 1, 32, 32, generator=gen) * 2 - 1, torch.arange(6)
    fake, fake_y = 20 * torch.randn(16, 1, 32, 32, generator=gen), torch.arange(16) % 6  # a HUGE fake-term gradient
    clip, batch = 1e-3, 8
    clipped, unclipped, fake_term, smallest = reference_terms(d, real, real_y, fake, fake_y, clip, batch)
    assert smallest > 10 * clip  # every real sample really gets clipped...
    assert (clipped - unclipped).norm() > 0.5 * unclipped.norm()  # ...so clipping visibly changes the real term
    assert fake_term.norm() > 1000 * clip  # clipping the fake term would shrink it by orders of magnitude
    applied = one_step(d, real, real_y, fake, fake_y, sigma=1e-9, clip=clip, expected_batch=batch)
    torch.testing.assert_close(applied, clipped + fake_term, rtol=1e-4, atol=1e-7)


def test_balanced_mode_clips_each_fake_on_its_own_never_with_a_real_sample():
    """clip_fake=True: every row (real or fake) is clipped alone, so a huge fake gradient
    neither eats a real sample's budget nor dominates the step."""
    d = tiny_d()
    gen = torch.Generator().manual_seed(0)
    real, real_y = torch.rand(5, 1, 32, 32, generator=gen) * 2 - 1, torch.arange(5)
    fake, fake_y = 20 * torch.randn(8, 1, 32, 32, generator=gen), torch.arange(8) % 6
    clip, batch = 1e-2, 8
    clipped_real, _, fake_term, _ = reference_terms(d, real, real_y, fake, fake_y, clip, batch)
    ref = copy.deepcopy(d)
    per_fake = [flat_grad(F.softplus(ref(fake[j : j + 1], fake_y[j : j + 1])).sum(), ref) for j in range(len(fake))]
    clipped_fake = clip_each(per_fake, clip) / batch
    assert fake_term.norm() > 100 * clipped_fake.norm()  # the fake term really is shrunk in this mode
    applied = one_step(d, real, real_y, fake, fake_y, sigma=1e-9, clip=clip, expected_batch=batch, clip_fake=True)
    torch.testing.assert_close(applied, clipped_real + clipped_fake, rtol=1e-4, atol=1e-7)


def test_noise_is_gaussian_with_std_sigma_c_over_expected_batch():
    d = tiny_d()
    gen = torch.Generator().manual_seed(0)
    real, real_y = torch.rand(5, 1, 32, 32, generator=gen) * 2 - 1, torch.arange(5)
    fake, fake_y = torch.rand(8, 1, 32, 32, generator=gen) * 2 - 1, torch.arange(8) % 6
    sigma, clip, batch = 2.0, 0.5, 10
    clipped, _, fake_term, _ = reference_terms(d, real, real_y, fake, fake_y, clip, batch)
    noise = one_step(d, real, real_y, fake, fake_y, sigma=sigma, clip=clip, expected_batch=batch) - clipped - fake_term
    assert noise.numel() > 2000
    assert noise.std().item() == pytest.approx(sigma * clip / batch, rel=0.06)
    assert abs(noise.mean().item()) < 4 * sigma * clip / batch / noise.numel() ** 0.5


def test_an_empty_poisson_batch_still_takes_a_noised_step():
    d = tiny_d()
    fake, fake_y = torch.rand(8, 1, 32, 32) * 2 - 1, torch.arange(8) % 6
    _, _, fake_term, _ = reference_terms(d, torch.zeros(1, 1, 32, 32), torch.zeros(1, dtype=torch.long), fake, fake_y, 1.0, 4)
    noise = one_step(d, torch.zeros(0, 1, 32, 32), torch.zeros(0, dtype=torch.long), fake, fake_y, sigma=1.0, clip=1.0, expected_batch=4) - fake_term
    assert noise.std().item() == pytest.approx(1.0 / 4, rel=0.06)


def test_poisson_sampling_rate_and_empty_batches():
    gen = torch.Generator().manual_seed(0)
    sizes = [len(poisson_indices(50, 0.2, gen)) for _ in range(400)]
    assert np.mean(sizes) == pytest.approx(10, rel=0.05) and np.std(sizes) > 1  # sizes vary
    assert sum(len(poisson_indices(3, 0.1, gen)) == 0 for _ in range(200)) > 100  # empty batches happen


def tiny_site(n=24, seed=0) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(rng.uniform(-1, 1, (n, 1, 32, 32)).astype(np.float32), rng.integers(0, 6, n))


def state(*nets):
    return [v.detach().clone() for net in nets for v in net.state_dict().values()]


def test_a_round_trains_records_and_returns_scalars_only(tmp_path):
    g, d = build_models(TINY)
    before = state(g, d)
    train = tiny_site()
    ledger = PrivacyLedger(tmp_path / "s.json", target_epsilon=50.0, delta=1e-5, accountant="rdp")
    started = time.monotonic()
    out = train_round(g, d, train, TINY, ledger, noise_multiplier=2.0, device="cpu", seed=0)
    assert time.monotonic() - started < 20
    q = sample_rate(TINY.batch_size, len(train))
    assert not out["stopped"] and out["steps"] == 5 and out["num_examples"] == 24
    assert ledger.history == [(2.0, q, 5)]
    assert out["epsilon"] == pytest.approx(epsilon([(2.0, q, 5)], 1e-5, "rdp")) == pytest.approx(ledger.spent_epsilon())
    assert {"d_loss", "g_loss", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "num_examples", "stopped", "reason"} <= set(out)
    assert all(type(v) in (int, float, bool, str) for v in out.values()), {k: type(v) for k, v in out.items()}
    after = state(g, d)
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    n_g = len(g.state_dict())
    assert any(changed[:n_g]) and any(changed[n_g:])  # both G and D moved
    assert not any(hasattr(p, "grad_sample") for p in d.parameters())  # Opacus detached cleanly
    assert not d._forward_hooks and all(not m._forward_hooks and not m._backward_hooks for m in d.modules())


def test_dp_noise_is_not_derived_from_the_run_seed(tmp_path):
    """Same weights, data and seed twice: D must still differ, else the server could
    regenerate (and subtract) the noise from the seed it knows."""
    train = tiny_site()
    results = []
    for k in range(2):
        g, d = build_models(TINY)
        ledger = PrivacyLedger(tmp_path / f"s{k}.json", target_epsilon=50.0, delta=1e-5, accountant="rdp")
        train_round(g, d, train, TINY.replace(d_steps_per_round=1), ledger, noise_multiplier=2.0, device="cpu", seed=0)
        results.append(flat(d))
    assert not torch.allclose(results[0], results[1])


def test_over_budget_round_does_not_train_or_record(tmp_path):
    g, d = build_models(TINY)
    train = tiny_site()
    q = sample_rate(TINY.batch_size, len(train))
    one, two = epsilon([(2.0, q, 5)], 1e-5, "rdp"), epsilon([(2.0, q, 10)], 1e-5, "rdp")
    ledger = PrivacyLedger(tmp_path / "s.json", target_epsilon=(one + two) / 2, delta=1e-5, accountant="rdp")  # room for one round
    assert not train_round(g, d, train, TINY, ledger, noise_multiplier=2.0, device="cpu", seed=0)["stopped"]
    assert ledger.would_exceed(2.0, q, 5)
    before, file_before = state(g, d), (tmp_path / "s.json").read_bytes()
    out = train_round(g, d, train, TINY, ledger, noise_multiplier=2.0, device="cpu", seed=1)
    assert out["stopped"] and "budget" in out["reason"] and out["steps"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, state(g, d)))
    assert (tmp_path / "s.json").read_bytes() == file_before and len(ledger.history) == 1
    assert all(type(v) in (int, float, bool, str) for v in out.values())


def test_zero_noise_is_refused_before_anything_happens(tmp_path):
    g, d = build_models(TINY)
    ledger = PrivacyLedger(tmp_path / "s.json", target_epsilon=50.0, delta=1e-5, accountant="rdp")
    with pytest.raises(ValueError, match="never switched off"):
        train_round(g, d, tiny_site(), TINY, ledger, noise_multiplier=0.0, device="cpu", seed=0)
    assert ledger.history == []


def test_planned_steps_and_sample_rate():
    assert planned_steps(TINY.replace(num_server_rounds=4, d_steps_per_round=30)) == 120
    assert sample_rate(64, 171) == 64 / 171 and sample_rate(64, 10) == 1.0


def test_public_warm_start_trains_both_nets_without_run_labels():
    g, d = build_models(TINY)
    before = state(g, d)
    public = ImageSet(tiny_site(32).images, np.arange(32) % 2, class_names=["no-lesion", "lesion"])
    stats = pretrain(g, d, public, TINY, steps=3, device="cpu", seed=0)
    assert stats["steps"] == 3 and stats["labels"] == "random run classes"
    after = state(g, d)
    n_g = len(g.state_dict())
    assert any(not torch.equal(a, b) for a, b in zip(before[:n_g], after[:n_g]))
    assert any(not torch.equal(a, b) for a, b in zip(before[n_g:], after[n_g:]))
    with pytest.raises(ValueError, match="px"):
        pretrain(g, d, ImageSet(np.zeros((4, 1, 64, 64), np.float32)), TINY, steps=1, device="cpu", seed=0)


def test_head_mode_leaves_public_features_untouched_and_restores_them(tmp_path):
    g, d = build_models(TINY)
    features = [p.detach().clone() for p in d.features.parameters()]
    head = flat(d.head)
    ledger = PrivacyLedger(tmp_path / "s.json", target_epsilon=50.0, delta=1e-5, accountant="rdp")
    out = train_round(g, d, tiny_site(), TINY.replace(d_trainable="head", clip_fake_term=True), ledger, noise_multiplier=2.0, device="cpu", seed=0)
    assert not out["stopped"]
    assert all(torch.equal(a, b) for a, b in zip(features, d.features.parameters()))
    assert not torch.equal(head, flat(d.head))
    assert all(p.requires_grad for p in d.parameters())  # the next round (or the server) sees a normal D
