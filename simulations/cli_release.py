"""``fedsynth release`` and ``fedsynth report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("release")(release_command)
    app.command("report")(report_command)


def release_command(
    run: Path = typer.Option(..., help="Run directory (from simulate)."),
    n: int = typer.Option(1000, help="How many synthetic images to release."),
    out: Path = typer.Option(..., help="Release folder; must not exist (releases are never overwritten)."),
    seed: int = typer.Option(0),
    threshold: Optional[float] = typer.Option(None, help="NN-SSIM threshold (default: each site's held-out 99th percentile)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Generate a set, audit it at every site, and write it with a manifest only if all pass."""
    from simulations.cli import console, fail
    from simulations.release import release

    try:
        decision, manifest, results = release(run, out, n=n, seed=seed, threshold=threshold)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise fail(str(exc))
    if json_out:
        console.print_json(json.dumps({"passed": decision.passed, "reasons": decision.reasons, "sites": results}))
    for r in results:
        if not json_out:
            status = "error" if "error" in r else ("pass" if r.get("passed") else "FAIL")
            console.print(f"  {r.get('site')}: {status}, epsilon {r.get('epsilon', float('nan')):.2f}, flagged {r.get('flagged_fraction', float('nan')):.2%} (threshold {r.get('threshold', float('nan')):.3f})")
    if not decision.passed:
        for reason in decision.reasons:
            console.print(f"[red]refused:[/] {reason}", highlight=False)
        raise fail("release refused; nothing was written", code=1)
    if not json_out:
        console.print(f"[green]released[/] {manifest['n']} images to [bold]{out}[/] (manifest.json has checksums, per-site epsilon and audit figures)")


def report_command(
    run: Path = typer.Argument(..., help="Run directory."),
    out: Optional[Path] = typer.Option(None, help="HTML file (default: RUN/report.html)."),
    n: int = typer.Option(600, help="Synthetic images to audit when the run has no audit yet."),
    refresh: bool = typer.Option(False, help="Re-run the local audit even if RUN/audit/audit.json exists."),
) -> None:
    """Audit the run locally (if needed) and write one self-contained HTML report."""
    from privacy_audit.report import write_report
    from server.run_dir import RunDir
    from simulations.cli import console, fail
    from simulations.run_audit import audit_run

    try:
        rd = RunDir(run)
        rd.read_config()
        if refresh or not (rd.audit_dir / "audit.json").is_file():
            with console.status("auditing the run (memorization, fidelity, utility)..."):
                audit_run(run, n=n)
        path = write_report(run, out)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise fail(str(exc))
    console.print(f"Report: [bold]{path}[/]")
