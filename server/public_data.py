"""Public data for the server-side warm start: never any site's private images.

Pretraining costs no privacy only if the images are public AND disjoint from the
data the sites then treat as private. In the demo the bundled set plays the
hospitals' data, so only phantoms may serve there.
"""

from __future__ import annotations

from client.dataset import ImageSet
from shared_models.config import RunConfig

PHANTOM_COUNT = 2048


def load_public(cfg: RunConfig) -> tuple[ImageSet, str]:
    """(public images, a description for the run record) for ``cfg.warm_start``."""
    source = cfg.warm_start
    if source == "phantoms":
        from client.phantoms import make_phantoms

        seed = cfg.seed + 10_000
        data = make_phantoms(PHANTOM_COUNT, cfg.image_size, seed=seed)
        return data, f"{PHANTOM_COUNT} procedural head phantoms (client.phantoms, seed {seed})"
    if source == "demo" and cfg.data == "demo":
        raise ValueError("warm-start 'demo' is refused: the sites train on the demo set, so it is not public to them")
    if source == cfg.data:
        raise ValueError(f"warm-start {source!r} is the sites' own data: pretraining on it would bypass DP")
    from client.loaders import load_images

    data, problems = load_images(source, cfg.image_size)
    note = f" ({len(problems)} files skipped)" if problems else ""
    return data, f"{len(data)} public images from {source}{note}"
