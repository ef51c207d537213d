"""Procedural, labelled head phantoms: public by construction, any number, any seed.

Used for tests, large-scale runs and as PUBLIC warm-start data for the GAN (they cost
no privacy because no patient is in them). Each is a Shepp-Logan-like axial head:
skull ring, brain with a brighter cortical rim and soft texture, two ventricles, and
in class 1 a lesion. Image ``i`` depends only on ``(seed, i)``, so the first ``k``
phantoms of a set are the same whatever ``n`` is. Labelled head slices in three planes
and two contrasts, drawn with the same helpers, are :mod:`client.head_slices`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from client.dataset import ImageSet

CLASS_NAMES = ["no-lesion", "lesion"]
OVERSAMPLE = 2  # draw at 2x then downsample with anti-aliasing: smooth edges


def ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, theta: float) -> np.ndarray:
    """Boolean mask of a rotated ellipse on the grid (coordinates in [-1, 1])."""
    c, s = np.cos(theta), np.sin(theta)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _one(rng: np.random.Generator, size: int, lesion: bool) -> np.ndarray:
    """One phantom in [0, 1], (size, size); the same head at every size (the pixel noise
    comes from its own generator, so shapes do not depend on how many pixels there are)."""
    noise = np.random.default_rng(rng.integers(2**63))
    n = size * OVERSAMPLE
    yy, xx = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    theta = rng.uniform(-0.25, 0.25)
    cy, cx = rng.uniform(-0.05, 0.05, 2)
    ry = rng.uniform(0.78, 0.92)
    rx = ry * rng.uniform(0.72, 0.86)
    skull_t = rng.uniform(0.07, 0.11)
    img = np.zeros((n, n), dtype=np.float32)
    head = ellipse(yy, xx, cy, cx, ry, rx, theta)
    img[head] = rng.uniform(0.85, 1.0)  # skull
    bry, brx = ry - skull_t, rx - skull_t
    img[ellipse(yy, xx, cy, cx, bry, brx, theta)] = rng.uniform(0.2, 0.3)  # CSF under the skull
    gap = rng.uniform(0.015, 0.035)
    bry, brx = bry - gap, brx - gap
    brain = ellipse(yy, xx, cy, cx, bry, brx, theta)
    grey, white = rng.uniform(0.4, 0.48), rng.uniform(0.58, 0.66)
    img[brain] = grey
    inner = ellipse(yy, xx, cy, cx, bry * 0.85, brx * 0.82, theta)
    img[inner] = white  # white matter inside a cortical grey rim
    # soft texture, only inside the brain
    tex = resize(noise.normal(0.0, 1.0, (10, 10)), (n, n), order=1, anti_aliasing=False)  # smooth blobs, cheaply
    tex = ndimage.uniform_filter(tex, size=max(3, n // 10))
    img[brain] += (0.06 * tex / (tex.std() + 1e-8))[brain]
    # two ventricles, mirrored about the midline, dark like CSF
    vy, vx = cy + rng.uniform(-0.1, 0.04), rng.uniform(0.12, 0.2) * brx
    vry, vrx, tilt = rng.uniform(0.2, 0.32) * bry, rng.uniform(0.045, 0.08), rng.uniform(0.15, 0.45)
    csf = rng.uniform(0.1, 0.2)
    for sign in (-1, 1):
        img[ellipse(yy, xx, vy, cx + sign * vx, vry, vrx, theta + sign * tilt)] = csf
    if lesion:
        ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.65)
        ly, lx = cy + rad * bry * np.sin(ang), cx + rad * brx * np.cos(ang)
        lr = rng.uniform(0.09, 0.18)
        value = rng.choice([rng.uniform(0.8, 0.95), rng.uniform(0.2, 0.3)])  # enhancing or hypodense
        img[ellipse(yy, xx, ly, lx, lr * rng.uniform(0.7, 1.0), lr, rng.uniform(0, np.pi))] = value
    img = ndimage.gaussian_filter(img, sigma=0.6 * OVERSAMPLE)
    img = img * rng.uniform(0.9, 1.05) + noise.normal(0.0, 0.015, img.shape) * head
    return downsample(img, size)


def downsample(img: np.ndarray, size: int) -> np.ndarray:
    """(size * OVERSAMPLE)^2 drawing -> (size, size) in [0, 1]; the drawing is blurred
    already, so a box mean is enough."""
    small = img.reshape(size, OVERSAMPLE, size, OVERSAMPLE).mean(axis=(1, 3))
    return np.clip(small, 0.0, 1.0).astype(np.float32)


def render(n: int, image_size: int, draw: Callable[[int], np.ndarray], what: str) -> np.ndarray:
    """(n, 1, size, size) in [-1, 1] from ``draw(i)`` -> one (size, size) image in [0, 1]."""
    if n < 0:
        raise ValueError(f"{what} count must be >= 0, got {n}")
    if not 8 <= image_size <= 1024:
        raise ValueError(f"image_size must be in 8..1024, got {image_size}")
    imgs = np.zeros((n, 1, image_size, image_size), dtype=np.float32)
    for i in range(n):
        imgs[i, 0] = draw(i) * 2.0 - 1.0
    return imgs


def make_phantoms(n: int, image_size: int = 32, seed: int = 0) -> ImageSet:
    """``n`` head phantoms, half without (class 0) and half with (class 1) a lesion."""
    labels = np.arange(n, dtype=np.int64) % 2
    imgs = render(n, image_size, lambda i: _one(np.random.default_rng([seed, i]), image_size, bool(labels[i])), "phantom")
    names = np.asarray([f"phantom-{seed}-{i}" for i in range(n)])
    return ImageSet(
        images=imgs,
        labels=labels,
        class_names=list(CLASS_NAMES),
        groups=names,
        positions=None,  # independent 2-D images: each is its own "patient"
        domains=np.full(n, "phantom"),
        sources=[f"phantom(seed={seed})[{i}]" for i in range(n)],
    )
