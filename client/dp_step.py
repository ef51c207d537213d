"""One private discriminator step in which ONLY the real-sample term is clipped and noised.

D's loss is  mean_real softplus(-D(x)) + mean_fake softplus(D(G(z))).  The fake term is a
function of G and D alone, both already outputs of the private mechanism, so its gradient
is post-processing (Opacus issue 418) and must not eat clipping budget. Opacus's
``DPOptimizer.step()`` would clip whatever per-sample gradients the hooks captured, so the
step is taken apart:

1. real forward/backward with hooks ON  -> ``p.grad_sample`` holds the real term per sample;
2. ``pre_step()``: clip each sample to C, sum, add N(0, sigma^2 C^2), divide by the EXPECTED
   batch size; Opacus ASSIGNS ``p.grad`` here (``p.grad = summed_grad + noise``), which also
   discards the unclipped real gradient that autograd had accumulated in step 1;
3. fake forward with hooks OFF and ``torch.autograd.grad`` -> added to ``p.grad`` unclipped;
4. the wrapped optimizer's own ``step()``.

The fake batch size is fixed (never the Poisson batch size, which depends on the data), and
fake labels are drawn uniformly, not copied from the real batch: otherwise the "fake" term
would be a function of private data too.

``clip_fake=True`` is the balanced variant: fakes go through the same hooked forward as
extra rows and are clipped PER FAKE SAMPLE, separately from the real samples. No real
sample shares its clipping budget with a fake, and the sensitivity of the noisy sum to
one real sample is still C. Why: per-sample gradient norms of D are 30-100x C here, so an
unclipped fake term outweighs the clipped real term by that factor, D learns only "push
fakes down", and G drifts (measured: benchmarks/dp_quality/README.md).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn


def poisson_indices(n: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Each example independently with probability q: the sampling the accountant assumes.

    The generator must be secret (not derived from the run seed the server knows): the
    amplification by subsampling holds only if nobody knows who was sampled.
    """
    return torch.nonzero(torch.rand(n, generator=generator) < sample_rate).squeeze(1)


class PrivateDiscriminator:
    """D wrapped for per-sample gradients, with an Opacus DPOptimizer around ``optimizer``.

    ``close()`` removes the hooks, leaving ``d`` a plain module with the trained weights.
    """

    def __init__(self, d: nn.Module, optimizer: torch.optim.Optimizer, *, noise_multiplier: float, max_grad_norm: float, expected_batch_size: int, noise_generator: torch.Generator | None, clip_fake: bool = False):
        if noise_multiplier <= 0 or max_grad_norm <= 0 or expected_batch_size < 1:
            raise ValueError(f"need noise_multiplier > 0, max_grad_norm > 0, expected_batch_size >= 1; got {noise_multiplier}, {max_grad_norm}, {expected_batch_size}")
        errors = ModuleValidator.validate(d, strict=False)
        if errors:
            raise ValueError(f"discriminator is not DP-compatible: {errors}")
        self.module = d
        # "sum": the real loss below is a SUM of per-sample losses, so grad_sample is each
        # sample's own gradient, also for an empty batch (a mean would be NaN there).
        self.gsm = GradSampleModule(d, batch_first=True, loss_reduction="sum", strict=True)
        # "mean" here only means: divide the noisy sum by the EXPECTED batch size, a
        # data-independent constant (dividing by the actual Poisson batch size would not be DP).
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=noise_generator,
        )
        self.noised_steps = 0
        self.clip_fake = clip_fake
        self.optimizer.attach_step_hook(self._count)

    def _count(self, _optimizer: DPOptimizer) -> None:
        self.noised_steps += 1

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def hooks_off(self) -> Iterator[None]:
        """Forward/backward through D without per-sample capture (fake term, G step)."""
        self.gsm.disable_hooks()
        try:
            yield
        finally:
            self.gsm.enable_hooks()

    def step(self, real: torch.Tensor, real_labels: torch.Tensor | None, fake: torch.Tensor, fake_labels: torch.Tensor | None) -> float:
        """One DP step on D; returns the fake-term loss (post-processing, safe to report).

        ``real`` may be empty (Poisson sampling): the step then releases pure noise, as
        the accountant assumes, instead of being skipped.
        """
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        if self.clip_fake:
            return self._step_clipping_fakes(real, real_labels, fake.detach(), fake_labels)
        if len(real) > 0:
            F.softplus(-self.gsm(real, real_labels)).sum().backward()
        else:
            for p in self.params:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self._clip_and_noise()
        with self.hooks_off():
            fake_loss = F.softplus(self.gsm(fake.detach(), fake_labels)).mean()
            grads = torch.autograd.grad(fake_loss, self.params, allow_unused=True)
        for p, g in zip(self.params, grads):
            if g is not None:
                p.grad.add_(g)
        opt.original_optimizer.step()
        opt.zero_grad(set_to_none=True)
        return float(fake_loss.detach())

    def _step_clipping_fakes(self, real: torch.Tensor, real_labels: torch.Tensor | None, fake: torch.Tensor, fake_labels: torch.Tensor | None) -> float:
        """Real and fake rows in ONE hooked forward (Opacus refuses two), each row clipped alone."""
        b = len(real)
        if len(fake) != self.optimizer.expected_batch_size:
            raise ValueError("clip_fake needs exactly expected_batch_size fakes: clipped rows are weighted 1/B alike")
        x = torch.cat([real, fake])
        labels = None if fake_labels is None else torch.cat([real_labels, fake_labels])
        out = self.gsm(x, labels)
        fake_loss = F.softplus(out[b:])
        (F.softplus(-out[:b]).sum() + fake_loss.sum()).backward()
        self._clip_and_noise()
        self.optimizer.original_optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(fake_loss.detach().mean())

    def _clip_and_noise(self) -> None:
        before = self.noised_steps
        if not self.optimizer.pre_step() or self.noised_steps != before + 1:
            raise RuntimeError("Opacus did not clip and noise this step; refusing to update D")

    def generator_loss(self, fake: torch.Tensor, fake_labels: torch.Tensor | None) -> torch.Tensor:
        """Non-saturating G loss through D, hooks off: G trains by post-processing."""
        return F.softplus(-self.gsm(fake, fake_labels)).mean()

    def close(self) -> None:
        """Remove Opacus's hooks and per-sample attributes from ``d``."""
        self.optimizer.zero_grad(set_to_none=True)
        self.gsm._close()
        for p in self.module.parameters():
            for attr in ("summed_grad", "grad_sample"):
                if hasattr(p, attr):
                    delattr(p, attr)
