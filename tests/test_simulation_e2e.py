"""End to end through the real Flower simulation engine (Ray): 2 sites, 2 rounds, tiny model.

Runs the `fedsynth` CLI in a subprocess so that every process it starts (Ray's GCS,
raylet, workers) can be checked gone afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["latent-dim=8", "g-width=8", "d-width=8", "d-steps-per-round=4", "d-steps-per-g-step=2", "batch-size=16", "warm-start=\"none\""]


def new_processes(before: set[int]) -> list[psutil.Process]:
    """Processes started since ``before`` that belong to Flower or Ray."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] in before or p.info["pid"] == os.getpid():
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        if any(k in cmd for k in ("ray", "flwr", "flower", "fedsynth")):
            out.append(p)
    return out


def run_cli(args: list[str], tmp_path: Path, ray_tmp: str | None = None) -> subprocess.CompletedProcess:
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep for them
    ray_tmp = ray_tmp or tempfile.mkdtemp(prefix="fs-ray-", dir="/tmp")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "FLWR_HOME": str(tmp_path / "flwr"), "RAY_TMPDIR": ray_tmp}
    try:
        return subprocess.run([sys.executable, "-m", "simulations.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _stop_leftovers(before: set[int]) -> list[str]:
    """Wait briefly for Flower/Ray processes started since ``before`` to exit; kill the rest."""
    deadline = time.time() + 15
    left = new_processes(before)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = new_processes(before)
    names = [" ".join(p.cmdline())[:120] for p in left]
    for p in left:  # clean up before failing, so one failure does not poison the suite
        p.kill()
    return names


@pytest.fixture
def no_leftovers():
    before = {p.pid for p in psutil.process_iter()}
    yield
    left = _stop_leftovers(before)
    assert not left, f"processes left running: {left}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny 2-site, 2-round run through the real engine, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("e2e")
    before = {p.pid for p in psutil.process_iter()}
    out = tmp / "run"
    args = ["simulate", "--hospitals", "2", "--rounds", "2", "--epsilon", "10", "--data", "demo", "--out", str(out), "--json"]
    for kv in TINY:
        args += ["--set", kv]
    proc = run_cli(args, tmp)
    left = _stop_leftovers(before)
    assert not left, f"simulate left processes running: {left}"
    return out, proc, tmp


def test_two_sites_two_rounds_through_flower(trained):
    out, proc, _tmp = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["final_checkpoint"].endswith("final.safetensors")
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert sorted(s["site"] for s in r["sites"]) == ["site-0", "site-1"]
        assert all(s["g_loss"] > 0 for s in r["sites"]), r  # G trained through the private D
    eps = {s["site"]: [r2["sites"][i]["epsilon"] for r2 in rounds] for i, s in enumerate(rounds[0]["sites"])}
    for site, values in eps.items():
        assert 0 < values[0] < values[1] <= 10.0, (site, values)  # the ledger grows, within budget
    assert (out / "checkpoints" / "final.safetensors").is_file()
    assert (out / "grids" / "round-002.png").is_file()
    ledgers = sorted(p.name for p in (out / "ledger").iterdir())
    assert ledgers == ["site-0.json", "site-1.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["hospitals"] == 2 and config["class-names"]


def test_run_directory_is_never_silently_replaced(trained, no_leftovers):
    out, _proc, tmp = trained
    again = run_cli(["simulate", "--hospitals", "2", "--rounds", "1", "--out", str(out)], tmp)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 2


def test_release_writes_set_and_manifest_when_every_site_passes(trained, no_leftovers):
    out, _proc, tmp = trained
    rel = tmp / "release-ok"
    proc = run_cli(["release", "--run", str(out), "--n", "24", "--out", str(rel), "--json"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((rel / "manifest.json").read_text())
    assert manifest["n"] == 24 and len(manifest["files"]) == 24
    for row in manifest["files"]:  # every checksum matches the file written
        assert hashlib.sha256((rel / row["file"]).read_bytes()).hexdigest() == row["sha256"]
    sites = {s["site"]: s for s in manifest["sites"]}
    assert sorted(sites) == ["site-0", "site-1"]
    for s in sites.values():
        assert 0 < s["epsilon"] <= 10 and 0 < s["delta"] < 1e-3 and s["accountant"] == "prv"
        assert s["audit"]["passed"] and 0 < s["audit"]["threshold"] < 1
    assert manifest["versions"]["flwr"] == "1.41.0"
    # a second release to the same folder is refused, and the first is untouched
    before = (rel / "manifest.json").read_bytes()
    again = run_cli(["release", "--run", str(out), "--n", "24", "--out", str(rel)], tmp)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert (rel / "manifest.json").read_bytes() == before


def test_release_refused_writes_nothing(trained, no_leftovers):
    out, _proc, tmp = trained
    # the same run, judged against a budget of epsilon = 1: every site spent ~10
    strict = tmp / "run-strict"
    shutil.copytree(out, strict)
    config = json.loads((strict / "config.json").read_text())
    (strict / "config.json").write_text(json.dumps({**config, "epsilon": 1.0}))
    rel = tmp / "release-refused"
    proc = run_cli(["release", "--run", str(strict), "--n", "24", "--out", str(rel)], tmp)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "refused" in proc.stdout and "epsilon" in proc.stdout
    assert "nothing was written" in proc.stderr
    assert not rel.exists()


def test_engine_failure_exits_nonzero_instead_of_hanging(tmp_path, no_leftovers):
    """Ray cannot start (socket path too long): one error line and exit 1, not a stuck ServerApp."""
    deep = tmp_path / ("x" * 90)
    deep.mkdir()
    args = ["simulate", "--hospitals", "2", "--rounds", "1", "--out", str(tmp_path / "run")]
    for kv in TINY:
        args += ["--set", kv]
    proc = run_cli(args, tmp_path, ray_tmp=str(deep))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "simulation failed" in proc.stderr
