"""The Flower ServerApp: FedAvg over G+D with a checkpoint, a grid and a log line per round.

``flwr run .`` loads ``app`` and reads the run config from pyproject.toml (plus
``--run-config`` overrides); ``fedsynth simulate`` calls :func:`run_federation`
directly with the same config object and a progress callback.
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from server.run_dir import RunDir, write_json
from server.strategy import SynthFedAvg
from shared_models.config import RunConfig, resolve_device
from shared_models.gan import build_models
from shared_models.images import save_png
from shared_models.sampling import sample_grid
from shared_models.weights import load_packed, pack, save_checkpoint

RoundCallback = Callable[[dict[str, Any]], None]

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run``: the config comes from the run config only."""
    cfg = RunConfig.from_flower(context.run_config)
    run_federation(grid, cfg, RunDir(Path(cfg.out_dir)))


def run_federation(grid: Grid, cfg: RunConfig, run: RunDir, on_round: RoundCallback | None = None, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Warm start (optional), then ``num_server_rounds`` of FedAvg; returns a summary.

    ``facts`` (e.g. the data's class names) are recorded in config.json beside the config.
    """
    device = resolve_device(cfg.device)
    g, d = build_models(cfg)
    g.to(device)
    d.to(device)
    public = warm_start(g, d, cfg, device, class_names=(facts or {}).get("class-names"))
    write_json(run.config, {**cfg.to_flower(), **(facts or {}), "public-warm-start": public, "versions": versions()})

    strategy = SynthFedAvg(
        fraction_train=1.0,
        min_train_nodes=cfg.hospitals,
        min_available_nodes=cfg.hospitals,
    )
    clock = {"t": time.monotonic()}

    def after_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        load_packed(g, d, arrays.to_torch_state_dict())
        meta = {"round": server_round, "config": cfg.to_flower()}
        save_checkpoint(run.checkpoint(server_round), pack(g, d), meta)
        save_png(sample_grid(g, seed=cfg.seed + 1234, device=device), run.grid(server_round), scale=2)
        if server_round == 0:
            return None
        now = time.monotonic()
        record = round_record(server_round, now - clock["t"], strategy.last_sites)
        clock["t"] = now
        run.append_round(record)
        if on_round is not None:
            on_round(record)
        return MetricRecord({k: record[k] for k in ("d_loss", "g_loss", "time_s") if record[k] is not None})

    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(pack(g, d)),
        train_config=ConfigRecord(cfg.to_flower()),
        num_rounds=cfg.num_server_rounds,
        evaluate_fn=after_round,
    )
    save_checkpoint(run.final_checkpoint, pack(g, d), {"round": cfg.num_server_rounds, "config": cfg.to_flower()})
    return {"rounds": run.read_rounds(), "final_checkpoint": str(run.final_checkpoint)}


def round_record(server_round: int, seconds: float, sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The round-log line: per-site figures plus example-weighted mean losses."""
    trained = [s for s in sites if not s.get("stopped") and "error" not in s]
    total = sum(s["num_examples"] for s in trained)

    def mean(key: str) -> float | None:
        return sum(s[key] * s["num_examples"] for s in trained) / total if total else None

    return {
        "round": server_round,
        "time_s": round(seconds, 3),
        "d_loss": mean("d_loss"),
        "g_loss": mean("g_loss"),
        "sites": sorted(sites, key=lambda s: str(s.get("site"))),
    }


def warm_start(g: Any, d: Any, cfg: RunConfig, device: str, class_names: list[str] | None = None) -> dict[str, Any]:
    """Public pretraining on data that is NOT any site's private data; records what was used."""
    if cfg.warm_start == "none" or cfg.warm_start_steps <= 0:
        return {"source": "none"}
    from server.pretrain import pretrain
    from server.public_data import load_public, run_class_names

    public, description = load_public(cfg, class_names)
    # public labels steer the conditional prior only when they name the run's own classes
    stats = pretrain(g, d, public, cfg, steps=cfg.warm_start_steps, device=device, seed=cfg.seed, class_names=run_class_names(cfg, class_names))
    return {"source": cfg.warm_start, "description": description, "n": len(public), "steps": cfg.warm_start_steps, **stats}


def versions() -> dict[str, str]:
    """Package versions, so a run (and a release) says what produced it."""
    out = {}
    for name in ("fedsynth", "flwr", "torch", "opacus", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
