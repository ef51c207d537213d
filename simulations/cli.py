"""The ``fedsynth`` command line: typer for parsing, rich for what people read.

Every failure ends in one red line and a non-zero exit code; tracebacks are for bugs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from privacy_audit.nn_compile import prefer_wide_vectors
from shared_models.config import RunConfig
from simulations.cli_common import fail

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Federated, differentially private synthesis of medical images.")
console = Console()


@app.command()
def simulate(
    hospitals: int = typer.Option(3, help="Number of simulated hospitals."),
    rounds: int = typer.Option(RunConfig.num_server_rounds, help="Federated rounds."),
    epsilon: float = typer.Option(RunConfig.epsilon, help="Target epsilon per site (DP budget)."),
    partition: str = typer.Option("iid", help="iid | dirichlet:ALPHA | source"),
    data: str = typer.Option("demo", help="'demo' (bundled CT/MRI slices) or a path to images."),
    image_size: int = typer.Option(32, help="32 or 64."),
    out: Path = typer.Option(Path("runs/latest"), help="Run directory to create."),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto (CUDA when present) | cpu | cuda"),
    ledger_dir: Optional[Path] = typer.Option(None, help="Privacy ledgers (default: RUN/ledger; share one to account across runs)."),
    set_: list[str] = typer.Option([], "--set", help="Any other run-config key, e.g. --set d-steps-per-round=50."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train a DP federated GAN across simulated hospitals (Flower simulation engine)."""
    from simulations.progress import RoundPrinter, summary_table
    from simulations.deploy import parse_sets  # one --set parser for simulate and server run
    from simulations.runner import prepare_run_dir, simulate as run_simulation

    try:
        base = RunConfig.from_flower(parse_sets(set_)).to_flower()
        cfg = RunConfig.from_flower(
            {
                **base,
                "hospitals": hospitals,
                "num-server-rounds": rounds,
                "epsilon": epsilon,
                "partition": partition,
                "data": data,
                "image-size": image_size,
                "seed": seed,
                "device": device,
                "out-dir": str(out.resolve()),
                "ledger-dir": str((ledger_dir or out / "ledger").resolve()),
            }
        )
        class_names = _class_names(cfg)
        cfg = cfg.replace(num_classes=len(class_names))
        run = prepare_run_dir(out, overwrite)  # last: a bad option never costs the old run
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise fail(str(exc))
    printer = RoundPrinter(console, cfg, quiet=json_out)
    with printer:
        try:
            summary = run_simulation(cfg, run, on_round=printer.on_round, facts={"class-names": class_names})
        except Exception as exc:  # the run failed: say why in one line, keep the run dir for inspection
            raise fail(f"simulation failed: {exc} (run directory kept: {run.root})", code=1)
    if json_out:
        console.print_json(json.dumps(summary))
        return
    console.print(summary_table(summary["rounds"], cfg))
    console.print(f"Run directory: [bold]{run.root}[/]  final checkpoint: {summary['final_checkpoint']}")
    console.print(f"Last sample grid: {run.grid(cfg.num_server_rounds)}")


def _class_names(cfg: RunConfig) -> list[str]:
    """The data decides the classes of the conditional GAN (none: unconditional).

    The partition is computed here once too, so a bad scheme or too little data fails in
    one line before the warm start and the engine start.
    """
    from simulations.partition import partition
    from simulations.sites import load_source

    data = load_source(cfg)
    partition(data, cfg.hospitals, cfg.partition, cfg.seed)
    if data.labels is None:
        return []
    return data.class_names or [str(k) for k in range(data.num_classes)]


@app.command()
def generate(
    run: Path = typer.Option(..., help="Run directory (from simulate)."),
    n: int = typer.Option(1000, help="How many images."),
    class_: Optional[int] = typer.Option(None, "--class", help="Only this class (conditional runs)."),
    out: Path = typer.Option(..., help="Output folder (must not exist or be empty)."),
    seed: int = typer.Option(0),
    checkpoint: Optional[Path] = typer.Option(None, help="Default: RUN/checkpoints/final.safetensors."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
) -> None:
    """Sample synthetic images from a trained run: PNGs plus manifest.json."""
    from simulations.generate import write_samples

    try:
        manifest = write_samples(run, out, n=n, seed=seed, class_id=class_, checkpoint=checkpoint)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise fail(str(exc))
    if json_out:
        console.print_json(json.dumps({k: v for k, v in manifest.items() if k != "files"}))
    else:
        console.print(f"Wrote {manifest['count']} images and manifest.json to [bold]{out}[/]")


def _mount_optional() -> None:
    """Sub-commands whose modules live elsewhere in the tree."""
    from simulations import cli_audit, cli_data, cli_deploy, cli_release

    app.add_typer(cli_data.app, name="data", help="Build the demo data set; inspect a data folder.")
    app.command("audit")(cli_audit.audit_command)
    cli_release.register(app)
    cli_deploy.register(app)


_mount_optional()


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    prefer_wide_vectors()  # before anything imports numba
    app()


if __name__ == "__main__":
    main()
