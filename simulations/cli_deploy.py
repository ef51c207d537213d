"""``fedsynth server ...`` and ``fedsynth join``: the same app as a real Flower federation.

The server side runs a SuperLink and submits runs; each hospital runs ``join`` next to its
data, which never leaves: only DP-trained weights and scalar metrics do. Flower processes run
in the foreground; Ctrl-C (or SIGTERM) stops them gracefully, and every process they
started is gone when the command returns (see :mod:`server.deploy`).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from server import deploy as procs
from simulations import deploy
from simulations.cli_common import fail

FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")
SUPERNODE_EXIT = {
    302: "the --auth-key is not a valid ECDSA private key",
    305: "could not connect to the SuperLink, or it refused this node (address? --root-cert? is the key registered with `fedsynth server register`?)",
    604: "a path given to flower-supernode does not exist",
    605: "TLS certificate problem",
}
TLS_HELP = {
    "certs": "Folder with ca.crt (from `fedsynth server certs`): TLS.",
    "root_cert": "The federation's CA certificate file (instead of --certs).",
    "insecure": "Plain HTTP (loopback tests only: weights travel unencrypted).",
}


def register(app: typer.Typer) -> None:
    """Mount ``server`` (certs, keys, start, run, register, nodes) and ``join`` on ``app``."""
    server = typer.Typer(no_args_is_help=True, add_completion=False, help="Run a real federation: certificates, SuperLink, runs, SuperNode keys.")
    for name, command in (("certs", certs_command), ("keys", keys_command), ("start", start_command), ("run", run_command), ("register", register_command), ("nodes", nodes_command)):
        server.command(name)(command)
    app.add_typer(server, name="server")
    app.command("join")(join_command)


def say(message: str, style: str | None = None) -> None:
    Console().print(message, style=style, markup=False, highlight=False, soft_wrap=True)


def _tool(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a short helper (openssl, ssh-keygen, flwr ...); a missing tool is one clear line."""
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise fail(f"{cmd[0]}: not found on PATH (install it)")


def certs_command(
    out: Path = typer.Option(..., help="Folder for ca.crt, ca.key, server.pem, server.key."),
    host: list[str] = typer.Option([], "--host", help="Name or IP hospitals use to reach the SuperLink (repeatable); localhost, 127.0.0.1 and ::1 are always in."),
    days: int = typer.Option(365, help="Validity of both certificates."),
    overwrite: bool = typer.Option(False, help="Replace existing certificates (every hospital then needs the new ca.crt)."),
) -> None:
    """Make a private CA and a SuperLink certificate for TLS (openssl)."""
    names = ("ca.crt", "ca.key", "server.pem", "server.key")
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise fail(f"{existing[0]}: exists; pass --overwrite to replace the certificates")
    out.mkdir(parents=True, exist_ok=True)
    cmds, san = deploy.certs_cmds(out, host, days)
    (out / "san.ext").write_text(san)
    for cmd in cmds:
        proc = _tool(cmd)
        if proc.returncode != 0:
            raise fail(f"openssl failed: {deploy.error_line(proc)}", code=1)
    for leftover in ("san.ext", "server.csr", "ca.srl"):
        (out / leftover).unlink(missing_ok=True)
    (out / "ca.key").chmod(0o600), (out / "server.key").chmod(0o600)
    say(f"Wrote {out}/: ca.crt (give to every hospital: join --root-cert), server.pem + server.key (SuperLink only), ca.key (keep offline). SAN: {san.strip().split('=', 1)[1]}")


def keys_command(
    out: Path = typer.Option(..., help="Folder for the key pairs."),
    sites: Optional[int] = typer.Option(None, help="Make site-1 ... site-N."),
    names: Optional[str] = typer.Option(None, help="Comma-separated site names instead of --sites."),
) -> None:
    """ECDSA key pairs for SuperNode auth (ssh-keygen); best run at each hospital.

    The private key stays at the hospital (join --auth-key); only NAME.pub goes to the server (server register).
    """
    if (sites is None) == (names is None):
        raise fail("pass either --sites N or --names a,b,...")
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else [f"site-{i}" for i in range(1, (sites or 0) + 1)]
    bad = [n for n in wanted if not deploy.SITE_NAME.match(n)]
    if not wanted or bad:
        raise fail(f"site names {bad or wanted}: use 1-64 letters, digits, '.', '_' or '-'")
    clash = [out / n for n in wanted if (out / n).exists() or (out / f"{n}.pub").exists()]
    if clash:
        raise fail(f"{clash[0]}: exists; keys are never overwritten")
    out.mkdir(parents=True, exist_ok=True)
    for n in wanted:
        proc = _tool(deploy.keygen_cmd(out / n, n))
        if proc.returncode != 0:
            raise fail(f"ssh-keygen failed for {n}: {deploy.error_line(proc)}", code=1)
        say(f"{n}: private key {out / n} (join --auth-key), public key {out / n}.pub (server register)")


def start_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on; 0.0.0.0 to accept hospitals from other machines."),
    port: int = typer.Option(8000, help="The one port for SuperNodes (Fleet) and `server run` (Control)."),
    certs: Optional[Path] = typer.Option(None, help="Folder from `fedsynth server certs` (ca.crt, server.pem, server.key): TLS."),
    insecure: bool = typer.Option(False, "--insecure", help=TLS_HELP["insecure"]),
    auth: bool = typer.Option(False, "--auth", help="Only registered SuperNodes may join (needs --certs; see `server register`)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file for the SuperLink's state (default: in memory, lost on exit)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the flower-superlink command and exit."),
) -> None:
    """Run the federation's SuperLink in the foreground (Ctrl-C stops it and everything it started)."""
    if (certs is None) == (not insecure):
        raise fail("choose exactly one of --certs DIR (TLS, from `fedsynth server certs`) or --insecure (plain HTTP)")
    try:
        cmd = deploy.superlink_cmd(host, port, certs.resolve() if certs else None, auth)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc))
    cmd += ["--database", str(database.resolve())] if database else []
    if dry_run:
        say(shlex.join(cmd))
        return
    address = f"{'<this-machine>' if host in ('0.0.0.0', '::') else host}:{port}"
    tls = f"--root-cert {certs.resolve() / 'ca.crt'}" if certs else "--insecure"
    run_tls = f"--certs {certs.resolve()}" if certs else "--insecure"

    def announce() -> None:
        say(f"SuperLink ready on {host}:{port} ({'TLS' if certs else 'plain HTTP'}{', SuperNode auth' if auth else ''}).", style="green")
        say(f"Hospitals join with:  fedsynth join --superlink {address} --data PATH {tls}" + (" --auth-key KEY" if auth else ""))
        say(f"Submit a run with:    fedsynth server run --superlink {address} {run_tls} --hospitals N --rounds R --epsilon E --out DIR")

    probe = procs.health_probe(host, port, certs.resolve() / "ca.crt" if certs else None)
    rc, stopped = procs.run_foreground(cmd, deploy.flower_env(), ready=probe, on_ready=announce)
    if stopped:
        say("SuperLink stopped.")
    elif rc != 0:
        raise fail(f"flower-superlink exited with code {rc} (port {port} in use? see its log above)", code=1)


def run_command(
    superlink: str = typer.Option(..., help="SuperLink address HOST:PORT."),
    hospitals: int = typer.Option(..., help="Sites to wait for and train with in every round."),
    rounds: int = typer.Option(..., help="Federated rounds."),
    epsilon: float = typer.Option(..., help="Target epsilon per site (a site's --max-epsilon may lower it)."),
    out: Path = typer.Option(..., help="Run directory; the ServerApp writes it, so it must be on the SuperLink's machine."),
    certs: Optional[Path] = typer.Option(None, help=TLS_HELP["certs"]),
    root_cert: Optional[Path] = typer.Option(None, help=TLS_HELP["root_cert"]),
    insecure: bool = typer.Option(False, "--insecure", help=TLS_HELP["insecure"]),
    set_: list[str] = typer.Option([], "--set", help="Any other run-config key, e.g. --set d-steps-per-round=50."),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    timeout: Optional[float] = typer.Option(None, help="Stop the run and fail after this many seconds (default: wait)."),
    json_out: bool = typer.Option(False, "--json", help="Print the round log as JSON at the end."),
) -> None:
    """Submit the fedsynth app to a SuperLink, stream its log, then check the run directory."""
    from shared_models.config import RunConfig

    env = deploy.flower_env()
    try:
        ca = deploy.choose_root_cert(certs, root_cert, insecure)
        values = {**deploy.parse_sets(set_), "hospitals": hospitals, "num-server-rounds": rounds, "epsilon": epsilon, "out-dir": str(out.resolve())}
        cfg = RunConfig.from_flower(values)
        app_root = procs.find_app_root()
        from simulations.runner import prepare_run_dir  # imports torch: only once the arguments are good

        run = prepare_run_dir(out, overwrite)
        profile = deploy.write_profile(deploy.flwr_home(env), deploy.PROFILE, deploy.check_address(superlink), insecure=ca is None, root_cert=ca)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise fail(str(exc))
    say(f"Submitting fedsynth ({hospitals} sites, {rounds} rounds, epsilon {epsilon:g}) to {superlink} (profile '{deploy.PROFILE}' in {profile})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fedsynth-app-") as tmp:
        app_dir = procs.stage_app(app_root, Path(tmp) / "fedsynth")
        stop = lambda run_id: [deploy.tool("flwr"), "stop", str(run_id), deploy.PROFILE]  # noqa: E731
        rc, run_id, why = procs.stream_run(deploy.flwr_run_cmd(app_dir, cfg), env, timeout, stop)
    elapsed = time.monotonic() - started
    if why:
        raise fail(f"run {run_id if run_id is not None else '(not started)'} {why}; run directory kept: {run.root}", code=130 if why == "interrupted" else 1)
    if run_id is None:
        raise fail(f"`flwr run` did not start a run (exit {rc}); is a SuperLink listening at {superlink}?", code=1)
    problems = procs.verify_run(run, rounds, hospitals)
    if problems:
        for p in problems[1:]:
            Console(stderr=True).print(f"  {p}", markup=False, highlight=False, soft_wrap=True)
        raise fail(f"run {run_id} failed: {problems[0]}", code=1)
    records = run.read_rounds()
    if json_out:
        Console().print_json(json.dumps({"run_id": run_id, "seconds": round(elapsed, 1), "run_dir": str(run.root), "rounds": records}))
        return
    for r in records:
        sites = ", ".join(f"{s.get('site')} eps {float(s.get('epsilon', 0)):.2f}" for s in r["sites"])
        say(f"  round {r['round']}: {r['time_s']:.1f} s, {sites}")
    say(f"run {run_id} finished in {elapsed:.0f} s; final checkpoint: {run.final_checkpoint}", style="green")


def _flwr_profile_call(args: list[str], superlink: str, certs: Optional[Path], root_cert: Optional[Path], insecure: bool) -> subprocess.CompletedProcess:
    """Write the connection profile, then run ``flwr ARGS... fedsynth``."""
    env = deploy.flower_env()
    try:
        ca = deploy.choose_root_cert(certs, root_cert, insecure)
        deploy.write_profile(deploy.flwr_home(env), deploy.PROFILE, deploy.check_address(superlink), insecure=ca is None, root_cert=ca)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc))
    return _tool([deploy.tool("flwr"), *args, deploy.PROFILE], env)


def register_command(
    public_key: Path = typer.Argument(..., help="A hospital's NAME.pub (from `fedsynth server keys`)."),
    superlink: str = typer.Option(..., help="SuperLink address HOST:PORT."),
    certs: Optional[Path] = typer.Option(None, help=TLS_HELP["certs"]),
    root_cert: Optional[Path] = typer.Option(None, help=TLS_HELP["root_cert"]),
    name: Optional[str] = typer.Option(None, help="A name stored with the key in the SuperLink (Flower does not list it)."),
) -> None:
    """Allow one hospital's SuperNode to join a SuperLink started with --auth."""
    if not public_key.is_file() or not public_key.read_text(errors="replace").startswith("ecdsa-sha2-nistp"):
        raise fail(f"{public_key}: not an ECDSA public key file (expected NAME.pub from `fedsynth server keys`)")
    proc = _flwr_profile_call(["supernode", "register", str(public_key.resolve()), *(["--name", name] if name else [])], superlink, certs, root_cert, False)
    if proc.returncode != 0:
        raise fail(f"registering {public_key} failed: {deploy.error_line(proc)}", code=1)
    say(proc.stdout.strip() or f"registered {public_key}")


def nodes_command(
    superlink: str = typer.Option(..., help="SuperLink address HOST:PORT."),
    certs: Optional[Path] = typer.Option(None, help=TLS_HELP["certs"]),
    root_cert: Optional[Path] = typer.Option(None, help=TLS_HELP["root_cert"]),
    insecure: bool = typer.Option(False, "--insecure", help=TLS_HELP["insecure"]),
) -> None:
    """List the SuperNodes a SuperLink knows (registered, online, offline)."""
    proc = _flwr_profile_call(["supernode", "list"], superlink, certs, root_cert, insecure)
    if proc.returncode != 0:
        raise fail(f"listing SuperNodes failed: {deploy.error_line(proc)}", code=1)
    say(proc.stdout.rstrip())


def join_command(
    superlink: str = typer.Option(..., help="The SuperLink's address HOST:PORT (from the server's operator)."),
    data: str = typer.Option(..., help="This hospital's image folder (class subfolders; PNG/JPG/TIFF, DICOM, NIfTI, .npz). It never leaves this machine."),
    site_name: Optional[str] = typer.Option(None, help="Name in the round log and of the privacy ledger file (default: from the folder's name)."),
    ledger_dir: Path = typer.Option(Path("~/.fedsynth/ledger"), help="This site's privacy ledgers; keep it across runs (it is how spent epsilon adds up)."),
    max_epsilon: Optional[float] = typer.Option(None, help="This site's own epsilon cap; the lower of this and the server's target applies."),
    root_cert: Optional[Path] = typer.Option(None, help="The federation's CA certificate (ca.crt) for TLS."),
    insecure: bool = typer.Option(False, "--insecure", help=TLS_HELP["insecure"]),
    auth_key: Optional[Path] = typer.Option(None, help="This site's private key, when the SuperLink requires registration."),
    port: int = typer.Option(9094, help="Local port of this SuperNode's app runtime; each SuperNode on one machine needs its own."),
    max_wait: Optional[float] = typer.Option(None, help="Give up if the SuperLink stays unreachable this long, in seconds (default: keep retrying)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the data, print the flower-supernode command, and exit."),
) -> None:
    """Check this hospital's data, then join the federation as a SuperNode (foreground; Ctrl-C leaves)."""
    try:
        ca = deploy.choose_root_cert(None, root_cert, insecure)
        if auth_key is not None and not auth_key.is_file():
            raise FileNotFoundError(f"{auth_key}: private key not found (make one with `fedsynth server keys`)")
        path = deploy.data_path(data)
        name = site_name or ("demo" if data == "demo" else deploy.default_site_name(path))
        ledger = ledger_dir.expanduser().resolve()
        node_cfg = deploy.node_config(path, name, ledger, max_epsilon)
        cmd = deploy.supernode_cmd(superlink, node_cfg, port=port, root_cert=ca, auth_key=auth_key.resolve() if auth_key else None, max_wait=max_wait)
        deploy.check_site_data(path, name, say)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc))
    if dry_run:
        say(shlex.join(cmd))
        return
    say(f"Joining {superlink} as {name} (ledger {ledger}{f', max epsilon {max_epsilon:g}' if max_epsilon else ''}); Ctrl-C to leave.")
    codes: list[int] = []
    watch = lambda line: codes.extend(int(c) for c in FLOWER_EXIT.findall(line))  # noqa: E731
    rc, stopped = procs.run_foreground(cmd, deploy.flower_env(), watch=watch)
    if stopped:
        say(f"{name} left the federation.")
    elif rc != 0:
        code = codes[-1] if codes else rc
        raise fail(f"flower-supernode stopped with Flower exit code {code}: {SUPERNODE_EXIT.get(code, 'see its log above')}", code=1)


def main() -> None:
    """``python -m simulations.cli_deploy``: these commands without the rest of the CLI."""
    app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
