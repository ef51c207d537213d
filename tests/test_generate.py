"""Sampling a run: PNGs + manifest, all-or-nothing, never over an existing folder."""

import json

import numpy as np
import pytest
from PIL import Image

from shared_models.gan import Generator
from shared_models.sampling import generate, sample_grid
from simulations.generate import write_samples


def test_generate_is_seeded_and_class_balanced():
    g = Generator(8, 8, 32, num_classes=3)
    a, la = generate(g, 9, seed=1)
    b, _ = generate(g, 9, seed=1)
    c, _ = generate(g, 9, seed=2)
    assert a.shape == (9, 1, 32, 32) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(la).tolist() == [3, 3, 3]
    assert a.min() >= -1 and a.max() <= 1
    with pytest.raises(ValueError, match="class 5 does not exist"):
        generate(g, 2, seed=0, class_id=5)


def test_sample_grid_has_one_row_per_class():
    g = Generator(8, 8, 32, num_classes=6)
    grid = sample_grid(g, per_class=8)
    assert grid.dtype == np.uint8 and grid.shape == (6 * 34 + 2, 8 * 34 + 2)


def test_write_samples_pngs_and_manifest(tiny_run, tmp_path):
    out = tmp_path / "samples"
    manifest = write_samples(tiny_run, out, n=12, seed=3, class_id=2)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{i:06d}.png" for i in range(12)] + ["manifest.json"])
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["count"] == 12 and on_disk["seed"] == 3 and on_disk["run"] == str(tiny_run.resolve())
    assert all(row["class"] == 2 for row in on_disk["files"])
    assert Image.open(out / "000000.png").size == (32, 32)
    assert manifest["checkpoint_sha256"] == on_disk["checkpoint_sha256"]


def test_write_samples_refuses_existing_folder_and_leaves_nothing_on_failure(tiny_run, tmp_path):
    out = tmp_path / "samples"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        write_samples(tiny_run, out, n=2, seed=0)
    assert (out / "keep.txt").read_text() == "user data"
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match="does not exist"):
        write_samples(tiny_run, fresh, n=2, seed=0, class_id=99)
    assert not fresh.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".fresh")]
