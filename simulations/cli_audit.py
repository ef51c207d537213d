"""``fedsynth audit``: is a synthetic image set made of copies of real patients?

Exit codes: 0 = audit passed, 1 = memorization found, 2 = bad input or error. Progress
and warnings go to stderr, so ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulations.cli_common import fail

app = typer.Typer(add_completion=False, help="Memorization audit of a synthetic image set.")


@app.callback()
def _group() -> None:
    """Memorization audit of a synthetic image set."""


@app.command("audit")
def audit_command(
    real: Path = typer.Option(..., "--real", help="Training images the generator saw (folder, image, DICOM/NIfTI, .npz)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic images to audit (same kinds of input)."),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="Held-out real images (never trained on): calibrate the threshold."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="NN-SSIM threshold (default: the held-out 99th percentile)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Resize all images to this (default: the real images' own size)."),
    quantile: float = typer.Option(0.99, help="Held-out quantile that sets the threshold."),
    transforms: str = typer.Option("standard", help="Query transforms searched: none | flip | standard (flip, shifts <= 2 px) | full."),
    top_k: int = typer.Option(16, "--top-k", help="Most similar (synthetic, real) pairs listed."),
    strict: bool = typer.Option(False, help="Fail on the first unreadable file instead of skipping it."),
    json_out: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Compare synthetic images with the real training set (and held-out patients)."""
    from client.validation import DataError
    from privacy_audit.memorization import audit_memorization

    out, err = Console(), Console(stderr=True)
    try:
        if threshold is None and holdout is None:
            raise ValueError("give --holdout (to calibrate the threshold) or --threshold")
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise ValueError(f"--threshold must be an SSIM value in [-1, 1], got {threshold}")
        size, sets, problems = _load_all(real, synthetic, holdout, image_size, strict)
        for p in problems:
            err.print(f"[yellow]warning:[/] {p}", highlight=False, soft_wrap=True)
        with _progress(err, quiet=False) as (bar, update):
            report = audit_memorization(sets["real"], sets["synthetic"], sets.get("holdout"), threshold=threshold, quantile=quantile, top_k=top_k, transforms=transforms, progress=update)
    except (DataError, ValueError, OSError) as exc:
        raise fail(str(exc))
    result = report.to_dict()
    if json_out:
        out.print_json(json.dumps({**result, "image_size": size, "inputs": {k: str(v) for k, v in (("real", real), ("synthetic", synthetic), ("holdout", holdout)) if v is not None}, "problems": [str(p) for p in problems]}))
    else:
        out.print(_verdict_table(result, size))
    if not result["passed"]:
        if not json_out:
            for reason in result["reasons"]:
                err.print(f"[red]memorization:[/] {reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


def _load_all(real: Path, synthetic: Path, holdout: Path | None, image_size: int | None, strict: bool) -> tuple[int, dict[str, Any], list[str]]:
    """Load the sets at one size: the given one, else the real images' own size (and then
    the other sets must have it too, rather than being silently resized)."""
    from client.loaders import load_with_sizes

    paths = {"real": real, "synthetic": synthetic, **({"holdout": holdout} if holdout is not None else {})}
    size = image_size if image_size is not None else _native_size(real, load_with_sizes(real, 32, strict)[2])
    sets, problems = {}, []
    for name, path in paths.items():
        data, probs, sizes = load_with_sizes(path, size, strict)
        if image_size is None and name != "real" and set(sizes) != {f"{size}x{size}"}:
            raise ValueError(f"{path}: {name} images are {', '.join(sizes)} but the real images are {size}x{size}; pass --image-size to resize all")
        sets[name] = data.images
        problems += [str(p) for p in probs]
    return size, sets, problems


def _native_size(path: Path, sizes: dict[str, int]) -> int:
    """The size of the real images, which must be square and all alike to be inferred."""
    if len(sizes) != 1:
        raise ValueError(f"{path}: real images come in several sizes ({', '.join(sizes)}); pass --image-size")
    h, w = (int(v) for v in next(iter(sizes)).split("x"))
    if h != w:
        raise ValueError(f"{path}: real images are {h}x{w}, not square; pass --image-size")
    return h


class _progress:
    """A rich progress bar per audit stage (held-out, synthetic) on stderr."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=quiet, transient=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> tuple[Progress, Any]:
        self.bar.__enter__()
        return self.bar, self.update

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def update(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(f"nearest neighbours: {stage}", total=total)
        self.bar.update(self.tasks[stage], completed=done)


def _verdict_table(r: dict[str, Any], size: int) -> Table:
    """The figures people read: threshold, flagged shares, the test, the closest pairs."""
    verdict = "[bold green]PASS[/]" if r["passed"] else "[bold red]FAIL: memorization found[/]"
    t = Table(title=f"Memorization audit ({size}x{size}): {verdict}", show_header=False, title_justify="left")
    t.add_column("what")
    t.add_column("value")
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    t.add_row("images", f"{r['n_train']} training, {r['n_synthetic']} synthetic, {r['n_holdout']} held-out")
    t.add_row("NN-SSIM threshold", f"{r['threshold']:.4f} ({r['threshold_source']})")
    t.add_row("synthetic above threshold", f"{r['flagged_count']} ({pct(r['flagged_fraction'])})")
    t.add_row("held-out above threshold", pct(r["holdout_flagged_fraction"]))
    mw = r["mann_whitney"]
    t.add_row("Mann-Whitney (synthetic closer?)", "n/a (no held-out set)" if mw is None else f"z = {mw['z']:.2f}, one-sided p = {mw['p_value']:.3g}")
    t.add_row("transforms searched", f"{len(r['transform_search'])} ({', '.join(r['transform_search'][:3])}, ...)" if len(r["transform_search"]) > 3 else ", ".join(r["transform_search"]))
    for p in r["top_pairs"][:5]:
        t.add_row(f"synthetic #{p['synthetic_index']} ~ real #{p['real_index']}", f"SSIM {p['ssim']:.4f}, PSNR {p['psnr']:.1f} dB, {p['transform']}")
    return t
