"""Submitting fedsynth to a SuperLink and supervising Flower's processes: the app bundle,
long-lived processes (SuperLink, SuperNode, `flwr run`) that must not
outlive us, and the check of what a run left in its run directory.

Flower detaches pieces into sessions of their own (the SuperLink starts SuperExec with
``start_new_session``), so killing one process group is not enough: we note every session
our child's descendants use while it runs, and afterwards wait for (then SIGTERM, then
SIGKILL) whatever is left in them. Linux /proc is read; elsewhere only the group is handled.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any, Callable

from server.run_dir import RunDir

RUN_ID = re.compile(r"Successfully started run (\d+)")


# ---- the app bundle ----------------------------------------------------------------------------


def find_app_root() -> Path:
    """The fedsynth source tree (pyproject.toml with [tool.flwr.app]), found from the package."""
    import server

    root = Path(server.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app" not in pyproject.read_text(encoding="utf-8"):
        raise FileNotFoundError(f"{root}: no pyproject.toml with [tool.flwr.app]; `server run` needs fedsynth installed from its source tree (pip install -e)")
    return root


def strip_federations(pyproject: str) -> str:
    """pyproject text without ``[tool.flwr.federations*]`` tables.

    `flwr run DIR` *rewrites* DIR/pyproject.toml when it finds them (a legacy-config
    migration), so the bundle we submit must not have them.
    """
    out, skipping = [], False
    for line in pyproject.splitlines(keepends=True):
        header = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]", line)
        if header:
            skipping = header.group(1).startswith("tool.flwr.federations")
        if not skipping:
            out.append(line)
    return "".join(out)


def stage_app(root: Path, dest: Path) -> Path:
    """Copy the app (pyproject + package sources) to ``dest`` for `flwr run dest`.

    Submitting a copy keeps Flower from editing the source tree and from walking .venv.
    """
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    meta = tomllib.loads(text)
    packages = meta.get("tool", {}).get("setuptools", {}).get("packages", [])
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "pyproject.toml").write_text(strip_federations(text), encoding="utf-8")
    for pkg in packages:
        if pkg == "tests" or not (root / pkg).is_dir():
            continue
        for src in (root / pkg).rglob("*.py"):
            if "__pycache__" in src.parts or src.name.startswith("test_"):
                continue
            target = dest / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


# ---- processes -------------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, state) from /proc (empty where there is no /proc)."""
    table = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            table[int(entry)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


def sessions_under(root: int) -> set[int]:
    """Session ids of ``root`` and all its descendants."""
    table, found, todo = proc_table(), set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.add(table[pid][1])
            todo += [p for p, (ppid, _, _) in table.items() if ppid == pid]
    return found


def sweep(sessions: set[int], grace: float) -> None:
    """Return once no live process is left in ``sessions``: SIGTERM them, SIGKILL after ``grace``."""
    deadline, termed = time.monotonic() + grace, False
    while True:
        alive = [pid for pid, (_, sid, state) in proc_table().items() if sid in sessions and state != "Z" and pid != os.getpid()]
        if not alive:
            return
        late = time.monotonic() > deadline
        if late or not termed:
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                except ProcessLookupError:
                    pass
            termed = True
            if late:
                deadline = time.monotonic() + grace
        time.sleep(0.2)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _echo(stream: Any, watch: Callable[[str], None]) -> threading.Thread:
    """Copy a child's output to ours, line by line, showing each line to ``watch``."""

    def pump() -> None:
        for line in stream:
            sys.stdout.write(line)
            sys.stdout.flush()
            watch(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def run_foreground(
    cmd: list[str],
    env: dict[str, str],
    ready: Callable[[], bool] | None = None,
    on_ready: Callable[[], None] | None = None,
    watch: Callable[[str], None] | None = None,
    grace: float = 20.0,
) -> tuple[int, bool]:
    """Run ``cmd`` until it exits or we are told to stop; returns (exit code, stop requested).

    The first Ctrl-C/SIGTERM is passed on as SIGINT (Flower's graceful stop), a second as
    SIGKILL. ``on_ready`` is called once, when ``ready()`` first returns True; ``watch`` sees
    every output line (Flower prints its real exit code, e.g. 305, but exits 1).
    """
    piped = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "bufsize": 1} if watch else {}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, **piped)
    echo = _echo(proc.stdout, watch) if watch else None
    sessions, stops = {proc.pid}, []

    def on_signal(signum: int, _frame: object) -> None:
        stops.append(signum)
        sessions.update(sessions_under(proc.pid))
        _killpg(proc.pid, signal.SIGINT if len(stops) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        waiting = ready is not None
        while proc.poll() is None:
            sessions.update(sessions_under(proc.pid))
            if waiting and not stops and ready is not None and ready():
                waiting = False
                if on_ready is not None:
                    on_ready()
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        sweep(sessions, grace)
        if echo is not None:
            echo.join(timeout=5)
    return proc.returncode, bool(stops)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def stream_run(cmd: list[str], env: dict[str, str], timeout: float | None, stop_cmd: Callable[[int], list[str]]) -> tuple[int, int | None, str]:
    """Run `flwr run --stream`, echoing its log; returns (exit code, run id, why it was cut short).

    On timeout, Ctrl-C or SIGTERM the run is also stopped in the SuperLink (``stop_cmd(run_id)``),
    where it would otherwise go on without us.
    """
    found: list[int] = []
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
    echo = _echo(proc.stdout, lambda line: found.extend(int(m) for m in RUN_ID.findall(line)))
    deadline, why = (time.monotonic() + timeout if timeout else None), ""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                why = f"timed out after {timeout:g} s"
                break
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        why = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        if why and found:
            subprocess.run(stop_cmd(found[0]), env=env, capture_output=True, timeout=60)
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
        sweep({proc.pid}, 10.0)
        echo.join(timeout=5)
    return proc.wait(), (found[0] if found else None), why


def health_probe(host: str, port: int, ca: Path | None) -> Callable[[], bool]:
    """A probe of the SuperLink's /health endpoint (through TLS when it has certificates)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    scheme = "https" if ca else "http"
    context = ssl.create_default_context(cafile=str(ca)) if ca else None

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"{scheme}://{host}:{port}/health", timeout=1, context=context) as r:
                return r.status == 200
        except OSError:
            return False

    return probe


def verify_run(run: RunDir, rounds: int, hospitals: int) -> list[str]:
    """What is wrong with a finished run directory (empty list: all good)."""
    problems = []
    try:
        records = run.read_rounds()
    except ValueError as exc:
        return [str(exc)]
    got = [r.get("round") for r in records]
    if got != list(range(1, rounds + 1)):
        problems.append(f"{run.rounds}: rounds {got or 'none'}, expected 1..{rounds}")
    for r in records:
        sites = r.get("sites", [])
        for s in sites:
            if "error" in s:
                problems.append(f"round {r.get('round')}: {s.get('site')} failed: {s['error']}")
        if len(sites) < hospitals:
            problems.append(f"round {r.get('round')}: {len(sites)} of {hospitals} sites replied")
    if not run.final_checkpoint.is_file():
        problems.append(f"{run.final_checkpoint}: missing (the run did not finish; see the log above)")
    return problems
