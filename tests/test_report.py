"""The HTML report: every section present, images valid, nothing external, gaps stated."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from privacy_audit.fidelity import fidelity_report
from privacy_audit.report import load_run, verdict, write_report
from privacy_audit.utility import utility_report
from server.run_dir import RunDir, write_json
from shared_models.images import make_grid, save_png
from tests.test_utility import one_thread, toy_set  # noqa: F401  (one_thread is an autouse fixture)

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["disc", "horizontal-bars", "vertical-bars"]
SECTIONS = ("verdict", "samples", "memorization", "pairs", "privacy", "training", "fidelity", "utility")


def build_run(root: Path, *, audit: bool = True, rounds: int = 5) -> Path:
    """A small fake run directory with every file the report reads (or, audit=False, only training's)."""
    run = RunDir(root)
    config = {"num-server-rounds": rounds, "hospitals": 3, "epsilon": 10.0, "delta": 1e-5, "image-size": 32, "num-classes": 3}
    write_json(run.config, {**config, "class-names": CLASSES, "partition": "iid", "data": "demo", "seed": 0, "accountant": "prv"})
    rng = np.random.default_rng(0)
    for r in range(1, rounds + 1):
        sites = [
            {
                "site": f"site-{i}", "epsilon": min(2.1 * r * (1 + 0.1 * i), 9.9), "delta": 1e-5, "num_examples": 300 + 10 * i,
                "d_loss": 1.3 - 0.05 * r + 0.02 * i, "g_loss": 0.8 + 0.07 * r, "stopped": i == 2 and r >= 4, "time_s": 3.0 + i,
            }
            for i in range(3)
        ]
        d_loss, g_loss = (float(np.mean([s[k] for s in sites])) for k in ("d_loss", "g_loss"))
        run.append_round({"round": r, "time_s": 12.0 + rng.normal(), "d_loss": d_loss, "g_loss": g_loss, "sites": sites})
        grid = toy_set(24, r, noise=0.9 - 0.15 * r).images[np.argsort(np.arange(24) % 3, kind="stable")]  # one row per class
        save_png(make_grid(grid, ncol=8), run.grid(r))
    if not audit:
        return run.root
    train, holdout, syn = toy_set(60, 0), toy_set(30, 1), toy_set(45, 2, noise=0.35)
    syn_ssim = np.clip(rng.normal(0.45, 0.08, len(syn)), 0, 1)
    hold_ssim = np.clip(rng.normal(0.48, 0.07, len(holdout)), 0, 1)
    order = np.argsort(-syn_ssim)[:6]
    real_idx = [int(i % 3 + 3 * k) for k, i in enumerate(order)]  # a training image of the same class
    threshold = float(np.quantile(hold_ssim, 0.99))
    flagged = float(np.mean(syn_ssim > threshold))
    pairs = [
        {"synthetic_index": int(i), "real_index": real_idx[k], "ssim": float(syn_ssim[i]), "psnr": 20.0 - k, "transform": ["none", "hflip"][k % 2]}
        for k, i in enumerate(order)
    ]
    memorization = {
        "threshold": threshold, "threshold_source": "held-out 99th percentile",
        "synthetic_nn_ssim": syn_ssim.tolist(), "holdout_nn_ssim": hold_ssim.tolist(),
        "flagged_fraction": flagged, "holdout_flagged_fraction": float(np.mean(hold_ssim > threshold)),
        "mann_whitney": {"u": 612.0, "p_value": 0.21, "z": -1.25}, "top_pairs": pairs, "passed": True, "reasons": [],
    }
    fidelity = fidelity_report(train, syn, extractor="random-conv", kid_subsets=5, nn_psnr_mean=17.9)
    utility = utility_report(train, syn, holdout, epochs=1, regimes=(0.1, 1.0), min_steps=12)
    audit_json = {"memorization": memorization, "fidelity": fidelity, "utility": utility, "extractor": fidelity["extractor"], "created": "2025-01-01T00:00:00Z"}
    write_json(run.audit_dir / "audit.json", audit_json)
    np.savez_compressed(run.audit_dir / "samples.npz", images=syn.images, labels=syn.labels)
    psnr = np.array([p["psnr"] for p in pairs], np.float32)
    np.savez_compressed(run.audit_dir / "pairs.npz", synthetic=syn.images[order], real=train.images[real_idx], ssim=syn_ssim[order].astype(np.float32), psnr=psnr)
    return run.root


class Refs(HTMLParser):
    """Every src/href attribute and every element id of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.urls.append(v)
            if k == "id" and v:
                self.ids.add(v)


def parse(html: str) -> Refs:
    p = Refs()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = build_run(tmp_path_factory.mktemp("report") / "run")
    path = write_report(run)
    return path, path.read_text()


def test_report_has_every_section_and_only_inline_resources(full_report: tuple[Path, str]) -> None:
    path, html = full_report
    assert path.name == "report.html" and html.startswith("<!DOCTYPE html>")
    refs = parse(html)
    assert set(SECTIONS) <= refs.ids
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, re.I)
    assert "http://" not in html and "https://" not in html and "@import" not in html
    assert refs.urls and all(u.startswith("data:image/png;base64,") for u in refs.urls)
    for u in refs.urls:
        with Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))) as im:
            im.verify()
            assert im.format == "PNG"
    for text in ["Audit passed", *CLASSES, "target ε = 10", "Synthetic only (TSTR)", "Real 100% (TRTR)", "random-conv-v1", "threshold", "site-2", "Closest synthetic / real pairs"]:
        assert text in html, text
    assert html.count("<svg") == 6  # NN-SSIM histogram, epsilon, losses, time, utility accuracy and AUC


def test_report_of_a_run_without_audit_says_so(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", audit=False, rounds=3)
    html = write_report(run, tmp_path / "out" / "r.html").read_text()
    assert set(SECTIONS) - {"pairs"} <= parse(html).ids
    assert "No audit yet" in html and "no audit yet: run" in html
    assert "No memorization results" in html and "No fidelity results" in html and "No utility results" in html
    assert "showing the last training-round grid instead" in html  # samples fall back to the round-3 grid
    assert "round 3" in html and "target ε = 10" in html
    assert not (run / "report.html").exists()  # an explicit out path was given


def test_partial_audit_and_empty_run_list_what_is_missing(full_report: tuple[Path, str], tmp_path: Path) -> None:
    run = Path(shutil.copytree(full_report[0].parent, tmp_path / "run"))
    for name in ("samples.npz", "pairs.npz"):
        (run / "audit" / name).unlink()
    audit_path = run / "audit" / "audit.json"
    audit = json.loads(audit_path.read_text())
    del audit["utility"]
    audit["memorization"].update(passed=False, reasons=["4.4% of synthetic images above NN-SSIM threshold 0.450"], threshold=0.45)
    audit_path.write_text(json.dumps(audit))
    d = load_run(run)
    status, _, reasons = verdict(d)
    assert status == "fail" and any("memorization" in r for r in reasons)
    html = write_report(run).read_text()
    assert "Not releasable" in html and "utility results (not in audit.json)" in html
    assert "Pair images (audit/pairs.npz) are missing" in html and "audited synthetic samples (samples.npz not written)" in html
    assert "above threshold" in html

    bare = tmp_path / "bare"
    bare.mkdir()
    html = write_report(bare).read_text()
    for text in ("run configuration", "rounds.jsonl not written", "No per-site privacy records", "No samples", "No training rounds recorded"):
        assert text in html, text
    (bare / "audit").mkdir()
    (bare / "audit" / "audit.json").write_text("{ torn")
    assert "audit/audit.json unreadable" in write_report(bare).read_text()
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_verdict_fails_when_a_site_overspent(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", audit=False, rounds=1)
    cfg = json.loads((run / "config.json").read_text())
    write_json(run / "config.json", {**cfg, "epsilon": 1.0})
    write_json(run / "audit" / "audit.json", {"memorization": {"passed": True, "reasons": [], "threshold": 0.5, "flagged_fraction": 0.0}})
    status, _, reasons = verdict(load_run(run))
    assert status == "fail" and any("site-0: privacy budget exceeded" in r for r in reasons)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_chromium(full_report: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = full_report
    out = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "report_screenshot.py"), str(path), "--out", str(out)], capture_output=True, text=True, timeout=180, cwd=REPO)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result
    assert not result["blank"] and result["pixel_std"] > 8 and result["distinct_colours"] >= 24
    assert (result["width"], result["height"]) == (1280, 2400) and out.is_file()
