"""DCGAN generator and discriminator for 32 and 64 px, conditional or not.

D uses GroupNorm, never BatchNorm: BatchNorm mixes samples in a batch, which breaks
per-sample gradients and so DP-SGD. G may keep BatchNorm: it never sees real data,
so it is trained by post-processing and needs no per-sample gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from shared_models.config import RunConfig


def _levels(image_size: int) -> int:
    """Number of 2x up/down-sampling stages between 4x4 and the image size."""
    if image_size not in (32, 64):
        raise ValueError(f"image size must be 32 or 64, got {image_size}")
    return 3 if image_size == 32 else 4


class Generator(nn.Module):
    """z (+ class embedding) -> 1-channel image in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 64, image_size: int = 32, num_classes: int = 0):
        super().__init__()
        self.latent_dim, self.num_classes, self.image_size = latent_dim, num_classes, image_size
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes > 0 else None
        levels = _levels(image_size)
        ch = width * 2 ** (levels - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = z * self.embed(labels)  # multiplicative conditioning keeps z's scale
        return self.net(z.view(z.size(0), self.latent_dim, 1, 1))

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        """Standard normal latents; pass a seeded ``torch.Generator`` for fixed grids."""
        return torch.randn(n, self.latent_dim, generator=generator).to(device)


class Discriminator(nn.Module):
    """Image (+ class) -> one logit per sample. Projection conditioning (Miyato & Koyama)."""

    def __init__(self, width: int = 32, image_size: int = 32, num_classes: int = 0, groups: int = 8):
        super().__init__()
        levels = _levels(image_size)
        layers: list[nn.Module] = [nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(levels - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.GroupNorm(min(groups, ch * 2), ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.feature_dim = ch * 4 * 4
        self.head = nn.Linear(self.feature_dim, 1)
        self.embed = nn.Embedding(num_classes, self.feature_dim) if num_classes > 0 else None
        if self.embed is not None:
            # nn.Embedding's N(0, 1) init makes the projection term ~sqrt(feature_dim) times
            # larger than the head's output: D would start saturated. Match Linear's scale.
            bound = self.feature_dim ** -0.5
            nn.init.uniform_(self.embed.weight, -bound, bound)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).flatten(1)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            out = out + (self.embed(labels) * h).sum(1)
        return out


def build_models(cfg: RunConfig) -> tuple[Generator, Discriminator]:
    """The G and D pair a run uses; seeded so every party starts from the same weights."""
    torch.manual_seed(cfg.seed)
    g = Generator(cfg.latent_dim, cfg.g_width, cfg.image_size, cfg.num_classes)
    d = Discriminator(cfg.d_width, cfg.image_size, cfg.num_classes)
    return g, d
