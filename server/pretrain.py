"""Public warm start of G and D on the server: ordinary (non-private) GAN training.

It costs no privacy ONLY because the images are public and disjoint from every site's
data (``server.public_data`` refuses the sites' own data). Sites then DP fine-tune a G
that already draws heads and a D that already tells a head from noise, so the few
private bits a site can afford go into what differs (modality, plane, anatomy) rather
than into learning that images have a dark background and a bright skull.

Public labels are used only when the caller passes the run's ``class_names`` and they
equal the public set's. Otherwise (e.g. phantoms' lesion / no-lesion vs CT/MRI planes)
every image gets a uniformly random run class, so each class embedding starts from
"a head" and none is biased towards a wrong class.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from client.dataset import ImageSet
from shared_models.config import RunConfig

ADAM_BETAS = (0.5, 0.999)
LR = 2e-4  # the DCGAN default: public, noise-free training wants it, whatever the DP phase uses


def pretrain(g: nn.Module, d: nn.Module, public: ImageSet, cfg: RunConfig, steps: int, device: str, seed: int, *, class_names: list[str] | None = None) -> dict[str, Any]:
    """Train ``g`` and ``d`` in place for ``steps`` GAN iterations on ``public``; JSON-able stats."""
    if steps < 1 or len(public) == 0:
        raise ValueError(f"warm start needs steps >= 1 and public images, got steps={steps}, n={len(public)}")
    if public.image_size != cfg.image_size:
        raise ValueError(f"public images are {public.image_size} px, the run is {cfg.image_size} px")
    started = time.monotonic()
    own_labels = bool(cfg.num_classes > 0 and public.labels is not None and class_names and len(class_names) == cfg.num_classes and list(class_names) == list(public.class_names))
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(np.ascontiguousarray(public.images, dtype=np.float32))
    y_all = torch.from_numpy(public.labels.astype(np.int64)) if own_labels else None
    k, b = cfg.num_classes, cfg.batch_size
    g.to(device).train()
    d.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=LR, betas=ADAM_BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=LR, betas=ADAM_BETAS)
    d_losses, g_losses = [], []
    for _ in range(steps):
        idx = torch.randint(len(x_all), (b,), generator=gen)
        real = x_all[idx].to(device)
        real_y = _class_labels(k, b, gen, device, None if y_all is None else y_all[idx])
        z = g.sample_latent(b, generator=gen, device=device)
        fake_y = _class_labels(k, b, gen, device, None)
        fake = g(z, fake_y)
        d_loss = F.softplus(-d(real, real_y)).mean() + F.softplus(d(fake.detach(), fake_y)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_params = [p for p in g.parameters() if p.requires_grad]
        g_loss = F.softplus(-d(fake, fake_y)).mean()
        grads = torch.autograd.grad(g_loss, g_params)  # D's weights get no gradient here
        opt_g.zero_grad(set_to_none=True)
        for p, grad in zip(g_params, grads):
            p.grad = grad
        opt_g.step()
        d_losses.append(float(d_loss.detach()))
        g_losses.append(float(g_loss.detach()))
    tail = max(1, steps // 10)
    return {
        "steps": steps,
        "labels": "public labels" if own_labels else ("random run classes" if k > 0 else "unconditional"),
        "d_loss": float(np.mean(d_losses[-tail:])),
        "g_loss": float(np.mean(g_losses[-tail:])),
        "seconds": round(time.monotonic() - started, 2),
    }


def _class_labels(k: int, n: int, gen: torch.Generator, device: str, given: torch.Tensor | None) -> torch.Tensor | None:
    if k == 0:
        return None
    if given is not None:
        return given.to(device)
    return torch.randint(k, (n,), generator=gen).to(device)
