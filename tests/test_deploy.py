"""`fedsynth server` / `fedsynth join`: argument building (checked against Flower's own parsers),
one-line errors, and a real loopback federation (1 SuperLink, 2 SuperNodes, 1 round)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import typer
from flwr.common.config import parse_config_args
from PIL import Image
from typer.testing import CliRunner

from server import deploy as procs
from server.deploy import verify_run
from server.run_dir import RunDir
from shared_models.config import RunConfig
from simulations import deploy
from simulations.cli_deploy import register

ROOT = Path(__file__).resolve().parents[1]
# sigma is fixed so the federation is what is timed: calibrating it to epsilon with the PRV
# accountant took ~40 s per site on 2 busy cores (epsilon is still accounted and checked).
TINY = ["latent-dim=8", "g-width=8", "d-width=8", "d-steps-per-round=2", "batch-size=8", "num-classes=2", 'warm-start="none"', "noise-multiplier=1.0"]


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(*args: str):
    return CliRunner().invoke(cli(), list(args))


def write_site(root: Path, n_per_class: int = 20, seed: int = 0) -> Path:
    """Small smooth grayscale PNGs in two class folders (one vs two blobs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    for label, blobs in (("one-blob", 1), ("two-blobs", 2)):
        (root / label).mkdir(parents=True)
        for i in range(n_per_class):
            img = np.zeros((32, 32))
            for _ in range(blobs):
                cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
                img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            img = img / img.max() * 255
            Image.fromarray(img.astype(np.uint8)).save(root / label / f"{i:03d}.png")
    return root


# ---- strings handed to Flower ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/data/site a/scans", "/data/o'brien/x", r"C:\data\site", "/d/a=b c=d", "/d/ünï cödé", '/d/say "hi"'],
)
def test_node_config_survives_flowers_parser(path, tmp_path):
    text = deploy.node_config(path, "st-marys", tmp_path / "led ger", 2.5)
    assert parse_config_args([text]) == {"data-path": path, "site-name": "st-marys", "ledger-dir": str(tmp_path / "led ger"), "max-epsilon": 2.5}


def test_default_site_name_fits_a_file_name():
    assert deploy.default_site_name("/data/St Mary's") == "St-Mary-s"
    assert deploy.default_site_name("/data/site_a.v2") == "site_a.v2"
    assert deploy.default_site_name("/data/###") == "site"


def test_node_config_refuses_what_cannot_travel(tmp_path):
    with pytest.raises(ValueError, match="both ' and"):
        deploy.node_config("/d/it's \"x\"", "a", tmp_path, None)
    with pytest.raises(ValueError, match="control characters"):
        deploy.node_config("/d/a\nb", "a", tmp_path, None)
    with pytest.raises(ValueError, match="site name"):
        deploy.node_config("/d", "../etc", tmp_path, None)
    with pytest.raises(ValueError, match="max-epsilon"):
        deploy.node_config("/d", "a", tmp_path, 0.0)
    assert "max-epsilon" not in parse_config_args([deploy.node_config("/d", "a", tmp_path, None)])


def test_run_config_survives_flowers_parser(tmp_path):
    cfg = RunConfig(epsilon=3.25, lr_g=1e-5, out_dir=str(tmp_path / "my run"), warm_start="none", ema_decay=0.999)
    cmd = deploy.flwr_run_cmd(tmp_path / "app", cfg)
    assert cmd[1:4] == ["run", str(tmp_path / "app"), deploy.PROFILE] and cmd[-1] == "--stream"
    parsed = parse_config_args([cmd[cmd.index("--run-config") + 1]])
    assert RunConfig.from_flower(parsed) == cfg and set(parsed) == set(cfg.to_flower())


def test_parse_sets_reads_like_simulate():
    assert deploy.parse_sets(["a=1", "b=0.5", 'c="none"', "d=text", "e=true"]) == {"a": 1, "b": 0.5, "c": "none", "d": "text", "e": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        deploy.parse_sets(["novalue"])


def test_addresses_are_checked():
    assert deploy.check_address("127.0.0.1:8000") == "127.0.0.1:8000"
    assert deploy.check_address("[::1]:8000") == "[::1]:8000"
    for bad in ("127.0.0.1", "http://a:1", "a:port", "a:70000", ":8000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            deploy.check_address(bad)


def test_profile_is_written_where_flwr_reads_it(tmp_path, monkeypatch):
    from flwr.cli.flower_config import read_superlink_connection

    home = tmp_path / "flwr"
    home.mkdir()
    (home / "config.toml").write_text('[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n')
    deploy.write_profile(home, deploy.PROFILE, "127.0.0.1:8000", insecure=True, root_cert=None)
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    deploy.write_profile(home, "tls", "10.0.0.1:9000", insecure=False, root_cert=ca)
    monkeypatch.setenv("FLWR_HOME", str(home))
    plain, tls = read_superlink_connection(deploy.PROFILE), read_superlink_connection("tls")
    assert (plain.address, plain.insecure) == ("127.0.0.1:8000", True)
    assert (tls.address, tls.insecure, tls.root_certificates) == ("10.0.0.1:9000", False, str(ca.resolve()))
    assert tomllib.loads((home / "config.toml").read_text())["superlink"]["default"] == "local"  # kept
    (home / "config.toml").write_text("[superlink\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        deploy.write_profile(home, deploy.PROFILE, "127.0.0.1:8000", insecure=True, root_cert=None)


def test_staged_app_builds_a_fab_and_leaves_the_source_alone(tmp_path):
    from flwr.cli.build import build_fab_from_disk

    root = procs.find_app_root()
    assert root == ROOT
    before = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    staged = procs.stage_app(root, tmp_path / "app")
    meta = tomllib.loads((staged / "pyproject.toml").read_text())
    assert "federations" not in meta["tool"]["flwr"] and meta["tool"]["flwr"]["app"]["config"] == RunConfig().to_flower()
    assert (staged / "server" / "server_app.py").is_file() and (staged / "client" / "client_app.py").is_file()
    assert not (staged / "tests").exists() and not list(staged.rglob("__pycache__"))
    assert len(build_fab_from_disk(staged)) < 2_000_000
    assert hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest() == before


def test_strip_federations_drops_only_those_tables():
    text = '[a]\nx = 1\n[tool.flwr.federations]\ndefault = "s"\n[tool.flwr.federations.s]\noptions.n = 2\n[b]\ny = 2\n'
    assert tomllib.loads(procs.strip_federations(text)) == {"a": {"x": 1}, "b": {"y": 2}}


def test_superlink_and_supernode_commands(tmp_path):
    cmd = deploy.superlink_cmd("127.0.0.1", 8123, None, auth=False)
    assert cmd[1:] == ["--host", "127.0.0.1", "--port", "8123", "--disable-runtime-dependency-installation", "--insecure"]
    with pytest.raises(ValueError, match="--auth needs TLS"):
        deploy.superlink_cmd("127.0.0.1", 8123, None, auth=True)
    with pytest.raises(FileNotFoundError, match="ca.crt: missing"):
        deploy.superlink_cmd("127.0.0.1", 8123, tmp_path, auth=True)
    node = deploy.supernode_cmd("h:1", "a=1", port=9100, root_cert=tmp_path / "ca.crt", auth_key=tmp_path / "k", max_wait=5)
    assert node[node.index("--root-certificates") + 1] == str(tmp_path / "ca.crt") and "--insecure" not in node
    assert node[node.index("--auth-supernode-private-key") + 1] == str(tmp_path / "k") and node[-2:] == ["--max-wait-time", "5"]


def test_verify_run_names_what_is_missing(tmp_path):
    run = RunDir(tmp_path / "run")
    assert any("final.safetensors: missing" in p for p in verify_run(run, 1, 2))
    run.append_round({"round": 1, "sites": [{"site": "a", "epsilon": 1.0}, {"site": "node-7", "error": "boom"}]})
    run.final_checkpoint.parent.mkdir(parents=True)
    run.final_checkpoint.write_bytes(b"x")
    assert verify_run(run, 1, 2) == ["round 1: node-7 failed: boom"]
    assert verify_run(run, 2, 2)[0].endswith("rounds [1], expected 1..2")


# ---- the CLI's one-line errors -------------------------------------------------------------------


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_join_refuses_a_missing_or_empty_data_folder(tmp_path):
    line = one_error_line(invoke("join", "--superlink", "127.0.0.1:8000", "--data", str(tmp_path / "[nope]"), "--insecure"))
    assert "[nope]: no such file or folder" in line
    (tmp_path / "empty").mkdir()
    assert "empty" in one_error_line(invoke("join", "--superlink", "127.0.0.1:8000", "--data", str(tmp_path / "empty"), "--insecure"))


def test_join_refuses_missing_certs_keys_and_bad_choices(tmp_path):
    site = write_site(tmp_path / "site", n_per_class=2)
    base = ["join", "--superlink", "127.0.0.1:8000", "--data", str(site)]
    assert "ca.crt: CA certificate not found" in one_error_line(invoke(*base, "--root-cert", str(tmp_path / "ca.crt")))
    assert "choose exactly one" in one_error_line(invoke(*base))
    assert "key: private key not found" in one_error_line(invoke(*base, "--insecure", "--auth-key", str(tmp_path / "key")))
    assert "HOST:PORT" in one_error_line(invoke("join", "--superlink", "localhost", "--data", str(site), "--insecure"))


def test_join_dry_run_checks_the_data_and_prints_the_supernode_command(tmp_path):
    site = write_site(tmp_path / "St Mary's [x]", n_per_class=3)  # '[' must not be read as rich markup
    result = invoke("join", "--superlink", "127.0.0.1:8000", "--data", str(site), "--insecure", "--site-name", "st-marys", "--ledger-dir", str(tmp_path / "led"), "--max-epsilon", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "st-marys: 6 images, 2 classes: one-blob 3, two-blobs 3" in result.output
    import shlex

    cmd = shlex.split(result.output.strip().splitlines()[-1])
    assert Path(cmd[0]).name == "flower-supernode" and "--insecure" in cmd
    assert parse_config_args([cmd[cmd.index("--node-config") + 1]]) == {"data-path": str(site.resolve()), "site-name": "st-marys", "ledger-dir": str((tmp_path / "led").resolve()), "max-epsilon": 4.0}


def test_server_commands_refuse_missing_certs(tmp_path):
    (tmp_path / "ca.crt").write_text("x")
    assert "server.pem: missing" in one_error_line(invoke("server", "start", "--certs", str(tmp_path)))
    assert "choose exactly one" in one_error_line(invoke("server", "start"))
    assert "--auth needs TLS" in one_error_line(invoke("server", "start", "--insecure", "--auth"))
    run = ["server", "run", "--superlink", "127.0.0.1:8000", "--hospitals", "2", "--rounds", "1", "--epsilon", "5", "--out", str(tmp_path / "run")]
    assert "ca.crt: CA certificate not found" in one_error_line(invoke(*run, "--certs", str(tmp_path / "none")))
    assert "unknown run-config key 'latentdim'" in one_error_line(invoke(*run, "--insecure", "--set", "latentdim=8"))
    assert not (tmp_path / "run").exists()


def test_certs_and_keys_are_made_and_never_overwritten(tmp_path):
    result = invoke("server", "certs", "--out", str(tmp_path / "certs"), "--host", "fl.example.org", "--host", "10.1.2.3", "--days", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["ca.crt", "ca.key", "server.key", "server.pem"]
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "certs" / "server.pem"), "-noout", "-text"], capture_output=True, text=True).stdout
    for name in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "DNS:fl.example.org", "IP Address:10.1.2.3"):
        assert name in text
    assert subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "certs" / "ca.crt"), str(tmp_path / "certs" / "server.pem")], capture_output=True).returncode == 0
    assert "exists; pass --overwrite" in one_error_line(invoke("server", "certs", "--out", str(tmp_path / "certs")))
    assert invoke("server", "keys", "--out", str(tmp_path / "keys"), "--names", "a,b").exit_code == 0
    assert (tmp_path / "keys" / "b.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    assert "exists; keys are never overwritten" in one_error_line(invoke("server", "keys", "--out", str(tmp_path / "keys"), "--names", "a"))


# ---- a real loopback federation --------------------------------------------------------------------


class Tracker:
    """Starts the CLI in subprocesses and remembers every descendant it ever saw (by PID and
    start time, so a reused PID is not mistaken for ours)."""

    def __init__(self, root: Path) -> None:
        self.root, self.procs, self.seen = root, [], {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def start(self, name: str, args: list[str], home: str) -> subprocess.Popen:
        env = {**os.environ, "FLWR_HOME": str(self.root / f"flwr-{home}"), "OMP_WAIT_POLICY": "PASSIVE", "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
        log = (self.root / f"{name}.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "simulations.cli_deploy", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.note()
        return proc

    def note(self) -> None:
        for proc in self.procs:
            try:
                root = psutil.Process(proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    self.seen.setdefault(p.pid, p)
            except psutil.NoSuchProcess:
                pass

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            self.note()

    def alive(self) -> list[psutil.Process]:
        out = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n" + f.read_text()[-2500:] for f in sorted(self.root.glob("*.log")))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for p in self.alive():  # only after a failure: never leave processes behind
            p.kill()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_healthy(port: int, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server start exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"SuperLink not healthy after {seconds} s")


@pytest.mark.slow  # 70-100 s on 2 shared cores (load 5-7), ~40 s of CPU: run with `pytest -m slow`
def test_one_round_over_a_real_loopback_federation(tmp_path):
    sites = [write_site(tmp_path / name, n_per_class=20, seed=k) for k, name in enumerate(("site-a", "site-b"))]
    port, *node_ports = free_ports(3)
    tracker = Tracker(tmp_path)
    try:
        link = tracker.start("superlink", ["server", "start", "--insecure", "--port", str(port)], "link")
        wait_healthy(port, link, 60)
        nodes = [
            tracker.start(site.name, ["join", "--superlink", f"127.0.0.1:{port}", "--data", str(site), "--insecure", "--port", str(p), "--ledger-dir", str(tmp_path / "ledgers" / site.name), "--max-wait", "60"], site.name)
            for site, p in zip(sites, node_ports)
        ]
        started = time.monotonic()
        args = ["server", "run", "--superlink", f"127.0.0.1:{port}", "--insecure", "--hospitals", "2", "--rounds", "1", "--epsilon", "10", "--out", str(tmp_path / "run"), "--timeout", "240"]
        for kv in TINY:
            args += ["--set", kv]
        submit = tracker.start("run", args, "run")
        rc = submit.wait(timeout=300)
        seconds = time.monotonic() - started
        assert rc == 0, tracker.logs()

        out = tmp_path / "run"
        assert (out / "checkpoints" / "final.safetensors").is_file()
        rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
        assert [r["round"] for r in rounds] == [1]
        assert sorted(s["site"] for s in rounds[0]["sites"]) == ["site-a", "site-b"]
        assert all(0 < s["epsilon"] <= 10 and "error" not in s for s in rounds[0]["sites"]), rounds
        for site in sites:
            assert (tmp_path / "ledgers" / site.name / f"{site.name}.json").is_file()  # the hospital's ledger, where it said
        print(f"\n1 round over a loopback federation (2 SuperNodes): {seconds:.1f} s from `server run` to verified result")

        for proc in (*nodes, link):  # what an operator's Ctrl-C / systemd stop does
            proc.send_signal(signal.SIGTERM)
        for proc in (*nodes, link):
            assert proc.wait(timeout=60) == 0, tracker.logs()
        deadline = time.monotonic() + 15
        while tracker.alive() and time.monotonic() < deadline:
            time.sleep(0.3)
        left = tracker.alive()
        assert not left, [" ".join(p.cmdline())[:120] for p in left]
        assert len(tracker.seen) >= 8  # 4 CLIs, SuperLink, 2 SuperNodes, their SuperExecs, app processes
    finally:
        tracker.close()
