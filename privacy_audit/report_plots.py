"""Inline SVG charts for the HTML report, drawn by hand (no plotting library is installed).

Every chart has labelled axes, gridlines and a legend; colours are the Okabe-Ito
palette, which stays distinguishable for colour-blind readers and in grey print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

import numpy as np

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#6B6B6B", "#F0E442"]
INK, GRID, MUTED = "#1f2328", "#e6e8eb", "#57606a"


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = PALETTE[0]
    dashed: bool = False
    flags: Sequence[bool] = field(default_factory=list)  # points drawn as a ring (e.g. "site stopped")


@dataclass
class RefLine:
    """A horizontal (or, for histograms, vertical) reference line with its legend label."""

    value: float
    label: str
    color: str = INK
    dash: str = "6 4"


@dataclass
class _Frame:
    """Plot area geometry and the data-to-pixel maps."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 64
    right: int = 18
    top: int = 42
    bottom: int = 50

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1) * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        return self.height - self.bottom - (y - self.y0) / ((self.y1 - self.y0) or 1) * (self.height - self.top - self.bottom)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi - 1e-12:
        ticks.append(round(t, 10))
    return ticks


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.10g}" if abs(v - round(v)) < 1e-9 else f"{v:.3g}"


def _text(x: float, y: float, s: str, *, anchor: str = "middle", size: int = 12, color: str = INK, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{color}" {extra}>{escape(s)}</text>'


def _axes(f: _Frame, xticks: list[float], yticks: list[float], x_label: str, y_label: str, xtick_labels: list[str] | None = None) -> list[str]:
    out = []
    for t in yticks:
        y = f.py(t)
        out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(f.left - 8, y + 4, _fmt_tick(t), anchor="end", size=11, color=MUTED))
    for i, t in enumerate(xticks):
        x = f.px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.height - f.bottom}" y2="{f.height - f.bottom + 5}" stroke="{MUTED}"/>')
        label = xtick_labels[i] if xtick_labels else _fmt_tick(t)
        out.append(_text(x, f.height - f.bottom + 18, label, size=11, color=MUTED))
    base = f.height - f.bottom
    out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{base}" y2="{base}" stroke="{MUTED}"/>')
    out.append(f'<line x1="{f.left}" x2="{f.left}" y1="{f.top}" y2="{base}" stroke="{MUTED}"/>')
    out.append(_text((f.left + f.width - f.right) / 2, f.height - 10, x_label, size=12))
    cy = (f.top + base) / 2
    out.append(_text(16, cy, y_label, size=12, extra=f'transform="rotate(-90 16 {cy:.1f})"'))
    return out


Legend = list[tuple[str, str, str]]  # (label, color, kind) with kind "line", "dash" or "box"


def _legend_rows(items: Legend, width: int, left: int = 64, right: int = 18) -> list[list[tuple[float, str, str, str]]]:
    """Lay legend items out left to right above the plot, wrapping to a new row when full."""
    rows: list[list[tuple[float, str, str, str]]] = [[]]
    x = float(left)
    for label, color, kind in items:
        w = 24 + 6.8 * len(label) + 16
        if rows[-1] and x + w > width - right:
            rows.append([])
            x = float(left)
        rows[-1].append((x, label, color, kind))
        x += w
    return rows if rows[0] else []


def _legend_top(items: Legend, width: int) -> int:
    """The plot's top margin: room for the legend rows."""
    return 22 + 20 * len(_legend_rows(items, width))


def _legend(f: _Frame, items: Legend) -> list[str]:
    out = []
    for r, row in enumerate(_legend_rows(items, f.width, f.left, f.right)):
        y = 18 + 20 * r
        for x, label, color, kind in row:
            if kind == "box":
                out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="14" height="10" fill="{color}" fill-opacity="0.55" stroke="{color}"/>')
            else:
                dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
                out.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" stroke-width="2.5"{dash}/>')
            out.append(_text(x + 24, y, label, anchor="start", size=12))
    return out


def _svg(f: _Frame, title: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {f.width} {f.height}" width="{f.width}" height="{f.height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _span(values: list[float], pad: float = 0.05, include_zero: bool = False) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)] or [0.0, 1.0]
    lo, hi = min(vals), max(vals)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    d = (hi - lo) or (abs(hi) or 1.0)
    return lo - (0 if include_zero and lo == 0 else pad * d), hi + pad * d


def line_chart(series: list[Series], *, title: str, x_label: str, y_label: str, refs: Sequence[RefLine] = (), width: int = 560, height: int = 300) -> str:
    """Lines with point markers; ``None`` / NaN values break a line; reference lines are horizontal."""
    xs = [float(x) for s in series for x in s.xs]
    ys = [float(y) for s in series for y in s.ys if y is not None] + [r.value for r in refs]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    yl, yh = _span(ys, include_zero=min(ys, default=0) >= 0)
    yticks = nice_ticks(yl, yh)
    xticks = [t for t in nice_ticks(x0, x1, min(8, int(x1 - x0) or 1)) if x0 <= t <= x1 and float(t).is_integer()] or [x0, x1]
    legend = [(s.name, s.color, "dash" if s.dashed else "line") for s in series] + [(r.label, r.color, "dash") for r in refs]
    f = _Frame(width, height, x0, x1, yticks[0], yticks[-1], top=_legend_top(legend, width))
    body = _axes(f, xticks, yticks, x_label, y_label)
    for r in refs:
        y = f.py(r.value)
        body.append(f'<line x1="{f.left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{r.color}" stroke-width="1.5" stroke-dasharray="{r.dash}"/>')
    for s in series:
        pts = [(f.px(float(x)), None if y is None or not math.isfinite(float(y)) else f.py(float(y))) for x, y in zip(s.xs, s.ys)]
        path, pen = [], "M"
        for x, y in pts:
            if y is None:
                pen = "M"
                continue
            path.append(f"{pen}{x:.1f},{y:.1f}")
            pen = "L"
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{s.color}" stroke-width="2.2"{dash}/>')
        if len(pts) <= 60:
            for i, (x, y) in enumerate(pts):
                if y is None:
                    continue
                ring = i < len(s.flags) and s.flags[i]
                fill = "#fff" if ring else s.color
                body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4.5 if ring else 3}" fill="{fill}" stroke="{s.color}" stroke-width="1.8"/>')
    return _svg(f, title, body + _legend(f, legend))


def histogram_chart(
    groups: list[tuple[str, Sequence[float], str]], *, title: str, x_label: str, bins: int | None = None,
    marker: RefLine | None = None, width: int = 560, height: int = 300,
) -> str:
    """Overlaid histograms normalised to fractions (sets of different sizes stay comparable).

    Without ``bins``, about two per square root of the largest set (10 to 40): enough to
    see the shape, not so many that a few hundred values turn into noise.
    """
    if bins is None:
        bins = int(np.clip(2 * np.sqrt(max((len(g) for _, g, _ in groups), default=1)), 10, 40))
    vals = [float(v) for _, g, _ in groups for v in g if v is not None and math.isfinite(float(v))]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if marker is not None:
        lo, hi = min(lo, marker.value), max(hi, marker.value)
    if hi <= lo:
        lo, hi = lo - 0.05, hi + 0.05
    pad = 0.02 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    fracs = []
    for _, g, _ in groups:
        arr = np.asarray([v for v in g if v is not None], dtype=float)
        counts = np.histogram(arr, edges)[0] if len(arr) else np.zeros(bins)
        fracs.append(counts / max(len(arr), 1))
    yticks = nice_ticks(0.0, max((float(c.max()) for c in fracs), default=1.0) * 1.08 or 1.0)
    legend = [(f"{name} (n={len(g)})", color, "box") for name, g, color in groups] + ([(marker.label, marker.color, "dash")] if marker else [])
    f = _Frame(width, height, float(edges[0]), float(edges[-1]), 0.0, yticks[-1], top=_legend_top(legend, width))
    xticks = [t for t in nice_ticks(edges[0], edges[-1], 6) if edges[0] <= t <= edges[-1]]
    body = _axes(f, xticks, yticks, x_label, "fraction of images")
    for (name, _, color), frac in zip(groups, fracs):
        step = [f"M{f.px(edges[0]):.1f},{f.py(0):.1f}"]
        for i, v in enumerate(frac):
            x_a, x_b, y = f.px(edges[i]), f.px(edges[i + 1]), f.py(v)
            if v > 0:
                body.append(f'<rect x="{x_a:.1f}" y="{y:.1f}" width="{max(x_b - x_a, 0.5):.1f}" height="{f.py(0) - y:.1f}" fill="{color}" fill-opacity="0.35"/>')
            step.append(f"L{x_a:.1f},{y:.1f} L{x_b:.1f},{y:.1f}")
        step.append(f"L{f.px(edges[-1]):.1f},{f.py(0):.1f}")
        body.append(f'<path d="{" ".join(step)}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    if marker is not None:
        x = f.px(marker.value)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.py(0):.1f}" stroke="{marker.color}" stroke-width="2" stroke-dasharray="{marker.dash}"/>')
    return _svg(f, title, body + _legend(f, legend))


def bar_chart(
    categories: list[str], groups: list[tuple[str, Sequence[float | None], str]], *, title: str, x_label: str, y_label: str,
    y_range: tuple[float, float] = (0.0, 1.0), refs: Sequence[RefLine] = (), width: int = 560, height: int = 300,
) -> str:
    """Grouped vertical bars, one group per category, value printed above each bar."""
    yticks = nice_ticks(*y_range)
    n = max(len(categories), 1)
    legend = [(name, color, "box") for name, _, color in groups] + [(r.label, r.color, "dash") for r in refs]
    f = _Frame(width, height, -0.5, n - 0.5, yticks[0], yticks[-1], top=_legend_top(legend, width))
    body = _axes(f, list(range(len(categories))), yticks, x_label, y_label, xtick_labels=categories)
    slot = (f.px(1) - f.px(0)) * 0.78
    bw = slot / max(len(groups), 1)
    labels = []
    for gi, (_, vals, color) in enumerate(groups):
        for ci, v in enumerate(vals):
            if v is None or not math.isfinite(v):
                continue
            x = f.px(ci) - slot / 2 + gi * bw
            y = f.py(max(min(v, yticks[-1]), yticks[0]))
            body.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{f.py(yticks[0]) - y:.1f}" fill="{color}"/>')
            inside = f.py(yticks[0]) - y > 20 and bw > 26  # white label inside tall bars, above short ones
            halo = f'stroke="{color if inside else "#fff"}" stroke-width="3" paint-order="stroke"'  # stays legible over reference lines
            labels.append(_text(x + bw / 2, y + 14 if inside else y - 4, f"{v:.2f}", size=10, color="#fff" if inside else MUTED, extra=halo))
    for r in refs:
        y = f.py(r.value)
        body.append(f'<line x1="{f.left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{r.color}" stroke-width="1.5" stroke-dasharray="{r.dash}"/>')
    body += labels
    return _svg(f, title, body + _legend(f, legend))
