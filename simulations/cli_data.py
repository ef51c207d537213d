"""``fedsynth data``: build the bundled demo set, and inspect what a loader would see.

A hospital runs ``fedsynth data inspect FOLDER`` before joining a federation, so the
bad scans are found on its own machine, one clear line per file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from client.dataset import ImageSet
from client.validation import Problem
from simulations.cli_common import fail

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Load, check and build image data sets.")


@app.command("build-demo")
def build_demo_command(
    out: Optional[Path] = typer.Option(None, help="Where to write the npz (default: the bundled client/demo_data file)."),
    force: bool = typer.Option(False, help="Overwrite an existing file."),
    json_out: bool = typer.Option(False, "--json", help="Print the build stats as one JSON object."),
) -> None:
    """Rebuild the demo CT/MRI set from Debian packages and nilearn (see DATA.md)."""
    from client.demo_build import APT_HINT, DEFAULT_OUT, build_demo, missing_sources

    target = out or DEFAULT_OUT
    if target.exists() and not force:
        raise fail(f"{target}: already exists; pass --force to overwrite it")
    missing = missing_sources()
    if missing:
        raise fail(f"demo sources missing ({', '.join(missing)}); run: {APT_HINT}")
    try:
        stats = build_demo(target)
    except (OSError, ValueError) as exc:
        raise fail(f"{target}: build failed ({exc})")
    if json_out:
        typer.echo(json.dumps(stats))
        return
    console = Console()
    console.print(f"wrote [bold]{target}[/]: {stats['count']} images, {stats['file_bytes'] / 1e6:.2f} MB")
    for name, n in stats["per_class"].items():
        console.print(f"  {name}: {n}")


@app.command("inspect")
def inspect_command(
    path: str = typer.Argument(..., help="Folder, file, .npz, or 'demo'."),
    image_size: int = typer.Option(32, help="Size the images are resized to (32 or 64)."),
    strict: bool = typer.Option(False, help="Fail on the first problem instead of skipping the file."),
    split: str = typer.Option("train", help="MedMNIST .npz split: train | val | test."),
    plane: str = typer.Option("axial", help="NIfTI slicing plane: axial | coronal | sagittal."),
    class_folders: bool = typer.Option(True, help="Top-level subfolders are classes (--no-class-folders: patients)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Load PATH as fedsynth would and report counts, classes, sizes, groups and problems."""
    from client.loaders import load_with_sizes
    from client.validation import DataError

    try:
        data, problems, sizes = load_with_sizes(
            path, image_size, strict, split=split, plane=plane, class_folders=class_folders
        )
    except DataError as exc:
        raise fail(str(exc))
    summary = summarize(data, problems, sizes, path)
    if json_out:
        typer.echo(json.dumps(summary))
        return
    _print_summary(summary)


def summarize(data: ImageSet, problems: list[Problem], sizes: dict[str, int], path: str) -> dict:
    """The inspect report as plain JSON-able values."""
    per_class: dict[str, int] = {}
    if data.labels is not None:
        counts = Counter(data.labels.tolist())
        names = data.class_names or [str(i) for i in range(data.num_classes)]
        per_class = {names[i] if i < len(names) else str(i): int(counts.get(i, 0)) for i in range(max(len(names), data.num_classes))}
    groups = Counter(data.groups.tolist()) if data.groups is not None else Counter()
    domains = Counter(data.domains.tolist()) if data.domains is not None else Counter()
    return {
        "path": str(path),
        "count": len(data),
        "image_size": data.image_size,
        "value_range": [float(data.images.min()), float(data.images.max())],
        "classes": per_class,
        "original_sizes": sizes,
        "groups": len(groups),
        "largest_groups": dict(groups.most_common(5)),
        "has_positions": data.positions is not None,
        "domains": dict(domains.most_common()),
        "problems": [{"file": p.file, "message": p.message, "level": p.level} for p in problems],
    }


def _print_summary(s: dict) -> None:
    console = Console()
    console.print(f"[bold]{s['path']}[/]: {s['count']} images at {s['image_size']}x{s['image_size']}, {s['groups']} groups")
    table = Table(title="classes", show_header=True)
    table.add_column("class")
    table.add_column("images", justify="right")
    for name, n in (s["classes"] or {"(unlabelled)": s["count"]}).items():
        table.add_row(name, str(n))
    console.print(table)
    sizes = ", ".join(f"{k} ({v})" for k, v in s["original_sizes"].items())
    console.print(f"original sizes: {sizes}")
    console.print("domains: " + ", ".join(f"{k} ({v})" for k, v in s["domains"].items()))
    if s["problems"]:
        pt = Table(title=f"{len(s['problems'])} problems", show_header=True)
        pt.add_column("level")
        pt.add_column("file", overflow="fold")
        pt.add_column("problem", overflow="fold")
        for p in s["problems"]:
            pt.add_row(p["level"], p["file"], p["message"])
        console.print(pt)
    else:
        console.print("no problems found")
