"""What a person watches during ``fedsynth simulate``: a round bar, a line per site, a table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared_models.config import RunConfig


class RoundPrinter:
    """Context manager: a progress bar over rounds, and each site's figures as rounds end."""

    def __init__(self, console: Console, cfg: RunConfig, quiet: bool = False):
        self.console, self.cfg, self.quiet = console, cfg, quiet
        self.progress = Progress(
            TextColumn("[bold]rounds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=quiet,
        )
        self.task = self.progress.add_task("rounds", total=cfg.num_server_rounds)

    def __enter__(self) -> "RoundPrinter":
        if not self.quiet:
            c = self.cfg
            self.console.print(
                f"[bold]fedsynth[/]: {c.hospitals} hospitals, {c.num_server_rounds} rounds, "
                f"target epsilon {c.epsilon:g} per site, partition {c.partition}, data {c.data}, {c.image_size} px"
            )
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def on_round(self, record: dict[str, Any]) -> None:
        self.progress.advance(self.task)
        if self.quiet:
            return
        self.progress.console.print(f"[bold]round {record['round']}[/] ({record['time_s']:.1f} s)")
        for site in record["sites"]:
            self.progress.console.print("   " + site_line(site), highlight=False)


def site_line(site: dict[str, Any]) -> str:
    """One site's round in one line."""
    if "error" in site:
        return f"{site['site']}: FAILED: {site['error']}"
    if site.get("stopped"):
        return f"{site['site']}: stopped: {site.get('reason') or 'budget'} (epsilon {site.get('epsilon', 0):.2f})"
    return (
        f"{site['site']}: epsilon {site['epsilon']:.2f} (delta {site['delta']:.1e}), "
        f"D loss {site['d_loss']:.3f}, G loss {site['g_loss']:.3f}, "
        f"{int(site['num_examples'])} images, {site.get('time_s', 0):.1f} s"
    )


def summary_table(rounds: list[dict[str, Any]], cfg: RunConfig) -> Table:
    """Per-site epsilon, losses and time after the last round (time summed over rounds)."""
    table = Table(title=f"Per-site privacy and losses after {len(rounds)} rounds (target epsilon {cfg.epsilon:g})")
    for col in ("site", "epsilon", "delta", "D loss", "G loss", "images", "train time", "status"):
        table.add_column(col, justify="left" if col in ("site", "status") else "right")
    if not rounds:
        return table
    time_by_site: dict[str, float] = {}
    for r in rounds:
        for s in r["sites"]:
            time_by_site[s["site"]] = time_by_site.get(s["site"], 0.0) + float(s.get("time_s", 0.0))
    for s in rounds[-1]["sites"]:
        if "error" in s:
            table.add_row(s["site"], "-", "-", "-", "-", "-", "-", f"failed: {s['error']}")
            continue
        status = f"stopped: {s.get('reason') or 'budget'}" if s.get("stopped") else "ok"
        table.add_row(
            s["site"], f"{s['epsilon']:.2f}", f"{s['delta']:.1e}", f"{s['d_loss']:.3f}", f"{s['g_loss']:.3f}",
            str(int(s["num_examples"])), f"{time_by_site[s['site']]:.1f} s", status,
        )
    return table
