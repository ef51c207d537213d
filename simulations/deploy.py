"""What `fedsynth server` / `fedsynth join` hand to Flower: command lines and config strings,
plus the check of a hospital's data before it joins.

Kept apart from the CLI so every string that crosses into Flower can be unit-tested against
Flower's own parsers. Submitting runs and supervising processes is :mod:`server.deploy`.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import tomli_w  # a dependency of flwr (it writes FABs with it)

from shared_models.config import RunConfig

PROFILE = "fedsynth"  # the connection profile `server run` / `server register` write and use
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # it names the ledger file
ENV_DEFAULTS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # without this the SuperLink runs `uv sync` against the internet (exit 608)
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def flower_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Flower processes: offline-safe defaults, and this venv's bin on PATH
    (the SuperLink and SuperNode start `flower-superexec` by name)."""
    env = dict(os.environ if base is None else base)
    for key, value in ENV_DEFAULTS.items():
        env.setdefault(key, value)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    return env


def flwr_home(env: Mapping[str, str]) -> Path:
    """Where Flower keeps config.toml and installed apps (same rule as flwr itself)."""
    return Path(env["FLWR_HOME"]).expanduser() if env.get("FLWR_HOME") else Path.home() / ".flwr"


def tool(name: str) -> str:
    """A Flower executable from this venv (falls back to PATH)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else name


# ---- key=value strings (node-config, run-config) -------------------------------------------


def toml_value(value: bool | int | float | str) -> str:
    """One value as Flower's ``key=value`` parser reads it.

    Flower splits on ``(\\S+?)=('[^']*'|"[^"]*"|\\S+)`` and hands each pair to a TOML parser,
    so strings go in single quotes (TOML literal: backslashes and spaces kept as they are),
    or double quotes with escaped backslashes when the value itself holds a single quote.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN cannot be passed to Flower")
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    text = str(value)
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise ValueError(f"{text!r}: control characters (newlines) cannot be passed to Flower")
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return '"' + text.replace("\\", "\\\\") + '"'
    raise ValueError(f"{text!r} holds both ' and \": Flower's key=value parser cannot carry it; rename it")


def key_values(values: Mapping[str, bool | int | float | str]) -> str:
    """``k1=v1 k2='v 2'``: the format of ``--node-config`` and ``flwr run --run-config``."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in values.items())


def default_site_name(data: str) -> str:
    """The data folder's name, made fit to name a ledger file ("St Mary's" -> "St-Mary-s")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data).name).strip("-._")[:64]
    return name or "site"


def node_config(data: str, site_name: str, ledger_dir: Path, max_epsilon: float | None) -> str:
    """The SuperNode's ``--node-config``: the hospital's folder, name, ledger and budget cap."""
    if not SITE_NAME.match(site_name):
        raise ValueError(f"site name {site_name!r}: use 1-64 letters, digits, '.', '_' or '-' (it names the ledger file)")
    values: dict[str, Any] = {"data-path": data, "site-name": site_name, "ledger-dir": str(ledger_dir)}
    if max_epsilon is not None:
        if not max_epsilon > 0:
            raise ValueError(f"--max-epsilon must be > 0, got {max_epsilon}")
        values["max-epsilon"] = float(max_epsilon)
    return key_values(values)


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, read like `fedsynth simulate` does (JSON literal, else text)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def check_address(address: str, what: str = "--superlink") -> str:
    """``HOST:PORT`` (``[v6]:PORT`` too), without a URL scheme: what Flower expects."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    return address


# ---- command lines ---------------------------------------------------------------------------


def write_profile(home: Path, name: str, address: str, *, insecure: bool, root_cert: Path | None) -> Path:
    """Add/replace ``[superlink.NAME]`` in ``HOME/config.toml``, keeping everything else."""
    path = home / "config.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc}); fix or remove it") from exc
    entry: dict[str, Any] = {"address": address}
    if insecure:
        entry["insecure"] = True
    elif root_cert is not None:
        entry["root-certificates"] = str(root_cert.resolve())
    data.setdefault("superlink", {})[name] = entry
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
    return path


def tls_files(certs: Path) -> dict[str, Path]:
    """The files `fedsynth server certs` writes; one line naming the first one missing."""
    files = {"ca": certs / "ca.crt", "cert": certs / "server.pem", "key": certs / "server.key"}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (create it with `fedsynth server certs --out {certs}`)")
    return files


def choose_root_cert(certs: Path | None, root_cert: Path | None, insecure: bool) -> Path | None:
    """The CA certificate to trust, from exactly one of --certs DIR / --root-cert FILE / --insecure."""
    if (certs is not None) + (root_cert is not None) + insecure != 1:
        raise ValueError("choose exactly one of --certs DIR, --root-cert FILE (TLS) or --insecure (plain HTTP)")
    if insecure:
        return None
    path = root_cert if root_cert is not None else Path(str(certs)) / "ca.crt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CA certificate not found (the server's operator makes it with `fedsynth server certs`)")
    return path.resolve()


def superlink_cmd(host: str, port: int, certs: Path | None, auth: bool) -> list[str]:
    """flower-superlink: one HTTP(S) port for Fleet (SuperNodes) and Control (`flwr run`)."""
    cmd = [tool("flower-superlink"), "--host", host, "--port", str(port), "--disable-runtime-dependency-installation"]
    if certs is None:
        if auth:
            raise ValueError("--auth needs TLS: pass --certs DIR (Flower refuses SuperNode auth without TLS)")
        return cmd + ["--insecure"]
    tls = tls_files(certs)
    cmd += ["--ssl-ca-certfile", str(tls["ca"]), "--ssl-certfile", str(tls["cert"]), "--ssl-keyfile", str(tls["key"])]
    return cmd + (["--enable-supernode-auth"] if auth else [])


def supernode_cmd(
    superlink: str,
    node_cfg: str,
    *,
    port: int,
    root_cert: Path | None,
    auth_key: Path | None,
    max_wait: float | None = None,
) -> list[str]:
    """flower-supernode for one hospital; ``root_cert=None`` means plain HTTP (``--insecure``)."""
    cmd = [tool("flower-supernode"), "--superlink", check_address(superlink)]
    cmd += ["--insecure"] if root_cert is None else ["--root-certificates", str(root_cert)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--node-config", node_cfg]
    if auth_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_key)]
    if max_wait is not None:
        cmd += ["--max-wait-time", str(max_wait)]
    return cmd


def flwr_run_cmd(app_dir: Path, cfg: RunConfig, profile: str = PROFILE) -> list[str]:
    """`flwr run` of the staged app with the whole run config spelled out."""
    return [tool("flwr"), "run", str(app_dir), profile, "--run-config", key_values(cfg.to_flower()), "--stream"]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The line that says what went wrong (flwr boxes its errors and tags them ``[code: N]``)."""
    lines = [ln.strip(" \t│╭╮╰╯─") for ln in (proc.stdout + proc.stderr).splitlines()]
    lines = [ln for ln in lines if ln and ln != "Error"]
    coded = [ln for ln in lines if "[code:" in ln]
    return (coded or lines or [f"exit code {proc.returncode}"])[-1]


def certs_cmds(out: Path, hosts: Sequence[str], days: int) -> tuple[list[list[str]], str]:
    """openssl calls for a CA and a server cert whose SAN covers localhost and ``hosts``."""
    import ipaddress

    names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    for host in hosts:
        try:
            entry = f"IP:{ipaddress.ip_address(host)}"
        except ValueError:
            entry = f"DNS:{host}"
        if entry not in names:
            names.append(entry)
    cn = next((h for h in hosts if h), "localhost")
    o = str(out)
    cmds = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days), "-subj", "/CN=fedsynth-ca", "-keyout", f"{o}/ca.key", "-out", f"{o}/ca.crt"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{o}/server.key", "-out", f"{o}/server.csr"],
        ["openssl", "x509", "-req", "-in", f"{o}/server.csr", "-CA", f"{o}/ca.crt", "-CAkey", f"{o}/ca.key", "-CAcreateserial", "-days", str(days), "-extfile", f"{o}/san.ext", "-out", f"{o}/server.pem"],
    ]
    return cmds, "subjectAltName=" + ",".join(names) + "\n"


def keygen_cmd(path: Path, name: str) -> list[str]:
    """ssh-keygen for a SuperNode: ECDSA P-384, no passphrase (the SuperNode reads it unattended)."""
    return ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", name, "-f", str(path)]


# ---- a hospital's data -------------------------------------------------------------------------


def data_path(data: str) -> str:
    """Absolute, since the ClientApp runs elsewhere; ``demo`` becomes the bundled file's path
    (the app bundle Flower ships to a SuperNode carries code only)."""
    if data == "demo":
        from client.loaders import DEMO_PATH

        return str(DEMO_PATH)
    return str(Path(data).expanduser().resolve())


def check_site_data(path: str, name: str, report: Callable[[str], None]) -> None:
    """Load the site's images as training will and report what was found; raise if unusable."""
    from client.loaders import load_images

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    try:
        data, problems = load_images(path, image_size=32)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) == 0:
        raise ValueError(f"{path}: no readable images")
    classes = ""
    if data.labels is not None:
        counts = [int((data.labels == k).sum()) for k in range(data.num_classes)]
        labels = data.class_names or [str(k) for k in range(len(counts))]
        classes = f", {len(counts)} classes: " + ", ".join(f"{c} {n}" for c, n in zip(labels, counts))
    report(f"{name}: {len(data)} images{classes}; {len(problems)} problem(s)")
    for p in problems[:5]:
        report(f"  {p.level}: {p}")
    if len(problems) > 5:
        report(f"  ... and {len(problems) - 5} more (see `fedsynth data inspect {path}`)")
