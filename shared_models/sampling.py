"""Drawing images from a generator: seeded, batched, class-balanced when conditional."""

from __future__ import annotations

import numpy as np
import torch

from shared_models.gan import Generator
from shared_models.images import make_grid


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """0, 1, ..., K-1, 0, 1, ... so every class gets n/K samples (+-1)."""
    return (np.arange(n) % num_classes).astype(np.int64)


@torch.no_grad()
def generate(
    g: Generator,
    n: int,
    seed: int,
    *,
    class_id: int | None = None,
    device: str = "cpu",
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """n images (float32 (N,1,H,W) in [-1,1]) and their labels (None if unconditional)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k = g.num_classes
    if class_id is not None and not (k > 0 and 0 <= class_id < k):
        raise ValueError(f"class {class_id} does not exist: the generator has {k} classes")
    labels = None
    if k > 0:
        labels = np.full(n, class_id, dtype=np.int64) if class_id is not None else balanced_labels(n, k)
    rng = torch.Generator().manual_seed(seed)
    was_training = g.training
    g.eval().to(device)
    out = []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        z = g.sample_latent(stop - start, generator=rng, device=device)
        y = None if labels is None else torch.from_numpy(labels[start:stop]).to(device)
        out.append(g(z, y).float().cpu().numpy())
    g.train(was_training)
    return np.concatenate(out).astype(np.float32), labels


def sample_grid(g: Generator, per_class: int = 8, seed: int = 1234, device: str = "cpu") -> np.ndarray:
    """A uint8 grid from a FIXED latent batch: one row per class, the same z in every
    row (so columns show what the class changes), or 8x8 when unconditional."""
    if g.num_classes == 0:
        images, _ = generate(g, 64, seed, device=device)
        return make_grid(images, 8)
    rows = [generate(g, per_class, seed, class_id=c, device=device)[0] for c in range(g.num_classes)]
    return make_grid(np.concatenate(rows), per_class)
