"""The bundled demo npz: format, classes, values, and no near-duplicates; plus the builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from client import demo_build
from client.demo_stats import SsimIndex, max_pair_ssim, slab_holdout
from client.loaders import DEMO_PATH, load_demo

CLASSES = ["ct-axial", "ct-coronal", "ct-sagittal", "mri-axial", "mri-coronal", "mri-sagittal"]


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    with np.load(DEMO_PATH, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_npz_format(raw: dict[str, np.ndarray]) -> None:
    x = raw["images"]
    assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[1:] == (64, 64)
    assert 600 <= len(x) <= 1500 and DEMO_PATH.stat().st_size < 5_000_000
    assert raw["class_names"].tolist() == CLASSES and raw["labels"].dtype == np.int64
    for key in ("labels", "groups", "positions", "domains"):
        assert len(raw[key]) == len(x), key
    counts = np.bincount(raw["labels"], minlength=6)
    assert counts.min() >= 50, counts
    # domain and group agree with the class: CT classes come from CT volumes only
    is_ct = raw["labels"] < 3
    assert set(raw["domains"][is_ct].tolist()) == {"CT"} and set(raw["domains"][~is_ct].tolist()) == {"MRI"}
    for g, lab in zip(raw["groups"], raw["labels"]):
        assert g.endswith(":" + CLASSES[lab].split("-")[1])


def test_groups_are_slabs_at_a_spacing(raw: dict[str, np.ndarray]) -> None:
    for g in np.unique(raw["groups"]):
        pos = np.sort(raw["positions"][raw["groups"] == g])
        assert len(pos) >= 20 and np.diff(pos).min() >= 2.0, g  # every 2nd 1 mm slice at most


def test_load_demo_value_range() -> None:
    for size in (32, 64):
        d = load_demo(size)
        assert d.images.shape[1:] == (1, size, size) and d.images.dtype == np.float32
        assert d.images.min() == -1.0 and d.images.max() == 1.0
        assert d.class_names == CLASSES and d.num_classes == 6
        assert d.groups is not None and d.positions is not None and d.domains is not None


def test_batched_ssim_matches_skimage(raw: dict[str, np.ndarray]) -> None:
    x = raw["images"]
    rng = np.random.default_rng(0)
    i, js = 5, rng.choice(len(x), 6, replace=False)
    got = SsimIndex(x[js], 255.0).ssim(x[i])
    want = [structural_similarity(x[i], x[j], data_range=255) for j in js]
    assert np.allclose(got, want, atol=1e-9)


def test_no_near_duplicates_within_any_group(raw: dict[str, np.ndarray]) -> None:
    for g in np.unique(raw["groups"]):
        assert max_pair_ssim(raw["images"][raw["groups"] == g], 255.0) < 0.98, g


def test_slab_holdout_takes_contiguous_slabs_with_gap() -> None:
    groups = np.array(["a"] * 10 + ["b"] * 10)
    positions = np.tile(np.arange(10) * 2.0, 2)
    train, held = slab_holdout(groups, positions, 0.2, 1, np.random.default_rng(0))
    assert len(held) == 4 and not set(train) & set(held)
    for g in "ab":
        h = sorted(p for p in positions[held][groups[held] == g])
        t = positions[train][groups[train] == g]
        assert np.diff(h).tolist() == [2.0]  # contiguous
        assert np.abs(t[:, None] - np.array(h)[None]).min() >= 4.0  # one slice of gap


def _fake_volume(name: str, modality: str, seed: int) -> demo_build.Volume:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[-1:1:40j, -1:1:40j, -1:1:40j]
    head = (zz**2 + yy**2 + xx**2) < 0.8
    vol = np.where(head, 0.5 + 0.3 * np.sin(6 * zz + 5 * yy + seed) * np.cos(4 * xx), 0.0)
    vol[:, :, 18:24] = vol[:, :, 20:21]  # identical sagittal slices: must be de-duplicated
    return demo_build.Volume(name, modality, (vol + 0.02 * rng.random(vol.shape) * head).astype(np.float32), name)


def test_build_demo_end_to_end_on_small_volumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vols = [_fake_volume("ct-a", "CT", 0), _fake_volume("mri-a", "MRI", 1)]
    monkeypatch.setattr(demo_build, "missing_sources", lambda: [])
    monkeypatch.setattr(demo_build, "_volumes", lambda: vols)
    out = tmp_path / "d.npz"
    stats = demo_build.build_demo(out)
    assert out.exists() and not list(tmp_path.glob("*.tmp"))
    with np.load(out) as z:
        x, labels = z["images"], z["labels"]
        assert len(x) == stats["count"] and set(labels.tolist()) == set(range(6))
    assert stats["dropped_near_duplicates"] > 0
    assert max_pair_ssim(x, 255.0) < 0.98  # all pairs, across groups too
    assert 0 < stats["holdout_nn_ssim_32px"]["gap1"]["slab_median"] <= 1


def test_build_demo_names_the_apt_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(demo_build, "missing_sources", lambda: ["/usr/share/mricron/templates/ch2.nii.gz"])
    with pytest.raises(FileNotFoundError, match="apt-get install invesalius-examples mricron-data"):
        demo_build.build_demo(tmp_path / "x.npz")
