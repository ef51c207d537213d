"""``fedsynth audit``: exit 0 = pass, 1 = memorization found, 2 = bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from simulations.cli_audit import app

runner = CliRunner()


def heads(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """uint8 slice-like images: dark background, a textured ellipse that varies."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        ry, rx = rng.uniform(0.25, 0.45, 2)
        tex = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5)
        tex = 0.5 + 0.4 * tex / np.abs(tex).max()
        head = ((yy - rng.uniform(-0.05, 0.05)) / ry) ** 2 + (xx / rx) ** 2 < 1
        out[i][head] = np.clip(tex[head] * 255, 1, 255).astype(np.uint8)
    return out


@pytest.fixture
def sets(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    real, hold, new = heads(rng, 40, 24), heads(rng, 20, 24), heads(rng, 12, 24)
    paths = {name: tmp_path / f"{name}.npz" for name in ("real", "holdout", "ok", "copies", "small")}
    np.savez(paths["real"], images=real)
    np.savez(paths["holdout"], images=hold)
    np.savez(paths["ok"], images=new)
    np.savez(paths["copies"], images=np.concatenate([new, real[:3], real[5:6, :, ::-1]]))
    np.savez(paths["small"], images=heads(rng, 4, 16))
    return paths


def run(*args: object) -> tuple[int, str, str]:
    res = runner.invoke(app, ["audit", *map(str, args)])
    return res.exit_code, res.stdout, res.stderr


def test_new_images_pass(sets: dict[str, Path]) -> None:
    code, out, _ = run("--real", sets["real"], "--synthetic", sets["ok"], "--holdout", sets["holdout"], "--transforms", "flip")
    assert code == 0, out
    assert "PASS" in out and "NN-SSIM threshold" in out


def test_copies_fail_with_exit_1_and_json(sets: dict[str, Path]) -> None:
    code, out, err = run("--real", sets["real"], "--synthetic", sets["copies"], "--holdout", sets["holdout"], "--json")
    assert code == 1
    report = json.loads(out)
    assert report["passed"] is False and report["image_size"] == 24 and report["flagged_count"] >= 4
    assert {p["synthetic_index"] for p in report["top_pairs"][:4]} == {12, 13, 14, 15}
    assert any(p["transform"] == "hflip" and p["real_index"] == 5 for p in report["top_pairs"])
    code, out, err = run("--real", sets["real"], "--synthetic", sets["copies"], "--threshold", "0.95", "--transforms", "flip")
    assert code == 1 and "FAIL" in out and "memorization:" in err


def test_png_folder_and_given_size(sets: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(np.load(sets["ok"])["images"]):
        Image.fromarray(img).save(folder / f"s{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    code, out, err = run("--real", sets["real"], "--synthetic", folder, "--holdout", sets["holdout"], "--transforms", "none")
    assert code == 0 and "broken.png" in err  # skipped with a warning
    code, _, err = run("--real", sets["real"], "--synthetic", folder, "--holdout", sets["holdout"], "--strict")
    assert code == 2 and "broken.png" in err
    code, out, _ = run("--real", sets["real"], "--synthetic", sets["small"], "--threshold", "0.9", "--image-size", "24", "--transforms", "none")
    assert code == 0 and "24x24" in out


@pytest.mark.parametrize(
    "which, message",
    [
        ("missing", "no such file or folder"),
        ("empty", "empty folder"),
        ("size", "synthetic images are 16x16 but the real images are 24x24; pass --image-size"),
        ("garbage", "unreadable .npz"),
        ("nothing", "give --holdout"),
        ("threshold", "--threshold must be an SSIM value"),
        ("transforms", "unknown transform set"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sets: dict[str, Path], tmp_path: Path, which: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.npz").write_bytes(b"\x00" * 64)
    real, syn, extra = sets["real"], sets["ok"], ["--holdout", sets["holdout"]]
    if which == "missing":
        syn = tmp_path / "nope.npz"
    elif which == "empty":
        syn = tmp_path / "empty"
    elif which == "size":
        syn = sets["small"]
    elif which == "garbage":
        real = tmp_path / "garbage.npz"
    elif which == "nothing":
        extra = []
    elif which == "threshold":
        extra = ["--threshold", "1.5"]
    elif which == "transforms":
        extra += ["--transforms", "rotations"]
    code, out, err = run("--real", real, "--synthetic", syn, *extra)
    assert code == 2
    assert message in err and err.strip().count("\n") == 0 and "Traceback" not in err + out
