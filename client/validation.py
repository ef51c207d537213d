"""What can be wrong with a hospital's image files, reported one line per file.

A loader never dies on one bad scan in a folder of thousands: by default the file is
skipped and a :class:`Problem` recorded; ``strict=True`` turns the first problem into
a :class:`DataError` (for pipelines that must not train on a silently shrunk set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Problem levels: "error" = the file (or image) was skipped; "warning" = it was kept but
# altered (e.g. resized from an odd size), refused in strict mode; "note" = information
# that strict mode accepts (e.g. an RGB MedMNIST set converted to gray).
LEVELS = ("error", "warning", "note")


class DataError(ValueError):
    """Unusable input; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file; ``str(p)`` is ``"FILE: MESSAGE"``."""

    file: str
    message: str
    level: str = "error"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"problem level must be one of {LEVELS}, got {self.level!r}")

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def one_line(text: object, limit: int = 200) -> str:
    """An exception's text squeezed onto one short line (library messages can span many)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass
class ProblemLog:
    """Collects problems; in strict mode raises on the first one that strict refuses.

    Files are reported under ``root`` (the folder being loaded) so that a problem read
    in a server log, far from the hospital's shell, still names the full path."""

    strict: bool = False
    root: Path | None = None
    problems: list[Problem] = field(default_factory=list)

    def report(self, file: object, message: str, level: str = "error") -> None:
        name = Path(str(file))
        if self.root is not None and not name.is_absolute():
            name = self.root / name
        p = Problem(str(name), one_line(message), level)
        if self.strict and level != "note":
            raise DataError(str(p))
        self.problems.append(p)


class BadImage(Exception):
    """Raised inside a loader for one file; turned into a Problem by the caller."""


def check_pixels(x: np.ndarray) -> None:
    """Refuse arrays no model should see: NaN/inf values or a constant image."""
    if x.size == 0:
        raise BadImage("empty image (no pixels)")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise BadImage(f"contains {bad} NaN/inf pixel values")
    lo, hi = x.min(), x.max()
    if lo == hi:
        raise BadImage(f"constant image (every pixel is {lo.item():g})")


def to_gray(x: np.ndarray) -> np.ndarray:
    """A 2-D gray image from (H, W), (H, W, 1), (H, W, 3) gray-as-RGB, or opaque (H, W, 4)/(H, W, 2).

    Real colour (channels that differ), transparency and anything with more
    dimensions are refused: a gray model trained on them would learn the wrong thing.
    """
    if x.ndim == 2:
        return x
    if x.ndim != 3:
        raise BadImage(f"expected a 2-D gray image, got a {x.ndim}-D array of shape {tuple(x.shape)}")
    c = x.shape[-1]
    if c == 1:
        return x[..., 0]
    if c in (2, 4):
        alpha = x[..., -1]
        full = np.iinfo(x.dtype).max if np.issubdtype(x.dtype, np.integer) else 1.0
        if not (alpha == full).all():
            name = "gray+alpha" if c == 2 else "RGBA"
            raise BadImage(f"{name} image with transparency ({c} channels); expected 1-channel gray")
        x = x[..., :-1]
        c -= 1
        if c == 1:
            return x[..., 0]
    if c == 3:
        if (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all():
            return x[..., 0]
        raise BadImage("colour image (3 channels that differ); expected 1-channel gray")
    raise BadImage(f"{c} channels (shape {tuple(x.shape)}); expected 1-channel gray")


def rgb_to_gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of (..., 3) images, for sets that are colour by nature (MedMNIST)."""
    return (x[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
