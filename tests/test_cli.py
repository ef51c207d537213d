"""The ``fedsynth`` CLI through typer's CliRunner: outputs, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulations.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("simulate", "generate", "audit", "release", "report", "data", "server", "join"):
        assert name in result.output


def test_generate_writes_pngs_and_manifest(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "samples"
    result = runner.invoke(app, ["generate", "--run", str(tiny_run), "--n", "12", "--class", "2", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 12 and len(list(out.glob("*.png"))) == 12
    assert {row["class"] for row in manifest["files"]} == {2}
    assert json.loads(result.stdout)["count"] == 12


def test_generate_refuses_a_non_empty_folder(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["generate", "--run", str(tiny_run), "--n", "4", "--out", str(out)])
    assert result.exit_code == 2
    assert str(out) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_generate_missing_run_is_one_line(tmp_path: Path):
    result = runner.invoke(app, ["generate", "--run", str(tmp_path / "nope"), "--n", "4", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "nope" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--partition", "bogus"], "partition"),
        (["--image-size", "48"], "image-size"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--set", "no-such-key=1"], "no-such-key"),
    ],
)
def test_simulate_bad_input_fails_before_training(tmp_path: Path, args: list[str], message: str):
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (out / "rounds.jsonl").exists()


def test_report_audits_the_run_and_writes_html(tiny_run: Path):
    result = runner.invoke(app, ["report", str(tiny_run), "--n", "60"])
    assert result.exit_code == 0, result.output
    html = (tiny_run / "report.html").read_text()
    for section in ("Memorization", "Fidelity", "Utility", "Privacy budget"):
        assert section in html
    audit = json.loads((tiny_run / "audit" / "audit.json").read_text())
    assert audit["n_synthetic"] == 60
    fid = audit["fidelity"]
    assert 0 < fid["nn_psnr_mean"] < 100 and -1 <= fid["nn_ssim_mean"] <= 1


def test_bad_option_never_costs_the_previous_run(tiny_run: Path):
    before = sorted(p.name for p in tiny_run.rglob("*"))
    result = runner.invoke(app, ["simulate", "--out", str(tiny_run), "--overwrite", "--partition", "dirichlet:-1"])
    assert result.exit_code == 2 and "partition" in result.stderr
    assert sorted(p.name for p in tiny_run.rglob("*")) == before
