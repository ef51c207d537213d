"""Render a fedsynth report in headless Chromium and check the screenshot is not blank.

    python benchmarks/report_screenshot.py RUN_OR_HTML --out report.png [--window-size 1280,2400]

RUN_OR_HTML is a run directory (the report is written to a temporary folder, the run is
left untouched) or an HTML file. Prints one JSON object; exit code 1 if the page
rendered blank (too uniform, too few colours) or Chromium failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MIN_STD = 8.0  # grey-level standard deviation of a page with text, charts and images
MIN_COLOURS = 24  # distinct colours (5 bits per channel) of the same


def chromium_command(html: Path, out: Path, profile: Path, window_size: str, binary: str = "chromium") -> list[str]:
    """Headless, offline, throw-away profile: nothing is fetched, nothing is kept."""
    return [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
        f"--window-size={window_size}", f"--screenshot={out}", html.resolve().as_uri(),
    ]


def blank_check(png: Path) -> dict[str, Any]:
    """Pixel statistics that tell a rendered page from an empty (or error) one."""
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    grey = rgb.astype(np.float64).mean(2)
    quant = (rgb >> 3).astype(np.int32)
    colours = int(len(np.unique(quant[..., 0] * 1024 + quant[..., 1] * 32 + quant[..., 2])))
    std = float(grey.std())
    return {
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "pixel_std": round(std, 2),
        "distinct_colours": colours,
        "blank": std < MIN_STD or colours < MIN_COLOURS,
    }


def screenshot(target: Path, out: Path, window_size: str = "1280,2400", timeout: float = 120.0) -> dict[str, Any]:
    binary = shutil.which("chromium")
    if binary is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="fedsynth-shot-") as tmp:
        html = Path(target)
        if html.is_dir():
            from privacy_audit.report import write_report

            html = write_report(html, Path(tmp) / "report.html")
        if not html.is_file():
            raise FileNotFoundError(f"{target}: neither a run directory nor an HTML file")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        profile = Path(tmp) / "profile"
        t0 = time.perf_counter()
        proc = subprocess.run(chromium_command(html, out, profile, window_size, binary), capture_output=True, text=True, timeout=timeout)
        seconds = round(time.perf_counter() - t0, 2)
    result: dict[str, Any] = {"target": str(target), "png": str(out), "window_size": window_size, "seconds": seconds, "returncode": proc.returncode}
    if proc.returncode != 0 or not out.is_file():
        result.update(blank=True, error=(proc.stderr or "no screenshot written").strip().splitlines()[-3:])
        return result
    result.update(blank_check(out))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", type=Path, help="run directory or report HTML file")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--window-size", default="1280,2400", help="WIDTH,HEIGHT of the headless window")
    args = ap.parse_args(argv)
    try:
        result = screenshot(args.target, args.out, args.window_size)
    except (FileNotFoundError, subprocess.TimeoutExpired, ValueError) as exc:
        result = {"target": str(args.target), "blank": True, "error": str(exc)}
    print(json.dumps(result, indent=2))
    return 1 if result.get("blank") else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
