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


# --- labelled head slices: three planes x two contrasts, named like the demo set --------

DEMO_NAMES = ["ct-axial", "ct-coronal", "ct-sagittal", "mri-axial", "mri-coronal", "mri-sagittal"]


def _slices01(n: int, size: int, seed: int, **kw) -> tuple[np.ndarray, np.ndarray]:
    from client.head_slices import make_head_slices

    s = make_head_slices(n, size, seed=seed, **kw)
    return (s.images[:, 0] + 1) / 2, s.labels


def test_head_slices_deterministic_per_seed_and_index() -> None:
    from client.head_slices import make_head_slices

    a, b = make_head_slices(14, 32, seed=3), make_head_slices(14, 32, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(make_head_slices(5, 32, seed=3).images, a.images[:5])  # image i depends only on (seed, i)
    c = make_head_slices(14, 32, seed=4)
    assert np.abs(a.images - c.images).mean(axis=(1, 2, 3)).min() > 0.01
    assert len({x.tobytes() for x in a.images}) == 14
    # a different stream from make_phantoms: the two public sets never share an image
    assert not np.array_equal(make_phantoms(1, 32, seed=3).images[0], a.images[0])


@pytest.mark.parametrize("size", [32, 64])
def test_head_slices_shape_range_labels_and_side_information(size: int) -> None:
    from client.head_slices import PLANE_CLASS_NAMES, make_head_slices

    s = make_head_slices(13, size, seed=0)
    assert s.images.shape == (13, 1, size, size) and s.images.dtype == np.float32
    assert s.images.min() >= -1.0 and s.images.max() <= 1.0
    assert PLANE_CLASS_NAMES == DEMO_NAMES and s.class_names == DEMO_NAMES and s.num_classes == 6
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [i % 6 for i in range(13)]
    assert s.domains.tolist() == [DEMO_NAMES[i % 6].split("-")[0] for i in range(13)]
    assert len(set(s.groups.tolist())) == 13 and len(s.sources) == 13 and s.positions is None
    assert len(make_head_slices(0, size)) == 0
    x = (s.images[:, 0] + 1) / 2
    corners = np.concatenate([x[:, :2, :2].ravel(), x[:, :2, -2:].ravel()])
    assert corners.max() < 0.05  # air above the head
    with pytest.raises(ValueError):
        make_head_slices(-1)
    with pytest.raises(ValueError):
        make_head_slices(2, 4)
    with pytest.raises(ValueError):
        make_head_slices(2, 32, mri_stripped=1.5)


def test_head_slices_same_anatomy_at_32_and_64_px() -> None:
    from skimage.transform import resize

    small, _ = _slices01(12, 32, seed=4)
    big, _ = _slices01(12, 64, seed=4)
    down = np.stack([resize(b, (32, 32), anti_aliasing=True) for b in big])
    assert np.abs(down - small).mean() < 0.06


@pytest.mark.parametrize("size", [32, 64])
def test_ct_and_mri_contrast_differ(size: int) -> None:
    x, y = _slices01(120, size, seed=5)
    ct, mri = y < 3, y >= 3
    # CT: the skull is the brightest thing, far above the brain; T1 MRI: dark bone, so the
    # brightest pixels (fat, white matter) are much closer to the brain's level
    top = np.array([np.percentile(a[a > 0.05], 98) for a in x])
    med = np.array([np.median(a[a > 0.05]) for a in x])
    assert np.median((top - med)[ct]) > np.median((top - med)[mri]) + (0.03 if size == 32 else 0.08)
    # bone-white pixels in (nearly) every CT slice at 64 px, in few MRI slices (only bright fat)
    if size == 64:
        assert np.mean(x[ct].max(axis=(1, 2)) > 0.85) > 0.85 and np.mean(x[mri].max(axis=(1, 2)) > 0.9) < 0.3


def test_classes_separable_by_nearest_centroid() -> None:
    from client.head_slices import make_head_slices

    train, test = make_head_slices(240, 32, seed=1), make_head_slices(120, 32, seed=2)
    xa, xb = train.images.reshape(len(train), -1), test.images.reshape(len(test), -1)
    centroids = np.stack([xa[train.labels == k].mean(axis=0) for k in range(6)])
    pred = ((xb[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
    assert np.mean(pred == test.labels) > 0.7  # chance is 1/6: each class has its own look
    assert all(np.mean(pred[test.labels == k] == k) > 0.4 for k in range(6))


@pytest.mark.parametrize("size", [32, 64])
def test_planes_have_different_silhouettes(size: int) -> None:
    x, y = _slices01(120, size, seed=6)
    plane = y % 3  # 0 axial, 1 coronal, 2 sagittal
    bottom = x[:, -2:, :].max(axis=(1, 2))  # the neck leaves the image at the bottom
    assert np.mean(bottom[plane == 0] > 0.2) < 0.1  # axial: air all round (rarely a big head touches)
    assert np.mean(bottom[plane == 1] > 0.2) > 0.4 and np.mean(bottom[plane == 2] > 0.2) > 0.8  # coronal: not the face slices
    asym = np.abs(x - x[:, :, ::-1]).mean(axis=(1, 2))  # left-right mirror difference
    assert np.median(asym[plane == 2]) > 1.5 * max(np.median(asym[plane == 0]), np.median(asym[plane == 1]))
    tall = (x > 0.05).any(axis=2).sum(axis=1) / (x > 0.05).any(axis=1).sum(axis=1)  # height / width
    assert np.median(tall[plane == 0]) > 1.05  # axial: a long front-back oval
    assert np.median(tall[plane == 2]) < np.median(tall[plane == 1])  # sagittal is wider than coronal


def test_skull_stripped_mri_has_no_skull_and_ct_is_untouched() -> None:
    from client.head_slices import make_head_slices

    full, strip = make_head_slices(24, 32, seed=7), make_head_slices(24, 32, seed=7, mri_stripped=1.0)
    ct = full.labels < 3
    assert np.array_equal(full.images[ct], strip.images[ct])
    head_full = ((full.images[~ct, 0] + 1) / 2 > 0.05).mean(axis=(1, 2))
    head_strip = ((strip.images[~ct, 0] + 1) / 2 > 0.05).mean(axis=(1, 2))
    assert np.all(head_strip < head_full)  # the scalp, skull and neck are gone


def test_public_warm_start_uses_labelled_slices_only_for_the_demo_classes(monkeypatch) -> None:
    from server import public_data
    from shared_models.config import RunConfig

    monkeypatch.setattr(public_data, "PHANTOM_COUNT", 12)
    demo = RunConfig(data="demo", num_classes=6, warm_start="phantoms")
    data, desc = public_data.load_public(demo)
    assert data.class_names == DEMO_NAMES and data.labels.tolist() == [i % 6 for i in range(12)]
    assert "labelled head slices" in desc and public_data.run_class_names(demo) == DEMO_NAMES
    # class names from the run facts win; other names keep today's phantoms (random run classes)
    other = RunConfig(data="/some/folder", num_classes=6, warm_start="phantoms")
    assert public_data.run_class_names(other) is None
    data, desc = public_data.load_public(other)
    assert data.class_names == CLASS_NAMES and "random run classes" in desc
    data, _ = public_data.load_public(other, class_names=DEMO_NAMES)
    assert data.class_names == DEMO_NAMES
    data, _ = public_data.load_public(demo, class_names=["a", "b", "c", "d", "e", "f"])
    assert data.class_names == CLASS_NAMES
    assert public_data.load_public(RunConfig(data="demo", num_classes=2, warm_start="phantoms"))[0].class_names == CLASS_NAMES
