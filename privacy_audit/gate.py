"""The release gate: a synthetic set leaves only if every site passes and no budget is exceeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def decide(site_results: list[dict[str, Any]], expected_sites: int, target_epsilon: float) -> GateDecision:
    """Pass only if all ``expected_sites`` answered, none found memorization, none is over budget."""
    reasons = []
    if len(site_results) < expected_sites:
        reasons.append(f"only {len(site_results)} of {expected_sites} sites answered the audit")
    for r in site_results:
        site = r.get("site", "?")
        if "error" in r:
            reasons.append(f"{site}: audit failed: {r['error']}")
            continue
        if not r.get("passed"):
            why = "; ".join(r.get("reasons") or []) or f"{r.get('flagged_fraction', 0):.1%} of synthetic images above NN-SSIM threshold {r.get('threshold', float('nan')):.3f}"
            reasons.append(f"{site}: memorization audit failed: {why}")
        eps = float(r.get("epsilon", 0.0))
        if eps > target_epsilon + 1e-9:
            reasons.append(f"{site}: privacy budget exceeded: epsilon {eps:.3f} > target {target_epsilon:g}")
    return GateDecision(passed=not reasons, reasons=reasons)
