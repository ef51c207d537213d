"""A loopback federation with TLS and SuperNode authentication, through the fedsynth CLI.

Makes certificates and keys, starts the SuperLink with --auth, registers two hospitals,
lets an unregistered third one try to join (it must be refused), trains one tiny round,
stops everything and checks that no process is left. Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/deploy_tls_auth.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.test_deploy import TINY, Tracker, free_ports, write_site

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """A short CLI call (certs, keys, register, nodes)."""
    env = {**os.environ, "FLWR_HOME": str(tmp / "flwr-admin"), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "simulations.cli_deploy", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def wait_tls_healthy(port: int, ca: Path, seconds: float) -> float:
    context, started = ssl.create_default_context(cafile=str(ca)), time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            with urllib.request.urlopen(f"https://localhost:{port}/health", timeout=1, context=context):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"SuperLink not healthy over TLS after {seconds} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    result: dict = {"rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="fedsynth-tls-") as name:
        tmp = Path(name)
        sites = [write_site(tmp / s, n_per_class=20, seed=k) for k, s in enumerate(("site-a", "site-b", "rogue"))]
        made = [cli(tmp, "server", "certs", "--out", str(tmp / "certs")), cli(tmp, "server", "keys", "--out", str(tmp / "keys"), "--names", "site-a,site-b,rogue")]
        if any(p.returncode for p in made):
            print(json.dumps({"error": [p.stderr for p in made]}))
            return 1
        port, *node_ports = free_ports(4)
        link_addr, ca = f"127.0.0.1:{port}", tmp / "certs" / "ca.crt"
        tracker = Tracker(tmp)
        try:
            started = time.monotonic()
            link = tracker.start("superlink", ["server", "start", "--certs", str(tmp / "certs"), "--auth", "--port", str(port)], "link")
            result["superlink_ready_s"] = round(wait_tls_healthy(port, ca, 90), 1)
            for s in ("site-a", "site-b"):
                reg = cli(tmp, "server", "register", str(tmp / "keys" / f"{s}.pub"), "--superlink", link_addr, "--certs", str(tmp / "certs"), "--name", s)
                result[f"register_{s}"] = reg.returncode
            join = lambda site, p, wait: ["join", "--superlink", link_addr, "--data", str(site), "--root-cert", str(ca), "--auth-key", str(tmp / "keys" / site.name), "--port", str(p), "--ledger-dir", str(tmp / "ledgers"), "--max-wait", str(wait)]  # noqa: E731
            nodes = [tracker.start(site.name, join(site, p, 60), site.name) for site, p in zip(sites[:2], node_ports)]
            rogue = tracker.start("rogue", join(sites[2], node_ports[2], 15), "rogue")
            run_args = ["server", "run", "--superlink", link_addr, "--certs", str(tmp / "certs"), "--hospitals", "2", "--rounds", str(args.rounds), "--epsilon", "10", "--out", str(tmp / "run"), "--timeout", "600"]
            for kv in TINY:
                run_args += ["--set", kv]
            t_run = time.monotonic()
            submit = tracker.start("run", run_args, "run")
            result["run_exit"] = submit.wait(timeout=900)
            result["run_s"] = round(time.monotonic() - t_run, 1)
            rounds = [json.loads(x) for x in (tmp / "run" / "rounds.jsonl").read_text().splitlines()] if (tmp / "run" / "rounds.jsonl").is_file() else []
            result["round_s"] = [r["time_s"] for r in rounds]
            result["sites"] = {s["site"]: round(s.get("epsilon", 0.0), 3) for r in rounds[-1:] for s in r["sites"]}
            result["final_checkpoint"] = (tmp / "run" / "checkpoints" / "final.safetensors").is_file()
            result["rogue_exit"] = rogue.wait(timeout=120)
            result["rogue_message"] = next((ln for ln in (tmp / "rogue.log").read_text().splitlines() if ln.startswith("error:")), "")
            nodes_list = cli(tmp, "server", "nodes", "--superlink", link_addr, "--certs", str(tmp / "certs"))
            result["nodes_online"] = nodes_list.stdout.count("online")
            for proc in (*nodes, link):
                proc.send_signal(signal.SIGTERM)
            result["stop_exits"] = [proc.wait(timeout=60) for proc in (*nodes, link)]
            deadline = time.monotonic() + 15
            while tracker.alive() and time.monotonic() < deadline:
                time.sleep(0.3)
            result["processes_seen"] = len(tracker.seen)
            result["processes_left"] = [" ".join(p.cmdline())[:100] for p in tracker.alive()]
            result["total_s"] = round(time.monotonic() - started, 1)
        finally:
            tracker.close()
    ok = result.get("run_exit") == 0 and result.get("final_checkpoint") and result.get("rogue_exit") == 1 and not result.get("processes_left")
    result["ok"] = bool(ok)
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
