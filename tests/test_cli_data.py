"""``fedsynth data`` through typer's CliRunner, mounted the way the lead mounts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from client import demo_build
from simulations.cli_data import app as data_app
from tests.test_loaders import gradient, save_png

root = typer.Typer()
root.add_typer(data_app, name="data")
runner = CliRunner()


def test_inspect_json_counts_classes_and_problems(tmp_path: Path) -> None:
    for cls, n in (("a", 2), ("b", 3)):
        for i in range(n):
            save_png(tmp_path / cls / f"{i}.png", gradient(40))
    (tmp_path / "b" / "junk.txt").write_text("x")
    r = runner.invoke(root, ["data", "inspect", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["count"] == 5 and s["classes"] == {"a": 2, "b": 3} and s["image_size"] == 32
    assert s["original_sizes"] == {"40x40": 5}
    lo, hi = s["value_range"]
    assert -1.0 <= lo < -0.95 and 0.95 < hi <= 1.0  # resized 40 -> 32 with anti-aliasing
    assert [p["file"] for p in s["problems"]] == [str(tmp_path / "b" / "junk.txt")]


def test_inspect_table_output(tmp_path: Path) -> None:
    save_png(tmp_path / "x.png", gradient())
    save_png(tmp_path / "y.png", gradient(20))
    r = runner.invoke(root, ["data", "inspect", str(tmp_path), "--image-size", "64"])
    assert r.exit_code == 0
    assert "2 images at 64x64" in r.stdout and "y.png" in r.stdout and "differs" in r.stdout


def test_inspect_demo() -> None:
    r = runner.invoke(root, ["data", "inspect", "demo", "--json"])
    s = json.loads(r.stdout)
    assert r.exit_code == 0 and len(s["classes"]) == 6 and s["groups"] == 9 and s["problems"] == []


def test_inspect_strict_fails_with_one_line(tmp_path: Path) -> None:
    save_png(tmp_path / "ok.png", gradient())
    (tmp_path / "bad.png").write_bytes(b"nope")
    r = runner.invoke(root, ["data", "inspect", str(tmp_path), "--strict"])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.png: not a readable image" in lines[0]


def test_inspect_missing_path(tmp_path: Path) -> None:
    r = runner.invoke(root, ["data", "inspect", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no such file or folder" in r.stderr


def test_build_demo_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "d.npz"
    out.write_bytes(b"keep me")
    r = runner.invoke(root, ["data", "build-demo", "--out", str(out)])
    assert r.exit_code == 2 and "--force" in r.stderr and out.read_bytes() == b"keep me"


def test_build_demo_missing_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_build, "missing_sources", lambda: ["/usr/share/doc/invesalius-examples/examples/Cranium.inv3"])
    r = runner.invoke(root, ["data", "build-demo", "--out", str(tmp_path / "d.npz")])
    assert r.exit_code == 2 and "apt-get install invesalius-examples mricron-data" in r.stderr
    assert not (tmp_path / "d.npz").exists()


def test_build_demo_force_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_demo_data import _fake_volume

    monkeypatch.setattr(demo_build, "missing_sources", lambda: [])
    monkeypatch.setattr(demo_build, "_volumes", lambda: [_fake_volume("ct-a", "CT", 0), _fake_volume("mri-a", "MRI", 1)])
    out = tmp_path / "d.npz"
    out.write_bytes(b"old")
    r = runner.invoke(root, ["data", "build-demo", "--out", str(out), "--force", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] > 0 and out.read_bytes()[:2] == b"PK"


def test_inspect_no_class_folders(tmp_path: Path) -> None:
    for p in ("p1", "p2"):
        save_png(tmp_path / p / "0.png", gradient())
    r = runner.invoke(root, ["data", "inspect", str(tmp_path), "--no-class-folders", "--json"])
    s = json.loads(r.stdout)
    assert r.exit_code == 0 and s["classes"] == {} and s["groups"] == 2
