"""One self-contained HTML report for a run: verdict, samples, memorization, privacy,
training, fidelity and utility, from whatever the run directory holds.

Nothing in the report is recomputed from images: it shows what training and the
audit recorded, and says plainly which pieces are missing.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from privacy_audit import report_sections as sec
from privacy_audit.report_html import fmt, page, pct
from server.run_dir import RunDir


@dataclass
class RunData:
    """What the report reads from a run directory; ``missing`` says what was not there."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    grids: list[tuple[int, Path]] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    samples: dict[str, np.ndarray] | None = None
    pairs: dict[str, np.ndarray] | None = None
    missing: list[str] = field(default_factory=list)

    def class_names(self) -> list[str]:
        names = self.config.get("class-names") or ((self.audit or {}).get("utility") or {}).get("class_names") or []
        return [str(n) for n in names]

    def section(self, key: str) -> dict[str, Any] | None:
        value = (self.audit or {}).get(key)
        return value if isinstance(value, dict) else None

    def final_epsilons(self) -> dict[str, dict[str, Any]]:
        """Each site's last reported record (epsilon is cumulative, so the last is the total)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.rounds:
            for s in r.get("sites") or []:
                out[str(s.get("site", "?"))] = {**s, "round": r.get("round")}
        return out


def _load_npz(path: Path, what: str, missing: list[str]) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        missing.append(f"{what} ({path.name} not written)")
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        missing.append(f"{what} ({path.name} unreadable: {exc})")
        return None


def load_run(run_dir: Path) -> RunData:
    """Read every piece the report can use; missing or corrupt pieces are noted, not fatal."""
    rd = RunDir(Path(run_dir))
    if not rd.root.is_dir():
        raise FileNotFoundError(f"{rd.root}: no such run directory")
    d = RunData(rd.root)
    try:
        d.config = rd.read_config()
    except (FileNotFoundError, ValueError) as exc:
        d.missing.append(f"run configuration ({exc})")
    try:
        d.rounds = rd.read_rounds()
    except ValueError as exc:
        d.missing.append(f"training rounds ({exc})")
    if not rd.rounds.is_file():
        d.missing.append("training rounds (rounds.jsonl not written: no round finished yet)")
    grid_dir = rd.root / "grids"
    for p in sorted(grid_dir.glob("round-*.png")) if grid_dir.is_dir() else []:
        try:
            d.grids.append((int(p.stem.split("-")[1]), p))
        except (IndexError, ValueError):
            continue
    if not d.grids:
        d.missing.append("sample grids per round (grids/round-NNN.png)")
    audit_path = rd.audit_dir / "audit.json"
    if audit_path.is_file():
        try:
            d.audit = json.loads(audit_path.read_text())
        except (json.JSONDecodeError, OSError) as exc:
            d.missing.append(f"audit results (audit/audit.json unreadable: {exc})")
    else:
        d.missing.append("audit results (no audit yet: run `fedsynth report` or `fedsynth release`)")
    if d.audit is not None:
        for key in ("memorization", "fidelity", "utility"):
            if d.section(key) is None:
                d.missing.append(f"{key} results (not in audit.json)")
        d.samples = _load_npz(rd.audit_dir / "samples.npz", "audited synthetic samples", d.missing)
        d.pairs = _load_npz(rd.audit_dir / "pairs.npz", "closest synthetic/real pair images", d.missing)
    return d


def verdict(d: RunData) -> tuple[str, str, list[str]]:
    """(status in pass/fail/none/incomplete, headline, reasons) from the audit and the privacy ledger."""
    reasons: list[str] = []
    target = d.config.get("epsilon")
    for site, rec in sorted(d.final_epsilons().items()):
        eps = rec.get("epsilon")
        if target is not None and eps is not None and float(eps) > float(target) + 1e-9:
            reasons.append(f"{site}: privacy budget exceeded (epsilon {float(eps):.3f} > target {float(target):g})")
    if d.audit is None:
        return "none", "No audit yet: this run has not been checked for memorization", reasons
    mem = d.section("memorization")
    if mem is None:
        return "incomplete", "Audit incomplete: no memorization results", reasons
    if not mem.get("passed"):
        reasons = [f"memorization: {r}" for r in (mem.get("reasons") or ["audit did not pass"])] + reasons
    if reasons:
        return "fail", "Not releasable: the audit found problems", reasons
    return "pass", "Audit passed: no memorization found, privacy budget respected", reasons


def key_cards(d: RunData) -> str:
    """Four headline numbers under the verdict: privacy, memorization, fidelity, utility."""
    cards = []
    eps = [float(r["epsilon"]) for r in d.final_epsilons().values() if r.get("epsilon") is not None]
    target = d.config.get("epsilon")
    if eps:
        over = target is not None and max(eps) > float(target) + 1e-9
        sub = f"target ε {fmt(target, 'g')} · {len(eps)} sites"
        cards.append(("Privacy spent (max over sites)", f"ε = {max(eps):.2f}", sub, "bad" if over else "good"))
    else:
        cards.append(("Privacy spent", "—", "no rounds recorded", ""))
    mem = d.section("memorization")
    if mem:
        sub = f"held-out {pct(mem.get('holdout_flagged_fraction'))} · threshold {fmt(mem.get('threshold'))}"
        cards.append(("Memorization", f"{pct(mem.get('flagged_fraction'))} flagged", sub, "good" if mem.get("passed") else "bad"))
    else:
        cards.append(("Memorization", "—", "not audited", ""))
    fid = d.section("fidelity")
    if fid:
        ref = (fid.get("reference") or {}).get("fid")
        short = str(fid.get("extractor", "?")).split("(")[0].strip()
        cards.append(("Fidelity (FID, lower is better)", fmt(fid.get("fid"), ".4g"), f"real vs real {fmt(ref, '.3g')} · {short} features", ""))
    else:
        cards.append(("Fidelity", "—", "not measured", ""))
    util = d.section("utility")
    rows = {r.get("regime"): r for r in (util or {}).get("rows", [])}
    if "tstr" in rows:
        full = next((r for r in util["rows"] if r.get("train_on") == "real" and r.get("real_fraction") == 1.0), None)
        sub = f"trained on real: {fmt((full or {}).get('accuracy'), '.2f')} · chance {fmt(util.get('chance_accuracy'), '.2f')}"
        cards.append(("Utility (train synthetic, test real)", f"accuracy {fmt(rows['tstr'].get('accuracy'), '.2f')}", sub, ""))
    else:
        cards.append(("Utility", "—", "not measured", ""))
    html = "".join(
        f'<div class="card {c}"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div><div class="s">{escape(s)}</div></div>'
        for k, v, s, c in cards
    )
    return f'<div class="cards">{html}</div>'


def _header(d: RunData) -> str:
    c = d.config
    planned, done = c.get("num-server-rounds"), len(d.rounds)
    chips = [
        ("hospitals", c.get("hospitals")),
        ("rounds", f"{done} of {planned}" if planned is not None else done),
        ("target ε", c.get("epsilon")),
        ("δ", c.get("delta") or "auto (< 1/n)"),
        ("accountant", c.get("accountant")),
        ("data", c.get("data")),
        ("partition", c.get("partition")),
        ("image size", f"{c['image-size']} px" if "image-size" in c else None),
        ("classes", len(d.class_names()) or c.get("num-classes")),
        ("seed", c.get("seed")),
    ]
    chip_html = "".join(f"<li>{escape(k)} <b>{escape(str(v))}</b></li>" for k, v in chips if v not in (None, ""))
    created = (d.audit or {}).get("created", "—")
    return (
        '<header class="top"><div><h1>Synthetic data release report</h1>'
        f'<div class="sub">fedsynth run <code>{escape(d.root.name)}</code> · DP federated GAN</div>'
        f'<ul class="chips">{chip_html}</ul></div>'
        f'<div class="meta">report written {escape(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))}<br>'
        f"audit created {escape(str(created))}</div></header>"
    )


def _verdict_section(d: RunData) -> str:
    status, headline, reasons = verdict(d)
    reason_html = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    body = f'<p class="status">{escape(headline)}</p>'
    if reason_html:
        body += f'<ul class="reasons">{reason_html}</ul>'
    body += key_cards(d)
    if d.missing:
        items = "".join(f"<li>{escape(m)}</li>" for m in d.missing)
        body += f'<div class="missing-list"><b>Missing from this run:</b><ul>{items}</ul></div>'
    body += (
        '<p class="note">This report shows the local audit of the run. At release, the gate re-runs the '
        "memorization audit at every site and refuses if any site fails or exceeds its budget.</p>"
    )
    return f'<section id="verdict" class="verdict {status}"><h2>Verdict</h2>{body}</section>'


def render(d: RunData) -> str:
    parts = [
        _header(d),
        _verdict_section(d),
        sec.samples_section(d),
        sec.memorization_section(d),
        sec.privacy_section(d),
        sec.training_section(d),
        sec.fidelity_section(d),
        sec.utility_section(d),
        f'<footer>fedsynth report · {escape(str(d.root))} · extractor: {escape(str((d.audit or {}).get("extractor") or "—"))} · '
        f"{len(d.rounds)} rounds recorded</footer>",
    ]
    return page(f"fedsynth report · {d.root.name}", "".join(parts))


def write_report(run_dir: Path, out_path: Path | None = None) -> Path:
    """Write the report (default ``RUN/report.html``) atomically and return its path."""
    d = load_run(Path(run_dir))
    out = Path(out_path) if out_path is not None else d.root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    html = render(d)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
