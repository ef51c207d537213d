"""Phantoms: seeded, labelled, head-like, and usable as an ImageSet anywhere."""

from __future__ import annotations

import numpy as np
import pytest

from client.phantoms import CLASS_NAMES, make_phantoms


def test_deterministic_and_prefix_stable() -> None:
    a, b = make_phantoms(12, 32, seed=3), make_phantoms(12, 32, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    short = make_phantoms(5, 32, seed=3)  # image i depends only on (seed, i)
    assert np.array_equal(short.images, a.images[:5])


def test_different_seeds_differ() -> None:
    a, b = make_phantoms(8, 32, seed=0), make_phantoms(8, 32, seed=1)
    assert np.abs(a.images - b.images).mean(axis=(1, 2, 3)).min() > 0.01
    assert len({x.tobytes() for x in a.images}) == 8  # no two alike within a set either


def test_labels_shape_range_and_side_information() -> None:
    p = make_phantoms(10, 64, seed=0)
    assert p.images.shape == (10, 1, 64, 64) and p.images.dtype == np.float32
    assert p.images.min() >= -1.0 and p.images.max() <= 1.0
    assert p.labels.tolist() == [0, 1] * 5 and p.class_names == CLASS_NAMES
    assert len(set(p.groups.tolist())) == 10 and set(p.domains.tolist()) == {"phantom"}
    assert len(p.sources) == 10 and p.num_classes == 2
    assert len(make_phantoms(0)) == 0
    with pytest.raises(ValueError):
        make_phantoms(-1)


def test_head_like_background_skull_brain() -> None:
    x = (make_phantoms(20, 64, seed=5).images[:, 0] + 1) / 2
    corners = np.concatenate([x[:, :4, :4].ravel(), x[:, -4:, -4:].ravel()])
    assert corners.max() < 0.05  # air around the head
    centre = x[:, 24:40, 24:40].mean(axis=(1, 2))
    assert np.all((centre > 0.2) & (centre < 0.75))  # brain: grey, not bone-white
    ring = x[:, 32, :].max(axis=1)
    assert np.all(ring > 0.7) and np.median(ring - centre) > 0.25  # a bright skull ring


def test_lesion_class_differs_from_paired_normal() -> None:
    p = make_phantoms(40, 32, seed=2)
    x = (p.images[:, 0] + 1) / 2
    # a lesion is a blob far from grey/white matter: very bright or very dark pixels inside the brain
    inner = x[:, 10:22, 10:22]
    extreme = ((inner > 0.75) | (inner < 0.3)).mean(axis=(1, 2))
    assert extreme[p.labels == 1].mean() > extreme[p.labels == 0].mean()


def test_same_head_at_32_and_64_px() -> None:
    from skimage.transform import resize

    small, big = make_phantoms(6, 32, seed=4), make_phantoms(6, 64, seed=4)
    down = np.stack([resize(b[0], (32, 32), anti_aliasing=True) for b in big.images])
    assert np.abs(down - small.images[:, 0]).mean() < 0.08
