"""``fedsynth release``: generate, audit at every site, and write the set only if all pass."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from privacy_audit.gate import GateDecision, decide
from server.run_dir import write_json
from server.server_app import versions
from shared_models.config import RunConfig
from shared_models.sampling import generate
from simulations.generate import class_names_of, load_generator, save_images, sha256, write_folder_atomically


def release(run: Path, out: Path, *, n: int, seed: int, threshold: float | None = None, quantile: float = 0.99) -> tuple[GateDecision, dict[str, Any] | None, list[dict[str, Any]]]:
    """(decision, manifest or None, per-site audit results). Nothing is written unless all pass."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: a release (or other folder) is already there; releases are never overwritten")
    g, cfg, ckpt = load_generator(run)
    images, labels = generate(g, n, seed)
    results = audit_sites_in_simulation(cfg, images, threshold=threshold, quantile=quantile)
    decision = decide(results, cfg.hospitals, cfg.epsilon)
    if not decision.passed:
        return decision, None, results
    class_names = class_names_of(run)

    def fill(folder: Path) -> dict[str, Any]:
        files = save_images(folder, images, labels, class_names)
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run": str(Path(run).resolve()),
            "checkpoint": str(ckpt.resolve()),
            "checkpoint_sha256": sha256(ckpt),
            "n": n,
            "seed": seed,
            "target_epsilon": cfg.epsilon,
            "sites": [site_entry(r) for r in results],
            "gate": {"passed": True, "rule": "every site answered, passed the memorization audit, and spent epsilon <= target"},
            "files": files,
            "versions": versions(),
        }
        write_json(folder / "manifest.json", manifest)
        return manifest

    return decision, write_folder_atomically(out, fill), results


def site_entry(result: dict[str, Any]) -> dict[str, Any]:
    """What the manifest says of one site: its privacy spend and its audit figures."""
    keys = ("epsilon", "delta", "accountant", "n_train", "n_holdout")
    entry = {k: result[k] for k in keys if k in result}
    entry["site"] = result.get("site")
    entry["audit"] = {k: v for k, v in result.items() if k not in keys and k != "site"}
    return entry


def audit_sites_in_simulation(cfg: RunConfig, images: Any, *, threshold: float | None, quantile: float) -> list[dict[str, Any]]:
    """Ask every simulated site (through the Flower engine, as in a real federation) to audit."""
    from server.federated_audit import audit_all_sites
    from simulations.runner import run_in_engine

    results: list[dict[str, Any]] = []

    def main(grid: Any, run_cfg: RunConfig) -> None:
        results.extend(audit_all_sites(grid, run_cfg, images, threshold=threshold, quantile=quantile))

    run_in_engine(cfg, main)
    return results
