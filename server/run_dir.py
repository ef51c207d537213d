"""The layout of a run directory, and the only code that writes into it.

    RUN/config.json             the run config (Flower key names) plus run facts
    RUN/rounds.jsonl            one JSON line per round: losses, per-site epsilon, time
    RUN/checkpoints/round-NNN.safetensors, RUN/checkpoints/final.safetensors
    RUN/grids/round-NNN.png     samples from one fixed latent batch, every round
    RUN/ledger/                 per-site privacy ledgers (simulation only)
    RUN/audit/                  audit results (written by `fedsynth audit` / `release`)
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def rounds(self) -> Path:
        return self.root / "rounds.jsonl"

    @property
    def final_checkpoint(self) -> Path:
        return self.root / "checkpoints" / "final.safetensors"

    @property
    def ledger_dir(self) -> Path:
        return self.root / "ledger"

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    def checkpoint(self, server_round: int) -> Path:
        return self.root / "checkpoints" / f"round-{server_round:03d}.safetensors"

    def grid(self, server_round: int) -> Path:
        return self.root / "grids" / f"round-{server_round:03d}.png"

    def read_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.config}: not a fedsynth run (no config.json)")
        try:
            return json.loads(self.config.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.config}: corrupt run config ({exc.msg} at line {exc.lineno})") from exc

    def read_rounds(self) -> list[dict[str, Any]]:
        """All round records; a torn last line (crash mid-write) is ignored, others are errors."""
        if not self.rounds.is_file():
            return []
        lines = self.rounds.read_text().splitlines()
        out = []
        for i, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if i == len(lines):
                    break
                raise ValueError(f"{self.rounds}: line {i} is not JSON ({exc.msg})") from exc
        return out

    def append_round(self, record: dict[str, Any]) -> None:
        self.rounds.parent.mkdir(parents=True, exist_ok=True)
        with self.rounds.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write: a reader never sees half a file, a crash never loses the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
