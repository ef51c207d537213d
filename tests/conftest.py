"""Shared fixtures: a tiny trained-looking run directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from privacy_audit.nn_compile import prefer_wide_vectors  # noqa: E402

prefer_wide_vectors()  # the kernel is tested as the CLI compiles it

from server.run_dir import RunDir, write_json  # noqa: E402
from shared_models.config import RunConfig  # noqa: E402
from shared_models.gan import build_models  # noqa: E402
from shared_models.weights import pack, save_checkpoint  # noqa: E402

TINY = dict(latent_dim=8, g_width=8, d_width=8, num_classes=6, image_size=32)


@pytest.fixture
def tiny_run(tmp_path: Path) -> Path:
    """A run directory with config.json and a final checkpoint of an untrained tiny GAN."""
    cfg = RunConfig(**TINY)
    run = RunDir(tmp_path / "run")
    g, d = build_models(cfg)
    write_json(run.config, {**cfg.to_flower(), "class-names": [f"c{k}" for k in range(6)]})
    save_checkpoint(run.final_checkpoint, pack(g, d), {"round": 0})
    return run.root
