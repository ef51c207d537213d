"""HTML building blocks for the report: stylesheet, tables, formatted numbers, PNG data URIs.

Everything is inlined (CSS, PNGs as base64 data URIs, SVG) so the report is one file
that opens offline, can be attached to an e-mail and never fetches anything.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

CSS = """
:root { --ink:#1f2328; --muted:#57606a; --line:#d0d7de; --soft:#f6f8fa; --pass:#1a7f37; --fail:#cf222e; --warn:#9a6700; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; background:#eef1f4; color:var(--ink); font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","DejaVu Sans",sans-serif; }
main { max-width:1180px; margin:0 auto; padding:24px 28px 48px; }
header.top { display:flex; justify-content:space-between; align-items:flex-end; gap:24px; border-bottom:1px solid var(--line); padding-bottom:12px; margin-bottom:18px; }
header.top h1 { font-size:22px; margin:0; letter-spacing:-0.2px; }
header.top .sub { color:var(--muted); font-size:13px; }
header.top .meta { text-align:right; color:var(--muted); font-size:12px; white-space:nowrap; }
.chips { display:flex; flex-wrap:wrap; gap:6px; margin:8px 0 0; padding:0; list-style:none; }
.chips li { background:#fff; border:1px solid var(--line); border-radius:12px; padding:1px 10px; font-size:12px; color:var(--muted); }
.chips b { color:var(--ink); font-weight:600; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:18px 22px 20px; margin:0 0 18px; }
section > h2 { font-size:17px; margin:0 0 4px; }
section > p.lead { color:var(--muted); margin:0 0 14px; max-width:860px; }
h3 { font-size:14px; margin:16px 0 6px; }
.verdict { border-left:8px solid var(--warn); }
.verdict.pass { border-left-color:var(--pass); } .verdict.fail { border-left-color:var(--fail); }
.verdict .status { font-size:24px; font-weight:700; margin:0; }
.verdict.pass .status { color:var(--pass); } .verdict.fail .status { color:var(--fail); } .verdict.none .status, .verdict.incomplete .status { color:var(--warn); }
.verdict ul.reasons { margin:6px 0 0; padding-left:20px; }
.cards { display:grid; grid-template-columns:repeat(4, 1fr); gap:12px; margin-top:14px; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:var(--soft); }
.card .k { font-size:11px; text-transform:uppercase; letter-spacing:.5px; color:var(--muted); }
.card .v { font-size:20px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.card .s { font-size:12px; color:var(--muted); }
.card.bad .v { color:var(--fail); } .card.good .v { color:var(--pass); }
.missing { background:#fff8c5; border:1px solid #d4a72c66; border-radius:6px; padding:8px 12px; color:#6b4f00; margin:8px 0; }
.missing-list { margin:10px 0 0; font-size:13px; color:#6b4f00; }
table { border-collapse:collapse; width:100%; margin:6px 0 4px; font-size:13px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid #eaeef2; vertical-align:top; }
th { background:var(--soft); font-weight:600; border-bottom:1px solid var(--line); }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.group td { background:#fafbfc; font-weight:600; color:var(--muted); }
.up { color:var(--pass); } .down { color:var(--fail); }
.note { color:var(--muted); font-size:12px; }
.tag { display:inline-block; font-size:11px; border-radius:10px; padding:0 8px; border:1px solid var(--line); color:var(--muted); }
.tag.bad { border-color:var(--fail); color:var(--fail); } .tag.good { border-color:var(--pass); color:var(--pass); }
.twocol { display:grid; grid-template-columns:1fr 1fr; gap:18px; align-items:start; }
svg.chart { max-width:100%; height:auto; font-family:inherit; display:block; }
img.px { image-rendering:pixelated; image-rendering:crisp-edges; display:block; border-radius:2px; }
.classrow { display:grid; grid-template-columns:130px 1fr; gap:12px; align-items:center; padding:6px 0; border-bottom:1px solid #eaeef2; }
.classrow .name { font-weight:600; font-size:13px; } .classrow .name span { display:block; color:var(--muted); font-weight:400; font-size:12px; }
.pairs { display:grid; grid-template-columns:repeat(auto-fill, minmax(280px, 1fr)); gap:12px; }
.pair { border:1px solid var(--line); border-radius:6px; padding:8px; }
.pair.flagged { border:2px solid var(--fail); }
.pair .imgs { display:flex; gap:6px; }
.pair figure { margin:0; text-align:center; font-size:11px; color:var(--muted); }
.pair .cap { font-size:12px; margin-top:6px; font-variant-numeric:tabular-nums; }
.grids { display:flex; flex-wrap:wrap; gap:14px; }
figure { margin:0; }
.grids figure { font-size:12px; color:var(--muted); text-align:center; }
footer { color:var(--muted); font-size:12px; margin-top:8px; }
code { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; background:var(--soft); padding:0 4px; border-radius:3px; }
"""


def fmt(v: Any, spec: str = ".3f", none: str = "—") -> str:
    """A number for display; None / NaN / non-numbers become a dash."""
    if v is None or isinstance(v, bool):
        return none if v is None else ("yes" if v else "no")
    try:
        x = float(v)
    except (TypeError, ValueError):
        return escape(str(v))
    return none if not math.isfinite(x) else format(x, spec)


def pct(v: Any) -> str:
    """A fraction as a percentage with one decimal."""
    return fmt(None if v is None else 100 * float(v), ".1f") + ("%" if v is not None else "")


def png_uri(pixels: np.ndarray) -> str:
    """uint8 gray (H, W) -> data:image/png;base64,..."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_file_uri(path: Path) -> str | None:
    """A PNG file as a data URI, or None if it is not a readable PNG."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            if img.format != "PNG":
                return None
    except (OSError, SyntaxError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def img(uri: str, width: int, height: int, alt: str, cls: str = "px") -> str:
    return f'<img class="{cls}" src="{uri}" width="{width}" height="{height}" alt="{escape(alt)}">'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (), row_classes: Sequence[str] = ()) -> str:
    """Cells are HTML (callers escape text); columns in ``numeric`` are right-aligned."""
    num = set(numeric)
    head = "".join(f'<th class="num">{h}</th>' if i in num else f"<th>{h}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if r < len(row_classes) and row_classes[r] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def section(sid: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{lead_html}{body}</section>'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
