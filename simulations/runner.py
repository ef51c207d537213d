"""Run N simulated hospitals in Flower's simulation engine (Ray), in this process.

The ServerApp gets the run config through its Context exactly as under ``flwr run``;
only the run directory and a progress callback are closed over.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from server.run_dir import RunDir
from server.server_app import RoundCallback, run_federation
from shared_models.config import RunConfig
from simulations.deploy import ENV_DEFAULTS

FLOWER_ENV = {
    **ENV_DEFAULTS,  # the same offline-safe Flower settings as a real federation's processes
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # CPU-only actors: keep CUDA_VISIBLE_DEVICES as is
}


def flower_env() -> None:
    """Offline-safe defaults for Flower and Ray, unless the user set them already."""
    for key, value in FLOWER_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("FLWR_HOME", str(Path(tempfile.gettempdir()) / "fedsynth-flwr"))


def prepare_run_dir(out: Path, overwrite: bool) -> RunDir:
    """A fresh run directory; an existing one is only replaced when asked to."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: run directory exists; pass --overwrite to replace it")
        if not (out / "config.json").is_file():
            raise FileExistsError(f"{out}: exists and is not a fedsynth run; refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return RunDir(out)


def simulate(cfg: RunConfig, run: RunDir, on_round: RoundCallback | None = None, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``cfg.hospitals`` simulated sites for ``cfg.num_server_rounds`` rounds."""
    summary: dict[str, Any] = {}

    def main(grid: Any, run_cfg: RunConfig) -> None:
        summary.update(run_federation(grid, run_cfg, run, on_round, facts))

    run_in_engine(cfg, main)
    if "final_checkpoint" not in summary:
        raise RuntimeError(f"simulation ended without a final checkpoint in {run.root}; see the log above")
    return summary


def run_in_engine(cfg: RunConfig, main: Callable[[Any, RunConfig], None], cpus_per_site: float = 1.0) -> None:
    """Run ``main(grid, cfg)`` as a ServerApp against ``cfg.hospitals`` simulated SuperNodes.

    The ServerApp reads the config from its Context, exactly as under ``flwr run``.
    """
    flower_env()
    from flwr.app import Context, RecordDict
    from flwr.supercore.telemetry import EventType
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation.run_simulation import _run_simulation  # the public wrapper drops run_config

    from client.client_app import app as client_app

    server_app = ServerApp()
    engine_down = threading.Event()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        main(AbortableGrid(grid, engine_down), RunConfig.from_flower(context.run_config))

    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=cfg.to_flower())
    try:
        _run_simulation(
            num_supernodes=cfg.hospitals,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client_app,
            server_app=server_app,
            server_app_context=context,
            backend_config={
                "client_resources": {"num_cpus": cpus_per_site, "num_gpus": 0.0},
                "init_args": {"include_dashboard": False},
            },
        )
    finally:
        engine_down.set()  # a ServerApp thread still waiting for replies gives up


class AbortableGrid:
    """A Grid whose ``send_and_receive`` stops waiting once the simulation engine is down.

    Flower's in-memory grid waits forever (timeout None) for replies; when Ray fails to
    start, the ServerApp thread would keep the process alive after the error is reported.
    """

    def __init__(self, grid: Any, engine_down: threading.Event, poll_s: float = 0.2) -> None:
        self._grid, self._down, self._poll = grid, engine_down, poll_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
        pending = set(self._grid.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list[Any] = []
        while pending and (end is None or time.monotonic() < end):
            if self._down.is_set():
                raise RuntimeError("the simulation engine stopped before all sites replied")
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if pending:
                time.sleep(self._poll)
        return replies
