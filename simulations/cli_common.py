"""The one way every ``fedsynth`` command reports a failure: one red line, an exit code."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line and return the Exit to raise (no markup: paths may hold '[')."""
    Console(stderr=True).print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    return typer.Exit(code=code)
