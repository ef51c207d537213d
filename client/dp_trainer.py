"""One round of local DP training of a conditional GAN at one hospital.

Only D touches real images, through DP-SGD on the real-sample term of its loss
(``client.dp_step``); the fake term, G's updates and G's EMA are post-processing.
The round's steps are written to the site's ledger BEFORE training: a crash then
over-counts (safe) and never under-counts.

Two sources of randomness, kept apart on purpose:
* ``seed`` (derived from the run config, known to the server) drives only latents and
  fake labels, which are data-independent;
* Poisson sampling and the DP noise come from OS entropy. If they were derived from the
  run seed, the server could regenerate the noise, subtract it, and DP would be void.
"""

from __future__ import annotations

import math
import secrets
import time
import torch
from torch import nn

from client.dataset import ImageSet
from client.dp_step import PrivateDiscriminator, poisson_indices
from client.ledger import BudgetExceeded, PrivacyLedger
from shared_models.config import RunConfig

Metrics = dict[str, float | int | bool | str]
ADAM_BETAS = (0.5, 0.999)  # the usual GAN betas (DCGAN); also what Opacus's dcgan example uses


def sample_rate(batch_size: int, n_local: int) -> float:
    """Poisson rate q for an expected batch size: the ONE formula planner and trainer share."""
    if n_local < 1:
        raise ValueError("a site needs at least one training example")
    return min(1.0, batch_size / n_local)


def planned_steps(cfg: RunConfig) -> int:
    """Private D steps a site takes over a whole run (what sigma is derived for)."""
    return cfg.num_server_rounds * cfg.d_steps_per_round


def train_round(g: nn.Module, d: nn.Module, train: ImageSet, cfg: RunConfig, ledger: PrivacyLedger, *, noise_multiplier: float, device: str, seed: int) -> Metrics:
    """Train ``g`` and ``d`` in place for ``cfg.d_steps_per_round`` private D steps.

    Returns scalar metrics only. ``d_loss`` is the FAKE-sample term of D's loss: the
    real-sample loss is a non-private function of the site's images and is not reported.
    When the round would exceed the budget nothing is trained or recorded and
    ``stopped`` is True with a ``reason``.
    """
    n = len(train)
    q = sample_rate(cfg.batch_size, n)
    steps = cfg.d_steps_per_round
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"noise multiplier must be > 0 (DP is never switched off), got {noise_multiplier}")
    out: Metrics = {
        "d_loss": 0.0, "g_loss": 0.0, "epsilon": 0.0, "delta": ledger.delta, "noise_multiplier": float(noise_multiplier),
        "sample_rate": q, "steps": 0, "num_examples": n, "stopped": False, "reason": "",
    }
    planned = ledger.epsilon_after(noise_multiplier, q, steps)
    if planned > ledger.target_epsilon:
        return _stopped(out, ledger, f"budget: this round would take epsilon to {planned:.3f} > target {ledger.target_epsilon:g}")
    meta = {"kind": "dp-gan-round", "batch_size": cfg.batch_size, "max_grad_norm": cfg.max_grad_norm, "n": n, "d_steps_per_g_step": cfg.d_steps_per_g_step}
    try:
        eps = ledger.record(noise_multiplier, q, steps, meta)
    except BudgetExceeded as exc:  # another process spent budget since the check
        return _stopped(out, ledger, str(exc))
    started = time.monotonic()
    d_loss, g_loss = _train(g, d, train, cfg, noise_multiplier, q, steps, device, seed)
    out.update(d_loss=d_loss, g_loss=g_loss, epsilon=eps, steps=steps, seconds=time.monotonic() - started)
    return out


def _stopped(out: Metrics, ledger: PrivacyLedger, reason: str) -> Metrics:
    out.update(stopped=True, reason=reason, epsilon=ledger.spent_epsilon())
    return out


def _train(g: nn.Module, d: nn.Module, train: ImageSet, cfg: RunConfig, sigma: float, q: float, steps: int, device: str, seed: int) -> tuple[float, float]:
    """The step loop; returns mean (fake-term D loss, G loss)."""
    x = torch.from_numpy(train.images).float().to(device)
    y = _labels(train, cfg, device)
    public = torch.Generator().manual_seed(seed)
    secret = torch.Generator().manual_seed(secrets.randbits(63))
    noise_gen = torch.Generator(device=device).manual_seed(secrets.randbits(63))
    g.to(device).train()
    d.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=ADAM_BETAS)
    ema = Ema(g, cfg.ema_decay) if cfg.ema_decay > 0 else None
    frozen = freeze_public_features(d, cfg.d_trainable)
    try:
        opt_d = torch.optim.Adam([p for p in d.parameters() if p.requires_grad], lr=cfg.lr_d, betas=ADAM_BETAS)
        pd = PrivateDiscriminator(d, opt_d, noise_multiplier=sigma, max_grad_norm=cfg.max_grad_norm, expected_batch_size=cfg.batch_size, noise_generator=noise_gen, clip_fake=cfg.clip_fake_term)
        try:
            d_losses, g_losses = _loop(g, pd, opt_g, ema, x, y, cfg, q, steps, device, public, secret)
        finally:
            pd.close()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    if ema is not None:
        ema.copy_to(g)
    return _mean(d_losses), _mean(g_losses)


def _loop(g: nn.Module, pd: PrivateDiscriminator, opt_g: torch.optim.Optimizer, ema: "Ema | None", x: torch.Tensor, y: torch.Tensor | None, cfg: RunConfig, q: float, steps: int, device: str, public: torch.Generator, secret: torch.Generator) -> tuple[list[float], list[float]]:
    """``steps`` private D steps, a G step after every ``d_steps_per_g_step`` of them."""
    m = cfg.batch_size  # fake batch size: fixed, never the (data-dependent) Poisson size
    d_losses: list[float] = []
    g_losses: list[float] = []
    for t in range(steps):
        idx = poisson_indices(len(x), q, secret).to(device)
        g_turn = (t + 1) % cfg.d_steps_per_g_step == 0
        # the G step reuses this batch's graph (the DCGAN pattern): one G forward saved
        with torch.set_grad_enabled(g_turn):
            fake, fake_y = fakes(g, m, cfg.num_classes, public, device)
        d_losses.append(pd.step(x[idx], None if y is None else y[idx], fake, fake_y))
        if g_turn:
            g_losses.append(_g_step(g, pd, opt_g, fake, fake_y))
            if ema is not None:
                ema.update(g)
    if pd.noised_steps != steps:
        raise RuntimeError(f"took {pd.noised_steps} noised steps, the ledger recorded {steps}")
    return d_losses, g_losses


def freeze_public_features(d: nn.Module, mode: str) -> list[nn.Parameter]:
    """Freeze the parts of D a site must not train; returns what was frozen.

    The DP noise norm grows with sqrt(#noised parameters): ~48k for the whole D (width
    16, 32 px), ~7k for its head + class projection ("head"). Frozen weights are public
    (the server's warm start or the seeded init), never touched by private data, and get
    no noise because they get no update.
    """
    if mode == "all":
        return []
    if mode != "head":
        raise ValueError(f"unknown d_trainable {mode!r}")
    keep = ("head.", "embed.")
    frozen = [p for name, p in d.named_parameters() if p.requires_grad and not name.startswith(keep)]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _g_step(g: nn.Module, pd: PrivateDiscriminator, opt_g: torch.optim.Optimizer, fake: torch.Tensor, fake_y: torch.Tensor | None) -> float:
    """G's update through the just-updated D, hooks off, D's weights untouched."""
    g_params = [p for p in g.parameters() if p.requires_grad]
    with pd.hooks_off():
        loss = pd.generator_loss(fake, fake_y)
        grads = torch.autograd.grad(loss, g_params)
    opt_g.zero_grad(set_to_none=True)
    for p, grad in zip(g_params, grads):
        p.grad = grad
    opt_g.step()
    return float(loss.detach())


def fakes(g: nn.Module, m: int, num_classes: int, generator: torch.Generator, device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """m generated images; labels uniform over classes (never taken from real data)."""
    z = g.sample_latent(m, generator=generator, device=device)
    labels = torch.randint(num_classes, (m,), generator=generator).to(device) if num_classes > 0 else None
    return g(z, labels), labels


def _labels(train: ImageSet, cfg: RunConfig, device: str) -> torch.Tensor | None:
    if cfg.num_classes == 0:
        return None
    if train.labels is None:
        raise ValueError("class-conditional run (num-classes > 0) but the site's images have no labels")
    if len(train.labels) and int(train.labels.max()) >= cfg.num_classes:
        raise ValueError(f"label {int(train.labels.max())} outside num-classes={cfg.num_classes}")
    return torch.from_numpy(train.labels).long().to(device)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


class Ema:
    """Exponential moving average of G's weights (and buffers), post-processing of G."""

    def __init__(self, g: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in g.state_dict().items()}

    @torch.no_grad()
    def update(self, g: nn.Module) -> None:
        for k, v in g.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].lerp_(v, 1.0 - self.decay)
            else:
                self.state[k].copy_(v)

    def copy_to(self, g: nn.Module) -> None:
        g.load_state_dict(self.state)

