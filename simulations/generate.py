"""Sampling a trained run to a folder of PNGs with a manifest, written all-or-nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from server.run_dir import RunDir, write_json
from shared_models.config import RunConfig
from shared_models.gan import Generator, build_models
from shared_models.images import to_uint8
from shared_models.sampling import generate
from shared_models.weights import load_checkpoint, load_packed


def load_generator(run_path: Path, checkpoint: Path | None = None) -> tuple[Generator, RunConfig, Path]:
    """G from a run's final (or a given) checkpoint, with the run's config."""
    run = RunDir(Path(run_path))
    values = run.read_config()
    cfg = RunConfig.from_flower({k: v for k, v in values.items() if k in RunConfig.keys()})
    ckpt = Path(checkpoint) if checkpoint else run.final_checkpoint
    state, _meta = load_checkpoint(ckpt)
    g, d = build_models(cfg)
    load_packed(g, d, state)
    return g.eval(), cfg, ckpt


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_folder_atomically(out: Path, fill: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build the folder under a temp name beside ``out``, then rename: never half a folder,
    and never over an existing non-empty one."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        result = fill(tmp)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def write_samples(run: Path, out: Path, *, n: int, seed: int, class_id: int | None = None, checkpoint: Path | None = None) -> dict[str, Any]:
    """n PNGs plus manifest.json (file, class, seed, run) in ``out``."""
    g, cfg, ckpt = load_generator(run, checkpoint)
    images, labels = generate(g, n, seed, class_id=class_id)
    class_names = class_names_of(run)

    def fill(folder: Path) -> dict[str, Any]:
        files = save_images(folder, images, labels, class_names)
        manifest = {
            "run": str(Path(run).resolve()),
            "checkpoint": str(ckpt.resolve()),
            "checkpoint_sha256": sha256(ckpt),
            "seed": seed,
            "count": len(files),
            "class": class_id,
            "class_names": class_names,
            "files": files,
        }
        write_json(folder / "manifest.json", manifest)
        return manifest

    return write_folder_atomically(out, fill)


def save_images(folder: Path, images: np.ndarray, labels: np.ndarray | None, class_names: list[str]) -> list[dict[str, Any]]:
    """One PNG per image; returns the manifest rows (with checksums)."""
    rows = []
    for i, pixels in enumerate(to_uint8(images)):
        name = f"{i:06d}.png"
        Image.fromarray(pixels).save(folder / name)
        row: dict[str, Any] = {"file": name, "sha256": sha256(folder / name), "index": i}
        if labels is not None:
            k = int(labels[i])
            row.update({"class": k, "class_name": class_names[k] if k < len(class_names) else str(k)})
        rows.append(row)
    return rows


def class_names_of(run: Path) -> list[str]:
    """Class names recorded in the run (simulate records them); else none."""
    return [str(c) for c in RunDir(Path(run)).read_config().get("class-names", [])]
